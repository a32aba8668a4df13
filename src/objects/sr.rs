//! The analysis as a DICOM SR Measurement Report (TID 1500) in a Comprehensive SR: the
//! figures of `SeriesReport` as coded, numeric content items a PACS viewer can list.
//!
//! Structure: the report container with its language, the device observer (lungwatch)
//! and the procedure reported (CT of chest); the image library (every source slice); the
//! imaging measurements, one measurement group (TID 1411, volumetric ROI) per finding:
//! right lung, left lung, both lungs (with zones, severity and the class probabilities)
//! and the lesions (ground-glass and consolidation shares). Each group identifies the
//! algorithm (TID 4019: lungwatch, its version, each model's name, version and sha256)
//! and the source series it was segmented on. No SEG exists yet, so no group references
//! a segment. Codes are DCM and SNOMED CT where a standard concept exists; the rest are in
//! lungwatch's local scheme `99LUNGWATCH` (a `99` prefix marks a private scheme).

use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;
use dicom_object::mem::InMemElement;

use super::sc::ResultSeries;
use super::{DISCLAIMER, PatientStudy, SourceRef, element, equipment, result_instance, to_part10};
use crate::report::SeriesReport;

/// Comprehensive SR Storage.
pub const SOP_CLASS_UID: &str = uids::COMPREHENSIVE_SR_STORAGE;
pub const SERIES_DESCRIPTION: &str = "lungwatch measurement report (decision support only)";
const LOCAL: &str = "99LUNGWATCH";

/// A coded concept: (code value, coding scheme designator, code meaning).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Code(pub &'static str, pub &'static str, pub &'static str);

const REPORT: Code = Code("126000", "DCM", "Imaging Measurement Report");
const LANGUAGE: Code = Code("121049", "DCM", "Language of Content Item and Descendants");
const ENGLISH: Code = Code("en", "RFC5646", "English");
const OBSERVER_TYPE: Code = Code("121005", "DCM", "Observer Type");
const DEVICE: Code = Code("121007", "DCM", "Device");
const DEVICE_UID: Code = Code("121012", "DCM", "Device Observer UID");
const DEVICE_NAME: Code = Code("121013", "DCM", "Device Observer Name");
const DEVICE_MANUFACTURER: Code = Code("121014", "DCM", "Device Observer Manufacturer");
const PROCEDURE_REPORTED: Code = Code("121058", "DCM", "Procedure reported");
const CT_CHEST: Code = Code("169069000", "SCT", "CT of chest");
const IMAGE_LIBRARY: Code = Code("111028", "DCM", "Image Library");
const IMAGE_LIBRARY_GROUP: Code = Code("126200", "DCM", "Image Library Group");
const IMAGING_MEASUREMENTS: Code = Code("126010", "DCM", "Imaging Measurements");
const QUALITATIVE: Code = Code("C0034375", "UMLS", "Qualitative Evaluations");
const MEASUREMENT_GROUP: Code = Code("125007", "DCM", "Measurement Group");
const TRACKING_ID: Code = Code("112039", "DCM", "Tracking Identifier");
const TRACKING_UID: Code = Code("112040", "DCM", "Tracking Unique Identifier");
const FINDING: Code = Code("121071", "DCM", "Finding");
const FINDING_SITE: Code = Code("363698007", "SCT", "Finding Site");
const SOURCE_SERIES: Code = Code("121232", "DCM", "Source series for segmentation");
const ALGORITHM_NAME: Code = Code("111001", "DCM", "Algorithm Name");
const ALGORITHM_VERSION: Code = Code("111003", "DCM", "Algorithm Version");
const ALGORITHM_PARAMETERS: Code = Code("111002", "DCM", "Algorithm Parameters");
const VOLUME: Code = Code("118565006", "SCT", "Volume");
const LUNG: Code = Code("39607008", "SCT", "Lung");
const RIGHT_LUNG: Code = Code("3341006", "SCT", "Right lung");
const LEFT_LUNG: Code = Code("44029006", "SCT", "Left lung");
const ML: Code = Code("ml", "UCUM", "milliliter");
const PERCENT: Code = Code("%", "UCUM", "percent");
const SCORE: Code = Code("{score}", "UCUM", "score");
const LESION: Code = Code("LW-LESION", LOCAL, "Ground-glass opacity and consolidation");
const AFFECTED: Code = Code(
    "LW-AR",
    LOCAL,
    "Affected ratio (lesion volume / lung volume)",
);
const GGO_SHARE: Code = Code("LW-GGO", LOCAL, "Ground-glass share of lesion volume");
const CONS_SHARE: Code = Code("LW-CONS", LOCAL, "Consolidation share of lesion volume");
const SEVERITY: Code = Code("LW-SEV", LOCAL, "Severity score (0-24, 0-4 per zone)");
const P_COVID: Code = Code("LW-P-COVID", LOCAL, "Probability of COVID-19 pneumonia");
const P_OTHER: Code = Code("LW-P-OTHER", LOCAL, "Probability of other pneumonia");
const P_NORMAL: Code = Code("LW-P-NORMAL", LOCAL, "Probability of normal or other");
const DISCLAIMER_CODE: Code = Code("LW-NOTE", LOCAL, "Note");
const WARNING_CODE: Code = Code("LW-WARNING", LOCAL, "Analysis warning");
const ZONES: [(&str, &str); 6] = [
    ("LW-AR-RU", "Affected ratio, right upper zone"),
    ("LW-AR-RM", "Affected ratio, right middle zone"),
    ("LW-AR-RL", "Affected ratio, right lower zone"),
    ("LW-AR-LU", "Affected ratio, left upper zone"),
    ("LW-AR-LM", "Affected ratio, left middle zone"),
    ("LW-AR-LL", "Affected ratio, left lower zone"),
];

/// How an item relates to its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rel {
    Contains,
    HasObsContext,
    HasConceptMod,
}

impl Rel {
    fn as_str(self) -> &'static str {
        match self {
            Rel::Contains => "CONTAINS",
            Rel::HasObsContext => "HAS OBS CONTEXT",
            Rel::HasConceptMod => "HAS CONCEPT MOD",
        }
    }
}

/// A content item of the tree.
#[derive(Debug, Clone)]
enum Item {
    Container(Code, Vec<(Rel, Item)>),
    Text(Code, String),
    Coded(Code, Code),
    Num(Code, f64, Code),
    UidRef(Code, String),
    Image(SourceRef),
}

/// What the report needs beyond the analysis figures.
#[derive(Debug, Clone)]
pub struct ReportContext<'a> {
    pub study: &'a PatientStudy,
    pub series: &'a ResultSeries,
    pub sop_instance_uid: &'a str,
    /// The analysed series and every one of its instances, as the image library.
    pub source_series_uid: &'a str,
    pub sources: &'a [SourceRef],
    /// UIDs of the measurement groups' tracking, one per group (4).
    pub tracking_uids: [String; 4],
    /// The device observer: lungwatch's implementation UID.
    pub device_uid: &'a str,
    /// (DA, TM) of the content.
    pub content_date_time: (String, String),
}

/// The Part 10 bytes of the measurement report.
pub fn measurement_report(report: &SeriesReport, ctx: &ReportContext) -> Vec<u8> {
    let root = content_tree(report, ctx);
    let Item::Container(concept, children) = root else {
        unreachable!("the root is a container")
    };
    let mut elements = result_instance(
        SOP_CLASS_UID,
        ctx.sop_instance_uid,
        "SR",
        ctx.series,
        SERIES_DESCRIPTION,
        1,
    );
    elements.extend([
        element(tags::CONTENT_DATE, VR::DA, &ctx.content_date_time.0),
        element(tags::CONTENT_TIME, VR::TM, &ctx.content_date_time.1),
        element(tags::TIMEZONE_OFFSET_FROM_UTC, VR::SH, "+0000"),
        element(tags::COMPLETION_FLAG, VR::CS, "COMPLETE"),
        element(tags::VERIFICATION_FLAG, VR::CS, "UNVERIFIED"),
        sequence(tags::REFERENCED_PERFORMED_PROCEDURE_STEP_SEQUENCE, vec![]),
        sequence(tags::PERFORMED_PROCEDURE_CODE_SEQUENCE, vec![]),
        sequence(
            tags::CURRENT_REQUESTED_PROCEDURE_EVIDENCE_SEQUENCE,
            vec![evidence(ctx)],
        ),
        // Declares the private coding scheme the local concepts are in.
        sequence(
            tags::CODING_SCHEME_IDENTIFICATION_SEQUENCE,
            vec![InMemDicomObject::from_element_iter([
                element(tags::CODING_SCHEME_DESIGNATOR, VR::SH, LOCAL),
                element(
                    tags::CODING_SCHEME_NAME,
                    VR::ST,
                    "lungwatch local concepts (measurements without a standard code)",
                ),
                element(
                    tags::CODING_SCHEME_RESPONSIBLE_ORGANIZATION,
                    VR::ST,
                    "lungwatch",
                ),
            ])],
        ),
        element(tags::VALUE_TYPE, VR::CS, "CONTAINER"),
        sequence(tags::CONCEPT_NAME_CODE_SEQUENCE, vec![code_item(concept)]),
        element(tags::CONTINUITY_OF_CONTENT, VR::CS, "SEPARATE"),
        sequence(
            tags::CONTENT_TEMPLATE_SEQUENCE,
            vec![InMemDicomObject::from_element_iter([
                element(tags::MAPPING_RESOURCE, VR::CS, "DCMR"),
                element(tags::TEMPLATE_IDENTIFIER, VR::CS, "1500"),
            ])],
        ),
        sequence(
            tags::CONTENT_SEQUENCE,
            children.iter().map(|(r, i)| to_object(*r, i)).collect(),
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

fn content_tree(r: &SeriesReport, ctx: &ReportContext) -> Item {
    use Rel::*;
    let measurements = measurement_groups(r, ctx);
    // The disclaimer, then each warning of the analysis (geometry, low burden), so that a
    // reader in the PACS sees what the page shows.
    let qualitative = std::iter::once(DISCLAIMER.to_string())
        .map(|text| (Contains, Item::Text(DISCLAIMER_CODE, text)))
        .chain(
            r.warnings
                .iter()
                .map(|w| (Contains, Item::Text(WARNING_CODE, w.clone()))),
        )
        .collect();
    let library = ctx
        .sources
        .iter()
        .map(|s| (Contains, Item::Image(s.clone())))
        .collect();
    Item::Container(
        REPORT,
        vec![
            (HasConceptMod, Item::Coded(LANGUAGE, ENGLISH)),
            (HasObsContext, Item::Coded(OBSERVER_TYPE, DEVICE)),
            (
                HasObsContext,
                Item::UidRef(DEVICE_UID, ctx.device_uid.to_string()),
            ),
            (
                HasObsContext,
                Item::Text(DEVICE_NAME, "lungwatch".to_string()),
            ),
            (
                HasObsContext,
                Item::Text(DEVICE_MANUFACTURER, super::MANUFACTURER.to_string()),
            ),
            (HasConceptMod, Item::Coded(PROCEDURE_REPORTED, CT_CHEST)),
            (
                Contains,
                Item::Container(
                    IMAGE_LIBRARY,
                    vec![(Contains, Item::Container(IMAGE_LIBRARY_GROUP, library))],
                ),
            ),
            (
                Contains,
                Item::Container(IMAGING_MEASUREMENTS, measurements),
            ),
            (Contains, Item::Container(QUALITATIVE, qualitative)),
        ],
    )
}

/// TID 1411 volumetric groups: the right lung, the left lung, both lungs (with zones,
/// severity and class probabilities) and the lesions.
fn measurement_groups(r: &SeriesReport, ctx: &ReportContext) -> Vec<(Rel, Item)> {
    use Rel::*;
    let pct = |fraction: f64| fraction * 100.0;
    let group = |k: usize, label: &str, finding: Code, mut rest: Vec<(Rel, Item)>| {
        let mut items = vec![
            (
                HasObsContext,
                Item::Text(TRACKING_ID, format!("lungwatch {label}")),
            ),
            (
                HasObsContext,
                Item::UidRef(TRACKING_UID, ctx.tracking_uids[k].clone()),
            ),
            (Contains, Item::Coded(FINDING, finding)),
        ];
        // A source series UID that is not a valid UID (some exports use bare UUIDs) makes
        // SR readers refuse the whole document (dsrdump does): left out, the image library
        // still names every source instance.
        if valid_uid(ctx.source_series_uid) {
            items.push((
                Contains,
                Item::UidRef(SOURCE_SERIES, ctx.source_series_uid.to_string()),
            ));
        }
        items.extend(algorithm(r));
        items.append(&mut rest);
        (Contains, Item::Container(MEASUREMENT_GROUP, items))
    };
    let zones = [
        r.zones.right_upper,
        r.zones.right_middle,
        r.zones.right_lower,
        r.zones.left_upper,
        r.zones.left_middle,
        r.zones.left_lower,
    ];
    let mut lungs = vec![
        (
            Contains,
            Item::Num(VOLUME, r.lung_volume_ml.left + r.lung_volume_ml.right, ML),
        ),
        (
            Contains,
            Item::Num(AFFECTED, pct(r.affected_ratio.total), PERCENT),
        ),
    ];
    for ((code, meaning), ratio) in ZONES.iter().zip(zones) {
        lungs.push((
            Contains,
            Item::Num(Code(code, LOCAL, meaning), pct(ratio), PERCENT),
        ));
    }
    lungs.extend([
        (
            Contains,
            Item::Num(SEVERITY, r.severity_score as f64, SCORE),
        ),
        (
            Contains,
            Item::Num(P_COVID, pct(r.probabilities.covid19), PERCENT),
        ),
        (
            Contains,
            Item::Num(P_OTHER, pct(r.probabilities.other_pneumonia), PERCENT),
        ),
        (
            Contains,
            Item::Num(P_NORMAL, pct(r.probabilities.normal), PERCENT),
        ),
    ]);
    let side = |volume: f64, ratio: f64| {
        vec![
            (Contains, Item::Num(VOLUME, volume, ML)),
            (Contains, Item::Num(AFFECTED, pct(ratio), PERCENT)),
        ]
    };
    vec![
        group(
            0,
            "right lung",
            RIGHT_LUNG,
            side(r.lung_volume_ml.right, r.affected_ratio.right),
        ),
        group(
            1,
            "left lung",
            LEFT_LUNG,
            side(r.lung_volume_ml.left, r.affected_ratio.left),
        ),
        group(2, "lungs", LUNG, lungs),
        group(
            3,
            "lesions",
            LESION,
            vec![
                (HasConceptMod, Item::Coded(FINDING_SITE, LUNG)),
                (Contains, Item::Num(VOLUME, r.lesion_volume_ml, ML)),
                (Contains, Item::Num(GGO_SHARE, pct(r.ggo_share), PERCENT)),
                (
                    Contains,
                    Item::Num(CONS_SHARE, pct(r.consolidation_share), PERCENT),
                ),
            ],
        ),
    ]
}

/// TID 4019: lungwatch and each model (name, version, sha256).
fn algorithm(r: &SeriesReport) -> Vec<(Rel, Item)> {
    let mut out = vec![
        (
            Rel::HasConceptMod,
            Item::Text(ALGORITHM_NAME, "lungwatch".to_string()),
        ),
        (
            Rel::HasConceptMod,
            Item::Text(ALGORITHM_VERSION, env!("CARGO_PKG_VERSION").to_string()),
        ),
    ];
    for m in &r.models {
        out.push((
            Rel::HasConceptMod,
            Item::Text(
                ALGORITHM_PARAMETERS,
                format!("model {} {} sha256 {}", m.name, m.version, m.sha256),
            ),
        ));
    }
    out
}

fn to_object(rel: Rel, item: &Item) -> InMemDicomObject {
    let mut e = vec![element(tags::RELATIONSHIP_TYPE, VR::CS, rel.as_str())];
    let concept = |e: &mut Vec<InMemElement>, c: Code| {
        e.push(sequence(
            tags::CONCEPT_NAME_CODE_SEQUENCE,
            vec![code_item(c)],
        ));
    };
    match item {
        Item::Container(c, children) => {
            e.push(element(tags::VALUE_TYPE, VR::CS, "CONTAINER"));
            concept(&mut e, *c);
            e.push(element(tags::CONTINUITY_OF_CONTENT, VR::CS, "SEPARATE"));
            e.push(sequence(
                tags::CONTENT_SEQUENCE,
                children.iter().map(|(r, i)| to_object(*r, i)).collect(),
            ));
        }
        Item::Text(c, text) => {
            e.push(element(tags::VALUE_TYPE, VR::CS, "TEXT"));
            concept(&mut e, *c);
            e.push(element(tags::TEXT_VALUE, VR::UT, text));
        }
        Item::Coded(c, value) => {
            e.push(element(tags::VALUE_TYPE, VR::CS, "CODE"));
            concept(&mut e, *c);
            e.push(sequence(
                tags::CONCEPT_CODE_SEQUENCE,
                vec![code_item(*value)],
            ));
        }
        Item::Num(c, value, unit) => {
            e.push(element(tags::VALUE_TYPE, VR::CS, "NUM"));
            concept(&mut e, *c);
            e.push(sequence(
                tags::MEASURED_VALUE_SEQUENCE,
                vec![InMemDicomObject::from_element_iter([
                    sequence(
                        tags::MEASUREMENT_UNITS_CODE_SEQUENCE,
                        vec![code_item(*unit)],
                    ),
                    element(tags::NUMERIC_VALUE, VR::DS, &decimal_string(*value)),
                ])],
            ));
        }
        Item::UidRef(c, uid) => {
            e.push(element(tags::VALUE_TYPE, VR::CS, "UIDREF"));
            concept(&mut e, *c);
            e.push(element(tags::UID, VR::UI, uid));
        }
        Item::Image(source) => {
            // Image library entries carry no concept name (TID 1601).
            e.push(element(tags::VALUE_TYPE, VR::CS, "IMAGE"));
            e.push(sequence(
                tags::REFERENCED_SOP_SEQUENCE,
                vec![reference(source)],
            ));
        }
    }
    InMemDicomObject::from_element_iter(e)
}

/// Every source instance, as the evidence the report was made from.
fn evidence(ctx: &ReportContext) -> InMemDicomObject {
    let series = InMemDicomObject::from_element_iter([
        element(tags::SERIES_INSTANCE_UID, VR::UI, ctx.source_series_uid),
        sequence(
            tags::REFERENCED_SOP_SEQUENCE,
            ctx.sources.iter().map(reference).collect(),
        ),
    ]);
    InMemDicomObject::from_element_iter([
        element(
            tags::STUDY_INSTANCE_UID,
            VR::UI,
            &ctx.study.study_instance_uid,
        ),
        sequence(tags::REFERENCED_SERIES_SEQUENCE, vec![series]),
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

fn code_item(c: Code) -> InMemDicomObject {
    InMemDicomObject::from_element_iter([
        element(tags::CODE_VALUE, VR::SH, c.0),
        element(tags::CODING_SCHEME_DESIGNATOR, VR::SH, c.1),
        element(tags::CODE_MEANING, VR::LO, c.2),
    ])
}

fn sequence(tag: dicom_core::Tag, items: Vec<InMemDicomObject>) -> InMemElement {
    DataElement::new(tag, VR::SQ, DataSetSequence::from(items))
}

/// PS3.5 9.1: digits and dots, no empty or zero-led component, at most 64 characters.
fn valid_uid(uid: &str) -> bool {
    uid.len() <= 64
        && uid.split('.').all(|c| {
            !c.is_empty()
                && c.bytes().all(|b| b.is_ascii_digit())
                && (c == "0" || !c.starts_with('0'))
        })
}

/// A DS value: at most 16 characters, no exponent.
fn decimal_string(v: f64) -> String {
    let v = if v.is_finite() { v } else { 0.0 };
    for decimals in (0..=4).rev() {
        let s = format!("{v:.decimals$}");
        if s.len() <= 16 {
            return s;
        }
    }
    format!("{v:.0}")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::objects::UidMaker;
    use crate::report::{AffectedRatio, Class, ModelRef, Probabilities, Sides, Timings, Zones};

    pub(crate) fn sample_report() -> SeriesReport {
        SeriesReport {
            series_instance_uid: "1.2.3.4.0".into(),
            study_instance_uid: Some("1.2.3.4".into()),
            patient_id: Some("P-1".into()),
            patient_name: Some("Doe^Jane".into()),
            study_date: Some("20240101".into()),
            accession_number: None,
            series_description: None,
            slice_count: 2,
            spacing_mm: [0.7, 0.7, 2.5],
            probabilities: Probabilities {
                covid19: 0.7,
                other_pneumonia: 0.2,
                normal: 0.1,
            },
            top_class: Class::Covid19,
            lung_volume_ml: Sides {
                left: 2000.0,
                right: 2500.5,
            },
            lesion_volume_ml: 450.25,
            ggo_volume_ml: 400.0,
            consolidation_volume_ml: 50.25,
            affected_ratio: AffectedRatio {
                total: 0.1,
                left: 0.12,
                right: 0.085,
            },
            ggo_share: 0.888,
            consolidation_share: 0.112,
            bilateral: true,
            peripheral_share: 0.7,
            peripheral_mm: 20.0,
            zones: Zones {
                right_upper: 0.01,
                right_middle: 0.05,
                right_lower: 0.2,
                left_upper: 0.02,
                left_middle: 0.1,
                left_lower: 0.3,
            },
            zone_scores: Default::default(),
            severity_score: 9,
            below_threshold: Default::default(),
            features: vec![],
            models: vec![ModelRef {
                name: "lung_seg".into(),
                version: "0.1.0".into(),
                sha256: "ab".repeat(32),
            }],
            timings_ms: Timings::default(),
            warnings: vec!["low lesion burden (0.48 % of the lung, under 1 %)".into()],
            per_slice: None,
        }
    }

    fn sample_bytes() -> Vec<u8> {
        let uids = UidMaker::new("2.25", "sr test");
        let study = PatientStudy {
            patient_name: Some("Doe^Jane".into()),
            patient_id: Some("P-1".into()),
            study_instance_uid: "1.2.3.4".into(),
            study_date: Some("20240101".into()),
            study_time: Some("101500".into()),
            study_id: Some("1".into()),
            ..Default::default()
        };
        let series = ResultSeries {
            series_instance_uid: uids.uid("sr-series"),
            series_number: 9501,
        };
        let sources = vec![
            SourceRef {
                sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
                sop_instance_uid: "1.2.3.4.0.1".into(),
            },
            SourceRef {
                sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
                sop_instance_uid: "1.2.3.4.0.2".into(),
            },
        ];
        let sop = uids.uid("sr");
        measurement_report(
            &sample_report(),
            &ReportContext {
                study: &study,
                series: &series,
                sop_instance_uid: &sop,
                source_series_uid: "1.2.3.4.0",
                sources: &sources,
                tracking_uids: [0, 1, 2, 3].map(|k| uids.uid(&format!("track-{k}"))),
                device_uid: crate::dimse::IMPLEMENTATION_CLASS_UID,
                content_date_time: ("20240102".into(), "120000".into()),
            },
        )
    }

    #[test]
    fn uid_validity() {
        assert!(valid_uid("1.2.840.10008.1.2") && valid_uid("2.25.0"));
        assert!(!valid_uid("09bc8aea-ff9c-4106-8514-294cbcf9a082"));
        assert!(!valid_uid("1.02.3") && !valid_uid("1..2") && !valid_uid(""));
    }

    #[test]
    fn decimal_strings_fit_the_vr() {
        assert_eq!(decimal_string(12.5), "12.5000");
        assert!(decimal_string(1.0e14).len() <= 16);
        assert_eq!(decimal_string(f64::NAN), "0.0000");
    }

    #[test]
    fn the_figures_are_in_the_tree() {
        let bytes = sample_bytes();
        let obj = crate::dicom::read::parse(&bytes, crate::dicom::read::Extent::Full).unwrap();
        // Walk every NUM item: (meaning, value).
        fn walk(o: &InMemDicomObject, out: &mut Vec<(String, f64)>) {
            if let Ok(items) = o.element(tags::CONTENT_SEQUENCE).map(|e| e.items()) {
                for item in items.into_iter().flatten() {
                    if let Ok(mv) = item.element(tags::MEASURED_VALUE_SEQUENCE) {
                        let m = &mv.items().unwrap()[0];
                        let v: f64 = m
                            .element(tags::NUMERIC_VALUE)
                            .unwrap()
                            .to_str()
                            .unwrap()
                            .trim()
                            .parse()
                            .unwrap();
                        let name = item
                            .element(tags::CONCEPT_NAME_CODE_SEQUENCE)
                            .unwrap()
                            .items()
                            .unwrap()[0]
                            .element(tags::CODE_MEANING)
                            .unwrap()
                            .to_str()
                            .unwrap()
                            .trim()
                            .to_string();
                        out.push((name, v));
                    }
                    walk(item, out);
                }
            }
        }
        let mut nums = Vec::new();
        walk(&obj, &mut nums);
        let find = |n: &str| {
            nums.iter()
                .filter(|(m, _)| m == n)
                .map(|(_, v)| *v)
                .collect::<Vec<_>>()
        };
        assert_eq!(find("Volume"), vec![2500.5, 2000.0, 4500.5, 450.25]);
        assert_eq!(find("Probability of COVID-19 pneumonia"), vec![70.0]);
        assert_eq!(find("Severity score (0-24, 0-4 per zone)"), vec![9.0]);
        assert_eq!(find("Affected ratio, left lower zone"), vec![30.0]);
        assert_eq!(find("Ground-glass share of lesion volume"), vec![88.8]);
    }

    fn tool(name: &str) -> bool {
        let found = std::process::Command::new(name)
            .arg("--version")
            .output()
            .is_ok();
        if !found {
            eprintln!("SKIPPED {name} check: {name} is not installed");
        }
        found
    }

    #[test]
    fn dsrdump_reads_it_and_dciodvfy_finds_no_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sr.dcm");
        std::fs::write(&path, sample_bytes()).unwrap();
        if tool("dsrdump") {
            let out = std::process::Command::new("dsrdump")
                .arg(&path)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(text.contains("Imaging Measurement Report"), "{text}");
            assert!(text.contains("Probability of COVID-19 pneumonia"), "{text}");
            assert!(text.contains("2500.5"), "{text}");
            assert!(
                text.contains("Analysis warning") && text.contains("low lesion burden (0.48 %"),
                "the analysis warnings are in the report: {text}"
            );
            println!("{text}");
        }
        if tool("dciodvfy") {
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
            println!("dciodvfy on the measurement report:\n{report}");
        }
    }
}
