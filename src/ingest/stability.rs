//! Deciding when a file in the drop folder has finished arriving.
//!
//! A file is ready once its size and modification time have stayed the same for the
//! configured time. Observations come from filesystem events, periodic rescans and a
//! re-check of every tracked file on each tick, so a share that drops events still works.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

#[derive(Debug, Clone)]
struct Entry {
    size: u64,
    modified: Option<SystemTime>,
    unchanged_since: Instant,
    /// Set after a failed attempt: not ready again before this instant.
    retry_at: Option<Instant>,
    failures: u32,
}

#[derive(Debug)]
pub struct StabilityTracker {
    stable_after: Duration,
    entries: HashMap<PathBuf, Entry>,
}

impl StabilityTracker {
    pub fn new(stable_after: Duration) -> Self {
        StabilityTracker {
            stable_after,
            entries: HashMap::new(),
        }
    }

    /// Records the current size and mtime of `path`; a change restarts its quiet clock.
    pub fn observe(&mut self, path: &Path, size: u64, modified: Option<SystemTime>, now: Instant) {
        match self.entries.get_mut(path) {
            Some(e) if e.size == size && e.modified == modified => {}
            Some(e) => {
                e.size = size;
                e.modified = modified;
                e.unchanged_since = now;
            }
            None => {
                self.entries.insert(
                    path.to_path_buf(),
                    Entry {
                        size,
                        modified,
                        unchanged_since: now,
                        retry_at: None,
                        failures: 0,
                    },
                );
            }
        }
    }

    pub fn forget(&mut self, path: &Path) {
        self.entries.remove(path);
    }

    pub fn tracked(&self) -> Vec<PathBuf> {
        self.entries.keys().cloned().collect()
    }

    /// How long `path` has been unchanged, if tracked.
    pub fn unchanged_for(&self, path: &Path, now: Instant) -> Option<Duration> {
        self.entries
            .get(path)
            .map(|e| now.saturating_duration_since(e.unchanged_since))
    }

    /// Files that have been unchanged long enough and are not backing off, oldest first.
    pub fn ready(&self, now: Instant) -> Vec<PathBuf> {
        let mut ready: Vec<(&PathBuf, Instant)> = self
            .entries
            .iter()
            .filter(|(_, e)| {
                now.saturating_duration_since(e.unchanged_since) >= self.stable_after
                    && e.retry_at.is_none_or(|t| now >= t)
            })
            .map(|(p, e)| (p, e.unchanged_since))
            .collect();
        ready.sort_by_key(|(p, t)| (*t, (*p).clone()));
        ready.into_iter().map(|(p, _)| p.clone()).collect()
    }

    /// Puts `path` off after a failed or deferred attempt, backing off up to a minute.
    pub fn defer(&mut self, path: &Path, now: Instant) {
        if let Some(e) = self.entries.get_mut(path) {
            e.failures = e.failures.saturating_add(1);
            let wait = Duration::from_millis(500u64.saturating_mul(1 << e.failures.min(7)));
            e.retry_at = Some(now + wait.min(Duration::from_secs(60)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growing_file_is_not_ready_until_it_stops() {
        let mut t = StabilityTracker::new(Duration::from_secs(3));
        let p = Path::new("/in/a.dcm");
        let t0 = Instant::now();
        t.observe(p, 100, None, t0);
        t.observe(p, 200, None, t0 + Duration::from_secs(2));
        assert!(t.ready(t0 + Duration::from_secs(4)).is_empty());
        t.observe(p, 200, None, t0 + Duration::from_secs(4));
        assert_eq!(t.ready(t0 + Duration::from_secs(5)), vec![p.to_path_buf()]);
    }

    #[test]
    fn deferred_file_waits_and_backs_off() {
        let mut t = StabilityTracker::new(Duration::from_secs(1));
        let p = Path::new("/in/b.dcm");
        let t0 = Instant::now();
        t.observe(p, 1, None, t0);
        let t1 = t0 + Duration::from_secs(2);
        assert_eq!(t.ready(t1).len(), 1);
        t.defer(p, t1);
        assert!(t.ready(t1).is_empty());
        assert_eq!(t.ready(t1 + Duration::from_secs(61)).len(), 1);
    }
}
