//! `lungwatch audit`: the audit trail from a day on, as a table or as CSV (RFC 4180), read
//! through a read-only `db::Reader`.

use crate::db::{AuditFilter, AuditRecord, ReadQueries, Reader};

/// Every row at or after `since` (Unix seconds), oldest first.
pub fn collect(db: &Reader, since: i64) -> rusqlite::Result<Vec<AuditRecord>> {
    let filter = AuditFilter {
        since: Some(since),
        ..Default::default()
    };
    let mut rows = db.audit_entries(&filter, i64::MAX)?;
    rows.reverse();
    Ok(rows)
}

/// ISO 8601 UTC time of a Unix timestamp.
fn iso(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        crate::web::fmt_days(days),
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A CSV field, quoted when needed. A leading `=`, `+`, `-` or `@` is prefixed with `'` so
/// that a spreadsheet opening the export does not run a path or user name as a formula.
fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

pub fn render_csv(rows: &[AuditRecord]) -> String {
    let mut out = String::from("time,user,client,method,path,status,patient_id,event\r\n");
    for r in rows {
        let fields = [
            iso(r.at),
            r.user.clone().unwrap_or_default(),
            r.client.clone(),
            r.method.clone(),
            r.path.clone(),
            r.status.to_string(),
            r.patient_id.clone().unwrap_or_default(),
            r.event.as_str().to_string(),
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}

pub fn render_text(rows: &[AuditRecord]) -> String {
    let mut out = String::new();
    for r in rows {
        // Control characters in a path or user name must not move the terminal's cursor.
        let clean = |s: &str| {
            s.chars()
                .map(|c| if c.is_control() { '?' } else { c })
                .collect::<String>()
        };
        out.push_str(&format!(
            "{}  {:<14} {:<15} {:<12} {} {} {}{}\n",
            iso(r.at),
            clean(r.user.as_deref().unwrap_or("-")),
            r.client,
            r.event.as_str(),
            r.status,
            clean(&r.method),
            clean(&r.path),
            r.patient_id
                .as_deref()
                .map(|p| format!("  patient {}", clean(p)))
                .unwrap_or_default()
        ));
    }
    if rows.is_empty() {
        out.push_str("no audit records in this period\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::AuditEvent;

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        assert_eq!(iso(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso(1_796_169_661), "2026-12-02T00:01:01Z");
        let rows = [AuditRecord {
            at: 0,
            user: Some("=cmd()".into()),
            client: "10.0.0.1".into(),
            method: "GET".into(),
            path: "/studies?patient_id=a,\"b\"".into(),
            status: 200,
            patient_id: None,
            event: AuditEvent::Read,
        }];
        let csv = render_csv(&rows);
        assert_eq!(
            csv,
            "time,user,client,method,path,status,patient_id,event\r\n\
             1970-01-01T00:00:00Z,'=cmd(),10.0.0.1,GET,\"/studies?patient_id=a,\"\"b\"\"\",200,,read\r\n"
        );
        let mut hostile = rows[0].clone();
        hostile.user = Some("a\x1b[2J".into());
        assert!(render_text(&[hostile]).contains("a?[2J"));
    }
}
