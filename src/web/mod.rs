//! The local web page: status, studies, patient timelines, a JSON API mirroring them,
//! `/healthz` and Prometheus `/metrics`. Server-rendered HTML, no JavaScript, no external
//! assets.
//!
//! # Contract with the daemon
//!
//! ```text
//! let state = Arc::new(WebState::new(config.paths.incoming.clone(), models));
//! let web = web::start(&config.web, &config.audit, &config.database_path(), &config.paths.data,
//!                      Arc::clone(&state))?;
//! // ... while running: state.set_disk_full(true/false), state.set_models(..),
//! //     state.set_dicom_security(..), state.set_problem("watcher", Some("..")) / None
//! web.stop(); // or drop(web): stops accepting and joins the request threads
//! ```
//!
//! * Call [`start`] after `daemon::prepare` (the database exists and is migrated). It binds
//!   `web.listen` before returning, so a port in use is a start-up error, and it re-checks
//!   [`WebConfig::validate`]: a non-loopback address without authentication is refused.
//! * The server only reads patient data: it opens its own SQLite connection per request
//!   thread ([`Reader::open`]: read-only, WAL, so readers never block the daemon's writer).
//!   Its one write path is the audit trail: one `web-audit` thread with its own
//!   [`AuditWriter`](crate::db::AuditWriter), fed through a channel, appends `audit` rows in
//!   batches (see `audit.rs`).
//! * Authentication (`auth.rs`), login throttling (`throttle.rs`, state kept in
//!   [`WebState`] so a restart does not reset it) and HTTPS (`tls.rs`) are checked in
//!   `server.rs` before any page runs.
//! * Everything the database cannot tell (start time, loaded models, the incoming folder,
//!   the disk-full pause, DICOM TLS in service, other health problems) comes from the
//!   shared [`WebState`], which the daemon updates as it runs.
//! * `web.*` and `audit.*` keys take effect at [`start`]. To apply changed keys on SIGHUP,
//!   `stop()` the handle and `start` again with the new [`WebConfig`] (the port is free once
//!   `stop` returns); the shared [`WebState`] can be passed on unchanged. A certificate or
//!   key replaced on disk under unchanged keys is noticed by
//!   [`WebHandle::tls_files_changed`]: restart then too.
//! * Artifacts are served from `data_dir` joined with `results.artifacts_dir`, and only the
//!   file names of `crate::report` (`labels.nii.gz`, `coronal.png`, `axial-<k>.png`).

mod artifacts;
mod audit;
mod audit_page;
mod auth;
mod chart;
mod format;
mod html;
mod metrics;
mod patients;
mod server;
mod status;
mod studies;
mod throttle;
mod tls;
mod url;

pub use audit_page::day_start;
pub use auth::hash_password;
pub use format::fmt_days;
pub use throttle::LoginCounts;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::{AuditConfig, WebConfig};
#[cfg(doc)]
use crate::db::Reader;
use crate::dimse::DicomSecurity;
use crate::report::ModelRef;

/// Request-handling threads. The pages are a few SQLite reads each; four threads keep a
/// slow client from blocking the others without competing with analysis for the CPU.
pub const THREADS: usize = 4;

/// What the daemon shares with the page: facts the database does not hold.
#[derive(Debug)]
pub struct WebState {
    started: Instant,
    started_at: i64,
    models: RwLock<Vec<ModelRef>>,
    /// Fixed for the daemon's life: `paths.*` take effect at a restart.
    incoming: PathBuf,
    disk_full: AtomicBool,
    dicom: RwLock<DicomSecurity>,
    problems: Mutex<BTreeMap<String, String>>,
    logins: throttle::LoginGuard,
}

impl WebState {
    pub fn new(incoming: PathBuf, models: Vec<ModelRef>) -> Self {
        WebState {
            started: Instant::now(),
            started_at: crate::db::now_secs(),
            models: RwLock::new(models),
            incoming,
            disk_full: AtomicBool::new(false),
            dicom: RwLock::new(DicomSecurity::default()),
            problems: Mutex::new(BTreeMap::new()),
            logins: throttle::LoginGuard::default(),
        }
    }

    /// Ingest is paused because the data disk is full; shown as a banner and in health.
    pub fn set_disk_full(&self, full: bool) {
        self.disk_full.store(full, Ordering::SeqCst);
    }
    pub fn disk_full(&self) -> bool {
        self.disk_full.load(Ordering::SeqCst)
    }
    pub fn set_models(&self, models: Vec<ModelRef>) {
        *self.models.write().unwrap_or_else(|e| e.into_inner()) = models;
    }
    pub fn models(&self) -> Vec<ModelRef> {
        self.models
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
    /// The receiver's and the destinations' DICOM TLS, as in service (set at start and
    /// after each SIGHUP).
    pub fn set_dicom_security(&self, dicom: DicomSecurity) {
        *self.dicom.write().unwrap_or_else(|e| e.into_inner()) = dicom;
    }
    pub fn dicom_security(&self) -> DicomSecurity {
        self.dicom.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
    pub fn incoming(&self) -> &Path {
        &self.incoming
    }
    /// Records (`Some`) or clears (`None`) a health problem under `key`; any recorded
    /// problem makes the status "degraded" and `/healthz` answer 503 with it.
    pub fn set_problem(&self, key: &str, problem: Option<String>) {
        let mut p = self.problems.lock().unwrap_or_else(|e| e.into_inner());
        match problem {
            Some(text) => p.insert(key.to_string(), text),
            None => p.remove(key),
        };
    }
    pub fn problems(&self) -> Vec<String> {
        let p = self.problems.lock().unwrap_or_else(|e| e.into_inner());
        p.values().cloned().collect()
    }
    pub fn uptime_secs(&self) -> u64 {
        self.started.elapsed().as_secs()
    }
    pub fn started_at(&self) -> i64 {
        self.started_at
    }
    /// Failed and throttled logins since the daemon started.
    pub fn login_counts(&self) -> LoginCounts {
        self.logins.counts(Instant::now())
    }
}

/// The running server. [`WebHandle::stop`] (or dropping it) stops accepting requests,
/// waits for the request threads (each finishes the request it is serving) and returns
/// once the listening port is closed, so a new server may bind it at once.
pub struct WebHandle {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// Joined after the request threads: it flushes what they recorded.
    audit_thread: Option<JoinHandle<()>>,
    /// The certificate and key served, with the digest of their bytes at start.
    tls: Option<(tls::TlsFiles, [u8; 32])>,
}

impl WebHandle {
    /// The address actually bound (the real port when `web.listen` asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// True when the page serves HTTPS.
    pub fn is_https(&self) -> bool {
        self.tls.is_some()
    }

    /// True when the certificate or key file now differs from the one being served (a
    /// site replaced it under the same `web.tls_*` keys): restart the page to load it.
    pub fn tls_files_changed(&self) -> bool {
        self.tls
            .as_ref()
            .is_some_and(|(files, digest)| files.changed_on_disk(digest))
    }

    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if self.threads.is_empty() {
            return;
        }
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        // The request threads held the last senders; the writer now drains and stops.
        if let Some(t) = self.audit_thread.take() {
            let _ = t.join();
        }
        // The server is dropped with the last thread, but tiny_http closes its listening
        // socket on its own accept thread, a moment later. Wait for that (briefly), so
        // that once stop() returns the port can be bound again (a restart on SIGHUP).
        let mut probe = self.addr;
        if probe.ip().is_unspecified() {
            probe.set_ip(match probe {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        for _ in 0..40 {
            if std::net::TcpStream::connect_timeout(&probe, Duration::from_millis(100)).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for WebHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Reads and checks `web.tls_cert` / `web.tls_key` as [`start`] would; the server
/// certificate's SHA-256 fingerprint, or None when TLS is not configured.
pub fn check_tls(config: &WebConfig) -> anyhow::Result<Option<String>> {
    Ok(tls::TlsFiles::load(config)?.map(|f| f.fingerprint()))
}

/// Binds `config.listen` and serves the page on [`THREADS`] threads until the handle is
/// stopped or dropped: over HTTPS when `web.tls_cert`/`web.tls_key` are set. `db_path` is
/// the daemon's database; `data_dir` is `paths.data` (result artifact folders are relative
/// to it). Starts the audit writer unless `audit.enabled` is false.
pub fn start(
    config: &WebConfig,
    audit: &AuditConfig,
    db_path: &Path,
    data_dir: &Path,
    state: Arc<WebState>,
) -> anyhow::Result<WebHandle> {
    config.validate()?;
    audit.validate()?;
    let addr = config.listen_addr()?;
    let tls = tls::TlsFiles::load(config)?;
    let server = match &tls {
        None => tiny_http::Server::http(addr),
        Some(files) => {
            let ssl = tiny_http::SslConfig {
                certificate: files.cert.clone(),
                private_key: files.key.clone(),
            };
            // tiny_http's rustls backend panics on some malformed keys (`tls.rs` checks
            // the PEM first); a panic must not take the daemon down on SIGHUP.
            std::panic::catch_unwind(|| tiny_http::Server::https(addr, ssl)).unwrap_or_else(|_| {
                Err("the TLS certificate or key cannot be used (see web.tls_key)".into())
            })
        }
    }
    .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (web.listen): {e}"))?;
    let bound = server
        .server_addr()
        .to_ip()
        .ok_or_else(|| anyhow::anyhow!("web server bound to a non-IP address"))?;
    let (audit_log, audit_thread) = audit::AuditLog::start(audit, db_path, Arc::clone(&state))?;
    let stop = Arc::new(AtomicBool::new(false));
    let shared = Arc::new(server::Shared {
        server,
        config: config.clone(),
        db_path: db_path.to_path_buf(),
        data_dir: data_dir.to_path_buf(),
        state,
        stop: Arc::clone(&stop),
        verifier: auth::Verifier::default(),
        audit: audit_log,
    });
    let mut threads = Vec::with_capacity(THREADS);
    for i in 0..THREADS {
        let shared = Arc::clone(&shared);
        let t = std::thread::Builder::new()
            .name(format!("web-{i}"))
            .spawn(move || server::serve_requests(&shared))?;
        threads.push(t);
    }
    drop(shared);
    let scheme = if tls.is_some() { "https" } else { "http" };
    log::info!(
        "web page on {scheme}://{bound}/{}",
        if config.auth_configured() {
            " (authentication required)"
        } else {
            ""
        }
    );
    if let Some(files) = &tls {
        log::info!(
            "web page certificate SHA-256 fingerprint {}",
            files.fingerprint()
        );
    }
    if let Some(warning) = config.plain_http_warning() {
        log::warn!("{warning}");
    }
    let tls = tls.map(|files| {
        let digest = files.digest();
        (files, digest)
    });
    Ok(WebHandle {
        addr: bound,
        stop,
        threads,
        audit_thread,
        tls,
    })
}
