//! Where one RTP stream comes from and goes to: the SDP address first, a NAT'd
//! source only after a learning window, never moved afterwards except by a
//! valid re-INVITE, and a silence timeout for a peer that has gone away.
//!
//! Sans-IO: the leg tells it every packet's source and the time, and asks it
//! where to send and when the stream has gone silent. The rules:
//! - A packet from the SDP address latches at once.
//! - Any other source is a NAT candidate. It is latched only once the learning
//!   window (counted from the leg's start or the last re-INVITE) is over, and
//!   only if it sent at least `min_packets` in a row (another source in between
//!   starts the count again). Until then its packets are not taken in, so a
//!   stranger who sends first cannot take the call's media.
//! - Once latched, only that address (or, for a second stream of the same media
//!   server such as DTMF from a player, the same host) is taken in; everything
//!   else is counted as foreign and dropped.
//! - Media goes to the latched address; before a latch, to the SDP address, but
//!   only during the learning window: an SDP that names a third party who never
//!   sends cannot turn warmline into a reflector for longer than that.
//! - No accepted packet for `media_timeout` (not counted while the peer holds
//!   the call) means the peer is gone: the leg ends the call.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The latch's tuning (`[sip]` `rtp_learning_ms`, `rtp_learning_packets`, `media_timeout_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatchConfig {
    /// How long media may go to an SDP address that has not sent, and how long
    /// a NAT'd source must wait before it can be latched.
    pub learning: Duration,
    /// Packets in a row a NAT'd source must send to be latched.
    pub min_packets: u32,
    /// No media for this long ends the call (zero: never).
    pub media_timeout: Duration,
    /// Keep sending to the SDP address even if it never sends: for legs
    /// warmline dialled itself (a configured agent phone), where the address
    /// is not a stranger's choice and the phone may stay silent until it hears audio.
    pub trust_sdp: bool,
}

impl Default for LatchConfig {
    fn default() -> Self {
        LatchConfig {
            learning: Duration::from_secs(2),
            min_packets: 5,
            media_timeout: Duration::from_secs(60),
            trust_sdp: false,
        }
    }
}

/// What to do with one received packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Take it in.
    Accept,
    /// Not yet: a NAT candidate still learning.
    Learning,
    /// From an address other than the latched one: drop and count.
    Foreign,
}

/// One RTP stream's source and destination.
#[derive(Debug, Clone)]
pub struct RtpLatch {
    config: LatchConfig,
    sdp: SocketAddr,
    latched: Option<SocketAddr>,
    learning_since: Instant,
    candidate: Option<(SocketAddr, u32)>,
    last_media: Instant,
    on_hold: bool,
}

impl RtpLatch {
    /// A stream the SDP says lives at `sdp`, starting `now`.
    pub fn new(sdp: SocketAddr, config: LatchConfig, now: Instant) -> RtpLatch {
        RtpLatch {
            config,
            sdp,
            latched: None,
            learning_since: now,
            candidate: None,
            last_media: now,
            on_hold: false,
        }
    }

    /// A packet arrived from `from` at `now`.
    pub fn on_packet(&mut self, from: SocketAddr, now: Instant) -> Verdict {
        let verdict = match self.latched {
            Some(addr) if addr == from || addr.ip() == from.ip() => Verdict::Accept,
            Some(_) => Verdict::Foreign,
            None if from == self.sdp => {
                self.latched = Some(from);
                Verdict::Accept
            }
            None => {
                let count = match self.candidate {
                    Some((addr, n)) if addr == from => n + 1,
                    _ => 1,
                };
                self.candidate = Some((from, count));
                let learned =
                    now.saturating_duration_since(self.learning_since) >= self.config.learning;
                if learned && count >= self.config.min_packets {
                    self.latched = Some(from);
                    Verdict::Accept
                } else {
                    Verdict::Learning
                }
            }
        };
        if verdict == Verdict::Accept {
            self.last_media = now;
        }
        verdict
    }

    /// Where media goes at `now`: the latched address, or the SDP address during
    /// the learning window; `None` when it must not be sent anywhere.
    pub fn target(&self, now: Instant) -> Option<SocketAddr> {
        if let Some(addr) = self.latched {
            return Some(addr);
        }
        let learning = now.saturating_duration_since(self.learning_since) < self.config.learning;
        (learning || self.config.trust_sdp).then_some(self.sdp)
    }

    /// The latched source, if any.
    pub fn latched(&self) -> Option<SocketAddr> {
        self.latched
    }

    /// A valid re-INVITE (in the dialog) moved the stream or held it: a new
    /// SDP address starts learning again; hold pauses the silence timeout.
    pub fn update(&mut self, sdp: SocketAddr, on_hold: bool, now: Instant) {
        if sdp != self.sdp {
            self.sdp = sdp;
            self.latched = None;
            self.candidate = None;
            self.learning_since = now;
        }
        if self.on_hold && !on_hold {
            self.last_media = now; // the silence clock restarts when the hold ends
        }
        self.on_hold = on_hold;
    }

    /// When the stream will be declared silent, if nothing arrives before.
    pub fn timeout_at(&self) -> Option<Instant> {
        (!self.config.media_timeout.is_zero() && !self.on_hold)
            .then(|| self.last_media + self.config.media_timeout)
    }

    /// True once no media has arrived for the timeout (never while on hold).
    pub fn timed_out(&self, now: Instant) -> bool {
        self.timeout_at().is_some_and(|at| now >= at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    const SDP: &str = "192.0.2.10:4000";

    fn latch(t0: Instant) -> RtpLatch {
        RtpLatch::new(addr(SDP), LatchConfig::default(), t0)
    }

    #[test]
    fn the_sdp_address_latches_at_once_and_a_stranger_is_then_foreign() {
        let t0 = Instant::now();
        let mut l = latch(t0);
        assert_eq!(l.on_packet(addr(SDP), t0), Verdict::Accept);
        assert_eq!(l.target(t0 + Duration::from_secs(30)), Some(addr(SDP)));
        for i in 0..100 {
            let at = t0 + Duration::from_millis(20 * i);
            assert_eq!(l.on_packet(addr("203.0.113.5:6666"), at), Verdict::Foreign);
        }
        assert_eq!(l.latched(), Some(addr(SDP)), "never moved by packets");
        assert_eq!(
            l.on_packet(addr("192.0.2.10:4002"), t0),
            Verdict::Accept,
            "the same media server's second stream"
        );
    }

    #[test]
    fn a_stranger_sending_first_does_not_take_the_stream_from_the_sdp_peer() {
        let t0 = Instant::now();
        let mut l = latch(t0);
        for i in 0..20 {
            let at = t0 + Duration::from_millis(20 * i);
            assert_eq!(l.on_packet(addr("203.0.113.5:6666"), at), Verdict::Learning);
            assert_eq!(l.target(at), Some(addr(SDP)), "media still goes to the SDP");
        }
        assert_eq!(
            l.on_packet(addr(SDP), t0 + Duration::from_secs(1)),
            Verdict::Accept
        );
        assert_eq!(l.latched(), Some(addr(SDP)));
    }

    #[test]
    fn a_natted_peer_is_latched_after_the_learning_window_with_enough_packets_in_a_row() {
        let t0 = Instant::now();
        let mut l = latch(t0);
        let nat = addr("198.51.100.7:31000");
        let mut at = t0;
        while at < t0 + Duration::from_secs(2) {
            assert_eq!(l.on_packet(nat, at), Verdict::Learning);
            at += Duration::from_millis(20);
        }
        // Another source in between starts the count again.
        assert_eq!(l.on_packet(addr("203.0.113.5:1"), at), Verdict::Learning);
        for _ in 0..4 {
            assert_eq!(l.on_packet(nat, at), Verdict::Learning);
        }
        assert_eq!(l.on_packet(nat, at), Verdict::Accept);
        assert_eq!(l.target(at), Some(nat));
    }

    #[test]
    fn media_stops_going_to_an_sdp_address_that_never_sends_after_the_learning_window() {
        let t0 = Instant::now();
        let l = latch(t0);
        assert_eq!(l.target(t0 + Duration::from_millis(1999)), Some(addr(SDP)));
        assert_eq!(l.target(t0 + Duration::from_secs(2)), None);
    }

    #[test]
    fn a_phone_warmline_dialled_keeps_getting_media_while_it_stays_silent() {
        let t0 = Instant::now();
        let config = LatchConfig {
            trust_sdp: true,
            ..LatchConfig::default()
        };
        let l = RtpLatch::new(addr(SDP), config, t0);
        assert_eq!(l.target(t0 + Duration::from_secs(30)), Some(addr(SDP)));
    }

    #[test]
    fn silence_for_the_media_timeout_ends_the_stream_but_not_while_on_hold() {
        let t0 = Instant::now();
        let mut l = latch(t0);
        l.on_packet(addr(SDP), t0);
        assert!(!l.timed_out(t0 + Duration::from_secs(59)));
        assert!(l.timed_out(t0 + Duration::from_secs(60)));
        l.update(addr(SDP), true, t0 + Duration::from_secs(10));
        assert!(!l.timed_out(t0 + Duration::from_secs(600)), "held");
        l.update(addr(SDP), false, t0 + Duration::from_secs(600));
        assert!(!l.timed_out(t0 + Duration::from_secs(659)));
        assert!(l.timed_out(t0 + Duration::from_secs(660)));
    }

    #[test]
    fn a_reinvite_to_a_new_address_learns_again() {
        let t0 = Instant::now();
        let mut l = latch(t0);
        l.on_packet(addr(SDP), t0);
        let moved = addr("192.0.2.99:5000");
        let t1 = t0 + Duration::from_secs(5);
        l.update(moved, false, t1);
        assert_eq!(l.latched(), None);
        assert_eq!(l.target(t1), Some(moved));
        assert_eq!(
            l.on_packet(addr(SDP), t1),
            Verdict::Learning,
            "the old address is a stranger now"
        );
        assert_eq!(l.on_packet(moved, t1), Verdict::Accept);
    }
}
