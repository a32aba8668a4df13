//! Tolerant parsing of DICOM files from bytes already in memory.
//!
//! Real PACS exports carry quirks that strict readers refuse: no 128-byte preamble, no file
//! meta group at all, or a meta group with a malformed element (the cornerstone `CTImage.dcm`
//! family has a one-control-byte Source AE Title that dicom-object 0.10 rejects). We first let
//! dicom-object read the file as it is; when that fails in the meta group, we locate the data
//! set and its transfer syntax ourselves, rebuild a clean meta group and parse again.

use std::io::Cursor;

use dicom_dictionary_std::{tags, uids};

use super::error_chain;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::{
    DefaultDicomObject, FileMetaTableBuilder, OpenFileOptions, ReadError, file::ReadPreamble,
};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

/// How much of the data set to parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extent {
    /// Stop before Pixel Data: enough for indexing and series selection.
    Header,
    /// The whole data set, Pixel Data included.
    Full,
}

/// Why bytes could not be read as DICOM. The variants map onto quarantine reasons.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("not a DICOM file: {0}")]
    NotDicom(String),
    #[error("truncated DICOM file: {0}")]
    Truncated(String),
    #[error("malformed DICOM data set: {0}")]
    Malformed(String),
    #[error("unsupported transfer syntax {0}")]
    UnsupportedTransferSyntax(String),
}

/// Where the data set starts and how it is encoded, as found by our own scan.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Layout {
    dataset_offset: usize,
    transfer_syntax: String,
    sop_class_uid: Option<String>,
    sop_instance_uid: Option<String>,
}

/// Parses DICOM bytes, tolerating a missing preamble, a missing or damaged meta group.
pub fn parse(bytes: &[u8], extent: Extent) -> Result<DefaultDicomObject, ParseError> {
    let options = || {
        let o = OpenFileOptions::new().read_preamble(ReadPreamble::Auto);
        match extent {
            Extent::Header => o.read_until(tags::PIXEL_DATA),
            Extent::Full => o,
        }
    };
    let first_error = match options().from_reader(Cursor::new(bytes)) {
        Ok(obj) => return Ok(obj),
        Err(e) => e,
    };
    // Only a failure in the preamble or meta group is worth a second, tolerant attempt:
    // a broken data set stays broken however we find it.
    let meta_failed = matches!(
        first_error,
        ReadError::ParseMetaDataSet { .. } | ReadError::ReadPreambleBytes { .. }
    );
    if !meta_failed {
        return Err(classify(&first_error, bytes));
    }
    let layout = scan_layout(bytes).ok_or_else(|| {
        if bytes.len() < 132 {
            ParseError::NotDicom(format!("only {} bytes and no DICOM structure", bytes.len()))
        } else {
            ParseError::NotDicom("no DICM magic code and no recognisable data set".into())
        }
    })?;
    if TransferSyntaxRegistry
        .get(&layout.transfer_syntax)
        .is_none()
    {
        return Err(ParseError::UnsupportedTransferSyntax(
            layout.transfer_syntax,
        ));
    }
    let meta = FileMetaTableBuilder::new()
        .transfer_syntax(layout.transfer_syntax.as_str())
        .media_storage_sop_class_uid(layout.sop_class_uid.unwrap_or_default())
        .media_storage_sop_instance_uid(layout.sop_instance_uid.unwrap_or_default())
        .build()
        .map_err(|e| ParseError::Malformed(format!("cannot rebuild file meta group: {e}")))?;
    let mut rebuilt = Vec::with_capacity(bytes.len() + 256);
    rebuilt.extend_from_slice(b"DICM");
    meta.write(&mut rebuilt)
        .map_err(|e| ParseError::Malformed(format!("cannot rebuild file meta group: {e}")))?;
    rebuilt.extend_from_slice(&bytes[layout.dataset_offset..]);
    options()
        .read_preamble(ReadPreamble::Never)
        .from_reader(Cursor::new(&rebuilt))
        .map_err(|e| classify(&e, bytes))
}

/// The data set of DICOM bytes, without preamble and file meta group (found by the same
/// scan as the tolerant path). None when no data set can be located.
pub fn data_set_bytes(bytes: &[u8]) -> Option<&[u8]> {
    let layout = scan_layout(bytes)?;
    bytes.get(layout.dataset_offset..)
}

/// Turns dicom-object's error into one of our reasons, in words an operator can act on.
fn classify(error: &ReadError, bytes: &[u8]) -> ParseError {
    let text = error_chain(error);
    let lower = text.to_ascii_lowercase();
    if lower.contains("unexpected end of file")
        || lower.contains("unexpectedeof")
        || lower.contains("failed to fill whole buffer")
    {
        return ParseError::Truncated(text);
    }
    if lower.contains("unsupported transfer syntax")
        || lower.contains("unrecognized transfer syntax")
    {
        return ParseError::UnsupportedTransferSyntax(text);
    }
    if matches!(error, ReadError::ParseMetaDataSet { .. }) && !has_magic(bytes) {
        return ParseError::NotDicom(text);
    }
    ParseError::Malformed(text)
}

fn has_magic(bytes: &[u8]) -> bool {
    bytes.get(128..132) == Some(b"DICM") || bytes.get(0..4) == Some(b"DICM")
}

/// Finds the data set and its transfer syntax without trusting the meta group's values.
fn scan_layout(bytes: &[u8]) -> Option<Layout> {
    let meta_start = if bytes.get(128..132) == Some(b"DICM") {
        Some(132)
    } else if bytes.get(0..4) == Some(b"DICM") {
        Some(4)
    } else {
        None
    };
    match meta_start {
        Some(start) => scan_meta_group(bytes, start),
        None => guess_bare_dataset(bytes),
    }
}

/// Walks the group-0002 elements (always explicit VR little endian) by their lengths.
fn scan_meta_group(bytes: &[u8], start: usize) -> Option<Layout> {
    let mut pos = start;
    let mut ts = None;
    let mut sop_class = None;
    let mut sop_instance = None;
    while let Some(head) = bytes.get(pos..pos + 8) {
        let group = u16::from_le_bytes([head[0], head[1]]);
        if group != 0x0002 {
            break;
        }
        let element = u16::from_le_bytes([head[2], head[3]]);
        let vr = [head[4], head[5]];
        let (value_start, len) = if long_length_vr(vr) {
            let l = bytes.get(pos + 8..pos + 12)?;
            (
                pos + 12,
                u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize,
            )
        } else {
            (pos + 8, u16::from_le_bytes([head[6], head[7]]) as usize)
        };
        let value = bytes.get(value_start..value_start.checked_add(len)?)?;
        let text = || clean_uid(value);
        match element {
            0x0002 => sop_class = text(),
            0x0003 => sop_instance = text(),
            0x0010 => ts = text(),
            _ => {}
        }
        pos = value_start + len;
    }
    Some(Layout {
        dataset_offset: pos,
        transfer_syntax: ts?,
        sop_class_uid: sop_class,
        sop_instance_uid: sop_instance,
    })
}

/// A file with no meta group at all: decide between implicit and explicit VR little endian
/// from the first element, which must be a plausible low group (usually 0008).
fn guess_bare_dataset(bytes: &[u8]) -> Option<Layout> {
    let head = bytes.get(0..8)?;
    let group = u16::from_le_bytes([head[0], head[1]]);
    if group == 0 || group > 0x0010 || group % 2 == 1 {
        return None;
    }
    let explicit = head[4].is_ascii_uppercase() && head[5].is_ascii_uppercase();
    let transfer_syntax = if explicit {
        uids::EXPLICIT_VR_LITTLE_ENDIAN
    } else {
        let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
        if len > bytes.len() {
            return None;
        }
        uids::IMPLICIT_VR_LITTLE_ENDIAN
    };
    Some(Layout {
        dataset_offset: 0,
        transfer_syntax: transfer_syntax.to_string(),
        sop_class_uid: None,
        sop_instance_uid: None,
    })
}

fn long_length_vr(vr: [u8; 2]) -> bool {
    matches!(
        &vr,
        b"OB"
            | b"OD"
            | b"OF"
            | b"OL"
            | b"OV"
            | b"OW"
            | b"SQ"
            | b"SV"
            | b"UC"
            | b"UN"
            | b"UR"
            | b"UT"
            | b"UV"
    )
}

fn clean_uid(value: &[u8]) -> Option<String> {
    let s: String = String::from_utf8_lossy(value)
        .trim_matches(|c: char| c == '\0' || c.is_whitespace())
        .to_string();
    (!s.is_empty()).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_tiny_inputs_are_not_dicom() {
        for bytes in [&b""[..], b"x", b"DICM", &[0u8; 200][..]] {
            let err = parse(bytes, Extent::Header).unwrap_err();
            assert!(
                matches!(err, ParseError::NotDicom(_) | ParseError::Truncated(_)),
                "{err:?}"
            );
        }
    }

    #[test]
    fn meta_scan_reads_transfer_syntax_past_a_broken_element() {
        let mut bytes = vec![0u8; 128];
        bytes.extend_from_slice(b"DICM");
        let mut push = |element: u16, vr: &[u8; 2], value: &[u8]| {
            bytes.extend_from_slice(&0x0002u16.to_le_bytes());
            bytes.extend_from_slice(&element.to_le_bytes());
            bytes.extend_from_slice(vr);
            bytes.extend_from_slice(&(value.len() as u16).to_le_bytes());
            bytes.extend_from_slice(value);
        };
        push(0x0010, b"UI", b"1.2.840.10008.1.2\0");
        push(0x0016, b"AE", b"\x01 ");
        let end = bytes.len();
        bytes.extend_from_slice(&[0x08, 0x00, 0x16, 0x00]);
        let layout = scan_layout(&bytes).unwrap();
        assert_eq!(layout.dataset_offset, end);
        assert_eq!(layout.transfer_syntax, "1.2.840.10008.1.2");
    }
}
