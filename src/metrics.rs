//! Live metrics in the Prometheus text format (`GET /metrics`): counters,
//! gauges and histograms on atomics, cheap enough for the per-frame path.
//! Labelled families keep their series in a small map behind a mutex; they are
//! touched per call or per handoff, never per frame.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// A histogram with fixed bucket bounds (in the unit of its name).
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    /// Sum in millionths of the unit (fixed point, so it fits an atomic).
    sum_micro: AtomicU64,
}

impl Histogram {
    /// A histogram with these upper bounds (ascending; +Inf is implied).
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micro: AtomicU64::new(0),
        }
    }

    /// Records one value.
    pub fn observe(&self, value: f64) {
        let i = self
            .bounds
            .iter()
            .position(|&b| value <= b)
            .unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micro
            .fetch_add((value.max(0.0) * 1e6) as u64, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, bound) in self.bounds.iter().enumerate() {
            cumulative += self.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count()
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let sum = self.sum_micro.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {}", self.count());
    }
}

/// Per-frame processing time buckets, seconds (5 µs … 5 ms).
const FRAME_BUCKETS: &[f64] = &[
    0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005,
];
/// Handoff stage buckets, seconds.
const STAGE_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Whisper length buckets, seconds.
const WHISPER_BUCKETS: &[f64] = &[5.0, 8.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 20.0];
/// RTP jitter buckets, seconds.
const JITTER_BUCKETS: &[f64] = &[0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1];

/// Everything `/metrics` shows, except what is read from other state at render time.
#[derive(Debug)]
pub struct Metrics {
    /// Time the call task spends on one caller frame (bridge + hand-off to the legs).
    pub frame_processing: Histogram,
    /// Whisper lengths.
    pub whisper_seconds: Histogram,
    escalations: Mutex<BTreeMap<(String, String), u64>>,
    stages: Mutex<BTreeMap<&'static str, Histogram>>,
    rtp_received: Mutex<BTreeMap<&'static str, u64>>,
    rtp_lost: Mutex<BTreeMap<&'static str, u64>>,
    rtp_jitter: Mutex<BTreeMap<&'static str, Histogram>>,
    peer_drops: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    returns_to_ai: Mutex<BTreeMap<&'static str, u64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            frame_processing: Histogram::new(FRAME_BUCKETS),
            whisper_seconds: Histogram::new(WHISPER_BUCKETS),
            escalations: Mutex::default(),
            stages: Mutex::default(),
            rtp_received: Mutex::default(),
            rtp_lost: Mutex::default(),
            rtp_jitter: Mutex::default(),
            peer_drops: Mutex::default(),
            returns_to_ai: Mutex::default(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What `/metrics` reads from elsewhere at render time.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Calls in progress.
    pub calls_active: usize,
    /// Calls since start.
    pub calls_total: u64,
    /// Per skill ("" = any agent): calls waiting, estimated wait of the next one (s).
    pub queues: Vec<(String, usize, f64)>,
    /// Agents by status.
    pub agents: Vec<(&'static str, usize)>,
    /// Browser (WebRTC) callers in progress.
    pub webrtc_calls_active: usize,
    /// Whether the gateway is draining (SIGTERM received).
    pub draining: bool,
    /// Tokio tasks alive (a leak shows as growth with calls served).
    pub tasks_alive: usize,
    /// In a cluster: routing work waiting for PostgreSQL, and whether the last
    /// heartbeat reached it.
    pub cluster: Option<(usize, bool)>,
    /// The escalation monitor runs the phrase rules (its classifier heads did not load).
    pub monitor_fallback: bool,
    /// The RTP relay plane, when running: calls it relays now, packets
    /// forwarded and datagrams dropped since start.
    pub relay_plane: Option<(u64, u64, u64)>,
}

impl Metrics {
    /// Counts an escalation.
    pub fn escalation(&self, trigger: &str, urgency: &str) {
        *lock(&self.escalations)
            .entry((trigger.to_string(), urgency.to_string()))
            .or_default() += 1;
    }

    /// Counts a caller going back to the AI agent (`outcome`: completed, no_agent).
    pub fn returned_to_ai(&self, outcome: &'static str) {
        *lock(&self.returns_to_ai).entry(outcome).or_default() += 1;
    }

    /// Records how long a handoff stage took.
    pub fn stage(&self, stage: &'static str, seconds: f64) {
        lock(&self.stages)
            .entry(stage)
            .or_insert_with(|| Histogram::new(STAGE_BUCKETS))
            .observe(seconds);
    }

    /// Adds an RTP leg's figures at its end (`leg`: caller or agent).
    pub fn rtp_leg(&self, leg: &'static str, received: u64, lost: u64, jitter_seconds: f64) {
        *lock(&self.rtp_received).entry(leg).or_default() += received;
        *lock(&self.rtp_lost).entry(leg).or_default() += lost;
        lock(&self.rtp_jitter)
            .entry(leg)
            .or_insert_with(|| Histogram::new(JITTER_BUCKETS))
            .observe(jitter_seconds);
    }

    /// What a peer's guard dropped or suppressed in one call (added at call end):
    /// `peer` is `caller` or `agent`, `kind` what was dropped.
    pub fn peer_drops(&self, peer: &'static str, kind: &'static str, n: u64) {
        if n > 0 {
            *lock(&self.peer_drops).entry((peer, kind)).or_default() += n;
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self, snap: &Snapshot) -> String {
        let mut out = String::with_capacity(8192);
        let head = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        head(
            &mut out,
            "warmline_calls_active",
            "gauge",
            "Calls in progress.",
        );
        let _ = writeln!(out, "warmline_calls_active {}", snap.calls_active);
        head(
            &mut out,
            "warmline_webrtc_calls_active",
            "gauge",
            "Browser (WebRTC) callers in progress.",
        );
        let _ = writeln!(
            out,
            "warmline_webrtc_calls_active {}",
            snap.webrtc_calls_active
        );
        head(
            &mut out,
            "warmline_draining",
            "gauge",
            "1 while draining after SIGTERM (new calls refused).",
        );
        let _ = writeln!(out, "warmline_draining {}", u8::from(snap.draining));
        head(
            &mut out,
            "warmline_monitor_rule_fallback",
            "gauge",
            "1 when the escalation monitor runs the phrase rules because its classifier heads did not load.",
        );
        let _ = writeln!(
            out,
            "warmline_monitor_rule_fallback {}",
            u8::from(snap.monitor_fallback)
        );
        head(
            &mut out,
            "warmline_tasks_alive",
            "gauge",
            "Tokio tasks alive (legs, calls, consoles, the server).",
        );
        let _ = writeln!(out, "warmline_tasks_alive {}", snap.tasks_alive);
        if let Some((active, forwarded, dropped)) = snap.relay_plane {
            head(
                &mut out,
                "warmline_relay_plane_calls",
                "gauge",
                "Merged calls whose RTP the relay plane forwards now.",
            );
            let _ = writeln!(out, "warmline_relay_plane_calls {active}");
            head(
                &mut out,
                "warmline_relay_plane_packets_total",
                "counter",
                "RTP packets the relay plane forwarded.",
            );
            let _ = writeln!(out, "warmline_relay_plane_packets_total {forwarded}");
            head(
                &mut out,
                "warmline_relay_plane_dropped_total",
                "counter",
                "Datagrams the relay plane dropped (not from the latched peer, not RTP, a payload type the other leg lacks).",
            );
            let _ = writeln!(out, "warmline_relay_plane_dropped_total {dropped}");
        }
        if let Some((pending, database_up)) = snap.cluster {
            head(
                &mut out,
                "warmline_cluster_pending_ops",
                "gauge",
                "Routing work (queue joins, declines, presence) waiting for PostgreSQL.",
            );
            let _ = writeln!(out, "warmline_cluster_pending_ops {pending}");
            head(
                &mut out,
                "warmline_cluster_database_up",
                "gauge",
                "1 when this node's last cluster heartbeat reached PostgreSQL.",
            );
            let _ = writeln!(
                out,
                "warmline_cluster_database_up {}",
                u8::from(database_up)
            );
        }
        head(
            &mut out,
            "warmline_calls_total",
            "counter",
            "Calls since the gateway started.",
        );
        let _ = writeln!(out, "warmline_calls_total {}", snap.calls_total);

        head(
            &mut out,
            "warmline_escalations_total",
            "counter",
            "Escalations to a human, by trigger and urgency.",
        );
        for ((trigger, urgency), n) in lock(&self.escalations).iter() {
            let _ = writeln!(
                out,
                "warmline_escalations_total{{trigger=\"{}\",urgency=\"{}\"}} {n}",
                escape(trigger),
                escape(urgency)
            );
        }
        head(
            &mut out,
            "warmline_returns_to_ai_total",
            "counter",
            "Callers given back to the AI agent after a handoff, by outcome.",
        );
        for (outcome, n) in lock(&self.returns_to_ai).iter() {
            let _ = writeln!(
                out,
                "warmline_returns_to_ai_total{{outcome=\"{outcome}\"}} {n}"
            );
        }
        head(
            &mut out,
            "warmline_whisper_seconds",
            "histogram",
            "Length of the whisper brief played to the human agent.",
        );
        self.whisper_seconds
            .render(&mut out, "warmline_whisper_seconds", "");
        head(
            &mut out,
            "warmline_handoff_stage_seconds",
            "histogram",
            "Time between handoff steps: decision_to_ringing, ringing_to_answered, answered_to_whisper, whisper_to_merged.",
        );
        for (stage, h) in lock(&self.stages).iter() {
            h.render(
                &mut out,
                "warmline_handoff_stage_seconds",
                &format!("stage=\"{stage}\""),
            );
        }
        head(
            &mut out,
            "warmline_frame_processing_seconds",
            "histogram",
            "Call task time per caller frame: bridge, routing matrix, hand-off to the legs' queues.",
        );
        self.frame_processing
            .render(&mut out, "warmline_frame_processing_seconds", "");

        head(
            &mut out,
            "warmline_peer_drops_total",
            "counter",
            "What a peer sent beyond its limits, dropped and counted (server.max_*): by peer and kind.",
        );
        for ((peer, kind), n) in lock(&self.peer_drops).iter() {
            let _ = writeln!(
                out,
                "warmline_peer_drops_total{{peer=\"{peer}\",kind=\"{kind}\"}} {n}"
            );
        }
        head(
            &mut out,
            "warmline_rtp_packets_received_total",
            "counter",
            "RTP packets accepted, by leg (summed at leg end).",
        );
        for (leg, n) in lock(&self.rtp_received).iter() {
            let _ = writeln!(
                out,
                "warmline_rtp_packets_received_total{{leg=\"{leg}\"}} {n}"
            );
        }
        head(
            &mut out,
            "warmline_rtp_packets_lost_total",
            "counter",
            "RTP packets declared lost by the receive buffer, by leg.",
        );
        for (leg, n) in lock(&self.rtp_lost).iter() {
            let _ = writeln!(out, "warmline_rtp_packets_lost_total{{leg=\"{leg}\"}} {n}");
        }
        head(
            &mut out,
            "warmline_rtp_jitter_seconds",
            "histogram",
            "Interarrival jitter (RFC 3550) at each RTP leg's end, by leg.",
        );
        for (leg, h) in lock(&self.rtp_jitter).iter() {
            h.render(
                &mut out,
                "warmline_rtp_jitter_seconds",
                &format!("leg=\"{leg}\""),
            );
        }

        head(
            &mut out,
            "warmline_queue_waiting",
            "gauge",
            "Calls waiting for a human agent, by skill (\"\" = any agent).",
        );
        for (skill, waiting, _) in &snap.queues {
            let _ = writeln!(
                out,
                "warmline_queue_waiting{{skill=\"{}\"}} {waiting}",
                escape(skill)
            );
        }
        head(
            &mut out,
            "warmline_queue_estimated_wait_seconds",
            "gauge",
            "Estimated wait of the next call joining, by skill (+Inf: nobody online).",
        );
        for (skill, _, wait) in &snap.queues {
            let wait = if wait.is_finite() {
                wait.to_string()
            } else {
                "+Inf".into()
            };
            let _ = writeln!(
                out,
                "warmline_queue_estimated_wait_seconds{{skill=\"{}\"}} {wait}",
                escape(skill)
            );
        }
        head(
            &mut out,
            "warmline_agents",
            "gauge",
            "Human agents by status (console connected or not).",
        );
        for (status, n) in &snap.agents {
            let _ = writeln!(out, "warmline_agents{{status=\"{status}\"}} {n}");
        }
        out
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_with_sum_and_count() {
        let h = Histogram::new(&[1.0, 5.0]);
        for v in [0.5, 2.0, 3.0, 9.0] {
            h.observe(v);
        }
        let mut out = String::new();
        h.render(&mut out, "x", "leg=\"caller\"");
        assert_eq!(
            out,
            "x_bucket{leg=\"caller\",le=\"1\"} 1\nx_bucket{leg=\"caller\",le=\"5\"} 3\n\
             x_bucket{leg=\"caller\",le=\"+Inf\"} 4\nx_sum{leg=\"caller\"} 14.5\nx_count{leg=\"caller\"} 4\n"
        );
    }

    #[test]
    fn labels_are_escaped_and_every_family_is_typed() {
        let m = Metrics::default();
        m.escalation("customer_request", "high\"");
        m.stage("decision_to_ringing", 0.03);
        m.rtp_leg("caller", 250, 2, 0.004);
        let text = m.render(&Snapshot {
            calls_active: 1,
            calls_total: 3,
            queues: vec![("billing".into(), 2, f64::INFINITY)],
            agents: vec![("available", 1)],
            webrtc_calls_active: 2,
            draining: true,
            tasks_alive: 7,
            cluster: Some((3, false)),
            monitor_fallback: true,
            relay_plane: Some((2, 500, 1)),
        });
        assert!(text.contains("warmline_relay_plane_packets_total 500"));
        assert!(text.contains("warmline_monitor_rule_fallback 1"));
        assert!(text.contains("warmline_tasks_alive 7"));
        assert!(text.contains("warmline_cluster_pending_ops 3"));
        assert!(text.contains("warmline_cluster_database_up 0"));
        assert!(text.contains("warmline_webrtc_calls_active 2"));
        assert!(text.contains("warmline_draining 1"));
        assert!(text.contains(
            "warmline_escalations_total{trigger=\"customer_request\",urgency=\"high\\\"\"} 1"
        ));
        assert!(
            text.contains("warmline_handoff_stage_seconds_count{stage=\"decision_to_ringing\"} 1")
        );
        assert!(text.contains("warmline_rtp_packets_lost_total{leg=\"caller\"} 2"));
        assert!(text.contains("warmline_queue_estimated_wait_seconds{skill=\"billing\"} +Inf"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap_or("");
            let family = name
                .trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count");
            assert!(text.contains(&format!("# TYPE {family} ")), "{line}");
        }
    }
}
