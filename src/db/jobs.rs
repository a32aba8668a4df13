//! The `jobs` table: the analysis queue (pending → running → done | failed).

use rusqlite::{OptionalExtension, params};
use serde::Serialize;

use super::{Database, Result};

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

impl Database {
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
