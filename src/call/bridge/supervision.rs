//! The supervision half of the call bridge: a supervisor listens (the caller
//! and whoever the caller hears, mixed), coaches (speaks to the human agent
//! only) or barges (speaks to both). The supervisor's feed is tapped from what
//! the caller says and from the caller's own playout, so it carries exactly
//! what the caller hears — never the whisper, which only enters the human
//! agent's playout. The supervisor's voice is mixed into frames already going
//! out, never delaying them, or queued alone, paced, when that direction is silent.

use super::{BridgeOutput, CallBridge};
use crate::call::handoff::HandoffState;
use crate::call::timeline::TimelineKind;
use crate::domain::{Party, SupervisorMode};
use crate::media::g711;
use std::collections::VecDeque;

/// Frames of the caller kept for the supervisor's mix before they go alone.
const SAID_KEPT: usize = 2;
/// Frames of the supervisor's voice that arrive while nothing goes that way
/// before the direction counts as silent and the voice goes alone (more than
/// a browser's WebRTC burst, so a live direction is mixed into, not interleaved).
const SILENT_AFTER: usize = 4;
/// Most frames of the supervisor's voice waiting to be mixed into a live
/// direction (200 ms); older ones are dropped and counted.
const VOICE_KEPT: usize = 10;
/// One 20 ms μ-law frame.
const VOICE_FRAME: usize = 160;

/// A supervisor on the call's audio.
#[derive(Debug, Default)]
pub(super) struct Supervision {
    /// Who, and how (`None`: nobody).
    pub(super) on: Option<(String, SupervisorMode)>,
    /// The caller's latest frames, waiting for what the caller hears.
    said: VecDeque<Vec<u8>>,
    /// The supervisor's voice for the human agent.
    coach: VecDeque<Vec<u8>>,
    /// The supervisor's voice for the caller (barge).
    barge: VecDeque<Vec<u8>>,
    /// The start of a frame of the supervisor's voice, waiting for the rest.
    rest: Vec<u8>,
    /// Voice frames received since a frame last went to the caller / the person.
    idle: [usize; 2],
    /// The supervisor's voice frames queued alone in the caller's / the
    /// person's playout and not yet released.
    alone: [usize; 2],
}

impl CallBridge {
    /// A supervisor joins the call's audio, or changes how; `None` leaves.
    /// Every change lands on the timeline with their id.
    pub fn supervise(&mut self, supervisor: String, mode: Option<SupervisorMode>) {
        if self.ended {
            return;
        }
        let s = &mut self.supervision;
        s.coach.clear();
        s.barge.clear();
        s.rest.clear();
        s.idle = [0; 2];
        s.alone = [0; 2];
        if mode.is_none() {
            s.said.clear();
        }
        s.on = mode.map(|m| (supervisor.clone(), m));
        self.emit(BridgeOutput::Timeline(TimelineKind::Supervision {
            supervisor,
            mode,
        }));
    }

    /// The supervisor spoke (μ-law, any length; cut into 20 ms frames, a
    /// partial one kept for the next message): to the human agent when
    /// coaching, to both when barging, to nobody when listening or when no
    /// person is on the call yet (the caller never hears a coach).
    pub fn supervisor_audio(&mut self, bytes: Vec<u8>) {
        let Some((_, mode)) = self.supervision.on else {
            return;
        };
        if !self.person_on_call() {
            self.supervision.rest.clear();
            return;
        }
        let mut voice = std::mem::take(&mut self.supervision.rest);
        voice.extend_from_slice(&bytes);
        let whole = voice.len() - voice.len() % VOICE_FRAME;
        self.supervision.rest = voice.split_off(whole);
        for frame in voice.chunks(VOICE_FRAME) {
            if mode == SupervisorMode::Barge {
                self.keep_voice(Party::Caller, frame.to_vec());
            }
            if matches!(mode, SupervisorMode::Coach | SupervisorMode::Barge) {
                self.keep_voice(Party::HumanAgent, frame.to_vec());
            }
        }
    }

    /// Keeps a frame of the supervisor's voice to be mixed into the next frame
    /// going `to` that party. When that direction has been silent for
    /// [`SILENT_AFTER`] voice frames, the voice goes into that party's playout
    /// alone, in order, paced like any audio (and counted, so it is never
    /// mixed with itself on the way out); when more than [`VOICE_KEPT`] wait
    /// on a live direction the oldest is dropped and counted.
    fn keep_voice(&mut self, to: Party, frame: Vec<u8>) {
        let side = usize::from(to != Party::Caller);
        let s = &mut self.supervision;
        let queue = if side == 0 {
            &mut s.barge
        } else {
            &mut s.coach
        };
        queue.push_back(frame);
        s.idle[side] += 1;
        if s.idle[side] > SILENT_AFTER {
            let playout = if side == 0 {
                &mut self.playout
            } else {
                &mut self.human_playout
            };
            let mut refused = None;
            for voice in queue.drain(..) {
                match playout.push_audio(&voice) {
                    Ok(()) => s.alone[side] += 1,
                    Err(e) => refused = Some(e.to_string()),
                }
            }
            if let Some(reason) = refused {
                self.emit(BridgeOutput::Timeline(TimelineKind::AudioDropped {
                    leg: to,
                    reason: format!("supervisor voice: {reason}"),
                }));
            }
            return;
        }
        if queue.len() > VOICE_KEPT {
            queue.pop_front();
            self.emit(BridgeOutput::Timeline(TimelineKind::AudioDropped {
                leg: to,
                reason: "supervisor voice more than 200 ms behind; oldest frame dropped".into(),
            }));
        }
    }

    /// Whether the frame just released from `side`'s playout is the
    /// supervisor's own voice, queued alone into a silent direction (the
    /// count is kept within what the playout still holds, which a flush empties).
    fn released_own_voice(&mut self, side: usize) -> bool {
        let queued = if side == 0 {
            self.playout.queued_frames()
        } else {
            self.human_playout.queued_frames()
        };
        let alone = &mut self.supervision.alone[side];
        *alone = (*alone).min(queued + 1);
        if *alone > 0 {
            *alone -= 1;
            true
        } else {
            self.supervision.idle[side] = 0;
            false
        }
    }

    fn person_on_call(&self) -> bool {
        matches!(self.handoff.state(), HandoffState::Merged { .. }) && self.human.is_some()
    }

    /// A caller frame: kept to be mixed with what the caller hears, or sent
    /// alone to the supervisor when the caller hears nothing.
    pub(super) fn supervise_said(&mut self, frame: &[u8]) {
        if self.supervision.on.is_none() {
            return;
        }
        self.supervision.said.push_back(frame.to_vec());
        if self.supervision.said.len() > SAID_KEPT
            && let Some(f) = self.supervision.said.pop_front()
        {
            self.emit(BridgeOutput::ToSupervisor(f));
        }
    }

    /// A frame going to the caller: a barging supervisor's voice is mixed in,
    /// and the supervisor gets it mixed with what the caller said.
    pub(super) fn supervise_heard(&mut self, frame: Vec<u8>) -> Vec<u8> {
        if self.supervision.on.is_none() {
            return frame;
        }
        let own = self.released_own_voice(0);
        // The supervisor hears the others, not themself.
        let said = self.supervision.said.pop_front();
        let feed = match (said, own) {
            (Some(said), false) => g711::mix_ulaw(&said, &frame),
            (Some(said), true) => said,
            (None, false) => frame.clone(),
            (None, true) => vec![g711::ULAW_SILENCE; frame.len()],
        };
        self.emit(BridgeOutput::ToSupervisor(feed));
        if !self.person_on_call() {
            self.supervision.barge.clear();
        }
        match self.supervision.barge.pop_front().filter(|_| !own) {
            Some(voice) => g711::mix_ulaw(&frame, &voice),
            None => frame,
        }
    }

    /// A frame going to the human agent: a coaching supervisor's voice is mixed in.
    pub(super) fn coach_into(&mut self, frame: Vec<u8>) -> Vec<u8> {
        if !self.person_on_call() {
            // Never over a whisper or into the next person's call.
            self.supervision.coach.clear();
        }
        if self.released_own_voice(1) {
            return frame;
        }
        match self.supervision.coach.pop_front() {
            Some(voice) => g711::mix_ulaw(&frame, &voice),
            None => frame,
        }
    }
}
