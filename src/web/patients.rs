//! `/patients/{id}`: every analysed study of a patient in date order, a chart of the
//! affected lung ratio and the change between consecutive scans.

use maud::{Markup, html};
use serde::Serialize;

use super::chart::{self, Point};
use super::format::{dicom_date_days, fmt_dicom_date, or_dash, pct, person_name};
use super::html::{self, class_badge};
use super::url::encode_segment;
use crate::db::{self, ReadQueries, Reader, StoredResult};
use crate::report::Class;

/// A change in affected ratio larger than this many percentage points (absolute) between
/// consecutive studies is progression (up) or regression (down); smaller is "stable".
pub const CHANGE_THRESHOLD_PP: f64 = 2.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Trend {
    Progression,
    Regression,
    Stable,
}

pub fn trend(change_pp: f64) -> Trend {
    if change_pp > CHANGE_THRESHOLD_PP {
        Trend::Progression
    } else if change_pp < -CHANGE_THRESHOLD_PP {
        Trend::Regression
    } else {
        Trend::Stable
    }
}

#[derive(Debug, Serialize)]
pub struct TimelineEntry {
    pub study_uid: String,
    pub study_date: Option<String>,
    pub accession_number: Option<String>,
    pub series_analysed: usize,
    /// The figures are those of the study's series with the largest affected ratio.
    pub key_series_uid: String,
    pub result_id: i64,
    pub top_class: Class,
    pub affected_ratio: f64,
    pub lesion_volume_ml: f64,
    pub severity_score: u8,
    /// Affected ratio minus the previous study's, in percentage points.
    pub change_pp: Option<f64>,
    pub trend: Option<Trend>,
}

#[derive(Debug, Serialize)]
pub struct PatientView {
    pub patient_id: String,
    pub patient_name: Option<String>,
    pub threshold_pp: f64,
    pub studies: Vec<TimelineEntry>,
}

pub fn collect(db: &Reader, patient_id: &str) -> db::Result<Option<PatientView>> {
    let results = db.patient_results(patient_id)?;
    if results.is_empty() {
        return Ok(None);
    }
    // Results arrive in study-date order; group by study keeping that order.
    let mut groups: Vec<(String, Vec<StoredResult>)> = Vec::new();
    for r in results {
        let key = r
            .report
            .study_instance_uid
            .clone()
            .unwrap_or_else(|| r.report.series_instance_uid.clone());
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, g)) => g.push(r),
            None => groups.push((key, vec![r])),
        }
    }
    let patient_name = groups
        .iter()
        .rev()
        .flat_map(|(_, g)| g)
        .find_map(|r| r.report.patient_name.clone());
    let mut studies: Vec<TimelineEntry> = Vec::with_capacity(groups.len());
    for (study_uid, g) in groups {
        let key = super::studies::key_series(&g, |r| (r.report.affected_ratio.total, r.id))
            .expect("groups are non-empty");
        let ratio = key.report.affected_ratio.total;
        let change_pp = studies
            .last()
            .map(|prev| (ratio - prev.affected_ratio) * 100.0);
        studies.push(TimelineEntry {
            study_uid,
            study_date: key.report.study_date.clone(),
            accession_number: key.report.accession_number.clone(),
            series_analysed: g.len(),
            key_series_uid: key.report.series_instance_uid.clone(),
            result_id: key.id,
            top_class: key.report.top_class,
            affected_ratio: ratio,
            lesion_volume_ml: key.report.lesion_volume_ml,
            severity_score: key.report.severity_score,
            change_pp,
            trend: change_pp.map(trend),
        });
    }
    Ok(Some(PatientView {
        patient_id: patient_id.to_string(),
        patient_name,
        threshold_pp: CHANGE_THRESHOLD_PP,
        studies,
    }))
}

fn trend_badge(t: Option<Trend>) -> Markup {
    html! {
        @match t {
            Some(Trend::Progression) => span.badge.bad { "progression" },
            Some(Trend::Regression) => span.badge.good { "regression" },
            Some(Trend::Stable) => span.badge.muted { "stable" },
            None => span.muted { "first study" },
        }
    }
}

pub fn render(v: &PatientView) -> String {
    let points: Vec<Point> = v
        .studies
        .iter()
        .map(|s| Point {
            days: s.study_date.as_deref().and_then(dicom_date_days),
            label: fmt_dicom_date(s.study_date.as_deref()),
            value_pct: s.affected_ratio * 100.0,
            trend: s.trend,
        })
        .collect();
    let t = v.threshold_pp;
    let body = html! {
        h1 {
            "Patient " (v.patient_id)
            @if let Some(n) = &v.patient_name { " " span.muted { "· " (person_name(n)) } }
        }
        div.card {
            h2 { "Affected lung volume ratio over time" }
            (chart::affected_ratio_chart(&points))
            p.muted {
                (format!("Change between consecutive studies: more than +{t:.0} percentage points is labelled "))
                em { "progression" } (format!(", more than −{t:.0} points ")) em { "regression" }
                ", otherwise " em { "stable" }
                ". Each study is represented by its series with the largest affected ratio."
            }
            div.legend {
                span { i style="background:#c94a4a" {} "progression" }
                span { i style="background:#2f8a55" {} "regression" }
                span { i style="background:#1d5fa8" {} "stable" }
            }
        }
        div.card {
            h2 { "Studies" }
            table {
                tr {
                    th { "Study date" } th { "Accession" } th { "Top class" } th.num { "Affected lung" }
                    th.num { "Lesion" } th.num { "Severity" } th.num { "Change" } th { "Trend" }
                }
                @for s in &v.studies {
                    tr {
                        td.nowrap {
                            a href={ "/studies/" (encode_segment(&s.study_uid)) } { (fmt_dicom_date(s.study_date.as_deref())) }
                        }
                        td { (or_dash(s.accession_number.as_deref())) }
                        td { (class_badge(s.top_class)) }
                        td.num { (pct(s.affected_ratio)) }
                        td.num { (format!("{:.0} mL", s.lesion_volume_ml)) }
                        td.num { (s.severity_score) " / 24" }
                        td.num {
                            (s.change_pp
                                .map(|c| format!("{c:+.1} pp").replace('-', "−"))
                                .unwrap_or_else(|| "—".into()))
                        }
                        td { (trend_badge(s.trend)) }
                    }
                }
            }
        }
    };
    html::layout("Patient", html::Nav::Studies, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_is_exclusive() {
        assert_eq!(trend(2.5), Trend::Progression);
        assert_eq!(trend(2.0), Trend::Stable);
        assert_eq!(trend(-2.0), Trend::Stable);
        assert_eq!(trend(-2.01), Trend::Regression);
    }
}
