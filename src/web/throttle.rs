//! Login throttling: after [`MAX_FAILURES`] failed logins from one address within
//! [`WINDOW`], that address is answered 429 for a lock-out that doubles with each repeat.
//! Held in `WebState`, so a restart of the page (SIGHUP) does not reset it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub const MAX_FAILURES: usize = 5;
pub const WINDOW: Duration = Duration::from_secs(60);
/// The first lock-out; each further one doubles, up to [`MAX_LOCKOUT`].
pub const FIRST_LOCKOUT: Duration = Duration::from_secs(60);
pub const MAX_LOCKOUT: Duration = Duration::from_secs(3600);
/// An address with no failure for this long is forgotten (and its lock-outs start over).
const FORGET_AFTER: Duration = Duration::from_secs(24 * 3600);
/// Addresses tracked at most; beyond, the oldest quiet ones are dropped first.
const MAX_ADDRESSES: usize = 10_000;

#[derive(Debug, Default)]
struct Address {
    /// Failures within the last `WINDOW`.
    recent: Vec<Instant>,
    lockouts: u32,
    locked_until: Option<Instant>,
    last_failure: Option<Instant>,
}

#[derive(Debug, Default)]
pub struct LoginGuard {
    addresses: Mutex<HashMap<IpAddr, Address>>,
    failed_total: AtomicU64,
    throttled_total: AtomicU64,
}

/// Counters for the status page and `/metrics`.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct LoginCounts {
    /// Failed logins (wrong credentials) since the daemon started.
    pub failed_logins: u64,
    /// Requests answered 429 since the daemon started.
    pub throttled_requests: u64,
    /// Addresses locked out right now.
    pub locked_addresses: u64,
}

fn lockout(n: u32) -> Duration {
    FIRST_LOCKOUT
        .saturating_mul(1u32 << n.min(16))
        .min(MAX_LOCKOUT)
}

impl LoginGuard {
    /// How long `ip` must still wait, if it is locked out. Counts the refusal.
    pub fn locked(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let map = self.addresses.lock().unwrap_or_else(|e| e.into_inner());
        let left = map
            .get(&ip)?
            .locked_until
            .and_then(|until| until.checked_duration_since(now))
            .filter(|d| !d.is_zero())?;
        self.throttled_total.fetch_add(1, Ordering::Relaxed);
        Some(left)
    }

    /// Records a failed login from `ip`; returns the lock-out it starts, if any.
    pub fn failed(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        self.failed_total.fetch_add(1, Ordering::Relaxed);
        let mut map = self.addresses.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_ADDRESSES && !map.contains_key(&ip) {
            map.retain(|_, a| {
                a.last_failure
                    .is_some_and(|t| now.duration_since(t) < FORGET_AFTER)
            });
            if map.len() >= MAX_ADDRESSES {
                // Under a flood from many addresses keep the locked ones, drop the others.
                map.retain(|_, a| a.locked_until.is_some_and(|u| u > now));
            }
        }
        let a = map.entry(ip).or_default();
        if a.last_failure
            .is_some_and(|t| now.duration_since(t) >= FORGET_AFTER)
        {
            *a = Address::default();
        }
        a.last_failure = Some(now);
        a.recent.retain(|t| now.duration_since(*t) < WINDOW);
        a.recent.push(now);
        if a.recent.len() < MAX_FAILURES {
            return None;
        }
        let d = lockout(a.lockouts);
        a.lockouts += 1;
        a.locked_until = Some(now + d);
        a.recent.clear();
        Some(d)
    }

    pub fn counts(&self, now: Instant) -> LoginCounts {
        let map = self.addresses.lock().unwrap_or_else(|e| e.into_inner());
        LoginCounts {
            failed_logins: self.failed_total.load(Ordering::Relaxed),
            throttled_requests: self.throttled_total.load(Ordering::Relaxed),
            locked_addresses: map
                .values()
                .filter(|a| a.locked_until.is_some_and(|u| u > now))
                .count() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_failures_in_a_minute_lock_out_with_a_growing_interval() {
        let g = LoginGuard::default();
        let ip: IpAddr = "10.0.0.7".parse().unwrap();
        let other: IpAddr = "10.0.0.8".parse().unwrap();
        let t0 = Instant::now();
        for i in 0..4 {
            assert_eq!(g.failed(ip, t0 + Duration::from_secs(i)), None);
        }
        assert!(g.locked(ip, t0 + Duration::from_secs(4)).is_none());
        assert_eq!(
            g.failed(ip, t0 + Duration::from_secs(5)),
            Some(FIRST_LOCKOUT)
        );
        assert!(g.locked(ip, t0 + Duration::from_secs(6)).is_some());
        assert!(g.locked(other, t0 + Duration::from_secs(6)).is_none());
        assert_eq!(g.counts(t0 + Duration::from_secs(6)).locked_addresses, 1);
        // Expired; the next five failures lock it out twice as long.
        let t1 = t0 + Duration::from_secs(70);
        assert!(g.locked(ip, t1).is_none());
        for i in 0..4 {
            assert_eq!(g.failed(ip, t1 + Duration::from_secs(i)), None);
        }
        assert_eq!(
            g.failed(ip, t1 + Duration::from_secs(4)),
            Some(FIRST_LOCKOUT * 2)
        );
        let c = g.counts(t1);
        assert_eq!(c.failed_logins, 10);
        assert_eq!(c.throttled_requests, 1);
        assert_eq!(lockout(30), MAX_LOCKOUT);
    }

    #[test]
    fn failures_spread_over_more_than_a_minute_do_not_lock_out() {
        let g = LoginGuard::default();
        let ip: IpAddr = "::1".parse().unwrap();
        let t0 = Instant::now();
        for i in 0..20 {
            assert_eq!(g.failed(ip, t0 + Duration::from_secs(i * 16)), None);
        }
    }
}
