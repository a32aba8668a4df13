//! The status page (`/`, `/api/status`) and the health verdict behind `/healthz`.

use std::fmt::Write;
use std::path::Path;

use serde::Serialize;

use super::html::{self, esc, fmt_bytes, fmt_duration, fmt_ms, fmt_time};
use super::server::Ctx;
use crate::db::{
    self, AssociationRecord, Delivery, DeliveryState, EventEntry, EventLevel, FailedJob,
    OutboxCounts, QuarantineEntry, QueuedJob, ReadQueries, Reader, SkippedSeries, StatusCounts,
};
use crate::dimse::DicomSecurity;
use crate::report::ModelRef;

/// How many processing times the median and p95 are taken over.
pub const PROCESSING_WINDOW: i64 = 1000;
const LIST_LIMIT: i64 = 15;

#[derive(Debug, Serialize)]
pub struct Health {
    /// "ok" or "degraded".
    pub status: &'static str,
    pub problems: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct FolderSpace {
    pub path: String,
    pub exists: bool,
    pub free_bytes: Option<u64>,
    pub total_bytes: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct Processing {
    /// Results the figures are taken over (the newest ones, at most `PROCESSING_WINDOW`).
    pub samples: usize,
    pub median_ms: Option<f64>,
    pub p95_ms: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct ReasonCount {
    pub reason_code: String,
    pub count: i64,
}

#[derive(Debug, Serialize)]
pub struct StatusView {
    pub health: Health,
    pub version: &'static str,
    pub started_at: i64,
    pub uptime_secs: u64,
    pub models: Vec<ModelRef>,
    pub incoming: FolderSpace,
    pub data: FolderSpace,
    pub ingest_paused_disk_full: bool,
    pub queue_pending: i64,
    pub queue_running: i64,
    /// Running jobs, then the next pending ones.
    pub queue: Vec<QueuedJob>,
    pub counts: StatusCounts,
    pub studies_last_24h: i64,
    pub processing: Processing,
    pub recent_errors: Vec<EventEntry>,
    pub failed_jobs: Vec<FailedJob>,
    pub quarantine_by_reason: Vec<ReasonCount>,
    pub recent_quarantine: Vec<QuarantineEntry>,
    pub recent_skipped: Vec<SkippedSeries>,
    /// Security settings an administrator must know about (plain HTTP on the network).
    pub security_warnings: Vec<String>,
    pub https: bool,
    pub logins: super::LoginCounts,
    /// The DICOM receiver's TLS or plain TCP and each destination's, as in service.
    pub dicom: DicomSecurity,
    /// The DICOM receiver's newest associations (empty when it is off or unused).
    pub recent_associations: Vec<AssociationRecord>,
    /// The outbox by destination: objects pending, being sent, sent and failed.
    pub outbox: Vec<OutboxCounts>,
    /// Failed deliveries and those waiting to be retried, with their reasons.
    pub outbox_problems: Vec<Delivery>,
}

fn folder(path: &Path) -> FolderSpace {
    let space = crate::sys::disk_space(path);
    FolderSpace {
        path: path.display().to_string(),
        exists: path.is_dir(),
        free_bytes: space.map(|s| s.0),
        total_bytes: space.map(|s| s.1),
    }
}

/// Nearest-rank percentile of sorted values (`p` in 0..=1).
pub fn percentile(sorted: &[i64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64).ceil().max(1.0) as usize;
    Some(sorted[rank.min(sorted.len()) - 1] as f64)
}

pub fn median(sorted: &[i64]) -> Option<f64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2] as f64),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) as f64 / 2.0),
    }
}

/// Health from what the daemon shares and the filesystem (the database is probed by the
/// caller). Any problem makes the appliance "degraded".
pub fn health(ctx: &Ctx) -> Health {
    let mut problems = Vec::new();
    if ctx.state.disk_full() {
        problems.push("disk full: ingest paused".to_string());
    }
    if ctx.state.models().is_empty() {
        problems.push("no models loaded: studies cannot be analysed".to_string());
    }
    let incoming = ctx.state.incoming();
    if !incoming.is_dir() {
        problems.push(format!(
            "incoming folder {} is missing or not a folder",
            incoming.display()
        ));
    }
    problems.extend(ctx.state.problems());
    Health {
        status: if problems.is_empty() {
            "ok"
        } else {
            "degraded"
        },
        problems,
    }
}

pub fn collect(ctx: &Ctx, db: &Reader) -> db::Result<StatusView> {
    let counts = db.status_counts()?;
    let mut times = db.recent_processing_ms(PROCESSING_WINDOW)?;
    times.sort_unstable();
    Ok(StatusView {
        health: health(ctx),
        version: env!("CARGO_PKG_VERSION"),
        started_at: ctx.state.started_at(),
        uptime_secs: ctx.state.uptime_secs(),
        models: ctx.state.models(),
        incoming: folder(&ctx.state.incoming()),
        data: folder(ctx.data_dir),
        ingest_paused_disk_full: ctx.state.disk_full(),
        queue_pending: counts.jobs_pending,
        queue_running: counts.jobs_running,
        queue: db.queued_jobs(LIST_LIMIT)?,
        studies_last_24h: db.studies_done_since(db::now_secs() - 86_400)?,
        processing: Processing {
            samples: times.len(),
            median_ms: median(&times),
            p95_ms: percentile(&times, 0.95),
        },
        recent_errors: db
            .recent_events_at_levels(&[EventLevel::Error, EventLevel::Warn], LIST_LIMIT)?,
        failed_jobs: db.recent_failed_jobs(LIST_LIMIT)?,
        quarantine_by_reason: db
            .quarantine_by_reason()?
            .into_iter()
            .map(|(reason_code, count)| ReasonCount { reason_code, count })
            .collect(),
        recent_quarantine: db.recent_quarantine(LIST_LIMIT)?,
        recent_skipped: db.recent_skipped(LIST_LIMIT)?,
        security_warnings: ctx.config.plain_http_warning().into_iter().collect(),
        https: ctx.config.tls_configured(),
        logins: ctx.state.login_counts(),
        dicom: ctx.state.dicom_security(),
        recent_associations: db.recent_associations(LIST_LIMIT)?,
        outbox: db.outbox_counts()?,
        outbox_problems: db.outbox_problems(LIST_LIMIT)?,
        counts,
    })
}

fn space_line(f: &FolderSpace) -> String {
    let space = match (f.free_bytes, f.total_bytes) {
        (Some(free), Some(total)) if total > 0 => format!(
            "{} free of {} ({:.0} %)",
            fmt_bytes(free),
            fmt_bytes(total),
            free as f64 / total as f64 * 100.0
        ),
        _ => "free space unknown".into(),
    };
    format!(
        "<span class=\"mono\">{}</span><br><span class=\"muted\">{}{}</span>",
        esc(&f.path),
        if f.exists { "" } else { "missing · " },
        space
    )
}

pub fn render(v: &StatusView) -> String {
    let mut b = String::new();
    if v.ingest_paused_disk_full {
        b.push_str(
            "<div class=\"banner bad\">Disk full: ingest paused. New files wait in the incoming \
             folder until space is freed.</div>",
        );
    }
    for w in &v.security_warnings {
        let _ = write!(b, "<div class=\"banner warn\">Security: {}</div>", esc(w));
    }
    let _ = write!(b, "<h1>Status</h1>");
    let health_badge = if v.health.status == "ok" {
        "<div class=\"health ok\"><span class=\"dot\"></span>ok</div>"
    } else {
        "<div class=\"health degraded\"><span class=\"dot\"></span>degraded</div>"
    };
    let problems: String = v
        .health
        .problems
        .iter()
        .map(|p| format!("<li>{}</li>", esc(p)))
        .collect();
    let fmt_opt_ms = |m: Option<f64>| m.map_or("—".to_string(), fmt_ms);
    let _ = write!(
        b,
        "<div class=\"grid\">\
         <div class=\"card\"><h2>Health</h2>{health_badge}{}\
         <dl class=\"kv\"><dt>Version</dt><dd>{}</dd><dt>Up for</dt><dd>{}</dd>\
         <dt>Since</dt><dd>{}</dd><dt>Connection</dt><dd>{}</dd>\
         <dt>Failed logins</dt><dd>{}</dd><dt>Throttled</dt><dd>{}</dd></dl></div>\
         <div class=\"card\"><h2>Queue</h2><dl class=\"kv\">\
         <dt>Pending</dt><dd class=\"big\">{}</dd><dt>Running</dt><dd>{}</dd>\
         <dt>Done</dt><dd>{}</dd><dt>Failed</dt><dd>{}</dd></dl></div>\
         <div class=\"card\"><h2>Throughput</h2><dl class=\"kv\">\
         <dt>Studies, last 24 h</dt><dd class=\"big\">{}</dd>\
         <dt>Median time</dt><dd>{}</dd><dt>p95 time</dt><dd>{}</dd></dl>\
         <p class=\"muted\">Processing times of the {} newest results.</p></div>\
         <div class=\"card\"><h2>Ingest</h2><dl class=\"kv\">\
         <dt>Instances</dt><dd>{}</dd><dt>Series receiving</dt><dd>{}</dd>\
         <dt>Series selected</dt><dd>{}</dd><dt>Series skipped</dt><dd>{}</dd>\
         <dt>Quarantined</dt><dd>{}</dd></dl></div></div>",
        if problems.is_empty() {
            String::new()
        } else {
            format!("<ul class=\"health-problems\">{problems}</ul>")
        },
        esc(v.version),
        fmt_duration(v.uptime_secs),
        fmt_time(v.started_at),
        if v.https { "HTTPS" } else { "plain HTTP" },
        v.logins.failed_logins,
        if v.logins.locked_addresses > 0 {
            format!(
                "{} requests ({} addresses locked out now)",
                v.logins.throttled_requests, v.logins.locked_addresses
            )
        } else {
            format!("{} requests", v.logins.throttled_requests)
        },
        v.queue_pending,
        v.queue_running,
        v.counts.jobs_done,
        v.counts.jobs_failed,
        v.studies_last_24h,
        fmt_opt_ms(v.processing.median_ms),
        fmt_opt_ms(v.processing.p95_ms),
        v.processing.samples,
        v.counts.instances,
        v.counts.series_receiving,
        v.counts.series_selected,
        v.counts.series_skipped,
        v.counts.quarantined,
    );
    let _ = write!(
        b,
        "<div class=\"grid\"><div class=\"card\"><h2>Folders</h2><dl class=\"kv\">\
         <dt>Incoming</dt><dd>{}</dd><dt>Data</dt><dd>{}</dd></dl></div>",
        space_line(&v.incoming),
        space_line(&v.data)
    );
    b.push_str("<div class=\"card\"><h2>Models loaded</h2>");
    if v.models.is_empty() {
        b.push_str("<p class=\"empty\">No models loaded.</p>");
    } else {
        b.push_str("<table><tr><th>Model</th><th>Version</th><th>SHA-256</th></tr>");
        for m in &v.models {
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td class=\"mono\" title=\"{}\">{}…</td></tr>",
                esc(&m.name),
                esc(&m.version),
                esc(&m.sha256),
                esc(&m.sha256.chars().take(12).collect::<String>())
            );
        }
        b.push_str("</table>");
    }
    b.push_str("</div></div>");

    if !v.queue.is_empty() {
        let now = db::now_secs();
        b.push_str(
            "<div class=\"card\"><h2>In the queue</h2><table><tr><th>State</th><th>Series</th>\
             <th>Description</th><th class=\"num\">Attempt</th><th>Since</th></tr>",
        );
        for j in &v.queue {
            let (badge, since) = match j.started_at {
                Some(t) if j.state == "running" => (
                    "<span class=\"badge warn\">running</span>",
                    format!("{} ago", fmt_duration(now.saturating_sub(t).max(0) as u64)),
                ),
                _ => (
                    "<span class=\"badge muted\">pending</span>",
                    format!("queued {}", fmt_time(j.created_at)),
                ),
            };
            let _ = write!(
                b,
                "<tr><td>{badge}</td><td class=\"mono\">{}</td><td>{}</td>\
                 <td class=\"num\">{}</td><td class=\"nowrap\">{since}</td></tr>",
                esc(&j.series_uid),
                html::esc_opt(j.series_description.as_deref()),
                j.attempts.max(1),
            );
        }
        if v.queue_pending + v.queue_running > v.queue.len() as i64 {
            let _ = write!(
                b,
                "<tr><td colspan=\"5\" class=\"muted\">and {} more</td></tr>",
                v.queue_pending + v.queue_running - v.queue.len() as i64
            );
        }
        b.push_str("</table></div>");
    }
    b.push_str("<div class=\"card\"><h2>Recent errors and warnings</h2>");
    if v.recent_errors.is_empty() && v.failed_jobs.is_empty() {
        b.push_str("<p class=\"empty\">None.</p>");
    } else {
        b.push_str("<table><tr><th>When</th><th>Level</th><th>Message</th></tr>");
        for e in &v.recent_errors {
            let kind = if e.level == EventLevel::Error.as_str() {
                "bad"
            } else {
                "warn"
            };
            let _ = write!(
                b,
                "<tr><td class=\"nowrap\">{}</td><td><span class=\"badge {kind}\">{}</span></td><td>{}</td></tr>",
                fmt_time(e.at),
                esc(&e.level),
                esc(&e.message)
            );
        }
        for j in &v.failed_jobs {
            let _ = write!(
                b,
                "<tr><td class=\"nowrap\">{}</td><td><span class=\"badge bad\">job failed</span></td>\
                 <td>series <span class=\"mono\">{}</span>: {}</td></tr>",
                j.finished_at.map_or("—".into(), fmt_time),
                esc(&j.series_uid),
                esc(&j.reason)
            );
        }
        b.push_str("</table>");
    }
    b.push_str("</div><div class=\"grid\"><div class=\"card\"><h2>Quarantine</h2>");
    if v.quarantine_by_reason.is_empty() {
        b.push_str("<p class=\"empty\">No file quarantined.</p>");
    } else {
        b.push_str("<p>");
        for r in &v.quarantine_by_reason {
            let _ = write!(
                b,
                "<span class=\"badge muted\">{} × {}</span> ",
                esc(&r.reason_code),
                r.count
            );
        }
        b.push_str("</p><table><tr><th>When</th><th>File</th><th>Reason</th></tr>");
        for q in &v.recent_quarantine {
            let _ = write!(
                b,
                "<tr><td class=\"nowrap\">{}</td><td class=\"mono\">{}</td><td>{}</td></tr>",
                fmt_time(q.at),
                esc(&q.original_name),
                esc(&q.reason)
            );
        }
        b.push_str("</table>");
    }
    b.push_str("</div><div class=\"card\"><h2>Skipped series</h2>");
    if v.recent_skipped.is_empty() {
        b.push_str("<p class=\"empty\">No series skipped.</p>");
    } else {
        b.push_str("<table><tr><th>Series</th><th>Reason</th></tr>");
        for s in &v.recent_skipped {
            let _ = write!(
                b,
                "<tr><td class=\"mono\">{}</td><td>{}</td></tr>",
                esc(&s.series_uid),
                esc(&s.reason)
            );
        }
        b.push_str("</table>");
    }
    b.push_str("</div></div>");
    render_dicom(&mut b, &v.dicom);
    render_associations(&mut b, &v.recent_associations);
    render_outbox(&mut b, &v.outbox, &v.outbox_problems);
    html::layout("Status", html::Nav::Status, &b)
}

/// What was sent to each destination, and what is waiting or failed with its reason;
/// nothing when no object was ever queued.
fn render_outbox(b: &mut String, counts: &[OutboxCounts], problems: &[Delivery]) {
    if counts.is_empty() {
        return;
    }
    b.push_str(
        "<div class=\"card\"><h2>Outbox</h2><table><tr><th>Destination</th>\
         <th class=\"num\">Pending</th><th class=\"num\">Sending</th>\
         <th class=\"num\">Sent</th><th class=\"num\">Failed</th></tr>",
    );
    for c in counts {
        let failed = if c.failed > 0 {
            format!("<span class=\"badge bad\">{}</span>", c.failed)
        } else {
            "0".to_string()
        };
        let _ = write!(
            b,
            "<tr><td class=\"mono\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{failed}</td></tr>",
            esc(&c.destination),
            c.pending,
            c.sending,
            c.sent
        );
    }
    b.push_str("</table>");
    if !problems.is_empty() {
        b.push_str(
            "<h3>Failed or waiting to be retried</h3><table><tr><th>Destination</th>\
             <th>Object</th><th>Study</th><th>State</th><th class=\"num\">Attempts</th>\
             <th>Next attempt</th><th>Last error</th></tr>",
        );
        for d in problems {
            let (badge, next) = if d.state == DeliveryState::Failed {
                ("bad", "never (send it again by hand)".to_string())
            } else {
                ("warn", fmt_time(d.next_attempt_at))
            };
            let _ = write!(
                b,
                "<tr><td class=\"mono\">{}</td><td class=\"mono\">{} {}</td>\
                 <td class=\"mono\">{}</td><td><span class=\"badge {badge}\">{}</span></td>\
                 <td class=\"num\">{}</td><td class=\"nowrap\">{}</td><td>{}</td></tr>",
                esc(&d.destination),
                esc(&d.kind),
                esc(&d.sop_instance_uid),
                esc(d.study_uid.as_deref().unwrap_or("")),
                d.state.as_str(),
                d.attempts,
                esc(&next),
                esc(d.last_error.as_deref().unwrap_or(""))
            );
        }
        b.push_str("</table>");
    }
    b.push_str("</div>");
}

/// The DICOM receiver and the destinations, each TLS or plain TCP; nothing when neither is
/// configured. A plain receiver other machines reach says so, without alarm: behind a
/// firewall with `allowed_peers` it is the usual PACS set-up.
fn render_dicom(b: &mut String, d: &DicomSecurity) {
    if d.receiver.is_none() && d.destinations.is_empty() {
        return;
    }
    b.push_str("<div class=\"card\"><h2>DICOM</h2>");
    match &d.receiver {
        None => b.push_str("<p class=\"muted\">Receiver off (dicom.listen is not set).</p>"),
        Some(r) => {
            let connection = if r.tls {
                "DICOM TLS (TLS 1.2/1.3)".to_string()
            } else if r.plain_on_network {
                "plain TCP <span class=\"badge muted\">unencrypted on the network</span>".into()
            } else {
                "plain TCP (this machine only)".to_string()
            };
            let _ = write!(
                b,
                "<dl class=\"kv\"><dt>Receiver</dt><dd><span class=\"mono\">{}</span> on \
                 <span class=\"mono\">{}</span></dd><dt>Connection</dt><dd>{connection}</dd>",
                esc(&r.ae_title),
                esc(&r.listen)
            );
            if r.tls {
                let _ = write!(
                    b,
                    "<dt>Client certificates</dt><dd>{}</dd>",
                    match &r.client_ca {
                        Some(ca) => format!(
                            "required, signed by <span class=\"mono\">{}</span>",
                            esc(ca)
                        ),
                        None => "not asked for (dicom.tls_ca is not set)".to_string(),
                    }
                );
            }
            if let Some(f) = &r.fingerprint {
                let _ = write!(
                    b,
                    "<dt>Certificate SHA-256</dt><dd class=\"mono\">{}</dd>",
                    esc(f)
                );
            }
            b.push_str("</dl>");
        }
    }
    if !d.destinations.is_empty() {
        b.push_str(
            "<table><tr><th>Destination</th><th>AE title</th><th>Address</th>\
             <th>Connection</th></tr>",
        );
        for dest in &d.destinations {
            let connection = match &dest.trust {
                Some(trust) => format!(
                    "DICOM TLS <span class=\"muted\">(trusting {})</span>",
                    esc(trust)
                ),
                None => "plain TCP".to_string(),
            };
            let _ = write!(
                b,
                "<tr><td class=\"mono\">{}</td><td class=\"mono\">{}</td>\
                 <td class=\"mono\">{}</td><td>{connection}</td></tr>",
                esc(&dest.name),
                esc(&dest.ae_title),
                esc(&dest.address)
            );
        }
        b.push_str("</table>");
    }
    b.push_str("</div>");
}

/// The DICOM receiver's association log; nothing when it has never been used.
fn render_associations(b: &mut String, rows: &[AssociationRecord]) {
    if rows.is_empty() {
        return;
    }
    b.push_str(
        "<div class=\"card\"><h2>DICOM associations</h2><table><tr><th>When</th>\
         <th>Calling AE</th><th>Called AE</th><th>Peer</th><th class=\"num\">Stored</th>\
         <th class=\"num\">Duplicates</th><th class=\"num\">Refused</th>\
         <th class=\"num\">Received</th><th class=\"num\">Duration</th><th>Outcome</th></tr>",
    );
    for a in rows {
        let kind = if a.outcome == "released" {
            "good"
        } else if a.outcome.starts_with("rejected") {
            "bad"
        } else {
            "warn"
        };
        let _ = write!(
            b,
            "<tr><td class=\"nowrap\">{}</td><td class=\"mono\">{}</td><td class=\"mono\">{}</td>\
             <td class=\"mono\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td><span class=\"badge {kind}\">{}</span></td></tr>",
            fmt_time(a.started_at),
            esc(&a.calling_ae),
            esc(&a.called_ae),
            esc(&a.peer),
            a.stored,
            a.duplicates,
            a.refused,
            fmt_bytes(a.bytes.max(0) as u64),
            fmt_ms(a.duration_ms as f64),
            esc(&a.outcome)
        );
    }
    b.push_str("</table></div>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_nearest_rank_p95() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[5]), Some(5.0));
        assert_eq!(median(&[1, 3]), Some(2.0));
        let v: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.95), Some(95.0));
        assert_eq!(percentile(&[7], 0.95), Some(7.0));
        assert_eq!(percentile(&[1, 2, 3], 0.95), Some(3.0));
    }
}
