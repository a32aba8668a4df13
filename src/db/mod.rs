//! SQLite storage: the schema, its migrations and every query. No SQL lives elsewhere.
//!
//! The database is opened in WAL mode with `synchronous=FULL`: a file is removed from the
//! drop folder only after the transaction that indexes it has reached the disk.

mod associations;
mod audit;
mod events;
mod instances;
mod jobs;
mod outbox;
mod reads;
mod results;
mod schema;
mod stored;

pub use associations::AssociationRecord;
pub use audit::{AuditEvent, AuditFilter, AuditRecord, AuditWriter};
pub use events::{EventEntry, EventLevel, QuarantineEntry};
pub use instances::{NewInstance, SeriesState, StoredInstance};
pub(crate) use instances::{parse_series_state, row_to_instance};
pub(crate) use jobs::row_to_job;
pub use jobs::{FailureKind, Job, JobState};
pub use outbox::{Delivery, DeliveryState, NewDelivery, OutboxCounts};
pub use reads::{
    FailedJob, ProcessingHistogram, QueuedJob, ReadQueries, Reader, ResultRow, StudyFilter,
};
pub use results::StoredResult;

use std::path::Path;

use rusqlite::Connection;
use serde::Serialize;

pub type Result<T> = rusqlite::Result<T>;

/// Column `index` of `row`, a name that `parse` turns into one of a vocabulary's values.
/// The rows are written only from that vocabulary, so a name it does not know is a damaged
/// row, reported as a conversion error naming `what`.
pub(crate) fn vocabulary_column<T>(
    row: &rusqlite::Row,
    index: usize,
    what: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<T> {
    let name: String = row.get(index)?;
    parse(&name).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            index,
            rusqlite::types::Type::Text,
            format!("unknown {what} {name:?}").into(),
        )
    })
}

/// Seconds since the Unix epoch; the unit of every timestamp column.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub struct Database {
    conn: Connection,
}

#[derive(Debug, Clone, Serialize)]
pub struct SkippedSeries {
    pub series_uid: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct StatusCounts {
    pub instances: i64,
    pub series_receiving: i64,
    pub series_selected: i64,
    pub series_skipped: i64,
    pub jobs_pending: i64,
    pub jobs_running: i64,
    pub jobs_done: i64,
    pub jobs_failed: i64,
    pub quarantined: i64,
}

impl Database {
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        Self::configure(conn)
    }

    pub fn open_in_memory() -> Result<Self> {
        Self::configure(Connection::open_in_memory()?)
    }

    fn configure(conn: Connection) -> Result<Self> {
        let busy_timeout = std::time::Duration::from_secs(10);
        conn.busy_timeout(busy_timeout)?;
        // Switching a new file to WAL takes an exclusive lock, and SQLite answers a second
        // connection doing the same (the daemon and `lungwatch status` opening a new
        // database together) with SQLITE_BUSY at once, without its busy handler: retry it
        // within the same timeout.
        let started = std::time::Instant::now();
        loop {
            match conn.pragma_update(None, "journal_mode", "WAL") {
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::DatabaseBusy
                        && started.elapsed() < busy_timeout =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                other => break other?,
            }
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let mut db = Database { conn };
        schema::migrate(&mut db.conn)?;
        Ok(db)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dicom::InstanceHeader;

    fn header(series: &str) -> InstanceHeader {
        InstanceHeader {
            series_instance_uid: Some(series.into()),
            modality: Some("CT".into()),
            ..Default::default()
        }
    }

    fn insert(db: &mut Database, uid: &str, series: &str, now: i64) {
        let h = header(series);
        db.insert_instance(
            &NewInstance {
                sop_instance_uid: uid,
                uid_derived: false,
                header: &h,
                series_uid: series,
                store_path: &format!("store/{uid}.dcm"),
                sha256: "00",
                size_bytes: 1,
                original_name: uid,
            },
            now,
        )
        .unwrap();
    }

    #[test]
    fn concurrent_first_opens_migrate_once() {
        // The daemon and `lungwatch status` may open a new database at the same moment.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let handles: Vec<_> = (0..6)
            .map(|_| {
                let p = path.clone();
                std::thread::spawn(move || Database::open(&p).map(|_| ()))
            })
            .collect();
        for h in handles {
            h.join().unwrap().unwrap();
        }
    }

    #[test]
    fn duplicate_instance_is_refused_by_the_schema() {
        let mut db = Database::open_in_memory().unwrap();
        insert(&mut db, "1.1", "S", 10);
        let h = header("S");
        let again = db.insert_instance(
            &NewInstance {
                sop_instance_uid: "1.1",
                uid_derived: false,
                header: &h,
                series_uid: "S",
                store_path: "elsewhere",
                sha256: "00",
                size_bytes: 1,
                original_name: "x",
            },
            11,
        );
        assert!(again.is_err());
        assert_eq!(db.status_counts().unwrap().instances, 1);
    }

    #[test]
    fn job_lifecycle_and_crash_recovery() {
        let mut db = Database::open_in_memory().unwrap();
        insert(&mut db, "1.1", "S", 10);
        assert_eq!(db.quiet_series(5).unwrap(), Vec::<String>::new());
        assert_eq!(db.quiet_series(10).unwrap(), vec!["S".to_string()]);
        assert!(db.complete_series("S", None, 10, 20).unwrap());
        let job = db.claim_job(21).unwrap().unwrap();
        assert_eq!(job.state, JobState::Running);
        assert!(db.claim_job(21).unwrap().is_none());
        // Crash: the running job goes back to pending and can be claimed again.
        assert_eq!(db.requeue_running_jobs(3, 21).unwrap(), (1, 0));
        let again = db.claim_job(22).unwrap().unwrap();
        assert_eq!((again.id, again.attempts), (job.id, 2));
        db.finish_job(
            again.id,
            Some((FailureKind::UnusableSeries, "decoder failed")),
            23,
        )
        .unwrap();
        let jobs = db.jobs_for_series("S").unwrap();
        assert_eq!(jobs[0].state, JobState::Failed);
        assert_eq!(jobs[0].reason.as_deref(), Some("decoder failed"));
    }

    #[test]
    fn a_job_that_keeps_killing_the_process_is_failed_at_the_limit() {
        let mut db = Database::open_in_memory().unwrap();
        insert(&mut db, "1.1", "S", 10);
        db.complete_series("S", None, 10, 20).unwrap();
        for attempt in 1..=3 {
            let job = db.claim_job(20 + attempt).unwrap().unwrap();
            assert_eq!(job.attempts, attempt);
            // The process dies here; start-up requeues or gives up.
            let (requeued, given_up) = db.requeue_running_jobs(3, 30 + attempt).unwrap();
            assert_eq!(
                (requeued, given_up),
                if attempt < 3 { (1, 0) } else { (0, 1) }
            );
        }
        let jobs = db.jobs_for_series("S").unwrap();
        assert_eq!(jobs[0].state, JobState::Failed);
        assert!(
            jobs[0]
                .reason
                .as_deref()
                .unwrap()
                .contains("interrupted 3 times")
        );
        assert_eq!(
            db.failed_jobs_by_kind().unwrap(),
            vec![(FailureKind::Interrupted.as_str().to_string(), 1)]
        );
        assert!(db.claim_job(40).unwrap().is_none());
    }

    #[test]
    fn late_instance_reopens_a_series_and_withdraws_its_pending_job() {
        let mut db = Database::open_in_memory().unwrap();
        insert(&mut db, "1.1", "S", 10);
        db.complete_series("S", None, 10, 20).unwrap();
        insert(&mut db, "1.2", "S", 30);
        assert_eq!(
            db.series_state("S").unwrap().unwrap().0,
            SeriesState::Receiving
        );
        assert!(db.jobs_for_series("S").unwrap().is_empty());
        // Completion is refused if an instance arrived after the cutoff the caller judged.
        assert!(!db.complete_series("S", None, 25, 40).unwrap());
        assert!(
            db.complete_series("S", Some("too few slices"), 30, 40)
                .unwrap()
        );
        let c = db.status_counts().unwrap();
        assert_eq!((c.series_skipped, c.jobs_pending), (1, 0));
    }
}
