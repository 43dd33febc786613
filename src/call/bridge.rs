//! The sans-IO core of one call in the AI phase: caller ⇄ AI agent.
//!
//! Modelled on `str0m`/`quinn-proto`: feed it leg events with the time they
//! happened ([`CallBridge::handle_caller`], [`CallBridge::handle_agent`]), then
//! drain [`CallBridge::poll_output`] and sleep until [`CallBridge::poll_at`].
//! It never reads a clock, owns no socket and never blocks.
//!
//! μ-law from the caller goes to the agent byte for byte, and μ-law from the
//! agent goes to the caller byte for byte through a paced playout queue that
//! the bridge owns, so it can flush (barge-in) or switch source instantly.
//!
//! After an escalation the [`Handoff`] state machine decides who hears what
//! (its routing matrix); the handoff half of the bridge lives in
//! `bridge/handoff_flow.rs`. The whisper only ever enters the human agent's
//! playout queue, never the caller's.

mod handoff_flow;
mod relay;
mod supervision;

pub use handoff_flow::{HandoffPrompts, RoutingRequest};

use crate::call::guard::{Dropped, PeerGuard, PeerLimits, Refusal};
use crate::call::handoff::{Handoff, HandoffState, HandoffTimers};
use crate::call::timeline::{ClearedBy, EndReason, TimelineKind};
use crate::domain::Role;
use crate::domain::{GatewayMark, Party};
use crate::legs::media_streams::ProtocolError;
use crate::legs::{HangupCause, LegCommand, LegEvent};
use crate::media::g711;
use crate::media::hold::HoldTone;
use crate::media::mixer::{Listener, Source};
use crate::media::playout::{FRAME, Playout, PlayoutOutput};
use crate::media::vad::{EnergyVad, VadConfig, VadEvent};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Tuning of the bridge.
#[derive(Debug, Clone)]
pub struct BridgeConfig {
    /// How far ahead of real time audio is released to the caller's provider.
    pub playout_lead: Duration,
    /// Most frames the caller's playout queue holds (longer agent bursts are dropped).
    pub max_playout_frames: usize,
    /// Flush the agent's audio when the gateway hears the caller speak over it.
    pub barge_in_on_caller_speech: bool,
    /// VAD tuning for barge-in.
    pub vad: VadConfig,
    /// What one peer may cost the call (refused messages, digits, media speed, marks).
    pub limits: PeerLimits,
    /// Extra time to wait for the provider to echo the final mark.
    pub end_mark_grace: Duration,
    /// Handoff timeouts.
    pub handoff: HandoffTimers,
    /// Personal data replaced in the agent's text as it enters the call.
    pub redactor: std::sync::Arc<crate::util::pii::Redactor>,
    /// When nobody can take the call, the caller goes back to the AI agent
    /// (told `no_agent`) instead of a callback, once per call.
    pub no_agent_to_ai: bool,
    /// A merged call between two RTP legs is handed to the relay plane once
    /// steady (off when the call is recorded or there is no plane).
    pub direct_relay: bool,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        BridgeConfig {
            playout_lead: Duration::from_millis(40),
            max_playout_frames: 3000,
            barge_in_on_caller_speech: true,
            vad: VadConfig::default(),
            limits: PeerLimits::default(),
            end_mark_grace: Duration::from_secs(2),
            handoff: HandoffTimers::default(),
            redactor: std::sync::Arc::new(crate::util::pii::Redactor::off()),
            no_agent_to_ai: false,
            direct_relay: false,
        }
    }
}

/// What the bridge asks its driver to do.
#[derive(Debug, Clone, PartialEq)]
pub enum BridgeOutput {
    /// Audio for a supervisor on the call (the caller and whoever the caller
    /// hears, mixed; never the whisper).
    ToSupervisor(Vec<u8>),
    /// The caller is back with the AI agent: the queue and any offer are left,
    /// and, when `redial`, the AI agent's leg (closed at the merge) is dialled
    /// again (a `ToAgent` for the new leg follows).
    ReturnedToAi {
        /// The AI leg must be dialled again.
        redial: bool,
        /// How the handoff ended.
        outcome: crate::domain::HandoffOutcome,
    },
    /// Send to the caller's leg.
    ToCaller(LegCommand),
    /// Send to the AI agent's leg.
    ToAgent(LegCommand),
    /// Send to the human agent's leg.
    ToHuman(LegCommand),
    /// Ask routing for something.
    Routing(RoutingRequest),
    /// Record on the call's timeline.
    Timeline(TimelineKind),
    /// The call is over; nothing more will be output.
    Ended(EndReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AgentState {
    Connecting,
    Up,
    Gone,
}

#[derive(Debug)]
struct Finishing {
    reason: EndReason,
    deadline: Instant,
}

/// What the caller hears when the AI agent fails (μ-law 8 kHz).
#[derive(Debug, Clone)]
pub struct Apologies {
    /// Played at once when the agent fails before any escalation: a person is being fetched.
    pub handing_over: Arc<[u8]>,
    /// Played if no escalation follows in time: please call again, goodbye.
    pub goodbye: Arc<[u8]>,
    /// Played to every caller still on the line when the gateway must stop
    /// (a drain that timed out): we have to end the call, goodbye.
    pub closing: Arc<[u8]>,
}

/// How long after the failure apology an escalation may take before the call
/// ends with the goodbye apology instead (the monitor decides in milliseconds;
/// this only guards against a handoff that cannot start).
const ESCALATION_AFTER_FAILURE: Duration = Duration::from_secs(3);

/// How long an AI sentence still arriving when the call is escalated may keep
/// streaming before the disclosure follows anyway (its end mark normally ends it
/// well before).
const AI_SENTENCE_GRACE: Duration = Duration::from_secs(3);

/// One call's caller ⇄ AI agent bridge.
#[derive(Debug)]
pub struct CallBridge {
    config: BridgeConfig,
    playout: Playout,
    vad: EnergyVad,
    pcm: Vec<i16>,
    agent: AgentState,
    caller_gone: bool,
    apology: Apologies,
    /// The AI agent failed before any escalation: why, and until when an escalation may come.
    agent_failure: Option<(String, Instant)>,
    /// When the failure apology will have played (it is never cut short).
    apology_until: Option<Instant>,
    outputs: VecDeque<BridgeOutput>,
    finishing: Option<Finishing>,
    /// The closing goodbye is playing (the gateway is stopping).
    closing: bool,
    ended: bool,
    caller_guard: PeerGuard,
    agent_guard: PeerGuard,
    handoff: Handoff,
    human_playout: Playout,
    human: Option<String>,
    hold: HoldTone,
    hold_on: bool,
    /// The human agent's console dropped mid-call: the caller hears hold audio.
    human_away: bool,
    /// The human agent put the caller on hold: the caller hears hold audio.
    agent_hold: bool,
    /// Where the human agent is transferring the call (until it is queued).
    transfer_to: Option<crate::domain::TransferTarget>,
    prompts: Option<HandoffPrompts>,
    whisper: Option<Arc<[u8]>>,
    whisper_failed: bool,
    whisper_waiting: bool,
    /// The answering person must accept after the whisper (press 1, or stay
    /// silent this long); set per answer by [`CallBridge::consult_after_whisper`].
    consult_window: Option<Duration>,
    /// Asked, waiting for their digit until then.
    consult_until: Option<Instant>,
    callback_reason: Option<String>,
    /// AI audio has been queued for the caller since the AI's last mark: a
    /// sentence is in progress.
    ai_speaking: bool,
    /// The call was escalated mid-sentence: the AI's sentence keeps streaming
    /// to the caller until its end mark (or this bound), then the disclosure.
    ai_finishing: Option<Instant>,
    /// The result the AI agent is told when the caller goes back to it.
    returning: Option<crate::domain::HandoffResult>,
    /// The caller already went back to the AI once because nobody could take
    /// the call: a second "nobody" ends in a callback, not a loop.
    returned_for_no_agent: bool,
    /// A supervisor listening, coaching or barging.
    supervision: supervision::Supervision,
    /// Voice activity on the human agent's leg, for "merge → first words".
    human_vad: EnergyVad,
    /// When the legs merged, until the human agent's first words are heard.
    awaiting_first_words: Option<Instant>,
    /// Handing the merged call's RTP to the relay plane.
    relay: relay::DirectRelay,
}

impl CallBridge {
    /// A bridge whose agent leg is still connecting. `apology` holds the
    /// prompts played if the agent cannot be reached or drops.
    pub fn new(config: BridgeConfig, apology: Apologies) -> Self {
        let limits = config.limits;
        let playout = Playout::new(
            160,
            g711::ULAW_SILENCE,
            config.playout_lead,
            config.max_playout_frames,
        );
        let human_playout = Playout::new(
            160,
            g711::ULAW_SILENCE,
            config.playout_lead,
            config.max_playout_frames,
        );
        CallBridge {
            vad: EnergyVad::new(config.vad),
            handoff: Handoff::new(config.handoff),
            human_playout,
            human: None,
            hold: HoldTone::default(),
            hold_on: false,
            human_away: false,
            agent_hold: false,
            transfer_to: None,
            prompts: None,
            whisper: None,
            whisper_failed: false,
            whisper_waiting: false,
            consult_window: None,
            consult_until: None,
            callback_reason: None,
            ai_speaking: false,
            ai_finishing: None,
            returning: None,
            returned_for_no_agent: false,
            supervision: Default::default(),
            human_vad: EnergyVad::new(config.vad),
            awaiting_first_words: None,
            relay: Default::default(),
            config,
            playout,
            pcm: Vec::with_capacity(160),
            agent: AgentState::Connecting,
            caller_gone: false,
            apology,
            agent_failure: None,
            apology_until: None,
            outputs: VecDeque::new(),
            finishing: None,
            closing: false,
            ended: false,
            caller_guard: PeerGuard::new(limits),
            agent_guard: PeerGuard::new(limits),
        }
    }

    /// True once the call has ended.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// What the caller's and the AI agent's guards dropped so far.
    pub fn dropped(&self) -> (Dropped, Dropped) {
        (self.caller_guard.dropped, self.agent_guard.dropped)
    }

    /// Feeds an event from the caller's leg.
    pub fn handle_caller(&mut self, event: LegEvent, now: Instant) {
        if self.ended {
            return;
        }
        // Closing: only the goodbye's end mark and the hang-up still matter.
        if self.closing && !matches!(event, LegEvent::Mark(_) | LegEvent::Hangup(_)) {
            return;
        }
        match event {
            LegEvent::Audio(bytes) => {
                self.caller_guard.accepted();
                if !self.caller_guard.media(bytes.len(), now) {
                    return; // beyond real time: dropped and counted
                }
                if self.relayed() {
                    return; // from before the park: the plane carries the media now
                }
                self.supervise_said(&bytes);
                let matrix = self.handoff.matrix();
                let talking_to_ai = matrix.hears(Listener::Caller, Source::AiAgent);
                if self.config.barge_in_on_caller_speech && talking_to_ai {
                    g711::decode_ulaw(&bytes, &mut self.pcm);
                    let started = self.vad.process(&self.pcm) == Some(VadEvent::SpeechStarted);
                    if started && self.finishing.is_none() && self.playout.is_playing(now) {
                        self.flush(ClearedBy::CallerSpeech);
                    }
                }
                if matrix.hears(Listener::HumanAgent, Source::Caller) && self.human.is_some() {
                    self.queue_for_human(&bytes);
                }
                let ai_hears = matrix.hears(Listener::AiAgent, Source::Caller);
                if ai_hears && self.agent != AgentState::Gone && self.finishing.is_none() {
                    self.emit(BridgeOutput::ToAgent(LegCommand::Audio(bytes)));
                }
            }
            LegEvent::Mark(name) => {
                self.caller_guard.accepted();
                if name == GatewayMark::End.as_str() && self.finishing.is_some() {
                    if let Some(f) = self.finishing.take() {
                        self.end(f.reason);
                    }
                    return;
                }
                if self.handoff_mark(&name, now) {
                    return;
                }
                self.emit(BridgeOutput::Timeline(TimelineKind::MarkPlayed {
                    name: name.clone(),
                }));
                if self.agent == AgentState::Up {
                    self.emit(BridgeOutput::ToAgent(LegCommand::Mark(name)));
                }
            }
            LegEvent::Dtmf(digit) => {
                self.caller_guard.accepted();
                if !self.caller_guard.dtmf(now) {
                    return; // a keypad flood: dropped and counted
                }
                self.emit(BridgeOutput::Timeline(TimelineKind::Dtmf { digit }));
                if self.waiting_choice(digit, now) {
                    return;
                }
                if self.agent == AgentState::Up && *self.handoff.state() == HandoffState::Ai {
                    self.emit(BridgeOutput::ToAgent(LegCommand::Dtmf(digit)));
                }
            }
            LegEvent::Hangup(HangupCause::MediaTimeout(silent)) => {
                // The leg is still there (its BYE was lost, or the peer died):
                // the call ends and the leg is told to hang up (a BYE goes out).
                self.handoff_caller_gone(now);
                self.end(EndReason::MediaTimeout(format!(
                    "no media from the caller for {} s",
                    silent.as_secs()
                )));
            }
            LegEvent::Hangup(cause) => {
                self.caller_gone = true;
                self.handoff_caller_gone(now);
                self.end(match cause.lost_because() {
                    None => EndReason::CallerHangup,
                    Some(e) => EndReason::CallerLost(e),
                });
            }
            LegEvent::Error(error) => {
                self.emit(BridgeOutput::Timeline(TimelineKind::ProtocolError {
                    leg: Party::Caller,
                    error: error.to_string(),
                }));
                if let Refusal::TooMany(why) = self.caller_guard.refused(now) {
                    self.end(EndReason::ProtocolErrors(format!(
                        "{why} from the caller; last: {error}"
                    )));
                }
            }
            LegEvent::CanRelay => self.relay.caller_can = true,
            LegEvent::Connected
            | LegEvent::Clear
            | LegEvent::SkipWhisper
            | LegEvent::Detached
            | LegEvent::Reattached
            | LegEvent::Hold
            | LegEvent::Resume
            | LegEvent::Transfer(_)
            | LegEvent::ReturnToAi(_)
            | LegEvent::Turn(_)
            | LegEvent::Escalate(_)
            | LegEvent::Tool(_)
            | LegEvent::Customer(_)
            | LegEvent::Intent(_) => {}
        }
    }

    /// Feeds an event from the AI agent's leg.
    pub fn handle_agent(&mut self, event: LegEvent, now: Instant) {
        if self.ended || self.agent == AgentState::Gone {
            return;
        }
        let event = match event {
            // The gateway's own marks are not the agent's to send: echoed, they
            // would end the call or skip a handoff step.
            LegEvent::Mark(name) if GatewayMark::is_reserved(&name) => {
                LegEvent::Error(ProtocolError::ReservedMark(name))
            }
            LegEvent::Mark(_) if !self.agent_guard.mark(self.playout.marks_queued()) => {
                return; // over the in-flight limit: dropped and counted
            }
            other => other,
        };
        if !matches!(event, LegEvent::Error(_)) {
            self.agent_guard.accepted();
        }
        match event {
            LegEvent::Connected => {
                self.agent = AgentState::Up;
                self.emit(BridgeOutput::Timeline(TimelineKind::AgentConnected));
            }
            LegEvent::Audio(bytes) => {
                if self.ai_finishing.is_some_and(|by| now >= by) {
                    self.finish_ai_sentence();
                }
                if self.ai_finishing.is_none()
                    && !self
                        .handoff
                        .matrix()
                        .hears(Listener::Caller, Source::AiAgent)
                {
                    return; // the AI has been muted by the handoff
                }
                self.ai_speaking = true;
                if let Err(e) = self.playout.push_audio(&bytes) {
                    self.emit(BridgeOutput::Timeline(TimelineKind::AudioDropped {
                        leg: Party::Caller,
                        reason: e.to_string(),
                    }));
                }
            }
            LegEvent::Mark(name) if *self.handoff.state() == HandoffState::Ai => {
                self.ai_speaking = false;
                self.playout.push_mark(name)
            }
            LegEvent::Mark(name) if self.ai_finishing.is_some() => {
                // The sentence in progress at the escalation has ended.
                self.playout.push_mark(name);
                self.finish_ai_sentence();
            }
            LegEvent::Clear if *self.handoff.state() == HandoffState::Ai => {
                self.ai_speaking = false;
                self.flush(ClearedBy::Agent)
            }
            LegEvent::Clear if self.ai_finishing.is_some() => self.finish_ai_sentence(),
            LegEvent::Mark(_)
            | LegEvent::Clear
            | LegEvent::SkipWhisper
            | LegEvent::Detached
            | LegEvent::Reattached
            | LegEvent::Hold
            | LegEvent::Resume
            | LegEvent::CanRelay
            | LegEvent::Transfer(_)
            | LegEvent::ReturnToAi(_) => {}
            LegEvent::Turn(mut turn) => {
                let spoken_choice =
                    turn.role == Role::User && *self.handoff.state() != HandoffState::Ai;
                self.config.redactor.string(&mut turn.content);
                let content = turn.content.clone();
                self.emit(BridgeOutput::Timeline(TimelineKind::Turn {
                    role: turn.role,
                    content: turn.content,
                    confidence: turn.confidence,
                }));
                if spoken_choice {
                    self.spoken_choice(&content, now);
                }
            }
            LegEvent::Escalate(mut e) => {
                self.config.redactor.string(&mut e.description);
                self.emit(BridgeOutput::Timeline(TimelineKind::EscalationRequested {
                    trigger: e.trigger,
                    description: e.description,
                    urgency: e.urgency,
                }))
            }
            LegEvent::Tool(mut t) => {
                let redactor = &self.config.redactor;
                for v in [t.args.as_mut(), t.result.as_mut()].into_iter().flatten() {
                    redactor.json(v);
                }
                if let Some(d) = t.detail.as_mut() {
                    redactor.string(d);
                }
                self.emit(BridgeOutput::Timeline(TimelineKind::ToolUsed {
                    name: t.name,
                    ok: t.ok,
                    detail: t.detail,
                    args: t.args.map(Box::new),
                    result: t.result.map(Box::new),
                }))
            }
            LegEvent::Customer(data) => {
                self.emit(BridgeOutput::Timeline(TimelineKind::Customer { data }))
            }
            LegEvent::Intent(mut data) => {
                data.values_mut().for_each(|v| self.config.redactor.json(v));
                self.emit(BridgeOutput::Timeline(TimelineKind::Intent { data }))
            }
            LegEvent::Dtmf(_) => {}
            LegEvent::Error(error) => {
                self.emit(BridgeOutput::Timeline(TimelineKind::ProtocolError {
                    leg: Party::AiAgent,
                    error: error.to_string(),
                }));
                if let Refusal::TooMany(why) = self.agent_guard.refused(now) {
                    let why = format!("agent sent {why}");
                    self.emit(BridgeOutput::Timeline(TimelineKind::AgentLost {
                        error: why.clone(),
                    }));
                    self.agent_failed(why, now);
                }
            }
            LegEvent::Hangup(_) if *self.handoff.state() != HandoffState::Ai => {
                // The AI leaving after the escalation changes nothing for the
                // caller (a sentence it was finishing ends here).
                self.agent = AgentState::Gone;
                self.finish_ai_sentence();
            }
            LegEvent::Hangup(HangupCause::Normal) => {
                self.agent = AgentState::Gone;
                self.finish_after_playout(EndReason::AgentHangup, now);
            }
            LegEvent::Hangup(cause @ HangupCause::MediaTimeout(_)) => {
                let error = cause.lost_because().unwrap_or_default();
                self.emit(BridgeOutput::Timeline(TimelineKind::AgentLost {
                    error: error.clone(),
                }));
                self.agent_failed(error, now);
            }
            LegEvent::Hangup(HangupCause::Lost(error)) => {
                self.emit(BridgeOutput::Timeline(TimelineKind::AgentLost {
                    error: error.clone(),
                }));
                self.agent_failed(error, now);
            }
            LegEvent::Hangup(HangupCause::Unreachable(error)) => {
                self.emit(BridgeOutput::Timeline(TimelineKind::AgentUnreachable {
                    error: error.clone(),
                }));
                self.agent_failed(error, now);
            }
        }
    }

    /// Ends the call from outside (e.g. gateway shutdown).
    pub fn shutdown(&mut self) {
        self.end(EndReason::Shutdown);
    }

    /// The gateway must stop with this call still up (its drain timed out):
    /// the AI agent and any human agent are let go at once, whatever the caller
    /// was hearing stops, and the caller hears the closing goodbye; then the call
    /// ends (`shutdown`) and every leg is hung up (BYE, close frames). No other
    /// audio reaches the caller after the goodbye starts.
    pub fn close_for_shutdown(&mut self, now: Instant) {
        if self.ended || self.closing {
            return;
        }
        self.closing = true;
        if self.agent != AgentState::Gone {
            self.agent = AgentState::Gone;
            self.emit(BridgeOutput::ToAgent(LegCommand::Hangup));
        }
        if let Some(agent) = self.human.take() {
            self.human_playout.clear();
            self.emit(BridgeOutput::ToHuman(LegCommand::Hangup));
            self.emit(BridgeOutput::Routing(RoutingRequest::Release { agent }));
        }
        if self.caller_gone {
            self.end(EndReason::Shutdown);
            return;
        }
        self.playout.clear();
        self.emit(BridgeOutput::ToCaller(LegCommand::Clear));
        let goodbye = Arc::clone(&self.apology.closing);
        self.play_prompt("shutting_down", &goodbye);
        self.finish_after_playout(EndReason::Shutdown, now);
    }

    /// The call reached its longest allowed duration: it ends now.
    pub fn time_limit_reached(&mut self) {
        self.end(EndReason::TimeLimit);
    }

    /// The next thing to do at `now`, if any.
    pub fn poll_output(&mut self, now: Instant) -> Option<BridgeOutput> {
        self.update_relay();
        if let Some(out) = self.outputs.pop_front() {
            return Some(out);
        }
        if self.ended {
            return None;
        }
        if self.finishing.as_ref().is_some_and(|f| now >= f.deadline) {
            if let Some(f) = self.finishing.take() {
                self.end(f.reason);
            }
            return self.outputs.pop_front();
        }
        if self
            .agent_failure
            .as_ref()
            .is_some_and(|(_, by)| now >= *by)
        {
            if let Some((error, _)) = self.agent_failure.take() {
                self.say_goodbye(error, now);
            }
            return self.outputs.pop_front();
        }
        if self.ai_finishing.is_some_and(|by| now >= by) {
            self.finish_ai_sentence();
        }
        self.handoff_poll(now);
        if let Some(out) = self.outputs.pop_front() {
            return Some(out);
        }
        if let Some(out) = self.human_playout.poll(now) {
            return Some(self.human_output(out, now));
        }
        match self.playout.poll(now)? {
            PlayoutOutput::Audio(bytes) => {
                let bytes = self.supervise_heard(bytes);
                Some(BridgeOutput::ToCaller(LegCommand::Audio(bytes)))
            }
            PlayoutOutput::Mark(name) => Some(BridgeOutput::ToCaller(LegCommand::Mark(name))),
        }
    }

    /// When [`CallBridge::poll_output`] must next be called, if nothing else happens first.
    pub fn poll_at(&self, now: Instant) -> Option<Instant> {
        if !self.outputs.is_empty() {
            return Some(now);
        }
        if self.ended {
            return None;
        }
        if self.caller_hears_hold() && self.playout.queued_frames() < 2 {
            return Some(now);
        }
        [
            self.playout.poll_at(now),
            self.human_playout.poll_at(now),
            self.finishing.as_ref().map(|f| f.deadline),
            self.agent_failure.as_ref().map(|(_, by)| *by),
            self.handoff.deadline(),
            self.consult_until,
            self.ai_finishing,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn emit(&mut self, out: BridgeOutput) {
        if self.relay_would_drop(&out) {
            return;
        }
        self.outputs.push_back(out);
    }

    fn flush(&mut self, by: ClearedBy) {
        self.ai_speaking = false;
        let frames_dropped = self.playout.queued_frames();
        let marks = self.playout.clear();
        self.emit(BridgeOutput::ToCaller(LegCommand::Clear));
        if self.agent == AgentState::Up {
            for name in marks {
                self.emit(BridgeOutput::ToAgent(LegCommand::Mark(name)));
            }
        }
        self.emit(BridgeOutput::Timeline(TimelineKind::Cleared {
            by,
            frames_dropped,
        }));
    }

    /// The AI agent failed (unreachable, dropped, broken) while it was the
    /// caller's only company. Never dead air: the caller hears at once that a
    /// person is coming, and the monitor turns the failure (the `AgentLost` /
    /// `AgentUnreachable` timeline event) into an escalation whose disclosure
    /// follows the apology. Should none come, the call ends politely.
    fn agent_failed(&mut self, error: String, now: Instant) {
        self.agent = AgentState::Gone;
        self.emit(BridgeOutput::ToAgent(LegCommand::Hangup));
        if self.caller_gone {
            self.end(EndReason::AgentUnavailable(error));
            return;
        }
        self.playout.clear();
        self.emit(BridgeOutput::ToCaller(LegCommand::Clear));
        let apology = Arc::clone(&self.apology.handing_over);
        self.play_prompt("agent_failed", &apology);
        let played_by =
            now + FRAME * u32::try_from(self.playout.queued_frames()).unwrap_or(u32::MAX / 50);
        self.apology_until = Some(played_by);
        self.agent_failure = Some((error, played_by + ESCALATION_AFTER_FAILURE));
    }

    /// No escalation followed an agent failure: apologise and end the call.
    fn say_goodbye(&mut self, error: String, now: Instant) {
        if *self.handoff.state() != HandoffState::Ai {
            return;
        }
        tracing::warn!(%error, "no escalation after the AI agent failed; ending the call");
        let goodbye = Arc::clone(&self.apology.goodbye);
        self.play_prompt("agent_unavailable", &goodbye);
        self.finish_after_playout(EndReason::AgentUnavailable(error), now);
    }

    fn play_prompt(&mut self, name: &str, audio: &[u8]) {
        if let Err(e) = self.playout.push_audio(audio) {
            self.emit(BridgeOutput::Timeline(TimelineKind::AudioDropped {
                leg: Party::Caller,
                reason: e.to_string(),
            }));
        }
        self.emit(BridgeOutput::Timeline(TimelineKind::PromptStarted {
            name: name.into(),
        }));
    }

    /// Ends the call once the caller has heard everything queued (the provider
    /// echoes [`GatewayMark::End`]), or at a deadline if it never does.
    fn finish_after_playout(&mut self, reason: EndReason, now: Instant) {
        if self.caller_gone {
            self.end(reason);
            return;
        }
        self.playout.push_mark(GatewayMark::End.as_str());
        let queued = FRAME * u32::try_from(self.playout.queued_frames()).unwrap_or(u32::MAX / 50);
        self.finishing = Some(Finishing {
            reason,
            deadline: now + queued + self.config.playout_lead + self.config.end_mark_grace,
        });
    }

    fn end(&mut self, reason: EndReason) {
        if self.ended {
            return;
        }
        self.ended = true;
        self.finishing = None;
        if self.agent != AgentState::Gone {
            self.agent = AgentState::Gone;
            self.outputs
                .push_back(BridgeOutput::ToAgent(LegCommand::Hangup));
        }
        if !self.caller_gone {
            self.outputs
                .push_back(BridgeOutput::ToCaller(LegCommand::Hangup));
        }
        self.outputs
            .push_back(BridgeOutput::Timeline(TimelineKind::CallEnded {
                reason: reason.clone(),
            }));
        self.outputs.push_back(BridgeOutput::Ended(reason));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Role, Turn};

    fn bridge() -> CallBridge {
        CallBridge::new(
            BridgeConfig::default(),
            Apologies {
                handing_over: Arc::from(vec![0x55u8; 800]),
                goodbye: Arc::from(vec![0x66u8; 400]),
                closing: Arc::from(vec![0x77u8; 480]),
            },
        )
    }

    /// A handoff whose disclosure is three frames of 0x55.
    fn three_frame_disclosure() -> HandoffPrompts {
        HandoffPrompts {
            disclosure: Arc::from(vec![0x55u8; 160 * 3]),
            callback: Arc::from(vec![0x66u8; 160]),
            consult: None,
        }
    }

    /// A handoff whose prompts are one frame each (0x31, 0x32).
    fn one_frame_prompts() -> HandoffPrompts {
        HandoffPrompts {
            disclosure: Arc::from(vec![0x31u8; 160]),
            callback: Arc::from(vec![0x32u8; 160]),
            consult: None,
        }
    }

    fn drain(b: &mut CallBridge, now: Instant) -> Vec<BridgeOutput> {
        std::iter::from_fn(|| b.poll_output(now)).collect()
    }

    /// Drains outputs while time advances frame by frame from `from` for `span`.
    fn drain_over(b: &mut CallBridge, from: Instant, span: Duration) -> Vec<BridgeOutput> {
        let mut out = Vec::new();
        let mut now = from;
        while now <= from + span {
            out.extend(drain(b, now));
            now += FRAME;
        }
        out
    }

    fn speech_frame() -> Vec<u8> {
        (0..160)
            .map(|i| g711::linear_to_ulaw(if i % 2 == 0 { 9000 } else { -9000 }))
            .collect()
    }

    #[test]
    fn a_steady_merged_call_is_offered_to_the_relay_plane_and_taken_back_before_anything_else() {
        use crate::domain::SupervisorMode;
        let silence = vec![g711::ULAW_SILENCE; 160];
        let t = Instant::now();
        let mut b = CallBridge::new(
            BridgeConfig {
                direct_relay: true,
                ..Default::default()
            },
            Apologies {
                handing_over: Arc::from(vec![0x55u8; 800]),
                goodbye: Arc::from(vec![0x66u8; 400]),
                closing: Arc::from(vec![0x77u8; 480]),
            },
        );
        let parks = |out: &[BridgeOutput]| {
            out.iter()
                .filter(|o| {
                    matches!(
                        o,
                        BridgeOutput::ToCaller(LegCommand::Park(_))
                            | BridgeOutput::ToHuman(LegCommand::Park(_))
                    )
                })
                .count()
        };
        b.handle_agent(LegEvent::Connected, t);
        b.handle_caller(LegEvent::CanRelay, t);
        b.escalate(one_frame_prompts(), t);
        b.whisper_ready(Arc::from(vec![0x5bu8; 1600]), t);
        b.agent_offered("desk".into(), t);
        b.agent_answered("desk".into(), t);
        b.handle_human(LegEvent::CanRelay, t);
        let mut out = Vec::new();
        let mut now = t;
        while now <= t + Duration::from_secs(1) {
            b.handle_caller(LegEvent::Audio(silence.clone()), now);
            b.handle_human(LegEvent::Audio(silence.clone()), now);
            out.extend(drain(&mut b, now));
            now += FRAME;
        }
        assert!(matches!(b.handoff_state(), HandoffState::Merged { .. }));
        assert_eq!(
            parks(&out),
            0,
            "not during the whisper, nor before the person speaks"
        );
        // The person's first words: the call is steady, both legs are offered once.
        let mut out = Vec::new();
        for _ in 0..10 {
            b.handle_human(LegEvent::Audio(speech_frame()), now);
            b.handle_caller(LegEvent::Audio(silence.clone()), now);
            out.extend(drain(&mut b, now));
            now += FRAME;
        }
        assert_eq!(parks(&out), 2, "{out:?}");
        assert!(b.relayed());
        let offers: Vec<&crate::legs::RelayOffer> = out
            .iter()
            .filter_map(|o| match o {
                BridgeOutput::ToCaller(LegCommand::Park(p))
                | BridgeOutput::ToHuman(LegCommand::Park(p)) => Some(p),
                _ => None,
            })
            .collect();
        assert_eq!(offers[0], offers[1], "one offer pairs the two legs");
        // A frame from before the park is not forwarded: the plane carries the media.
        b.handle_caller(LegEvent::Audio(speech_frame()), now);
        b.handle_human(LegEvent::Audio(speech_frame()), now);
        let out = drain_over(&mut b, now, Duration::from_millis(200));
        assert!(
            !out.iter().any(|o| matches!(
                o,
                BridgeOutput::ToCaller(LegCommand::Audio(_))
                    | BridgeOutput::ToHuman(LegCommand::Audio(_))
            )),
            "{out:?}"
        );
        now += Duration::from_millis(220);
        // A supervisor joins: both legs come back before anything else reaches them.
        b.supervise("sam".into(), Some(SupervisorMode::Listen));
        b.handle_caller(LegEvent::Audio(speech_frame()), now);
        let out = drain(&mut b, now);
        let to_legs: Vec<&BridgeOutput> = out
            .iter()
            .filter(|o| matches!(o, BridgeOutput::ToCaller(_) | BridgeOutput::ToHuman(_)))
            .collect();
        assert!(
            matches!(
                to_legs[..2],
                [
                    BridgeOutput::ToCaller(LegCommand::Unpark),
                    BridgeOutput::ToHuman(LegCommand::Unpark)
                ]
            ),
            "{out:?}"
        );
        assert!(!b.relayed());
        // The supervisor leaves: steady again, offered again.
        b.supervise("sam".into(), None);
        let out = drain_over(&mut b, now, Duration::from_millis(100));
        assert_eq!(parks(&out), 2, "{out:?}");
        // The person puts the caller on hold: taken back.
        b.handle_human(LegEvent::Hold, now);
        let out = drain(&mut b, now);
        assert!(
            out.iter()
                .any(|o| matches!(o, BridgeOutput::ToCaller(LegCommand::Unpark))),
            "{out:?}"
        );
    }

    #[test]
    fn a_human_agents_refused_message_and_dropped_audio_are_recorded_against_the_human_leg() {
        let t = Instant::now();
        let mut b = bridge();
        b.handle_agent(LegEvent::Connected, t);
        let prompts = HandoffPrompts {
            disclosure: Arc::from(vec![0x55u8; 160]),
            callback: Arc::from(vec![0x55u8; 160]),
            consult: None,
        };
        b.escalate(prompts, t);
        b.agent_offered("alice".into(), t);
        b.agent_answered("alice".into(), t);
        b.handle_human(
            LegEvent::Error(ProtocolError::MalformedJson("expected value".into())),
            t,
        );
        b.queue_for_human(&vec![0u8; 160 * 3001]);
        let legs: Vec<(Party, String)> = drain(&mut b, t)
            .into_iter()
            .filter_map(|o| match o {
                BridgeOutput::Timeline(TimelineKind::ProtocolError { leg, error }) => {
                    Some((leg, error))
                }
                BridgeOutput::Timeline(TimelineKind::AudioDropped { leg, reason }) => {
                    Some((leg, reason))
                }
                _ => None,
            })
            .collect();
        assert_eq!(legs.len(), 2, "{legs:?}");
        for (leg, text) in &legs {
            assert_eq!(*leg, Party::HumanAgent, "{text}");
            assert!(!text.starts_with("human agent:"), "{text}");
        }
    }

    #[test]
    fn the_ais_sentence_still_streaming_at_the_escalation_finishes_before_the_disclosure() {
        let t = Instant::now();
        let mut b = bridge();
        b.handle_agent(LegEvent::Connected, t);
        // The AI's line arrives in pieces; the decision lands between them.
        b.handle_agent(LegEvent::Audio(vec![7; 160 * 10]), t);
        b.escalate(three_frame_disclosure(), t);
        let later = t + Duration::from_millis(50);
        b.handle_agent(LegEvent::Audio(vec![8; 160 * 10]), later);
        b.handle_agent(LegEvent::Mark("line-2".into()), later);
        // Nothing from the AI after its sentence's end is queued.
        b.handle_agent(LegEvent::Audio(vec![9; 160 * 5]), later);
        let out = drain_over(&mut b, t, Duration::from_secs(2));
        let fills: Vec<u8> = out
            .iter()
            .filter_map(|o| match o {
                BridgeOutput::ToCaller(LegCommand::Audio(a)) => Some(a[0]),
                _ => None,
            })
            .collect();
        let heard = |f: u8| fills.iter().filter(|&&x| x == f).count();
        assert_eq!(heard(7), 10, "{fills:?}");
        assert_eq!(heard(8), 10, "the rest of the sentence plays: {fills:?}");
        assert_eq!(
            heard(9),
            0,
            "no new sentence after the escalation: {fills:?}"
        );
        let first_disclosure = fills.iter().position(|&x| x == 0x55);
        let last_ai = fills.iter().rposition(|&x| x == 8);
        assert!(
            first_disclosure > last_ai,
            "disclosure after the AI: {fills:?}"
        );
        assert_eq!(heard(0x55), 3, "{fills:?}");
    }

    #[test]
    fn an_ai_sentence_that_never_ends_delays_the_disclosure_only_briefly() {
        let t = Instant::now();
        let mut b = bridge();
        b.handle_agent(LegEvent::Connected, t);
        b.handle_agent(LegEvent::Audio(vec![7; 160 * 2]), t);
        b.escalate(three_frame_disclosure(), t);
        // The AI keeps streaming and never sends its mark.
        let mut out = Vec::new();
        let mut now = t;
        while now <= t + Duration::from_secs(8) {
            b.handle_agent(LegEvent::Audio(vec![8; 160]), now);
            out.extend(drain(&mut b, now));
            now += FRAME;
        }
        let disclosure_at = out.iter().position(
            |o| matches!(o, BridgeOutput::ToCaller(LegCommand::Audio(a)) if a[0] == 0x55),
        );
        assert!(disclosure_at.is_some(), "the disclosure plays");
        let ai_after = out[disclosure_at.unwrap_or(0)..]
            .iter()
            .filter(|o| matches!(o, BridgeOutput::ToCaller(LegCommand::Audio(a)) if a[0] == 8))
            .count();
        assert_eq!(ai_after, 0, "the AI is cut at the bound, not after it");
    }

    #[test]
    fn caller_audio_reaches_the_agent_byte_for_byte() {
        let t = Instant::now();
        let mut b = bridge();
        b.handle_agent(LegEvent::Connected, t);
        let payload: Vec<u8> = (0..160).map(|i| i as u8).collect();
        b.handle_caller(LegEvent::Audio(payload.clone()), t);
        let out = drain(&mut b, t);
        assert!(out.contains(&BridgeOutput::ToAgent(LegCommand::Audio(payload))));
    }

    #[test]
    fn agent_audio_is_paced_to_the_caller_and_marks_follow_it() {
        let t = Instant::now();
        let mut b = bridge();
        b.handle_agent(LegEvent::Connected, t);
        b.handle_agent(LegEvent::Audio(vec![7; 160 * 5]), t);
        b.handle_agent(LegEvent::Mark("line".into()), t);
        let first = drain(&mut b, t);
        let audio = |v: &[BridgeOutput]| {
            v.iter()
                .filter(|o| matches!(o, BridgeOutput::ToCaller(LegCommand::Audio(_))))
                .count()
        };
        assert_eq!(audio(&first), 3, "20 ms now plus the 40 ms lead");
        let later = drain(&mut b, t + Duration::from_millis(100));
        assert_eq!(audio(&later), 2);
        assert_eq!(
            later.last(),
            Some(&BridgeOutput::ToCaller(LegCommand::Mark("line".into())))
        );
        b.handle_caller(
            LegEvent::Mark("line".into()),
            t + Duration::from_millis(120),
        );
        let echo = drain(&mut b, t + Duration::from_millis(120));
        assert!(echo.contains(&BridgeOutput::ToAgent(LegCommand::Mark("line".into()))));
    }

    #[test]
    fn agent_clear_flushes_at_once_and_returns_pending_marks() {
        let t = Instant::now();
        let mut b = bridge();
        b.handle_agent(LegEvent::Connected, t);
        b.handle_agent(LegEvent::Audio(vec![7; 160 * 50]), t);
        b.handle_agent(LegEvent::Mark("a".into()), t);
        drain(&mut b, t);
        b.handle_agent(LegEvent::Clear, t + FRAME);
        let out = drain(&mut b, t + FRAME);
        assert_eq!(out[0], BridgeOutput::ToCaller(LegCommand::Clear));
        assert_eq!(out[1], BridgeOutput::ToAgent(LegCommand::Mark("a".into())));
        assert!(drain(&mut b, t + Duration::from_secs(2)).is_empty());
    }

    #[test]
    fn caller_speech_over_the_agent_barges_in() {
        let t = Instant::now();
        let mut b = bridge();
        b.handle_agent(LegEvent::Connected, t);
        b.handle_agent(LegEvent::Audio(vec![7; 160 * 100]), t);
        drain(&mut b, t);
        let mut cleared = false;
        for i in 0..5 {
            let now = t + FRAME * i;
            b.handle_caller(LegEvent::Audio(speech_frame()), now);
            cleared |= drain(&mut b, now).iter().any(|o| {
                matches!(
                    o,
                    BridgeOutput::Timeline(TimelineKind::Cleared {
                        by: ClearedBy::CallerSpeech,
                        ..
                    })
                )
            });
        }
        assert!(cleared);
    }

    /// Caller audio bytes equal to `fill` (the test apologies are constant bytes).
    /// Whole frames of `fill` sent to the caller (`to_human` false) or the human.
    fn frames_of(out: &[BridgeOutput], to_human: bool, fill: u8) -> usize {
        out.iter()
            .filter(|o| match o {
                BridgeOutput::ToHuman(LegCommand::Audio(a)) if to_human => {
                    a.iter().all(|&b| b == fill)
                }
                BridgeOutput::ToCaller(LegCommand::Audio(a)) if !to_human => {
                    a.iter().all(|&b| b == fill)
                }
                _ => false,
            })
            .count()
    }

    /// A bridge whose call was escalated and answered by "desk" after a
    /// 10-frame whisper; with `window` the desk must accept and hears a 5-frame question.
    fn consulting(window: Option<Duration>, t: Instant) -> (CallBridge, Vec<BridgeOutput>) {
        let mut b = bridge();
        b.handle_agent(LegEvent::Connected, t);
        b.escalate(
            HandoffPrompts {
                disclosure: Arc::from(vec![0x31u8; 160]),
                callback: Arc::from(vec![0x32u8; 160]),
                consult: Some(Arc::from(vec![0x5au8; 800])),
            },
            t,
        );
        b.whisper_ready(Arc::from(vec![0x5bu8; 1600]), t);
        b.agent_offered("desk".into(), t);
        b.consult_after_whisper(window);
        b.agent_answered("desk".into(), t);
        let out = drain_over(&mut b, t, Duration::from_secs(1));
        (b, out)
    }

    #[test]
    fn a_person_done_with_the_caller_hands_them_back_to_an_ai_dialled_again() {
        let t = Instant::now();
        let (mut b, _) = consulting(None, t);
        // Merged (no consult): the AI leg was closed.
        assert!(matches!(b.handoff_state(), HandoffState::Merged { .. }));
        // Mid-call the person speaks; then hands the caller back.
        b.handle_human(LegEvent::Audio(vec![0x44; 160]), t + Duration::from_secs(1));
        let at = t + Duration::from_secs(2);
        b.handle_human(LegEvent::ReturnToAi(Some("run the survey".into())), at);
        let out = drain(&mut b, at);
        assert!(
            out.contains(&BridgeOutput::ToHuman(LegCommand::Hangup)),
            "{out:?}"
        );
        assert!(
            out.contains(&BridgeOutput::Routing(RoutingRequest::Release {
                agent: "desk".into()
            }))
        );
        let redial = out.iter().position(|o| {
            matches!(
                o,
                BridgeOutput::ReturnedToAi {
                    redial: true,
                    outcome: crate::domain::HandoffOutcome::Completed
                }
            )
        });
        let told = out.iter().position(|o| {
            matches!(o, BridgeOutput::ToAgent(LegCommand::HandoffResult(r))
                if r.note.as_deref() == Some("run the survey") && r.agent.as_deref() == Some("desk"))
        });
        assert!(
            redial.is_some() && told > redial,
            "dial, then tell: {out:?}"
        );
        assert_eq!(*b.handoff_state(), HandoffState::Ai);
        // The new AI leg connects and speaks: the caller hears it; the person no more.
        b.handle_agent(LegEvent::Connected, at);
        b.handle_agent(LegEvent::Audio(vec![0x66; 160 * 3]), at);
        b.handle_human(LegEvent::Audio(vec![0x44; 160]), at);
        let later = drain_over(&mut b, at, Duration::from_millis(200));
        assert_eq!(caller_bytes(&later, 0x66), 480, "{later:?}");
        assert_eq!(caller_bytes(&later, 0x44), 0);
        // And the AI may escalate again.
        b.escalate(one_frame_prompts(), at + Duration::from_secs(1));
        assert_eq!(*b.handoff_state(), HandoffState::Escalating);
    }

    #[test]
    fn the_persons_keypad_reaches_the_caller_once_merged_but_answers_the_consult_question_before() {
        let t = Instant::now();
        let (mut b, _) = consulting(Some(Duration::from_secs(5)), t);
        let at = t + Duration::from_secs(2);
        // Asked to accept: 1 takes the call, and is not sent on to the caller.
        b.handle_human(LegEvent::Dtmf('1'), at);
        let out = drain(&mut b, at);
        assert!(matches!(b.handoff_state(), HandoffState::Merged { .. }));
        assert!(
            !out.contains(&BridgeOutput::ToCaller(LegCommand::Dtmf('1'))),
            "{out:?}"
        );
        // Merged: the person's digits reach the caller's side.
        b.handle_human(LegEvent::Dtmf('5'), at);
        b.handle_human(LegEvent::Dtmf('#'), at);
        let out = drain(&mut b, at);
        assert!(
            out.contains(&BridgeOutput::ToCaller(LegCommand::Dtmf('5'))),
            "{out:?}"
        );
        assert!(
            out.contains(&BridgeOutput::ToCaller(LegCommand::Dtmf('#'))),
            "{out:?}"
        );
        // On hold, nothing of the person reaches the caller, digits included.
        b.handle_human(LegEvent::Hold, at);
        b.handle_human(LegEvent::Dtmf('7'), at);
        let out = drain(&mut b, at);
        assert!(
            !out.contains(&BridgeOutput::ToCaller(LegCommand::Dtmf('7'))),
            "{out:?}"
        );
    }

    #[test]
    fn a_person_deciding_after_the_whisper_cannot_be_bypassed_by_a_return_to_the_ai() {
        let t = Instant::now();
        let (mut b, _) = consulting(Some(Duration::from_secs(5)), t);
        assert!(matches!(b.handoff_state(), HandoffState::Whispering { .. }));
        assert!(!b.return_to_ai(None, t + Duration::from_secs(1)));
        assert!(matches!(b.handoff_state(), HandoffState::Whispering { .. }));
        let mut fresh = bridge();
        fresh.handle_agent(LegEvent::Connected, t);
        assert!(!fresh.return_to_ai(None, t), "already with the AI");
    }

    #[test]
    fn a_supervisor_hears_only_what_the_caller_hears_and_a_coach_reaches_only_the_person() {
        use crate::domain::SupervisorMode;
        let silence = vec![g711::ULAW_SILENCE; 160];
        let t = Instant::now();
        let mut b = bridge();
        b.handle_agent(LegEvent::Connected, t);
        b.supervise("sam".into(), Some(SupervisorMode::Coach));
        // Escalated, the person answers and hears the whisper; the caller is silent.
        b.escalate(one_frame_prompts(), t);
        b.whisper_ready(Arc::from(vec![0x5bu8; 1600]), t);
        b.agent_offered("desk".into(), t);
        b.agent_answered("desk".into(), t);
        let mut out = Vec::new();
        let mut now = t;
        while now <= t + Duration::from_secs(1) {
            b.handle_caller(LegEvent::Audio(silence.clone()), now);
            // A coach speaking over the whisper is not heard (no person on the call yet).
            b.supervisor_audio(vec![0x22; 160]);
            out.extend(drain(&mut b, now));
            now += FRAME;
        }
        let heard: Vec<&Vec<u8>> = out
            .iter()
            .filter_map(|o| match o {
                BridgeOutput::ToCaller(LegCommand::Audio(a)) => Some(a),
                _ => None,
            })
            .collect();
        let fed: Vec<&Vec<u8>> = out
            .iter()
            .filter_map(|o| match o {
                BridgeOutput::ToSupervisor(a) => Some(a),
                _ => None,
            })
            .collect();
        assert!(!fed.is_empty(), "the supervisor hears the call");
        for f in &fed {
            assert!(
                heard.contains(f) || **f == silence,
                "the supervisor heard something the caller did not (the whisper?): {f:?}"
            );
        }
        assert!(
            out.iter()
                .any(|o| matches!(o, BridgeOutput::ToHuman(LegCommand::Audio(a)) if a[0] == 0x5b)),
            "the person heard the whisper"
        );
        let whisper_end = out
            .iter()
            .position(|o| {
                matches!(o, BridgeOutput::ToHuman(LegCommand::Mark(m)) if m == GatewayMark::WhisperEnd.as_str())
            })
            .unwrap_or(out.len());
        assert!(
            !out[..whisper_end].iter().any(
                |o| matches!(o, BridgeOutput::ToHuman(LegCommand::Audio(a)) if a.contains(&0x22))
            ),
            "no coaching over the whisper"
        );
        assert!(matches!(b.handoff_state(), HandoffState::Merged { .. }));
        // Merged: the coach is heard by the person only.
        let mut out = Vec::new();
        for _ in 0..20 {
            b.handle_caller(LegEvent::Audio(silence.clone()), now);
            b.handle_human(LegEvent::Audio(silence.clone()), now);
            b.supervisor_audio(vec![0x22; 160]);
            out.extend(drain(&mut b, now));
            now += FRAME;
        }
        let to = |human: bool| {
            out.iter()
                .filter(|o| match o {
                    BridgeOutput::ToHuman(LegCommand::Audio(a)) if human => a.contains(&0x22),
                    BridgeOutput::ToCaller(LegCommand::Audio(a)) if !human => a.contains(&0x22),
                    _ => false,
                })
                .count()
        };
        assert!(to(true) >= 15, "the person hears the coach: {}", to(true));
        assert_eq!(to(false), 0, "the caller never hears a coach");
        // Barging: the caller hears the supervisor too.
        b.supervise("sam".into(), Some(SupervisorMode::Barge));
        let mut out2 = Vec::new();
        for _ in 0..20 {
            b.handle_caller(LegEvent::Audio(silence.clone()), now);
            b.handle_human(LegEvent::Audio(silence.clone()), now);
            b.supervisor_audio(vec![0x22; 160]);
            out2.extend(drain(&mut b, now));
            now += FRAME;
        }
        let barged = out2
            .iter()
            .filter(
                |o| matches!(o, BridgeOutput::ToCaller(LegCommand::Audio(a)) if a.contains(&0x22)),
            )
            .count();
        assert!(
            barged >= 15,
            "the caller hears a barging supervisor: {barged}"
        );
        // Every change is on the timeline with the supervisor's id.
        b.supervise("sam".into(), None);
        let modes: Vec<Option<SupervisorMode>> = drain(&mut b, now)
            .into_iter()
            .chain(out)
            .chain(out2)
            .filter_map(|o| match o {
                BridgeOutput::Timeline(TimelineKind::Supervision { supervisor, mode }) => {
                    assert_eq!(supervisor, "sam");
                    Some(mode)
                }
                _ => None,
            })
            .collect();
        assert!(
            modes.contains(&Some(SupervisorMode::Barge)) && modes.contains(&None),
            "{modes:?}"
        );
    }

    /// Merged with a person, with a supervisor on the call in `mode`.
    fn merged_and_supervised(mode: crate::domain::SupervisorMode, t: Instant) -> CallBridge {
        let mut b = bridge();
        b.handle_agent(LegEvent::Connected, t);
        b.escalate(one_frame_prompts(), t);
        b.whisper_ready(Arc::from(vec![0x5bu8; 320]), t);
        b.agent_offered("desk".into(), t);
        b.agent_answered("desk".into(), t);
        drain_over(&mut b, t, Duration::from_secs(1));
        assert!(matches!(b.handoff_state(), HandoffState::Merged { .. }));
        b.supervise("sam".into(), Some(mode));
        drain(&mut b, t + Duration::from_secs(1));
        b
    }

    #[test]
    fn a_coach_arriving_in_bursts_is_mixed_into_a_live_direction_never_interleaved() {
        use crate::domain::SupervisorMode;
        let t = Instant::now();
        let mut b = merged_and_supervised(SupervisorMode::Coach, t);
        let mut now = t + Duration::from_secs(1);
        let mut out = Vec::new();
        // The caller talks every 20 ms; the coach's voice comes three frames at
        // a time every 60 ms (a browser's WebRTC burst), in
        // between the caller's frames.
        for i in 0..60u8 {
            b.handle_caller(LegEvent::Audio(vec![0x70; 160]), now);
            out.extend(drain(&mut b, now));
            if i % 3 == 0 {
                for k in 0..3u8 {
                    b.supervisor_audio(vec![0x10 + (i + k) % 32; 160]);
                }
            }
            out.extend(drain(&mut b, now));
            now += FRAME;
        }
        let to_person: Vec<&Vec<u8>> = out
            .iter()
            .filter_map(|o| match o {
                BridgeOutput::ToHuman(LegCommand::Audio(a)) => Some(a),
                _ => None,
            })
            .collect();
        assert_eq!(
            to_person.len(),
            60,
            "one frame to the person per caller frame, the coach mixed in, none extra"
        );
        let coached = to_person.iter().filter(|a| a[0] != 0x70).count();
        assert!(coached >= 55, "the coach is in {coached} of 60 frames");
        assert!(
            !out.iter()
                .any(|o| matches!(o, BridgeOutput::Timeline(TimelineKind::AudioDropped { .. }))),
            "nothing of the coach dropped"
        );
    }

    #[test]
    fn a_supervisors_voice_into_a_silent_direction_is_heard_whole_in_order_and_frame_sized() {
        use crate::domain::SupervisorMode;
        let t = Instant::now();
        let mut b = merged_and_supervised(SupervisorMode::Barge, t);
        let mut now = t + Duration::from_secs(1);
        // Nobody else speaks: ten live frames, then one message carrying five at once.
        let mut sent: Vec<Vec<u8>> = Vec::new();
        let mut out = Vec::new();
        for i in 0..10u8 {
            let frame = vec![0x10 + i; 160];
            sent.push(frame.clone());
            b.supervisor_audio(frame);
            out.extend(drain(&mut b, now));
            now += FRAME;
        }
        let burst: Vec<u8> = (0..5u8).flat_map(|i| vec![0x40 + i; 160]).collect();
        sent.extend(burst.chunks(160).map(<[u8]>::to_vec));
        b.supervisor_audio(burst);
        for _ in 0..10 {
            out.extend(drain(&mut b, now));
            b.supervisor_audio(vec![g711::ULAW_SILENCE; 160]);
            now += FRAME;
        }
        for (to_caller, label) in [(true, "caller"), (false, "person")] {
            let heard: Vec<&Vec<u8>> = out
                .iter()
                .filter_map(|o| match o {
                    BridgeOutput::ToCaller(LegCommand::Audio(a)) if to_caller => Some(a),
                    BridgeOutput::ToHuman(LegCommand::Audio(a)) if !to_caller => Some(a),
                    _ => None,
                })
                .filter(|a| a.iter().any(|&x| x != g711::ULAW_SILENCE))
                .collect();
            assert!(
                heard.iter().all(|a| a.len() == 160),
                "the {label} got frames of {:?} bytes",
                heard.iter().map(|a| a.len()).collect::<Vec<_>>()
            );
            let heard: Vec<Vec<u8>> = heard.into_iter().cloned().collect();
            assert_eq!(
                heard, sent,
                "the {label} hears the voice once, whole, in order"
            );
        }
    }

    #[test]
    fn a_person_asked_to_accept_hears_the_question_alone_and_2_passes_the_call_on() {
        let t = Instant::now();
        let (mut b, out) = consulting(Some(Duration::from_secs(5)), t);
        assert_eq!(frames_of(&out, true, 0x5b), 10, "the whisper to the person");
        assert_eq!(frames_of(&out, true, 0x5a), 5, "then the question");
        assert_eq!(
            frames_of(&out, false, 0x5b) + frames_of(&out, false, 0x5a),
            0
        );
        assert!(matches!(b.handoff_state(), HandoffState::Whispering { .. }));
        b.handle_human(LegEvent::Dtmf('2'), t + Duration::from_secs(1));
        let out = drain(&mut b, t + Duration::from_secs(1));
        assert!(
            out.contains(&BridgeOutput::ToHuman(LegCommand::Hangup)),
            "{out:?}"
        );
        assert!(
            out.contains(&BridgeOutput::Routing(RoutingRequest::Release {
                agent: "desk".into()
            }))
        );
        assert!(out.iter().any(|o| matches!(o,
            BridgeOutput::Routing(RoutingRequest::OfferNext { instead_of, .. }) if instead_of == "desk")));
        assert!(matches!(b.handoff_state(), HandoffState::Queued));
        // A digit after that changes nothing.
        b.handle_human(LegEvent::Dtmf('1'), t + Duration::from_secs(2));
        assert!(matches!(b.handoff_state(), HandoffState::Queued));
    }

    #[test]
    fn a_person_asked_to_accept_takes_the_call_with_1_or_by_staying_silent() {
        let t = Instant::now();
        let (mut b, _) = consulting(Some(Duration::from_secs(5)), t);
        b.handle_human(LegEvent::Dtmf('1'), t + Duration::from_secs(1));
        drain(&mut b, t + Duration::from_secs(1));
        assert!(matches!(b.handoff_state(), HandoffState::Merged { .. }));

        let (mut b, _) = consulting(Some(Duration::from_secs(5)), t);
        // The question ended at ~0.6 s: still asking at 4 s, taken at 5.6 s.
        drain_over(&mut b, t + Duration::from_secs(1), Duration::from_secs(3));
        assert!(matches!(b.handoff_state(), HandoffState::Whispering { .. }));
        drain_over(&mut b, t + Duration::from_secs(4), Duration::from_secs(3));
        assert!(matches!(b.handoff_state(), HandoffState::Merged { .. }));

        // Without a consult window the whisper's end merges at once (as before).
        let (b, out) = consulting(None, t);
        assert_eq!(frames_of(&out, true, 0x5a), 0, "nobody is asked");
        assert!(matches!(b.handoff_state(), HandoffState::Merged { .. }));
    }

    fn caller_bytes(out: &[BridgeOutput], fill: u8) -> usize {
        out.iter()
            .filter_map(|o| match o {
                BridgeOutput::ToCaller(LegCommand::Audio(a)) => {
                    Some(a.iter().filter(|&&b| b == fill).count())
                }
                _ => None,
            })
            .sum()
    }

    #[test]
    fn a_failed_agent_gets_the_caller_an_apology_at_once_then_the_escalation() {
        let t = Instant::now();
        let mut b = bridge();
        b.handle_agent(
            LegEvent::Hangup(HangupCause::Unreachable("refused".into())),
            t,
        );
        let out = drain_over(&mut b, t, Duration::from_secs(1));
        assert!(
            out.contains(&BridgeOutput::Timeline(TimelineKind::PromptStarted {
                name: "agent_failed".into()
            }))
        );
        assert_eq!(
            caller_bytes(&out, 0x55),
            800,
            "the whole apology within 1 s"
        );
        // The monitor's escalation arrives: the disclosure follows, no goodbye.
        b.escalate(
            HandoffPrompts {
                disclosure: Arc::from(vec![0x77u8; 320]),
                callback: Arc::from(vec![0x78u8; 160]),
                consult: None,
            },
            t + Duration::from_secs(1),
        );
        let out = drain_over(&mut b, t + Duration::from_secs(1), Duration::from_secs(6));
        assert_eq!(caller_bytes(&out, 0x77), 320, "the disclosure");
        assert_eq!(caller_bytes(&out, 0x66), 0, "no goodbye");
        assert!(!b.is_ended());
        assert!(!matches!(b.handoff_state(), HandoffState::Ai));
    }

    #[test]
    fn without_an_escalation_an_agent_failure_ends_the_call_with_a_goodbye() {
        let t = Instant::now();
        let mut b = bridge();
        b.handle_agent(LegEvent::Hangup(HangupCause::Lost("reset".into())), t);
        let out = drain_over(&mut b, t, Duration::from_secs(5));
        assert_eq!(caller_bytes(&out, 0x55), 800);
        assert_eq!(caller_bytes(&out, 0x66), 400, "the goodbye after the grace");
        assert!(out.contains(&BridgeOutput::ToCaller(LegCommand::Mark(
            GatewayMark::End.as_str().into()
        ))));
        assert!(!b.is_ended());
        b.handle_caller(
            LegEvent::Mark(GatewayMark::End.as_str().into()),
            t + Duration::from_secs(5),
        );
        let out = drain(&mut b, t + Duration::from_secs(5));
        assert!(
            out.contains(&BridgeOutput::Ended(EndReason::AgentUnavailable(
                "reset".into()
            )))
        );
        assert!(out.contains(&BridgeOutput::ToCaller(LegCommand::Hangup)));
    }

    #[test]
    fn the_call_ends_at_the_deadline_if_the_provider_never_echoes_the_end_mark() {
        let t = Instant::now();
        let mut b = bridge();
        b.handle_agent(LegEvent::Hangup(HangupCause::Lost("reset".into())), t);
        drain_over(&mut b, t, Duration::from_secs(5));
        let deadline = b.poll_at(t + Duration::from_secs(5)).unwrap();
        assert!(deadline > t + Duration::from_secs(5));
        let out = drain(&mut b, deadline);
        assert!(matches!(
            out.last(),
            Some(BridgeOutput::Ended(EndReason::AgentUnavailable(_)))
        ));
    }

    #[test]
    fn stop_from_the_caller_ends_the_call_and_hangs_up_the_agent() {
        let t = Instant::now();
        let mut b = bridge();
        b.handle_agent(LegEvent::Connected, t);
        b.handle_agent(
            LegEvent::Turn(Turn {
                role: Role::Agent,
                content: "Hello".into(),
                confidence: Some(0.9),
            }),
            t,
        );
        b.handle_caller(LegEvent::Hangup(HangupCause::Normal), t);
        let out = drain(&mut b, t);
        assert!(out.contains(&BridgeOutput::ToAgent(LegCommand::Hangup)));
        assert!(!out.contains(&BridgeOutput::ToCaller(LegCommand::Hangup)));
        assert_eq!(
            out.last(),
            Some(&BridgeOutput::Ended(EndReason::CallerHangup))
        );
        assert!(b.is_ended());
        assert_eq!(b.poll_at(t), None);
    }

    #[test]
    fn a_flood_of_bad_messages_ends_the_call() {
        let t = Instant::now();
        let mut b = bridge();
        for _ in 0..50 {
            b.handle_caller(
                LegEvent::Error(crate::legs::media_streams::ProtocolError::MalformedJson(
                    "x".into(),
                )),
                t,
            );
        }
        let out = drain(&mut b, t);
        assert!(matches!(
            out.last(),
            Some(BridgeOutput::Ended(EndReason::ProtocolErrors(_)))
        ));
    }
}
