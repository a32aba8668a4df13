//! Nothing stops the queue, with the real binary:
//! - SIGKILL at random points (ingest, completion, analysis, artifact writing, result
//!   storing), many times over, then the invariants;
//! - a job that is interrupted at every attempt is failed at `analysis.max_attempts`, and
//!   the series after it are still analysed;
//! - series with absurd headers, each in its own way, beside a good one: the good one is
//!   analysed, each bad one is quarantined, skipped or failed with a reason on the page.
//!
//! The kill count is fixed for CI; more by hand:
//! `LUNGWATCH_FAULT_KILLS=200 cargo test --release --test queue_robustness -- --nocapture`

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::Daemon;
use common::phantom::{self, PhantomSpec};
use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::tags;
use lungwatch::db::{JobState, ReadQueries};

const CONFIG: &str = "[selection]\nmin_slices = 4\n";

/// Writes the series beside the drop folder and moves it in with one rename, as an
/// export that finishes at once.
fn drop_series(
    d: &Daemon,
    name: &str,
    objects: &[dicom_object::FileDicomObject<dicom_object::InMemDicomObject>],
) {
    let outside = d.root.path().join(format!("outside-{name}"));
    phantom::write(&outside, objects);
    std::fs::rename(&outside, d.incoming.join(name)).unwrap();
}

/// A series long enough that a kill often lands inside its analysis.
fn analysed_spec(n: u32) -> PhantomSpec {
    PhantomSpec {
        rows: 256,
        columns: 256,
        slices: 60,
        pixel_mm: 1.8,
        slice_mm: 2.5,
        ..PhantomSpec::small(n)
    }
}

fn wait_until(secs: u64, what: &str, d: &Daemon, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n--- daemon log ---\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn result_folders(data: &Path) -> BTreeSet<i64> {
    std::fs::read_dir(data.join("results"))
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.strip_prefix("job-")?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn sigkill_at_random_points_leaves_every_job_done_exactly_once() {
    let kills: usize = std::env::var("LUNGWATCH_FAULT_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(14);
    // Random kills would exhaust the attempt limit: that rule has its own test below.
    let mut d = Daemon::new(&format!("{CONFIG}[analysis]\nmax_attempts = 100000\n"));
    let mut specs: Vec<PhantomSpec> = (0..6).map(|n| analysed_spec(100 + n)).collect();
    for (n, spec) in specs.iter().enumerate() {
        drop_series(&d, &format!("series-{n}"), &phantom::slices(spec));
    }
    // Ingest and completion first (their kill safety is tests/daemon.rs's subject); then
    // kill while jobs run: inside decoding, inference, artifact writing or result storing.
    d.start();
    d.wait_for(60, "all series complete", |c| c.series_selected == 6);
    // Seeded, so the kill delays are the same on every run.
    let mut rng = common::Rng(0x00fa);
    let (mut done_kills, mut killed_while_running) = (0, 0);
    while done_kills < kills {
        if done_kills > 0 {
            d.start();
        }
        // Start-up is over (and the killed job requeued) once the page is up.
        d.web_address();
        let done_before = d.counts().map_or(0, |c| c.jobs_done);
        // On a fast machine the queue may drain between kills: give it another series, so
        // every kill has a job to interrupt whatever the speed.
        if d.counts()
            .is_some_and(|c| c.jobs_pending == 0 && c.jobs_running == 0)
        {
            let spec = analysed_spec(100 + specs.len() as u32);
            drop_series(
                &d,
                &format!("series-{}", specs.len()),
                &phantom::slices(&spec),
            );
            specs.push(spec);
        }
        wait_until(60, "a job to run", &d, || {
            d.counts()
                .is_some_and(|c| c.jobs_running > 0 || c.jobs_done > done_before)
        });
        // An analysis of one of these takes a few hundred ms on an idle 2-core machine.
        std::thread::sleep(Duration::from_millis(rng.next() % 400));
        if d.counts().is_some_and(|c| c.jobs_running > 0) {
            killed_while_running += 1;
        }
        d.kill9();
        done_kills += 1;
    }
    d.start();
    let want = specs.len() as i64;
    let total_slices: i64 = specs.iter().map(|s| s.slices as i64).sum();
    let c = d.wait_for(180, "every job finished", |c| {
        c.series_selected == want
            && c.jobs_pending == 0
            && c.jobs_running == 0
            && c.jobs_done + c.jobs_failed == want
    });
    println!(
        "{done_kills} SIGKILLs ({killed_while_running} with a job running), {want} series; final counts {c:?}"
    );
    assert!(
        killed_while_running * 4 >= done_kills,
        "only {killed_while_running} of {done_kills} kills hit a running job"
    );
    assert_eq!((c.jobs_done, c.jobs_failed), (want, 0), "{}", d.log());
    let db = d.db();
    let results = db.all_results().unwrap();
    assert_eq!(results.len() as i64, want, "one result per job");
    let mut jobs_with_results = BTreeSet::new();
    for spec in &specs {
        let jobs = db.jobs_for_series(&spec.series_uid).unwrap();
        let done: Vec<_> = jobs.iter().filter(|j| j.state == JobState::Done).collect();
        assert_eq!(done.len(), 1, "series {}: {jobs:?}", spec.series_uid);
        let result = db
            .latest_result_for_series(&spec.series_uid)
            .unwrap()
            .expect("a result");
        assert_eq!(result.job_id, done[0].id);
        jobs_with_results.insert(result.job_id);
        for file in ["axial-0.png", "labels.nii.gz"] {
            let path = d.data.join(&result.artifacts_dir).join(file);
            assert!(path.is_file(), "{} missing", path.display());
        }
    }
    // No artifact folder that no result points at (the page could not serve it anyway).
    assert_eq!(result_folders(&d.data), jobs_with_results);
    // The store and the index agree, nothing is left in the drop folder or in staging.
    assert_eq!(c.instances, total_slices);
    assert_eq!(d.store_files().len() as i64, total_slices);
    assert!(d.incoming_files().is_empty(), "{:?}", d.incoming_files());
    assert!(common::files_under(&d.data.join("staging")).is_empty());
}

#[test]
fn a_job_interrupted_at_every_attempt_is_failed_and_the_queue_goes_on() {
    let mut d = Daemon::new(&format!("{CONFIG}[analysis]\nmax_attempts = 2\n"));
    let poison = analysed_spec(200);
    drop_series(&d, "poison", &phantom::slices(&poison));
    for attempt in 1..=2 {
        d.start();
        // Kill it while its analysis runs, as a series that crashes the process would.
        // (The row still says `running` from the attempt before until start-up requeues
        // it: wait for this attempt's claim.)
        wait_until(60, "the job to run", &d, || {
            d.counts().is_some()
                && d.db()
                    .jobs_for_series(&poison.series_uid)
                    .unwrap()
                    .first()
                    .is_some_and(|j| j.state == JobState::Running && j.attempts == attempt)
        });
        d.kill9();
        let jobs = d.db().jobs_for_series(&poison.series_uid).unwrap();
        assert_eq!(jobs[0].attempts, attempt);
    }
    d.start();
    let good = analysed_spec(201);
    drop_series(&d, "good", &phantom::slices(&good));
    d.wait_for(60, "the good series analysed", |c| c.jobs_done == 1);
    let db = d.db();
    let jobs = db.jobs_for_series(&poison.series_uid).unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].state, JobState::Failed);
    let reason = jobs[0].reason.clone().unwrap();
    assert!(reason.contains("interrupted 2 times"), "{reason}");
    let (status, metrics) = d.http_get("/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("lungwatch_jobs_failed{reason=\"interrupted\"} 1"),
        "{metrics}"
    );
    let (_, page) = d.http_get("/");
    assert!(
        page.contains("interrupted 2 times"),
        "status page lacks the reason"
    );
}

/// One absurd header value, set on every slice of an otherwise good series.
fn absurd(
    n: u32,
    tag: Tag,
    vr: VR,
    value: PrimitiveValue,
) -> Vec<dicom_object::FileDicomObject<dicom_object::InMemDicomObject>> {
    // Four slices: the quarantined ones then all fit in the status page's recent list.
    let spec = PhantomSpec {
        slices: 4,
        ..PhantomSpec::small(n)
    };
    let mut objects = phantom::slices(&spec);
    for o in &mut objects {
        o.put(DataElement::new(tag, vr, value.clone()));
    }
    objects
}

#[test]
fn absurd_series_beside_a_good_one_each_get_a_reason_and_the_good_one_is_analysed() {
    let mut d = Daemon::new(CONFIG);
    d.start();
    let ds = |s: &str| PrimitiveValue::from(s);
    let us = |v: u16| PrimitiveValue::from(v);
    // (series, what the status page must say about it)
    let bad = [
        (
            absurd(300, tags::PIXEL_SPACING, VR::DS, ds("0\\0")),
            "Pixel Spacing 0\\0",
        ),
        (
            absurd(301, tags::ROWS, VR::US, us(0)),
            "Bits Allocated declare 0",
        ),
        (
            absurd(302, tags::ROWS, VR::US, us(1)),
            "Bits Allocated declare 256",
        ),
        (
            absurd(303, tags::RESCALE_SLOPE, VR::DS, ds("0")),
            "Rescale Slope 0",
        ),
        (
            absurd(
                304,
                tags::IMAGE_ORIENTATION_PATIENT,
                VR::DS,
                ds("0\\0\\0\\0\\0\\0"),
            ),
            "orthogonal unit vectors",
        ),
        (
            absurd(305, tags::SLICE_THICKNESS, VR::DS, ds("-2")),
            "Slice Thickness -2",
        ),
        (
            absurd(306, tags::PIXEL_SPACING, VR::DS, ds("NaN\\NaN")),
            "Pixel Spacing is missing or not numeric",
        ),
        (
            absurd(307, tags::RESCALE_INTERCEPT, VR::DS, ds("30000")),
            "not Hounsfield units",
        ),
        (
            absurd(308, tags::IMAGE_POSITION_PATIENT, VR::DS, ds("0\\0\\1e12")),
            "beyond",
        ),
        (
            absurd(309, tags::BITS_ALLOCATED, VR::US, us(12)),
            "Bits Allocated declare 24576",
        ),
    ];
    for (i, (objects, _)) in bad.iter().enumerate() {
        drop_series(&d, &format!("bad-{i}"), objects);
    }
    let good = analysed_spec(310);
    let dropped = Instant::now();
    drop_series(&d, "good", &phantom::slices(&good));
    d.wait_for(90, "the good series analysed", |c| c.jobs_done == 1);
    println!(
        "good series analysed {:.1} s after the drop, beside {} absurd ones",
        dropped.elapsed().as_secs_f64(),
        bad.len()
    );
    let c = d.wait_for(30, "every bad series judged", |c| {
        c.series_receiving == 0 && c.jobs_pending == 0 && c.jobs_running == 0
    });
    assert_eq!(c.jobs_failed, 0, "{}", d.log());
    let (status, page) = d.http_get("/");
    assert_eq!(status, 200);
    for (_, reason) in &bad {
        assert!(
            page.contains(reason),
            "the status page does not say {reason:?}"
        );
    }
    let (health, _) = d.http_get("/healthz");
    assert_eq!(health, 200, "bad input is not a health problem of the box");
}
