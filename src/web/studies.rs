//! `/studies` (search and key figures) and `/studies/{uid}` (every series' result).

use std::collections::HashMap;

use maud::{Markup, html};
use serde::Serialize;

use super::artifacts;
use super::format::{fmt_dicom_date, fmt_ms, fmt_time, mask_id, or_dash, pct, person_name};
use super::html::{self, SearchField, bar, class_badge};
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
    let search = [
        SearchField::new(
            "Patient ID",
            "patient_id",
            v.search.patient_id.as_deref(),
            None,
        ),
        SearchField::new(
            "Accession",
            "accession",
            v.search.accession.as_deref(),
            None,
        ),
        SearchField::new(
            "Study date (or YYYY-MM, YYYY)",
            "date",
            v.search.date.as_deref(),
            Some("YYYY-MM-DD"),
        ),
    ];
    let body = html! {
        h1 { "Studies" }
        (html::search_form("/studies", &search))
        @for n in &v.notes { div.banner.warn { (n) } }
        div.card {
            @if v.studies.is_empty() {
                p.empty { "No analysed study matches." }
            } @else {
                p.muted {
                    (v.studies.len()) " studies"
                    @if v.truncated { " (the newest; refine the search)" }
                    ". Figures are those of each study's series with the largest affected lung ratio."
                    @if v.masked { " Patient identifiers are masked." }
                }
                table {
                    tr {
                        th { "Study date" } th { "Patient" } th { "Accession" } th { "Top class" }
                        th.num { "Probability" } th.num { "Affected lung" } th.num { "Severity" }
                        th.num { "Series" } th { "Analysed" }
                    }
                    @for s in &v.studies { (study_row(s, v.masked)) }
                }
            }
        }
    };
    html::layout("Studies", html::Nav::Studies, body)
}

fn study_row(s: &StudySummary, masked: bool) -> Markup {
    html! {
        tr {
            td.nowrap {
                a href={ "/studies/" (encode_segment(&s.study_uid)) } { (fmt_dicom_date(s.study_date.as_deref())) }
            }
            td {
                @match (&s.patient_id, masked) {
                    (Some(id), false) => {
                        a href={ "/patients/" (encode_segment(id)) } { (id) }
                        @if let Some(n) = &s.patient_name { br; span.muted { (person_name(n)) } }
                    }
                    (Some(id), true) => (id),
                    (None, _) => "—",
                }
            }
            td { (or_dash(s.accession_number.as_deref())) }
            td { (class_badge(s.top_class)) }
            td.num { (pct(s.top_probability)) }
            td.num { (pct(s.affected_ratio)) }
            td.num.nowrap { (s.severity_score) " / 24" }
            td.num { (s.series_analysed) }
            td.muted.nowrap { (fmt_time(s.analysed_at)) }
        }
    }
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
fn series_card(s: &SeriesResult) -> Markup {
    html! {
        div.card {
            (series_heading(s))
            (summary_tiles(s))
            (warnings_banner(s))
            div.grid {
                div {
                    (probabilities_table(s))
                    (zones_table(s))
                }
                div {
                    (measurements_table(s))
                    (timings_and_models(s))
                }
            }
            (previews(s))
        }
    }
}

/// The card's title line: description, class, UID, grid, when.
fn series_heading(s: &SeriesResult) -> Markup {
    let r = &s.report;
    let sp = &r.spacing_mm;
    html! {
        h2 { (or_dash(r.series_description.as_deref())) " " (class_badge(r.top_class)) }
        p.muted {
            "Series " span.mono { (r.series_instance_uid) } " · " (r.slice_count) " slices · "
            (format!("spacing {:.2} × {:.2} × {:.2} mm", sp[0], sp[1], sp[2]))
            " · analysed " (fmt_time(s.analysed_at))
        }
    }
}

fn tile(label: &str, value: &str, sub: &str) -> Markup {
    html! { div.tile { div.label { (label) } div.value { (value) } div.sub { (sub) } } }
}

/// Top class, affected lung, lesion volume and severity at a glance.
fn summary_tiles(s: &SeriesResult) -> Markup {
    let r = &s.report;
    let a = &r.affected_ratio;
    html! {
        div.tiles {
            (tile("Top class", &pct(r.probabilities.of(r.top_class)), r.top_class.label()))
            (tile("Affected lung", &pct(a.total), &format!("right {} · left {}", pct(a.right), pct(a.left))))
            (tile("Lesion volume", &ml(r.lesion_volume_ml), &format!("{} ground-glass", pct(r.ggo_share))))
            (tile(
                "Severity score",
                &format!("{} / 24", r.severity_score),
                if r.bilateral { "bilateral" } else { "not bilateral" },
            ))
        }
    }
}

/// The analysis's warnings, which a reader must see.
fn warnings_banner(s: &SeriesResult) -> Markup {
    html! {
        @if !s.report.warnings.is_empty() {
            div.banner.warn { @for w in &s.report.warnings { div { "⚠ " (w) } } }
        }
    }
}

/// The three class probabilities, as bars.
fn probabilities_table(s: &SeriesResult) -> Markup {
    let p = &s.report.probabilities;
    html! {
        h3 { "Probabilities" }
        table {
            @for class in Class::ALL {
                tr {
                    td { (class.label()) }
                    td style="width:45%" { (bar(p.of(class), class.as_str())) }
                    td.num { (pct(p.of(class))) }
                }
            }
        }
    }
}

/// Each zone's affected share and score.
fn zones_table(s: &SeriesResult) -> Markup {
    let (z, score) = (&s.report.zones, &s.report.zone_scores);
    let rows = [
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
    ];
    html! {
        h3 { "Zones (affected share of each third)" }
        table.zones {
            tr { th {} th { "Right lung" } th { "Left lung" } }
            @for (name, right, left, right_score, left_score) in rows {
                tr {
                    td.rowhead { (name) }
                    td { (pct(right)) " " span.muted { "(" (right_score) ")" } }
                    td { (pct(left)) " " span.muted { "(" (left_score) ")" } }
                }
            }
        }
        p.muted { "Zone scores in brackets: 0 none, 1 <25 %, 2 <50 %, 3 <75 %, 4 ≥75 %." }
    }
}

/// Volumes, ratios, shares, and what is below the reporting threshold.
fn measurements_table(s: &SeriesResult) -> Markup {
    let r = &s.report;
    let a = &r.affected_ratio;
    let row = |label: &str, value: String| html! { tr { td { (label) } td.num { (value) } } };
    let strong_row = |label: &str, value: String| {
        html! { tr { td { strong { (label) } } td.num { strong { (value) } } } }
    };
    html! {
        h3 { "Measurements" }
        table {
            (row("Lung volume, right / left", format!("{} / {}", ml(r.lung_volume_ml.right), ml(r.lung_volume_ml.left))))
            (row("Lesion volume", ml(r.lesion_volume_ml)))
            (row("Ground-glass / consolidation share", format!("{} / {}", pct(r.ggo_share), pct(r.consolidation_share))))
            (strong_row("Affected lung ratio", pct(a.total)))
            (row("Affected ratio, right / left", format!("{} / {}", pct(a.right), pct(a.left))))
            (row("Bilateral", (if r.bilateral { "yes" } else { "no" }).to_string()))
            (row(&format!("Peripheral share (within {:.0} mm of the lung surface)", r.peripheral_mm), pct(r.peripheral_share)))
            (strong_row("Severity score", format!("{} / 24", r.severity_score)))
        }
        @if let Some(line) = r.below_threshold.line() {
            p.muted.below-threshold { (line) }
        }
    }
}

/// Where the time went, and the models that made the result.
fn timings_and_models(s: &SeriesResult) -> Markup {
    let t = &s.report.timings_ms;
    let row = |label: &str, ms: u64| html! { tr { td { (label) } td.num { (fmt_ms(ms as f64)) } } };
    html! {
        h3 { "Timings" }
        table {
            (row("Decode", t.decode))
            (row("Preprocess", t.preprocess))
            (row("Inference", t.inference))
            (row("Post-process", t.postprocess))
            tr { td { strong { "Total" } } td.num { strong { (fmt_ms(t.total as f64)) } } }
        }
        h3 { "Models" }
        (html::models_table(&s.report.models))
    }
}

/// The preview images and the label-mask download.
fn previews(s: &SeriesResult) -> Markup {
    html! {
        h3 { "Previews" }
        @if s.previews.is_empty() {
            p.empty { "No preview images stored for this result." }
        } @else {
            p.muted { "Lung contour and lesion overlay. Axial slices from inferior to superior." }
            div.previews {
                @for p in &s.previews {
                    @let caption = if p.file == crate::report::CORONAL_PREVIEW {
                        "coronal".to_string()
                    } else {
                        p.file.trim_end_matches(".png").replace('-', " ")
                    };
                    figure {
                        a href=(p.url) { img src=(p.url) alt=(caption); }
                        figcaption { (caption) }
                    }
                }
            }
        }
        @if let Some(u) = &s.labels_url {
            p { a href=(u) { "Download the label mask (NIfTI, " (crate::report::LABELS_FILE) ")" } }
        }
    }
}

pub fn render_study(v: &StudyView) -> String {
    let name = v.patient_name.as_deref().map(person_name);
    let date = fmt_dicom_date(v.study_date.as_deref());
    let body = html! {
        h1 {
            (name.as_deref().or(v.patient_id.as_deref()).unwrap_or("Unknown patient"))
            " " span.muted { "· study of " (date) }
        }
        div.card {
            dl.kv {
                dt { "Patient" }
                dd {
                    @match &v.patient_id {
                        Some(id) => { a href={ "/patients/" (encode_segment(id)) } { (id) } " (timeline)" }
                        None => "—",
                    }
                    @if let Some(n) = &name { " · " (n) }
                }
                dt { "Study date" } dd { (date) }
                dt { "Accession" } dd { (or_dash(v.accession_number.as_deref())) }
                dt { "Study UID" } dd.mono { (v.study_uid) }
                dt { "Series analysed" } dd { (v.series.len()) }
            }
        }
        (deliveries_card(&v.deliveries))
        @for s in &v.series { (series_card(s)) }
    };
    html::layout("Study", html::Nav::Studies, body)
}

/// Where the study's SEG, SR and key images went; nothing when no destination has them.
fn deliveries_card(deliveries: &[StudyDelivery]) -> Markup {
    if deliveries.is_empty() {
        return html! {};
    }
    html! {
        div.card {
            h2 { "Sent to PACS" }
            table {
                tr {
                    th { "Destination" } th.num { "Objects sent" } th.num { "Waiting" }
                    th.num { "Failed" } th { "Last sent" } th { "Last error" }
                }
                @for d in deliveries {
                    @let badge = if d.failed > 0 { "bad" } else if d.waiting > 0 { "warn" } else { "good" };
                    tr {
                        td.mono { (d.destination) }
                        td.num { span class={ "badge " (badge) } { (d.sent) " of " (d.sent + d.waiting + d.failed) } }
                        td.num { (d.waiting) }
                        td.num { (d.failed) }
                        td.nowrap { (d.last_sent_at.map(fmt_time).unwrap_or_else(|| "—".into())) }
                        td { (d.last_error.as_deref().unwrap_or("")) }
                    }
                }
            }
        }
    }
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
        let html = deliveries_card(&d).into_string();
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
