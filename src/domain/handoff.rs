//! The steps of a warm handoff, as the timeline records them.

use serde::{Deserialize, Serialize};

/// A step of the warm handoff (`timeline.json`'s `handoff_step.step`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HandoffStep {
    /// The caller was told a person is coming (the disclosure prompt).
    Disclosure,
    /// The handoff began: the caller hears the hand-over apology.
    Escalating,
    /// The context's summary is ready (detail: where it came from).
    Summary,
    /// The call joined the queue for a person.
    Queued,
    /// The call went back to the queue (an offer was declined or timed out).
    Requeued,
    /// The call overflowed beyond its skill (detail: to whom), after
    /// waiting `[[routing.overflow]] after_seconds` or at once when critical.
    Overflowed,
    /// A human agent is being offered the call.
    Ringing,
    /// The human agent accepted.
    Answered,
    /// The human agent declined.
    Declined,
    /// The human agent did not answer in time.
    RingTimeout,
    /// The whisper brief started playing to the human agent only.
    WhisperStarted,
    /// The human agent skipped the rest of the whisper.
    WhisperSkipped,
    /// No whisper could be made: the legs merge without one.
    WhisperMissing,
    /// After the whisper, the person (an outside destination) is asked to press
    /// 1 to take the call or 2 to pass (detail: how long silence waits).
    ConsultAsked,
    /// The person pressed 1, or said nothing in time: the legs merge.
    ConsultAccepted,
    /// The person pressed 2: warmline hangs up on them and the call moves on.
    ConsultDeclined,
    /// Caller and human agent hear each other.
    Merged,
    /// The human agent left before the merge.
    AgentLeft,
    /// The human agent's console dropped mid-call; the caller hears hold
    /// audio while it may come back (`routing.reattach_grace_ms`).
    AgentDetached,
    /// The human agent's console came back and took the call again.
    AgentReattached,
    /// The human agent's console did not come back in time: the call moves on.
    AgentDisconnected,
    /// The human agent put the caller on hold (hold audio; the agent is not heard).
    CallerHeld,
    /// The human agent took the caller off hold.
    CallerResumed,
    /// The human agent transferred the call (detail: to whom); it is queued again.
    Transferred,
    /// Nobody can take the call (detail: why).
    NoAgent,
    /// The caller chose to keep waiting.
    CallerWaits,
    /// The caller chose a callback.
    CallerChoseCallback,
    /// A callback was saved.
    CallbackSaved,
    /// The caller is back with the AI agent (detail: the outcome and note it
    /// was told in `handoff_result`).
    ReturnedToAi,
}

impl HandoffStep {
    /// The wire name (`ringing`, `merged`, …), as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            HandoffStep::Disclosure => "disclosure",
            HandoffStep::Escalating => "escalating",
            HandoffStep::Summary => "summary",
            HandoffStep::Queued => "queued",
            HandoffStep::Requeued => "requeued",
            HandoffStep::Overflowed => "overflowed",
            HandoffStep::Ringing => "ringing",
            HandoffStep::Answered => "answered",
            HandoffStep::Declined => "declined",
            HandoffStep::RingTimeout => "ring_timeout",
            HandoffStep::WhisperStarted => "whisper_started",
            HandoffStep::WhisperSkipped => "whisper_skipped",
            HandoffStep::WhisperMissing => "whisper_missing",
            HandoffStep::ConsultAsked => "consult_asked",
            HandoffStep::ConsultAccepted => "consult_accepted",
            HandoffStep::ConsultDeclined => "consult_declined",
            HandoffStep::Merged => "merged",
            HandoffStep::AgentLeft => "agent_left",
            HandoffStep::AgentDetached => "agent_detached",
            HandoffStep::AgentReattached => "agent_reattached",
            HandoffStep::AgentDisconnected => "agent_disconnected",
            HandoffStep::CallerHeld => "caller_held",
            HandoffStep::CallerResumed => "caller_resumed",
            HandoffStep::Transferred => "transferred",
            HandoffStep::NoAgent => "no_agent",
            HandoffStep::CallerWaits => "caller_waits",
            HandoffStep::CallerChoseCallback => "caller_chose_callback",
            HandoffStep::CallbackSaved => "callback_saved",
            HandoffStep::ReturnedToAi => "returned_to_ai",
        }
    }

    /// Kept in the store's `handoff_outcomes` rows for `/v1/stats`: every
    /// attempt's end, and overflows (counted apart, as `overflows`).
    pub fn is_counted(self) -> bool {
        self.ends_an_attempt() || self == HandoffStep::Overflowed
    }

    /// This step is how one handoff attempt ended (counted in `/v1/stats`
    /// as `handoff_outcomes`).
    pub fn ends_an_attempt(self) -> bool {
        matches!(
            self,
            HandoffStep::Merged
                | HandoffStep::Declined
                | HandoffStep::RingTimeout
                | HandoffStep::ConsultDeclined
                | HandoffStep::AgentLeft
                | HandoffStep::AgentDisconnected
                | HandoffStep::Transferred
                | HandoffStep::NoAgent
                | HandoffStep::ReturnedToAi
        )
    }
}

/// How a handoff ended for a caller who goes back to the AI agent (the
/// `handoff_result` extension event's `outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HandoffOutcome {
    /// A person took the call and handed it back when done (a survey, a
    /// payment, closing questions).
    Completed,
    /// Nobody could take the call (none online, after hours, every
    /// destination declined or did not answer).
    NoAgent,
}

impl HandoffOutcome {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            HandoffOutcome::Completed => "completed",
            HandoffOutcome::NoAgent => "no_agent",
        }
    }
}

/// Most characters of a note for the AI agent that are kept.
pub const MAX_NOTE_CHARS: usize = 1000;

/// What the AI agent is told when the caller comes back to it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HandoffResult {
    /// How the handoff ended.
    pub outcome: HandoffOutcome,
    /// The person who had the call, if one did.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub agent: Option<String>,
    /// What the person (or the gateway) wants the AI to know.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub note: Option<String>,
    /// The conversation so far, oldest first (redacted like the transcript),
    /// so that an AI agent dialled again can carry on.
    #[serde(default)]
    pub conversation: Vec<super::Turn>,
}

impl HandoffResult {
    /// A note as given (console, API, the gateway) made fit to pass on:
    /// trimmed, at most [`MAX_NOTE_CHARS`] characters, none when empty.
    pub fn note_from(raw: Option<String>) -> Option<String> {
        raw.map(|n| n.trim().chars().take(MAX_NOTE_CHARS).collect::<String>())
            .filter(|n| !n.is_empty())
    }

    /// The timeline detail: outcome, and the note when there is one.
    pub fn detail(&self) -> String {
        match &self.note {
            Some(note) => format!("{}: {note}", self.outcome.as_str()),
            None => self.outcome.as_str().to_string(),
        }
    }
}

/// Where a human agent transfers their call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferTarget {
    /// Another agent (by id).
    Agent(String),
    /// Whoever is next for a skill.
    Skill(String),
}

impl std::fmt::Display for TransferTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransferTarget::Agent(a) => write!(f, "agent {a}"),
            TransferTarget::Skill(s) => write!(f, "skill {s}"),
        }
    }
}

impl std::fmt::Display for HandoffStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_for_the_ai_is_trimmed_bounded_and_empty_is_none() {
        assert_eq!(
            HandoffResult::note_from(Some("  run the survey \n".into())).as_deref(),
            Some("run the survey")
        );
        assert_eq!(HandoffResult::note_from(Some("   ".into())), None);
        assert_eq!(HandoffResult::note_from(None), None);
        let long = HandoffResult::note_from(Some("é".repeat(5000))).unwrap_or_default();
        assert_eq!(long.chars().count(), MAX_NOTE_CHARS);
    }

    #[test]
    fn each_step_serialises_as_its_wire_name() {
        use HandoffStep::*;
        for step in [
            Disclosure,
            Escalating,
            Summary,
            Queued,
            Requeued,
            Ringing,
            Answered,
            Declined,
            RingTimeout,
            WhisperStarted,
            WhisperSkipped,
            WhisperMissing,
            ConsultAsked,
            ConsultAccepted,
            ConsultDeclined,
            Merged,
            AgentLeft,
            AgentDetached,
            AgentReattached,
            AgentDisconnected,
            CallerHeld,
            CallerResumed,
            Transferred,
            NoAgent,
            CallerWaits,
            CallerChoseCallback,
            CallbackSaved,
            ReturnedToAi,
        ] {
            let json = serde_json::to_string(&step).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", step.as_str()));
        }
    }
}
