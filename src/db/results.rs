//! Analysis results: stored in the same transaction that marks their job done, so a crash
//! can never leave a done job without its result or a result beside a pending job.

use rusqlite::params;

use super::{Database, Result};
use crate::report::SeriesReport;

/// A stored result row: the report plus where its previews and masks are.
#[derive(Debug, Clone)]
pub struct StoredResult {
    pub id: i64,
    pub job_id: i64,
    pub report: SeriesReport,
    /// Folder of previews and masks, relative to `paths.data`.
    pub artifacts_dir: String,
    pub created_at: i64,
}

impl Database {
    /// Records the result, queues its DICOM objects' `deliveries` in the outbox and marks
    /// the job done, atomically. Returns false (and writes nothing) when the job is no
    /// longer `running`: it was withdrawn or already finished, so a result would be a
    /// duplicate.
    pub fn finish_job_with_result(
        &mut self,
        job_id: i64,
        report: &SeriesReport,
        artifacts_dir: &str,
        deliveries: &[super::NewDelivery],
        now: i64,
    ) -> Result<bool> {
        let json = super::stored::to_json(report)
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        let tx = self.conn.transaction()?;
        let updated = tx.execute(
            "UPDATE jobs SET state = 'done', reason = NULL, finished_at = ?2
             WHERE id = ?1 AND state = 'running'",
            params![job_id, now],
        )?;
        if updated == 0 {
            return Ok(false);
        }
        let p = &report.probabilities;
        tx.execute(
            "INSERT INTO results (job_id, series_uid, study_uid, patient_id, study_date,
                 accession_number, top_class, p_covid19, p_other, p_normal, affected_ratio,
                 lesion_ml, severity_score, processing_ms, report_json, artifacts_dir, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
            params![
                job_id,
                report.series_instance_uid,
                report.study_instance_uid,
                report.patient_id,
                report.study_date,
                report.accession_number,
                report.top_class.as_str(),
                p.covid19,
                p.other_pneumonia,
                p.normal,
                report.affected_ratio.total,
                report.lesion_volume_ml,
                report.severity_score,
                report.timings_ms.total as i64,
                json,
                artifacts_dir,
                now,
            ],
        )?;
        super::outbox::upsert_deliveries(&tx, job_id, deliveries, now)?;
        tx.commit()?;
        Ok(true)
    }
}

pub(crate) fn row_to_result(row: &rusqlite::Row) -> Result<StoredResult> {
    let json: String = row.get(2)?;
    let report = super::stored::from_json(&json).map_err(|e| super::stored::column_error(2, e))?;
    Ok(StoredResult {
        id: row.get(0)?,
        job_id: row.get(1)?,
        report,
        artifacts_dir: row.get(3)?,
        created_at: row.get(4)?,
    })
}
