//! The status page (`/`, `/api/status`) and the health verdict behind `/healthz`.

use std::path::Path;

use maud::{Markup, html};
use serde::Serialize;

use super::format::{fmt_bytes, fmt_duration, fmt_ms, fmt_time, or_dash};
use super::html;
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
        incoming: folder(ctx.state.incoming()),
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

/// A folder's path and free space.
fn space_line(f: &FolderSpace) -> Markup {
    let space = match (f.free_bytes, f.total_bytes) {
        (Some(free), Some(total)) if total > 0 => format!(
            "{} free of {} ({:.0} %)",
            fmt_bytes(free),
            fmt_bytes(total),
            free as f64 / total as f64 * 100.0
        ),
        _ => "free space unknown".into(),
    };
    html! {
        span.mono { (f.path) } br;
        span.muted { @if !f.exists { "missing · " } (space) }
    }
}

pub fn render(v: &StatusView) -> String {
    let body = html! {
        @if v.ingest_paused_disk_full {
            div.banner.bad {
                "Disk full: ingest paused. New files wait in the incoming folder until space is freed."
            }
        }
        @for w in &v.security_warnings {
            div.banner.warn { "Security: " (w) }
        }
        h1 { "Status" }
        div.grid {
            (health_card(v))
            (queue_card(v))
            (throughput_card(v))
            (ingest_card(v))
        }
        div.grid {
            div.card {
                h2 { "Folders" }
                dl.kv {
                    dt { "Incoming" } dd { (space_line(&v.incoming)) }
                    dt { "Data" } dd { (space_line(&v.data)) }
                }
            }
            (models_card(&v.models))
        }
        (queue_table(v))
        (errors_card(&v.recent_errors, &v.failed_jobs))
        div.grid {
            (quarantine_card(&v.quarantine_by_reason, &v.recent_quarantine))
            (skipped_card(&v.recent_skipped))
        }
        (dicom_card(&v.dicom))
        (associations_card(&v.recent_associations))
        (outbox_card(&v.outbox, &v.outbox_problems))
    };
    html::layout("Status", html::Nav::Status, body)
}

fn opt_ms(ms: Option<f64>) -> String {
    ms.map_or("—".to_string(), fmt_ms)
}

/// The verdict, its problems, and what the appliance runs.
fn health_card(v: &StatusView) -> Markup {
    let ok = v.health.status == "ok";
    let throttled = if v.logins.locked_addresses > 0 {
        format!(
            "{} requests ({} addresses locked out now)",
            v.logins.throttled_requests, v.logins.locked_addresses
        )
    } else {
        format!("{} requests", v.logins.throttled_requests)
    };
    html! {
        div.card {
            h2 { "Health" }
            div.health.ok[ok].degraded[!ok] { span.dot {} (v.health.status) }
            @if !v.health.problems.is_empty() {
                ul.health-problems { @for p in &v.health.problems { li { (p) } } }
            }
            dl.kv {
                dt { "Version" } dd { (v.version) }
                dt { "Up for" } dd { (fmt_duration(v.uptime_secs)) }
                dt { "Since" } dd { (fmt_time(v.started_at)) }
                dt { "Connection" } dd { @if v.https { "HTTPS" } @else { "plain HTTP" } }
                dt { "Failed logins" } dd { (v.logins.failed_logins) }
                dt { "Throttled" } dd { (throttled) }
            }
        }
    }
}

fn queue_card(v: &StatusView) -> Markup {
    html! {
        div.card {
            h2 { "Queue" }
            dl.kv {
                dt { "Pending" } dd.big { (v.queue_pending) }
                dt { "Running" } dd { (v.queue_running) }
                dt { "Done" } dd { (v.counts.jobs_done) }
                dt { "Failed" } dd { (v.counts.jobs_failed) }
            }
        }
    }
}

fn throughput_card(v: &StatusView) -> Markup {
    html! {
        div.card {
            h2 { "Throughput" }
            dl.kv {
                dt { "Studies, last 24 h" } dd.big { (v.studies_last_24h) }
                dt { "Median time" } dd { (opt_ms(v.processing.median_ms)) }
                dt { "p95 time" } dd { (opt_ms(v.processing.p95_ms)) }
            }
            p.muted { "Processing times of the " (v.processing.samples) " newest results." }
        }
    }
}

fn ingest_card(v: &StatusView) -> Markup {
    let c = &v.counts;
    html! {
        div.card {
            h2 { "Ingest" }
            dl.kv {
                dt { "Instances" } dd { (c.instances) }
                dt { "Series receiving" } dd { (c.series_receiving) }
                dt { "Series selected" } dd { (c.series_selected) }
                dt { "Series skipped" } dd { (c.series_skipped) }
                dt { "Quarantined" } dd { (c.quarantined) }
            }
        }
    }
}

fn models_card(models: &[ModelRef]) -> Markup {
    html! {
        div.card {
            h2 { "Models loaded" }
            @if models.is_empty() {
                p.empty { "No models loaded." }
            } @else {
                (html::models_table(models))
            }
        }
    }
}

/// Running jobs, then the next pending ones; nothing when the queue is empty.
fn queue_table(v: &StatusView) -> Markup {
    if v.queue.is_empty() {
        return html! {};
    }
    let now = db::now_secs();
    let more = v.queue_pending + v.queue_running - v.queue.len() as i64;
    html! {
        div.card {
            h2 { "In the queue" }
            table {
                tr { th { "State" } th { "Series" } th { "Description" } th.num { "Attempt" } th { "Since" } }
                @for j in &v.queue {
                    @let running_since = j.started_at.filter(|_| j.state == "running");
                    tr {
                        td {
                            @if running_since.is_some() {
                                span.badge.warn { "running" }
                            } @else {
                                span.badge.muted { "pending" }
                            }
                        }
                        td.mono { (j.series_uid) }
                        td { (or_dash(j.series_description.as_deref())) }
                        td.num { (j.attempts.max(1)) }
                        td.nowrap {
                            @match running_since {
                                Some(t) => { (fmt_duration(now.saturating_sub(t).max(0) as u64)) " ago" }
                                None => { "queued " (fmt_time(j.created_at)) }
                            }
                        }
                    }
                }
                @if more > 0 {
                    tr { td colspan="5" class="muted" { "and " (more) " more" } }
                }
            }
        }
    }
}

fn errors_card(events: &[EventEntry], failed_jobs: &[FailedJob]) -> Markup {
    html! {
        div.card {
            h2 { "Recent errors and warnings" }
            @if events.is_empty() && failed_jobs.is_empty() {
                p.empty { "None." }
            } @else {
                table {
                    tr { th { "When" } th { "Level" } th { "Message" } }
                    @for e in events {
                        @let kind = if e.level == EventLevel::Error.as_str() { "bad" } else { "warn" };
                        tr {
                            td.nowrap { (fmt_time(e.at)) }
                            td { span class={ "badge " (kind) } { (e.level) } }
                            td { (e.message) }
                        }
                    }
                    @for j in failed_jobs {
                        tr {
                            td.nowrap { (j.finished_at.map_or("—".into(), fmt_time)) }
                            td { span.badge.bad { "job failed" } }
                            td { "series " span.mono { (j.series_uid) } ": " (j.reason) }
                        }
                    }
                }
            }
        }
    }
}

fn quarantine_card(by_reason: &[ReasonCount], recent: &[QuarantineEntry]) -> Markup {
    html! {
        div.card {
            h2 { "Quarantine" }
            @if by_reason.is_empty() {
                p.empty { "No file quarantined." }
            } @else {
                p { @for r in by_reason { span.badge.muted { (r.reason_code) " × " (r.count) } " " } }
                table {
                    tr { th { "When" } th { "File" } th { "Reason" } }
                    @for q in recent {
                        tr {
                            td.nowrap { (fmt_time(q.at)) }
                            td.mono { (q.original_name) }
                            td { (q.reason) }
                        }
                    }
                }
            }
        }
    }
}

fn skipped_card(skipped: &[SkippedSeries]) -> Markup {
    html! {
        div.card {
            h2 { "Skipped series" }
            @if skipped.is_empty() {
                p.empty { "No series skipped." }
            } @else {
                table {
                    tr { th { "Series" } th { "Reason" } }
                    @for s in skipped {
                        tr { td.mono { (s.series_uid) } td { (s.reason) } }
                    }
                }
            }
        }
    }
}

/// What was sent to each destination, and what is waiting or failed with its reason;
/// nothing when no object was ever queued.
fn outbox_card(counts: &[OutboxCounts], problems: &[Delivery]) -> Markup {
    if counts.is_empty() {
        return html! {};
    }
    html! {
        div.card {
            h2 { "Outbox" }
            table {
                tr {
                    th { "Destination" } th.num { "Pending" } th.num { "Sending" }
                    th.num { "Sent" } th.num { "Failed" }
                }
                @for c in counts {
                    tr {
                        td.mono { (c.destination) }
                        td.num { (c.pending) }
                        td.num { (c.sending) }
                        td.num { (c.sent) }
                        td.num { @if c.failed > 0 { span.badge.bad { (c.failed) } } @else { "0" } }
                    }
                }
            }
            @if !problems.is_empty() {
                h3 { "Failed or waiting to be retried" }
                table {
                    tr {
                        th { "Destination" } th { "Object" } th { "Study" } th { "State" }
                        th.num { "Attempts" } th { "Next attempt" } th { "Last error" }
                    }
                    @for d in problems {
                        @let failed = d.state == DeliveryState::Failed;
                        tr {
                            td.mono { (d.destination) }
                            td.mono { (d.kind) " " (d.sop_instance_uid) }
                            td.mono { (d.study_uid.as_deref().unwrap_or("")) }
                            td { span.badge.bad[failed].warn[!failed] { (d.state.as_str()) } }
                            td.num { (d.attempts) }
                            td.nowrap {
                                @if failed { "never (send it again by hand)" } @else { (fmt_time(d.next_attempt_at)) }
                            }
                            td { (d.last_error.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        }
    }
}

/// The DICOM receiver and the destinations, each TLS or plain TCP; nothing when neither is
/// configured. A plain receiver other machines reach says so, without alarm: behind a
/// firewall with `allowed_peers` it is the usual PACS set-up.
fn dicom_card(d: &DicomSecurity) -> Markup {
    if d.receiver.is_none() && d.destinations.is_empty() {
        return html! {};
    }
    html! {
        div.card {
            h2 { "DICOM" }
            @match &d.receiver {
                None => p.muted { "Receiver off (dicom.listen is not set)." },
                Some(r) => dl.kv {
                    dt { "Receiver" }
                    dd { span.mono { (r.ae_title) } " on " span.mono { (r.listen) } }
                    dt { "Connection" }
                    dd {
                        @if r.tls {
                            "DICOM TLS (TLS 1.2/1.3)"
                        } @else if r.plain_on_network {
                            "plain TCP " span.badge.muted { "unencrypted on the network" }
                        } @else {
                            "plain TCP (this machine only)"
                        }
                    }
                    @if r.tls {
                        dt { "Client certificates" }
                        dd {
                            @match &r.client_ca {
                                Some(ca) => { "required, signed by " span.mono { (ca) } }
                                None => "not asked for (dicom.tls_ca is not set)",
                            }
                        }
                    }
                    @if let Some(f) = &r.fingerprint {
                        dt { "Certificate SHA-256" } dd.mono { (f) }
                    }
                },
            }
            @if !d.destinations.is_empty() {
                table {
                    tr { th { "Destination" } th { "AE title" } th { "Address" } th { "Connection" } }
                    @for dest in &d.destinations {
                        tr {
                            td.mono { (dest.name) }
                            td.mono { (dest.ae_title) }
                            td.mono { (dest.address) }
                            td {
                                @match &dest.trust {
                                    Some(trust) => { "DICOM TLS " span.muted { "(trusting " (trust) ")" } }
                                    None => "plain TCP",
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The DICOM receiver's association log; nothing when it has never been used.
fn associations_card(rows: &[AssociationRecord]) -> Markup {
    if rows.is_empty() {
        return html! {};
    }
    html! {
        div.card {
            h2 { "DICOM associations" }
            table {
                tr {
                    th { "When" } th { "Calling AE" } th { "Called AE" } th { "Peer" }
                    th.num { "Stored" } th.num { "Duplicates" } th.num { "Refused" }
                    th.num { "Received" } th.num { "Duration" } th { "Outcome" }
                }
                @for a in rows {
                    @let kind = if a.outcome == "released" {
                        "good"
                    } else if a.outcome.starts_with("rejected") {
                        "bad"
                    } else {
                        "warn"
                    };
                    tr {
                        td.nowrap { (fmt_time(a.started_at)) }
                        td.mono { (a.calling_ae) }
                        td.mono { (a.called_ae) }
                        td.mono { (a.peer) }
                        td.num { (a.stored) }
                        td.num { (a.duplicates) }
                        td.num { (a.refused) }
                        td.num { (fmt_bytes(a.bytes.max(0) as u64)) }
                        td.num { (fmt_ms(a.duration_ms as f64)) }
                        td { span class={ "badge " (kind) } { (a.outcome) } }
                    }
                }
            }
        }
    }
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
