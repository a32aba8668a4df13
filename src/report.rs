//! The result of analysing one series: what `lungwatch analyze --json` prints, what the
//! worker stores (as JSON, in `results.report_json`) and what the web page renders.
//!
//! Plain data and serde, nothing else: `analysis` fills it in, and `db`, `web`, `objects`
//! and the commands read it without pulling in the analysis (tract). The stored layout
//! is versioned by `db::stored` (`Document for SeriesReport`), whose tests pin it.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SeriesReport {
    pub series_instance_uid: String,
    pub study_instance_uid: Option<String>,
    pub patient_id: Option<String>,
    pub patient_name: Option<String>,
    /// DICOM DA, YYYYMMDD, as received.
    pub study_date: Option<String>,
    pub accession_number: Option<String>,
    pub series_description: Option<String>,
    pub slice_count: usize,
    /// Row spacing, column spacing and slice step, in mm.
    pub spacing_mm: [f64; 3],
    pub probabilities: Probabilities,
    pub top_class: Class,
    pub lung_volume_ml: Sides,
    pub lesion_volume_ml: f64,
    pub ggo_volume_ml: f64,
    pub consolidation_volume_ml: f64,
    pub affected_ratio: AffectedRatio,
    /// Share of lesion voxels the lesion model labels ground-glass (0 when no lesion).
    pub ggo_share: f64,
    /// Share of lesion voxels the lesion model labels consolidation (0 when no lesion).
    pub consolidation_share: f64,
    /// Both lungs hold at least `BILATERAL_MIN_RATIO` of their volume as lesion.
    pub bilateral: bool,
    /// Share of lesion voxels within `peripheral_mm` of the lung surface, in-plane.
    pub peripheral_share: f64,
    pub peripheral_mm: f64,
    pub zones: Zones,
    /// Each zone's 0–4 score, from which `severity_score` is summed. Absent in reports of
    /// stored format 1: `db::stored` fills it in from `zones` when it reads one.
    #[serde(default)]
    pub zone_scores: ZoneScores,
    /// Sum over the six zones of 0 (none, or under `below_threshold.zone_min_ratio`),
    /// 1 (<25 %), 2 (<50 %), 3 (<75 %), 4 (>=75 %).
    pub severity_score: u8,
    /// What the false-positive rules left out of the figures above. Absent in reports
    /// stored before the rules existed (then all zero).
    #[serde(default)]
    pub below_threshold: BelowThreshold,
    /// The classifier's input, by the names the manifest gives.
    pub features: Vec<(String, f64)>,
    pub models: Vec<ModelRef>,
    pub timings_ms: Timings,
    /// Non-fatal observations a reader must see (gaps, no lung found, ...).
    pub warnings: Vec<String>,
    /// Per-slice figures (`--per-slice`), inferior to superior.
    #[serde(rename = "slices", default, skip_serializing_if = "Option::is_none")]
    pub per_slice: Option<Vec<SliceFigures>>,
}

/// Findings below the reporting threshold (manifest `models.lesion_seg.postprocessing`):
/// kept so that the page can say something was seen and not counted.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct BelowThreshold {
    /// Lesion volume in components smaller than `min_component_ml`, removed from the mask.
    pub lesion_ml: f64,
    /// Number of those components.
    pub components: u64,
    pub min_component_ml: f64,
    /// Zones holding lesion under `zone_min_ratio`: they score 0.
    pub zones: u8,
    pub zone_min_ratio: f64,
}

impl BelowThreshold {
    /// One line saying what the false-positive rules left out of the figures, or None
    /// when nothing was (or the report predates the rules).
    pub fn line(&self) -> Option<String> {
        let mut parts = Vec::new();
        if self.components > 0 {
            parts.push(format!(
                "{:.1} mL of possible lesion in {} component{} smaller than {} mL",
                self.lesion_ml,
                self.components,
                if self.components == 1 { "" } else { "s" },
                self.min_component_ml
            ));
        }
        if self.zones > 0 {
            parts.push(format!(
                "{} zone{} with lesion under {} % (scored 0)",
                self.zones,
                if self.zones == 1 { "" } else { "s" },
                self.zone_min_ratio * 100.0
            ));
        }
        (!parts.is_empty()).then(|| {
            format!(
                "Below the reporting threshold, not counted above: {}.",
                parts.join("; ")
            )
        })
    }
}

/// The classifier's three classes, in its output order. One vocabulary for the whole
/// product: reports, the database and the labels CSV name them by `as_str` ("covid19",
/// "other_pneumonia", "normal"), the model manifest by `manifest_label`, people by `label`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    Covid19,
    OtherPneumonia,
    Normal,
}

impl Class {
    /// In the classifier's output order (index = output position).
    pub const ALL: [Class; 3] = [Class::Covid19, Class::OtherPneumonia, Class::Normal];

    pub fn as_str(self) -> &'static str {
        match self {
            Class::Covid19 => "covid19",
            Class::OtherPneumonia => "other_pneumonia",
            Class::Normal => "normal",
        }
    }

    pub fn parse(name: &str) -> Option<Class> {
        Class::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// Position in `ALL` and in the classifier's output.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The label `models/manifest.toml` gives the classifier output.
    pub fn manifest_label(self) -> &'static str {
        match self {
            Class::Covid19 => "covid19_pneumonia",
            Class::OtherPneumonia => "common_pneumonia",
            Class::Normal => "normal_other",
        }
    }

    /// For people: the page, the SR, the reports' tables.
    pub fn label(self) -> &'static str {
        match self {
            Class::Covid19 => "COVID-19 pneumonia",
            Class::OtherPneumonia => "Other pneumonia",
            Class::Normal => "Normal / other",
        }
    }
}

impl std::fmt::Display for Class {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Probabilities {
    pub covid19: f64,
    pub other_pneumonia: f64,
    pub normal: f64,
}

impl Probabilities {
    pub fn of(&self, class: Class) -> f64 {
        match class {
            Class::Covid19 => self.covid19,
            Class::OtherPneumonia => self.other_pneumonia,
            Class::Normal => self.normal,
        }
    }
}

/// The 0–4 score of one zone from its affected ratio, as the severity score (0–24) adds
/// them up; a zone under `min_ratio` (the manifest's `zone_min_ratio`) scores 0. The one
/// definition: the analysis scores with it and the study page shows it.
pub fn zone_score(ratio: f64, min_ratio: f64) -> u8 {
    match ratio {
        r if r <= 0.0 || r < min_ratio => 0,
        r if r < 0.25 => 1,
        r if r < 0.5 => 2,
        r if r < 0.75 => 3,
        _ => 4,
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Sides {
    pub left: f64,
    pub right: f64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct AffectedRatio {
    pub total: f64,
    pub left: f64,
    pub right: f64,
}

/// Affected ratio (lesion / lung volume) of each third of each lung, from inferior to
/// superior: lower, middle, upper.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Zones {
    pub right_upper: f64,
    pub right_middle: f64,
    pub right_lower: f64,
    pub left_upper: f64,
    pub left_middle: f64,
    pub left_lower: f64,
}

/// The 0–4 score of each zone (`zone_score`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct ZoneScores {
    pub right_upper: u8,
    pub right_middle: u8,
    pub right_lower: u8,
    pub left_upper: u8,
    pub left_middle: u8,
    pub left_lower: u8,
}

impl ZoneScores {
    /// The scores of `zones` under the manifest's `zone_min_ratio`.
    pub fn of(zones: &Zones, min_ratio: f64) -> Self {
        let score = |r| zone_score(r, min_ratio);
        ZoneScores {
            right_upper: score(zones.right_upper),
            right_middle: score(zones.right_middle),
            right_lower: score(zones.right_lower),
            left_upper: score(zones.left_upper),
            left_middle: score(zones.left_middle),
            left_lower: score(zones.left_lower),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelRef {
    pub name: String,
    pub version: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Timings {
    pub decode: u64,
    pub preprocess: u64,
    pub inference: u64,
    pub postprocess: u64,
    pub total: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SliceFigures {
    pub instance_number: Option<i64>,
    /// Position along the slice normal (Image Position (Patient) projected), in mm.
    pub z_mm: f64,
    pub lung_mm2: f64,
    pub lesion_mm2: f64,
}

/// Artifacts written beside a result, relative to its result folder.
pub const LABELS_FILE: &str = "labels.nii.gz";
pub const CORONAL_PREVIEW: &str = "coronal.png";
/// Axial previews are `axial-<k>.png`, k = 0.. in inferior-to-superior order.
pub fn axial_preview_name(k: usize) -> String {
    format!("axial-{k}.png")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_scores_follow_the_severity_rule_and_classes_name_their_probability() {
        assert_eq!(
            [0.0, 0.01, 0.25, 0.49, 0.5, 0.75, 1.0].map(|r| zone_score(r, 0.0)),
            [0, 1, 2, 2, 3, 4, 4]
        );
        assert_eq!([0.004, 0.01].map(|r| zone_score(r, 0.01)), [0, 1]);
        let p = Probabilities {
            covid19: 0.1,
            other_pneumonia: 0.2,
            normal: 0.7,
        };
        assert_eq!(Class::ALL.map(|c| p.of(c)), [0.1, 0.2, 0.7]);
    }

    #[test]
    fn below_threshold_findings_get_one_line() {
        assert_eq!(BelowThreshold::default().line(), None);
        let t = BelowThreshold {
            lesion_ml: 1.24,
            components: 14,
            min_component_ml: 0.25,
            zones: 1,
            zone_min_ratio: 0.01,
        };
        assert_eq!(
            t.line().unwrap(),
            "Below the reporting threshold, not counted above: 1.2 mL of possible lesion in \
             14 components smaller than 0.25 mL; 1 zone with lesion under 1 % (scored 0)."
        );
    }

    #[test]
    fn reports_stored_before_the_below_threshold_field_still_parse() {
        let old = r#"{"series_instance_uid":"1.2","study_instance_uid":null,"patient_id":null,
            "patient_name":null,"study_date":null,"accession_number":null,
            "series_description":null,"slice_count":3,"spacing_mm":[0.7,0.7,2.0],
            "probabilities":{"covid19":0.1,"other_pneumonia":0.2,"normal":0.7},
            "top_class":"normal","lung_volume_ml":{"left":1800.0,"right":2100.0},
            "lesion_volume_ml":3.4,"ggo_volume_ml":1.1,"consolidation_volume_ml":2.3,
            "affected_ratio":{"total":0.001,"left":0.001,"right":0.001},"ggo_share":0.3,
            "consolidation_share":0.7,"bilateral":false,"peripheral_share":0.5,
            "peripheral_mm":20.0,"zones":{"right_upper":0.0,"right_middle":0.0,
            "right_lower":0.001,"left_upper":0.0,"left_middle":0.0,"left_lower":0.002},
            "severity_score":2,"features":[["affected_ratio",0.001]],"models":[],
            "timings_ms":{"decode":1,"preprocess":1,"inference":1,"postprocess":1,"total":4},
            "warnings":[]}"#;
        let r: SeriesReport = serde_json::from_str(old).expect("old report JSON parses");
        assert_eq!(r.below_threshold, BelowThreshold::default());
        assert_eq!(r.severity_score, 2);
        let again: SeriesReport =
            serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(again, r);
    }
}
