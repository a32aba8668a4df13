//! Finding candidate files in the drop folder: filesystem events plus full rescans.
//!
//! Events are only a hint that makes ingest prompt on a local disk; the periodic rescan is
//! what guarantees nothing is missed on SMB/NFS shares, where events are often never sent.

use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;

use notify::{RecursiveMode, Watcher};

use super::is_ignored_name;

/// Starts watching `dir` recursively, sending every path an event mentions.
/// Returns `None` (and the reason) when the platform or the share refuses to be watched;
/// the caller then relies on rescans alone.
pub fn watch(
    dir: &Path,
    paths: Sender<PathBuf>,
) -> Result<notify::RecommendedWatcher, notify::Error> {
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            for p in event.paths {
                // The receiver is gone only during shutdown; nothing to do then.
                let _ = paths.send(p);
            }
        }
    })?;
    watcher.watch(dir, RecursiveMode::Recursive)?;
    Ok(watcher)
}

/// Every regular file under `dir` whose name (and whose folders' names) are not ignored.
pub fn scan(dir: &Path, ignore_suffixes: &[String]) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            // A folder removed while we walk is not an error.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && d != dir => continue,
            Err(e) => return Err(e),
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if is_ignored_name(&name, ignore_suffixes) {
                continue;
            }
            match entry.file_type() {
                Ok(t) if t.is_dir() => pending.push(entry.path()),
                Ok(t) if t.is_file() => found.push(entry.path()),
                _ => {}
            }
        }
    }
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_recurses_and_skips_ignored_names() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("sub/.hidden")).unwrap();
        for f in [
            "a.dcm",
            "sub/b.dcm",
            "sub/c.part",
            "sub/.hidden/d.dcm",
            ".e",
        ] {
            std::fs::write(d.path().join(f), b"x").unwrap();
        }
        let found = scan(d.path(), &[".part".to_string()]).unwrap();
        let names: Vec<_> = found
            .iter()
            .map(|p| p.strip_prefix(d.path()).unwrap().to_path_buf())
            .collect();
        assert_eq!(
            names,
            vec![PathBuf::from("a.dcm"), PathBuf::from("sub/b.dcm")]
        );
    }
}
