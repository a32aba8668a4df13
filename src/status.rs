//! What `lungwatch status` reports: counts by state, the most recent problems, and DICOM
//! TLS as the config sets it.

use serde::Serialize;

use crate::config::Config;
use crate::db::{
    EventEntry, OutboxCounts, QuarantineEntry, ReadQueries, Reader, SkippedSeries, StatusCounts,
};
use crate::dimse::DicomSecurity;
use crate::dimse::in_service;

#[derive(Debug, Serialize)]
pub struct Status {
    pub counts: StatusCounts,
    pub recent_errors: Vec<EventEntry>,
    pub recent_quarantine: Vec<QuarantineEntry>,
    pub recent_skipped: Vec<SkippedSeries>,
    pub outbox: Vec<OutboxCounts>,
    /// From the config file: the running `serve` took its files at start or at its last
    /// SIGHUP (its status page shows the certificate in service).
    pub dicom: DicomSecurity,
}

pub fn collect(db: &Reader, config: &Config) -> rusqlite::Result<Status> {
    Ok(Status {
        dicom: in_service::describe(&config.dicom, &config.destinations),
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
    out.push_str(&render_dicom(&s.dicom));
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

/// One line per receiver and destination, for `lungwatch status`.
fn render_dicom(s: &DicomSecurity) -> String {
    let mut out = String::new();
    if let Some(r) = &s.receiver {
        let how = if r.tls {
            match &r.client_ca {
                Some(ca) => format!("DICOM TLS, client certificates signed by {ca} required"),
                None => "DICOM TLS, no client certificate asked for".to_string(),
            }
        } else if r.plain_on_network {
            "plain TCP, reachable from the network (unencrypted)".to_string()
        } else {
            "plain TCP, this machine only".to_string()
        };
        out.push_str(&format!(
            "receiver    {} on {}: {how}\n",
            r.ae_title, r.listen
        ));
    }
    for d in &s.destinations {
        out.push_str(&format!(
            "destination {}: {} at {}, {}\n",
            d.name,
            d.ae_title,
            d.address,
            match &d.trust {
                Some(trust) => format!("DICOM TLS (trusting {trust})"),
                None => "plain TCP".to_string(),
            }
        ));
    }
    out
}
