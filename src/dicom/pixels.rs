//! Pixel Data decoding: every transfer syntax dicom-pixeldata supports, to stored values
//! and from there to Hounsfield units.

use dicom_dictionary_std::{tags, uids};
use dicom_object::DefaultDicomObject;
use dicom_pixeldata::{PixelDecoder, PlanarConfiguration};

use super::error_chain;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("no Pixel Data")]
    NoPixelData,
    #[error("cannot decode pixel data: {0}")]
    Codec(String),
    #[error("unsupported pixel layout: {0}")]
    Unsupported(String),
}

/// Decoded stored values (before the modality LUT), in standard order: samples of a pixel,
/// then columns, then rows, then frames. Planar colour data is interleaved.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredPixels {
    pub rows: u32,
    pub columns: u32,
    pub frames: u32,
    pub samples_per_pixel: u16,
    pub values: Vec<i64>,
}

impl StoredPixels {
    pub fn frame_len(&self) -> usize {
        self.rows as usize * self.columns as usize * self.samples_per_pixel as usize
    }
}

pub fn decode_stored(obj: &DefaultDicomObject) -> Result<StoredPixels, DecodeError> {
    let has = |tag| obj.element_opt(tag).ok().flatten().is_some();
    if !has(tags::PIXEL_DATA) {
        if has(tags::FLOAT_PIXEL_DATA) || has(tags::DOUBLE_FLOAT_PIXEL_DATA) {
            return Err(DecodeError::Unsupported(
                "Float Pixel Data (a parametric map, not a stored-value image)".into(),
            ));
        }
        return Err(DecodeError::NoPixelData);
    }
    let header_bits = obj
        .element_opt(tags::BITS_ALLOCATED)
        .ok()
        .flatten()
        .and_then(|e| e.to_int::<u16>().ok());
    if header_bits == Some(1) {
        return decode_bitmap(obj);
    }
    if let Some(fast) = decode_lossless_jpeg(obj) {
        return Ok(fast);
    }
    check_codestream_size(obj)?;
    let decoded = obj.decode_pixel_data().map_err(|e| {
        let text = error_chain(&e);
        if text.contains("SamplePrecision(12)") {
            DecodeError::Unsupported(
                "12-bit lossy JPEG (extended process 2/4) cannot be decoded by this build".into(),
            )
        } else {
            DecodeError::Codec(text)
        }
    })?;
    let rows = decoded.rows();
    let columns = decoded.columns();
    let frames = decoded.number_of_frames().max(1);
    let samples = decoded.samples_per_pixel();
    let bits_allocated = decoded.bits_allocated();
    let bits_stored = decoded.bits_stored();
    let signed = matches!(
        decoded.pixel_representation(),
        dicom_pixeldata::PixelRepresentation::Signed
    );
    let count = rows as usize * columns as usize * samples as usize * frames as usize;
    let subsampled;
    let mut data = decoded.data();
    if samples == 3
        && bits_allocated == 8
        && decoded.photometric_interpretation().as_str() == "YBR_FULL_422"
        && data.len() == count * 2 / 3
    {
        // Native YBR_FULL_422 keeps one Cb/Cr pair per two pixels (Y1 Y2 Cb Cr);
        // expand it to the full-resolution YCbCr the rest of the code expects.
        subsampled = expand_ybr_422(data);
        data = &subsampled;
    }
    let need = match bits_allocated {
        8 | 16 | 32 => count * bits_allocated as usize / 8,
        other => {
            return Err(DecodeError::Unsupported(format!("{other} bits allocated")));
        }
    };
    // Native data may carry one pad byte to an even length; anything else that differs
    // means Rows, Columns or Bits Allocated do not describe the stored pixels (a 1 × 1
    // header over a 512 × 512 image must not be read as one pixel).
    if data.len() < need || data.len() > need + 1 {
        return Err(DecodeError::Codec(format!(
            "decoded {} bytes of pixels, but the header declares {rows} × {columns} × \
             {samples} samples × {frames} frames at {bits_allocated} bits ({need} bytes)",
            data.len()
        )));
    }
    let extend = |raw: u64, bits: u16| extend_sign(raw, bits, signed);
    let stored_bits = bits_stored.clamp(1, bits_allocated);
    let mut values: Vec<i64> = match bits_allocated {
        8 => data[..count]
            .iter()
            .map(|&b| extend(u64::from(b), stored_bits))
            .collect(),
        16 => data[..count * 2]
            .chunks_exact(2)
            .map(|c| extend(u64::from(u16::from_le_bytes([c[0], c[1]])), stored_bits))
            .collect(),
        _ => data[..count * 4]
            .chunks_exact(4)
            .map(|c| {
                extend(
                    u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                    stored_bits,
                )
            })
            .collect(),
    };
    if samples > 1 && decoded.planar_configuration() == PlanarConfiguration::PixelFirst {
        values = interleave_planes(&values, rows as usize * columns as usize, samples as usize);
    }
    Ok(StoredPixels {
        rows,
        columns,
        frames,
        samples_per_pixel: samples,
        values,
    })
}

/// Refuses a compressed frame whose codestream declares another size than Rows × Columns,
/// before any decoder allocates from the stream's own size fields.
fn check_codestream_size(obj: &DefaultDicomObject) -> Result<(), DecodeError> {
    let Some(fragments) = obj
        .element(tags::PIXEL_DATA)
        .ok()
        .and_then(|e| e.value().fragments())
    else {
        return Ok(()); // native data: its length was checked at ingest
    };
    let Some(first) = fragments.iter().find(|f| !f.is_empty()) else {
        return Ok(());
    };
    let int = |tag| {
        obj.element_opt(tag)
            .ok()
            .flatten()
            .and_then(|e| e.to_int::<u32>().ok())
    };
    let (Some(rows), Some(columns)) = (int(tags::ROWS), int(tags::COLUMNS)) else {
        return Ok(());
    };
    match super::codestream::declared_size(first) {
        Some((c, r)) if (c, r) != (columns, rows) => Err(DecodeError::Codec(format!(
            "the compressed image is {c} × {r} pixels, but the header declares {columns} × {rows}"
        ))),
        _ => Ok(()),
    }
}

/// The stored value of `raw` with `bits` significant bits, two's complement if `signed`.
fn extend_sign(raw: u64, bits: u16, signed: bool) -> i64 {
    if bits >= 64 {
        return raw as i64;
    }
    let raw = raw & ((1u64 << bits) - 1);
    if signed && bits > 0 && raw >> (bits - 1) & 1 == 1 {
        raw as i64 - (1i64 << bits)
    } else {
        raw as i64
    }
}

/// Single-frame, single-sample lossless JPEG through the fast decoder (`jpeg_lossless`).
/// None hands the object on to dicom-pixeldata, whose verdict then stands. On every real
/// process-14 file we have, both give the same samples (`tests/jpeg_lossless_real.rs`).
fn decode_lossless_jpeg(obj: &DefaultDicomObject) -> Option<StoredPixels> {
    let syntax = obj.meta().transfer_syntax().trim_end_matches('\0');
    if syntax != uids::JPEG_LOSSLESS && syntax != uids::JPEG_LOSSLESS_SV1 {
        return None;
    }
    let int = |tag| {
        obj.element_opt(tag)
            .ok()
            .flatten()
            .and_then(|e| e.to_int::<u32>().ok())
    };
    if int(tags::NUMBER_OF_FRAMES).unwrap_or(1) > 1
        || int(tags::SAMPLES_PER_PIXEL).unwrap_or(1) != 1
    {
        return None;
    }
    let (rows, columns) = (int(tags::ROWS)?, int(tags::COLUMNS)?);
    let bits_allocated = int(tags::BITS_ALLOCATED)? as u16;
    if bits_allocated != 8 && bits_allocated != 16 {
        return None;
    }
    let bits_stored = int(tags::BITS_STORED)
        .map_or(bits_allocated, |b| b as u16)
        .clamp(1, bits_allocated);
    let signed = int(tags::PIXEL_REPRESENTATION) == Some(1);
    let fragments = obj.element(tags::PIXEL_DATA).ok()?.value().fragments()?;
    let joined;
    let stream: &[u8] = match fragments {
        [only] => only,
        _ => {
            joined = fragments.concat();
            &joined
        }
    };
    let image =
        match super::jpeg_lossless::decode_expecting(stream, (columns as usize, rows as usize)) {
            Ok(image) => image,
            Err(e) => {
                log::debug!("{e}; decoding with dicom-pixeldata instead");
                return None;
            }
        };
    if image.width != columns as usize || image.height != rows as usize {
        return None;
    }
    let values = image
        .samples
        .iter()
        .map(|&v| extend_sign(u64::from(v), bits_stored, signed))
        .collect();
    Some(StoredPixels {
        rows,
        columns,
        frames: 1,
        samples_per_pixel: 1,
        values,
    })
}

/// Native 1-bit data (segmentations, overlays) is one continuous little-endian bit stream
/// that runs across frame boundaries; unpack it ourselves rather than per frame.
fn decode_bitmap(obj: &DefaultDicomObject) -> Result<StoredPixels, DecodeError> {
    let header = super::InstanceHeader::from_object(obj);
    let (rows, columns) = match (header.rows, header.columns) {
        (Some(r), Some(c)) => (r, c),
        _ => {
            return Err(DecodeError::Unsupported(
                "1-bit image without Rows/Columns".into(),
            ));
        }
    };
    let frames = header.number_of_frames.unwrap_or(1).max(1);
    let samples = header.samples_per_pixel.unwrap_or(1);
    let element = obj
        .element(tags::PIXEL_DATA)
        .map_err(|_| DecodeError::NoPixelData)?;
    let bytes = match element.value() {
        dicom_core::DicomValue::Primitive(p) => p.to_bytes(),
        _ => {
            return Err(DecodeError::Unsupported(
                "compressed 1-bit pixel data (only native 1-bit data is supported)".into(),
            ));
        }
    };
    let count = rows as usize * columns as usize * frames as usize * samples as usize;
    if bytes.len() < count.div_ceil(8) {
        return Err(DecodeError::Codec(format!(
            "1-bit pixel data holds {} bytes, {} needed",
            bytes.len(),
            count.div_ceil(8)
        )));
    }
    let values = (0..count)
        .map(|i| i64::from(bytes[i / 8] >> (i % 8) & 1))
        .collect();
    Ok(StoredPixels {
        rows,
        columns,
        frames,
        samples_per_pixel: samples,
        values,
    })
}

fn expand_ybr_422(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 2 * 3);
    for q in data.chunks_exact(4) {
        let (y1, y2, cb, cr) = (q[0], q[1], q[2], q[3]);
        out.extend_from_slice(&[y1, cb, cr, y2, cb, cr]);
    }
    out
}

/// Converts plane-by-plane frames (RRR..GGG..BBB..) to pixel-interleaved (RGBRGB..).
fn interleave_planes(values: &[i64], pixels: usize, samples: usize) -> Vec<i64> {
    let frame = pixels * samples;
    let mut out = Vec::with_capacity(values.len());
    for f in values.chunks(frame) {
        for p in 0..pixels {
            for s in 0..samples {
                out.push(f[s * pixels + p]);
            }
        }
    }
    out
}

/// The modality LUT for CT: HU = stored × slope + intercept, rounded and saturated to i16.
///
/// MONOCHROME1 only says how to *display* the values (low = white); it does not change
/// what they mean, so Hounsfield units come from the rescale alone for both photometric
/// interpretations.
pub fn to_hounsfield(stored: &[i64], slope: f64, intercept: f64, out: &mut Vec<i16>) {
    out.reserve(stored.len());
    let saturate = |v: i64| v.clamp(i16::MIN as i64, i16::MAX as i64) as i16;
    if slope == 1.0 && intercept.fract() == 0.0 {
        let offset = intercept as i64;
        out.extend(stored.iter().map(|&v| saturate(v + offset)));
    } else {
        out.extend(
            stored
                .iter()
                .map(|&v| saturate((v as f64 * slope + intercept).round() as i64)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hounsfield_rescale_rounds_and_saturates() {
        let mut out = Vec::new();
        to_hounsfield(&[0, 1024, 4095], 1.0, -1024.0, &mut out);
        assert_eq!(out, vec![-1024, 0, 3071]);
        out.clear();
        to_hounsfield(&[3, 100_000], 0.5, -1.0, &mut out);
        assert_eq!(out, vec![1, i16::MAX]);
    }

    #[test]
    fn planes_interleave() {
        let planar = vec![1, 2, 10, 20, 100, 200];
        assert_eq!(
            interleave_planes(&planar, 2, 3),
            vec![1, 10, 100, 2, 20, 200]
        );
    }
}
