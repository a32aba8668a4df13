//! The outbox: a stage after results. Every DICOM object an analysis wrote, for every
//! destination that takes its kind (and the folder outbox), is a row in SQLite, queued in
//! the transaction that stores the result. One thread sends what is due: one association
//! per destination for a batch of objects, each row marked sent only once the destination
//! confirmed it, failures retried with a doubling wait (`outbox.retry_*`), refusals kept
//! with their reason.
//!
//! What is "due" survives restarts: rows are only `sending` while this process holds them,
//! and start-up makes them due again. So nothing is lost when the destination is down or
//! lungwatch is killed mid-send, and what a destination confirmed is not sent again.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use log::{error, info, warn};

use crate::config::{Config, FOLDER_DESTINATION, ObjectKind};
use crate::db::{self, Database, Delivery, NewDelivery};
use crate::dicom::header::path_component;
use crate::dicom::read::{Extent, parse};
use crate::dimse::TlsConfigs;
use crate::dimse::scu::{self, StoreOutcome, StoreRequest};

/// How often an idle outbox looks for due rows.
const IDLE_POLL: Duration = Duration::from_millis(500);
/// After a database error the outbox waits this long.
const ERROR_BACKOFF: Duration = Duration::from_secs(5);
/// Rows taken at once: one association carries at most this many objects.
const BATCH: i64 = 64;
/// The folder outbox writes through this sub-folder (same filesystem), then renames.
const FOLDER_STAGING: &str = ".lungwatch-partial";

/// The config the worker and the outbox route by, replaced on SIGHUP so that a new or
/// changed destination takes effect without a restart, and the destinations' DICOM TLS
/// configurations in service (which SIGHUP reloads in place).
#[derive(Clone)]
pub struct Routes {
    config: Arc<RwLock<Arc<Config>>>,
    tls: Arc<TlsConfigs>,
}

impl Routes {
    pub fn new(config: Arc<Config>, tls: Arc<TlsConfigs>) -> Self {
        Routes {
            config: Arc::new(RwLock::new(config)),
            tls,
        }
    }

    pub fn update(&self, config: Arc<Config>) {
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = config;
    }

    pub fn current(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn tls(&self) -> &TlsConfigs {
        &self.tls
    }
}

/// A DICOM object written for an analysis, as found in its artifacts folder.
#[derive(Debug, Clone, PartialEq)]
pub struct WrittenObject {
    /// Relative to `paths.data`.
    pub path: String,
    pub kind: ObjectKind,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub study_uid: Option<String>,
}

/// The objects in `<data>/<artifacts_dir>/dicom/`, by file name. Temporary files (names
/// starting with a dot) and anything that is not one of lungwatch's kinds are left out.
pub fn objects_in(data: &Path, artifacts_dir: &str) -> anyhow::Result<Vec<WrittenObject>> {
    let dir = data.join(artifacts_dir).join("dicom");
    let names: Vec<String> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.') && n.ends_with(".dcm"))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    let files = names
        .into_iter()
        .map(|name| {
            let bytes = std::fs::read(dir.join(&name))
                .with_context(|| format!("cannot read {}", dir.join(&name).display()))?;
            Ok((name, bytes))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    describe_objects(artifacts_dir, &files)
}

/// The objects among `files` (file name, Part 10 bytes) of `<artifacts_dir>/dicom/`, in
/// file-name order: the worker's just written, or `objects_in`'s read back.
pub fn describe_objects(
    artifacts_dir: &str,
    files: &[(String, Vec<u8>)],
) -> anyhow::Result<Vec<WrittenObject>> {
    let relative = Path::new(artifacts_dir).join("dicom");
    let mut sorted: Vec<&(String, Vec<u8>)> = files.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = Vec::with_capacity(sorted.len());
    for (name, bytes) in sorted {
        let object = parse(bytes, Extent::Header)
            .with_context(|| format!("{} is not readable DICOM", relative.join(name).display()))?;
        let header = crate::dicom::InstanceHeader::from_object(&object);
        let (Some(class), Some(instance)) = (header.sop_class_uid, header.sop_instance_uid) else {
            continue;
        };
        let Some(kind) = crate::objects::kind_of(&class) else {
            continue;
        };
        out.push(WrittenObject {
            path: relative.join(name).to_string_lossy().into_owned(),
            kind,
            sop_class_uid: class,
            sop_instance_uid: instance,
            study_uid: header.study_instance_uid,
        });
    }
    Ok(out)
}

/// The deliveries of `objects`: one per object and destination that takes its kind, and
/// one per object for the folder outbox when there is one. `only` restricts them to one
/// destination (by name; `folder` names the folder outbox).
pub fn deliveries_for(
    config: &Config,
    objects: &[WrittenObject],
    only: Option<&str>,
) -> Vec<NewDelivery> {
    let mut routes: Vec<(&str, &[ObjectKind])> = config
        .destinations
        .iter()
        .map(|d| (d.name.as_str(), d.objects.as_slice()))
        .collect();
    if config.outbox.folder.is_some() {
        routes.push((FOLDER_DESTINATION, config.outbox.folder_objects.as_slice()));
    }
    routes
        .into_iter()
        .filter(|(name, _)| only.is_none_or(|o| o == *name))
        .flat_map(|(name, kinds)| {
            objects
                .iter()
                .filter(|o| kinds.contains(&o.kind))
                .map(move |o| NewDelivery {
                    destination: name.to_string(),
                    path: o.path.clone(),
                    kind: o.kind,
                    sop_class_uid: o.sop_class_uid.clone(),
                    sop_instance_uid: o.sop_instance_uid.clone(),
                    study_uid: o.study_uid.clone(),
                })
        })
        .collect()
}

/// How many rows of a batch ended which way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub sent: usize,
    pub retried: usize,
    pub failed: usize,
}

/// Sends `batch` (rows this process claimed) and records each row's outcome. Rows are
/// grouped by destination, one association each, over TLS with `tls`'s configuration for
/// a destination with `tls`.
pub fn deliver(
    db: &Database,
    config: &Config,
    tls: &TlsConfigs,
    batch: &[Delivery],
) -> anyhow::Result<Tally> {
    let mut tally = Tally::default();
    let mut destinations: Vec<&str> = batch.iter().map(|d| d.destination.as_str()).collect();
    destinations.sort_unstable();
    destinations.dedup();
    for name in destinations {
        let rows: Vec<&Delivery> = batch.iter().filter(|d| d.destination == name).collect();
        let outcomes: Vec<StoreOutcome> = if name == FOLDER_DESTINATION {
            match &config.outbox.folder {
                Some(folder) => rows
                    .iter()
                    .map(|d| copy_to_folder(folder, &config.paths.data, d))
                    .collect(),
                None => refuse_all(
                    &rows,
                    "the folder outbox (outbox.folder) is no longer configured",
                ),
            }
        } else {
            match config.destinations.iter().find(|d| d.name == name) {
                Some(destination) => {
                    let requests: Vec<StoreRequest> = rows
                        .iter()
                        .map(|d| StoreRequest {
                            sop_class_uid: d.sop_class_uid.clone(),
                            sop_instance_uid: d.sop_instance_uid.clone(),
                            path: config.paths.data.join(&d.path),
                        })
                        .collect();
                    scu::store(&config.dicom, destination, tls, &requests)
                }
                None => refuse_all(
                    &rows,
                    &format!("destination {name:?} is no longer configured ([[destinations]])"),
                ),
            }
        };
        let mut retried: Option<(usize, String, u64)> = None;
        for (row, outcome) in rows.iter().zip(outcomes) {
            let wait = record(db, config, row, &outcome)?;
            match outcome {
                StoreOutcome::Stored => tally.sent += 1,
                StoreOutcome::Retry(why) => {
                    tally.retried += 1;
                    let r = retried.get_or_insert((0, why, wait));
                    r.0 += 1;
                }
                StoreOutcome::Refused(_) => tally.failed += 1,
            }
        }
        // One line per destination and attempt, not one per object: a PACS down for a
        // night would otherwise fill the log.
        if let Some((n, why, wait)) = retried {
            warn!("{n} object(s) not sent to {name}: {why}; next try in {wait} s");
        }
    }
    Ok(tally)
}

fn refuse_all(rows: &[&Delivery], why: &str) -> Vec<StoreOutcome> {
    rows.iter()
        .map(|_| StoreOutcome::Refused(why.to_string()))
        .collect()
}

/// Records a row's outcome; returns the wait before its next attempt (0 unless retried).
fn record(
    db: &Database,
    config: &Config,
    row: &Delivery,
    outcome: &StoreOutcome,
) -> rusqlite::Result<u64> {
    let now = db::now_secs();
    match outcome {
        StoreOutcome::Stored => db.delivery_sent(row.id, now).map(|()| 0),
        StoreOutcome::Retry(why) => {
            let wait = config.outbox.retry_after(row.attempts as u32 + 1).as_secs();
            db.delivery_retry(row.id, why, now + wait as i64)
                .map(|()| wait)
        }
        StoreOutcome::Refused(why) => {
            error!(
                "{} not sent to {}: {why}",
                row.sop_instance_uid, row.destination
            );
            db.delivery_failed(row.id, why).map(|()| 0)
        }
    }
}

/// Copies one object into `<folder>/<study>/<SOP Instance UID>.dcm`, durably (written
/// beside, fsynced, renamed, the folder fsynced), as the store does.
fn copy_to_folder(folder: &Path, data: &Path, row: &Delivery) -> StoreOutcome {
    let bytes = match std::fs::read(data.join(&row.path)) {
        Ok(bytes) => bytes,
        Err(e) => return StoreOutcome::Refused(format!("cannot read {}: {e}", row.path)),
    };
    let study = path_component(row.study_uid.as_deref().unwrap_or("no-study"));
    let dest: PathBuf = folder
        .join(study)
        .join(format!("{}.dcm", path_component(&row.sop_instance_uid)));
    match crate::ingest::store::place_atomically(&bytes, &folder.join(FOLDER_STAGING), &dest) {
        Ok(()) => StoreOutcome::Stored,
        // A missing mount or a full disk may pass: try again later.
        Err(e) => StoreOutcome::Retry(format!("cannot write {}: {e}", dest.display())),
    }
}

/// Sends due rows until `stop` is set. The batch in flight is finished first (each object
/// is bounded by the association's timeouts).
fn run(db_path: &Path, routes: &Routes, stop: &AtomicBool) -> anyhow::Result<()> {
    let mut db = Database::open(db_path)?;
    while !stop.load(Ordering::SeqCst) {
        let batch = match db.claim_due_deliveries(db::now_secs(), BATCH) {
            Ok(batch) => batch,
            Err(e) => {
                error!("cannot read the outbox: {e}; retrying");
                std::thread::sleep(ERROR_BACKOFF);
                continue;
            }
        };
        if batch.is_empty() {
            std::thread::sleep(IDLE_POLL);
            continue;
        }
        let config = routes.current();
        match deliver(&db, &config, routes.tls(), &batch) {
            Ok(t) if t.sent > 0 => info!(
                "outbox: {} object(s) sent, {} to retry, {} failed",
                t.sent, t.retried, t.failed
            ),
            Ok(_) => {}
            Err(e) => {
                // Rows whose outcome was not recorded stay `sending` until the next start.
                error!("cannot record deliveries: {e:#}");
                std::thread::sleep(ERROR_BACKOFF);
            }
        }
    }
    Ok(())
}

/// Starts the outbox thread.
pub fn spawn(
    db_path: PathBuf,
    routes: Routes,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("outbox".into())
        .spawn(move || {
            if let Err(e) = run(&db_path, &routes, &stop) {
                error!("the outbox stopped: {e:#}");
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        Config::from_toml(
            &format!("[paths]\nincoming = \"/a\"\ndata = \"/b\"\n{extra}"),
            Path::new("t.toml"),
        )
        .unwrap()
    }

    fn object(kind: ObjectKind, name: &str) -> WrittenObject {
        WrittenObject {
            path: format!("results/job-1/dicom/{name}"),
            kind,
            sop_class_uid: "1.2".into(),
            sop_instance_uid: format!("2.25.{}", name.len()),
            study_uid: Some("1.2.3".into()),
        }
    }

    #[test]
    fn each_destination_gets_the_kinds_it_takes() {
        let c = config(
            "[[destinations]]\nname = \"pacs\"\nae_title = \"PACS\"\nhost = \"h\"\nport = 104\n\
             [[destinations]]\nname = \"viewer\"\nae_title = \"V\"\nhost = \"h\"\nport = 105\nobjects = [\"sc\"]\n\
             [outbox]\nfolder = \"/out\"\nfolder_objects = [\"sr\"]\n",
        );
        let objects = [
            object(ObjectKind::Seg, "seg.dcm"),
            object(ObjectKind::Sr, "sr.dcm"),
            object(ObjectKind::Sc, "sc-0.dcm"),
        ];
        let all = deliveries_for(&c, &objects, None);
        let pairs: Vec<(&str, ObjectKind)> = all
            .iter()
            .map(|d| (d.destination.as_str(), d.kind))
            .collect();
        assert_eq!(
            pairs,
            vec![
                ("pacs", ObjectKind::Seg),
                ("pacs", ObjectKind::Sr),
                ("pacs", ObjectKind::Sc),
                ("viewer", ObjectKind::Sc),
                ("folder", ObjectKind::Sr),
            ]
        );
        assert_eq!(deliveries_for(&c, &objects, Some("viewer")).len(), 1);
        assert!(deliveries_for(&c, &objects, Some("nobody")).is_empty());
        assert!(deliveries_for(&config(""), &objects, None).is_empty());
    }

    #[test]
    fn the_folder_outbox_copies_durably_and_a_missing_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(data.join("results/job-1/dicom")).unwrap();
        std::fs::write(data.join("results/job-1/dicom/sr.dcm"), b"DICM bytes").unwrap();
        let row = Delivery {
            id: 1,
            job_id: 1,
            destination: FOLDER_DESTINATION.into(),
            path: "results/job-1/dicom/sr.dcm".into(),
            kind: "sr".into(),
            sop_class_uid: "1.2".into(),
            sop_instance_uid: "2.25.7".into(),
            study_uid: Some("1.2.3".into()),
            state: db::DeliveryState::Sending,
            attempts: 0,
            last_error: None,
            next_attempt_at: 0,
            created_at: 0,
            sent_at: None,
        };
        let folder = dir.path().join("out");
        assert_eq!(copy_to_folder(&folder, &data, &row), StoreOutcome::Stored);
        assert_eq!(
            std::fs::read(folder.join("1.2.3/2.25.7.dcm")).unwrap(),
            b"DICM bytes"
        );
        assert_eq!(
            std::fs::read_dir(folder.join(FOLDER_STAGING))
                .unwrap()
                .count(),
            0
        );
        let gone = Delivery {
            path: "results/job-1/dicom/none.dcm".into(),
            ..row
        };
        assert!(matches!(
            copy_to_folder(&folder, &data, &gone),
            StoreOutcome::Refused(_)
        ));
    }
}
