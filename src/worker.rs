//! The analysis worker: takes pending jobs from SQLite, decodes the stored series,
//! analyses it, writes previews and masks, and stores the result in the transaction that
//! marks the job done. Runs on its own thread with its own database connection.
//!
//! Crash safety: the artifacts are written first, under `results/job-<id>/`; the result
//! row and the job's `done` state commit together. A crash before the commit leaves the
//! job `running`, which start-up turns back to `pending`; the rerun overwrites the same
//! artifact folder, so a job completes once and has one result.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use log::{error, info, warn};

use crate::analysis::{self, Analyzer};
use crate::config::Config;
use crate::db::{self, Database, Job};
use crate::dicom::volume::build_volume;

/// How long an idle worker sleeps before looking for a job again.
const IDLE_POLL: Duration = Duration::from_millis(500);

/// Folder of a job's artifacts, relative to `paths.data`.
pub fn artifacts_dir(job_id: i64) -> PathBuf {
    PathBuf::from("results").join(format!("job-{job_id}"))
}

/// Runs jobs until `shutdown` is set. The job in flight is finished first (a few
/// seconds); a second signal kills the process and the job is requeued at start-up.
pub fn run(
    config: &Config,
    analyzer: &Analyzer,
    shutdown: &AtomicBool,
    paused: &AtomicBool,
) -> anyhow::Result<()> {
    let mut db = Database::open(&config.database_path())?;
    while !shutdown.load(Ordering::SeqCst) {
        if paused.load(Ordering::SeqCst) {
            std::thread::sleep(IDLE_POLL);
            continue;
        }
        let Some(job) = db.claim_job(db::now_secs())? else {
            std::thread::sleep(IDLE_POLL);
            continue;
        };
        let started = Instant::now();
        match process(&mut db, config, analyzer, &job) {
            Ok(true) => info!(
                "job {} (series {}) done in {} ms",
                job.id,
                job.series_uid,
                started.elapsed().as_millis()
            ),
            Ok(false) => warn!(
                "job {} was withdrawn while running; its result was discarded",
                job.id
            ),
            Err(e) => {
                let reason = format!("{e:#}");
                error!(
                    "job {} (series {}) failed: {reason}",
                    job.id, job.series_uid
                );
                db.finish_job(job.id, Some(&reason), db::now_secs())?;
                db.log_event(
                    "error",
                    &format!("analysis of series {} failed: {reason}", job.series_uid),
                    db::now_secs(),
                )?;
            }
        }
    }
    Ok(())
}

/// Analyses one job's series. Ok(false) when the job was withdrawn meanwhile.
fn process(
    db: &mut Database,
    config: &Config,
    analyzer: &Analyzer,
    job: &Job,
) -> anyhow::Result<bool> {
    let started = Instant::now();
    let instances = db.series_instances(&job.series_uid)?;
    anyhow::ensure!(!instances.is_empty(), "the series has no stored instances");
    let store = config.store_dir();
    let paths: Vec<PathBuf> = instances
        .iter()
        .map(|i| store.join(&i.store_path))
        .collect();
    let volume = build_volume(&paths, config.decode_threads())?;
    let decode_ms = started.elapsed().as_millis() as u64;
    let mut analysis = analyzer.analyse(volume, &instances[0].header, decode_ms, true)?;
    let relative = artifacts_dir(job.id);
    let artifacts_started = Instant::now();
    analysis::write_artifacts(&analysis, &config.paths.data.join(&relative))?;
    // The DICOM objects are an extra for PACS viewers: without them (e.g. a source without
    // a Study Instance UID) the analysis still stands, with the reason in the events.
    let objects_started = Instant::now();
    if let Err(e) = write_dicom_objects(
        config,
        &analysis,
        &instances,
        job,
        &config.paths.data.join(&relative),
    ) {
        let message = format!("job {}: DICOM objects not written: {e:#}", job.id);
        warn!("{message}");
        let _ = db.log_event("warn", &message, db::now_secs());
    } else {
        log::debug!(
            "job {}: DICOM objects written in {} ms",
            job.id,
            objects_started.elapsed().as_millis()
        );
    }
    // The stored processing time covers everything from claim to result.
    analysis.report.timings_ms.total += artifacts_started.elapsed().as_millis() as u64;
    let stored = db.finish_job_with_result(
        job.id,
        &analysis.report,
        &relative.to_string_lossy(),
        db::now_secs(),
    )?;
    if !stored {
        remove_quietly(&config.paths.data.join(&relative));
    }
    Ok(stored)
}

/// lungwatch's DICOM objects of a finished analysis (key images, summary, measurement
/// report, segmentation), written to
/// `<artifacts>/dicom/` through temporary names. They are written, not yet sent.
fn write_dicom_objects(
    config: &Config,
    analysis: &analysis::Analysis,
    instances: &[db::StoredInstance],
    job: &Job,
    artifacts: &Path,
) -> anyhow::Result<()> {
    use crate::dicom::read::{Extent, parse};
    use crate::objects::{self, PatientStudy, SourceRef, UidMaker};
    let store = config.store_dir();
    let by_path: std::collections::HashMap<PathBuf, &db::StoredInstance> = instances
        .iter()
        .map(|i| (store.join(&i.store_path), i))
        .collect();
    let sources = analysis
        .volume
        .files
        .iter()
        .map(|f| {
            by_path.get(f).map(|i| SourceRef {
                sop_class_uid: i.header.sop_class_uid.clone().unwrap_or_default(),
                sop_instance_uid: i.sop_instance_uid.clone(),
            })
        })
        .collect::<Option<Vec<_>>>()
        .context("a slice of the volume is not an indexed instance")?;
    let first = parse(
        &std::fs::read(store.join(&instances[0].store_path))?,
        Extent::Header,
    )?;
    let study = PatientStudy::from_object(&first)
        .context("the source has no Study Instance UID: no study to add key images to")?;
    let uids = UidMaker::new(
        &config.dicom.uid_root,
        &format!("{}|job {}", job.series_uid, job.id),
    );
    let dir = artifacts.join("dicom");
    std::fs::create_dir_all(&dir)?;
    let number = instances[0].header.series_number;
    let library: Vec<SourceRef> = instances
        .iter()
        .map(|i| SourceRef {
            sop_class_uid: i.header.sop_class_uid.clone().unwrap_or_default(),
            sop_instance_uid: i.sop_instance_uid.clone(),
        })
        .collect();
    let mut files = objects::key_images_of(analysis, &sources, &study, &uids, number);
    let slices: Vec<(SourceRef, &crate::dicom::InstanceHeader)> = analysis
        .volume
        .files
        .iter()
        .zip(&sources)
        .map(|(f, s)| (s.clone(), &by_path[f].header))
        .collect();
    // A source without Frame of Reference UID (some exports leave it empty) gets one
    // derived from its series, so the segmentation is still a valid SEG; it overlays by
    // its references to the source slices and their exact positions.
    let frame_of_reference = objects::frame_of_reference_uid(&first).unwrap_or_else(|| {
        UidMaker::new(&config.dicom.uid_root, &job.series_uid).uid("frame-of-reference")
    });
    match objects::segmentation_of(
        analysis,
        &slices,
        &study,
        &frame_of_reference,
        &uids,
        number,
        db::now_secs(),
    ) {
        Some(seg) => files.push(seg),
        None => warn!(
            "job {}: no segmentation object: the source lacks slice geometry",
            job.id
        ),
    }
    files.push(objects::measurement_report_of(
        &analysis.report,
        &library,
        &study,
        &uids,
        number,
        db::now_secs(),
    ));
    for (name, bytes) in files {
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, &bytes)?;
        std::fs::rename(&tmp, dir.join(&name))?;
    }
    Ok(())
}

fn remove_quietly(dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir) {
        warn!("cannot remove {}: {e}", dir.display());
    }
}

/// Starts the worker thread. Errors that stop it (the database is gone) are logged.
pub fn spawn(
    config: Arc<Config>,
    analyzer: Arc<Analyzer>,
    shutdown: Arc<AtomicBool>,
    paused: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("worker".into())
        .spawn(move || {
            if let Err(e) = run(&config, &analyzer, &shutdown, &paused) {
                error!("the analysis worker stopped: {e:#}");
            }
        })
}
