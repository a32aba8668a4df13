//! `lungwatch serve`: wires the watcher, the stability tracker, ingest and series
//! completion into one loop, and stops cleanly on SIGTERM/SIGINT.
//!
//! Ingest runs on a single thread on purpose: each file is a few milliseconds of work, and a
//! single writer keeps the crash-safety argument simple (see `ingest`). Shutdown is checked
//! between files, and every file operation is atomic, so stopping never leaves a file
//! half-moved.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context;
use log::{error, info, warn};

use crate::analysis::Analyser;
use crate::analysis::models::ModelSet;
use crate::config::{Config, DicomConfig};
use crate::db::{self, Database, EventLevel, ReadQueries};
use crate::dicom::InstanceHeader;
use crate::dimse;
use crate::ingest::stability::StabilityTracker;
use crate::ingest::{self, Dirs, Outcome, store, watcher};
use crate::outbox;
use crate::series;
use crate::web::{self, WebState};
use crate::worker;

/// How often the loop wakes when nothing happens.
const TICK: Duration = Duration::from_millis(250);
/// Ingest and analysis pause while the data filesystem has less free space than this:
/// files wait in the drop folder (nothing is lost) and the page shows why.
const MIN_FREE_BYTES: u64 = 1 << 30;
/// How often free space is checked.
const DISK_CHECK: Duration = Duration::from_secs(5);

/// Signals the serve loop reacts to.
pub struct Signals {
    /// SIGTERM / SIGINT.
    pub shutdown: Arc<AtomicBool>,
    /// SIGHUP: reload the config file.
    pub reload: Arc<AtomicBool>,
}

/// Creates the state folders and opens the database, after recovering from any crash.
pub fn prepare(config: &Config) -> anyhow::Result<(Database, Dirs)> {
    let dirs = Dirs::new(
        config.store_dir(),
        config.quarantine_dir(),
        config.staging_dir(),
    );
    for d in [
        &config.paths.incoming,
        &dirs.store,
        &dirs.quarantine,
        &dirs.staging,
    ] {
        std::fs::create_dir_all(d)
            .with_context(|| format!("cannot create folder {}", d.display()))?;
    }
    let db_path = config.database_path();
    let mut db = Database::open(&db_path)
        .with_context(|| format!("cannot open database {}", db_path.display()))?;
    let cleared = store::clear_staging(&dirs.staging).context("cannot clear staging folder")?;
    if cleared > 0 {
        info!("removed {cleared} partial copies left by an interrupted run");
    }
    let (requeued, given_up) =
        db.requeue_running_jobs(config.analysis.max_attempts, db::now_secs())?;
    if requeued > 0 {
        info!("{requeued} jobs were running when lungwatch stopped; they are pending again");
    }
    if given_up > 0 {
        db.report(
            EventLevel::Error,
            &format!(
                "{given_up} jobs were interrupted {} times (lungwatch was killed or crashed \
                 while analysing them each time); they are failed and not retried",
                config.analysis.max_attempts
            ),
        );
    }
    match db.requeue_interrupted_deliveries(db::now_secs())? {
        0 => {}
        n => info!("{n} objects were being sent when lungwatch stopped; they are due again"),
    }
    match worker::sweep_orphan_artifacts(&db, &config.paths.data) {
        Ok(0) => {}
        Ok(n) => info!("removed {n} result folders that no stored result points at"),
        Err(e) => warn!("cannot sweep the results folder: {e:#}"),
    }
    Ok((db, dirs))
}

/// Runs the daemon until SIGTERM/SIGINT. `config_path` is re-read on SIGHUP; a config
/// that fails to load or validate is logged and the running one kept.
pub fn serve(config: Config, config_path: Option<PathBuf>, signals: Signals) -> anyhow::Result<()> {
    let mut daemon = Running::start(config, config_path)?;
    while !signals.shutdown.load(Ordering::SeqCst) {
        if signals.reload.swap(false, Ordering::SeqCst) {
            daemon.reload();
        }
        daemon.tick(&signals.shutdown);
    }
    daemon.stop();
    Ok(())
}

/// Loads the models and verifies their checksums, logging what is in service.
fn load_models(models_dir: &std::path::Path) -> anyhow::Result<ModelSet> {
    let loaded = Instant::now();
    let models = ModelSet::load(models_dir)
        .with_context(|| format!("cannot load the models from {}", models_dir.display()))?;
    for m in models.references() {
        info!(
            "model {} {} loaded (sha256 {})",
            m.name,
            m.version,
            &m.sha256[..12]
        );
    }
    info!(
        "models loaded from {} in {} ms",
        models_dir.display(),
        loaded.elapsed().as_millis()
    );
    Ok(models)
}

/// A thread and the flag that asks it to stop.
struct Stoppable {
    thread: std::thread::JoinHandle<()>,
    stop: Arc<AtomicBool>,
}

impl Stoppable {
    /// Asks the thread to stop and waits for it; false when it had panicked.
    fn stop(self) -> bool {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().is_ok()
    }
}

/// Everything `serve` runs: started in `start` in dependency order, polled by `tick`,
/// stopped by `stop` in the reverse order.
struct Running {
    config: Arc<Config>,
    config_path: Option<PathBuf>,
    db: Database,
    dirs: Dirs,
    state: Arc<WebState>,
    web: Option<web::WebHandle>,
    models_in_service: ModelsInService,
    analysers: Arc<worker::AnalyserSlot>,
    tls: Arc<dimse::TlsConfigs>,
    routes: outbox::Routes,
    worker: Stoppable,
    outbox: Stoppable,
    scp: Option<dimse::ScpHandle>,
    /// Set while the data filesystem is full; ingest, analysis and the receiver wait.
    paused: Arc<AtomicBool>,
    /// Paths the watcher saw change.
    events: mpsc::Receiver<PathBuf>,
    /// Kept alive for its events; None when the folder cannot be watched (rescans only).
    _watcher: Option<notify::RecommendedWatcher>,
    tracker: StabilityTracker,
    next_rescan: Instant,
    next_disk_check: Instant,
}

impl Running {
    fn start(config: Config, config_path: Option<PathBuf>) -> anyhow::Result<Self> {
        let (db, dirs) = prepare(&config)?;
        // Models load (and their checksums are verified) before anything is taken from the
        // drop folder: a broken model set stops start-up with the reason.
        let models_dir = config.models_dir();
        let models = load_models(&models_dir)?;
        let state = Arc::new(WebState::new(
            config.paths.incoming.clone(),
            models.references(),
        ));
        let web = web::start(
            &config.web,
            &config.audit,
            &config.database_path(),
            &config.paths.data,
            state.clone(),
        )
        .context("cannot start the web page")?;
        let models_in_service = ModelsInService::of(&models_dir)?;
        let analysers = Arc::new(worker::AnalyserSlot::new(Arc::new(Analyser::new(
            Arc::new(models),
            config.decode_threads(),
        ))));
        let config = Arc::new(config);
        // The receiver's TLS files must load (it would accept nothing); a destination's are
        // tried again at each of its associations.
        let (tls, tls_problems) = dimse::TlsConfigs::load(&config.dicom, &config.destinations)
            .context("cannot start the DICOM receiver")?;
        for problem in tls_problems {
            warn!("{problem}");
        }
        let tls = Arc::new(tls);
        let routes = outbox::Routes::new(config.clone(), tls.clone());
        let paused = Arc::new(AtomicBool::new(false));
        let worker_stop = Arc::new(AtomicBool::new(false));
        let worker = Stoppable {
            thread: worker::spawn(
                config.clone(),
                routes.clone(),
                analysers.clone(),
                worker_stop.clone(),
                paused.clone(),
            )
            .context("cannot start the analysis worker")?,
            stop: worker_stop,
        };
        let outbox_stop = Arc::new(AtomicBool::new(false));
        let outbox = Stoppable {
            thread: outbox::spawn(config.database_path(), routes.clone(), outbox_stop.clone())
                .context("cannot start the outbox")?,
            stop: outbox_stop,
        };
        let scp = start_dicom(&config, &dirs, &paused, &tls)?;
        let bound = scp.as_ref().map(|s| s.local_addr());
        state.set_dicom_security(tls.describe(&config.dicom, &config.destinations, bound));
        let (tx, events) = mpsc::channel::<PathBuf>();
        let watcher = match watcher::watch(&config.paths.incoming, tx) {
            Ok(w) => Some(w),
            Err(e) => {
                warn!(
                    "cannot watch {} for events ({e}); relying on rescans every {} s",
                    config.paths.incoming.display(),
                    config.watch.rescan_secs
                );
                None
            }
        };
        info!(
            "lungwatch {} watching {} (rescan every {} s, files stable after {} s, series quiet after {} s)",
            env!("CARGO_PKG_VERSION"),
            config.paths.incoming.display(),
            config.watch.rescan_secs,
            config.watch.stable_secs,
            config.series.quiet_secs
        );
        Ok(Running {
            tracker: StabilityTracker::new(config.stable_after()),
            config,
            config_path,
            db,
            dirs,
            state,
            web: Some(web),
            models_in_service,
            analysers,
            tls,
            routes,
            worker,
            outbox,
            scp,
            paused,
            events,
            _watcher: watcher,
            next_rescan: Instant::now(),
            next_disk_check: Instant::now(),
        })
    }

    /// SIGHUP: the config file, the page's settings, DICOM TLS files and the models.
    fn reload(&mut self) {
        reload(
            &mut self.config,
            self.config_path.as_deref(),
            &mut self.web,
            &self.state,
            &self.tls,
            &self.db,
        );
        let c = &self.config;
        let bound = self.scp.as_ref().map(|s| s.local_addr());
        self.state
            .set_dicom_security(self.tls.describe(&c.dicom, &c.destinations, bound));
        reload_models(
            c,
            &mut self.models_in_service,
            &self.analysers,
            &self.state,
            &self.db,
        );
        self.tracker = StabilityTracker::new(c.stable_after());
        self.routes.update(c.clone());
    }

    /// One turn of the loop: health and free space every `DISK_CHECK`, then, unless the
    /// disk is full, the drop folder; then a sleep of up to `TICK` that an event ends.
    fn tick(&mut self, shutdown: &AtomicBool) {
        let now = Instant::now();
        if now >= self.next_disk_check {
            self.check_health();
            self.next_disk_check = now + DISK_CHECK;
        }
        if self.paused.load(Ordering::SeqCst) {
            std::thread::sleep(TICK);
            return;
        }
        self.poll_incoming(now, shutdown);
        // Sleep, but wake at once for an event.
        if let Ok(p) = self.events.recv_timeout(TICK) {
            observe(&mut self.tracker, &self.config, &p, Instant::now());
        }
    }

    /// The worker's and the outbox's health, and the disk-full pause.
    fn check_health(&mut self) {
        let config = &self.config;
        check_worker(&self.db, config, &self.worker.thread, &self.state);
        self.state.set_problem(
            "outbox",
            self.outbox.thread.is_finished().then(|| {
                "the outbox has stopped: no results will be sent to destinations until \
                 lungwatch is restarted (see the log)"
                    .to_string()
            }),
        );
        let full = disk_full(&config.paths.data);
        if full == self.paused.load(Ordering::SeqCst) {
            return;
        }
        if full {
            self.db.report(
                EventLevel::Error,
                &format!(
                    "less than {} MiB free on {}: ingest and analysis paused; files wait in the drop folder",
                    MIN_FREE_BYTES >> 20,
                    config.paths.data.display()
                ),
            );
        } else {
            info!(
                "free space is back on {}: ingest and analysis resume",
                config.paths.data.display()
            );
        }
        self.paused.store(full, Ordering::SeqCst);
        self.state.set_disk_full(full);
    }

    /// Sees what changed in the drop folder, ingests the files that are stable, and
    /// completes the series that went quiet.
    fn poll_incoming(&mut self, now: Instant, shutdown: &AtomicBool) {
        let config = &self.config;
        let tracker = &mut self.tracker;
        // Paths from events; the rescan below catches whatever events miss.
        while let Ok(p) = self.events.try_recv() {
            observe(tracker, config, &p, now);
        }
        if now >= self.next_rescan {
            match watcher::scan(&config.paths.incoming, &config.watch.ignore_suffixes) {
                Ok(found) => found.iter().for_each(|p| observe(tracker, config, p, now)),
                Err(e) => self.db.report(
                    EventLevel::Error,
                    &format!("cannot scan {}: {e}", config.paths.incoming.display()),
                ),
            }
            self.next_rescan = now + config.rescan_every();
        }
        // Re-check every tracked file so growth is seen without events.
        for p in tracker.tracked() {
            observe(tracker, config, &p, now);
        }
        for path in tracker.ready(Instant::now()) {
            if shutdown.load(Ordering::SeqCst) {
                break;
            }
            ingest_ready(&mut self.db, &self.dirs, config, tracker, &path);
        }
        if let Err(e) = complete_quiet_series(&mut self.db, config) {
            self.db
                .report(EventLevel::Error, &format!("series completion failed: {e}"));
        }
    }

    /// Stops the edges first (no new work), then the worker, then the outbox (a result the
    /// worker stored while stopping is queued, and sent next time), then the page.
    fn stop(self) {
        info!("shutdown requested; ingest stopped between files, nothing is half-moved");
        if let Some(scp) = self.scp {
            scp.stop();
            info!("DICOM receiver stopped");
        }
        if !self.worker.stop() {
            error!("the analysis worker panicked");
        }
        info!("analysis worker stopped");
        if !self.outbox.stop() {
            error!("the outbox panicked");
        }
        info!("outbox stopped");
        if let Some(handle) = self.web {
            handle.stop();
        }
    }
}

/// Health of the analysis: the worker thread must be alive, and no job may have been
/// running for longer than `analysis.stall_secs`. Either problem makes `/healthz` answer
/// 503 with the reason, and the status page show it.
fn check_worker(
    db: &Database,
    config: &Config,
    worker: &std::thread::JoinHandle<()>,
    state: &WebState,
) {
    let dead = worker.is_finished().then(|| {
        "the analysis worker has stopped: no series will be analysed until lungwatch is \
         restarted (see the log)"
            .to_string()
    });
    state.set_problem("worker", dead);
    let limit = config.analysis.stall_secs as i64;
    let now = db::now_secs();
    let stalled = match db.jobs_running_since_before(now - limit) {
        Ok(jobs) => jobs.first().map(|(id, series, started)| {
            format!(
                "job {id} (series {series}) has been running for {} min, longer than \
                 analysis.stall_secs ({limit} s): the analysis may be stuck",
                (now - started) / 60
            )
        }),
        Err(e) => Some(format!("cannot read the job queue: {e}")),
    };
    state.set_problem("stalled-job", stalled);
}

/// The DICOM receiver, when `dicom.listen` is set: another edge of ingest, sharing the
/// ingest lock in `dirs` and the disk-full pause; over TLS with `tls`'s server
/// configuration when it has one.
fn start_dicom(
    config: &Config,
    dirs: &Dirs,
    paused: &Arc<AtomicBool>,
    tls: &Arc<dimse::TlsConfigs>,
) -> anyhow::Result<Option<dimse::ScpHandle>> {
    if config.dicom.listen.is_none() {
        return Ok(None);
    }
    let context = dimse::ScpContext {
        db_path: config.database_path(),
        dirs: dirs.clone(),
        paused: paused.clone(),
        tls: tls.clone(),
    };
    let handle = dimse::start(&config.dicom, context).context("cannot start the DICOM receiver")?;
    if let Some(fingerprint) = tls.server_fingerprint() {
        info!(
            "DICOM TLS only (TLS 1.2/1.3), certificate SHA-256 fingerprint {fingerprint}; {}",
            match &config.dicom.tls_ca {
                Some(ca) => format!("client certificates signed by {} required", ca.display()),
                None => "no client certificate asked for (dicom.tls_ca is not set)".into(),
            }
        );
    }
    info!(
        "DICOM node {} listening on {}",
        config.dicom.ae_title,
        handle.local_addr()
    );
    Ok(Some(handle))
}

fn disk_full(data: &std::path::Path) -> bool {
    crate::sys::disk_space(data).is_some_and(|(free, _)| free < MIN_FREE_BYTES)
}

/// SIGHUP: load the config again. Watch, series and selection settings apply at once and
/// the web page restarts with its new settings; DICOM TLS files that changed are loaded for
/// the next association (one that fails keeps what is in service); `paths.*`, the rest of
/// `dicom.*` and `decode.*` need a restart (they are logged as such); the models are
/// `reload_models`'s. A bad file changes nothing.
fn reload(
    config: &mut Arc<Config>,
    path: Option<&std::path::Path>,
    web_handle: &mut Option<web::WebHandle>,
    state: &Arc<WebState>,
    tls: &dimse::TlsConfigs,
    db: &Database,
) {
    let Some(path) = path else {
        info!("SIGHUP: running on the embedded default config; nothing to reload");
        return;
    };
    let new = match Config::load(path) {
        Ok(new) => new,
        Err(e) => {
            db.report(
                EventLevel::Error,
                &format!("SIGHUP: config not reloaded, keeping the running one: {e}"),
            );
            return;
        }
    };
    if new.paths.incoming != config.paths.incoming || new.paths.data != config.paths.data {
        warn!("SIGHUP: paths.* changed; they take effect at the next restart");
    }
    // A certificate replaced on disk under the same web.tls_* keys is a change too.
    let tls_files_changed = web_handle.as_ref().is_some_and(|h| h.tls_files_changed());
    if new.web != config.web || new.audit != config.audit || tls_files_changed {
        // The same port may be kept: the old server lets go of it before the new binds.
        let start = |web_config, audit_config| {
            web::start(
                web_config,
                audit_config,
                &config.database_path(),
                &config.paths.data,
                state.clone(),
            )
        };
        if let Err(e) = new.web.validate() {
            db.report(
                EventLevel::Error,
                &format!("SIGHUP: config not reloaded, keeping the running one: {e:#}"),
            );
            return;
        }
        if let Some(old) = web_handle.take() {
            old.stop();
        }
        match start(&new.web, &new.audit) {
            Ok(handle) => {
                info!(
                    "SIGHUP: web page restarted on {}://{}",
                    if handle.is_https() { "https" } else { "http" },
                    handle.local_addr()
                );
                *web_handle = Some(handle);
            }
            Err(e) => {
                db.report(EventLevel::Error,
                    &format!(
                        "SIGHUP: new web settings failed ({e:#}); restarting the page with the old ones"
                    ),
                );
                match start(&config.web, &config.audit) {
                    Ok(handle) => *web_handle = Some(handle),
                    Err(e) => db.report(EventLevel::Error, &format!("the web page is down: {e:#}")),
                }
                return;
            }
        }
    }
    for outcome in tls.reload(&new.dicom, &new.destinations) {
        match outcome {
            dimse::Reloaded::Loaded(line) => info!("SIGHUP: {line}"),
            dimse::Reloaded::Failed(line) => {
                db.report(EventLevel::Error, &format!("SIGHUP: {line}"))
            }
            dimse::Reloaded::NeedsRestart(line) => warn!("SIGHUP: {line}"),
        }
    }
    // The TLS files' keys apply now (above); the rest of dicom.* at the next restart.
    let dicom = DicomConfig {
        tls_cert: new.dicom.tls_cert.clone(),
        tls_key: new.dicom.tls_key.clone(),
        tls_ca: new.dicom.tls_ca.clone(),
        ..config.dicom.clone()
    };
    if new.dicom != dicom {
        warn!("SIGHUP: dicom.* changed; it takes effect at the next restart");
    }
    let mut merged = new;
    merged.paths = config.paths.clone();
    merged.dicom = dicom;
    *config = Arc::new(merged);
    info!("SIGHUP: config reloaded from {}", path.display());
}

/// Which models folder is in service, and the manifest it was loaded from: a SIGHUP that
/// finds either changed (`models.dir` pointed elsewhere, a manifest replaced in place)
/// loads the models again.
struct ModelsInService {
    dir: PathBuf,
    manifest_sha256: [u8; 32],
}

impl ModelsInService {
    fn of(dir: &std::path::Path) -> anyhow::Result<Self> {
        let manifest = dir.join("manifest.toml");
        let bytes = std::fs::read(&manifest)
            .with_context(|| format!("cannot read {}", manifest.display()))?;
        Ok(ModelsInService {
            dir: dir.to_path_buf(),
            manifest_sha256: crate::dicom::header::sha256(&bytes),
        })
    }
}

/// SIGHUP: when the models folder or its manifest changed, loads the models (checksums
/// verified, as at start-up) and puts them in service for the next job; a job running now
/// finishes on the old ones. A folder that fails to load is reported and the running
/// models are kept.
fn reload_models(
    config: &Config,
    in_service: &mut ModelsInService,
    analysers: &worker::AnalyserSlot,
    state: &WebState,
    db: &Database,
) {
    let dir = config.models_dir();
    let now = match ModelsInService::of(&dir) {
        Ok(now) => now,
        Err(e) => {
            db.report(
                EventLevel::Error,
                &format!("SIGHUP: models not reloaded, keeping those in service: {e:#}"),
            );
            return;
        }
    };
    if now.dir == in_service.dir && now.manifest_sha256 == in_service.manifest_sha256 {
        return;
    }
    let loaded = Instant::now();
    match ModelSet::load(&dir) {
        Ok(models) => {
            let names: Vec<String> = models
                .references()
                .iter()
                .map(|m| format!("{} {}", m.name, m.version))
                .collect();
            state.set_models(models.references());
            // decode.threads keeps its start-up value: it changes at a restart.
            let next = analysers.current().with_models(Arc::new(models));
            analysers.replace(Arc::new(next));
            *in_service = now;
            info!(
                "SIGHUP: models reloaded from {} in {} ms ({}); the next job uses them",
                dir.display(),
                loaded.elapsed().as_millis(),
                names.join(", ")
            );
        }
        Err(e) => db.report(
            EventLevel::Error,
            &format!(
                "SIGHUP: models in {} not loaded, keeping those in service: {e}",
                dir.display()
            ),
        ),
    }
}

fn observe(tracker: &mut StabilityTracker, config: &Config, path: &std::path::Path, now: Instant) {
    let ignored = path
        .file_name()
        .map(|n| ingest::is_ignored_name(&n.to_string_lossy(), &config.watch.ignore_suffixes))
        .unwrap_or(true);
    if ignored {
        return;
    }
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => tracker.observe(path, m.len(), m.modified().ok(), now),
        Ok(_) => {}
        Err(_) => tracker.forget(path),
    }
}

fn ingest_ready(
    db: &mut Database,
    dirs: &Dirs,
    config: &Config,
    tracker: &mut StabilityTracker,
    path: &std::path::Path,
) {
    let now = Instant::now();
    let settled = tracker
        .unchanged_for(path, now)
        .is_some_and(|d| d >= config.truncated_grace());
    match ingest::ingest_file(db, dirs, path, settled) {
        Ok(Outcome::Stored {
            sop_instance_uid,
            series_uid,
        }) => {
            log::debug!(
                "stored {} as {sop_instance_uid} in series {series_uid}",
                path.display()
            );
            tracker.forget(path);
        }
        Ok(Outcome::Duplicate { sop_instance_uid }) => {
            info!(
                "{}: duplicate of stored instance {sop_instance_uid}; removed",
                path.display()
            );
            tracker.forget(path);
        }
        Ok(Outcome::Quarantined(r)) => {
            db.report(
                EventLevel::Warn,
                &format!("quarantined {}: {r}", path.display()),
            );
            tracker.forget(path);
        }
        Ok(Outcome::Deferred(r)) => {
            log::debug!(
                "{}: {r}; waiting in case it is still arriving",
                path.display()
            );
            tracker.defer(path, now);
        }
        Ok(Outcome::Vanished) => tracker.forget(path),
        Err(e) => {
            db.report(
                EventLevel::Error,
                &format!("cannot ingest {}: {e}; will retry", path.display()),
            );
            tracker.defer(path, now);
        }
    }
}

/// Judges every series that has been quiet for the configured period.
///
/// A series whose index rows cannot be read (a header stored by a newer lungwatch, a
/// damaged row) is skipped with that reason; it never stops the series after it.
pub fn complete_quiet_series(db: &mut Database, config: &Config) -> anyhow::Result<()> {
    let now = db::now_secs();
    let cutoff = now - config.series.quiet_secs as i64;
    for series_uid in db.quiet_series(cutoff)? {
        let (instances, verdict) = match db.series_instances(&series_uid) {
            Ok(instances) => {
                let headers: Vec<&InstanceHeader> = instances.iter().map(|i| &i.header).collect();
                let verdict = series::select(&headers, &config.selection);
                (instances.len(), verdict)
            }
            Err(e) => {
                db.report(
                    EventLevel::Error,
                    &format!("series {series_uid}: its index rows cannot be read: {e}"),
                );
                (0, Err(format!("its index rows cannot be read: {e}")))
            }
        };
        if db.complete_series(
            &series_uid,
            verdict.as_ref().err().map(String::as_str),
            cutoff,
            now,
        )? {
            match verdict {
                Ok(()) => {
                    info!("series {series_uid} complete ({instances} slices): queued for analysis")
                }
                Err(reason) => {
                    info!("series {series_uid} complete ({instances} instances): skipped: {reason}")
                }
            }
        }
    }
    Ok(())
}
