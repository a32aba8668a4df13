//! Probes of the machine that several stages need (the daemon's disk-full pause, the
//! status page and `/metrics`), so none of them reaches into another for it.
//!
//! SHA-256 is not here: it is `dicom::header::sha256`, because `dicom` needs it (derived
//! UIDs, `path_component`) and may import nothing of the crate.

use std::path::Path;

/// Free and total bytes of the filesystem holding `path` (statvfs: what an unprivileged
/// writer may still use).
pub fn disk_space(path: &Path) -> Option<(u64, u64)> {
    let s = rustix::fs::statvfs(path).ok()?;
    Some((
        s.f_bavail.saturating_mul(s.f_frsize),
        s.f_blocks.saturating_mul(s.f_frsize),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_space_of_a_real_folder() {
        let (free, total) = disk_space(Path::new("/")).unwrap();
        assert!(total > 0 && free <= total);
        assert!(disk_space(Path::new("/no/such/folder")).is_none());
    }
}
