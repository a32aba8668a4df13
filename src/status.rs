//! What `lungwatch status` reports: counts by state and the most recent problems.

use serde::Serialize;

use crate::db::{
    EventEntry, OutboxCounts, QuarantineEntry, ReadQueries, Reader, SkippedSeries, StatusCounts,
};

#[derive(Debug, Serialize)]
pub struct Status {
    pub counts: StatusCounts,
    pub recent_errors: Vec<EventEntry>,
    pub recent_quarantine: Vec<QuarantineEntry>,
    pub recent_skipped: Vec<SkippedSeries>,
    pub outbox: Vec<OutboxCounts>,
}

pub fn collect(db: &Reader) -> rusqlite::Result<Status> {
    Ok(Status {
        counts: db.status_counts()?,
        recent_errors: db.recent_events(10)?,
        recent_quarantine: db.recent_quarantine(10)?,
        recent_skipped: db.recent_skipped(10)?,
        outbox: db.outbox_counts()?,
    })
}

pub fn render_text(s: &Status) -> String {
    let c = &s.counts;
    let mut out = format!(
        "instances   {}\nseries      {} complete ({} selected, {} skipped), {} receiving\n\
         jobs        {} pending, {} running, {} done, {} failed\nquarantined {}\n",
        c.instances,
        c.series_selected + c.series_skipped,
        c.series_selected,
        c.series_skipped,
        c.series_receiving,
        c.jobs_pending,
        c.jobs_running,
        c.jobs_done,
        c.jobs_failed,
        c.quarantined
    );
    for o in &s.outbox {
        out.push_str(&format!(
            "outbox      {}: {} pending, {} sending, {} sent, {} failed\n",
            o.destination, o.pending, o.sending, o.sent, o.failed
        ));
    }
    if !s.recent_errors.is_empty() {
        out.push_str("\nlast errors:\n");
        for e in &s.recent_errors {
            out.push_str(&format!("  [{}] {} {}\n", e.at, e.level, e.message));
        }
    }
    if !s.recent_quarantine.is_empty() {
        out.push_str("\nlast quarantined:\n");
        for q in &s.recent_quarantine {
            out.push_str(&format!(
                "  {} ({}): {}\n",
                q.original_name, q.reason_code, q.reason
            ));
        }
    }
    if !s.recent_skipped.is_empty() {
        out.push_str("\nlast skipped series:\n");
        for q in &s.recent_skipped {
            out.push_str(&format!("  {}: {}\n", q.series_uid, q.reason));
        }
    }
    out
}
