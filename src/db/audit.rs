//! The audit trail's table: `AuditWriter`, the one handle that writes it (the web page's
//! only write path), and the search the `/audit` page and `lungwatch audit` read with.

use std::path::Path;

use rusqlite::{Connection, params};
use serde::Serialize;

use super::{Result, schema};

/// What an audit row records about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditEvent {
    /// An authenticated request for patient data (whatever its status).
    Read,
    /// Wrong credentials.
    LoginFailed,
    /// Refused with 429 while the address was locked out.
    Throttled,
}

impl AuditEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditEvent::Read => "read",
            AuditEvent::LoginFailed => "login-failed",
            AuditEvent::Throttled => "throttled",
        }
    }
    fn parse(s: &str) -> AuditEvent {
        match s {
            "login-failed" => AuditEvent::LoginFailed,
            "throttled" => AuditEvent::Throttled,
            _ => AuditEvent::Read,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRecord {
    /// Seconds since the Unix epoch.
    pub at: i64,
    /// The authenticated user, or for a failed login the name typed (if any).
    pub user: Option<String>,
    /// The client's IP address.
    pub client: String,
    pub method: String,
    /// The request target as sent (path and query).
    pub path: String,
    pub status: u16,
    /// The patient the request concerned, where the page knows it.
    pub patient_id: Option<String>,
    pub event: AuditEvent,
}

/// Search terms of the audit trail; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Exact user name.
    pub user: Option<String>,
    /// Exact patient ID.
    pub patient_id: Option<String>,
    /// Rows at or after this time (Unix seconds).
    pub since: Option<i64>,
    /// Rows before this time (Unix seconds).
    pub until: Option<i64>,
}

/// Writes audit rows and nothing else. The web page's audit thread holds the only one:
/// the page has no other way to write to the database.
pub struct AuditWriter {
    conn: Connection,
}

impl AuditWriter {
    /// Opens the daemon's database (already migrated by it) for appending audit rows.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // Each batch is one transaction; FULL makes an acknowledged batch survive power
        // loss, and costs one fsync per batch, not per request.
        conn.pragma_update(None, "synchronous", "FULL")?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if (version as usize) < schema::VERSION {
            return Err(rusqlite::Error::InvalidParameterName(format!(
                "the database has schema version {version}, the audit trail needs {}",
                schema::VERSION
            )));
        }
        Ok(AuditWriter { conn })
    }

    /// Appends `records` in one transaction.
    pub fn append(&mut self, records: &[AuditRecord]) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO audit (at, user, client, method, path, status, patient_id, event)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for r in records {
                stmt.execute(params![
                    r.at,
                    r.user,
                    r.client,
                    r.method,
                    r.path,
                    r.status,
                    r.patient_id,
                    r.event.as_str()
                ])?;
            }
        }
        tx.commit()
    }

    /// Deletes rows older than `before` (Unix seconds); returns how many.
    pub fn prune(&mut self, before: i64) -> Result<usize> {
        self.conn
            .execute("DELETE FROM audit WHERE at < ?1", [before])
    }
}

/// Matching rows, newest first, at most `limit`.
pub(super) fn search(conn: &Connection, f: &AuditFilter, limit: i64) -> Result<Vec<AuditRecord>> {
    let mut stmt = conn.prepare_cached(
        "SELECT at, user, client, method, path, status, patient_id, event FROM audit
         WHERE (?1 IS NULL OR user = ?1) AND (?2 IS NULL OR patient_id = ?2)
           AND (?3 IS NULL OR at >= ?3) AND (?4 IS NULL OR at < ?4)
         ORDER BY at DESC, id DESC LIMIT ?5",
    )?;
    let rows = stmt.query_map(
        params![f.user, f.patient_id, f.since, f.until, limit],
        |r| {
            Ok(AuditRecord {
                at: r.get(0)?,
                user: r.get(1)?,
                client: r.get(2)?,
                method: r.get(3)?,
                path: r.get(4)?,
                status: r.get(5)?,
                patient_id: r.get(6)?,
                event: AuditEvent::parse(&r.get::<_, String>(7)?),
            })
        },
    )?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{Database, ReadQueries, Reader};

    fn record(at: i64, user: &str, patient: Option<&str>) -> AuditRecord {
        AuditRecord {
            at,
            user: Some(user.into()),
            client: "10.1.2.3".into(),
            method: "GET".into(),
            path: "/patients/P1".into(),
            status: 200,
            patient_id: patient.map(Into::into),
            event: AuditEvent::Read,
        }
    }

    #[test]
    fn append_search_and_prune() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        drop(Database::open(&path).unwrap());
        let mut w = AuditWriter::open(&path).unwrap();
        w.append(&[
            record(100, "ann", Some("P1")),
            record(200, "bob", Some("P2")),
            record(300, "ann", None),
        ])
        .unwrap();
        let r = Reader::open(&path).unwrap();
        let all = r.audit_entries(&AuditFilter::default(), 10).unwrap();
        assert_eq!(
            all.iter().map(|x| x.at).collect::<Vec<_>>(),
            [300, 200, 100]
        );
        assert_eq!(all[2], record(100, "ann", Some("P1")));
        let ann = AuditFilter {
            user: Some("ann".into()),
            ..Default::default()
        };
        assert_eq!(r.audit_entries(&ann, 10).unwrap().len(), 2);
        let p2 = AuditFilter {
            patient_id: Some("P2".into()),
            ..Default::default()
        };
        assert_eq!(
            r.audit_entries(&p2, 10).unwrap()[0].user.as_deref(),
            Some("bob")
        );
        let window = AuditFilter {
            since: Some(150),
            until: Some(300),
            ..Default::default()
        };
        assert_eq!(r.audit_entries(&window, 10).unwrap().len(), 1);
        assert_eq!(
            r.audit_entries(&AuditFilter::default(), 1).unwrap().len(),
            1
        );
        assert_eq!(w.prune(250).unwrap(), 2);
        assert_eq!(
            r.audit_entries(&AuditFilter::default(), 10).unwrap().len(),
            1
        );
    }
}
