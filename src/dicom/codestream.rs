//! The image size a compressed codestream declares, read from its first marker segments
//! without decoding: JPEG (SOFn), JPEG-LS (SOF55) and JPEG 2000 (SIZ).
//!
//! The decoders behind dicom-pixeldata size their buffers from these fields. Comparing
//! them with the DICOM header first means a corrupt or hostile stream cannot make them
//! allocate gigabytes, and a stream that does not match its header is refused with that
//! reason rather than decoded into the wrong shape.

/// (columns, rows) declared by the codestream, or None when no size marker is found in
/// the first bytes (the caller then leaves the verdict to the decoder).
pub fn declared_size(stream: &[u8]) -> Option<(u32, u32)> {
    if stream.starts_with(&[0xFF, 0xD8]) {
        jpeg_family(stream)
    } else if stream.starts_with(&[0xFF, 0x4F, 0xFF, 0x51]) {
        j2k_siz(&stream[2..])
    } else if let Some(at) = find(stream, &[0xFF, 0x4F, 0xFF, 0x51]) {
        // JP2 file format: the codestream sits inside a box.
        j2k_siz(&stream[at + 2..])
    } else {
        None
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    // The codestream header is near the start of a JP2 file; don't scan the image data.
    let window = &haystack[..haystack.len().min(4096)];
    window.windows(needle.len()).position(|w| w == needle)
}

fn u16_at(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*data.get(at)?, *data.get(at + 1)?]))
}

fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes([
        *data.get(at)?,
        *data.get(at + 1)?,
        *data.get(at + 2)?,
        *data.get(at + 3)?,
    ]))
}

/// Walks JPEG / JPEG-LS marker segments from SOI to the first frame header.
fn jpeg_family(data: &[u8]) -> Option<(u32, u32)> {
    let mut pos = 2;
    loop {
        while *data.get(pos)? != 0xFF {
            pos += 1;
        }
        while *data.get(pos)? == 0xFF {
            pos += 1;
        }
        let marker = *data.get(pos)?;
        pos += 1;
        if marker == 0xD8 || (0xD0..=0xD7).contains(&marker) || marker == 0x01 {
            continue;
        }
        if marker == 0xD9 || marker == 0xDA {
            return None; // end of image, or a scan, before any frame header
        }
        let length = u16_at(data, pos)? as usize;
        let is_sof = matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
        if is_sof || marker == 0xF7 {
            // Lf, P, Y (rows), X (columns)
            let rows = u16_at(data, pos + 3)?;
            let columns = u16_at(data, pos + 5)?;
            return Some((u32::from(columns), u32::from(rows)));
        }
        if length < 2 {
            return None;
        }
        pos += length;
    }
}

/// The SIZ segment that follows SOC: Xsiz, Ysiz and the image offsets.
fn j2k_siz(data: &[u8]) -> Option<(u32, u32)> {
    if data.get(..2)? != [0xFF, 0x51] {
        return None;
    }
    // FF51, Lsiz (2), Rsiz (2), Xsiz, Ysiz, XOsiz, YOsiz (4 each)
    let x = u32_at(data, 6)?;
    let y = u32_at(data, 10)?;
    let x0 = u32_at(data, 14)?;
    let y0 = u32_at(data, 18)?;
    Some((x.checked_sub(x0)?, y.checked_sub(y0)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jpeg_frame_headers_give_their_size() {
        // SOI, APP0 of 4 bytes, SOF0: Lf=11, P=8, Y=512, X=256.
        let stream = [
            0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0x00, 0x00, 0xFF, 0xC0, 0x00, 0x0B, 0x08, 0x02,
            0x00, 0x01, 0x00, 0x01,
        ];
        assert_eq!(declared_size(&stream), Some((256, 512)));
        let mut ls = stream;
        ls[9] = 0xF7; // SOF55, JPEG-LS
        assert_eq!(declared_size(&ls), Some((256, 512)));
    }

    #[test]
    fn j2k_siz_gives_its_size_minus_offsets() {
        let mut siz = vec![0xFF, 0x4F, 0xFF, 0x51, 0x00, 0x29, 0x00, 0x00];
        siz.extend_from_slice(&600u32.to_be_bytes());
        siz.extend_from_slice(&700u32.to_be_bytes());
        siz.extend_from_slice(&88u32.to_be_bytes());
        siz.extend_from_slice(&188u32.to_be_bytes());
        assert_eq!(declared_size(&siz), Some((512, 512)));
    }

    #[test]
    fn garbage_gives_none_never_a_panic() {
        for len in 0..64 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 % 256) as u8).collect();
            let _ = declared_size(&bytes);
            let mut with_soi = vec![0xFF, 0xD8];
            with_soi.extend_from_slice(&bytes);
            let _ = declared_size(&with_soi);
        }
        assert_eq!(declared_size(&[0xFF, 0xD8, 0xFF, 0xD9]), None);
    }
}
