//! RTP (RFC 3550) and RFC 4733 telephone-events, sans-IO: packet parse and
//! build, a sender that numbers packets, receiver statistics (loss, interarrival
//! jitter) and RTCP receiver/sender reports.

use thiserror::Error;

/// Fixed RTP header length.
pub const HEADER: usize = 12;

/// A packet that cannot be read.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RtpError {
    /// Shorter than its header says.
    #[error("RTP packet too short ({0} bytes)")]
    TooShort(usize),
    /// Not version 2.
    #[error("not RTP version 2 (version {0})")]
    Version(u8),
    /// Padding longer than the payload.
    #[error("bad RTP padding")]
    Padding,
}

/// One RTP packet (CSRCs and header extensions are skipped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpPacket {
    /// Marker bit.
    pub marker: bool,
    /// Payload type.
    pub payload_type: u8,
    /// Sequence number.
    pub seq: u16,
    /// Media timestamp.
    pub timestamp: u32,
    /// Synchronisation source.
    pub ssrc: u32,
    /// Payload.
    pub payload: Vec<u8>,
}

impl RtpPacket {
    /// Parses a datagram.
    pub fn parse(b: &[u8]) -> Result<RtpPacket, RtpError> {
        if b.len() < HEADER {
            return Err(RtpError::TooShort(b.len()));
        }
        let version = b[0] >> 6;
        if version != 2 {
            return Err(RtpError::Version(version));
        }
        let padding = b[0] & 0x20 != 0;
        let extension = b[0] & 0x10 != 0;
        let csrcs = usize::from(b[0] & 0x0f);
        let mut at = HEADER + 4 * csrcs;
        if extension {
            let ext = b.get(at + 2..at + 4).ok_or(RtpError::TooShort(b.len()))?;
            at += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
        }
        if at > b.len() {
            return Err(RtpError::TooShort(b.len()));
        }
        let mut end = b.len();
        if padding {
            let pad = usize::from(b[b.len() - 1]);
            if pad == 0 || at + pad > end {
                return Err(RtpError::Padding);
            }
            end -= pad;
        }
        Ok(RtpPacket {
            marker: b[1] & 0x80 != 0,
            payload_type: b[1] & 0x7f,
            seq: u16::from_be_bytes([b[2], b[3]]),
            timestamp: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            ssrc: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
            payload: b[at..end].to_vec(),
        })
    }

    /// Serialises (no CSRCs, no extension, no padding).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + self.payload.len());
        out.push(0x80);
        out.push((u8::from(self.marker) << 7) | (self.payload_type & 0x7f));
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(&self.payload);
        out
    }
}

/// Whether a datagram on an RTP port is RTCP (payload types 200–204, RFC 5761).
pub fn is_rtcp(b: &[u8]) -> bool {
    b.len() >= 8 && b[0] >> 6 == 2 && (200..=204).contains(&b[1])
}

/// Numbers outgoing packets of one stream.
#[derive(Debug, Clone)]
pub struct RtpSender {
    /// Our SSRC.
    pub ssrc: u32,
    seq: u16,
    timestamp: u32,
    first: bool,
    /// Packets sent.
    pub packets: u32,
    /// Payload octets sent.
    pub octets: u32,
}

impl RtpSender {
    /// A stream starting at the given (random) values.
    pub fn new(ssrc: u32, seq: u16, timestamp: u32) -> Self {
        RtpSender {
            ssrc,
            seq,
            timestamp,
            first: true,
            packets: 0,
            octets: 0,
        }
    }

    /// Where the stream stands: (SSRC, next sequence, next timestamp, packets, octets).
    pub(crate) fn state(&self) -> (u32, u16, u32, u32, u32) {
        (
            self.ssrc,
            self.seq,
            self.timestamp,
            self.packets,
            self.octets,
        )
    }

    /// Continues from where another sender of the same stream (the relay
    /// plane) left it.
    pub(crate) fn resume_at(&mut self, seq: u16, timestamp: u32, packets: u32, octets: u32) {
        self.seq = seq;
        self.timestamp = timestamp;
        self.packets = packets;
        self.octets = octets;
        self.first = false;
    }

    /// The next media packet; the timestamp advances by `samples` after it.
    pub fn packet(&mut self, payload_type: u8, payload: Vec<u8>, samples: u32) -> RtpPacket {
        let p = RtpPacket {
            marker: std::mem::take(&mut self.first),
            payload_type,
            seq: self.seq,
            timestamp: self.timestamp,
            ssrc: self.ssrc,
            payload,
        };
        self.seq = self.seq.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(samples);
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add(p.payload.len() as u32);
        p
    }

    /// The RFC 4733 packets for one digit lasting `frames` × 20 ms at 8 kHz:
    /// all share the event's start timestamp; the last three carry the end bit.
    pub fn dtmf(&mut self, payload_type: u8, digit: char, frames: u16) -> Vec<RtpPacket> {
        let Some(event) = dtmf_event_code(digit) else {
            return Vec::new();
        };
        let start = self.timestamp;
        let mut out = Vec::new();
        for i in 1..=frames + 2 {
            let end = i >= frames;
            let duration = 160 * i.min(frames);
            let payload = vec![
                event,
                (u8::from(end) << 7) | 10, // volume −10 dBm0
                (duration >> 8) as u8,
                duration as u8,
            ];
            out.push(RtpPacket {
                marker: i == 1,
                payload_type,
                seq: self.seq,
                timestamp: start,
                ssrc: self.ssrc,
                payload,
            });
            self.seq = self.seq.wrapping_add(1);
        }
        self.timestamp = self.timestamp.wrapping_add(160 * u32::from(frames));
        out
    }
}

/// The RFC 4733 event code of a keypad digit.
pub fn dtmf_event_code(digit: char) -> Option<u8> {
    match digit {
        '0'..='9' => Some(digit as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        'A'..='D' => Some(12 + (digit as u8 - b'A')),
        _ => None,
    }
}

/// A telephone-event payload: (digit, end of event).
pub fn parse_dtmf(payload: &[u8]) -> Option<(char, bool)> {
    if payload.len() < 4 {
        return None;
    }
    let digit = dtmf_digit(payload[0])?;
    Some((digit, payload[1] & 0x80 != 0))
}

/// The keypad digit of an RFC 4733 event code (0–15).
pub fn dtmf_digit(event: u8) -> Option<char> {
    match event {
        e @ 0..=9 => Some((b'0' + e) as char),
        10 => Some('*'),
        11 => Some('#'),
        e @ 12..=15 => Some((b'A' + e - 12) as char),
        _ => None,
    }
}

/// Receive-side statistics of one stream (RFC 3550 A.1, A.3, A.8).
#[derive(Debug, Clone, Default)]
pub struct ReceiverStats {
    /// The SSRC being counted.
    pub ssrc: u32,
    base_seq: u32,
    max_seq: u16,
    cycles: u32,
    started: bool,
    /// Packets received (duplicates included, as RFC 3550 counts them).
    pub received: u32,
    expected_prior: u32,
    received_prior: u32,
    transit: Option<i64>,
    jitter: f64,
}

impl ReceiverStats {
    /// Counts one packet that arrived at `arrival` (in media clock units).
    pub fn on_packet(&mut self, seq: u16, timestamp: u32, arrival: u32, ssrc: u32) {
        if !self.started || ssrc != self.ssrc {
            *self = ReceiverStats {
                ssrc,
                base_seq: u32::from(seq),
                max_seq: seq,
                started: true,
                ..ReceiverStats::default()
            };
        }
        let delta = seq.wrapping_sub(self.max_seq);
        if delta < 0x8000 {
            if seq < self.max_seq {
                self.cycles = self.cycles.wrapping_add(1 << 16);
            }
            self.max_seq = seq;
        }
        self.received = self.received.wrapping_add(1);
        let transit = i64::from(arrival) - i64::from(timestamp);
        if let Some(prev) = self.transit {
            let d = ((transit - prev) as i32).unsigned_abs() as f64;
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.transit = Some(transit);
    }

    /// Packets expected so far.
    pub fn expected(&self) -> u32 {
        (self.cycles + u32::from(self.max_seq))
            .wrapping_sub(self.base_seq)
            .wrapping_add(1)
    }

    /// Packets lost so far (never negative).
    pub fn lost(&self) -> u32 {
        self.expected().saturating_sub(self.received)
    }

    /// Interarrival jitter, media clock units.
    pub fn jitter(&self) -> u32 {
        self.jitter as u32
    }

    /// A report block (RFC 3550 6.4.1) for an RTCP RR/SR; updates the interval counters.
    pub fn report_block(&mut self) -> [u8; 24] {
        let expected = self.expected();
        let interval_expected = expected.wrapping_sub(self.expected_prior);
        let interval_received = self.received.wrapping_sub(self.received_prior);
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = interval_expected.saturating_sub(interval_received);
        let fraction = (lost_interval << 8)
            .checked_div(interval_expected)
            .map_or(0, |f| f.min(255) as u8);
        let lost = self.lost().min(0x7f_ffff);
        let mut b = [0u8; 24];
        b[0..4].copy_from_slice(&self.ssrc.to_be_bytes());
        b[4] = fraction;
        b[5..8].copy_from_slice(&lost.to_be_bytes()[1..]);
        b[8..12].copy_from_slice(&(self.cycles + u32::from(self.max_seq)).to_be_bytes());
        b[12..16].copy_from_slice(&self.jitter().to_be_bytes());
        // LSR and DLSR left 0: we do not track the peer's SRs.
        b
    }
}

/// An RTCP receiver report (PT 201) from `ssrc` with one block, if any.
pub fn rtcp_receiver_report(ssrc: u32, block: Option<[u8; 24]>) -> Vec<u8> {
    let count = u8::from(block.is_some());
    let words = 1 + 6 * u16::from(count); // length in 32-bit words minus one
    let mut out = vec![0x80 | count, 201];
    out.extend_from_slice(&words.to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
    if let Some(b) = block {
        out.extend_from_slice(&b);
    }
    out
}

/// An RTCP sender report (PT 200) with the NTP time `ntp` and one block, if any.
pub fn rtcp_sender_report(
    sender: &RtpSender,
    ntp: u64,
    rtp_timestamp: u32,
    block: Option<[u8; 24]>,
) -> Vec<u8> {
    let count = u8::from(block.is_some());
    let words = 6 + 6 * u16::from(count);
    let mut out = vec![0x80 | count, 200];
    out.extend_from_slice(&words.to_be_bytes());
    out.extend_from_slice(&sender.ssrc.to_be_bytes());
    out.extend_from_slice(&ntp.to_be_bytes());
    out.extend_from_slice(&rtp_timestamp.to_be_bytes());
    out.extend_from_slice(&sender.packets.to_be_bytes());
    out.extend_from_slice(&sender.octets.to_be_bytes());
    if let Some(b) = block {
        out.extend_from_slice(&b);
    }
    out
}

/// Reads the first report block of an RTCP SR/RR: (fraction lost /256, cumulative lost, jitter).
pub fn parse_rtcp_report(b: &[u8]) -> Option<(u8, u32, u32)> {
    if !is_rtcp(b) || b[0] & 0x1f == 0 {
        return None;
    }
    let block = match b[1] {
        200 => b.get(28..52)?,
        201 => b.get(8..32)?,
        _ => return None,
    };
    let lost = u32::from_be_bytes([0, block[5], block[6], block[7]]);
    let jitter = u32::from_be_bytes([block[12], block[13], block[14], block[15]]);
    Some((block[4], lost, jitter))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_round_trip_and_bad_ones_are_refused() {
        let mut s = RtpSender::new(0x1234_5678, 65_535, 1000);
        let a = s.packet(0, vec![0xff; 160], 160);
        let b = s.packet(0, vec![0x7f; 160], 160);
        assert!(a.marker && !b.marker);
        assert_eq!((a.seq, b.seq), (65_535, 0), "wraps");
        assert_eq!(b.timestamp, 1160);
        assert_eq!(RtpPacket::parse(&a.to_bytes()).unwrap(), a);
        assert_eq!(RtpPacket::parse(&[0x80; 5]), Err(RtpError::TooShort(5)));
        assert_eq!(RtpPacket::parse(&[0x40; 12]), Err(RtpError::Version(1)));
        let mut padded = b.to_bytes();
        padded[0] |= 0x20;
        padded.push(200);
        assert_eq!(RtpPacket::parse(&padded), Err(RtpError::Padding));
    }

    #[test]
    fn dtmf_events_follow_rfc_4733() {
        let mut s = RtpSender::new(1, 10, 8000);
        let pkts = s.dtmf(101, '5', 5);
        assert_eq!(pkts.len(), 7);
        assert!(pkts[0].marker);
        assert!(pkts.iter().all(|p| p.timestamp == 8000));
        assert_eq!(parse_dtmf(&pkts[0].payload), Some(('5', false)));
        assert_eq!(parse_dtmf(&pkts[6].payload), Some(('5', true)));
        assert_eq!(s.packet(0, vec![], 160).timestamp, 8800);
        assert!(s.dtmf(101, 'x', 5).is_empty());
        assert_eq!(parse_dtmf(&[16, 0, 0, 0]), None);
    }

    #[test]
    fn stats_count_loss_and_jitter_and_feed_reports() {
        let mut r = ReceiverStats::default();
        for (i, seq) in [65_534u16, 65_535, 1, 2, 3].iter().enumerate() {
            // Packet 0 is lost; arrival drifts by 8 units per packet.
            r.on_packet(*seq, i as u32 * 160, i as u32 * 168, 7);
        }
        assert_eq!(r.expected(), 6);
        assert_eq!(r.lost(), 1);
        assert!(r.jitter() > 0);
        let rr = rtcp_receiver_report(9, Some(r.report_block()));
        assert!(is_rtcp(&rr));
        let (fraction, lost, jitter) = parse_rtcp_report(&rr).unwrap();
        assert_eq!((fraction, lost), ((256 / 6) as u8, 1));
        assert_eq!(jitter, r.jitter());
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = RtpPacket::parse(&bytes);
            let _ = parse_rtcp_report(&bytes);
            let _ = parse_dtmf(&bytes);
        }
    }
}
