//! The `quarantine` and `events` tables: files set aside with their reason, and the
//! recent problems the status views show.

use rusqlite::params;
use serde::Serialize;

use super::{Database, Result, now_secs};

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
