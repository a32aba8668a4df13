//! The analysis worker: takes pending jobs from SQLite, decodes the stored series,
//! analyses it, writes previews and masks, and stores the result in the transaction that
//! marks the job done. Runs on its own thread with its own database connection.
//!
//! Crash safety: the artifacts are written (and fsynced) first, under
//! `results/job-<id>/`; the result row and the job's `done` state commit together. A
//! crash before the commit leaves the job `running`, which start-up turns back to
//! `pending` (or fails, after `analysis.max_attempts` starts); the rerun overwrites the
//! same artifact folder, so a job completes once and has one result. Start-up removes
//! artifact folders that no result points at.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use log::{error, info, warn};

use crate::analysis::Analyser;
use crate::config::Config;
use crate::db::{self, Database, EventLevel, FailureKind, Job, ReadQueries};
use crate::outbox::{self, Routes};
use crate::pipeline::{self, Failure};

/// How long an idle worker sleeps before looking for a job again.
const IDLE_POLL: Duration = Duration::from_millis(500);

/// Folder of a job's artifacts, relative to `paths.data`.
pub fn artifacts_dir(job_id: i64) -> PathBuf {
    PathBuf::from("results").join(format!("job-{job_id}"))
}

/// After a database error the worker waits this long before trying again.
const ERROR_BACKOFF: Duration = Duration::from_secs(5);

/// Runs jobs until `shutdown` is set. The job in flight is finished first (a few
/// seconds); a second signal kills the process and the job is requeued at start-up.
///
/// Nothing about one job stops the loop: failures and panics are recorded on the job,
/// and database errors (a locked or briefly unavailable file) are retried.
pub fn run(
    config: &Config,
    routes: &Routes,
    analysers: &AnalyserSlot,
    shutdown: &AtomicBool,
    paused: &AtomicBool,
) -> anyhow::Result<()> {
    let mut db = Database::open(&config.database_path())?;
    while !shutdown.load(Ordering::SeqCst) {
        if paused.load(Ordering::SeqCst) {
            std::thread::sleep(IDLE_POLL);
            continue;
        }
        let job = match db.claim_job(db::now_secs()) {
            Ok(Some(job)) => job,
            Ok(None) => {
                std::thread::sleep(IDLE_POLL);
                continue;
            }
            Err(e) => {
                error!("cannot take a job from the queue: {e}; retrying");
                std::thread::sleep(ERROR_BACKOFF);
                continue;
            }
        };
        let started = Instant::now();
        let outcome = process(&mut db, config, routes, &analysers.current(), &job);
        if let Err(e) = record(&db, &job, outcome, started) {
            // The job stays `running`; start-up requeues it (and counts the attempt).
            error!("cannot record the end of job {}: {e}", job.id);
            std::thread::sleep(ERROR_BACKOFF);
        }
    }
    Ok(())
}

/// What became of one job.
enum Outcome {
    Done,
    /// A late instance reopened the series meanwhile; its result was discarded.
    Withdrawn,
    Failed(Failure),
}

fn record(db: &Database, job: &Job, outcome: Outcome, started: Instant) -> rusqlite::Result<()> {
    match outcome {
        Outcome::Done => info!(
            "job {} (series {}) done in {} ms",
            job.id,
            job.series_uid,
            started.elapsed().as_millis()
        ),
        Outcome::Withdrawn => warn!(
            "job {} was withdrawn while running; its result was discarded",
            job.id
        ),
        Outcome::Failed(failure) => {
            error!(
                "job {} (series {}) failed ({}): {}",
                job.id,
                job.series_uid,
                failure.kind.as_str(),
                failure.message
            );
            db.finish_job(
                job.id,
                Some((failure.kind, &failure.message)),
                db::now_secs(),
            )?;
            db.log_event(
                EventLevel::Error,
                &format!(
                    "analysis of series {} failed: {}",
                    job.series_uid, failure.message
                ),
                db::now_secs(),
            )?;
        }
    }
    Ok(())
}

/// Analyses one job's series and stores its result.
fn process(
    db: &mut Database,
    config: &Config,
    routes: &Routes,
    analyser: &Analyser,
    job: &Job,
) -> Outcome {
    let started = Instant::now();
    let instances = match db.series_instances(&job.series_uid) {
        Ok(instances) if !instances.is_empty() => instances,
        Ok(_) => {
            return failed(
                FailureKind::UnusableSeries,
                "the series has no stored instances",
            );
        }
        Err(e) => {
            return failed(
                FailureKind::UnusableSeries,
                format!("the series' index rows cannot be read: {e}"),
            );
        }
    };
    let store = config.store_dir();
    let paths: Vec<PathBuf> = instances
        .iter()
        .map(|i| store.join(&i.store_path))
        .collect();
    let mut analysis = match pipeline::analyse_files(
        &paths,
        &instances[0].header,
        analyser,
        config.decode_threads(),
        true,
    ) {
        Ok(analysis) => analysis,
        Err(failure) => return Outcome::Failed(failure),
    };
    let relative = artifacts_dir(job.id);
    let folder = config.paths.data.join(&relative);
    if let Err(failure) = pipeline::write_artifacts(&analysis, &folder) {
        return Outcome::Failed(failure);
    }
    // The DICOM objects are an extra for PACS viewers: without them (e.g. a source without
    // a Study Instance UID) the analysis still stands, with the reason in the events.
    let objects_started = Instant::now();
    // Described from the bytes just written, not read back from disk.
    let written = write_dicom_objects(config, &analysis, &instances, job, &folder)
        .and_then(|files| outbox::describe_objects(&relative.to_string_lossy(), &files));
    let deliveries = match written {
        Ok(objects) => {
            log::debug!(
                "job {}: {} DICOM objects written in {} ms",
                job.id,
                objects.len(),
                objects_started.elapsed().as_millis()
            );
            // Routed by the config of this moment: a destination added by SIGHUP counts.
            outbox::deliveries_for(&routes.current(), &objects, None)
        }
        Err(e) => {
            let message = format!("job {}: DICOM objects not written: {e:#}", job.id);
            db.report(EventLevel::Warn, &message);
            Vec::new()
        }
    };
    // The stored processing time covers everything from claim to result.
    analysis.report.timings_ms.total = analysis
        .report
        .timings_ms
        .total
        .max(started.elapsed().as_millis() as u64);
    match db.finish_job_with_result(
        job.id,
        &analysis.report,
        &relative.to_string_lossy(),
        &deliveries,
        db::now_secs(),
    ) {
        Ok(true) => Outcome::Done,
        Ok(false) => {
            remove_quietly(&folder);
            Outcome::Withdrawn
        }
        Err(e) => failed(
            FailureKind::ArtifactError,
            format!("cannot store the result: {e}"),
        ),
    }
}

fn failed(kind: FailureKind, message: impl Into<String>) -> Outcome {
    Outcome::Failed(Failure {
        kind,
        message: message.into(),
    })
}

/// Removes artifact folders that no result points at: left by a crash between writing
/// them and committing the result, or by a job that failed or was withdrawn. The page
/// serves artifacts only through result rows, so these are never shown; this keeps the
/// disk from filling with them. Returns how many were removed.
pub fn sweep_orphan_artifacts(db: &Database, data: &Path) -> anyhow::Result<usize> {
    let results = data.join("results");
    let entries = match std::fs::read_dir(&results) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    let kept = db.job_ids_with_results()?;
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(id) = name
            .to_str()
            .and_then(|n| n.strip_prefix("job-"))
            .and_then(|n| n.parse::<i64>().ok())
        else {
            continue;
        };
        if !kept.contains(&id) {
            remove_quietly(&entry.path());
            removed += 1;
        }
    }
    Ok(removed)
}

/// lungwatch's DICOM objects of a finished analysis (key images, summary, measurement
/// report, segmentation), written to
/// `<artifacts>/dicom/` through temporary names. They are written, not yet sent.
/// Returns them as (file name, bytes).
fn write_dicom_objects(
    config: &Config,
    analysis: &crate::analysis::Analysis,
    instances: &[db::StoredInstance],
    job: &Job,
    artifacts: &Path,
) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
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
    // Durable before the result row commits: the outbox will send them from here.
    for (name, bytes) in &files {
        let tmp = dir.join(format!(".{name}.tmp"));
        {
            let mut f = std::fs::File::create(&tmp)?;
            std::io::Write::write_all(&mut f, bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, dir.join(name))?;
    }
    crate::ingest::store::sync_dir(&dir)?;
    Ok(files)
}

fn remove_quietly(dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir) {
        warn!("cannot remove {}: {e}", dir.display());
    }
}

/// The analyser (models and thread pool) new jobs run on. SIGHUP may replace it; a job
/// keeps the one it started with to its end, so no result mixes two model versions.
pub struct AnalyserSlot(std::sync::RwLock<Arc<Analyser>>);

impl AnalyserSlot {
    pub fn new(analyser: Arc<Analyser>) -> Self {
        AnalyserSlot(std::sync::RwLock::new(analyser))
    }

    pub fn current(&self) -> Arc<Analyser> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn replace(&self, analyser: Arc<Analyser>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = analyser;
    }
}

/// Starts the worker thread. Errors that stop it (the database is gone) are logged.
pub fn spawn(
    config: Arc<Config>,
    routes: Routes,
    analyser: Arc<AnalyserSlot>,
    shutdown: Arc<AtomicBool>,
    paused: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("worker".into())
        .spawn(move || {
            if let Err(e) = run(&config, &routes, &analyser, &shutdown, &paused) {
                error!("the analysis worker stopped: {e:#}");
            }
        })
}
