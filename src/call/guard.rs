//! What one peer may cost a call: refused messages (in a row and over a
//! window), keypad digits per second, and caller media beyond real time.
//!
//! Sans-IO like the bridge that owns it: every check takes `now`. A peer that
//! floods gets its excess dropped and counted (never queued, never kept), and a
//! peer that keeps sending what cannot be read gets the call ended.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The limits (`[server]` `max_refused_in_row`, `max_refused_per_window`,
/// `refused_window_s`, `max_dtmf_per_second`, `max_media_speed`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PeerLimits {
    /// Refused messages in a row before the call (or the AI leg) is ended.
    pub refused_in_row: u32,
    /// Refused messages within `refused_window`, however interleaved with good ones.
    pub refused_per_window: u32,
    /// The window for `refused_per_window`.
    pub refused_window: Duration,
    /// Keypad digits per second taken (twice this as a burst); more are dropped.
    pub dtmf_per_second: f64,
    /// Caller audio faster than this multiple of real time (over a 3 s burst) is dropped.
    pub media_speed: f64,
    /// Marks the AI agent may have waiting in the caller's playout queue.
    pub marks_in_flight: usize,
}

impl Default for PeerLimits {
    fn default() -> Self {
        PeerLimits {
            refused_in_row: 50,
            refused_per_window: 100,
            refused_window: Duration::from_secs(10),
            dtmf_per_second: 10.0,
            media_speed: 2.0,
            marks_in_flight: 500,
        }
    }
}

/// What happened to a refused message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Counted; the leg stays up.
    Counted,
    /// Over a limit: the leg must be ended, for this reason.
    TooMany(String),
}

/// Counts of what a guard dropped, for the call's end log and /metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Keypad digits over the rate.
    pub dtmf: u64,
    /// Audio bytes beyond real time.
    pub media_bytes: u64,
    /// Marks over the in-flight limit.
    pub marks: u64,
}

/// A token bucket refilled at `rate` per second up to `capacity`.
#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    capacity: f64,
    rate: f64,
    last: Option<Instant>,
}

impl Bucket {
    fn new(rate: f64, capacity: f64) -> Bucket {
        Bucket {
            tokens: capacity,
            capacity,
            rate,
            last: None,
        }
    }

    fn take(&mut self, amount: f64, now: Instant) -> bool {
        if let Some(last) = self.last {
            let refill = now.saturating_duration_since(last).as_secs_f64() * self.rate;
            self.tokens = (self.tokens + refill).min(self.capacity);
        }
        self.last = Some(now);
        if self.tokens >= amount {
            self.tokens -= amount;
            true
        } else {
            false
        }
    }
}

/// μ-law 8 kHz: bytes of audio per second of real time.
const BYTES_PER_SECOND: f64 = 8000.0;

/// One peer's guard.
#[derive(Debug, Clone)]
pub struct PeerGuard {
    limits: PeerLimits,
    in_row: u32,
    refused_at: VecDeque<Instant>,
    dtmf: Bucket,
    media: Bucket,
    /// What was dropped so far.
    pub dropped: Dropped,
}

impl PeerGuard {
    /// A guard with `limits`.
    pub fn new(limits: PeerLimits) -> PeerGuard {
        let speed = BYTES_PER_SECOND * limits.media_speed;
        PeerGuard {
            dtmf: Bucket::new(limits.dtmf_per_second, limits.dtmf_per_second * 2.0),
            media: Bucket::new(speed, speed * 3.0),
            refused_at: VecDeque::new(),
            in_row: 0,
            dropped: Dropped::default(),
            limits,
        }
    }

    /// A message was taken: the "in a row" count starts again.
    pub fn accepted(&mut self) {
        self.in_row = 0;
    }

    /// A message was refused at `now`.
    pub fn refused(&mut self, now: Instant) -> Refusal {
        self.in_row += 1;
        self.refused_at.push_back(now);
        while self
            .refused_at
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > self.limits.refused_window)
        {
            self.refused_at.pop_front();
        }
        if self.in_row >= self.limits.refused_in_row {
            return Refusal::TooMany(format!("{} refused messages in a row", self.in_row));
        }
        if self.refused_at.len() >= self.limits.refused_per_window as usize {
            return Refusal::TooMany(format!(
                "{} refused messages within {} s",
                self.refused_at.len(),
                self.limits.refused_window.as_secs()
            ));
        }
        Refusal::Counted
    }

    /// A keypad digit at `now`: false if over the rate (drop it).
    pub fn dtmf(&mut self, now: Instant) -> bool {
        let ok = self.dtmf.take(1.0, now);
        if !ok {
            self.dropped.dtmf += 1;
        }
        ok
    }

    /// `bytes` of caller audio at `now`: false if beyond the allowed speed (drop it).
    pub fn media(&mut self, bytes: usize, now: Instant) -> bool {
        let ok = self.media.take(bytes as f64, now);
        if !ok {
            self.dropped.media_bytes += bytes as u64;
        }
        ok
    }

    /// A mark from the AI agent with `queued` marks already waiting: false if
    /// over the in-flight limit (drop it).
    pub fn mark(&mut self, queued: usize) -> bool {
        let ok = queued < self.limits.marks_in_flight;
        if !ok {
            self.dropped.marks += 1;
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_interleaved_with_good_messages_still_end_the_leg_over_the_window() {
        let t0 = Instant::now();
        let mut g = PeerGuard::new(PeerLimits::default());
        let mut verdict = Refusal::Counted;
        // 39 invalid + 1 valid, fast: never 50 in a row.
        for i in 0..200u32 {
            let now = t0 + Duration::from_millis(u64::from(i));
            if i % 40 == 39 {
                g.accepted();
                continue;
            }
            verdict = g.refused(now);
            if verdict != Refusal::Counted {
                break;
            }
        }
        assert!(
            matches!(verdict, Refusal::TooMany(ref why) if why.contains("within")),
            "{verdict:?}"
        );
    }

    #[test]
    fn occasional_refusals_spread_over_time_never_end_the_leg() {
        let t0 = Instant::now();
        let mut g = PeerGuard::new(PeerLimits::default());
        for i in 0..1000u64 {
            g.accepted();
            assert_eq!(
                g.refused(t0 + Duration::from_millis(500 * i)),
                Refusal::Counted
            );
        }
    }

    #[test]
    fn fifty_refusals_in_a_row_end_the_leg() {
        let t0 = Instant::now();
        let mut g = PeerGuard::new(PeerLimits::default());
        for i in 0..49u64 {
            assert_eq!(g.refused(t0 + Duration::from_secs(i)), Refusal::Counted);
        }
        assert!(matches!(
            g.refused(t0 + Duration::from_secs(49)),
            Refusal::TooMany(_)
        ));
    }

    #[test]
    fn a_keypad_flood_is_cut_to_the_rate() {
        let t0 = Instant::now();
        let mut g = PeerGuard::new(PeerLimits::default());
        let taken = (0..5000u64)
            .filter(|i| g.dtmf(t0 + Duration::from_micros(200 * i)))
            .count();
        // One second of flood: the 20-digit burst plus ~10 refilled.
        assert!((20..=32).contains(&taken), "{taken}");
        assert_eq!(g.dropped.dtmf, 5000 - taken as u64);
        // A person pressing keys at human speed is never cut.
        let mut h = PeerGuard::new(PeerLimits::default());
        assert!((0..100u64).all(|i| h.dtmf(t0 + Duration::from_millis(150 * i))));
    }

    #[test]
    fn real_time_audio_passes_and_audio_far_beyond_it_is_dropped() {
        let t0 = Instant::now();
        let mut g = PeerGuard::new(PeerLimits::default());
        // A minute of 20 ms frames at real time, with a 1 s network stall
        // delivered as a burst: all taken.
        let mut at = t0;
        for i in 0..3000u32 {
            if i == 1000 {
                at += Duration::from_secs(1);
            }
            let now = if (1000..1050).contains(&i) {
                at
            } else {
                at + Duration::from_millis(20)
            };
            at = now;
            assert!(g.media(160, now), "frame {i}");
        }
        // Ten times real time for 10 s: most of it dropped.
        let mut flood = PeerGuard::new(PeerLimits::default());
        let taken = (0..5000u64)
            .filter(|i| flood.media(160, t0 + Duration::from_millis(2 * i)))
            .count();
        assert!(taken < 1400, "{taken} of 5000 frames taken");
        assert!(flood.dropped.media_bytes > 500_000);
    }
}
