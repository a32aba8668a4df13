//! Durable, atomic placement of files in the managed store and the quarantine.
//!
//! A file is written to the staging folder (on the data filesystem), fsynced, renamed into
//! place and its directory fsynced. Only after that, and after the index transaction, is the
//! original removed from the drop folder. A crash at any point leaves either the original
//! (which is simply ingested again) or a complete, durable copy, never half a file.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::dicom::header::{hex, sha256};

/// Writes `bytes` to `dest` atomically and durably via `staging`.
///
/// If `dest` already holds exactly these bytes (a crash after the rename, before indexing),
/// nothing is written.
pub fn place_atomically(bytes: &[u8], staging: &Path, dest: &Path) -> std::io::Result<()> {
    if let Ok(existing) = fs::read(dest)
        && existing == bytes
    {
        return Ok(());
    }
    let parent = dest
        .parent()
        .ok_or_else(|| std::io::Error::other("destination has no parent folder"))?;
    fs::create_dir_all(parent)?;
    fs::create_dir_all(staging)?;
    let tmp = staging.join(format!(
        "{}-{}.partial",
        std::process::id(),
        hex(&sha256(dest.as_os_str().as_encoded_bytes())[..8])
    ));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, dest)?;
    sync_dir(parent)
}

/// Makes a rename or removal in `dir` durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Removes leftovers of copies interrupted by a crash. Their originals are still in the
/// drop folder, because originals are only removed after the copy is placed and indexed.
pub fn clear_staging(staging: &Path) -> std::io::Result<usize> {
    let mut removed = 0;
    match fs::read_dir(staging) {
        Ok(entries) => {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_file()) {
                    fs::remove_file(entry.path())?;
                    removed += 1;
                }
            }
            Ok(removed)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e),
    }
}

/// Where a quarantined file goes: one folder per reason, named after its content so a file
/// quarantined twice (crash between move and record) lands on the same name.
pub fn quarantine_path(
    quarantine_dir: &Path,
    reason_code: &str,
    original: &Path,
    digest: &[u8; 32],
) -> PathBuf {
    let name = original
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "unnamed".into());
    quarantine_dir.join(reason_code).join(format!(
        "{}-{}",
        hex(&digest[..6]),
        crate::dicom::header::path_component(&name)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placing_twice_is_idempotent_and_leaves_no_staging_files() {
        let dir = tempfile::tempdir().unwrap();
        let staging = dir.path().join("staging");
        let dest = dir.path().join("store/a/b.dcm");
        place_atomically(b"hello", &staging, &dest).unwrap();
        place_atomically(b"hello", &staging, &dest).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"hello");
        assert_eq!(fs::read_dir(&staging).unwrap().count(), 0);
    }

    #[test]
    fn staging_leftovers_are_cleared() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("x.partial"), b"half").unwrap();
        assert_eq!(clear_staging(dir.path()).unwrap(), 1);
        assert_eq!(clear_staging(&dir.path().join("missing")).unwrap(), 0);
    }
}
