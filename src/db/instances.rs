//! The `instances` and `series` tables: what is stored, and each series' state from
//! receiving to selected or skipped.

use rusqlite::params;
use serde::Serialize;

use super::{Database, Result, stored};
use crate::dicom::InstanceHeader;

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

impl Database {
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

pub(crate) fn parse_series_state(s: &str) -> SeriesState {
    match s {
        "selected" => SeriesState::Selected,
        "skipped" => SeriesState::Skipped,
        _ => SeriesState::Receiving,
    }
}
