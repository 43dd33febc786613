//! Dead-peer detection for WebSocket legs, sans-IO: the leg tells it when it
//! heard anything from the peer and asks it, at [`Liveness::deadline`], what to
//! do now: nothing, send a ping, or give the peer up.
//!
//! Any frame counts as a sign of life (a Media Streams caller sends 50 a
//! second; a quiet console or agent answers the pings with pongs). A peer whose
//! process froze, whose network vanished without a FIN, or that stopped reading
//! its socket stops answering, and its leg ends after `dead_after` instead of
//! holding a call, an agent's availability or a file descriptor for hours.

use std::time::{Duration, Instant};

/// What the leg should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LivenessAction {
    /// Nothing yet.
    Wait,
    /// Send a ping (the peer has been quiet for a ping interval).
    Ping,
    /// Nothing heard for this long: end the leg.
    Dead {
        /// How long the peer has been silent.
        silent_for: Duration,
    },
}

/// Settings: how often to ping a quiet peer and when to give it up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LivenessConfig {
    /// Quiet for this long: ping (zero = never ping and never give up).
    pub ping_every: Duration,
    /// Quiet for this long: dead.
    pub dead_after: Duration,
}

impl LivenessConfig {
    /// From `server.ws_ping_interval_ms` and `server.ws_peer_timeout_ms`.
    pub(crate) fn from_server(server: &crate::config::ServerConfig) -> Self {
        LivenessConfig {
            ping_every: Duration::from_millis(server.ws_ping_interval_ms),
            dead_after: Duration::from_millis(server.ws_peer_timeout_ms),
        }
    }

    fn enabled(&self) -> bool {
        !self.ping_every.is_zero() && !self.dead_after.is_zero()
    }
}

/// One peer's liveness.
#[derive(Debug, Clone)]
pub(crate) struct Liveness {
    config: LivenessConfig,
    last_heard: Instant,
    next_ping: Instant,
}

/// How far away "never" is (a deadline a `sleep_until` can hold).
const NEVER: Duration = Duration::from_secs(365 * 24 * 3600);

impl Liveness {
    /// A peer just connected at `now`.
    pub(crate) fn new(config: LivenessConfig, now: Instant) -> Self {
        Liveness {
            config,
            last_heard: now,
            next_ping: now + config.ping_every,
        }
    }

    /// Something (any frame) arrived from the peer at `now`.
    pub(crate) fn heard(&mut self, now: Instant) {
        self.last_heard = now;
        self.next_ping = now + self.config.ping_every;
    }

    /// When [`Liveness::poll`] has something to say next.
    pub(crate) fn deadline(&self) -> Instant {
        if !self.config.enabled() {
            return self.last_heard + NEVER;
        }
        self.next_ping.min(self.last_heard + self.config.dead_after)
    }

    /// What to do at `now`.
    pub(crate) fn poll(&mut self, now: Instant) -> LivenessAction {
        if !self.config.enabled() {
            return LivenessAction::Wait;
        }
        let silent_for = now.saturating_duration_since(self.last_heard);
        if silent_for >= self.config.dead_after {
            return LivenessAction::Dead { silent_for };
        }
        if now >= self.next_ping {
            self.next_ping = now + self.config.ping_every;
            return LivenessAction::Ping;
        }
        LivenessAction::Wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> LivenessConfig {
        LivenessConfig {
            ping_every: Duration::from_secs(10),
            dead_after: Duration::from_secs(30),
        }
    }

    fn at(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    #[test]
    fn a_quiet_peer_is_pinged_each_interval_then_given_up() {
        let t0 = Instant::now();
        let mut l = Liveness::new(config(), t0);
        assert_eq!(l.poll(at(t0, 5)), LivenessAction::Wait);
        assert_eq!(l.deadline(), at(t0, 10));
        assert_eq!(l.poll(at(t0, 10)), LivenessAction::Ping);
        assert_eq!(l.poll(at(t0, 11)), LivenessAction::Wait);
        assert_eq!(l.poll(at(t0, 20)), LivenessAction::Ping);
        assert_eq!(l.deadline(), at(t0, 30));
        assert_eq!(
            l.poll(at(t0, 30)),
            LivenessAction::Dead {
                silent_for: Duration::from_secs(30)
            }
        );
    }

    #[test]
    fn a_peer_that_answers_is_never_given_up() {
        let t0 = Instant::now();
        let mut l = Liveness::new(config(), t0);
        for round in 0..60 {
            let due = l.deadline();
            assert_eq!(l.poll(due), LivenessAction::Ping, "round {round}");
            l.heard(due + Duration::from_millis(40)); // the pong
        }
        assert!(l.deadline() > at(t0, 600));
    }

    #[test]
    fn a_talking_peer_is_not_pinged() {
        let t0 = Instant::now();
        let mut l = Liveness::new(config(), t0);
        for ms in (20..60_000).step_by(20) {
            let now = t0 + Duration::from_millis(ms);
            l.heard(now);
            assert_eq!(l.poll(now), LivenessAction::Wait);
        }
    }

    #[test]
    fn zero_switches_detection_off() {
        let t0 = Instant::now();
        let mut l = Liveness::new(
            LivenessConfig {
                ping_every: Duration::ZERO,
                dead_after: Duration::from_secs(30),
            },
            t0,
        );
        assert_eq!(l.poll(at(t0, 3600)), LivenessAction::Wait);
        assert!(l.deadline() > at(t0, 3600));
    }
}
