//! Every read-only query, as the `ReadQueries` trait, and `Reader`, the handle that can
//! only read: the web page and `lungwatch status` hold one, so "the page only reads" holds
//! by type. `Database` (the daemon's writer) implements the same trait.
//!
//! A series can be analysed more than once; everywhere here the newest result of a series
//! (highest `results.id`) is the one that counts.

use std::path::Path;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use crate::report::Class;
use serde::Serialize;

use super::results::row_to_result;
use super::{
    AssociationRecord, Database, EventEntry, EventLevel, Job, QuarantineEntry, Result, SeriesState,
    SkippedSeries, StatusCounts, StoredInstance, StoredResult, parse_series_state, row_to_instance,
    row_to_job, schema,
};

/// The connection behind a handle. In a private module, so code outside `db` can read
/// through `ReadQueries` but never reach the connection to write.
mod sealed {
    pub trait Connected {
        fn conn(&self) -> &rusqlite::Connection;
    }
}
use sealed::Connected;

impl Connected for Database {
    fn conn(&self) -> &Connection {
        &self.conn
    }
}

/// A read-only database handle: opened with `SQLITE_OPEN_READ_ONLY` and `query_only`, it
/// runs no migration and has no write methods.
pub struct Reader {
    conn: Connection,
}

impl Connected for Reader {
    fn conn(&self) -> &Connection {
        &self.conn
    }
}

impl Reader {
    /// Opens an existing database for reading. Fails when it does not exist yet or has an
    /// older schema than this build (the daemon migrates it at start-up).
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.pragma_update(None, "query_only", true)?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if (version as usize) < schema::VERSION {
            return Err(rusqlite::Error::InvalidParameterName(format!(
                "the database has schema version {version}, this lungwatch reads version {}: \
                 start `lungwatch serve` once to migrate it",
                schema::VERSION
            )));
        }
        Ok(Reader { conn })
    }
}

/// Restricts result queries to the newest result of each series.
const LATEST: &str = "r.id IN (SELECT MAX(id) FROM results GROUP BY series_uid)";

/// Search terms of the studies list. Empty terms match everything.
#[derive(Debug, Clone, Default)]
pub struct StudyFilter {
    /// Substring of the patient ID (case-insensitive).
    pub patient_id: Option<String>,
    /// Substring of the accession number (case-insensitive).
    pub accession: Option<String>,
    /// Digits of the study date, `YYYYMMDD` or a prefix (`YYYYMM`, `YYYY`).
    pub date_prefix: Option<String>,
}

/// One series' newest result, with the columns the list pages need.
#[derive(Debug, Clone, Serialize)]
pub struct ResultRow {
    pub result_id: i64,
    pub series_uid: String,
    pub study_uid: Option<String>,
    pub patient_id: Option<String>,
    pub patient_name: Option<String>,
    pub study_date: Option<String>,
    pub accession_number: Option<String>,
    pub series_description: Option<String>,
    pub top_class: Class,
    pub p_covid19: f64,
    pub p_other: f64,
    pub p_normal: f64,
    pub affected_ratio: f64,
    pub lesion_ml: f64,
    pub severity_score: i64,
    pub processing_ms: i64,
    pub created_at: i64,
}

/// A failed job with its reason.
#[derive(Debug, Clone, Serialize)]
pub struct FailedJob {
    pub job_id: i64,
    pub series_uid: String,
    pub reason: String,
    pub finished_at: Option<i64>,
}

/// A job waiting or being analysed, for the status page's queue table.
#[derive(Debug, Clone, Serialize)]
pub struct QueuedJob {
    pub job_id: i64,
    pub series_uid: String,
    /// "running" or "pending".
    pub state: String,
    pub attempts: i64,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub series_description: Option<String>,
}

/// Cumulative counts of processing times at or below each bound (Prometheus `le`).
#[derive(Debug, Clone, Serialize)]
pub struct ProcessingHistogram {
    pub bounds_ms: Vec<i64>,
    pub cumulative: Vec<i64>,
    pub count: i64,
    pub sum_ms: i64,
}

/// Rows whose stored JSON cannot be read (damaged, or written by a newer lungwatch) are
/// logged and left out, so one such row does not take a whole page down with it.
fn readable<T>(rows: impl Iterator<Item = Result<T>>) -> Result<Vec<T>> {
    let mut out = Vec::new();
    for row in rows {
        match row {
            Ok(v) => out.push(v),
            Err(rusqlite::Error::FromSqlConversionFailure(_, _, e)) => {
                log::warn!("a stored result cannot be read and is left out: {e}")
            }
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

fn like_pattern(term: &str) -> String {
    let escaped: String = term
        .chars()
        .flat_map(|c| match c {
            '%' | '_' | '\\' => vec!['\\', c],
            c => vec![c],
        })
        .collect();
    format!("%{escaped}%")
}

fn row_to_result_row(r: &rusqlite::Row) -> Result<ResultRow> {
    Ok(ResultRow {
        result_id: r.get(0)?,
        series_uid: r.get(1)?,
        study_uid: r.get(2)?,
        patient_id: r.get(3)?,
        patient_name: r.get(4)?,
        study_date: r.get(5)?,
        accession_number: r.get(6)?,
        series_description: r.get(7)?,
        top_class: super::vocabulary_column(r, 8, "class", Class::parse)?,
        p_covid19: r.get(9)?,
        p_other: r.get(10)?,
        p_normal: r.get(11)?,
        affected_ratio: r.get(12)?,
        lesion_ml: r.get(13)?,
        severity_score: r.get(14)?,
        processing_ms: r.get(15)?,
        created_at: r.get(16)?,
    })
}

impl ReadQueries for Database {}
impl ReadQueries for Reader {}

/// Every query that only reads. Implemented by `Reader` and `Database`.
pub trait ReadQueries: Connected {
    /// Audit rows matching `filter`, newest first, at most `limit`.
    fn audit_entries(
        &self,
        filter: &super::AuditFilter,
        limit: i64,
    ) -> Result<Vec<super::AuditRecord>> {
        super::audit::search(self.conn(), filter, limit)
    }

    /// The newest result of every series matching `filter`, newest study date first.
    /// At most `limit` rows.
    fn search_results(&self, filter: &StudyFilter, limit: i64) -> Result<Vec<ResultRow>> {
        let pid = filter.patient_id.as_deref().map(like_pattern);
        let acc = filter.accession.as_deref().map(like_pattern);
        let date = filter
            .date_prefix
            .as_deref()
            .map(|d| format!("{}%", d.replace(['%', '_', '\\'], "")));
        let sql = format!(
            "SELECT r.id, r.series_uid, r.study_uid, r.patient_id, s.patient_name, r.study_date,
                    r.accession_number, s.series_description, r.top_class, r.p_covid19, r.p_other,
                    r.p_normal, r.affected_ratio, r.lesion_ml, r.severity_score, r.processing_ms,
                    r.created_at
             FROM results r LEFT JOIN series s ON s.series_uid = r.series_uid
             WHERE {LATEST}
               AND (?1 IS NULL OR r.patient_id LIKE ?1 ESCAPE '\\')
               AND (?2 IS NULL OR r.accession_number LIKE ?2 ESCAPE '\\')
               AND (?3 IS NULL OR r.study_date LIKE ?3 ESCAPE '\\')
             ORDER BY r.study_date IS NULL, r.study_date DESC, r.created_at DESC, r.id DESC
             LIMIT ?4"
        );
        let mut stmt = self.conn().prepare(&sql)?;
        stmt.query_map(params![pid, acc, date, limit], row_to_result_row)?
            .collect()
    }

    /// The newest result of each series of a study, by series UID.
    fn study_results(&self, study_uid: &str) -> Result<Vec<StoredResult>> {
        let sql = format!(
            "SELECT r.id, r.job_id, r.report_json, r.artifacts_dir, r.created_at
             FROM results r WHERE {LATEST} AND r.study_uid = ?1 ORDER BY r.series_uid"
        );
        let mut stmt = self.conn().prepare(&sql)?;
        readable(stmt.query_map([study_uid], row_to_result)?)
    }

    /// The newest result of each series of a patient, oldest study first.
    fn patient_results(&self, patient_id: &str) -> Result<Vec<StoredResult>> {
        let sql = format!(
            "SELECT r.id, r.job_id, r.report_json, r.artifacts_dir, r.created_at
             FROM results r WHERE {LATEST} AND r.patient_id = ?1
             ORDER BY r.study_date IS NULL, r.study_date, r.created_at, r.id"
        );
        let mut stmt = self.conn().prepare(&sql)?;
        readable(stmt.query_map([patient_id], row_to_result)?)
    }

    /// Where a result's previews and masks are, relative to `paths.data`.
    fn result_artifacts_dir(&self, result_id: i64) -> Result<Option<String>> {
        self.conn()
            .query_row(
                "SELECT artifacts_dir FROM results WHERE id = ?1",
                [result_id],
                |r| r.get(0),
            )
            .optional()
    }

    /// The patient ID of a result (for the audit trail of artifact requests).
    fn result_patient_id(&self, result_id: i64) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT patient_id FROM results WHERE id = ?1",
                [result_id],
                |r| r.get::<_, Option<String>>(0),
            )
            .optional()?
            .flatten())
    }

    /// Distinct studies with a result recorded at or after `since`.
    fn studies_done_since(&self, since: i64) -> Result<i64> {
        self.conn().query_row(
            "SELECT COUNT(DISTINCT COALESCE(study_uid, series_uid)) FROM results
             WHERE created_at >= ?1",
            [since],
            |r| r.get(0),
        )
    }

    /// Processing times of the newest `limit` results, in ms.
    fn recent_processing_ms(&self, limit: i64) -> Result<Vec<i64>> {
        let mut stmt = self
            .conn()
            .prepare("SELECT processing_ms FROM results ORDER BY id DESC LIMIT ?1")?;
        stmt.query_map([limit], |r| r.get(0))?.collect()
    }

    /// Histogram of every stored result's processing time; `bounds_ms` ascending.
    /// One scan of the table, however many buckets.
    fn processing_histogram(&self, bounds_ms: &[i64]) -> Result<ProcessingHistogram> {
        let buckets: String = (0..bounds_ms.len())
            .map(|i| format!(", COALESCE(SUM(processing_ms <= ?{}), 0)", i + 1))
            .collect();
        let sql = format!("SELECT COUNT(*), COALESCE(SUM(processing_ms), 0){buckets} FROM results");
        self.conn()
            .query_row(&sql, rusqlite::params_from_iter(bounds_ms.iter()), |r| {
                let cumulative = (0..bounds_ms.len())
                    .map(|i| r.get(i + 2))
                    .collect::<Result<Vec<i64>>>()?;
                Ok(ProcessingHistogram {
                    bounds_ms: bounds_ms.to_vec(),
                    cumulative,
                    count: r.get(0)?,
                    sum_ms: r.get(1)?,
                })
            })
    }

    /// The newest events of the given levels.
    fn recent_events_at_levels(
        &self,
        levels: &[EventLevel],
        limit: i64,
    ) -> Result<Vec<EventEntry>> {
        let names: Vec<&str> = levels.iter().map(|l| l.as_str()).collect();
        let json = serde_json::to_string(&names).expect("strings serialise");
        let mut stmt = self.conn().prepare(
            "SELECT at, level, message FROM events
             WHERE level IN (SELECT value FROM json_each(?1)) ORDER BY id DESC LIMIT ?2",
        )?;
        stmt.query_map(params![json, limit], |r| {
            Ok(EventEntry {
                at: r.get(0)?,
                level: r.get(1)?,
                message: r.get(2)?,
            })
        })?
        .collect()
    }

    /// Quarantined files counted by reason code, most frequent first.
    fn quarantine_by_reason(&self) -> Result<Vec<(String, i64)>> {
        let mut stmt = self.conn().prepare(
            "SELECT reason_code, COUNT(*) AS n FROM quarantine GROUP BY reason_code
             ORDER BY n DESC, reason_code",
        )?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect()
    }

    /// Running jobs (longest-running first), then pending jobs in the order they will be
    /// taken; at most `limit`.
    fn queued_jobs(&self, limit: i64) -> Result<Vec<QueuedJob>> {
        let mut stmt = self.conn().prepare(
            "SELECT j.id, j.series_uid, j.state, j.attempts, j.created_at, j.started_at,
                    s.series_description
             FROM jobs j LEFT JOIN series s ON s.series_uid = j.series_uid
             WHERE j.state IN ('running', 'pending')
             ORDER BY j.state = 'running' DESC, j.started_at, j.id LIMIT ?1",
        )?;
        stmt.query_map([limit], |r| {
            Ok(QueuedJob {
                job_id: r.get(0)?,
                series_uid: r.get(1)?,
                state: r.get(2)?,
                attempts: r.get(3)?,
                created_at: r.get(4)?,
                started_at: r.get(5)?,
                series_description: r.get(6)?,
            })
        })?
        .collect()
    }

    /// The newest failed jobs with their reasons.
    fn recent_failed_jobs(&self, limit: i64) -> Result<Vec<FailedJob>> {
        let mut stmt = self.conn().prepare(
            "SELECT id, series_uid, COALESCE(reason, ''), finished_at FROM jobs
             WHERE state = 'failed' ORDER BY finished_at DESC, id DESC LIMIT ?1",
        )?;
        stmt.query_map([limit], |r| {
            Ok(FailedJob {
                job_id: r.get(0)?,
                series_uid: r.get(1)?,
                reason: r.get(2)?,
                finished_at: r.get(3)?,
            })
        })?
        .collect()
    }
    fn find_instance(&self, sop_instance_uid: &str) -> Result<Option<StoredInstance>> {
        self.conn()
            .query_row(
                "SELECT sop_instance_uid, series_uid, store_path, sha256, header_json
                 FROM instances WHERE sop_instance_uid = ?1",
                [sop_instance_uid],
                row_to_instance,
            )
            .optional()
    }

    /// Series still receiving whose last instance arrived at or before `cutoff`.
    fn quiet_series(&self, cutoff: i64) -> Result<Vec<String>> {
        let mut stmt = self.conn().prepare(
            "SELECT series_uid FROM series WHERE state = 'receiving' AND last_instance_at <= ?1
             ORDER BY last_instance_at",
        )?;
        stmt.query_map([cutoff], |r| r.get(0))?.collect()
    }

    fn series_instances(&self, series_uid: &str) -> Result<Vec<StoredInstance>> {
        let mut stmt = self.conn().prepare(
            "SELECT sop_instance_uid, series_uid, store_path, sha256, header_json
             FROM instances WHERE series_uid = ?1 ORDER BY instance_number, sop_instance_uid",
        )?;
        stmt.query_map([series_uid], row_to_instance)?.collect()
    }

    fn series_state(&self, series_uid: &str) -> Result<Option<(SeriesState, Option<String>)>> {
        self.conn()
            .query_row(
                "SELECT state, skip_reason FROM series WHERE series_uid = ?1",
                [series_uid],
                |r| Ok((parse_series_state(&r.get::<_, String>(0)?), r.get(1)?)),
            )
            .optional()
    }

    /// Every indexed store path, for reconciling the store folder after a crash.
    fn instance_count_at_path(&self, store_path: &str) -> Result<i64> {
        self.conn().query_row(
            "SELECT COUNT(*) FROM instances WHERE store_path = ?1",
            [store_path],
            |r| r.get(0),
        )
    }

    fn jobs_for_series(&self, series_uid: &str) -> Result<Vec<Job>> {
        let mut stmt = self.conn().prepare(
            "SELECT id, series_uid, state, reason, attempts FROM jobs WHERE series_uid = ?1 ORDER BY id",
        )?;
        stmt.query_map([series_uid], row_to_job)?.collect()
    }

    fn is_quarantine_recorded(&self, path: &str) -> Result<bool> {
        self.conn().query_row(
            "SELECT EXISTS(SELECT 1 FROM quarantine WHERE path = ?1)",
            [path],
            |r| r.get(0),
        )
    }

    fn recent_quarantine(&self, limit: i64) -> Result<Vec<QuarantineEntry>> {
        let mut stmt = self.conn().prepare(
            "SELECT id, original_name, path, reason_code, reason, at FROM quarantine
             ORDER BY id DESC LIMIT ?1",
        )?;
        stmt.query_map([limit], |r| {
            Ok(QuarantineEntry {
                id: r.get(0)?,
                original_name: r.get(1)?,
                path: r.get(2)?,
                reason_code: r.get(3)?,
                reason: r.get(4)?,
                at: r.get(5)?,
            })
        })?
        .collect()
    }

    fn recent_events(&self, limit: i64) -> Result<Vec<EventEntry>> {
        let mut stmt = self
            .conn()
            .prepare("SELECT at, level, message FROM events ORDER BY id DESC LIMIT ?1")?;
        stmt.query_map([limit], |r| {
            Ok(EventEntry {
                at: r.get(0)?,
                level: r.get(1)?,
                message: r.get(2)?,
            })
        })?
        .collect()
    }

    fn recent_skipped(&self, limit: i64) -> Result<Vec<SkippedSeries>> {
        let mut stmt = self.conn().prepare(
            "SELECT series_uid, skip_reason FROM series WHERE state = 'skipped'
             ORDER BY completed_at DESC LIMIT ?1",
        )?;
        stmt.query_map([limit], |r| {
            Ok(SkippedSeries {
                series_uid: r.get(0)?,
                reason: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
            })
        })?
        .collect()
    }

    fn status_counts(&self) -> Result<StatusCounts> {
        let count = |sql: &str| -> Result<i64> { self.conn().query_row(sql, [], |r| r.get(0)) };
        let series = |state: &str| -> Result<i64> {
            self.conn().query_row(
                "SELECT COUNT(*) FROM series WHERE state = ?1",
                [state],
                |r| r.get(0),
            )
        };
        let jobs = |state: &str| -> Result<i64> {
            self.conn()
                .query_row("SELECT COUNT(*) FROM jobs WHERE state = ?1", [state], |r| {
                    r.get(0)
                })
        };
        Ok(StatusCounts {
            instances: count("SELECT COUNT(*) FROM instances")?,
            series_receiving: series("receiving")?,
            series_selected: series("selected")?,
            series_skipped: series("skipped")?,
            jobs_pending: jobs("pending")?,
            jobs_running: jobs("running")?,
            jobs_done: jobs("done")?,
            jobs_failed: jobs("failed")?,
            quarantined: count("SELECT COUNT(*) FROM quarantine")?,
        })
    }

    /// The newest result of a series.
    fn latest_result_for_series(&self, series_uid: &str) -> Result<Option<StoredResult>> {
        self.conn()
            .query_row(
                "SELECT id, job_id, report_json, artifacts_dir, created_at FROM results
                 WHERE series_uid = ?1 ORDER BY id DESC LIMIT 1",
                [series_uid],
                row_to_result,
            )
            .optional()
    }

    /// Every result, oldest first (for tests and exports).
    fn all_results(&self) -> Result<Vec<StoredResult>> {
        let mut stmt = self.conn().prepare(
            "SELECT id, job_id, report_json, artifacts_dir, created_at FROM results ORDER BY id",
        )?;
        stmt.query_map([], row_to_result)?.collect()
    }
    /// Failed jobs counted by `FailureKind` code (`unknown` for jobs failed before kinds
    /// were recorded), most frequent first.
    fn failed_jobs_by_kind(&self) -> Result<Vec<(String, i64)>> {
        let mut stmt = self.conn().prepare(
            "SELECT COALESCE(failure_kind, 'unknown') AS kind, COUNT(*) AS n FROM jobs
             WHERE state = 'failed' GROUP BY kind ORDER BY n DESC, kind",
        )?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect()
    }

    /// Jobs running since before `started_before`: (job id, series UID, started at).
    fn jobs_running_since_before(&self, started_before: i64) -> Result<Vec<(i64, String, i64)>> {
        let mut stmt = self.conn().prepare(
            "SELECT id, series_uid, started_at FROM jobs
             WHERE state = 'running' AND started_at < ?1 ORDER BY started_at",
        )?;
        stmt.query_map([started_before], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect()
    }

    /// The ids of the jobs that have a result row.
    fn job_ids_with_results(&self) -> Result<std::collections::HashSet<i64>> {
        let mut stmt = self.conn().prepare("SELECT job_id FROM results")?;
        stmt.query_map([], |r| r.get(0))?.collect()
    }
    /// The outbox counted by destination and state.
    fn outbox_counts(&self) -> Result<Vec<super::OutboxCounts>> {
        super::outbox::counts(self.conn())
    }

    /// Failed deliveries and those waiting to be retried, newest first.
    fn outbox_problems(&self, limit: i64) -> Result<Vec<super::Delivery>> {
        super::outbox::problems(self.conn(), limit)
    }

    /// Every delivery of a study's objects.
    fn study_deliveries(&self, study_uid: &str) -> Result<Vec<super::Delivery>> {
        super::outbox::of_study(self.conn(), study_uid)
    }

    /// The outbox rows with these ids.
    fn outbox_rows(&self, ids: &[i64]) -> Result<Vec<super::Delivery>> {
        super::outbox::by_ids(self.conn(), ids)
    }

    /// The newest associations first.
    fn recent_associations(&self, limit: i64) -> Result<Vec<AssociationRecord>> {
        let mut stmt = self.conn().prepare(
            "SELECT calling_ae, called_ae, peer, started_at, duration_ms, stored, duplicates,
                    refused, bytes, outcome
             FROM associations ORDER BY id DESC LIMIT ?1",
        )?;
        stmt.query_map([limit], |r| {
            Ok(AssociationRecord {
                calling_ae: r.get(0)?,
                called_ae: r.get(1)?,
                peer: r.get(2)?,
                started_at: r.get(3)?,
                duration_ms: r.get(4)?,
                stored: r.get(5)?,
                duplicates: r.get(6)?,
                refused: r.get(7)?,
                bytes: r.get(8)?,
                outcome: r.get(9)?,
            })
        })?
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_reads_what_the_writer_wrote_and_never_migrates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        assert!(
            Reader::open(&path).is_err(),
            "no database: nothing is created"
        );
        assert!(!path.exists());
        // A file with no schema (never migrated) is refused, not migrated.
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch("CREATE TABLE t (x)")
            .unwrap();
        let e = Reader::open(&path).err().expect("an old schema is refused");
        assert!(
            e.to_string().contains("start `lungwatch serve` once"),
            "{e}"
        );
        std::fs::remove_file(&path).unwrap();
        let db = Database::open(&path).unwrap();
        db.log_event(EventLevel::Error, "boom", 5).unwrap();
        let reader = Reader::open(&path).unwrap();
        assert_eq!(reader.recent_events(5).unwrap()[0].message, "boom");
        assert_eq!(reader.status_counts().unwrap().instances, 0);
        // Even through the connection itself, the handle cannot write.
        assert!(reader.conn().execute("DELETE FROM events", []).is_err());
    }

    #[test]
    fn like_terms_are_literal() {
        assert_eq!(like_pattern("a%b_c"), "%a\\%b\\_c%");
    }

    #[test]
    fn empty_database_answers_every_page_query() {
        let db = Database::open_in_memory().unwrap();
        assert!(
            db.search_results(&StudyFilter::default(), 10)
                .unwrap()
                .is_empty()
        );
        assert!(db.study_results("1.2").unwrap().is_empty());
        assert!(db.patient_results("P").unwrap().is_empty());
        assert_eq!(db.result_artifacts_dir(1).unwrap(), None);
        assert_eq!(db.studies_done_since(0).unwrap(), 0);
        let h = db.processing_histogram(&[1000, 2000]).unwrap();
        assert_eq!((h.cumulative, h.count, h.sum_ms), (vec![0, 0], 0, 0));
        db.log_event(EventLevel::Info, "started", 1).unwrap();
        db.log_event(EventLevel::Error, "boom", 2).unwrap();
        db.log_event(EventLevel::Warn, "odd", 3).unwrap();
        let e = db
            .recent_events_at_levels(&[EventLevel::Error, EventLevel::Warn], 10)
            .unwrap();
        assert_eq!(
            e.iter().map(|e| e.message.as_str()).collect::<Vec<_>>(),
            ["odd", "boom"]
        );
        db.record_quarantine("a", "q/a", "empty", "empty file", 1)
            .unwrap();
        db.record_quarantine("b", "q/b", "empty", "empty file", 1)
            .unwrap();
        db.record_quarantine("c", "q/c", "not-dicom", "no DICM", 1)
            .unwrap();
        assert_eq!(
            db.quarantine_by_reason().unwrap(),
            vec![("empty".to_string(), 2), ("not-dicom".to_string(), 1)]
        );
        assert!(db.recent_failed_jobs(5).unwrap().is_empty());
        assert!(db.queued_jobs(5).unwrap().is_empty());
    }
}
