//! `/studies` (search and key figures) and `/studies/{uid}` (every series' result).

use std::collections::HashMap;
use std::fmt::Write;

use serde::Serialize;

use super::artifacts;
use super::html::{
    self, bar, class_badge, esc, esc_opt, fmt_dicom_date, fmt_ms, fmt_time, mask_id, pct,
    person_name,
};
use super::server::Ctx;
use super::url::{Target, encode_segment};
use crate::db::{self, DeliveryState, ReadQueries, Reader, ResultRow, StudyFilter};
use crate::report::{Class, Probabilities, SeriesReport};

/// Most series results read for one list page, and most studies shown.
const MAX_ROWS: i64 = 5000;
const MAX_STUDIES: usize = 300;

#[derive(Debug, Serialize)]
pub struct Search {
    pub patient_id: Option<String>,
    pub accession: Option<String>,
    pub date: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct StudySummary {
    /// Study Instance UID, or the series UID for a series without one.
    pub study_uid: String,
    /// Masked (`ABC***`) when `web.mask_patient_ids` is on.
    pub patient_id: Option<String>,
    /// Absent when masking is on.
    pub patient_name: Option<String>,
    pub study_date: Option<String>,
    pub accession_number: Option<String>,
    pub series_analysed: usize,
    /// The figures below are those of the series with the largest affected ratio.
    pub key_series_uid: String,
    pub top_class: Class,
    pub top_probability: f64,
    pub affected_ratio: f64,
    pub severity_score: i64,
    pub analysed_at: i64,
}

#[derive(Debug, Serialize)]
pub struct StudiesView {
    pub search: Search,
    pub masked: bool,
    pub notes: Vec<String>,
    pub studies: Vec<StudySummary>,
    /// More studies matched than are listed.
    pub truncated: bool,
}

/// Digits of a date search term: `2020-03-14`, `20200314`, `2020-03` and `2020` all work.
fn date_digits(term: &str) -> Result<String, String> {
    let digits: String = term.chars().filter(char::is_ascii_digit).collect();
    let ok = matches!(digits.len(), 4 | 6 | 8)
        && term
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '-' | '.' | '/' | ' '));
    if ok {
        Ok(digits)
    } else {
        Err(format!(
            "date {term:?} not understood: use YYYY-MM-DD, YYYY-MM or YYYY"
        ))
    }
}

/// The key series of a study, the one its list row and the patient's timeline show: the
/// largest affected ratio, then the newest result. `rank` gives (affected ratio, result
/// id) of an item; None for no items.
pub(super) fn key_series<T>(items: &[T], rank: impl Fn(&T) -> (f64, i64)) -> Option<&T> {
    items.iter().max_by(|a, b| {
        let (ra, ia) = rank(a);
        let (rb, ib) = rank(b);
        ra.total_cmp(&rb).then(ia.cmp(&ib))
    })
}

pub fn collect_list(ctx: &Ctx, db: &Reader, t: &Target) -> db::Result<StudiesView> {
    let search = Search {
        patient_id: t.param("patient_id"),
        accession: t.param("accession"),
        date: t.param("date"),
    };
    let mut notes = Vec::new();
    let date_prefix = match search.date.as_deref().map(date_digits) {
        Some(Ok(d)) => Some(d),
        Some(Err(e)) => {
            notes.push(e);
            None
        }
        None => None,
    };
    let filter = StudyFilter {
        patient_id: search.patient_id.clone(),
        accession: search.accession.clone(),
        date_prefix,
    };
    let rows = db.search_results(&filter, MAX_ROWS)?;
    // Group by study, keeping the order of the rows (newest study date first).
    let mut order: Vec<String> = Vec::new();
    let mut groups: HashMap<String, Vec<ResultRow>> = HashMap::new();
    for r in rows {
        let key = r.study_uid.clone().unwrap_or_else(|| r.series_uid.clone());
        if !groups.contains_key(&key) {
            order.push(key.clone());
        }
        groups.entry(key).or_default().push(r);
    }
    let masked = ctx.config.mask_patient_ids;
    let truncated = order.len() > MAX_STUDIES;
    let studies = order
        .into_iter()
        .take(MAX_STUDIES)
        .map(|key| {
            let rows = &groups[&key];
            let best = key_series(rows, |r| (r.affected_ratio, r.result_id))
                .expect("groups are non-empty");
            StudySummary {
                study_uid: key.clone(),
                patient_id: if masked {
                    best.patient_id.as_deref().map(mask_id)
                } else {
                    best.patient_id.clone()
                },
                patient_name: if masked {
                    None
                } else {
                    best.patient_name.clone()
                },
                study_date: best.study_date.clone(),
                accession_number: best.accession_number.clone(),
                series_analysed: rows.len(),
                key_series_uid: best.series_uid.clone(),
                top_class: best.top_class,
                top_probability: Probabilities {
                    covid19: best.p_covid19,
                    other_pneumonia: best.p_other,
                    normal: best.p_normal,
                }
                .of(best.top_class),
                affected_ratio: best.affected_ratio,
                severity_score: best.severity_score,
                analysed_at: rows.iter().map(|r| r.created_at).max().unwrap_or(0),
            }
        })
        .collect();
    Ok(StudiesView {
        search,
        masked,
        notes,
        studies,
        truncated,
    })
}

pub fn render_list(v: &StudiesView) -> String {
    let mut b = String::from("<h1>Studies</h1>");
    let val = |s: &Option<String>| esc(s.as_deref().unwrap_or(""));
    let _ = write!(
        b,
        "<div class=\"card\"><form class=\"search\" method=\"get\" action=\"/studies\">\
         <label>Patient ID<input name=\"patient_id\" value=\"{}\"></label>\
         <label>Accession<input name=\"accession\" value=\"{}\"></label>\
         <label>Study date (or YYYY-MM, YYYY)<input name=\"date\" value=\"{}\" placeholder=\"YYYY-MM-DD\"></label>\
         <button type=\"submit\">Search</button> <a class=\"button\" href=\"/studies\">Clear</a></form></div>",
        val(&v.search.patient_id),
        val(&v.search.accession),
        val(&v.search.date),
    );
    for n in &v.notes {
        let _ = write!(b, "<div class=\"banner warn\">{}</div>", esc(n));
    }
    b.push_str("<div class=\"card\">");
    if v.studies.is_empty() {
        b.push_str("<p class=\"empty\">No analysed study matches.</p>");
    } else {
        let _ = write!(
            b,
            "<p class=\"muted\">{} studies{}. Figures are those of each study's series with the \
             largest affected lung ratio.{}</p>",
            v.studies.len(),
            if v.truncated {
                " (the newest; refine the search)"
            } else {
                ""
            },
            if v.masked {
                " Patient identifiers are masked."
            } else {
                ""
            }
        );
        b.push_str(
            "<table><tr><th>Study date</th><th>Patient</th><th>Accession</th>\
             <th>Top class</th><th class=\"num\">Probability</th>\
             <th class=\"num\">Affected lung</th><th class=\"num\">Severity</th>\
             <th class=\"num\">Series</th><th>Analysed</th></tr>",
        );
        for s in &v.studies {
            let patient = match (&s.patient_id, v.masked) {
                (Some(id), false) => format!(
                    "<a href=\"/patients/{}\">{}</a>{}",
                    encode_segment(id),
                    esc(id),
                    s.patient_name
                        .as_deref()
                        .map(|n| format!(
                            "<br><span class=\"muted\">{}</span>",
                            esc(&person_name(n))
                        ))
                        .unwrap_or_default()
                ),
                (Some(id), true) => esc(id),
                (None, _) => "—".into(),
            };
            let _ = write!(
                b,
                "<tr><td class=\"nowrap\"><a href=\"/studies/{}\">{}</a></td><td>{patient}</td><td>{}</td>\
                 <td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
                 <td class=\"num nowrap\">{} / 24</td><td class=\"num\">{}</td><td class=\"muted nowrap\">{}</td></tr>",
                encode_segment(&s.study_uid),
                esc(&fmt_dicom_date(s.study_date.as_deref())),
                esc_opt(s.accession_number.as_deref()),
                class_badge(s.top_class),
                pct(s.top_probability),
                pct(s.affected_ratio),
                s.severity_score,
                s.series_analysed,
                fmt_time(s.analysed_at),
            );
        }
        b.push_str("</table>");
    }
    b.push_str("</div>");
    html::layout("Studies", html::Nav::Studies, &b)
}

// ---- one study ----------------------------------------------------------------------

#[derive(Debug, Serialize)]
pub struct Preview {
    pub file: String,
    pub url: String,
}

#[derive(Debug, Serialize)]
pub struct SeriesResult {
    pub result_id: i64,
    pub analysed_at: i64,
    pub report: SeriesReport,
    pub previews: Vec<Preview>,
    /// URL of the label mask (NIfTI), when present.
    pub labels_url: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct StudyView {
    pub study_uid: String,
    pub patient_id: Option<String>,
    pub patient_name: Option<String>,
    pub study_date: Option<String>,
    pub accession_number: Option<String>,
    pub series: Vec<SeriesResult>,
    /// Where the DICOM objects of these results went, by destination (empty: none
    /// configured, or nothing queued).
    pub deliveries: Vec<StudyDelivery>,
}

/// The objects of a study's shown results for one destination, by state.
#[derive(Debug, Default, PartialEq, Serialize)]
pub struct StudyDelivery {
    pub destination: String,
    pub sent: usize,
    /// Pending or being sent.
    pub waiting: usize,
    pub failed: usize,
    pub last_sent_at: Option<i64>,
    /// The newest error of an object not sent.
    pub last_error: Option<String>,
}

/// Sums the outbox rows of the jobs shown, destination by destination in name order.
fn summarise_deliveries(rows: &[db::Delivery], job_ids: &[i64]) -> Vec<StudyDelivery> {
    let mut out: Vec<StudyDelivery> = Vec::new();
    for r in rows.iter().filter(|r| job_ids.contains(&r.job_id)) {
        let at = match out.iter().position(|d| d.destination == r.destination) {
            Some(at) => at,
            None => {
                out.push(StudyDelivery {
                    destination: r.destination.clone(),
                    ..Default::default()
                });
                out.len() - 1
            }
        };
        let d = &mut out[at];
        match r.state {
            DeliveryState::Sent => {
                d.sent += 1;
                d.last_sent_at = d.last_sent_at.max(r.sent_at);
            }
            DeliveryState::Failed => d.failed += 1,
            DeliveryState::Pending | DeliveryState::Sending => d.waiting += 1,
        }
        if r.state != DeliveryState::Sent && r.last_error.is_some() {
            d.last_error = r.last_error.clone();
        }
    }
    out.sort_by(|a, b| a.destination.cmp(&b.destination));
    out
}

/// The study's newest result per series; None when nothing is known under `uid` (a study
/// UID, or the series UID of a series without a study UID).
pub fn collect_study(ctx: &Ctx, db: &Reader, uid: &str) -> db::Result<Option<StudyView>> {
    let mut results = db.study_results(uid)?;
    if results.is_empty()
        && let Some(r) = db.latest_result_for_series(uid)?
        && r.report.study_instance_uid.is_none()
    {
        results.push(r);
    }
    let Some(first) = results.first() else {
        return Ok(None);
    };
    let r0 = &first.report;
    let (patient_id, patient_name, study_date, accession_number) = (
        r0.patient_id.clone(),
        r0.patient_name.clone(),
        r0.study_date.clone(),
        r0.accession_number.clone(),
    );
    let job_ids: Vec<i64> = results.iter().map(|r| r.job_id).collect();
    let deliveries = match &r0.study_instance_uid {
        Some(study) => summarise_deliveries(&db.study_deliveries(study)?, &job_ids),
        None => Vec::new(),
    };
    let series = results
        .into_iter()
        .map(|r| {
            let dir = ctx.data_dir.join(&r.artifacts_dir);
            let files = artifacts::present(&dir);
            let url = |f: &str| format!("/artifacts/{}/{}", r.id, f);
            SeriesResult {
                result_id: r.id,
                analysed_at: r.created_at,
                labels_url: files
                    .iter()
                    .find(|f| f.as_str() == crate::report::LABELS_FILE)
                    .map(|f| url(f)),
                previews: files
                    .iter()
                    .filter(|f| f.ends_with(".png"))
                    .map(|f| Preview {
                        file: f.clone(),
                        url: url(f),
                    })
                    .collect(),
                report: r.report,
            }
        })
        .collect();
    Ok(Some(StudyView {
        study_uid: uid.to_string(),
        patient_id,
        patient_name,
        study_date,
        accession_number,
        series,
        deliveries,
    }))
}

fn ml(v: f64) -> String {
    format!("{v:.0} mL")
}

/// One analysed series' card on the study page.
fn render_series(b: &mut String, s: &SeriesResult) {
    series_heading(b, s);
    summary_tiles(b, s);
    warnings_banner(b, s);
    probabilities_table(b, s);
    zones_table(b, s);
    measurements_table(b, s);
    timings_and_models(b, s);
    previews(b, s);
    b.push_str("</div>");
}

/// The card's title line: description, class, UID, grid, when.
fn series_heading(b: &mut String, s: &SeriesResult) {
    let r = &s.report;
    let _ = write!(
        b,
        "<div class=\"card\"><h2>{} {}</h2>\
         <p class=\"muted\">Series <span class=\"mono\">{}</span> · {} slices · \
         spacing {:.2} × {:.2} × {:.2} mm · analysed {}</p>",
        esc_opt(r.series_description.as_deref()),
        class_badge(r.top_class),
        esc(&r.series_instance_uid),
        r.slice_count,
        r.spacing_mm[0],
        r.spacing_mm[1],
        r.spacing_mm[2],
        fmt_time(s.analysed_at)
    );
}

/// Top class, affected lung, lesion volume and severity at a glance.
fn summary_tiles(b: &mut String, s: &SeriesResult) {
    let r = &s.report;
    let p = &r.probabilities;
    let top_p = p.of(r.top_class);
    let _ = write!(
        b,
        "<div class=\"tiles\">\
         <div class=\"tile\"><div class=\"label\">Top class</div><div class=\"value\">{}</div><div class=\"sub\">{}</div></div>\
         <div class=\"tile\"><div class=\"label\">Affected lung</div><div class=\"value\">{}</div><div class=\"sub\">right {} · left {}</div></div>\
         <div class=\"tile\"><div class=\"label\">Lesion volume</div><div class=\"value\">{}</div><div class=\"sub\">{} ground-glass</div></div>\
         <div class=\"tile\"><div class=\"label\">Severity score</div><div class=\"value\">{} / 24</div><div class=\"sub\">{}</div></div></div>",
        pct(top_p),
        esc(r.top_class.label()),
        pct(r.affected_ratio.total),
        pct(r.affected_ratio.right),
        pct(r.affected_ratio.left),
        ml(r.lesion_volume_ml),
        pct(r.ggo_share),
        r.severity_score,
        if r.bilateral {
            "bilateral"
        } else {
            "not bilateral"
        },
    );
}

/// The analysis's warnings, which a reader must see.
fn warnings_banner(b: &mut String, s: &SeriesResult) {
    let r = &s.report;
    if !r.warnings.is_empty() {
        b.push_str("<div class=\"banner warn\">");
        for w in &r.warnings {
            let _ = write!(b, "<div>⚠ {}</div>", esc(w));
        }
        b.push_str("</div>");
    }
}

/// The three class probabilities, as bars.
fn probabilities_table(b: &mut String, s: &SeriesResult) {
    let p = &s.report.probabilities;
    b.push_str("<div class=\"grid\"><div><h3>Probabilities</h3><table>");
    for class in Class::ALL {
        let v = p.of(class);
        let _ = write!(
            b,
            "<tr><td>{}</td><td style=\"width:45%\">{}</td><td class=\"num\">{}</td></tr>",
            esc(class.label()),
            bar(v, class.as_str()),
            pct(v)
        );
    }
}

/// Each zone's affected share and score.
fn zones_table(b: &mut String, s: &SeriesResult) {
    let r = &s.report;
    b.push_str(
        "</table><h3>Zones (affected share of each third)</h3>\
        <table class=\"zones\"><tr><th></th><th>Right lung</th><th>Left lung</th></tr>",
    );
    let (z, score) = (&r.zones, &r.zone_scores);
    for (name, right, left, right_score, left_score) in [
        (
            "Upper",
            z.right_upper,
            z.left_upper,
            score.right_upper,
            score.left_upper,
        ),
        (
            "Middle",
            z.right_middle,
            z.left_middle,
            score.right_middle,
            score.left_middle,
        ),
        (
            "Lower",
            z.right_lower,
            z.left_lower,
            score.right_lower,
            score.left_lower,
        ),
    ] {
        let _ = write!(
            b,
            "<tr><td class=\"rowhead\">{name}</td><td>{} <span class=\"muted\">({})</span></td>\
             <td>{} <span class=\"muted\">({})</span></td></tr>",
            pct(right),
            right_score,
            pct(left),
            left_score
        );
    }
}

/// Volumes, ratios, shares, and what is below the reporting threshold.
fn measurements_table(b: &mut String, s: &SeriesResult) {
    let r = &s.report;
    let a = &r.affected_ratio;
    let _ = write!(
        b,
        "</table><p class=\"muted\">Zone scores in brackets: 0 none, 1 &lt;25 %, 2 &lt;50 %, \
         3 &lt;75 %, 4 ≥75 %.</p></div>\
         <div><h3>Measurements</h3><table>\
         <tr><td>Lung volume, right / left</td><td class=\"num\">{} / {}</td></tr>\
         <tr><td>Lesion volume</td><td class=\"num\">{}</td></tr>\
         <tr><td>Ground-glass / consolidation share</td><td class=\"num\">{} / {}</td></tr>\
         <tr><td><strong>Affected lung ratio</strong></td><td class=\"num\"><strong>{}</strong></td></tr>\
         <tr><td>Affected ratio, right / left</td><td class=\"num\">{} / {}</td></tr>\
         <tr><td>Bilateral</td><td class=\"num\">{}</td></tr>\
         <tr><td>Peripheral share (within {:.0} mm of the lung surface)</td><td class=\"num\">{}</td></tr>\
         <tr><td><strong>Severity score</strong></td><td class=\"num\"><strong>{} / 24</strong></td></tr>\
         </table>",
        ml(r.lung_volume_ml.right),
        ml(r.lung_volume_ml.left),
        ml(r.lesion_volume_ml),
        pct(r.ggo_share),
        pct(r.consolidation_share),
        pct(a.total),
        pct(a.right),
        pct(a.left),
        if r.bilateral { "yes" } else { "no" },
        r.peripheral_mm,
        pct(r.peripheral_share),
        r.severity_score,
    );
    if let Some(line) = r.below_threshold.line() {
        let _ = write!(b, "<p class=\"muted below-threshold\">{}</p>", esc(&line));
    }
}

/// Where the time went, and the models that made the result.
fn timings_and_models(b: &mut String, s: &SeriesResult) {
    let r = &s.report;
    let t = &r.timings_ms;
    let _ = write!(
        b,
        "<h3>Timings</h3><table><tr><td>Decode</td><td class=\"num\">{}</td></tr>\
         <tr><td>Preprocess</td><td class=\"num\">{}</td></tr>\
         <tr><td>Inference</td><td class=\"num\">{}</td></tr>\
         <tr><td>Post-process</td><td class=\"num\">{}</td></tr>\
         <tr><td><strong>Total</strong></td><td class=\"num\"><strong>{}</strong></td></tr></table>\
         <h3>Models</h3><table>",
        fmt_ms(t.decode as f64),
        fmt_ms(t.preprocess as f64),
        fmt_ms(t.inference as f64),
        fmt_ms(t.postprocess as f64),
        fmt_ms(t.total as f64),
    );
    for m in &r.models {
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td class=\"mono\" title=\"{}\">{}…</td></tr>",
            esc(&m.name),
            esc(&m.version),
            esc(&m.sha256),
            esc(&m.sha256.chars().take(12).collect::<String>())
        );
    }
    b.push_str("</table></div></div>");
}

/// The preview images and the label-mask download.
fn previews(b: &mut String, s: &SeriesResult) {
    b.push_str("<h3>Previews</h3>");
    if s.previews.is_empty() {
        b.push_str("<p class=\"empty\">No preview images stored for this result.</p>");
    } else {
        b.push_str(
            "<p class=\"muted\">Lung contour and lesion overlay. Axial slices from inferior to superior.</p>\
             <div class=\"previews\">",
        );
        for p in &s.previews {
            let caption = if p.file == crate::report::CORONAL_PREVIEW {
                "coronal".to_string()
            } else {
                p.file.trim_end_matches(".png").replace('-', " ")
            };
            let _ = write!(
                b,
                "<figure><a href=\"{}\"><img src=\"{}\" alt=\"{}\"></a><figcaption>{}</figcaption></figure>",
                esc(&p.url),
                esc(&p.url),
                esc(&caption),
                esc(&caption)
            );
        }
        b.push_str("</div>");
    }
    if let Some(u) = &s.labels_url {
        let _ = write!(
            b,
            "<p><a href=\"{}\">Download the label mask (NIfTI, {})</a></p>",
            esc(u),
            esc(crate::report::LABELS_FILE)
        );
    }
}

pub fn render_study(v: &StudyView) -> String {
    let mut b = String::new();
    let name = v.patient_name.as_deref().map(person_name);
    let _ = write!(
        b,
        "<h1>{} <span class=\"muted\">· study of {}</span></h1><div class=\"card\"><dl class=\"kv\">\
         <dt>Patient</dt><dd>{}{}</dd><dt>Study date</dt><dd>{}</dd><dt>Accession</dt><dd>{}</dd>\
         <dt>Study UID</dt><dd class=\"mono\">{}</dd><dt>Series analysed</dt><dd>{}</dd></dl></div>",
        esc(name
            .as_deref()
            .or(v.patient_id.as_deref())
            .unwrap_or("Unknown patient")),
        esc(&fmt_dicom_date(v.study_date.as_deref())),
        match &v.patient_id {
            Some(id) => format!(
                "<a href=\"/patients/{}\">{}</a> (timeline)",
                encode_segment(id),
                esc(id)
            ),
            None => "—".into(),
        },
        name.map(|n| format!(" · {}", esc(&n))).unwrap_or_default(),
        esc(&fmt_dicom_date(v.study_date.as_deref())),
        esc_opt(v.accession_number.as_deref()),
        esc(&v.study_uid),
        v.series.len()
    );
    render_deliveries(&mut b, &v.deliveries);
    for s in &v.series {
        render_series(&mut b, s);
    }
    html::layout("Study", html::Nav::Studies, &b)
}

/// Where the study's SEG, SR and key images went; nothing when no destination has them.
fn render_deliveries(b: &mut String, deliveries: &[StudyDelivery]) {
    if deliveries.is_empty() {
        return;
    }
    b.push_str(
        "<div class=\"card\"><h2>Sent to PACS</h2><table><tr><th>Destination</th>\
         <th class=\"num\">Objects sent</th><th class=\"num\">Waiting</th>\
         <th class=\"num\">Failed</th><th>Last sent</th><th>Last error</th></tr>",
    );
    for d in deliveries {
        let badge = if d.failed > 0 {
            "bad"
        } else if d.waiting > 0 {
            "warn"
        } else {
            "good"
        };
        let _ = write!(
            b,
            "<tr><td class=\"mono\">{}</td><td class=\"num\"><span class=\"badge {badge}\">{} of {}</span></td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"nowrap\">{}</td><td>{}</td></tr>",
            esc(&d.destination),
            d.sent,
            d.sent + d.waiting + d.failed,
            d.waiting,
            d.failed,
            d.last_sent_at.map(fmt_time).unwrap_or_else(|| "—".into()),
            esc(d.last_error.as_deref().unwrap_or(""))
        );
    }
    b.push_str("</table></div>");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(
        job_id: i64,
        destination: &str,
        state: DeliveryState,
        error: Option<&str>,
    ) -> db::Delivery {
        db::Delivery {
            id: 0,
            job_id,
            destination: destination.into(),
            path: "p".into(),
            kind: "sr".into(),
            sop_class_uid: "1.2".into(),
            sop_instance_uid: "2.25.1".into(),
            study_uid: Some("1.2.3".into()),
            state,
            attempts: 1,
            last_error: error.map(String::from),
            next_attempt_at: 0,
            created_at: 0,
            sent_at: (state == DeliveryState::Sent).then_some(50),
        }
    }

    #[test]
    fn deliveries_are_summed_per_destination_for_the_results_shown() {
        let rows = [
            row(1, "pacs", DeliveryState::Sent, None),
            row(
                1,
                "pacs",
                DeliveryState::Pending,
                Some("no association with pacs"),
            ),
            row(1, "folder", DeliveryState::Sent, None),
            row(2, "pacs", DeliveryState::Failed, Some("an older analysis")),
        ];
        let d = summarise_deliveries(&rows, &[1]);
        assert_eq!(d.len(), 2);
        assert_eq!((d[0].destination.as_str(), d[0].sent), ("folder", 1));
        assert_eq!((d[1].sent, d[1].waiting, d[1].failed), (1, 1, 0));
        assert_eq!(d[1].last_error.as_deref(), Some("no association with pacs"));
        assert_eq!(d[1].last_sent_at, Some(50));
        let html = {
            let mut b = String::new();
            render_deliveries(&mut b, &d);
            b
        };
        assert!(html.contains("1 of 2") && html.contains("no association with pacs"));
        assert!(summarise_deliveries(&rows, &[]).is_empty());
    }

    #[test]
    fn date_terms() {
        assert_eq!(date_digits("2020-03-14").unwrap(), "20200314");
        assert_eq!(date_digits("2020-03").unwrap(), "202003");
        assert_eq!(date_digits("2020").unwrap(), "2020");
        assert!(date_digits("March").is_err());
        assert!(date_digits("20-3").is_err());
    }
}
