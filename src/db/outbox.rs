//! The outbox: one row per DICOM object and destination, from `pending` through `sending`
//! to `sent` or `failed`.
//!
//! Rows are inserted in the transaction that stores their job's result
//! (`finish_job_with_result`), so a result never lacks its deliveries and a crash never
//! leaves deliveries of a result that does not exist. A row is `sending` only while a
//! process holds it: start-up turns `sending` back into `pending`, so an object whose
//! confirmation was not recorded is sent again (at most once more), while one the
//! destination confirmed (`sent`) is never sent again.

use rusqlite::{Connection, Transaction, params};
use serde::Serialize;

use super::{Database, Result};
use crate::config::ObjectKind;

/// One object for one destination, as the worker or `lungwatch send` queues it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDelivery {
    pub destination: String,
    /// Relative to `paths.data`.
    pub path: String,
    pub kind: ObjectKind,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub study_uid: Option<String>,
}

/// A row of the outbox.
/// Where one object stands with one destination: pending → sending → sent | failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Waiting for its next attempt (`next_attempt_at`).
    Pending,
    /// Claimed by a process that is sending it.
    Sending,
    /// Confirmed by the destination; never sent again on its own.
    Sent,
    /// Refused for a reason a retry cannot fix (`last_error`).
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Sending => "sending",
            DeliveryState::Sent => "sent",
            DeliveryState::Failed => "failed",
        }
    }

    fn parse(name: &str) -> Option<DeliveryState> {
        [
            DeliveryState::Pending,
            DeliveryState::Sending,
            DeliveryState::Sent,
            DeliveryState::Failed,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Delivery {
    pub id: i64,
    pub job_id: i64,
    pub destination: String,
    pub path: String,
    pub kind: String,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub study_uid: Option<String>,
    pub state: DeliveryState,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub next_attempt_at: i64,
    pub created_at: i64,
    pub sent_at: Option<i64>,
}

/// The outbox of one destination, counted by state.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct OutboxCounts {
    pub destination: String,
    pub pending: i64,
    pub sending: i64,
    pub sent: i64,
    pub failed: i64,
}

const COLUMNS: &str = "id, job_id, destination, path, kind, sop_class_uid, sop_instance_uid,
                       study_uid, state, attempts, last_error, next_attempt_at, created_at,
                       sent_at";

fn row_to_delivery(r: &rusqlite::Row) -> Result<Delivery> {
    Ok(Delivery {
        id: r.get(0)?,
        job_id: r.get(1)?,
        destination: r.get(2)?,
        path: r.get(3)?,
        kind: r.get(4)?,
        sop_class_uid: r.get(5)?,
        sop_instance_uid: r.get(6)?,
        study_uid: r.get(7)?,
        state: super::vocabulary_column(r, 8, "outbox state", DeliveryState::parse)?,
        attempts: r.get(9)?,
        last_error: r.get(10)?,
        next_attempt_at: r.get(11)?,
        created_at: r.get(12)?,
        sent_at: r.get(13)?,
    })
}

/// Queues `deliveries` of `job_id`, due now, inside the caller's transaction. A row that
/// exists already (the same job, destination and file) is made due again unless it is
/// being sent; its attempts start over. Returns the ids of the rows queued.
pub(super) fn upsert_deliveries(
    tx: &Transaction,
    job_id: i64,
    deliveries: &[NewDelivery],
    now: i64,
) -> Result<Vec<i64>> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO outbox (job_id, destination, path, kind, sop_class_uid, sop_instance_uid,
                             study_uid, state, attempts, next_attempt_at, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', 0, ?8, ?8)
         ON CONFLICT (job_id, destination, path) DO UPDATE
             SET state = 'pending', attempts = 0, last_error = NULL, next_attempt_at = ?8,
                 sent_at = NULL
             WHERE state != 'sending'
         RETURNING id",
    )?;
    let mut ids = Vec::with_capacity(deliveries.len());
    for d in deliveries {
        let id: Option<i64> = stmt
            .query_row(
                params![
                    job_id,
                    d.destination,
                    d.path,
                    d.kind.as_str(),
                    d.sop_class_uid,
                    d.sop_instance_uid,
                    d.study_uid,
                    now
                ],
                |r| r.get(0),
            )
            .or_else(|e| match e {
                // The row is being sent right now: it needs no queueing.
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })?;
        ids.extend(id);
    }
    Ok(ids)
}

impl Database {
    /// Queues `deliveries` of a finished job again (`lungwatch send`): new rows for new
    /// destinations, and existing ones made due now with their attempts reset. Returns
    /// the ids queued (a row being sent at this moment is left alone and not returned).
    pub fn queue_deliveries(
        &mut self,
        job_id: i64,
        deliveries: &[NewDelivery],
        now: i64,
    ) -> Result<Vec<i64>> {
        let tx = self.conn.transaction()?;
        let ids = upsert_deliveries(&tx, job_id, deliveries, now)?;
        tx.commit()?;
        Ok(ids)
    }

    /// Start-up: rows left `sending` by a process that died are due again. Returns how
    /// many.
    pub fn requeue_interrupted_deliveries(&mut self, now: i64) -> Result<usize> {
        self.conn.execute(
            "UPDATE outbox SET state = 'pending', next_attempt_at = ?1 WHERE state = 'sending'",
            [now],
        )
    }

    /// Takes up to `limit` due rows, oldest first, marking them `sending`.
    pub fn claim_due_deliveries(&mut self, now: i64, limit: i64) -> Result<Vec<Delivery>> {
        self.claim_where(
            "state = 'pending' AND next_attempt_at <= ?1 ORDER BY id LIMIT ?2",
            params![now, limit],
        )
    }

    /// Takes the rows among `ids` that are still `pending` (another process may have
    /// taken some), marking them `sending`.
    pub fn claim_deliveries(&mut self, ids: &[i64]) -> Result<Vec<Delivery>> {
        let list = serde_json::to_string(ids).expect("integers always serialise");
        self.claim_where(
            "state = 'pending' AND id IN (SELECT value FROM json_each(?1)) ORDER BY id",
            params![list],
        )
    }

    fn claim_where(
        &mut self,
        condition: &str,
        values: impl rusqlite::Params,
    ) -> Result<Vec<Delivery>> {
        let tx = self.conn.transaction()?;
        let rows = {
            let mut stmt =
                tx.prepare(&format!("SELECT {COLUMNS} FROM outbox WHERE {condition}"))?;
            stmt.query_map(values, row_to_delivery)?
                .collect::<Result<Vec<_>>>()?
        };
        {
            let mut update =
                tx.prepare_cached("UPDATE outbox SET state = 'sending' WHERE id = ?1")?;
            for row in &rows {
                update.execute([row.id])?;
            }
        }
        tx.commit()?;
        Ok(rows
            .into_iter()
            .map(|d| Delivery {
                state: DeliveryState::Sending,
                ..d
            })
            .collect())
    }

    /// The destination confirmed the object.
    pub fn delivery_sent(&self, id: i64, now: i64) -> Result<()> {
        self.conn.execute(
            "UPDATE outbox SET state = 'sent', attempts = attempts + 1, last_error = NULL,
                               sent_at = ?2
             WHERE id = ?1",
            params![id, now],
        )?;
        Ok(())
    }

    /// A transient failure (the destination down, busy or out of resources): due again at
    /// `next_attempt_at`.
    pub fn delivery_retry(&self, id: i64, error: &str, next_attempt_at: i64) -> Result<()> {
        self.conn.execute(
            "UPDATE outbox SET state = 'pending', attempts = attempts + 1, last_error = ?2,
                               next_attempt_at = ?3
             WHERE id = ?1",
            params![id, error, next_attempt_at],
        )?;
        Ok(())
    }

    /// A permanent failure (refused by the destination, the file gone, the destination no
    /// longer configured): not tried again unless sent by hand.
    pub fn delivery_failed(&self, id: i64, error: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE outbox SET state = 'failed', attempts = attempts + 1, last_error = ?2
             WHERE id = ?1",
            params![id, error],
        )?;
        Ok(())
    }
}

/// Counts by destination and state, destinations by name.
pub(super) fn counts(conn: &Connection) -> Result<Vec<OutboxCounts>> {
    let mut stmt = conn.prepare(
        "SELECT destination, state, COUNT(*) FROM outbox GROUP BY destination, state
         ORDER BY destination",
    )?;
    let mut out: Vec<OutboxCounts> = Vec::new();
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    for row in rows {
        let (destination, state, n) = row?;
        if out.last().is_none_or(|c| c.destination != destination) {
            out.push(OutboxCounts {
                destination: destination.clone(),
                ..Default::default()
            });
        }
        let c = out.last_mut().expect("pushed above");
        match DeliveryState::parse(&state) {
            Some(DeliveryState::Pending) => c.pending = n,
            Some(DeliveryState::Sending) => c.sending = n,
            Some(DeliveryState::Sent) => c.sent = n,
            Some(DeliveryState::Failed) | None => c.failed = n,
        }
    }
    Ok(out)
}

/// Rows that need attention, newest first: failed ones, and pending ones that have failed
/// at least once (waiting for their next attempt).
pub(super) fn problems(conn: &Connection, limit: i64) -> Result<Vec<Delivery>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM outbox
         WHERE state = 'failed' OR (state = 'pending' AND attempts > 0)
         ORDER BY id DESC LIMIT ?1"
    ))?;
    stmt.query_map([limit], row_to_delivery)?.collect()
}

/// Every row of a study, oldest first.
pub(super) fn of_study(conn: &Connection, study_uid: &str) -> Result<Vec<Delivery>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM outbox WHERE study_uid = ?1 ORDER BY id"
    ))?;
    stmt.query_map([study_uid], row_to_delivery)?.collect()
}

/// The rows with these ids, in id order.
pub(super) fn by_ids(conn: &Connection, ids: &[i64]) -> Result<Vec<Delivery>> {
    let list = serde_json::to_string(ids).expect("integers always serialise");
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM outbox WHERE id IN (SELECT value FROM json_each(?1)) ORDER BY id"
    ))?;
    stmt.query_map([list], row_to_delivery)?.collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::ReadQueries;

    fn delivery(destination: &str, name: &str) -> NewDelivery {
        NewDelivery {
            destination: destination.into(),
            path: format!("results/job-1/dicom/{name}"),
            kind: ObjectKind::Sc,
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.7".into(),
            sop_instance_uid: format!("2.25.{}", name.len()),
            study_uid: Some("1.2.3".into()),
        }
    }

    /// A database with job 1 in `running`, as the worker has it when it finishes.
    fn with_running_job() -> Database {
        let mut db = Database::open_in_memory().unwrap();
        db.conn
            .execute_batch(
                "INSERT INTO series (series_uid, state, first_seen_at, last_instance_at)
                     VALUES ('s', 'selected', 0, 0);
                 INSERT INTO jobs (id, series_uid, state, created_at) VALUES (1, 's', 'running', 0);",
            )
            .unwrap();
        let tx = db.conn.transaction().unwrap();
        upsert_deliveries(
            &tx,
            1,
            &[
                delivery("pacs", "sc-0.dcm"),
                delivery("pacs", "sr.dcm"),
                delivery("folder", "sr.dcm"),
            ],
            100,
        )
        .unwrap();
        tx.commit().unwrap();
        db
    }

    #[test]
    fn a_delivery_goes_from_pending_to_sent_once() {
        let mut db = with_running_job();
        assert!(
            db.claim_due_deliveries(99, 10).unwrap().is_empty(),
            "not due yet"
        );
        let claimed = db.claim_due_deliveries(100, 10).unwrap();
        assert_eq!(claimed.len(), 3);
        assert!(claimed.iter().all(|d| d.state == DeliveryState::Sending));
        assert!(
            db.claim_due_deliveries(200, 10).unwrap().is_empty(),
            "taken once"
        );
        db.delivery_sent(claimed[0].id, 150).unwrap();
        db.delivery_retry(claimed[1].id, "connection refused", 300)
            .unwrap();
        db.delivery_failed(claimed[2].id, "no such SOP class")
            .unwrap();
        let counts = db.outbox_counts().unwrap();
        assert_eq!(counts.len(), 2);
        assert_eq!(
            (
                counts[1].destination.as_str(),
                counts[1].sent,
                counts[1].pending
            ),
            ("pacs", 1, 1)
        );
        assert_eq!(
            (counts[0].destination.as_str(), counts[0].failed),
            ("folder", 1)
        );
        let problems = db.outbox_problems(10).unwrap();
        assert_eq!(problems.len(), 2);
        assert_eq!(
            problems[1].last_error.as_deref(),
            Some("connection refused")
        );
        // Retried at its time, not before.
        assert!(db.claim_due_deliveries(299, 10).unwrap().is_empty());
        let again = db.claim_due_deliveries(300, 10).unwrap();
        assert_eq!((again.len(), again[0].attempts), (1, 1));
    }

    #[test]
    fn interrupted_sends_are_due_again_and_sent_ones_are_not() {
        let mut db = with_running_job();
        let claimed = db.claim_due_deliveries(100, 10).unwrap();
        db.delivery_sent(claimed[0].id, 101).unwrap();
        // The process dies with two rows `sending`.
        assert_eq!(db.requeue_interrupted_deliveries(500).unwrap(), 2);
        let again = db.claim_due_deliveries(500, 10).unwrap();
        assert_eq!(
            again.iter().map(|d| d.id).collect::<Vec<_>>(),
            vec![claimed[1].id, claimed[2].id]
        );
    }

    #[test]
    fn sending_by_hand_requeues_all_but_rows_in_flight() {
        let mut db = with_running_job();
        let claimed = db.claim_due_deliveries(100, 10).unwrap();
        db.delivery_sent(claimed[0].id, 101).unwrap();
        db.delivery_failed(claimed[1].id, "refused").unwrap();
        // claimed[2] is still `sending`; a new destination appears too.
        let all = [
            delivery("pacs", "sc-0.dcm"),
            delivery("pacs", "sr.dcm"),
            delivery("folder", "sr.dcm"),
            delivery("viewer", "sr.dcm"),
        ];
        let ids = db.queue_deliveries(1, &all, 200).unwrap();
        assert_eq!(ids.len(), 3, "the row being sent is left alone");
        assert!(!ids.contains(&claimed[2].id));
        let rows = db.outbox_rows(&ids).unwrap();
        assert!(rows.iter().all(|d| d.state == DeliveryState::Pending
            && d.attempts == 0
            && d.last_error.is_none()));
        let taken = db.claim_deliveries(&ids).unwrap();
        assert_eq!(taken.len(), 3);
        assert!(db.claim_deliveries(&ids).unwrap().is_empty(), "taken once");
        assert_eq!(db.study_deliveries("1.2.3").unwrap().len(), 4);
    }
}
