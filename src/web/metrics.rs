//! `/metrics`: Prometheus text exposition format (version 0.0.4).

use std::fmt::Write;

use super::server::Ctx;
use crate::db::{self, ReadQueries, Reader};

/// Upper bounds of the processing-time histogram, in ms (exposed in seconds).
pub const BUCKETS_MS: [i64; 11] = [
    500, 1_000, 2_000, 4_000, 8_000, 15_000, 30_000, 60_000, 120_000, 300_000, 600_000,
];

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn metric(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

pub fn render(ctx: &Ctx, db: &Reader) -> db::Result<String> {
    let counts = db.status_counts()?;
    let hist = db.processing_histogram(&BUCKETS_MS)?;
    let by_reason = db.quarantine_by_reason()?;
    let mut o = String::new();
    metric(
        &mut o,
        "lungwatch_up",
        "gauge",
        "1 when lungwatch is running and its database answers.",
    );
    let _ = writeln!(o, "lungwatch_up 1");
    metric(
        &mut o,
        "lungwatch_build_info",
        "gauge",
        "Version of the running lungwatch.",
    );
    let _ = writeln!(
        o,
        "lungwatch_build_info{{version=\"{}\"}} 1",
        escape_label(env!("CARGO_PKG_VERSION"))
    );
    metric(
        &mut o,
        "lungwatch_healthy",
        "gauge",
        "1 when the status is ok, 0 when degraded.",
    );
    let _ = writeln!(
        o,
        "lungwatch_healthy {}",
        u8::from(super::status::health(ctx).status == "ok")
    );
    let logins = ctx.state.login_counts();
    metric(
        &mut o,
        "lungwatch_failed_logins_total",
        "counter",
        "Logins with wrong credentials since the daemon started.",
    );
    let _ = writeln!(o, "lungwatch_failed_logins_total {}", logins.failed_logins);
    metric(
        &mut o,
        "lungwatch_throttled_requests_total",
        "counter",
        "Requests answered 429 (address locked out after failed logins) since the daemon started.",
    );
    let _ = writeln!(
        o,
        "lungwatch_throttled_requests_total {}",
        logins.throttled_requests
    );
    metric(
        &mut o,
        "lungwatch_locked_out_addresses",
        "gauge",
        "Client addresses locked out after failed logins right now.",
    );
    let _ = writeln!(
        o,
        "lungwatch_locked_out_addresses {}",
        logins.locked_addresses
    );
    metric(
        &mut o,
        "lungwatch_uptime_seconds",
        "gauge",
        "Seconds since lungwatch started.",
    );
    let _ = writeln!(o, "lungwatch_uptime_seconds {}", ctx.state.uptime_secs());
    metric(
        &mut o,
        "lungwatch_ingest_paused",
        "gauge",
        "1 while ingest is paused because the disk is full.",
    );
    let _ = writeln!(
        o,
        "lungwatch_ingest_paused {}",
        u8::from(ctx.state.disk_full())
    );
    metric(
        &mut o,
        "lungwatch_queue_depth",
        "gauge",
        "Jobs waiting to be analysed.",
    );
    let _ = writeln!(o, "lungwatch_queue_depth {}", counts.jobs_pending);
    metric(&mut o, "lungwatch_jobs", "gauge", "Analysis jobs by state.");
    for (state, n) in [
        ("pending", counts.jobs_pending),
        ("running", counts.jobs_running),
        ("done", counts.jobs_done),
        ("failed", counts.jobs_failed),
    ] {
        let _ = writeln!(o, "lungwatch_jobs{{state=\"{state}\"}} {n}");
    }
    metric(
        &mut o,
        "lungwatch_jobs_failed",
        "gauge",
        "Failed analysis jobs by kind of failure.",
    );
    let failed = db.failed_jobs_by_kind()?;
    for kind in crate::db::FailureKind::ALL.map(|k| k.as_str()) {
        let n = failed
            .iter()
            .find(|(k, _)| k == kind)
            .map_or(0, |(_, n)| *n);
        let _ = writeln!(o, "lungwatch_jobs_failed{{reason=\"{kind}\"}} {n}");
    }
    for (kind, n) in failed.iter().filter(|(k, _)| k == "unknown") {
        let _ = writeln!(o, "lungwatch_jobs_failed{{reason=\"{kind}\"}} {n}");
    }
    metric(&mut o, "lungwatch_series", "gauge", "Series by state.");
    for (state, n) in [
        ("receiving", counts.series_receiving),
        ("selected", counts.series_selected),
        ("skipped", counts.series_skipped),
    ] {
        let _ = writeln!(o, "lungwatch_series{{state=\"{state}\"}} {n}");
    }
    metric(
        &mut o,
        "lungwatch_instances",
        "gauge",
        "DICOM instances stored and indexed.",
    );
    let _ = writeln!(o, "lungwatch_instances {}", counts.instances);
    metric(
        &mut o,
        "lungwatch_quarantined_files",
        "gauge",
        "Files in quarantine.",
    );
    let _ = writeln!(o, "lungwatch_quarantined_files {}", counts.quarantined);
    metric(
        &mut o,
        "lungwatch_quarantined_files_by_reason",
        "gauge",
        "Files in quarantine by reason code.",
    );
    for (reason, n) in &by_reason {
        let _ = writeln!(
            o,
            "lungwatch_quarantined_files_by_reason{{reason=\"{}\"}} {n}",
            escape_label(reason)
        );
    }
    metric(
        &mut o,
        "lungwatch_processing_seconds",
        "histogram",
        "Time from job start to stored result, per analysed series.",
    );
    for (bound, n) in hist.bounds_ms.iter().zip(&hist.cumulative) {
        let _ = writeln!(
            o,
            "lungwatch_processing_seconds_bucket{{le=\"{}\"}} {n}",
            *bound as f64 / 1000.0
        );
    }
    let _ = writeln!(
        o,
        "lungwatch_processing_seconds_bucket{{le=\"+Inf\"}} {}\n\
         lungwatch_processing_seconds_sum {}\nlungwatch_processing_seconds_count {}",
        hist.count,
        hist.sum_ms as f64 / 1000.0,
        hist.count
    );
    let outbox = db.outbox_counts()?;
    if !outbox.is_empty() {
        metric(
            &mut o,
            "lungwatch_outbox_objects",
            "gauge",
            "DICOM objects in the outbox by destination and state (pending, sending, sent, failed).",
        );
        for c in &outbox {
            let d = escape_label(&c.destination);
            for (state, n) in [
                ("pending", c.pending),
                ("sending", c.sending),
                ("sent", c.sent),
                ("failed", c.failed),
            ] {
                let _ = writeln!(
                    o,
                    "lungwatch_outbox_objects{{destination=\"{d}\",state=\"{state}\"}} {n}"
                );
            }
        }
    }
    if let Some((free, _)) = crate::sys::disk_space(ctx.data_dir) {
        metric(
            &mut o,
            "lungwatch_data_free_bytes",
            "gauge",
            "Free bytes on the filesystem of paths.data.",
        );
        let _ = writeln!(o, "lungwatch_data_free_bytes {free}");
    }
    if let Some((free, _)) = crate::sys::disk_space(&ctx.state.incoming()) {
        metric(
            &mut o,
            "lungwatch_incoming_free_bytes",
            "gauge",
            "Free bytes on the filesystem of the incoming folder.",
        );
        let _ = writeln!(o, "lungwatch_incoming_free_bytes {free}");
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
