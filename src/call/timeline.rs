//! Per-call timeline: typed events with monotonic timestamps, serialised to JSON.

use crate::domain::{HandoffStep, Party, Role, Trigger, Urgency};
use crate::util::unix_seconds;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Instant, SystemTime};

/// Who flushed the caller's audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClearedBy {
    /// The AI agent sent `clear`.
    Agent,
    /// The gateway's VAD heard the caller talk over the agent.
    CallerSpeech,
}

/// How a call ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "code", content = "detail", rename_all = "snake_case")]
pub enum EndReason {
    /// The provider sent `stop` (the caller hung up).
    CallerHangup,
    /// The caller's socket broke without `stop`.
    CallerLost(String),
    /// The AI agent closed the stream in an orderly way.
    AgentHangup,
    /// The AI agent could not be reached or dropped; the caller heard an apology.
    AgentUnavailable(String),
    /// Too many refused messages in a row.
    ProtocolErrors(String),
    /// The gateway is shutting down.
    Shutdown,
    /// The human agent ended the call after the handoff.
    HumanAgentHangup,
    /// Nobody could take the call; a callback was saved.
    CallbackScheduled(String),
    /// The call reached `server.max_call_seconds`.
    TimeLimit,
    /// The caller's media stopped for `sip.media_timeout_ms` (a lost BYE, a dead peer).
    MediaTimeout(String),
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TimelineKind {
    /// The provider started the stream.
    CallStarted {
        /// Provider call id.
        call_sid: String,
        /// Provider stream id.
        stream_sid: String,
    },
    /// The AI agent's socket is up.
    AgentConnected,
    /// The AI agent could not be reached.
    AgentUnreachable {
        /// Why.
        error: String,
    },
    /// The AI agent's socket broke mid-call.
    AgentLost {
        /// Why.
        error: String,
    },
    /// A conversation turn.
    Turn {
        /// Who spoke.
        role: Role,
        /// What was said.
        content: String,
        /// Agent confidence, when given.
        #[serde(skip_serializing_if = "Option::is_none")]
        confidence: Option<f32>,
    },
    /// The agent asked for a human.
    EscalationRequested {
        /// Reason code.
        trigger: Trigger,
        /// Human-readable reason.
        description: String,
        /// Urgency.
        urgency: Urgency,
    },
    /// The agent used a tool.
    ToolUsed {
        /// Tool name.
        name: String,
        /// Success.
        ok: bool,
        /// Detail.
        #[serde(skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
        /// Arguments, as the agent sent them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        args: Option<Box<serde_json::Value>>,
        /// Result, as the agent sent it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        result: Option<Box<serde_json::Value>>,
    },
    /// Customer details from the agent.
    Customer {
        /// The fields.
        data: serde_json::Map<String, serde_json::Value>,
    },
    /// Intent details from the agent.
    Intent {
        /// The fields.
        data: serde_json::Map<String, serde_json::Value>,
    },
    /// The caller's provider reported a mark as played.
    MarkPlayed {
        /// The mark's label.
        name: String,
    },
    /// The caller's queued audio was flushed.
    Cleared {
        /// Who asked.
        by: ClearedBy,
        /// Frames dropped from the gateway's queue.
        frames_dropped: usize,
    },
    /// The monitor decided a human must take over.
    EscalationDecided {
        /// Reason code.
        trigger: Trigger,
        /// Urgency.
        urgency: Urgency,
        /// Why, for a human.
        description: String,
        /// Rule that fired.
        rule: String,
        /// Transcript indices that justify it.
        evidence: Vec<usize>,
        /// Why, in full: `event` (the event it was made on: index among the
        /// monitored events, kind, turn), `labels` (what each turn did, with
        /// scores), `unhelpful` (the agent turns that counted, and why), and
        /// `monitor` (`classifier` or `rules`).
        #[serde(default)]
        why: Box<serde_json::Value>,
        /// From the triggering event to the decision, µs.
        decision_latency_us: u64,
        /// Where the context's summary came from.
        summary: serde_json::Value,
    },
    /// The whisper brief was rendered (ready to play the moment an agent answers).
    WhisperRendered {
        /// Its text.
        text: String,
        /// Its duration, s.
        seconds: f64,
        /// Renders it took to fit the window.
        renders: usize,
        /// Wall time of the renders, ms.
        render_ms: f64,
        /// Engine used.
        engine: String,
        /// The primary engine's failure, when the fallback was used.
        #[serde(skip_serializing_if = "Option::is_none")]
        tts_failure: Option<String>,
    },
    /// The whisper brief could not be made.
    WhisperFailed {
        /// Why.
        error: String,
    },
    /// The human agent's first words after the merge (VAD on their leg).
    AgentFirstWords {
        /// The human agent.
        agent: String,
        /// From the merge, ms.
        after_merge_ms: u64,
    },
    /// A step of the warm handoff.
    HandoffStep {
        /// Which step.
        step: HandoffStep,
        /// The human agent concerned.
        #[serde(skip_serializing_if = "Option::is_none")]
        agent: Option<String>,
        /// More.
        #[serde(skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// A keypad digit from the caller.
    Dtmf {
        /// The digit.
        digit: char,
    },
    /// A spoken gateway prompt started (e.g. the apology).
    PromptStarted {
        /// Prompt name.
        name: String,
    },
    /// Audio was dropped (queue full, leg gone).
    AudioDropped {
        /// Towards which leg.
        leg: Party,
        /// Why.
        reason: String,
    },
    /// A message was refused.
    ProtocolError {
        /// From which leg.
        leg: Party,
        /// The error.
        error: String,
    },
    /// A supervisor joined the call's audio (`mode`), changed mode, or left
    /// (`mode` absent).
    Supervision {
        /// The supervisor's agent id.
        supervisor: String,
        /// Listen, coach or barge; absent when they left.
        #[serde(skip_serializing_if = "Option::is_none")]
        mode: Option<crate::domain::SupervisorMode>,
    },
    /// A supervisor sent the AI agent a text hint (`supervisor_hint`).
    SupervisorHint {
        /// The supervisor's agent id.
        supervisor: String,
        /// The hint.
        text: String,
    },
    /// The call is over.
    CallEnded {
        /// Why.
        reason: EndReason,
    },
}

/// One timeline entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineEntry {
    /// Milliseconds since the call started (monotonic clock).
    pub at_ms: f64,
    /// The event.
    #[serde(flatten)]
    pub kind: TimelineKind,
}

/// The timeline of one call.
#[derive(Debug, Clone, Serialize)]
pub struct Timeline {
    /// The call's id.
    pub call_id: String,
    /// Wall-clock start, seconds since the Unix epoch.
    pub started_unix: f64,
    /// The events in order.
    pub events: Vec<TimelineEntry>,
    /// Events counted but not kept (a peer flooding refused messages, digits or
    /// marks, or a call longer than the timeline's cap), by type.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub suppressed: BTreeMap<&'static str, u64>,
    #[serde(skip)]
    kept: BTreeMap<&'static str, usize>,
    #[serde(skip)]
    max_events: usize,
    #[serde(skip)]
    started: Option<Instant>,
}

/// Most events a timeline keeps unless told otherwise (`server.max_timeline_events`).
pub const MAX_TIMELINE_EVENTS: usize = 5000;

/// The event types a peer can repeat at will, and how many of each a call keeps.
fn repeatable(kind: &TimelineKind) -> Option<(&'static str, usize)> {
    match kind {
        TimelineKind::ProtocolError { .. } => Some(("protocol_error", 20)),
        TimelineKind::AudioDropped { .. } => Some(("audio_dropped", 20)),
        TimelineKind::Dtmf { .. } => Some(("dtmf", 200)),
        TimelineKind::MarkPlayed { .. } => Some(("mark_played", 500)),
        TimelineKind::Cleared { .. } => Some(("cleared", 500)),
        _ => None,
    }
}

impl Timeline {
    /// An empty timeline starting at `started` (monotonic) / `wall` (for display).
    pub fn new(call_id: impl Into<String>, started: Instant, wall: SystemTime) -> Self {
        Timeline {
            call_id: call_id.into(),
            started_unix: unix_seconds(wall),
            events: Vec::new(),
            suppressed: BTreeMap::new(),
            kept: BTreeMap::new(),
            max_events: MAX_TIMELINE_EVENTS,
            started: Some(started),
        }
    }

    /// Keeps at most `max` events (the end of the call and the escalation
    /// decision are always kept).
    pub fn with_max_events(mut self, max: usize) -> Self {
        self.max_events = max.max(16);
        self
    }

    /// Whether `kind` is kept; counts it as suppressed if not.
    fn keeps(&mut self, kind: &TimelineKind) -> bool {
        let essential = matches!(
            kind,
            TimelineKind::CallEnded { .. } | TimelineKind::EscalationDecided { .. }
        );
        let (name, cap) = match repeatable(kind) {
            Some(r) => r,
            None if self.events.len() < self.max_events || essential => return true,
            None => ("other", 0),
        };
        let kept = self.kept.entry(name).or_default();
        if *kept < cap && self.events.len() < self.max_events {
            *kept += 1;
            return true;
        }
        *self.suppressed.entry(name).or_default() += 1;
        false
    }

    /// Records an event that happened at `now` (unless over its cap: then it is only counted).
    pub fn push(&mut self, now: Instant, kind: TimelineKind) {
        if !self.keeps(&kind) {
            return;
        }
        let at = self
            .started
            .map(|s| now.saturating_duration_since(s))
            .unwrap_or_default();
        self.events.push(TimelineEntry {
            at_ms: (at.as_secs_f64() * 1000.0 * 10.0).round() / 10.0,
            kind,
        });
    }

    /// The conversation turns, in order.
    pub fn turns(&self) -> impl Iterator<Item = (Role, &str)> {
        self.events.iter().filter_map(|e| match &e.kind {
            TimelineKind::Turn { role, content, .. } => Some((*role, content.as_str())),
            _ => None,
        })
    }

    /// How the call ended, once it has.
    pub fn end_reason(&self) -> Option<&EndReason> {
        self.events.iter().rev().find_map(|e| match &e.kind {
            TimelineKind::CallEnded { reason } => Some(reason),
            _ => None,
        })
    }
}
