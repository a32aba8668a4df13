//! SQLite storage: the schema, its migrations and every query. No SQL lives elsewhere.
//!
//! The database is opened in WAL mode with `synchronous=FULL`: a file is removed from the
//! drop folder only after the transaction that indexes it has reached the disk.

mod associations;
mod audit;
mod outbox;
mod reads;
mod results;
mod schema;
mod stored;

pub use associations::AssociationRecord;
pub use audit::{AuditEvent, AuditFilter, AuditRecord, AuditWriter};
pub use outbox::{Delivery, NewDelivery, OutboxCounts};
pub use reads::{
    FailedJob, ProcessingHistogram, QueuedJob, ReadQueries, Reader, ResultRow, StudyFilter,
};
pub use results::StoredResult;

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::dicom::InstanceHeader;

pub type Result<T> = rusqlite::Result<T>;

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

/// An instance as indexed, with the header it was selected on.
#[derive(Debug, Clone)]
pub struct StoredInstance {
    pub sop_instance_uid: String,
    pub series_uid: String,
    pub store_path: String,
    pub sha256: String,
    pub header: InstanceHeader,
}

/// What to record for a newly stored instance.
pub struct NewInstance<'a> {
    pub sop_instance_uid: &'a str,
    pub uid_derived: bool,
    pub header: &'a InstanceHeader,
    pub series_uid: &'a str,
    pub store_path: &'a str,
    pub sha256: &'a str,
    pub size_bytes: u64,
    pub original_name: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SeriesState {
    /// Files are still arriving (or may: the quiet period has not passed).
    Receiving,
    /// Complete and passed selection: it has a job.
    Selected,
    /// Complete and failed selection: see `skip_reason`.
    Skipped,
}

impl SeriesState {
    fn as_str(self) -> &'static str {
        match self {
            SeriesState::Receiving => "receiving",
            SeriesState::Selected => "selected",
            SeriesState::Skipped => "skipped",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Pending,
    Running,
    Done,
    Failed,
}

/// Why a job failed, as counted by `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    /// The stored files do not make a volume (decoding, geometry, sizes).
    UnusableSeries,
    /// The analysis returned an error.
    AnalysisError,
    /// The analysis panicked: a bug, caught so that the queue goes on.
    InternalError,
    /// Previews or masks could not be written (disk, permissions).
    ArtifactError,
    /// Started `analysis.max_attempts` times without finishing.
    Interrupted,
}

impl FailureKind {
    pub const ALL: [FailureKind; 5] = [
        FailureKind::UnusableSeries,
        FailureKind::AnalysisError,
        FailureKind::InternalError,
        FailureKind::ArtifactError,
        FailureKind::Interrupted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::UnusableSeries => "unusable-series",
            FailureKind::AnalysisError => "analysis-error",
            FailureKind::InternalError => "internal-error",
            FailureKind::ArtifactError => "artifact-error",
            FailureKind::Interrupted => "interrupted",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Job {
    pub id: i64,
    pub series_uid: String,
    pub state: JobState,
    pub reason: Option<String>,
    pub attempts: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct QuarantineEntry {
    pub id: i64,
    pub original_name: String,
    pub path: String,
    pub reason_code: String,
    pub reason: String,
    pub at: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct EventEntry {
    pub at: i64,
    pub level: String,
    pub message: String,
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
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let mut db = Database { conn };
        schema::migrate(&mut db.conn)?;
        Ok(db)
    }

    // ---- instances and series -------------------------------------------------------

    /// Indexes a stored instance and (re)opens its series, in one transaction.
    ///
    /// A series that was already complete goes back to `receiving` when a new instance
    /// arrives: its pending job is withdrawn, and it is judged again after the quiet period.
    pub fn insert_instance(&mut self, new: &NewInstance, now: i64) -> Result<()> {
        let tx = self.conn.transaction()?;
        let h = new.header;
        tx.execute(
            "INSERT INTO series (series_uid, study_uid, patient_id, patient_name, study_date,
                                 accession_number, modality, series_description, state,
                                 first_seen_at, last_instance_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'receiving', ?9, ?9)
             ON CONFLICT(series_uid) DO UPDATE SET
                 state = 'receiving', skip_reason = NULL, completed_at = NULL,
                 last_instance_at = excluded.last_instance_at",
            params![
                new.series_uid,
                h.study_instance_uid,
                h.patient_id,
                h.patient_name,
                h.study_date,
                h.accession_number,
                h.modality,
                h.series_description,
                now
            ],
        )?;
        tx.execute(
            "DELETE FROM jobs WHERE series_uid = ?1 AND state = 'pending'",
            [new.series_uid],
        )?;
        tx.execute(
            "INSERT INTO instances (sop_instance_uid, uid_derived, series_uid, instance_number,
                                    store_path, sha256, size_bytes, transfer_syntax,
                                    original_name, header_json, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                new.sop_instance_uid,
                new.uid_derived,
                new.series_uid,
                h.instance_number,
                new.store_path,
                new.sha256,
                new.size_bytes as i64,
                h.transfer_syntax,
                new.original_name,
                stored::to_json(h).expect("headers serialise"),
                now
            ],
        )?;
        tx.commit()
    }

    /// Marks a quiet series complete: selected with a new pending job, or skipped with the
    /// reason. One transaction, and only if no instance arrived since `cutoff`.
    pub fn complete_series(
        &mut self,
        series_uid: &str,
        skip_reason: Option<&str>,
        cutoff: i64,
        now: i64,
    ) -> Result<bool> {
        let tx = self.conn.transaction()?;
        let state = match skip_reason {
            None => SeriesState::Selected,
            Some(_) => SeriesState::Skipped,
        };
        let changed = tx.execute(
            "UPDATE series SET state = ?2, skip_reason = ?3, completed_at = ?4
             WHERE series_uid = ?1 AND state = 'receiving' AND last_instance_at <= ?5",
            params![series_uid, state.as_str(), skip_reason, now, cutoff],
        )?;
        if changed == 1 && skip_reason.is_none() {
            tx.execute(
                "INSERT INTO jobs (series_uid, state, created_at) VALUES (?1, 'pending', ?2)",
                params![series_uid, now],
            )?;
        }
        tx.commit()?;
        Ok(changed == 1)
    }

    // ---- jobs -------------------------------------------------------------------------

    /// After a crash or restart, no job can still be running: put them back in the queue,
    /// unless they were started `max_attempts` times already (each claim counts one): a
    /// series that kills the process every time is failed instead of looping for ever.
    /// Returns (requeued, given up).
    pub fn requeue_running_jobs(&mut self, max_attempts: u32, now: i64) -> Result<(usize, usize)> {
        let tx = self.conn.transaction()?;
        let given_up = tx.execute(
            "UPDATE jobs SET state = 'failed', failure_kind = ?2, finished_at = ?3,
                 reason = 'the analysis was interrupted ' || attempts || ' times (lungwatch was \
                 killed or crashed while analysing this series each time); not retried again'
             WHERE state = 'running' AND attempts >= ?1",
            params![max_attempts, FailureKind::Interrupted.as_str(), now],
        )?;
        let requeued = tx.execute(
            "UPDATE jobs SET state = 'pending', started_at = NULL WHERE state = 'running'",
            [],
        )?;
        tx.commit()?;
        Ok((requeued, given_up))
    }

    /// Takes the oldest pending job, marking it running.
    pub fn claim_job(&mut self, now: i64) -> Result<Option<Job>> {
        let tx = self.conn.transaction()?;
        let job = tx
            .query_row(
                "UPDATE jobs SET state = 'running', started_at = ?1, attempts = attempts + 1
                 WHERE id = (SELECT id FROM jobs WHERE state = 'pending' ORDER BY id LIMIT 1)
                 RETURNING id, series_uid, state, reason, attempts",
                [now],
                row_to_job,
            )
            .optional()?;
        tx.commit()?;
        Ok(job)
    }

    /// Ends a running job: done, or failed with its kind and reason.
    pub fn finish_job(
        &self,
        id: i64,
        failure: Option<(FailureKind, &str)>,
        now: i64,
    ) -> Result<()> {
        let state = if failure.is_some() { "failed" } else { "done" };
        self.conn.execute(
            "UPDATE jobs SET state = ?2, failure_kind = ?3, reason = ?4, finished_at = ?5
             WHERE id = ?1 AND state = 'running'",
            params![
                id,
                state,
                failure.map(|(k, _)| k.as_str()),
                failure.map(|(_, r)| r),
                now
            ],
        )?;
        Ok(())
    }

    // ---- quarantine and events ----------------------------------------------------------

    pub fn record_quarantine(
        &self,
        original_name: &str,
        path: &str,
        reason_code: &str,
        reason: &str,
        now: i64,
    ) -> Result<()> {
        self.conn.execute(
            "INSERT INTO quarantine (original_name, path, reason_code, reason, at)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(path) DO NOTHING",
            params![original_name, path, reason_code, reason, now],
        )?;
        Ok(())
    }

    pub fn log_event(&self, level: EventLevel, message: &str, now: i64) -> Result<()> {
        self.conn.execute(
            "INSERT INTO events (at, level, message) VALUES (?1, ?2, ?3)",
            params![now, level.as_str(), message],
        )?;
        // Keep the table bounded: it is a recent-errors view, not an archive.
        self.conn.execute(
            "DELETE FROM events WHERE id <= (SELECT MAX(id) FROM events) - 1000",
            [],
        )?;
        Ok(())
    }
}

/// The level of a recorded event (the status page's "recent problems" are errors and
/// warnings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventLevel {
    Error,
    Warn,
    Info,
}

impl EventLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            EventLevel::Error => "error",
            EventLevel::Warn => "warn",
            EventLevel::Info => "info",
        }
    }
}

impl Database {
    /// Logs `message` to stderr and keeps it for the status views; a database that cannot
    /// take it is logged too, never an error for the caller.
    pub fn report(&self, level: EventLevel, message: &str) {
        match level {
            EventLevel::Error => log::error!("{message}"),
            EventLevel::Warn => log::warn!("{message}"),
            EventLevel::Info => log::info!("{message}"),
        }
        if let Err(e) = self.log_event(level, message, now_secs()) {
            log::error!("cannot record event in the database: {e}");
        }
    }
}

pub(crate) fn row_to_instance(r: &rusqlite::Row) -> Result<StoredInstance> {
    let json: String = r.get(4)?;
    let header = stored::from_json(&json).map_err(|e| stored::column_error(4, e))?;
    Ok(StoredInstance {
        sop_instance_uid: r.get(0)?,
        series_uid: r.get(1)?,
        store_path: r.get(2)?,
        sha256: r.get(3)?,
        header,
    })
}

pub(crate) fn row_to_job(r: &rusqlite::Row) -> Result<Job> {
    let state: String = r.get(2)?;
    Ok(Job {
        id: r.get(0)?,
        series_uid: r.get(1)?,
        state: match state.as_str() {
            "pending" => JobState::Pending,
            "running" => JobState::Running,
            "done" => JobState::Done,
            _ => JobState::Failed,
        },
        reason: r.get(3)?,
        attempts: r.get(4)?,
    })
}

pub(crate) fn parse_series_state(s: &str) -> SeriesState {
    match s {
        "selected" => SeriesState::Selected,
        "skipped" => SeriesState::Skipped,
        _ => SeriesState::Receiving,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
