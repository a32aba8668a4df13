//! The audit writer: request threads hand [`AuditRecord`]s to a channel, and one thread
//! with its own [`AuditWriter`] appends them in batches, so a page request never waits for
//! a SQLite commit (let alone an fsync). It also deletes rows past `audit.retention_days`.
//!
//! The channel is bounded and `record` blocks when it is full: if the database stays
//! locked or broken, patient pages slow down rather than being read without a record.

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::WebState;
use crate::config::AuditConfig;
use crate::db::{AuditRecord, AuditWriter};

/// The `WebState` problem key: while audit rows cannot be written, `/healthz` answers 503
/// and the status page says why, so that the gap in the trail does not go unnoticed.
const PROBLEM: &str = "audit";

/// Records waiting at most; a burst far beyond the page's request rate.
const QUEUE: usize = 4096;
/// Records appended per transaction at most.
const BATCH: usize = 512;
/// How often old rows are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// The request threads' end of the audit channel. Cloned into each request thread's
/// shared state; when the last clone is dropped the writer flushes and stops.
pub struct AuditLog {
    tx: Option<SyncSender<AuditRecord>>,
}

impl AuditLog {
    /// Starts the writer thread (none when `audit.enabled` is false). Opening the database
    /// here makes a broken one a start-up error of the page.
    pub fn start(
        config: &AuditConfig,
        db_path: &Path,
        state: Arc<WebState>,
    ) -> anyhow::Result<(AuditLog, Option<JoinHandle<()>>)> {
        if !config.enabled {
            log::warn!(
                "audit.enabled = false: reads of patient data are not recorded (for measurements only)"
            );
            return Ok((AuditLog { tx: None }, None));
        }
        let writer = AuditWriter::open(db_path).map_err(|e| {
            anyhow::anyhow!("cannot open {} for the audit trail: {e}", db_path.display())
        })?;
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let retention = Duration::from_secs(u64::from(config.retention_days) * 86_400);
        let thread = std::thread::Builder::new()
            .name("web-audit".into())
            .spawn(move || write_loop(writer, rx, retention, &state))?;
        Ok((AuditLog { tx: Some(tx) }, Some(thread)))
    }

    pub fn record(&self, record: AuditRecord) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(record) {
            Ok(()) => {}
            Err(TrySendError::Full(record)) => {
                log::warn!("audit: the writer is behind; this request waits for it");
                let _ = tx.send(record);
            }
            Err(TrySendError::Disconnected(record)) => {
                log::error!("audit: the writer has stopped; lost {record:?}");
            }
        }
    }
}

fn write_loop(
    mut writer: AuditWriter,
    rx: Receiver<AuditRecord>,
    retention: Duration,
    state: &WebState,
) {
    let mut last_prune: Option<Instant> = None;
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        if last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
            let before = crate::db::now_secs() - retention.as_secs() as i64;
            match writer.prune(before) {
                Ok(0) => {}
                Ok(n) => log::info!("audit: removed {n} rows past the retention period"),
                Err(e) => log::error!("audit: cannot remove old rows: {e}"),
            }
            last_prune = Some(Instant::now());
        }
        let open = match rx.recv_timeout(PRUNE_EVERY) {
            Ok(r) => {
                batch.push(r);
                // Whatever arrived meanwhile goes into the same transaction.
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(r) => batch.push(r),
                        Err(_) => break,
                    }
                }
                true
            }
            Err(RecvTimeoutError::Timeout) => true,
            Err(RecvTimeoutError::Disconnected) => false,
        };
        let mut tries = 0;
        while !batch.is_empty() {
            match writer.append(&batch) {
                Ok(()) => {
                    batch.clear();
                    // Also clears what an earlier page's writer left (a SIGHUP restart).
                    state.set_problem(PROBLEM, None);
                }
                Err(e) => {
                    tries += 1;
                    state.set_problem(
                        PROBLEM,
                        Some(format!("the audit trail cannot be written: {e}")),
                    );
                    log::error!(
                        "audit: cannot write {} rows (try {tries}): {e}",
                        batch.len()
                    );
                    if !open && tries >= 10 {
                        log::error!("audit: giving up on {} rows at shutdown", batch.len());
                        batch.clear();
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
        if !open {
            return;
        }
    }
}
