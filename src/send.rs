//! `lungwatch send STUDY_UID [NAME]`: a study's DICOM objects queued again, for every
//! destination or one, and sent at once from this process.
//!
//! The rows go through the outbox like the worker's, so a `serve` running beside this
//! command never sends the same row twice: whichever process claims a row sends it, and
//! a row that fails here keeps its back-off for `serve` to retry.

use anyhow::Context;

use crate::config::{Config, FOLDER_DESTINATION};
use crate::db::{self, Database, Delivery, ReadQueries};
use crate::dimse::TlsConfigs;
use crate::outbox;

/// Queues and sends the objects of the newest result of each series of `study_uid`.
/// Returns every row queued, in its state after the attempt.
pub fn send_study(
    config: &Config,
    study_uid: &str,
    only: Option<&str>,
) -> anyhow::Result<Vec<Delivery>> {
    if let Some(name) = only {
        let known = config.destinations.iter().any(|d| d.name == name)
            || (name == FOLDER_DESTINATION && config.outbox.folder.is_some());
        if !known {
            let mut names: Vec<&str> = config
                .destinations
                .iter()
                .map(|d| d.name.as_str())
                .collect();
            if config.outbox.folder.is_some() {
                names.push(FOLDER_DESTINATION);
            }
            anyhow::bail!(
                "no destination {name:?} in the config (configured: {})",
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            );
        }
    } else if config.destinations.is_empty() && config.outbox.folder.is_none() {
        anyhow::bail!("no destination is configured ([[destinations]] or outbox.folder)");
    }
    let path = config.database_path();
    anyhow::ensure!(
        path.exists(),
        "no database at {}: nothing has been analysed with this config",
        path.display()
    );
    let mut db = Database::open(&path)
        .with_context(|| format!("cannot open database {}", path.display()))?;
    let results = db.study_results(study_uid)?;
    anyhow::ensure!(
        !results.is_empty(),
        "no analysed series in study {study_uid}"
    );
    let now = db::now_secs();
    let mut ids = Vec::new();
    for result in &results {
        let objects = outbox::objects_in(&config.paths.data, &result.artifacts_dir)?;
        let deliveries = outbox::deliveries_for(config, &objects, only);
        ids.extend(db.queue_deliveries(result.job_id, &deliveries, now)?);
    }
    anyhow::ensure!(
        !ids.is_empty(),
        "nothing to send: the study's results have no DICOM objects that the destination(s) take"
    );
    let batch = db.claim_deliveries(&ids)?;
    // One association per destination: each TLS configuration is built once, here.
    outbox::deliver(&db, config, &TlsConfigs::clients_only(), &batch)?;
    Ok(db.outbox_rows(&ids)?)
}
