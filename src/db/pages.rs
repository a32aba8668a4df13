//! Read-only queries behind the web page and its JSON API.
//!
//! A series can be analysed more than once; everywhere here the newest result of a series
//! (highest `results.id`) is the one that counts.

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::results::row_to_result;
use super::{Database, EventEntry, Result, StoredResult};

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
    pub top_class: String,
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
        top_class: r.get(8)?,
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

impl Database {
    /// The newest result of every series matching `filter`, newest study date first.
    /// At most `limit` rows.
    pub fn search_results(&self, filter: &StudyFilter, limit: i64) -> Result<Vec<ResultRow>> {
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
        let mut stmt = self.conn.prepare(&sql)?;
        stmt.query_map(params![pid, acc, date, limit], row_to_result_row)?
            .collect()
    }

    /// The newest result of each series of a study, by series UID.
    pub fn study_results(&self, study_uid: &str) -> Result<Vec<StoredResult>> {
        let sql = format!(
            "SELECT r.id, r.job_id, r.report_json, r.artifacts_dir, r.created_at
             FROM results r WHERE {LATEST} AND r.study_uid = ?1 ORDER BY r.series_uid"
        );
        let mut stmt = self.conn.prepare(&sql)?;
        stmt.query_map([study_uid], row_to_result)?.collect()
    }

    /// The newest result of each series of a patient, oldest study first.
    pub fn patient_results(&self, patient_id: &str) -> Result<Vec<StoredResult>> {
        let sql = format!(
            "SELECT r.id, r.job_id, r.report_json, r.artifacts_dir, r.created_at
             FROM results r WHERE {LATEST} AND r.patient_id = ?1
             ORDER BY r.study_date IS NULL, r.study_date, r.created_at, r.id"
        );
        let mut stmt = self.conn.prepare(&sql)?;
        stmt.query_map([patient_id], row_to_result)?.collect()
    }

    /// Where a result's previews and masks are, relative to `paths.data`.
    pub fn result_artifacts_dir(&self, result_id: i64) -> Result<Option<String>> {
        self.conn
            .query_row(
                "SELECT artifacts_dir FROM results WHERE id = ?1",
                [result_id],
                |r| r.get(0),
            )
            .optional()
    }

    /// Distinct studies with a result recorded at or after `since`.
    pub fn studies_done_since(&self, since: i64) -> Result<i64> {
        self.conn.query_row(
            "SELECT COUNT(DISTINCT COALESCE(study_uid, series_uid)) FROM results
             WHERE created_at >= ?1",
            [since],
            |r| r.get(0),
        )
    }

    /// Processing times of the newest `limit` results, in ms.
    pub fn recent_processing_ms(&self, limit: i64) -> Result<Vec<i64>> {
        let mut stmt = self
            .conn
            .prepare("SELECT processing_ms FROM results ORDER BY id DESC LIMIT ?1")?;
        stmt.query_map([limit], |r| r.get(0))?.collect()
    }

    /// Histogram of every stored result's processing time; `bounds_ms` ascending.
    /// One scan of the table, however many buckets.
    pub fn processing_histogram(&self, bounds_ms: &[i64]) -> Result<ProcessingHistogram> {
        let buckets: String = (0..bounds_ms.len())
            .map(|i| format!(", COALESCE(SUM(processing_ms <= ?{}), 0)", i + 1))
            .collect();
        let sql = format!("SELECT COUNT(*), COALESCE(SUM(processing_ms), 0){buckets} FROM results");
        self.conn
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

    /// The newest events of the given levels (e.g. `["error", "warn"]`).
    pub fn recent_events_at_levels(&self, levels: &[&str], limit: i64) -> Result<Vec<EventEntry>> {
        let json = serde_json::to_string(levels).expect("strings serialise");
        let mut stmt = self.conn.prepare(
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
    pub fn quarantine_by_reason(&self) -> Result<Vec<(String, i64)>> {
        let mut stmt = self.conn.prepare(
            "SELECT reason_code, COUNT(*) AS n FROM quarantine GROUP BY reason_code
             ORDER BY n DESC, reason_code",
        )?;
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect()
    }

    /// Running jobs (longest-running first), then pending jobs in the order they will be
    /// taken; at most `limit`.
    pub fn queued_jobs(&self, limit: i64) -> Result<Vec<QueuedJob>> {
        let mut stmt = self.conn.prepare(
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
    pub fn recent_failed_jobs(&self, limit: i64) -> Result<Vec<FailedJob>> {
        let mut stmt = self.conn.prepare(
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
        db.log_event("info", "started", 1).unwrap();
        db.log_event("error", "boom", 2).unwrap();
        db.log_event("warn", "odd", 3).unwrap();
        let e = db.recent_events_at_levels(&["error", "warn"], 10).unwrap();
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
