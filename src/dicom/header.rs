//! The header fields lungwatch needs, read tolerantly into a plain struct.
//!
//! Every field is optional because real exports omit things (no Study Date, empty SOP
//! Instance UID); the rules that need a field decide what its absence means.

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::DefaultDicomObject;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InstanceHeader {
    pub transfer_syntax: String,
    pub sop_class_uid: Option<String>,
    pub sop_instance_uid: Option<String>,
    pub study_instance_uid: Option<String>,
    pub series_instance_uid: Option<String>,
    pub patient_id: Option<String>,
    pub patient_name: Option<String>,
    pub study_date: Option<String>,
    pub study_time: Option<String>,
    pub accession_number: Option<String>,
    pub study_description: Option<String>,
    pub series_description: Option<String>,
    pub series_number: Option<i64>,
    pub modality: Option<String>,
    /// Manufacturer (0008,0070): "lungwatch" on lungwatch's own result objects.
    #[serde(default)]
    pub manufacturer: Option<String>,
    pub instance_number: Option<i64>,
    pub image_type: Vec<String>,
    pub rows: Option<u32>,
    pub columns: Option<u32>,
    pub number_of_frames: Option<u32>,
    /// Row spacing then column spacing, in mm (DICOM order).
    pub pixel_spacing: Option<[f64; 2]>,
    pub slice_thickness: Option<f64>,
    pub image_position: Option<[f64; 3]>,
    /// Row direction cosines then column direction cosines.
    pub image_orientation: Option<[f64; 6]>,
    pub rescale_slope: Option<f64>,
    pub rescale_intercept: Option<f64>,
    pub bits_allocated: Option<u16>,
    pub bits_stored: Option<u16>,
    pub pixel_representation: Option<u16>,
    pub samples_per_pixel: Option<u16>,
    pub photometric_interpretation: Option<String>,
}

impl InstanceHeader {
    pub fn from_object(obj: &DefaultDicomObject) -> Self {
        let text = |tag: Tag| -> Option<String> {
            let value = obj.element_opt(tag).ok()??.to_str().ok()?;
            let trimmed = value.trim_matches(|c: char| c == '\0' || c.is_whitespace());
            (!trimmed.is_empty()).then(|| trimmed.to_string())
        };
        let floats = |tag: Tag| -> Option<Vec<f64>> {
            let v = obj.element_opt(tag).ok()??.to_multi_float64().ok()?;
            v.iter().all(|x| x.is_finite()).then_some(v)
        };
        let float = |tag: Tag| floats(tag).and_then(|v| v.first().copied());
        let int = |tag: Tag| -> Option<i64> { obj.element_opt(tag).ok()??.to_int::<i64>().ok() };
        let uint16 = |tag: Tag| int(tag).and_then(|v| u16::try_from(v).ok());
        let uint32 = |tag: Tag| int(tag).and_then(|v| u32::try_from(v).ok());

        let image_type = obj
            .element_opt(tags::IMAGE_TYPE)
            .ok()
            .flatten()
            .and_then(|e| e.to_multi_str().ok().map(|v| v.to_vec()))
            .unwrap_or_default()
            .into_iter()
            .map(|s| s.trim().to_ascii_uppercase())
            .filter(|s| !s.is_empty())
            .collect();

        InstanceHeader {
            transfer_syntax: obj
                .meta()
                .transfer_syntax()
                .trim_end_matches('\0')
                .to_string(),
            sop_class_uid: text(tags::SOP_CLASS_UID),
            sop_instance_uid: text(tags::SOP_INSTANCE_UID),
            study_instance_uid: text(tags::STUDY_INSTANCE_UID),
            series_instance_uid: text(tags::SERIES_INSTANCE_UID),
            patient_id: text(tags::PATIENT_ID),
            patient_name: text(tags::PATIENT_NAME),
            study_date: text(tags::STUDY_DATE),
            study_time: text(tags::STUDY_TIME),
            accession_number: text(tags::ACCESSION_NUMBER),
            study_description: text(tags::STUDY_DESCRIPTION),
            series_description: text(tags::SERIES_DESCRIPTION),
            series_number: int(tags::SERIES_NUMBER),
            modality: text(tags::MODALITY).map(|m| m.to_ascii_uppercase()),
            manufacturer: text(tags::MANUFACTURER),
            instance_number: int(tags::INSTANCE_NUMBER),
            image_type,
            rows: uint32(tags::ROWS),
            columns: uint32(tags::COLUMNS),
            number_of_frames: uint32(tags::NUMBER_OF_FRAMES),
            pixel_spacing: floats(tags::PIXEL_SPACING)
                .and_then(|v| (v.len() >= 2).then(|| [v[0], v[1]])),
            slice_thickness: float(tags::SLICE_THICKNESS),
            image_position: floats(tags::IMAGE_POSITION_PATIENT)
                .and_then(|v| (v.len() >= 3).then(|| [v[0], v[1], v[2]])),
            image_orientation: floats(tags::IMAGE_ORIENTATION_PATIENT)
                .and_then(|v| (v.len() >= 6).then(|| [v[0], v[1], v[2], v[3], v[4], v[5]])),
            rescale_slope: float(tags::RESCALE_SLOPE),
            rescale_intercept: float(tags::RESCALE_INTERCEPT),
            bits_allocated: uint16(tags::BITS_ALLOCATED),
            bits_stored: uint16(tags::BITS_STORED),
            pixel_representation: uint16(tags::PIXEL_REPRESENTATION),
            samples_per_pixel: uint16(tags::SAMPLES_PER_PIXEL),
            photometric_interpretation: text(tags::PHOTOMETRIC_INTERPRETATION),
        }
    }

    /// The identity this instance is stored and de-duplicated under.
    ///
    /// The SOP Instance UID when the file has one; otherwise a UID derived from the file's
    /// content hash under the `2.25` (UUID-derived) root, so the same bytes always get the
    /// same identity and a re-export of the same file is recognised as a duplicate.
    pub fn instance_identity(&self, content_sha256: &[u8; 32]) -> InstanceIdentity {
        match &self.sop_instance_uid {
            Some(uid) => InstanceIdentity {
                uid: uid.clone(),
                derived: false,
            },
            None => InstanceIdentity {
                uid: derived_uid(content_sha256),
                derived: true,
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceIdentity {
    pub uid: String,
    /// True when the file had no SOP Instance UID and `uid` was derived from its content.
    pub derived: bool,
}

/// A valid DICOM UID from 122 bits of a hash, as an ISO/IEC 9834-8 UUID-style `2.25.` UID.
pub fn derived_uid(sha256: &[u8; 32]) -> String {
    let mut first = [0u8; 16];
    first.copy_from_slice(&sha256[..16]);
    format!("2.25.{}", u128::from_be_bytes(first) >> 6)
}

/// The crate's one SHA-256 of a byte string: instance identity and `path_component` here,
/// store paths, model and labels checksums, the web page's credential digests. It lives in
/// `dicom` rather than `sys` because `dicom` depends on nothing in the crate and needs it
/// itself; every other module may import `dicom` (ARCHITECTURE.md).
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Lower-case hex, as `sha256sum` prints a digest.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `uid` conforms to DICOM PS3.5 §9: at most 64 characters, dot-separated numeric
/// components without leading zeros.
pub fn is_conformant_uid(uid: &str) -> bool {
    uid.len() <= 64
        && !uid.is_empty()
        && uid.split('.').all(|c| {
            !c.is_empty()
                && c.bytes().all(|b| b.is_ascii_digit())
                && (c == "0" || !c.starts_with('0'))
        })
}

/// Turns any identifier into a safe single path component.
///
/// Only `[0-9A-Za-z.-]` survive, the result never starts with a dot, and when anything was
/// changed or cut a short hash of the original is appended, so two different identifiers
/// can never map to the same name.
pub fn path_component(id: &str) -> String {
    const MAX: usize = 64;
    let mut out: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(MAX)
        .collect();
    if out.starts_with('.') {
        out.replace_range(0..1, "_");
    }
    if out != id || out.is_empty() {
        out.push('~');
        out.push_str(&hex(&sha256(id.as_bytes())[..6]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn derived_uid_is_conformant_and_stable() {
        let h = sha256(b"some file");
        let a = derived_uid(&h);
        assert_eq!(a, derived_uid(&h));
        assert!(is_conformant_uid(&a), "{a}");
        assert_ne!(a, derived_uid(&sha256(b"another file")));
    }

    #[test]
    fn conformance_rules() {
        assert!(is_conformant_uid("1.2.840.10008.1.2"));
        assert!(is_conformant_uid("1.0.3"));
        assert!(!is_conformant_uid("1.02.3"));
        assert!(!is_conformant_uid("1..3"));
        assert!(!is_conformant_uid("c9a6d5e4-1b2f-4f0e-9a3e-8f1b2c3d4e5f"));
        assert!(!is_conformant_uid(""));
    }

    #[test]
    fn path_components_are_safe() {
        assert_eq!(path_component("1.2.3"), "1.2.3");
        for nasty in [
            "../../etc/passwd",
            "a/b",
            ".",
            "..",
            "",
            "x\0y",
            "ü",
            "C:\\x",
        ] {
            let p = path_component(nasty);
            assert!(
                !p.contains('/') && !p.contains('\\') && !p.starts_with('.'),
                "{p}"
            );
            assert!(!p.is_empty());
        }
        assert_ne!(path_component("a/b"), path_component("a_b"));
    }

    proptest! {
        #[test]
        fn path_component_never_escapes(id in ".*") {
            let p = path_component(&id);
            prop_assert!(!p.is_empty() && p.len() <= 64 + 13);
            prop_assert!(p.chars().all(|c| c.is_ascii_alphanumeric() || "._-~".contains(c)));
            prop_assert!(!p.starts_with('.'));
        }
    }
}
