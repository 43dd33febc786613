//! The receive buffer of an RTP leg (sans-IO): puts packets back in sequence
//! order, drops duplicates and late packets, follows SSRC changes, and declares
//! a gap lost once the packet after it has waited the hold time, so the leg can
//! conceal it (Opus PLC, G.711 silence).
//!
//! The gateway is not the playout point — the AI agent, the human agent's phone
//! or the caller's phone each have their own — so in-order packets leave at once
//! and only a gap holds the stream back, for an adaptive time: twice the measured
//! interarrival jitter, kept within `[min_hold, max_hold]`.

use super::rtp::RtpPacket;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Hold-time bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterConfig {
    /// Shortest wait for a missing packet.
    pub min_hold: Duration,
    /// Longest wait for a missing packet.
    pub max_hold: Duration,
    /// Most packets held (a flood or a long gap forces progress).
    pub max_packets: usize,
}

impl Default for JitterConfig {
    fn default() -> Self {
        JitterConfig {
            min_hold: Duration::from_millis(20),
            max_hold: Duration::from_millis(200),
            max_packets: 64,
        }
    }
}

/// What comes out, in sequence order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JitterOutput {
    /// The next packet.
    Packet(RtpPacket),
    /// This many packets never came (conceal them).
    Lost(u16),
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    /// Packets that came after their slot was passed.
    pub late: u64,
    /// Packets already held or already released.
    pub duplicates: u64,
    /// Packets declared lost.
    pub lost: u64,
    /// Times the source changed its SSRC (the buffer restarts).
    pub ssrc_changes: u64,
    /// Packets released.
    pub released: u64,
}

/// The buffer.
#[derive(Debug)]
pub struct JitterBuffer {
    config: JitterConfig,
    ssrc: Option<u32>,
    next: Option<u16>,
    held: BTreeMap<u16, (RtpPacket, Instant)>,
    hold: Duration,
    /// Counters so far.
    pub stats: JitterStats,
}

impl JitterBuffer {
    /// An empty buffer.
    pub fn new(config: JitterConfig) -> Self {
        JitterBuffer {
            hold: config.min_hold,
            config,
            ssrc: None,
            next: None,
            held: BTreeMap::new(),
            stats: JitterStats::default(),
        }
    }

    /// Adapts the hold time to the measured interarrival jitter.
    pub fn set_jitter(&mut self, jitter: Duration) {
        self.hold = (jitter * 2).clamp(self.config.min_hold, self.config.max_hold);
    }

    /// The current hold time.
    pub fn hold(&self) -> Duration {
        self.hold
    }

    /// Offsets from the next expected sequence number (negative = already passed).
    fn offset(&self, seq: u16) -> i32 {
        match self.next {
            Some(next) => i32::from(seq.wrapping_sub(next) as i16),
            None => 0,
        }
    }

    /// Takes a packet that arrived at `now`.
    pub fn push(&mut self, packet: RtpPacket, now: Instant) {
        if self.ssrc != Some(packet.ssrc) {
            if self.ssrc.is_some() {
                self.stats.ssrc_changes += 1;
            }
            self.ssrc = Some(packet.ssrc);
            self.held.clear();
            self.next = Some(packet.seq);
        }
        let offset = self.offset(packet.seq);
        if offset < 0 {
            // Behind the window: a duplicate of a released packet or a late one.
            if offset > -64 {
                self.stats.late += 1;
            } else {
                // Far behind: the source restarted its numbering.
                self.held.clear();
                self.next = Some(packet.seq);
                self.held.insert(packet.seq, (packet, now));
            }
            return;
        }
        if offset > 3000 {
            // A jump of a minute or more: resynchronise rather than wait.
            self.held.clear();
            self.next = Some(packet.seq);
        }
        if self.held.contains_key(&packet.seq) {
            self.stats.duplicates += 1;
            return;
        }
        self.held.insert(packet.seq, (packet, now));
    }

    /// The held packet with the smallest offset from `next`.
    fn first_held(&self) -> Option<(u16, Instant)> {
        self.held
            .iter()
            .min_by_key(|(seq, _)| self.offset(**seq))
            .map(|(seq, (_, at))| (*seq, *at))
    }

    /// The next output at `now`, if any.
    pub fn poll(&mut self, now: Instant) -> Option<JitterOutput> {
        let next = self.next?;
        if let Some((packet, _)) = self.held.remove(&next) {
            self.next = Some(next.wrapping_add(1));
            self.stats.released += 1;
            return Some(JitterOutput::Packet(packet));
        }
        let (first, arrived) = self.first_held()?;
        let overflow = self.held.len() > self.config.max_packets;
        if overflow || now.saturating_duration_since(arrived) >= self.hold {
            let gap = first.wrapping_sub(next);
            self.next = Some(first);
            self.stats.lost += u64::from(gap);
            return Some(JitterOutput::Lost(gap));
        }
        None
    }

    /// When [`poll`](Self::poll) may next have something to say about a gap.
    pub fn poll_at(&self) -> Option<Instant> {
        let next = self.next?;
        if let Some((_, arrived)) = self.held.get(&next) {
            return Some(*arrived); // ready already
        }
        self.first_held().map(|(_, at)| at + self.hold)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(seq: u16, ssrc: u32) -> RtpPacket {
        RtpPacket {
            marker: false,
            payload_type: 0,
            seq,
            timestamp: u32::from(seq) * 160,
            ssrc,
            payload: vec![seq as u8],
        }
    }

    fn drain(j: &mut JitterBuffer, now: Instant) -> Vec<JitterOutput> {
        std::iter::from_fn(|| j.poll(now)).collect()
    }

    fn seqs(out: &[JitterOutput]) -> Vec<i32> {
        out.iter()
            .map(|o| match o {
                JitterOutput::Packet(p) => i32::from(p.seq),
                JitterOutput::Lost(n) => -i32::from(*n),
            })
            .collect()
    }

    #[test]
    fn in_order_packets_leave_at_once_and_reordering_is_undone() {
        let t = Instant::now();
        let mut j = JitterBuffer::new(JitterConfig::default());
        j.push(pkt(65_534, 1), t);
        j.push(pkt(65_535, 1), t);
        assert_eq!(seqs(&drain(&mut j, t)), vec![65_534, 65_535]);
        j.push(pkt(1, 1), t); // 0 is late
        assert!(drain(&mut j, t).is_empty(), "waits for 0");
        j.push(pkt(0, 1), t + Duration::from_millis(5));
        assert_eq!(seqs(&drain(&mut j, t)), vec![0, 1]);
        j.push(pkt(1, 1), t); // duplicate after release
        j.push(pkt(3, 1), t);
        j.push(pkt(3, 1), t); // duplicate while held
        assert_eq!(j.stats.late, 1);
        assert_eq!(j.stats.duplicates, 1);
    }

    #[test]
    fn a_gap_is_declared_lost_after_the_hold_time() {
        let t = Instant::now();
        let mut j = JitterBuffer::new(JitterConfig::default());
        j.set_jitter(Duration::from_millis(15));
        assert_eq!(j.hold(), Duration::from_millis(30));
        j.push(pkt(10, 1), t);
        drain(&mut j, t);
        j.push(pkt(13, 1), t);
        assert_eq!(j.poll_at(), Some(t + Duration::from_millis(30)));
        assert!(drain(&mut j, t + Duration::from_millis(29)).is_empty());
        assert_eq!(
            seqs(&drain(&mut j, t + Duration::from_millis(30))),
            vec![-2, 13]
        );
        assert_eq!(j.stats.lost, 2);
        j.push(pkt(11, 1), t); // after its slot: late, dropped
        assert_eq!(j.stats.late, 1);
    }

    #[test]
    fn an_ssrc_change_or_a_restart_resynchronises() {
        let t = Instant::now();
        let mut j = JitterBuffer::new(JitterConfig::default());
        j.push(pkt(100, 1), t);
        drain(&mut j, t);
        j.push(pkt(5000, 2), t);
        assert_eq!(seqs(&drain(&mut j, t)), vec![5000]);
        assert_eq!(j.stats.ssrc_changes, 1);
        j.push(pkt(10, 2), t); // far behind: the source restarted
        assert_eq!(seqs(&drain(&mut j, t)), vec![10]);
    }

    #[test]
    fn a_flood_of_out_of_order_packets_stays_bounded() {
        let t = Instant::now();
        let mut j = JitterBuffer::new(JitterConfig {
            max_packets: 8,
            ..JitterConfig::default()
        });
        j.push(pkt(0, 1), t);
        drain(&mut j, t);
        for s in (2..200).step_by(2) {
            j.push(pkt(s, 1), t);
            drain(&mut j, t);
        }
        assert!(j.held.len() <= 9);
    }

    proptest::proptest! {
        #[test]
        fn every_packet_leaves_once_in_order_or_is_counted(order in proptest::collection::vec(0u16..60, 1..120)) {
            let t = Instant::now();
            let mut j = JitterBuffer::new(JitterConfig::default());
            let mut released = Vec::new();
            for (i, s) in order.iter().enumerate() {
                j.push(pkt(*s, 7), t + Duration::from_millis(i as u64));
                while let Some(o) = j.poll(t + Duration::from_millis(i as u64)) {
                    if let JitterOutput::Packet(p) = o { released.push(p.seq); }
                }
            }
            while let Some(o) = j.poll(t + Duration::from_secs(10)) {
                if let JitterOutput::Packet(p) = o { released.push(p.seq); }
            }
            let mut sorted = released.clone();
            sorted.sort_unstable();
            sorted.dedup();
            proptest::prop_assert_eq!(sorted.len(), released.len(), "no duplicates out");
            proptest::prop_assert!(released.windows(2).all(|w| w[0] < w[1]), "in order: {:?}", released);
        }
    }
}
