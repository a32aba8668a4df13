//! The JSON that rows hold (`instances.header_json`, `results.report_json`) is a
//! compatibility promise: each document carries the version of its layout, `format`, so
//! a row written by a newer lungwatch is refused with a clear reason instead of being
//! misread, and a reader can tell which layout it has. Rows written before the field
//! existed have the first layout and read as format 1.
//!
//! Only the types declared here as a [`Document`] can be stored, each with its own
//! version: what the database keeps is an explicit list, not whatever happens to be
//! serialisable. The report is `crate::report::SeriesReport` (plain data, no tract), the
//! header `crate::dicom::InstanceHeader`.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::dicom::InstanceHeader;
use crate::report::{SeriesReport, ZoneScores};

/// A type kept as JSON in a column, and the version of the layout this build writes.
/// `upgraded` brings a value read from an older format up to the current one.
///
/// Raise `FORMAT` when a change to the type changes its JSON (a field renamed, removed,
/// or added without `#[serde(default)]`): the pinned-layout tests below fail then. The
/// older formats must still read (`from_json` sees the version first), so every row
/// already written keeps its meaning.
pub trait Document: Serialize + DeserializeOwned {
    /// Where it is stored, for messages.
    const COLUMN: &'static str;
    /// The layout version this build writes.
    const FORMAT: u32;
    /// `self` as read from a row of `format` (older than `FORMAT`), completed.
    fn upgraded(self, _format: u32) -> Self {
        self
    }
}

/// `instances.header_json`.
impl Document for InstanceHeader {
    const COLUMN: &'static str = "instances.header_json";
    const FORMAT: u32 = 1;
}

/// `results.report_json`: the report of `analyze --json`, with `format` first.
/// Format 2 added `zone_scores`; a format-1 row gets them from its zones and its
/// `zone_min_ratio`, the rule it was scored under (0 before the rule existed).
impl Document for SeriesReport {
    const COLUMN: &'static str = "results.report_json";
    const FORMAT: u32 = 2;

    fn upgraded(mut self, format: u32) -> Self {
        if format < 2 {
            self.zone_scores = ZoneScores::of(&self.zones, self.below_threshold.zone_min_ratio);
        }
        self
    }
}

fn first_format() -> u32 {
    1
}

#[derive(Serialize)]
struct Outgoing<'a, T> {
    format: u32,
    #[serde(flatten)]
    body: &'a T,
}

/// Only the version, read first: a newer layout is refused before its body is parsed.
#[derive(Deserialize)]
struct Version {
    #[serde(default = "first_format")]
    format: u32,
}

/// `value` as stored JSON, with its current format.
pub fn to_json<T: Document>(value: &T) -> serde_json::Result<String> {
    serde_json::to_string(&Outgoing {
        format: T::FORMAT,
        body: value,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(
        "stored by a newer lungwatch (format {found}, this build reads {column} up to {reads})"
    )]
    Newer {
        column: &'static str,
        found: u32,
        reads: u32,
    },
    #[error("not a readable document: {0}")]
    Json(#[from] serde_json::Error),
}

/// Reads stored JSON of any format up to the current one.
pub fn from_json<T: Document>(text: &str) -> Result<T, ReadError> {
    let version: Version = serde_json::from_str(text)?;
    if version.format > T::FORMAT {
        return Err(ReadError::Newer {
            column: T::COLUMN,
            found: version.format,
            reads: T::FORMAT,
        });
    }
    // `format` itself is an unknown field to the body's type, which ignores it.
    let value: T = serde_json::from_str(text)?;
    Ok(if version.format < T::FORMAT {
        value.upgraded(version.format)
    } else {
        value
    })
}

/// As a rusqlite error on column `column`, for row mappers.
pub fn column_error(column: usize, e: ReadError) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, Box::new(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_legacy_rows() {
        let h = InstanceHeader {
            rows: Some(512),
            modality: Some("CT".into()),
            ..Default::default()
        };
        let json = to_json(&h).unwrap();
        assert!(json.contains("\"format\":1"), "{json}");
        assert_eq!(from_json::<InstanceHeader>(&json).unwrap(), h);
        // A row written before `format` existed.
        let legacy = serde_json::to_string(&h).unwrap();
        assert_eq!(from_json::<InstanceHeader>(&legacy).unwrap(), h);
    }

    #[test]
    fn newer_and_damaged_rows_are_refused_with_a_reason() {
        let newer = r#"{"format":7,"transfer_syntax":"1.2"}"#;
        let e = from_json::<InstanceHeader>(newer).unwrap_err();
        assert!(e.to_string().contains("newer lungwatch (format 7"), "{e}");
        assert!(from_json::<InstanceHeader>("{not json").is_err());
    }

    /// A report as this build stores it.
    fn sample_report() -> SeriesReport {
        use crate::report::*;
        let zones = Zones {
            right_upper: 0.0,
            right_middle: 0.5,
            right_lower: 0.25,
            left_upper: 0.0,
            left_middle: 0.0,
            left_lower: 0.125,
        };
        SeriesReport {
            series_instance_uid: "1.2.3".into(),
            study_instance_uid: Some("1.2".into()),
            patient_id: Some("P1".into()),
            patient_name: Some("Doe^Jane".into()),
            study_date: Some("20240131".into()),
            accession_number: None,
            series_description: Some("Chest".into()),
            slice_count: 3,
            spacing_mm: [0.75, 0.75, 2.5],
            probabilities: Probabilities {
                covid19: 0.5,
                other_pneumonia: 0.25,
                normal: 0.25,
            },
            top_class: Class::Covid19,
            lung_volume_ml: Sides {
                left: 1800.0,
                right: 2100.5,
            },
            lesion_volume_ml: 3.5,
            ggo_volume_ml: 1.5,
            consolidation_volume_ml: 2.0,
            affected_ratio: AffectedRatio {
                total: 0.125,
                left: 0.0625,
                right: 0.25,
            },
            ggo_share: 0.375,
            consolidation_share: 0.625,
            bilateral: true,
            peripheral_share: 0.5,
            peripheral_mm: 20.0,
            zones,
            zone_scores: ZoneScores::of(&zones, 0.01),
            severity_score: 5,
            below_threshold: BelowThreshold {
                lesion_ml: 0.5,
                components: 2,
                min_component_ml: 0.25,
                zones: 1,
                zone_min_ratio: 0.01,
            },
            features: vec![("affected_ratio".into(), 0.125)],
            models: vec![ModelRef {
                name: "lung_seg".into(),
                version: "1".into(),
                sha256: "ab".into(),
            }],
            timings_ms: Timings {
                decode: 1,
                preprocess: 2,
                inference: 3,
                postprocess: 4,
                total: 10,
            },
            warnings: vec!["a gap".into()],
            per_slice: Some(vec![SliceFigures {
                instance_number: Some(7),
                z_mm: -12.5,
                lung_mm2: 100.0,
                lesion_mm2: 0.0,
            }]),
        }
    }

    /// `results.report_json` as format 1 wrote it (before `zone_scores`).
    const REPORT_ROW_FORMAT_1: &str = concat!(
        r#"{"format":1,"series_instance_uid":"1.2.3","study_instance_uid":"1.2","#,
        r#""patient_id":"P1","patient_name":"Doe^Jane","study_date":"20240131","#,
        r#""accession_number":null,"series_description":"Chest","slice_count":3,"#,
        r#""spacing_mm":[0.75,0.75,2.5],"#,
        r#""probabilities":{"covid19":0.5,"other_pneumonia":0.25,"normal":0.25},"#,
        r#""top_class":"covid19","lung_volume_ml":{"left":1800.0,"right":2100.5},"#,
        r#""lesion_volume_ml":3.5,"ggo_volume_ml":1.5,"consolidation_volume_ml":2.0,"#,
        r#""affected_ratio":{"total":0.125,"left":0.0625,"right":0.25},"#,
        r#""ggo_share":0.375,"consolidation_share":0.625,"bilateral":true,"#,
        r#""peripheral_share":0.5,"peripheral_mm":20.0,"#,
        r#""zones":{"right_upper":0.0,"right_middle":0.5,"right_lower":0.25,"#,
        r#""left_upper":0.0,"left_middle":0.0,"left_lower":0.125},"#,
        r#""severity_score":5,"below_threshold":{"lesion_ml":0.5,"components":2,"#,
        r#""min_component_ml":0.25,"zones":1,"zone_min_ratio":0.01},"#,
        r#""features":[["affected_ratio",0.125]],"#,
        r#""models":[{"name":"lung_seg","version":"1","sha256":"ab"}],"#,
        r#""timings_ms":{"decode":1,"preprocess":2,"inference":3,"postprocess":4,"total":10},"#,
        r#""warnings":["a gap"],"#,
        r#""slices":[{"instance_number":7,"z_mm":-12.5,"lung_mm2":100.0,"lesion_mm2":0.0}]}"#,
    );

    /// `results.report_json` exactly as this build writes it (format 2). If this test
    /// fails, the report's JSON changed: raise `SeriesReport`'s `FORMAT` and keep this row
    /// (and the older ones) reading as they did.
    fn report_row_format_2() -> String {
        REPORT_ROW_FORMAT_1
            .replacen("\"format\":1", "\"format\":2", 1)
            .replacen(
                r#""left_middle":0.0,"left_lower":0.125},"#,
                concat!(
                    r#""left_middle":0.0,"left_lower":0.125},"zone_scores":{"right_upper":0,"#,
                    r#""right_middle":3,"right_lower":2,"left_upper":0,"left_middle":0,"#,
                    r#""left_lower":1},"#
                ),
                1,
            )
    }

    #[test]
    fn report_rows_of_this_and_the_older_format_read() {
        let read: SeriesReport = from_json(&report_row_format_2()).unwrap();
        assert_eq!(read, sample_report());
        // Format 1 had no zone scores: they come from the zones and their rule.
        let legacy: SeriesReport = from_json(REPORT_ROW_FORMAT_1).unwrap();
        assert_eq!(legacy, sample_report());
    }

    #[test]
    fn the_report_layout_is_pinned() {
        assert_eq!(<SeriesReport as Document>::FORMAT, 2);
        assert_eq!(to_json(&sample_report()).unwrap(), report_row_format_2());
    }

    #[test]
    fn a_newer_report_row_is_refused_naming_its_column() {
        let newer = REPORT_ROW_FORMAT_1.replacen("\"format\":1", "\"format\":3", 1);
        let e = from_json::<SeriesReport>(&newer).unwrap_err();
        assert!(e.to_string().contains("results.report_json up to 2"), "{e}");
    }
}
