//! Results as DICOM objects, for PACS viewers: pure functions from an analysis and its
//! source headers to Part 10 bytes. Nothing here reads or writes files; the worker does.
//!
//! - `mod.rs`: what every object shares: UIDs under `dicom.uid_root`, the patient and study
//!   attributes copied from the source, the equipment identifying lungwatch.
//! - `sc.rs`: Secondary Capture key images (the previews, overlay burned in) and the
//!   summary image (`summary.rs` draws the figures and the disclaimer with `font.rs`).
//! - `sr.rs`: the TID 1500 Measurement Report.
//! - `seg.rs`: the binary Segmentation, in the source slices' own geometry.

mod font;
pub mod sc;
pub mod seg;
pub mod sr;
pub mod summary;

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::mem::InMemElement;
use dicom_object::{DefaultDicomObject, FileMetaTableBuilder, InMemDicomObject};
use sha2::{Digest, Sha256};

/// Which of lungwatch's kinds an object of `sop_class_uid` is (None: not one it writes).
pub fn kind_of(sop_class_uid: &str) -> Option<crate::config::ObjectKind> {
    use crate::config::ObjectKind;
    match sop_class_uid {
        seg::SOP_CLASS_UID => Some(ObjectKind::Seg),
        sr::SOP_CLASS_UID => Some(ObjectKind::Sr),
        sc::SOP_CLASS_UID => Some(ObjectKind::Sc),
        _ => None,
    }
}

/// The key images and the summary image of one analysis, as (file name, Part 10 bytes),
/// in a new series of the source study. `sources[z]` is the source instance of the analysis's slice `z` (its
/// trained orientation, `analysis.volume.files[z]`).
pub fn key_images_of(
    analysis: &crate::analysis::Analysis,
    sources: &[SourceRef],
    study: &PatientStudy,
    uids: &UidMaker,
    source_series_number: Option<i64>,
) -> Vec<(String, Vec<u8>)> {
    let series = sc::ResultSeries {
        series_instance_uid: uids.uid("sc-series"),
        // Beside the source in a viewer's series list, and never the source's own number.
        series_number: 9000 + source_series_number.unwrap_or(0).clamp(0, 999),
    };
    let mut out: Vec<(String, Vec<u8>)> = crate::analysis::key_images(analysis)
        .iter()
        .enumerate()
        .map(|(k, (z, raster))| {
            let name = format!("sc-{k}.dcm");
            let image = sc::KeyImage {
                sop_instance_uid: uids.uid(&name),
                instance_number: k as u32 + 1,
                raster,
                source: &sources[*z],
            };
            let bytes = sc::key_image(study, &series, &image);
            (name, bytes)
        })
        .collect();
    let name = "sc-summary.dcm".to_string();
    let bytes = sc::summary_image(
        study,
        &series,
        &uids.uid(&name),
        out.len() as u32 + 1,
        &summary::render(&analysis.report),
    );
    out.push((name, bytes));
    out
}

/// The measurement report of one analysis, as ("sr.dcm", Part 10 bytes), in its own
/// series of the source study. `library` is every source instance; `now` the Unix time
/// it is written at (content date and time, in UTC).
pub fn measurement_report_of(
    report: &crate::report::SeriesReport,
    library: &[SourceRef],
    study: &PatientStudy,
    uids: &UidMaker,
    source_series_number: Option<i64>,
    now: i64,
) -> (String, Vec<u8>) {
    let series = sc::ResultSeries {
        series_instance_uid: uids.uid("sr-series"),
        series_number: 9500 + source_series_number.unwrap_or(0).clamp(0, 499),
    };
    let sop_instance_uid = uids.uid("sr");
    let ctx = sr::ReportContext {
        study,
        series: &series,
        sop_instance_uid: &sop_instance_uid,
        source_series_uid: &report.series_instance_uid,
        sources: library,
        tracking_uids: [0, 1, 2, 3].map(|k| uids.uid(&format!("sr-group-{k}"))),
        device_uid: crate::dimse::IMPLEMENTATION_CLASS_UID,
        content_date_time: date_time_utc(now),
    };
    ("sr.dcm".to_string(), sr::measurement_report(report, &ctx))
}

/// The segmentation of one analysis, as ("seg.dcm", Part 10 bytes), in its own series of
/// the source study. `slices[z]` is the source instance and header of the analysis's
/// slice `z`. None when the source lacks the geometry a SEG must carry (orientation,
/// spacing, positions).
pub fn segmentation_of(
    analysis: &crate::analysis::Analysis,
    slices: &[(SourceRef, &crate::dicom::InstanceHeader)],
    study: &PatientStudy,
    frame_of_reference_uid: &str,
    uids: &UidMaker,
    source_series_number: Option<i64>,
    now: i64,
) -> Option<(String, Vec<u8>)> {
    let v = &analysis.volume;
    let (rows, columns) = (analysis.dims.rows, analysis.dims.columns);
    let first = slices.first()?.1;
    let orientation = first.image_orientation?;
    let geometry = seg::SegGeometry {
        rows,
        columns,
        image_orientation: orientation,
        pixel_spacing: first.pixel_spacing?,
        slice_thickness: first.slice_thickness,
        frame_of_reference_uid: frame_of_reference_uid.to_string(),
    };
    let (mirrored_rows, mirrored_columns) =
        seg::mirrored(orientation, v.row_direction, v.column_direction);
    let plane = rows * columns;
    let seg_slices = slices
        .iter()
        .enumerate()
        .map(|(z, (source, header))| {
            let back = |labels: &[u8]| {
                seg::source_plane(
                    &labels[z * plane..(z + 1) * plane],
                    rows,
                    columns,
                    mirrored_rows,
                    mirrored_columns,
                )
            };
            Some(seg::SegSlice {
                source: source.clone(),
                image_position: header.image_position?,
                lung: back(&analysis.lung),
                lesion: back(&analysis.lesion),
            })
        })
        .collect::<Option<Vec<_>>>()?;
    let series = sc::ResultSeries {
        series_instance_uid: uids.uid("seg-series"),
        series_number: 9800 + source_series_number.unwrap_or(0).clamp(0, 199),
    };
    let sop_instance_uid = uids.uid("seg");
    let dimension_organization_uid = uids.uid("seg-dimensions");
    let ctx = seg::SegContext {
        study,
        series: &series,
        sop_instance_uid: &sop_instance_uid,
        dimension_organization_uid: &dimension_organization_uid,
        source_series_uid: &analysis.report.series_instance_uid,
        content_date_time: date_time_utc(now),
    };
    Some((
        "seg.dcm".to_string(),
        seg::segmentation(&geometry, &seg_slices, &ctx),
    ))
}

/// Frame of Reference UID of a source instance.
pub fn frame_of_reference_uid(obj: &DefaultDicomObject) -> Option<String> {
    let v = obj
        .element_opt(tags::FRAME_OF_REFERENCE_UID)
        .ok()??
        .to_str()
        .ok()?;
    let t = v.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    (!t.is_empty()).then(|| t.to_string())
}

/// DICOM DA and TM of a Unix time, in UTC.
pub fn date_time_utc(unix_secs: i64) -> (String, String) {
    let days = unix_secs.div_euclid(86_400);
    let secs = unix_secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        format!("{year:04}{month:02}{day:02}"),
        format!("{:02}{:02}{:02}", secs / 3600, secs / 60 % 60, secs % 60),
    )
}

/// Manufacturer (0008,0070) of every object lungwatch writes; how they are recognised
/// when a PACS sends them back (`series::select` never analyses them).
pub const MANUFACTURER: &str = "lungwatch";
/// The wording every object carries.
pub const DISCLAIMER: &str = "Decision support, not a diagnosis.";

/// Makes the UIDs of one job's objects: `<root>.<digits>`, the digits a 128-bit value
/// (UUID-sized, as `2.25` requires) derived from the job and the object, so writing the
/// same job's objects again gives the same UIDs.
#[derive(Debug, Clone)]
pub struct UidMaker {
    root: String,
    seed: Vec<u8>,
}

impl UidMaker {
    /// `root` is a validated `dicom.uid_root`; `seed` names the job (e.g. the source series
    /// UID and the job ID).
    pub fn new(root: &str, seed: &str) -> Self {
        UidMaker {
            root: root.trim_end_matches('.').to_string(),
            seed: seed.as_bytes().to_vec(),
        }
    }

    /// The UID of the object called `what` within the job.
    pub fn uid(&self, what: &str) -> String {
        let mut h = Sha256::new();
        h.update(&self.seed);
        h.update([0]);
        h.update(what.as_bytes());
        let digest = h.finalize();
        let mut value = u128::from_be_bytes(digest[..16].try_into().expect("16 bytes"));
        // At most 64 characters in all; `2.25.` leaves room for all 39 digits.
        let room = (64 - self.root.len() - 1).min(39);
        if room < 39 {
            value %= 10u128.pow(room as u32);
        }
        format!("{}.{}", self.root, value.max(1))
    }
}

/// Patient and study attributes copied from the source series onto every object, so the
/// PACS files them in the same study.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PatientStudy {
    pub patient_name: Option<String>,
    pub patient_id: Option<String>,
    pub patient_birth_date: Option<String>,
    pub patient_sex: Option<String>,
    pub study_instance_uid: String,
    pub study_date: Option<String>,
    pub study_time: Option<String>,
    pub referring_physician_name: Option<String>,
    pub study_id: Option<String>,
    pub accession_number: Option<String>,
    pub study_description: Option<String>,
}

impl PatientStudy {
    /// From a source instance's header; None without a Study Instance UID (the objects
    /// would land in no study).
    pub fn from_object(obj: &DefaultDicomObject) -> Option<Self> {
        let text = |tag: Tag| -> Option<String> {
            let v = obj.element_opt(tag).ok()??.to_str().ok()?;
            let t = v.trim_matches(|c: char| c == '\0' || c.is_whitespace());
            (!t.is_empty()).then(|| t.to_string())
        };
        Some(PatientStudy {
            patient_name: text(tags::PATIENT_NAME),
            patient_id: text(tags::PATIENT_ID),
            patient_birth_date: text(tags::PATIENT_BIRTH_DATE),
            patient_sex: text(tags::PATIENT_SEX),
            study_instance_uid: text(tags::STUDY_INSTANCE_UID)?,
            study_date: text(tags::STUDY_DATE),
            study_time: text(tags::STUDY_TIME),
            referring_physician_name: text(tags::REFERRING_PHYSICIAN_NAME),
            study_id: text(tags::STUDY_ID),
            accession_number: text(tags::ACCESSION_NUMBER),
            study_description: text(tags::STUDY_DESCRIPTION),
        })
    }

    /// The Patient and General Study module elements (Type 2 ones empty when unknown).
    fn elements(&self) -> Vec<InMemElement> {
        let opt = |tag, vr, v: &Option<String>| element(tag, vr, v.as_deref().unwrap_or(""));
        let mut out = vec![
            opt(tags::PATIENT_NAME, VR::PN, &self.patient_name),
            opt(tags::PATIENT_ID, VR::LO, &self.patient_id),
            opt(tags::PATIENT_BIRTH_DATE, VR::DA, &self.patient_birth_date),
            opt(tags::PATIENT_SEX, VR::CS, &self.patient_sex),
            element(tags::STUDY_INSTANCE_UID, VR::UI, &self.study_instance_uid),
            opt(tags::STUDY_DATE, VR::DA, &self.study_date),
            opt(tags::STUDY_TIME, VR::TM, &self.study_time),
            opt(
                tags::REFERRING_PHYSICIAN_NAME,
                VR::PN,
                &self.referring_physician_name,
            ),
            opt(tags::STUDY_ID, VR::SH, &self.study_id),
            opt(tags::ACCESSION_NUMBER, VR::SH, &self.accession_number),
        ];
        if let Some(d) = &self.study_description {
            out.push(element(tags::STUDY_DESCRIPTION, VR::LO, d));
        }
        out
    }
}

/// The instance an object was derived from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRef {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
}

fn element(tag: Tag, vr: VR, value: &str) -> InMemElement {
    DataElement::new(tag, vr, PrimitiveValue::from(value))
}

fn us(tag: Tag, value: u16) -> InMemElement {
    DataElement::new(tag, VR::US, PrimitiveValue::from(value))
}

/// SOP Common and General Series as every result object starts: UTF-8, its class and
/// instance, and its place in lungwatch's result series of the source study.
fn result_instance(
    sop_class_uid: &str,
    sop_instance_uid: &str,
    modality: &str,
    series: &sc::ResultSeries,
    series_description: &str,
    instance_number: u32,
) -> Vec<InMemElement> {
    vec![
        element(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192"),
        element(tags::SOP_CLASS_UID, VR::UI, sop_class_uid),
        element(tags::SOP_INSTANCE_UID, VR::UI, sop_instance_uid),
        element(tags::MODALITY, VR::CS, modality),
        element(tags::SERIES_DESCRIPTION, VR::LO, series_description),
        element(
            tags::SERIES_INSTANCE_UID,
            VR::UI,
            &series.series_instance_uid,
        ),
        element(
            tags::SERIES_NUMBER,
            VR::IS,
            &series.series_number.to_string(),
        ),
        element(tags::INSTANCE_NUMBER, VR::IS, &instance_number.to_string()),
    ]
}

/// General and Enhanced General Equipment: lungwatch and its version.
fn equipment() -> Vec<InMemElement> {
    vec![
        element(tags::MANUFACTURER, VR::LO, MANUFACTURER),
        element(tags::MANUFACTURER_MODEL_NAME, VR::LO, "lungwatch"),
        element(tags::SOFTWARE_VERSIONS, VR::LO, env!("CARGO_PKG_VERSION")),
    ]
}

/// A data set as Part 10 bytes, explicit VR little endian.
fn to_part10(obj: InMemDicomObject, sop_class: &str, sop_instance: &str) -> Vec<u8> {
    let version: String = format!("LUNGWATCH_{}", env!("CARGO_PKG_VERSION"))
        .chars()
        .take(16)
        .collect();
    let file = obj
        .with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
                .media_storage_sop_class_uid(sop_class)
                .media_storage_sop_instance_uid(sop_instance)
                .implementation_class_uid(crate::dimse::IMPLEMENTATION_CLASS_UID)
                .implementation_version_name(version),
        )
        .expect("a complete file meta group");
    let mut out = Vec::new();
    file.write_all(&mut out)
        .expect("an in-memory data set of plain elements always encodes");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_in_utc() {
        assert_eq!(date_time_utc(0), ("19700101".into(), "000000".into()));
        assert_eq!(
            date_time_utc(1_709_251_199),
            ("20240229".into(), "235959".into())
        );
        assert_eq!(date_time_utc(951_782_400).0, "20000229");
    }

    #[test]
    fn uids_fit_are_stable_and_differ_per_object() {
        let m = UidMaker::new("2.25", "1.2.3|job 7");
        let a = m.uid("series");
        assert_eq!(a, m.uid("series"));
        assert_ne!(a, m.uid("sc-0"));
        assert_ne!(a, UidMaker::new("2.25", "1.2.3|job 8").uid("series"));
        assert!(a.starts_with("2.25.") && a.len() <= 64, "{a}");
        let long_root = "1.2.826.0.1.3680043.10.123456789.1234567";
        let b = UidMaker::new(long_root, "x").uid("series");
        assert!(b.starts_with(long_root) && b.len() <= 64, "{b}");
        for uid in [a, b] {
            assert!(
                uid.split('.')
                    .all(|c| !c.is_empty() && (c == "0" || !c.starts_with('0'))),
                "{uid}"
            );
        }
    }
}
