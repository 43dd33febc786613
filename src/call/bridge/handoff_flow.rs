//! The handoff half of the call bridge: disclosure, hold, whisper to the human
//! agent only, merge, callback. Driven by [`Handoff`](crate::call::handoff::Handoff);
//! audio sources follow its routing matrix.

use super::{AgentState, BridgeOutput, CallBridge};
use crate::call::handoff::{HandoffAction, HandoffInput, HandoffState};
use crate::call::timeline::{EndReason, TimelineKind};
use crate::domain::{GatewayMark, HandoffOutcome, HandoffResult, HandoffStep, Party};
use crate::legs::{LegCommand, LegEvent};
use crate::media::mixer::{Listener, Source};
use crate::media::playout::PlayoutOutput;
use crate::monitor::wait_choice::{WaitChoice, wait_choice};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The caller-facing prompts of a handoff, μ-law 8 kHz.
#[derive(Debug, Clone)]
pub struct HandoffPrompts {
    /// Why, that context travels, the expected wait.
    pub disclosure: Arc<[u8]>,
    /// "We will call you back".
    pub callback: Arc<[u8]>,
    /// "Press 1 to take this call, 2 to pass": to a person who must accept
    /// after the whisper (only rendered when some agent is asked).
    pub consult: Option<Arc<[u8]>>,
}

/// What the bridge asks of routing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoutingRequest {
    /// Put the call in the queue (the screen-pop goes out with the offer).
    JoinQueue,
    /// The offered agent did not take it: try the next.
    OfferNext {
        /// The agent who did not.
        instead_of: String,
        /// They let it ring out (they go to not ready).
        missed: bool,
    },
    /// The human agent transferred the call: queue it again for `target`.
    Transfer {
        /// The agent who handed it on (not offered it again).
        from: String,
        /// Where it goes.
        target: crate::domain::TransferTarget,
    },
    /// Save a callback with the context.
    SaveCallback {
        /// Why the call could not be taken now.
        reason: String,
    },
    /// The human agent is free again.
    Release {
        /// The agent.
        agent: String,
    },
}

impl CallBridge {
    /// Where the handoff stands.
    pub fn handoff_state(&self) -> &HandoffState {
        self.handoff.state()
    }

    /// The monitor decided to escalate: play the disclosure and join the queue.
    pub fn escalate(&mut self, prompts: HandoffPrompts, now: Instant) {
        if self.ended || self.closing || *self.handoff.state() != HandoffState::Ai {
            return;
        }
        self.prompts = Some(prompts);
        self.agent_failure = None;
        self.step(HandoffStep::Escalating, None, None);
        let actions = self.handoff.handle(HandoffInput::Escalate, now);
        self.apply(actions, now);
    }

    /// Routing offered the call to `agent` (their screen-pop is up).
    /// The queue widened: the next offer goes beyond the call's skill.
    pub fn overflowed(&mut self, agent: String) {
        if !self.closing {
            self.step(HandoffStep::Overflowed, Some(&agent), None);
        }
    }

    /// An agent is being offered the call.
    pub fn agent_offered(&mut self, agent: String, now: Instant) {
        if self.closing {
            return;
        }
        self.step(HandoffStep::Ringing, Some(&agent), None);
        let actions = self.handoff.handle(HandoffInput::Offered { agent }, now);
        self.apply(actions, now);
    }

    /// The agent accepted; their leg is connected to the call.
    pub fn agent_answered(&mut self, agent: String, now: Instant) {
        if self.closing
            || !matches!(self.handoff.state(), HandoffState::Ringing { agent: a, .. } if *a == agent)
        {
            // Not the agent we are ringing (a stale accept), or the gateway is
            // stopping: let them go.
            self.emit(BridgeOutput::ToHuman(LegCommand::Hangup));
            self.emit(BridgeOutput::Routing(super::RoutingRequest::Release {
                agent,
            }));
            return;
        }
        self.human = Some(agent.clone());
        self.step(HandoffStep::Answered, Some(&agent), None);
        let actions = self.handoff.handle(HandoffInput::Accepted { agent }, now);
        self.apply(actions, now);
    }

    /// The offered agent declined (or their console went away).
    /// The agent declined (`detail`: why, when it was not a person's choice,
    /// such as a voicemail box that answered).
    pub fn agent_declined(&mut self, agent: String, detail: Option<&str>, now: Instant) {
        if self.closing {
            return;
        }
        let actions = self.handoff.handle(
            HandoffInput::Declined {
                agent: agent.clone(),
            },
            now,
        );
        if !actions.is_empty() {
            self.step(HandoffStep::Declined, Some(&agent), detail);
        }
        self.apply(actions, now);
    }

    /// Whether a caller nobody can take goes back to the AI (else a
    /// callback): the skill the call was queued for may say otherwise than
    /// the gateway's default.
    pub fn set_no_agent_to_ai(&mut self, to_ai: bool) {
        self.config.no_agent_to_ai = to_ai;
    }

    /// Nobody can take the call now.
    pub fn no_agent(&mut self, reason: String, now: Instant) {
        if self.closing {
            return;
        }
        self.step(HandoffStep::NoAgent, None, Some(&reason));
        if self.config.no_agent_to_ai
            && !self.returned_for_no_agent
            && self.agent != AgentState::Gone
            && self.agent_failure.is_none()
        {
            // The AI is still listening: it takes the caller back, told why,
            // rather than the caller hearing a callback script.
            self.returned_for_no_agent = true;
            if self.return_to_ai(Some(reason.clone()), now) {
                return;
            }
        }
        self.callback_reason = Some(reason);
        let actions = self.handoff.handle(HandoffInput::NoAgent, now);
        self.apply(actions, now);
    }

    /// The caller goes back to the AI agent: a person is done with them (after
    /// the merge: outcome `completed`), or nobody can take the call (while
    /// waiting: `no_agent`). The person (if any) is let go,
    /// hold audio and prompts stop, the AI leg is dialled again if it closed at
    /// the merge, and the AI is told the outcome and `note` in a
    /// `handoff_result`. False (nothing changes) when the call is not with a
    /// person or waiting for one: with the AI already, mid-whisper, or over.
    pub fn return_to_ai(&mut self, note: Option<String>, now: Instant) -> bool {
        if self.ended || self.closing {
            return false;
        }
        let (outcome, agent) = match self.handoff.state() {
            HandoffState::Merged { agent } => (HandoffOutcome::Completed, Some(agent.clone())),
            _ => (HandoffOutcome::NoAgent, None),
        };
        let mut note = HandoffResult::note_from(note);
        if let Some(n) = note.as_mut() {
            self.config.redactor.string(n);
        }
        self.returning = Some(HandoffResult {
            outcome,
            agent,
            note,
            conversation: Vec::new(),
        });
        let actions = self.handoff.handle(HandoffInput::ReturnToAi, now);
        if actions.is_empty() {
            self.returning = None;
            return false;
        }
        self.apply(actions, now);
        true
    }

    /// A supervisor coaches the AI agent: the hint goes to it (never to the
    /// caller) and on the timeline. False when the caller is not with the AI
    /// (the hint would reach nobody).
    pub fn supervisor_hint(&mut self, supervisor: String, text: String) -> bool {
        if self.ended
            || self.closing
            || self.agent != AgentState::Up
            || *self.handoff.state() != HandoffState::Ai
        {
            return false;
        }
        self.emit(BridgeOutput::Timeline(TimelineKind::SupervisorHint {
            supervisor: supervisor.clone(),
            text: text.clone(),
        }));
        self.emit(BridgeOutput::ToAgent(LegCommand::Hint(
            crate::domain::SupervisorHint {
                from: supervisor,
                text,
            },
        )));
        true
    }

    /// Everything the handoff set up is let go; the call is the AI's again.
    fn resume_ai(&mut self) {
        let result = self.returning.take().unwrap_or(HandoffResult {
            outcome: HandoffOutcome::NoAgent,
            agent: None,
            note: None,
            conversation: Vec::new(),
        });
        if let Some(agent) = self.human.take() {
            self.emit(BridgeOutput::ToHuman(LegCommand::Hangup));
            self.emit(BridgeOutput::Routing(super::RoutingRequest::Release {
                agent,
            }));
        }
        self.hold_on = false;
        self.human_away = false;
        self.agent_hold = false;
        self.awaiting_first_words = None;
        self.human_playout.clear();
        self.whisper = None;
        self.whisper_failed = false;
        self.whisper_waiting = false;
        self.consult_window = None;
        self.consult_until = None;
        self.callback_reason = None;
        self.transfer_to = None;
        self.prompts = None;
        self.ai_speaking = false;
        self.ai_finishing = None;
        if result.outcome == HandoffOutcome::Completed {
            // The person's live audio stops; the AI speaks next.
            self.replace_caller_audio();
            self.playout.restart_clock();
        }
        // From the queue, a prompt in progress (the disclosure) finishes
        // first: the AI's words follow it, never cut it mid-word.
        let detail = result.detail();
        self.step(
            HandoffStep::ReturnedToAi,
            result.agent.as_deref(),
            Some(&detail),
        );
        let redial = self.agent == AgentState::Gone;
        if redial {
            self.agent = AgentState::Connecting;
            self.agent_failure = None;
        }
        self.emit(BridgeOutput::ReturnedToAi {
            redial,
            outcome: result.outcome,
        });
        self.emit(BridgeOutput::ToAgent(LegCommand::HandoffResult(Box::new(
            result,
        ))));
    }

    /// The whisper (μ-law 8 kHz) is ready; it replaces an earlier render not yet played.
    pub fn whisper_ready(&mut self, ulaw: Arc<[u8]>, now: Instant) {
        if self.closing {
            return;
        }
        self.whisper = Some(ulaw);
        self.whisper_failed = false;
        if self.whisper_waiting {
            self.start_whisper(now);
        }
    }

    /// The whisper could not be rendered: the agent is connected without it.
    pub fn whisper_failed(&mut self, now: Instant) {
        if self.closing {
            return;
        }
        self.whisper_failed = true;
        if self.whisper_waiting {
            self.start_whisper(now);
        }
    }

    /// Feeds an event from the human agent's leg.
    pub fn handle_human(&mut self, event: LegEvent, now: Instant) {
        if self.ended || self.human.is_none() {
            return;
        }
        match event {
            LegEvent::Audio(bytes) => {
                if self.human_away || self.agent_hold {
                    return; // the caller is on hold: the agent is not heard
                }
                if self.relayed() {
                    return; // from before the park: the plane carries the media now
                }
                self.listen_for_first_words(&bytes, now);
                if self
                    .handoff
                    .matrix()
                    .hears(Listener::Caller, Source::HumanAgent)
                    && let Err(e) = self.playout.push_audio(&bytes)
                {
                    self.emit(BridgeOutput::Timeline(TimelineKind::AudioDropped {
                        leg: Party::Caller,
                        reason: e.to_string(),
                    }));
                }
            }
            LegEvent::SkipWhisper => {
                if matches!(self.handoff.state(), HandoffState::Whispering { .. }) {
                    self.human_playout.clear();
                    self.whisper_waiting = false;
                    self.emit(BridgeOutput::ToHuman(LegCommand::Mark(
                        GatewayMark::WhisperEnd.as_str().into(),
                    )));
                    self.step(
                        HandoffStep::WhisperSkipped,
                        self.human.clone().as_deref(),
                        None,
                    );
                    self.whisper_finished(now);
                }
            }
            LegEvent::Detached => {
                self.human_away = true;
                self.step(
                    HandoffStep::AgentDetached,
                    self.human.clone().as_deref(),
                    None,
                );
            }
            LegEvent::Hold
                if !self.agent_hold
                    && matches!(self.handoff.state(), HandoffState::Merged { .. }) =>
            {
                self.agent_hold = true;
                self.step(HandoffStep::CallerHeld, self.human.clone().as_deref(), None);
            }
            LegEvent::Resume if self.agent_hold => {
                self.agent_hold = false;
                self.replace_caller_audio();
                self.step(
                    HandoffStep::CallerResumed,
                    self.human.clone().as_deref(),
                    None,
                );
            }
            LegEvent::ReturnToAi(note)
                if matches!(self.handoff.state(), HandoffState::Merged { .. }) =>
            {
                self.return_to_ai(note, now);
            }
            LegEvent::Transfer(target)
                if matches!(self.handoff.state(), HandoffState::Merged { .. }) =>
            {
                let agent = self.human.take();
                self.agent_hold = false;
                self.human_away = false;
                self.awaiting_first_words = None;
                if let Some(agent) = &agent {
                    self.step(
                        HandoffStep::Transferred,
                        Some(agent),
                        Some(&format!("to {target}")),
                    );
                    self.emit(BridgeOutput::Routing(super::RoutingRequest::Release {
                        agent: agent.clone(),
                    }));
                }
                self.transfer_to = Some(target);
                let actions = self.handoff.handle(HandoffInput::Transfer, now);
                self.apply(actions, now);
            }
            LegEvent::Reattached => {
                self.human_away = false;
                if matches!(self.handoff.state(), HandoffState::Merged { .. }) {
                    // Queued hold audio must not delay the agent's voice.
                    self.replace_caller_audio();
                }
                self.step(
                    HandoffStep::AgentReattached,
                    self.human.clone().as_deref(),
                    None,
                );
            }
            LegEvent::Hangup(cause) => {
                let lost = self.human_away;
                let (step, input) = if lost {
                    (HandoffStep::AgentDisconnected, HandoffInput::AgentLost)
                } else {
                    (HandoffStep::AgentLeft, HandoffInput::AgentGone)
                };
                let why = if lost { cause.lost_because() } else { None };
                self.human_leaves(step, why.as_deref(), input, now);
            }
            LegEvent::Dtmf(digit) => {
                let to_caller = !self.consult_answer(digit, now)
                    && matches!(self.handoff.state(), HandoffState::Merged { .. })
                    && !self.agent_hold
                    && !self.human_away;
                if to_caller {
                    // The person's keypad reaches the caller's side (an IVR or
                    // a conference bridge behind the caller's number).
                    self.emit(BridgeOutput::ToCaller(LegCommand::Dtmf(digit)));
                }
            }
            LegEvent::CanRelay => self.relay.human_can = self.human.clone(),
            LegEvent::Error(error) => {
                self.emit(BridgeOutput::Timeline(TimelineKind::ProtocolError {
                    leg: Party::HumanAgent,
                    error: error.to_string(),
                }))
            }
            _ => {}
        }
    }

    /// While waiting for an agent: 2 asks for a callback instead, 1 keeps waiting.
    /// Returns true when the digit was such a choice.
    pub(super) fn waiting_choice(&mut self, digit: char, now: Instant) -> bool {
        let choice = match digit {
            '1' => WaitChoice::Wait,
            '2' => WaitChoice::Callback,
            _ => return false,
        };
        self.caller_chose(choice, "keypad", now)
    }

    /// The AI leg transcribed the caller while they wait: a clear spoken choice
    /// counts like the keypad.
    pub(super) fn spoken_choice(&mut self, text: &str, now: Instant) -> bool {
        match wait_choice(text) {
            Some(choice) => self.caller_chose(choice, "speech", now),
            None => false,
        }
    }

    fn caller_chose(&mut self, choice: WaitChoice, how: &str, now: Instant) -> bool {
        let waiting = matches!(
            self.handoff.state(),
            HandoffState::Escalating | HandoffState::Queued | HandoffState::Ringing { .. }
        );
        if !waiting {
            return false;
        }
        match choice {
            WaitChoice::Callback => {
                self.step(HandoffStep::CallerChoseCallback, None, Some(how));
                self.no_agent("the caller chose a callback".into(), now);
            }
            WaitChoice::Wait => self.step(HandoffStep::CallerWaits, None, Some(how)),
        }
        true
    }

    /// After the merge, the first speech on the human agent's leg is a quality
    /// figure: how long the caller waited for a greeting.
    fn listen_for_first_words(&mut self, ulaw: &[u8], now: Instant) {
        let Some(merged) = self.awaiting_first_words else {
            return;
        };
        let mut pcm = vec![0i16; ulaw.len()];
        crate::media::g711::decode_ulaw(ulaw, &mut pcm);
        if self.human_vad.process(&pcm) == Some(crate::media::vad::VadEvent::SpeechStarted) {
            self.awaiting_first_words = None;
            self.emit(BridgeOutput::Timeline(TimelineKind::AgentFirstWords {
                agent: self.human.clone().unwrap_or_default(),
                after_merge_ms: now.saturating_duration_since(merged).as_millis() as u64,
            }));
        }
    }

    pub(super) fn handoff_caller_gone(&mut self, now: Instant) {
        let actions = self.handoff.handle(HandoffInput::CallerGone, now);
        // Only End can come back; `end` itself follows in the caller's handler.
        drop(actions);
    }

    /// Handles the provider's echo of a handoff prompt mark; true if it was one.
    pub(super) fn handoff_mark(&mut self, name: &str, now: Instant) -> bool {
        let input = match GatewayMark::from_wire(name) {
            Some(GatewayMark::Disclosure) => HandoffInput::DisclosurePlayed,
            Some(GatewayMark::Callback) => HandoffInput::CallbackPlayed,
            _ => return false,
        };
        let actions = self.handoff.handle(input, now);
        self.apply(actions, now);
        true
    }

    /// Timeouts and hold audio, at `now`.
    pub(super) fn handoff_poll(&mut self, now: Instant) {
        if self.consult_until.is_some_and(|until| now >= until) {
            // Silence takes the call: nobody is left ringing for a yes.
            self.step(
                HandoffStep::ConsultAccepted,
                self.human.clone().as_deref(),
                Some("no digit in time"),
            );
            self.whisper_finished(now);
        }
        let actions = self.handoff.poll_timeout(now);
        if !actions.is_empty() {
            self.step(HandoffStep::RingTimeout, None, None);
            self.apply(actions, now);
        }
        if self.caller_hears_hold() {
            while self.playout.queued_frames() < 2 {
                let frame = self.hold.next_frame();
                if self.playout.push_audio(&frame).is_err() {
                    break;
                }
            }
        }
    }

    /// Whether the caller hears hold audio now: waiting for a person, the
    /// agent's console away, or the agent holding them.
    pub(super) fn caller_hears_hold(&self) -> bool {
        // Never between the pieces of an AI sentence being finished.
        (self.hold_on || self.human_away || self.agent_hold) && self.ai_finishing.is_none()
    }

    /// Turns a released human-playout item into an output; the whisper's end mark merges.
    pub(super) fn human_output(&mut self, out: PlayoutOutput, now: Instant) -> BridgeOutput {
        match out {
            PlayoutOutput::Audio(bytes) => {
                BridgeOutput::ToHuman(LegCommand::Audio(self.coach_into(bytes)))
            }
            PlayoutOutput::Mark(name) => {
                if name == GatewayMark::WhisperEnd.as_str()
                    && matches!(self.handoff.state(), HandoffState::Whispering { .. })
                {
                    self.whisper_finished(now);
                }
                BridgeOutput::ToHuman(LegCommand::Mark(name))
            }
        }
    }

    pub(super) fn queue_for_human(&mut self, bytes: &[u8]) {
        if let Err(e) = self.human_playout.push_audio(bytes) {
            self.emit(BridgeOutput::Timeline(TimelineKind::AudioDropped {
                leg: Party::HumanAgent,
                reason: e.to_string(),
            }));
        }
    }

    fn start_whisper(&mut self, now: Instant) {
        self.whisper_waiting = false;
        let agent = self.human.clone();
        match self.whisper.clone() {
            Some(ulaw) if !self.whisper_failed || !ulaw.is_empty() => {
                // The whisper goes into the human agent's queue and nowhere else.
                self.queue_for_human(&ulaw);
                self.human_playout
                    .push_mark(GatewayMark::WhisperEnd.as_str());
                let seconds = ulaw.len() as f64 / 8000.0;
                self.step(
                    HandoffStep::WhisperStarted,
                    agent.as_deref(),
                    Some(&format!("{seconds:.2} s")),
                );
            }
            _ => {
                self.step(
                    HandoffStep::WhisperMissing,
                    agent.as_deref(),
                    Some("connecting without a whisper"),
                );
                self.emit(BridgeOutput::ToHuman(LegCommand::Mark(
                    GatewayMark::WhisperEnd.as_str().into(),
                )));
                self.whisper_finished(now);
            }
        }
    }

    /// The next answer comes from a person who must accept after the whisper
    /// (press 1, or stay silent for `window`); `None` merges right after it.
    pub fn consult_after_whisper(&mut self, window: Option<Duration>) {
        self.consult_window = window;
        self.consult_until = None;
    }

    /// The whisper is over (played, skipped or missing): merge, or first ask a
    /// person who must accept. The question goes to them only; the caller
    /// still hears hold audio (the handoff is still `Whispering`).
    fn whisper_finished(&mut self, now: Instant) {
        if let Some(window) = self.consult_window.take() {
            self.consult_until = Some(now + window);
            if let Some(ask) = self.prompts.as_ref().and_then(|p| p.consult.clone()) {
                self.queue_for_human(&ask);
            }
            self.step(
                HandoffStep::ConsultAsked,
                self.human.clone().as_deref(),
                Some(&format!("{} s of silence takes it", window.as_secs())),
            );
            return;
        }
        self.consult_until = None;
        let actions = self.handoff.handle(HandoffInput::WhisperDone, now);
        self.apply(actions, now);
    }

    /// The human leg is over (they hung up, dropped, or passed the call on):
    /// their queued audio and any question are dropped, `step` is recorded,
    /// routing gets the agent back, and the handoff moves on with `input`.
    fn human_leaves(
        &mut self,
        step: HandoffStep,
        why: Option<&str>,
        input: HandoffInput,
        now: Instant,
    ) {
        let agent = self.human.take();
        self.human_playout.clear();
        self.whisper_waiting = false;
        self.consult_window = None;
        self.consult_until = None;
        self.human_away = false;
        self.agent_hold = false;
        if let Some(agent) = &agent {
            self.step(step, Some(agent), why);
            self.emit(BridgeOutput::Routing(super::RoutingRequest::Release {
                agent: agent.clone(),
            }));
        }
        let actions = self.handoff.handle(input, now);
        self.apply(actions, now);
    }

    /// A digit from the person being asked: 1 takes the call, 2 passes it on.
    /// Returns true when it was such an answer.
    fn consult_answer(&mut self, digit: char, now: Instant) -> bool {
        if self.consult_until.is_none() && self.consult_window.is_none() {
            return false;
        }
        if !matches!(self.handoff.state(), HandoffState::Whispering { .. }) {
            return false;
        }
        match digit {
            '1' => {
                // Taken, even before the whisper ends: merge at once.
                self.consult_window = None;
                self.consult_until = None;
                self.whisper_waiting = false;
                self.human_playout.clear();
                self.step(
                    HandoffStep::ConsultAccepted,
                    self.human.clone().as_deref(),
                    Some("pressed 1"),
                );
                self.whisper_finished(now);
                true
            }
            '2' => {
                self.emit(BridgeOutput::ToHuman(LegCommand::Hangup));
                self.human_leaves(
                    HandoffStep::ConsultDeclined,
                    Some("pressed 2"),
                    HandoffInput::AgentGone,
                    now,
                );
                true
            }
            _ => false,
        }
    }

    /// The AI's sentence in progress at the escalation has ended (its mark, a
    /// clear, its leg gone, the grace bound, or the handoff moving on): the
    /// disclosure follows it, and nothing more from the AI is queued.
    pub(super) fn finish_ai_sentence(&mut self) {
        if self.ai_finishing.take().is_some() {
            self.ai_speaking = false;
            self.push_disclosure();
        }
    }

    fn push_disclosure(&mut self) {
        if let Some(p) = self.prompts.clone() {
            self.push_prompt(&p.disclosure, GatewayMark::Disclosure, "disclosure");
        }
    }

    fn apply(&mut self, actions: Vec<HandoffAction>, now: Instant) {
        for action in actions {
            if !matches!(
                action,
                HandoffAction::PlayDisclosure
                    | HandoffAction::JoinQueue
                    | HandoffAction::StartHold
                    | HandoffAction::OfferNextAgent { .. }
                    | HandoffAction::PlayWhisper { .. }
            ) {
                // Whatever changes the caller's audio comes after the disclosure.
                self.finish_ai_sentence();
            }
            match action {
                HandoffAction::PlayDisclosure => {
                    // The AI's sentence in progress finishes (no cut-off
                    // mid-word), even if the rest of it is still arriving; no
                    // new sentence from the AI is queued, and the disclosure
                    // follows.
                    if self.ai_speaking && self.agent == AgentState::Up {
                        self.ai_finishing = Some(now + super::AI_SENTENCE_GRACE);
                    } else {
                        self.push_disclosure();
                    }
                }
                HandoffAction::JoinQueue => {
                    self.emit(BridgeOutput::Routing(super::RoutingRequest::JoinQueue))
                }
                HandoffAction::StartHold => self.hold_on = true,
                HandoffAction::OfferNextAgent { instead_of, missed } => {
                    self.emit(BridgeOutput::Routing(super::RoutingRequest::OfferNext {
                        instead_of,
                        missed,
                    }))
                }
                HandoffAction::Requeue { from } => {
                    // A merged call's playout carried live speech: the hold
                    // audio starts at once.
                    self.replace_caller_audio();
                    if let Some(target) = self.transfer_to.take() {
                        self.emit(BridgeOutput::Routing(super::RoutingRequest::Transfer {
                            from,
                            target,
                        }));
                    }
                }
                HandoffAction::PlayWhisper { .. } => {
                    if self.whisper.is_some() || self.whisper_failed {
                        self.start_whisper(now);
                    } else {
                        self.whisper_waiting = true;
                    }
                }
                HandoffAction::Merge { agent } => {
                    // Stale hold audio must not play after the merge.
                    self.hold_on = false;
                    self.replace_caller_audio();
                    // Both directions are live speech from here: each frame goes
                    // out when it arrives, not on the hold audio's or the
                    // whisper's frame clock.
                    self.playout.restart_clock();
                    self.human_playout.restart_clock();
                    if self.agent != AgentState::Gone {
                        self.agent = AgentState::Gone;
                        self.emit(BridgeOutput::ToAgent(LegCommand::Hangup));
                    }
                    self.step(HandoffStep::Merged, Some(&agent), Some("AI leg closed"));
                    self.awaiting_first_words = Some(now);
                }
                HandoffAction::OfferCallback => {
                    self.hold_on = false;
                    // An apology for a failed AI agent still playing is never cut:
                    // the callback prompt follows what is queued.
                    if self.apology_until.is_none_or(|until| now >= until) {
                        self.replace_caller_audio();
                    }
                    if let Some(p) = self.prompts.clone() {
                        self.push_prompt(&p.callback, GatewayMark::Callback, "callback");
                    }
                    let reason = self
                        .callback_reason
                        .clone()
                        .unwrap_or_else(|| "no agent available".into());
                    self.emit(BridgeOutput::Routing(super::RoutingRequest::SaveCallback {
                        reason,
                    }));
                }
                HandoffAction::ResumeAi => self.resume_ai(),
                HandoffAction::End => {
                    let reason = match self.handoff.state() {
                        HandoffState::Ended if self.callback_reason.is_some() => {
                            EndReason::CallbackScheduled(
                                self.callback_reason.clone().unwrap_or_default(),
                            )
                        }
                        _ => EndReason::HumanAgentHangup,
                    };
                    self.end(reason);
                }
            }
        }
    }

    /// Flushes whatever the caller was going to hear next and tells the provider.
    fn replace_caller_audio(&mut self) {
        let marks = self.playout.clear();
        self.emit(BridgeOutput::ToCaller(LegCommand::Clear));
        if self.agent == AgentState::Up && *self.handoff.state() != HandoffState::Ended {
            for name in marks {
                self.emit(BridgeOutput::ToAgent(LegCommand::Mark(name)));
            }
        }
    }

    fn push_prompt(&mut self, audio: &[u8], mark: GatewayMark, name: &str) {
        if let Err(e) = self.playout.push_audio(audio) {
            self.emit(BridgeOutput::Timeline(TimelineKind::AudioDropped {
                leg: Party::Caller,
                reason: e.to_string(),
            }));
        }
        self.playout.push_mark(mark.as_str());
        self.emit(BridgeOutput::Timeline(TimelineKind::PromptStarted {
            name: name.into(),
        }));
    }

    fn step(&mut self, step: HandoffStep, agent: Option<&str>, detail: Option<&str>) {
        self.emit(BridgeOutput::Timeline(TimelineKind::HandoffStep {
            step,
            agent: agent.map(str::to_string),
            detail: detail.map(str::to_string),
        }));
    }
}
