//! The DICOM receiver's association log.

use rusqlite::params;
use serde::Serialize;

#[cfg(test)]
use super::ReadQueries;
use super::{Database, Result};

/// Rows kept: the log is a recent-activity view, not an archive.
const KEEP: i64 = 10_000;

/// One association, accepted or rejected, as it ended.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AssociationRecord {
    pub calling_ae: String,
    pub called_ae: String,
    /// The peer's IP address and port.
    pub peer: String,
    pub started_at: i64,
    pub duration_ms: i64,
    /// Instances stored and indexed.
    pub stored: i64,
    /// Instances already stored (answered with success, not stored again).
    pub duplicates: i64,
    /// Instances quarantined or refused (answered with an error status).
    pub refused: i64,
    /// Data set bytes received.
    pub bytes: i64,
    /// How it ended: "released", "rejected: …", "aborted by the peer", …
    pub outcome: String,
}

impl Database {
    pub fn log_association(&self, a: &AssociationRecord) -> Result<()> {
        self.conn.execute(
            "INSERT INTO associations (calling_ae, called_ae, peer, started_at, duration_ms,
                                       stored, duplicates, refused, bytes, outcome)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                a.calling_ae,
                a.called_ae,
                a.peer,
                a.started_at,
                a.duration_ms,
                a.stored,
                a.duplicates,
                a.refused,
                a.bytes,
                a.outcome
            ],
        )?;
        self.conn.execute(
            "DELETE FROM associations WHERE id <= (SELECT MAX(id) FROM associations) - ?1",
            [KEEP],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn associations_are_logged_newest_first() {
        let db = Database::open_in_memory().unwrap();
        for (i, outcome) in ["released", "rejected: called AE title \"X\""]
            .iter()
            .enumerate()
        {
            db.log_association(&AssociationRecord {
                calling_ae: "PACS".into(),
                called_ae: "LUNGWATCH".into(),
                peer: "127.0.0.1:40000".into(),
                started_at: 100 + i as i64,
                stored: 3,
                bytes: 1500,
                outcome: outcome.to_string(),
                ..Default::default()
            })
            .unwrap();
        }
        let rows = db.recent_associations(10).unwrap();
        assert_eq!(rows.len(), 2);
        assert!(rows[0].outcome.starts_with("rejected"));
        assert_eq!((rows[1].stored, rows[1].bytes), (3, 1500));
    }
}
