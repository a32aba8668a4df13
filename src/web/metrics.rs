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

/// A Prometheus text exposition being written: each family's HELP and TYPE, then its
/// samples.
struct Exposition(String);

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) -> &mut Self {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
        self
    }

    /// One sample; `labels` is the text inside the braces (already escaped), or empty.
    fn sample(&mut self, name: &str, labels: &str, value: impl std::fmt::Display) -> &mut Self {
        let _ = if labels.is_empty() {
            writeln!(self.0, "{name} {value}")
        } else {
            writeln!(self.0, "{name}{{{labels}}} {value}")
        };
        self
    }

    /// A family with one unlabelled sample.
    fn single(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        self.family(name, kind, help).sample(name, "", value);
    }
}

pub fn render(ctx: &Ctx, db: &Reader) -> db::Result<String> {
    let mut o = Exposition(String::new());
    process(&mut o, ctx);
    let counts = db.status_counts()?;
    queue(&mut o, &counts, &db.failed_jobs_by_kind()?);
    store(&mut o, &counts, &db.quarantine_by_reason()?);
    processing_time(&mut o, &db.processing_histogram(&BUCKETS_MS)?);
    outbox(&mut o, &db.outbox_counts()?);
    disks(&mut o, ctx);
    Ok(o.0)
}

/// The daemon itself: up, version, health, logins, uptime, the ingest pause.
fn process(o: &mut Exposition, ctx: &Ctx) {
    o.single(
        "lungwatch_up",
        "gauge",
        "1 when lungwatch is running and its database answers.",
        1,
    );
    o.family(
        "lungwatch_build_info",
        "gauge",
        "Version of the running lungwatch.",
    )
    .sample(
        "lungwatch_build_info",
        &format!("version=\"{}\"", escape_label(env!("CARGO_PKG_VERSION"))),
        1,
    );
    o.single(
        "lungwatch_healthy",
        "gauge",
        "1 when the status is ok, 0 when degraded.",
        u8::from(super::status::health(ctx).status == "ok"),
    );
    let logins = ctx.state.login_counts();
    o.single(
        "lungwatch_failed_logins_total",
        "counter",
        "Logins with wrong credentials since the daemon started.",
        logins.failed_logins,
    );
    o.single(
        "lungwatch_throttled_requests_total",
        "counter",
        "Requests answered 429 (address locked out after failed logins) since the daemon started.",
        logins.throttled_requests,
    );
    o.single(
        "lungwatch_locked_out_addresses",
        "gauge",
        "Client addresses locked out after failed logins right now.",
        logins.locked_addresses,
    );
    o.single(
        "lungwatch_uptime_seconds",
        "gauge",
        "Seconds since lungwatch started.",
        ctx.state.uptime_secs(),
    );
    o.single(
        "lungwatch_ingest_paused",
        "gauge",
        "1 while ingest is paused because the disk is full.",
        u8::from(ctx.state.disk_full()),
    );
}

/// The analysis queue: depth, jobs by state, failures by kind.
fn queue(o: &mut Exposition, counts: &db::StatusCounts, failed: &[(String, i64)]) {
    o.single(
        "lungwatch_queue_depth",
        "gauge",
        "Jobs waiting to be analysed.",
        counts.jobs_pending,
    );
    o.family("lungwatch_jobs", "gauge", "Analysis jobs by state.");
    for (state, n) in [
        ("pending", counts.jobs_pending),
        ("running", counts.jobs_running),
        ("done", counts.jobs_done),
        ("failed", counts.jobs_failed),
    ] {
        o.sample("lungwatch_jobs", &format!("state=\"{state}\""), n);
    }
    o.family(
        "lungwatch_jobs_failed",
        "gauge",
        "Failed analysis jobs by kind of failure.",
    );
    // Every known kind, 0 included, so that a rate over it never starts from nothing.
    for kind in db::FailureKind::ALL.map(|k| k.as_str()) {
        let n = failed
            .iter()
            .find(|(k, _)| k == kind)
            .map_or(0, |(_, n)| *n);
        o.sample("lungwatch_jobs_failed", &format!("reason=\"{kind}\""), n);
    }
    for (kind, n) in failed.iter().filter(|(k, _)| k == "unknown") {
        o.sample("lungwatch_jobs_failed", &format!("reason=\"{kind}\""), n);
    }
}

/// What is stored: series by state, instances, quarantined files.
fn store(o: &mut Exposition, counts: &db::StatusCounts, by_reason: &[(String, i64)]) {
    o.family("lungwatch_series", "gauge", "Series by state.");
    for (state, n) in [
        ("receiving", counts.series_receiving),
        ("selected", counts.series_selected),
        ("skipped", counts.series_skipped),
    ] {
        o.sample("lungwatch_series", &format!("state=\"{state}\""), n);
    }
    o.single(
        "lungwatch_instances",
        "gauge",
        "DICOM instances stored and indexed.",
        counts.instances,
    );
    o.single(
        "lungwatch_quarantined_files",
        "gauge",
        "Files in quarantine.",
        counts.quarantined,
    );
    o.family(
        "lungwatch_quarantined_files_by_reason",
        "gauge",
        "Files in quarantine by reason code.",
    );
    for (reason, n) in by_reason {
        o.sample(
            "lungwatch_quarantined_files_by_reason",
            &format!("reason=\"{}\"", escape_label(reason)),
            n,
        );
    }
}

fn processing_time(o: &mut Exposition, hist: &db::ProcessingHistogram) {
    let name = "lungwatch_processing_seconds";
    o.family(
        name,
        "histogram",
        "Time from job start to stored result, per analysed series.",
    );
    let bucket = format!("{name}_bucket");
    for (bound, n) in hist.bounds_ms.iter().zip(&hist.cumulative) {
        o.sample(&bucket, &format!("le=\"{}\"", *bound as f64 / 1000.0), n);
    }
    o.sample(&bucket, "le=\"+Inf\"", hist.count)
        .sample(&format!("{name}_sum"), "", hist.sum_ms as f64 / 1000.0)
        .sample(&format!("{name}_count"), "", hist.count);
}

fn outbox(o: &mut Exposition, outbox: &[db::OutboxCounts]) {
    if outbox.is_empty() {
        return;
    }
    let name = "lungwatch_outbox_objects";
    o.family(
        name,
        "gauge",
        "DICOM objects in the outbox by destination and state (pending, sending, sent, failed).",
    );
    for c in outbox {
        let d = escape_label(&c.destination);
        for (state, n) in [
            ("pending", c.pending),
            ("sending", c.sending),
            ("sent", c.sent),
            ("failed", c.failed),
        ] {
            o.sample(name, &format!("destination=\"{d}\",state=\"{state}\""), n);
        }
    }
}

fn disks(o: &mut Exposition, ctx: &Ctx) {
    if let Some((free, _)) = crate::sys::disk_space(ctx.data_dir) {
        o.single(
            "lungwatch_data_free_bytes",
            "gauge",
            "Free bytes on the filesystem of paths.data.",
            free,
        );
    }
    if let Some((free, _)) = crate::sys::disk_space(ctx.state.incoming()) {
        o.single(
            "lungwatch_incoming_free_bytes",
            "gauge",
            "Free bytes on the filesystem of the incoming folder.",
            free,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
