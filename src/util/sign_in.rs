//! Backoff on failed sign-ins (sans-IO: time comes in as `now`), keyed by
//! account and source address: a source guessing an agent's token is slowed
//! down exponentially, while the agent signing in from anywhere else is never
//! locked out by it (an attacker must not be able to keep a real agent off
//! their console by failing on purpose).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Failures from one source for one account before it must wait.
const FREE_FAILURES: u32 = 5;
/// The first wait; each further failure doubles it.
const FIRST_WAIT: Duration = Duration::from_secs(1);
/// The longest wait.
const MAX_WAIT: Duration = Duration::from_secs(300);
/// (account, source) pairs tracked at most; beyond, those not waiting are dropped.
const MAX_TRACKED: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    wait_until: Option<Instant>,
}

/// Failed sign-ins by (account, source).
#[derive(Debug, Default)]
pub struct SignInGuard {
    records: HashMap<(String, IpAddr), Record>,
}

impl SignInGuard {
    /// `Err(wait)` when `source` must wait before trying `account` again (the
    /// token is not even checked: the answer would leak nothing, and the
    /// attempt costs nothing).
    pub fn check(&self, account: &str, source: IpAddr, now: Instant) -> Result<(), Duration> {
        match self.records.get(&(account.to_string(), source)) {
            Some(Record {
                wait_until: Some(until),
                ..
            }) if *until > now => Err(*until - now),
            _ => Ok(()),
        }
    }

    /// A failed attempt; returns the wait it now imposes, if any.
    pub fn failed(&mut self, account: &str, source: IpAddr, now: Instant) -> Option<Duration> {
        if self.records.len() >= MAX_TRACKED {
            self.records
                .retain(|_, r| r.wait_until.is_some_and(|u| u > now));
            if self.records.len() >= MAX_TRACKED {
                self.records.clear();
            }
        }
        let record = self
            .records
            .entry((account.chars().take(128).collect(), source))
            .or_insert(Record {
                failures: 0,
                wait_until: None,
            });
        record.failures = record.failures.saturating_add(1);
        if record.failures < FREE_FAILURES {
            return None;
        }
        let doublings = (record.failures - FREE_FAILURES).min(16);
        let wait = FIRST_WAIT.saturating_mul(1 << doublings).min(MAX_WAIT);
        record.wait_until = Some(now + wait);
        Some(wait)
    }

    /// A successful sign-in clears that source's record for the account.
    pub fn succeeded(&mut self, account: &str, source: IpAddr) {
        self.records.remove(&(account.to_string(), source));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn a_guessing_source_waits_longer_after_each_failure() {
        let t = Instant::now();
        let mut g = SignInGuard::default();
        let bad = ip("203.0.113.9");
        for _ in 0..4 {
            assert_eq!(g.failed("ann", bad, t), None);
            assert!(g.check("ann", bad, t).is_ok());
        }
        assert_eq!(g.failed("ann", bad, t), Some(Duration::from_secs(1)));
        assert!(g.check("ann", bad, t).is_err());
        assert!(g.check("ann", bad, t + Duration::from_secs(1)).is_ok());
        let t2 = t + Duration::from_secs(1);
        assert_eq!(g.failed("ann", bad, t2), Some(Duration::from_secs(2)));
        assert_eq!(g.failed("ann", bad, t2), Some(Duration::from_secs(4)));
        for _ in 0..30 {
            g.failed("ann", bad, t2);
        }
        assert_eq!(g.check("ann", bad, t2), Err(MAX_WAIT));
    }

    #[test]
    fn the_real_agent_elsewhere_is_never_locked_out() {
        let t = Instant::now();
        let mut g = SignInGuard::default();
        for _ in 0..50 {
            g.failed("ann", ip("203.0.113.9"), t);
        }
        assert!(
            g.check("ann", ip("198.51.100.7"), t).is_ok(),
            "another source"
        );
        assert!(
            g.check("bob", ip("203.0.113.9"), t).is_ok(),
            "another account"
        );
    }

    #[test]
    fn success_clears_the_record() {
        let t = Instant::now();
        let mut g = SignInGuard::default();
        let me = ip("198.51.100.7");
        for _ in 0..4 {
            g.failed("ann", me, t);
        }
        g.succeeded("ann", me);
        assert_eq!(g.failed("ann", me, t), None, "counting starts again");
    }

    #[test]
    fn the_table_stays_bounded() {
        let t = Instant::now();
        let mut g = SignInGuard::default();
        for i in 0..(MAX_TRACKED as u32 + 500) {
            g.failed(&format!("agent-{i}"), ip("203.0.113.9"), t);
        }
        assert!(g.records.len() <= MAX_TRACKED);
    }
}
