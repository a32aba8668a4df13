//! `/audit`: the audit trail for admins, searchable by user, patient and day.

use maud::html;

use super::format::{fmt_time, or_dash};
use super::html::{self, SearchField};
use super::url::Target;
use crate::db::{self, AuditFilter, AuditRecord, ReadQueries, Reader};

/// Rows shown at most; the CSV export (`lungwatch audit`) has no limit.
pub const LIMIT: i64 = 500;

/// Unix seconds at the start (00:00 UTC) of a `YYYY-MM-DD` day; None when not such a date.
pub fn day_start(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let digits: String = s.chars().filter(|c| *c != '-').collect();
    if digits.len() != 8 || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    super::format::dicom_date_days(&digits).map(|d| d * 86_400)
}

pub struct AuditView {
    pub user: Option<String>,
    pub patient_id: Option<String>,
    pub date: Option<String>,
    pub note: Option<String>,
    pub rows: Vec<AuditRecord>,
}

pub fn collect(db: &Reader, t: &Target) -> db::Result<AuditView> {
    let (user, patient_id, date) = (t.param("user"), t.param("patient_id"), t.param("date"));
    let mut filter = AuditFilter {
        user: user.clone(),
        patient_id: patient_id.clone(),
        ..Default::default()
    };
    let mut note = None;
    if let Some(d) = &date {
        match day_start(d) {
            Some(start) => {
                filter.since = Some(start);
                filter.until = Some(start + 86_400);
            }
            None => {
                note = Some(format!(
                    "{d:?} is not a date as YYYY-MM-DD; showing all days."
                ))
            }
        }
    }
    let rows = db.audit_entries(&filter, LIMIT)?;
    Ok(AuditView {
        user,
        patient_id,
        date,
        note,
        rows,
    })
}

pub fn render(v: &AuditView) -> String {
    let search = [
        SearchField::new("User", "user", v.user.as_deref(), None),
        SearchField::new("Patient ID", "patient_id", v.patient_id.as_deref(), None),
        SearchField::new("Day", "date", v.date.as_deref(), Some("YYYY-MM-DD")),
    ];
    let body = html! {
        h1 { "Audit trail" }
        (html::search_form("/audit", &search))
        @if let Some(n) = &v.note { div.banner.warn { (n) } }
        div.card {
            @if v.rows.is_empty() {
                p.empty { "No audit record matches." }
            } @else {
                p.muted {
                    (v.rows.len()) " records, newest first"
                    @if v.rows.len() as i64 >= LIMIT { " (the newest; refine the search)" }
                    ". Export everything with " code { "lungwatch audit --since YYYY-MM-DD --csv" } "."
                }
                table {
                    tr {
                        th { "Time" } th { "User" } th { "Client" } th { "Event" }
                        th { "Request" } th.num { "Status" } th { "Patient" }
                    }
                    @for r in &v.rows {
                        tr {
                            td.nowrap { (fmt_time(r.at)) }
                            td { (or_dash(r.user.as_deref())) }
                            td { (r.client) }
                            td { (r.event.as_str()) }
                            td { code { (r.method) " " (r.path) } }
                            td.num { (r.status) }
                            td { (or_dash(r.patient_id.as_deref())) }
                        }
                    }
                }
            }
        }
    };
    html::layout("Audit trail", html::Nav::None, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_parse_strictly() {
        assert_eq!(day_start("1970-01-02"), Some(86_400));
        assert_eq!(day_start("2026-12-02"), Some(1_796_169_600));
        for bad in [
            "2026-13-01",
            "2026-02-30",
            "20261202",
            "2026-1-02",
            "abcd-ef-gh",
            "",
        ] {
            assert_eq!(day_start(bad), None, "{bad}");
        }
    }
}
