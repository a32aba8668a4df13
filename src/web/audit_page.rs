//! `/audit`: the audit trail for admins, searchable by user, patient and day.

use std::fmt::Write;

use super::html::{self, esc, esc_opt, fmt_time};
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
    html::dicom_date_days(&digits).map(|d| d * 86_400)
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
    let mut b = String::from("<h1>Audit trail</h1>");
    let val = |s: &Option<String>| esc(s.as_deref().unwrap_or(""));
    let _ = write!(
        b,
        "<div class=\"card\"><form class=\"search\" method=\"get\" action=\"/audit\">\
         <label>User<input name=\"user\" value=\"{}\"></label>\
         <label>Patient ID<input name=\"patient_id\" value=\"{}\"></label>\
         <label>Day<input name=\"date\" value=\"{}\" placeholder=\"YYYY-MM-DD\"></label>\
         <button type=\"submit\">Search</button> <a class=\"button\" href=\"/audit\">Clear</a></form></div>",
        val(&v.user),
        val(&v.patient_id),
        val(&v.date),
    );
    if let Some(n) = &v.note {
        let _ = write!(b, "<div class=\"banner warn\">{}</div>", esc(n));
    }
    b.push_str("<div class=\"card\">");
    if v.rows.is_empty() {
        b.push_str("<p class=\"empty\">No audit record matches.</p>");
    } else {
        let _ = write!(
            b,
            "<p class=\"muted\">{} records, newest first{}. Export everything with \
             <code>lungwatch audit --since YYYY-MM-DD --csv</code>.</p>\
             <table><tr><th>Time</th><th>User</th><th>Client</th><th>Event</th>\
             <th>Request</th><th class=\"num\">Status</th><th>Patient</th></tr>",
            v.rows.len(),
            if v.rows.len() as i64 >= LIMIT {
                " (the newest; refine the search)"
            } else {
                ""
            }
        );
        for r in &v.rows {
            let _ = write!(
                b,
                "<tr><td class=\"nowrap\">{}</td><td>{}</td><td>{}</td><td>{}</td>\
                 <td><code>{} {}</code></td><td class=\"num\">{}</td><td>{}</td></tr>",
                esc(&fmt_time(r.at)),
                esc_opt(r.user.as_deref()),
                esc(&r.client),
                esc(r.event.as_str()),
                esc(&r.method),
                esc(&r.path),
                r.status,
                esc_opt(r.patient_id.as_deref()),
            );
        }
        b.push_str("</table>");
    }
    b.push_str("</div>");
    html::layout("Audit trail", html::Nav::None, &b)
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
