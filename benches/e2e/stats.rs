//! Turning send/receive stamps into latency percentiles, loss and egress jitter.

use serde::Serialize;

/// One stream's stamps: (frame number, µs since the run's origin).
pub type Stamps = Vec<(u32, f64)>;

/// One direction of one call: what was sent and what arrived.
#[derive(Debug, Default, Clone)]
pub struct Stream {
    /// Sent frames.
    pub sent: Stamps,
    /// Received frames.
    pub received: Stamps,
}

/// Latency figures of one direction over all calls of a run.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Summary {
    /// Frames measured (after warm-up).
    pub frames: usize,
    /// Frames sent but never received.
    pub lost: usize,
    /// One-way latency percentiles, µs.
    pub p50_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
    /// 99.9th percentile, µs.
    pub p999_us: f64,
    /// Mean absolute deviation of receive intervals from 20 ms, µs.
    pub egress_jitter_us: f64,
}

/// How sent and received frames are paired.
#[derive(Debug, Clone, Copy)]
pub enum Pairing {
    /// By the frame number carried in the payload (bytes pass through untouched).
    Number,
    /// By arrival order (transcoded payloads carry no number; loopback keeps order).
    Order,
}

/// Frames at the end of each stream left out: a transcoder holding a frame
/// (rtpengine does) never sends the last one, which is not a loss.
pub const COOLDOWN: u32 = 2;

/// Latencies over all `streams`, skipping the first `warmup` and the last
/// [`COOLDOWN`] frames of each.
pub fn summarize(streams: &[Stream], pairing: Pairing, warmup: u32) -> Summary {
    let mut latencies = Vec::new();
    let mut lost = 0;
    let mut jitter_sum = 0.0;
    let mut jitter_n = 0usize;
    for s in streams {
        let received: Stamps = match pairing {
            Pairing::Number => s.received.clone(),
            Pairing::Order => s
                .received
                .iter()
                .enumerate()
                .map(|(i, &(_, t))| (i as u32, t))
                .collect(),
        };
        let at: std::collections::HashMap<u32, f64> = received.iter().copied().collect();
        let end = (s.sent.len() as u32).saturating_sub(COOLDOWN);
        for &(n, t) in s.sent.iter().filter(|(n, _)| *n >= warmup && *n < end) {
            match at.get(&n) {
                Some(r) => latencies.push(r - t),
                None => lost += 1,
            }
        }
        let arrivals: Vec<f64> = received
            .iter()
            .filter(|(n, _)| *n >= warmup && *n < end)
            .map(|&(_, t)| t)
            .collect();
        for w in arrivals.windows(2) {
            jitter_sum += ((w[1] - w[0]) - 20_000.0).abs();
            jitter_n += 1;
        }
    }
    latencies.sort_by(f64::total_cmp);
    Summary {
        frames: latencies.len() + lost,
        lost,
        p50_us: percentile(&latencies, 0.50),
        p99_us: percentile(&latencies, 0.99),
        p999_us: percentile(&latencies, 0.999),
        egress_jitter_us: if jitter_n > 0 {
            jitter_sum / jitter_n as f64
        } else {
            f64::NAN
        },
    }
}

/// The `p` quantile of sorted values (NaN when empty).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The frame number a [`numbered_frame`] carries: its first four bytes, when
/// the rest is the 0xFF padding (anything else — hold audio, a whisper, a
/// disclosure — is not a numbered frame).
pub fn number_of(payload: &[u8]) -> Option<u32> {
    let (head, padding) = (payload.get(..4)?, payload.get(4..)?);
    let pad = *padding.first()?;
    if !(pad == 0xFF || pad == SPOKEN_PAD) || padding.iter().any(|&b| b != pad) {
        return None;
    }
    let n = u32::from_be_bytes(head.try_into().ok()?);
    (n != u32::MAX).then_some(n)
}

/// The padding of a spoken numbered frame: a loud μ-law level (≈ −12 dBFS), so
/// the gateway's voice detection hears a person talking (a merged call is
/// handed to the relay plane once the person's first words are heard).
pub const SPOKEN_PAD: u8 = 0x90;

/// A numbered frame that sounds like someone talking (see [`SPOKEN_PAD`]).
pub fn spoken_frame(n: u32) -> Vec<u8> {
    let mut f = vec![SPOKEN_PAD; 160];
    f[..4].copy_from_slice(&n.to_be_bytes());
    f
}

/// A 20 ms μ-law frame carrying `n` in its first four bytes.
pub fn numbered_frame(n: u32) -> Vec<u8> {
    let mut f = vec![0xFFu8; 160];
    f[..4].copy_from_slice(&n.to_be_bytes());
    f
}
