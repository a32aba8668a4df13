//! Files named on the command line (`inspect`, `analyze`, `validate`, `calibrate`) gathered
//! into series: folders expanded, each file examined as ingest would, grouped by Series
//! Instance UID. No store, no database.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;

use crate::config::Config;
use crate::dicom::InstanceHeader;
use crate::ingest::{self, watcher};

#[derive(Debug, Serialize)]
pub struct RejectedFile {
    pub path: PathBuf,
    pub reason: String,
}

/// Expands folders (recursively, skipping hidden and temporary names) into files.
pub fn expand_paths(paths: &[PathBuf], config: &Config) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            files.extend(watcher::scan(p, &config.watch.ignore_suffixes)?);
        } else {
            files.push(p.clone());
        }
    }
    Ok(files)
}

/// The files under `paths`, examined in parallel and grouped by series, plus the files
/// that are not usable images (with why).
pub fn collect_series(
    paths: &[PathBuf],
    config: &Config,
) -> std::io::Result<(Vec<SeriesFiles>, Vec<RejectedFile>)> {
    let files = expand_paths(paths, config)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(config.decode_threads())
        .build()
        .expect("a small rayon pool can always be built");
    let examined: Vec<(PathBuf, Result<InstanceHeader, String>)> = pool.install(|| {
        files
            .par_iter()
            .map(|p| (p.clone(), examine_path(p)))
            .collect()
    });
    let mut rejected = Vec::new();
    let mut usable = Vec::new();
    for (path, result) in examined {
        match result {
            Ok(h) => usable.push((h, path)),
            Err(reason) => rejected.push(RejectedFile { path, reason }),
        }
    }
    let (groups, orphans) = super::group_by_series(usable);
    for (_, path) in orphans {
        rejected.push(RejectedFile {
            path,
            reason: "no Series Instance UID".into(),
        });
    }
    let series = groups
        .into_iter()
        .map(|(series_uid, members)| {
            let (headers, paths) = members.into_iter().unzip();
            SeriesFiles {
                series_uid,
                headers,
                paths,
            }
        })
        .collect();
    Ok((series, rejected))
}

/// The examined files of one series.
pub struct SeriesFiles {
    pub series_uid: String,
    pub headers: Vec<InstanceHeader>,
    pub paths: Vec<PathBuf>,
}

fn examine_path(path: &Path) -> Result<InstanceHeader, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    ingest::examine(&bytes).map_err(|r| r.to_string())
}
