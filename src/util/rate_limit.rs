//! A per-source token bucket (sans-IO: time comes in as `now`), for admission
//! at the edge (HTTP connections, SIP INVITEs).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// Buckets kept at most; the fullest (idle) ones are dropped first.
const MAX_TRACKED_IPS: usize = 10_000;

/// Per-IP token buckets (sans-IO: time comes in as `now`).
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: HashMap<IpAddr, (f64, Instant)>,
}

impl RateLimiter {
    /// `rate` new connections per second sustained, `burst` at once.
    pub fn new(rate: f64, burst: u32) -> Self {
        RateLimiter {
            rate: rate.max(0.0),
            burst: f64::from(burst.max(1)),
            buckets: HashMap::new(),
        }
    }

    /// Whether `ip` may open one more connection at `now` (and counts it if so).
    /// A rate of 0 switches the limit off.
    pub fn admit(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        if self.buckets.len() >= MAX_TRACKED_IPS && !self.buckets.contains_key(&ip) {
            self.forget_full(now);
        }
        let (rate, burst) = (self.rate, self.burst);
        let (tokens, last) = self.buckets.entry(ip).or_insert((burst, now));
        *tokens = (*tokens + now.saturating_duration_since(*last).as_secs_f64() * rate).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Drops buckets that have refilled completely (they behave like new ones).
    fn forget_full(&mut self, now: Instant) {
        let (rate, burst) = (self.rate, self.burst);
        self.buckets.retain(|_, (tokens, last)| {
            *tokens + now.saturating_duration_since(*last).as_secs_f64() * rate < burst
        });
        if self.buckets.len() >= MAX_TRACKED_IPS {
            self.buckets.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_is_admitted_then_the_rate_refills() {
        let t = Instant::now();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let mut l = RateLimiter::new(2.0, 3);
        assert_eq!((0..5).filter(|_| l.admit(ip, t)).count(), 3);
        assert!(l.admit(other, t), "another address has its own bucket");
        assert!(!l.admit(ip, t + Duration::from_millis(400)));
        assert!(
            l.admit(ip, t + Duration::from_millis(600)),
            "one token after 0.5 s"
        );
        assert!(!l.admit(ip, t + Duration::from_millis(600)));
        // Idle long enough: the full burst again, never more.
        let later = t + Duration::from_secs(60);
        assert_eq!((0..5).filter(|_| l.admit(ip, later)).count(), 3);
    }

    #[test]
    fn tracking_is_bounded() {
        let t = Instant::now();
        let mut l = RateLimiter::new(1.0, 1);
        for i in 0..(MAX_TRACKED_IPS as u32 + 50) {
            l.admit(IpAddr::from(i.to_be_bytes()), t);
        }
        assert!(l.buckets.len() <= MAX_TRACKED_IPS);
    }
}
