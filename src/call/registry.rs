//! Calls known to the gateway: the ones in progress and the recently finished
//! ones with their timelines. Touched at call start and end only, never per frame.

use crate::call::timeline::Timeline;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;

/// How many finished calls are kept in memory by default.
pub const FINISHED_KEPT: usize = 256;
/// How many bytes of finished calls' timelines are kept in memory by default.
pub const FINISHED_BYTES: usize = 64 << 20;

/// What reaches a live call's session from outside it.
#[derive(Debug)]
pub enum ControlRequest {
    /// A supervisor's or operator's request.
    Call(crate::domain::CallControl),
    /// A supervisor's audio joins (replacing any earlier link).
    Monitor(crate::legs::MonitorLink),
    /// The supervisor on the call's audio changes mode (same link).
    MonitorMode {
        /// The supervisor's agent id.
        supervisor: String,
        /// The new mode.
        mode: crate::domain::SupervisorMode,
    },
}

/// Why a supervisor's hint could not go to a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HintError {
    /// The hint is empty.
    #[error("a hint needs some text")]
    Empty,
    /// No such call in progress.
    #[error("no live call {0}")]
    NoCall(String),
    /// The caller is not with the AI agent (waiting, with a person, callback).
    #[error("call {call} is not with the AI agent (stage {stage})")]
    NotWithAi {
        /// The call.
        call: String,
        /// Where its caller is.
        stage: &'static str,
    },
    /// The call's control queue is full or it is ending.
    #[error("{0}")]
    Busy(String),
}

/// Where the caller is, in their words (the browser caller page shows it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CallerStage {
    /// Talking with the AI assistant.
    #[default]
    Assistant,
    /// On hold for a person (queued, ringing, the whisper, or the agent's hold).
    Waiting,
    /// Talking with a person.
    WithPerson,
    /// Nobody could take the call: told about the callback.
    Callback,
}

impl CallerStage {
    /// The caller's stage after a handoff step (`None`: unchanged).
    pub fn after(step: crate::domain::HandoffStep) -> Option<CallerStage> {
        use crate::domain::HandoffStep as S;
        match step {
            S::Escalating
            | S::Queued
            | S::Requeued
            | S::Overflowed
            | S::Ringing
            | S::Answered
            | S::Declined
            | S::RingTimeout
            | S::WhisperStarted
            | S::AgentLeft
            | S::AgentDetached
            | S::AgentDisconnected
            | S::CallerHeld
            | S::ConsultDeclined
            | S::CallerWaits => Some(CallerStage::Waiting),
            S::Merged | S::AgentReattached | S::CallerResumed => Some(CallerStage::WithPerson),
            S::Transferred => Some(CallerStage::Waiting),
            S::NoAgent | S::CallerChoseCallback | S::CallbackSaved => Some(CallerStage::Callback),
            S::ReturnedToAi => Some(CallerStage::Assistant),
            S::Disclosure
            | S::Summary
            | S::WhisperSkipped
            | S::WhisperMissing
            | S::ConsultAsked
            | S::ConsultAccepted => None,
        }
    }
}

/// A call in progress.
#[derive(Debug, Clone, Serialize)]
pub struct ActiveCall {
    /// Gateway call id.
    pub call_id: String,
    /// Provider call id.
    pub call_sid: String,
    /// Provider stream id.
    pub stream_sid: String,
    /// Start, seconds since the Unix epoch.
    pub started_unix: f64,
    /// Where the caller is.
    pub stage: CallerStage,
    /// Since when they have waited for a person (Unix seconds), while waiting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting_since_unix: Option<f64>,
    /// The wait estimated when they joined the queue, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimated_wait_seconds: Option<u64>,
}

/// Counts for metrics and the API.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct CallCounts {
    /// Calls in progress.
    pub active: usize,
    /// Calls started since the gateway started.
    pub total: u64,
}

/// What the supervision board keeps of a live call.
#[derive(Debug, Default)]
struct Live {
    confidence: VecDeque<f32>,
    sentiment: VecDeque<f32>,
    unhelpful_run: u32,
    last_turn: Option<crate::domain::supervision::LastTurn>,
    agent: Option<String>,
    control: Option<tokio::sync::mpsc::Sender<ControlRequest>>,
}

/// Per-turn figures kept for the board.
const BOARD_POINTS: usize = 20;

impl CallerStage {
    /// The wire name (`assistant`, `waiting`, …).
    pub fn wire(self) -> &'static str {
        match self {
            CallerStage::Assistant => "assistant",
            CallerStage::Waiting => "waiting",
            CallerStage::WithPerson => "with_person",
            CallerStage::Callback => "callback",
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    active: BTreeMap<String, ActiveCall>,
    /// The board's figures, for calls in `active` only (see `live_entry`).
    live: BTreeMap<String, Live>,
    /// Finished timelines with their serialised size.
    finished: VecDeque<(Arc<Timeline>, usize)>,
    finished_bytes: usize,
    total: u64,
}

/// The gateway's calls.
#[derive(Debug)]
pub struct CallRegistry {
    inner: Mutex<Inner>,
    changed: Notify,
    keep: usize,
    keep_bytes: usize,
}

impl Default for CallRegistry {
    fn default() -> Self {
        CallRegistry::new(FINISHED_KEPT, FINISHED_BYTES)
    }
}

/// A call id: `call-`, the start in Unix milliseconds (hex, so ids sort by
/// start time) and 48 random bits (unguessable, unique across restarts and nodes).
fn mint_call_id(started_unix: f64) -> String {
    let ms = (started_unix * 1000.0) as u64;
    let random = crate::util::random_u64() & 0xffff_ffff_ffff;
    format!("call-{ms:011x}-{random:012x}")
}

impl Inner {
    /// The board's entry of a call in progress; none once it has finished,
    /// so a late turn cannot leave an entry behind.
    fn live_entry(&mut self, call_id: &str) -> Option<&mut Live> {
        if !self.active.contains_key(call_id) {
            return None;
        }
        Some(self.live.entry(call_id.to_string()).or_default())
    }
}

impl CallRegistry {
    /// A registry keeping at most `keep` finished calls and `keep_bytes` of their timelines.
    pub fn new(keep: usize, keep_bytes: usize) -> CallRegistry {
        CallRegistry {
            inner: Mutex::new(Inner::default()),
            changed: Notify::new(),
            keep: keep.max(1),
            keep_bytes,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a new call; returns the id the gateway minted for it.
    ///
    /// The id is never the caller-supplied `call_sid` (a Twilio CallSid, a SIP
    /// Call-ID, a browser's parameter): an outsider who reuses one must not
    /// reach, extend or overwrite another call's stored record. The provider's
    /// id stays an attribute of the call (`call_sid` here and in the store).
    pub fn begin(&self, call_sid: &str, stream_sid: &str, started_unix: f64) -> String {
        let mut inner = self.lock();
        inner.total += 1;
        let mut id = mint_call_id(started_unix);
        while inner.active.contains_key(&id) || inner.finished.iter().any(|(t, _)| t.call_id == id)
        {
            id = mint_call_id(started_unix);
        }
        inner.active.insert(
            id.clone(),
            ActiveCall {
                call_id: id.clone(),
                call_sid: call_sid.to_string(),
                stream_sid: stream_sid.to_string(),
                started_unix,
                stage: CallerStage::Assistant,
                waiting_since_unix: None,
                estimated_wait_seconds: None,
            },
        );
        drop(inner);
        self.changed.notify_waiters();
        id
    }

    /// Records where the caller is now.
    pub fn set_stage(&self, call_id: &str, stage: CallerStage) {
        let mut inner = self.lock();
        if let Some(call) = inner.active.get_mut(call_id) {
            if stage == CallerStage::Waiting && call.stage != CallerStage::Waiting {
                call.waiting_since_unix =
                    Some(crate::util::unix_seconds(std::time::SystemTime::now()));
            } else if stage != CallerStage::Waiting {
                call.waiting_since_unix = None;
            }
            call.stage = stage;
        }
    }

    /// Records the wait estimated when the call joined the queue.
    pub fn set_estimated_wait(&self, call_id: &str, wait: std::time::Duration) {
        if let Some(call) = self.lock().active.get_mut(call_id) {
            call.estimated_wait_seconds =
                (wait != std::time::Duration::MAX).then_some(wait.as_secs());
        }
    }

    /// Where a supervisor's requests for this call go (its session's channel).
    pub fn attach_control(
        &self,
        call_id: &str,
        control: tokio::sync::mpsc::Sender<ControlRequest>,
    ) {
        if let Some(live) = self.lock().live_entry(call_id) {
            live.control = Some(control);
        }
    }

    /// Where the caller of a call in progress is, if it is in progress.
    pub fn stage(&self, call_id: &str) -> Option<CallerStage> {
        self.lock().active.get(call_id).map(|c| c.stage)
    }

    /// Passes a supervisor's hint to a live call's AI agent (trimmed, at most
    /// [`crate::domain::supervision::MAX_HINT_CHARS`] characters kept).
    pub fn hint(&self, call_id: &str, supervisor: &str, text: &str) -> Result<(), HintError> {
        let text: String = text
            .trim()
            .chars()
            .take(crate::domain::supervision::MAX_HINT_CHARS)
            .collect();
        if text.is_empty() {
            return Err(HintError::Empty);
        }
        match self.stage(call_id) {
            None => return Err(HintError::NoCall(call_id.to_string())),
            Some(CallerStage::Assistant) => {}
            Some(stage) => {
                return Err(HintError::NotWithAi {
                    call: call_id.to_string(),
                    stage: stage.wire(),
                });
            }
        }
        let request = crate::domain::CallControl::Hint {
            supervisor: supervisor.to_string(),
            text,
        };
        self.control(call_id, request).map_err(HintError::Busy)
    }

    /// Passes a supervisor's request to a live call.
    pub fn control(
        &self,
        call_id: &str,
        request: crate::domain::CallControl,
    ) -> Result<(), String> {
        self.send_control(call_id, ControlRequest::Call(request))
    }

    /// Connects a supervisor's audio to a live call (listen, coach, barge).
    pub fn monitor(&self, call_id: &str, link: crate::legs::MonitorLink) -> Result<(), String> {
        self.send_control(call_id, ControlRequest::Monitor(link))
    }

    /// Changes how the supervisor already on a call's audio takes part.
    pub fn monitor_mode(
        &self,
        call_id: &str,
        supervisor: &str,
        mode: crate::domain::SupervisorMode,
    ) -> Result<(), String> {
        self.send_control(
            call_id,
            ControlRequest::MonitorMode {
                supervisor: supervisor.to_string(),
                mode,
            },
        )
    }

    fn send_control(&self, call_id: &str, request: ControlRequest) -> Result<(), String> {
        let inner = self.lock();
        let tx = inner
            .live
            .get(call_id)
            .and_then(|l| l.control.clone())
            .ok_or_else(|| format!("no live call {call_id}"))?;
        drop(inner);
        tx.try_send(request)
            .map_err(|_| format!("call {call_id} is busy or ending; try again"))
    }

    /// A turn of a live call, with the monitor's figures, for the board.
    pub fn observe_turn(
        &self,
        call_id: &str,
        role: crate::domain::Role,
        text: &str,
        confidence: Option<f32>,
        helpful: Option<bool>,
        sentiment: Option<f32>,
    ) {
        let mut inner = self.lock();
        let Some(live) = inner.live_entry(call_id) else {
            return;
        };
        let push = |q: &mut VecDeque<f32>, v: f32| {
            if q.len() >= BOARD_POINTS {
                q.pop_front();
            }
            q.push_back(v);
        };
        if let Some(c) = confidence {
            push(&mut live.confidence, c);
        }
        if let Some(s) = sentiment {
            push(&mut live.sentiment, s);
        }
        match helpful {
            Some(false) => live.unhelpful_run += 1,
            Some(true) => live.unhelpful_run = 0,
            None => {}
        }
        live.last_turn = Some(crate::domain::supervision::LastTurn {
            role,
            text: text.chars().take(160).collect(),
        });
    }

    /// The human agent now on a live call.
    pub fn set_human_agent(&self, call_id: &str, agent: Option<&str>) {
        if let Some(live) = self.lock().live_entry(call_id) {
            live.agent = agent.map(str::to_string);
        }
    }

    /// Every live call as a supervisor sees it, oldest first.
    pub fn board(&self) -> Vec<crate::domain::LiveCallView> {
        let inner = self.lock();
        let now = crate::util::unix_seconds(std::time::SystemTime::now());
        let mut calls: Vec<_> = inner
            .active
            .values()
            .map(|c| {
                let live = inner.live.get(&c.call_id);
                let confidence: Vec<f32> = live
                    .map(|l| l.confidence.iter().copied().collect())
                    .unwrap_or_default();
                let sentiment: Vec<f32> = live
                    .map(|l| l.sentiment.iter().copied().collect())
                    .unwrap_or_default();
                let risk = crate::domain::supervision::escalation_risk(
                    &confidence,
                    live.map_or(0, |l| l.unhelpful_run),
                    &sentiment,
                );
                crate::domain::LiveCallView {
                    call_id: c.call_id.clone(),
                    stage: c.stage.wire(),
                    duration_seconds: (now - c.started_unix).max(0.0) as u64,
                    agent: live.and_then(|l| l.agent.clone()),
                    last_turn: live.and_then(|l| l.last_turn.clone()),
                    sentiment,
                    confidence,
                    risk,
                }
            })
            .collect();
        calls.sort_by_key(|c| std::cmp::Reverse(c.duration_seconds));
        calls
    }

    /// A call in progress, by id.
    pub fn active_call(&self, call_id: &str) -> Option<ActiveCall> {
        self.lock().active.get(call_id).cloned()
    }

    /// Moves a call to the finished list with its timeline.
    pub fn finish(&self, timeline: Timeline) {
        // Measured once, at the end: what the timeline costs in memory is about its JSON.
        let bytes = serde_json::to_vec(&timeline).map(|v| v.len()).unwrap_or(0);
        let mut inner = self.lock();
        inner.active.remove(&timeline.call_id);
        inner.live.remove(&timeline.call_id);
        inner.finished.push_back((Arc::new(timeline), bytes));
        inner.finished_bytes += bytes;
        while inner.finished.len() > self.keep
            || (inner.finished_bytes > self.keep_bytes && inner.finished.len() > 1)
        {
            if let Some((_, b)) = inner.finished.pop_front() {
                inner.finished_bytes -= b;
            }
        }
        drop(inner);
        self.changed.notify_waiters();
    }

    /// Calls in progress.
    pub fn active(&self) -> Vec<ActiveCall> {
        self.lock().active.values().cloned().collect()
    }

    /// Counts.
    pub fn counts(&self) -> CallCounts {
        let inner = self.lock();
        CallCounts {
            active: inner.active.len(),
            total: inner.total,
        }
    }

    /// Timelines of recently finished calls, oldest first.
    pub fn finished(&self) -> Vec<Arc<Timeline>> {
        self.lock()
            .finished
            .iter()
            .map(|(t, _)| Arc::clone(t))
            .collect()
    }

    /// The timeline of a finished call.
    pub fn timeline(&self, call_id: &str) -> Option<Arc<Timeline>> {
        self.lock()
            .finished
            .iter()
            .find(|(t, _)| t.call_id == call_id)
            .map(|(t, _)| Arc::clone(t))
    }

    /// Waits until at least `count` calls have finished, up to `timeout`.
    /// Returns the finished timelines (may be fewer on timeout).
    pub async fn wait_finished(&self, count: usize, timeout: Duration) -> Vec<Arc<Timeline>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let done = self.finished();
            if done.len() >= count {
                return done;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.finished();
            }
        }
    }
}
