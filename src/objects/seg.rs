//! The label mask as a binary DICOM Segmentation: segments right lung, left lung,
//! ground-glass opacity and consolidation, one frame per segment and source slice, each
//! frame in the source slice's own geometry (its Image Position, the series' orientation
//! and pixel spacing) and pixel order, so a viewer overlays it exactly on the source.
//!
//! The analysis works in the trained orientation (`analysis::orient` may mirror rows or
//! columns and reverse the slices); `source_plane` maps a plane back to the source slice's
//! own row and column order, and the caller pairs each plane with its own source instance,
//! which undoes any slice reversal.

use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR, dicom_value};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;
use dicom_object::mem::InMemElement;

use super::sc::ResultSeries;
use super::{
    DISCLAIMER, PatientStudy, SourceRef, element, equipment, result_instance, to_part10, us,
};
use crate::analysis::postprocess::{
    CONSOLIDATION as CONSOLIDATION_LABEL, GROUND_GLASS as GROUND_GLASS_LABEL, LEFT_LUNG, RIGHT_LUNG,
};

/// Segmentation Storage.
pub const SOP_CLASS_UID: &str = uids::SEGMENTATION_STORAGE;
pub const SERIES_DESCRIPTION: &str = "lungwatch segmentation (decision support only)";

/// A code: (value, scheme, meaning).
type Code = (&'static str, &'static str, &'static str);

const ANATOMICAL_STRUCTURE: Code = ("123037004", "SCT", "Anatomical Structure");
const ALTERED_STRUCTURE: Code = ("49755003", "SCT", "Morphologically Altered Structure");
const LUNG: Code = ("39607008", "SCT", "Lung");
const RIGHT: Code = ("24028007", "SCT", "Right");
const LEFT: Code = ("7771000", "SCT", "Left");
const GROUND_GLASS: Code = ("112120", "DCM", "Ground glass opacity");
const CONSOLIDATION: Code = ("95436008", "SCT", "Lung consolidation");

/// The four segments: (number, label, category, type, laterality modifier, colour as
/// CIELab for viewers). Numbers are the values of `labels.nii.gz`.
const SEGMENTS: [(u16, &str, Code, Code, Option<Code>); 4] = [
    (1, "Right lung", ANATOMICAL_STRUCTURE, LUNG, Some(RIGHT)),
    (2, "Left lung", ANATOMICAL_STRUCTURE, LUNG, Some(LEFT)),
    (
        3,
        "Ground-glass opacity",
        ALTERED_STRUCTURE,
        GROUND_GLASS,
        None,
    ),
    (4, "Consolidation", ALTERED_STRUCTURE, CONSOLIDATION, None),
];

/// One source slice with the analysis's labels, rows × columns in the source slice's own
/// pixel order.
#[derive(Debug, Clone)]
pub struct SegSlice {
    pub source: SourceRef,
    pub image_position: [f64; 3],
    /// `analysis::postprocess` labels: 0, right or left lung; 0, ground-glass or
    /// consolidation.
    pub lung: Vec<u8>,
    pub lesion: Vec<u8>,
}

/// The geometry every frame shares: the source series'.
#[derive(Debug, Clone)]
pub struct SegGeometry {
    pub rows: usize,
    pub columns: usize,
    pub image_orientation: [f64; 6],
    /// Row spacing then column spacing, mm.
    pub pixel_spacing: [f64; 2],
    pub slice_thickness: Option<f64>,
    pub frame_of_reference_uid: String,
}

pub struct SegContext<'a> {
    pub study: &'a PatientStudy,
    pub series: &'a ResultSeries,
    pub sop_instance_uid: &'a str,
    pub dimension_organization_uid: &'a str,
    pub source_series_uid: &'a str,
    pub content_date_time: (String, String),
}

/// Whether the trained orientation mirrored the source's columns and rows: its row
/// (column) direction points against the source's.
pub fn mirrored(
    source_orientation: [f64; 6],
    row_direction: [f64; 3],
    column_direction: [f64; 3],
) -> (bool, bool) {
    let dot = |a: &[f64], b: &[f64; 3]| a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
    (
        dot(&source_orientation[3..6], &column_direction) < 0.0,
        dot(&source_orientation[0..3], &row_direction) < 0.0,
    )
}

/// A plane of the analysis (trained orientation) in the source slice's pixel order.
pub fn source_plane(
    plane: &[u8],
    rows: usize,
    columns: usize,
    mirrored_rows: bool,
    mirrored_columns: bool,
) -> Vec<u8> {
    let mut out = vec![0u8; rows * columns];
    for r in 0..rows {
        let sr = if mirrored_rows { rows - 1 - r } else { r };
        for c in 0..columns {
            let sc = if mirrored_columns { columns - 1 - c } else { c };
            out[sr * columns + sc] = plane[r * columns + c];
        }
    }
    out
}

/// The Part 10 bytes of the segmentation. `slices` in a consistent spatial order (the
/// analysis's, inferior to superior).
pub fn segmentation(geometry: &SegGeometry, slices: &[SegSlice], ctx: &SegContext) -> Vec<u8> {
    let (rows, columns) = (geometry.rows, geometry.columns);
    let frames = SEGMENTS.len() * slices.len();
    let (bits, per_frame) = frames_of(geometry, slices);
    let mut elements = result_instance(
        SOP_CLASS_UID,
        ctx.sop_instance_uid,
        "SEG",
        ctx.series,
        SERIES_DESCRIPTION,
        1,
    );
    elements.extend([
        DataElement::new(
            tags::IMAGE_TYPE,
            VR::CS,
            dicom_value!(Strs, ["DERIVED", "PRIMARY"]),
        ),
        element(tags::CONTENT_DATE, VR::DA, &ctx.content_date_time.0),
        element(tags::CONTENT_TIME, VR::TM, &ctx.content_date_time.1),
        element(tags::CONTENT_LABEL, VR::CS, "LUNGWATCH"),
        element(
            tags::CONTENT_DESCRIPTION,
            VR::LO,
            "Lungs and lesions by lungwatch. Decision support only.",
        ),
        // Type 2: no person created it (ContentLabel and the equipment name lungwatch).
        element(tags::CONTENT_CREATOR_NAME, VR::PN, ""),
        element(tags::IMAGE_COMMENTS, VR::LT, DISCLAIMER),
        element(
            tags::FRAME_OF_REFERENCE_UID,
            VR::UI,
            &geometry.frame_of_reference_uid,
        ),
        element(tags::POSITION_REFERENCE_INDICATOR, VR::LO, ""),
        element(tags::DEVICE_SERIAL_NUMBER, VR::LO, "1"),
        us(tags::SAMPLES_PER_PIXEL, 1),
        element(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"),
        us(tags::ROWS, rows as u16),
        us(tags::COLUMNS, columns as u16),
        us(tags::BITS_ALLOCATED, 1),
        us(tags::BITS_STORED, 1),
        us(tags::HIGH_BIT, 0),
        us(tags::PIXEL_REPRESENTATION, 0),
        element(tags::LOSSY_IMAGE_COMPRESSION, VR::CS, "00"),
        element(tags::SEGMENTATION_TYPE, VR::CS, "BINARY"),
        element(tags::NUMBER_OF_FRAMES, VR::IS, &frames.to_string()),
        sequence(
            tags::SEGMENT_SEQUENCE,
            SEGMENTS.iter().map(segment_item).collect(),
        ),
        sequence(
            tags::DIMENSION_ORGANIZATION_SEQUENCE,
            vec![InMemDicomObject::from_element_iter([element(
                tags::DIMENSION_ORGANIZATION_UID,
                VR::UI,
                ctx.dimension_organization_uid,
            )])],
        ),
        sequence(
            tags::DIMENSION_INDEX_SEQUENCE,
            vec![
                dimension(
                    ctx,
                    tags::REFERENCED_SEGMENT_NUMBER,
                    tags::SEGMENT_IDENTIFICATION_SEQUENCE,
                ),
                dimension(
                    ctx,
                    tags::IMAGE_POSITION_PATIENT,
                    tags::PLANE_POSITION_SEQUENCE,
                ),
            ],
        ),
        sequence(
            tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE,
            vec![shared(geometry)],
        ),
        sequence(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE, per_frame),
        sequence(
            tags::REFERENCED_SERIES_SEQUENCE,
            vec![InMemDicomObject::from_element_iter([
                element(tags::SERIES_INSTANCE_UID, VR::UI, ctx.source_series_uid),
                sequence(
                    tags::REFERENCED_INSTANCE_SEQUENCE,
                    slices.iter().map(|s| reference(&s.source)).collect(),
                ),
            ])],
        ),
        DataElement::new(
            tags::PIXEL_DATA,
            VR::OB,
            PrimitiveValue::U8(pad(bits).into()),
        ),
    ]);
    elements.extend(ctx.study.elements());
    elements.extend(equipment());
    to_part10(
        InMemDicomObject::from_element_iter(elements),
        SOP_CLASS_UID,
        ctx.sop_instance_uid,
    )
}

/// The frames, segment by segment and slice by slice within each: their bits packed
/// (first pixel in the lowest bit, frames back to back) and their functional groups.
fn frames_of(geometry: &SegGeometry, slices: &[SegSlice]) -> (Vec<u8>, Vec<InMemDicomObject>) {
    let frames = SEGMENTS.len() * slices.len();
    let mut bits = vec![0u8; (frames * geometry.rows * geometry.columns).div_ceil(8)];
    let mut per_frame = Vec::with_capacity(frames);
    let mut bit = 0usize;
    for (number, ..) in SEGMENTS {
        for (k, s) in slices.iter().enumerate() {
            let (plane, value) = match number {
                1 => (&s.lung, RIGHT_LUNG),
                2 => (&s.lung, LEFT_LUNG),
                3 => (&s.lesion, GROUND_GLASS_LABEL),
                _ => (&s.lesion, CONSOLIDATION_LABEL),
            };
            for &v in plane.iter() {
                if v == value {
                    bits[bit / 8] |= 1 << (bit % 8);
                }
                bit += 1;
            }
            per_frame.push(frame_item(number, k as u32 + 1, s));
        }
    }
    (bits, per_frame)
}

fn pad(mut v: Vec<u8>) -> Vec<u8> {
    if v.len() % 2 == 1 {
        v.push(0);
    }
    v
}

fn segment_item(s: &(u16, &str, Code, Code, Option<Code>)) -> InMemDicomObject {
    let (number, label, category, kind, modifier) = *s;
    let mut type_item = code_elements(kind);
    if let Some(m) = modifier {
        type_item.push(sequence(
            tags::SEGMENTED_PROPERTY_TYPE_MODIFIER_CODE_SEQUENCE,
            vec![InMemDicomObject::from_element_iter(code_elements(m))],
        ));
    }
    let mut e = vec![
        us(tags::SEGMENT_NUMBER, number),
        element(tags::SEGMENT_LABEL, VR::LO, label),
        element(tags::SEGMENT_ALGORITHM_TYPE, VR::CS, "AUTOMATIC"),
        element(tags::SEGMENT_ALGORITHM_NAME, VR::LO, "lungwatch"),
        sequence(
            tags::SEGMENTED_PROPERTY_CATEGORY_CODE_SEQUENCE,
            vec![InMemDicomObject::from_element_iter(code_elements(category))],
        ),
        sequence(
            tags::SEGMENTED_PROPERTY_TYPE_CODE_SEQUENCE,
            vec![InMemDicomObject::from_element_iter(type_item)],
        ),
    ];
    if modifier.is_none() {
        e.push(sequence(
            tags::ANATOMIC_REGION_SEQUENCE,
            vec![InMemDicomObject::from_element_iter(code_elements(LUNG))],
        ));
    }
    InMemDicomObject::from_element_iter(e)
}

fn dimension(ctx: &SegContext, index: Tag, group: Tag) -> InMemDicomObject {
    InMemDicomObject::from_element_iter([
        element(
            tags::DIMENSION_ORGANIZATION_UID,
            VR::UI,
            ctx.dimension_organization_uid,
        ),
        DataElement::new(
            tags::DIMENSION_INDEX_POINTER,
            VR::AT,
            PrimitiveValue::Tags(vec![index].into()),
        ),
        DataElement::new(
            tags::FUNCTIONAL_GROUP_POINTER,
            VR::AT,
            PrimitiveValue::Tags(vec![group].into()),
        ),
    ])
}

fn shared(g: &SegGeometry) -> InMemDicomObject {
    let mut measures = vec![ds(tags::PIXEL_SPACING, &g.pixel_spacing)];
    if let Some(t) = g.slice_thickness {
        measures.push(ds(tags::SLICE_THICKNESS, &[t]));
    }
    InMemDicomObject::from_element_iter([
        sequence(
            tags::PIXEL_MEASURES_SEQUENCE,
            vec![InMemDicomObject::from_element_iter(measures)],
        ),
        sequence(
            tags::PLANE_ORIENTATION_SEQUENCE,
            vec![InMemDicomObject::from_element_iter([ds(
                tags::IMAGE_ORIENTATION_PATIENT,
                &g.image_orientation,
            )])],
        ),
    ])
}

fn frame_item(segment: u16, slice_index: u32, s: &SegSlice) -> InMemDicomObject {
    let mut source = reference(&s.source);
    source.put(sequence(
        tags::PURPOSE_OF_REFERENCE_CODE_SEQUENCE,
        vec![InMemDicomObject::from_element_iter(code_elements((
            "121322",
            "DCM",
            "Source image for image processing operation",
        )))],
    ));
    // Each frame is its source slice's own grid, pixel for pixel: readers (highdicom) map
    // frames to source images only when this says so.
    source.put(element(tags::SPATIAL_LOCATIONS_PRESERVED, VR::CS, "YES"));
    InMemDicomObject::from_element_iter([
        sequence(
            tags::FRAME_CONTENT_SEQUENCE,
            vec![InMemDicomObject::from_element_iter([DataElement::new(
                tags::DIMENSION_INDEX_VALUES,
                VR::UL,
                PrimitiveValue::U32(vec![segment as u32, slice_index].into()),
            )])],
        ),
        sequence(
            tags::PLANE_POSITION_SEQUENCE,
            vec![InMemDicomObject::from_element_iter([ds(
                tags::IMAGE_POSITION_PATIENT,
                &s.image_position,
            )])],
        ),
        sequence(
            tags::DERIVATION_IMAGE_SEQUENCE,
            vec![InMemDicomObject::from_element_iter([
                sequence(tags::SOURCE_IMAGE_SEQUENCE, vec![source]),
                sequence(
                    tags::DERIVATION_CODE_SEQUENCE,
                    vec![InMemDicomObject::from_element_iter(code_elements((
                        "113076",
                        "DCM",
                        "Segmentation",
                    )))],
                ),
            ])],
        ),
        sequence(
            tags::SEGMENT_IDENTIFICATION_SEQUENCE,
            vec![InMemDicomObject::from_element_iter([us(
                tags::REFERENCED_SEGMENT_NUMBER,
                segment,
            )])],
        ),
    ])
}

fn reference(s: &SourceRef) -> InMemDicomObject {
    InMemDicomObject::from_element_iter([
        element(tags::REFERENCED_SOP_CLASS_UID, VR::UI, &s.sop_class_uid),
        element(
            tags::REFERENCED_SOP_INSTANCE_UID,
            VR::UI,
            &s.sop_instance_uid,
        ),
    ])
}

fn code_elements(c: Code) -> Vec<InMemElement> {
    vec![
        element(tags::CODE_VALUE, VR::SH, c.0),
        element(tags::CODING_SCHEME_DESIGNATOR, VR::SH, c.1),
        element(tags::CODE_MEANING, VR::LO, c.2),
    ]
}

fn sequence(tag: Tag, items: Vec<InMemDicomObject>) -> InMemElement {
    DataElement::new(tag, VR::SQ, DataSetSequence::from(items))
}

/// Decimal strings that read back as exactly `values` (the shortest round-trip form),
/// within the 16 characters of DS.
fn ds(tag: Tag, values: &[f64]) -> InMemElement {
    let strs: Vec<String> = values
        .iter()
        .map(|v| {
            let s = format!("{v}");
            if s.len() <= 16 {
                s
            } else {
                let whole = format!("{v:.0}").len();
                format!("{v:.*}", 16usize.saturating_sub(whole + 1).min(10))
            }
        })
        .collect();
    DataElement::new(
        tag,
        VR::DS,
        PrimitiveValue::Strs(strs.into_iter().collect()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planes_map_back_to_the_source_pixel_order() {
        // 2×3 plane, values = index.
        let plane: Vec<u8> = (0..6).collect();
        assert_eq!(source_plane(&plane, 2, 3, false, false), plane);
        assert_eq!(
            source_plane(&plane, 2, 3, false, true),
            vec![2, 1, 0, 5, 4, 3]
        );
        assert_eq!(
            source_plane(&plane, 2, 3, true, false),
            vec![3, 4, 5, 0, 1, 2]
        );
        // A source stored with rows running anterior → posterior and columns patient
        // left → right is mirrored in columns by the trained orientation (row direction
        // +x) and must be mirrored back.
        let source = [-1.0, 0.0, 0.0, 0.0, 1.0, 0.0];
        assert_eq!(
            mirrored(source, [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]),
            (false, true)
        );
        assert_eq!(
            mirrored(
                [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
                [1.0, 0.0, 0.0],
                [0.0, 1.0, 0.0]
            ),
            (false, false)
        );
    }

    /// Two 4×4 slices with one pixel of each label: the bits land in the right frames,
    /// and dciodvfy (skipped without dicom3tools) finds no error.
    #[test]
    fn a_small_segmentation_is_valid_and_packs_each_label_into_its_frame() {
        use crate::objects::UidMaker;
        let uids = UidMaker::new("2.25", "seg test");
        let study = PatientStudy {
            patient_id: Some("P-1".into()),
            study_instance_uid: "1.2.3.4".into(),
            study_date: Some("20240101".into()),
            study_time: Some("101500".into()),
            study_id: Some("1".into()),
            ..Default::default()
        };
        let series = ResultSeries {
            series_instance_uid: uids.uid("seg-series"),
            series_number: 9801,
        };
        let geometry = SegGeometry {
            rows: 4,
            columns: 4,
            image_orientation: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
            pixel_spacing: [0.7, 0.7],
            slice_thickness: Some(2.5),
            frame_of_reference_uid: uids.uid("for"),
        };
        let slice = |k: u8| {
            let mut lung = vec![0u8; 16];
            let mut lesion = vec![0u8; 16];
            lung[k as usize] = RIGHT_LUNG;
            lung[8 + k as usize] = LEFT_LUNG;
            lesion[4] = GROUND_GLASS_LABEL;
            lesion[15] = CONSOLIDATION_LABEL;
            SegSlice {
                source: SourceRef {
                    sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
                    sop_instance_uid: format!("1.2.3.4.0.{}", k + 1),
                },
                image_position: [-100.0, -100.0, 2.5 * k as f64],
                lung,
                lesion,
            }
        };
        let slices = [slice(0), slice(1)];
        let sop = uids.uid("seg");
        let dims = uids.uid("dims");
        let bytes = segmentation(
            &geometry,
            &slices,
            &SegContext {
                study: &study,
                series: &series,
                sop_instance_uid: &sop,
                dimension_organization_uid: &dims,
                source_series_uid: "1.2.3.4.0",
                content_date_time: ("20240102".into(), "120000".into()),
            },
        );
        let obj = crate::dicom::read::parse(&bytes, crate::dicom::read::Extent::Full).unwrap();
        let pixels = obj.element(tags::PIXEL_DATA).unwrap().to_bytes().unwrap();
        let set: Vec<usize> = (0..8 * 16)
            .filter(|b| pixels[b / 8] & (1 << (b % 8)) != 0)
            .collect();
        // Frames: segment 1 slices 0,1; segment 2 slices 0,1; then 3 and 4.
        assert_eq!(
            set,
            vec![0, 16 + 1, 32 + 8, 48 + 9, 64 + 4, 80 + 4, 96 + 15, 112 + 15]
        );
        if std::process::Command::new("dciodvfy")
            .arg("-version")
            .output()
            .is_err()
        {
            eprintln!("SKIPPED dciodvfy check: dicom3tools is not installed");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg.dcm");
        std::fs::write(&path, &bytes).unwrap();
        let out = std::process::Command::new("dciodvfy")
            .arg(&path)
            .output()
            .unwrap();
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !report.lines().any(|l| l.starts_with("Error")),
            "dciodvfy:\n{report}"
        );
        println!("dciodvfy on a segmentation:\n{report}");
    }

    #[test]
    fn decimal_strings_read_back_exactly() {
        // Values read from DS strings (at most 16 characters) come back exactly.
        let e = ds(tags::IMAGE_POSITION_PATIENT, &[-180.5, -249.51171875, 1e-3]);
        let v = e.to_multi_float64().unwrap();
        assert_eq!(v, vec![-180.5, -249.51171875, 1e-3]);
        let long = ds(tags::SLICE_THICKNESS, &[12345.678901234567]);
        assert!((long.to_multi_float64().unwrap()[0] - 12345.678901234567).abs() < 1e-6);
        for s in e
            .to_multi_str()
            .unwrap()
            .iter()
            .chain(long.to_multi_str().unwrap().iter())
        {
            assert!(s.len() <= 16, "{s}");
        }
    }
}
