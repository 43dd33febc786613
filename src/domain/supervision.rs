//! Supervision of live calls: what a supervisor sees of each call (state,
//! duration, the last turn, the caller's sentiment and the AI agent's
//! confidence per turn, an escalation risk) and what they may ask of it.

use super::Role;
use serde::Serialize;

/// Most characters of a supervisor's hint to the AI agent.
pub const MAX_HINT_CHARS: usize = 500;

/// A supervisor's hint as the AI agent gets it (the `supervisor_hint`
/// extension event's body).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SupervisorHint {
    /// The supervisor's agent id.
    pub from: String,
    /// What they suggest.
    pub text: String,
}

/// How a supervisor joins a live call's audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SupervisorMode {
    /// Hear the caller and whoever the caller hears; heard by nobody.
    Listen,
    /// Also speak to the human agent only (never the caller).
    Coach,
    /// Also speak to both: a three-way call.
    Barge,
}

impl SupervisorMode {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            SupervisorMode::Listen => "listen",
            SupervisorMode::Coach => "coach",
            SupervisorMode::Barge => "barge",
        }
    }
}

/// What a supervisor may ask of a live call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallControl {
    /// Escalate this AI call now, to this supervisor only.
    TakeOver {
        /// The supervisor's agent id.
        supervisor: String,
    },
    /// Coach the AI agent: a text hint it gets as `supervisor_hint` (never
    /// heard by the caller).
    Hint {
        /// The supervisor's agent id.
        supervisor: String,
        /// The hint (trimmed, at most [`MAX_HINT_CHARS`] characters).
        text: String,
    },
    /// Give the caller back to the AI agent (the person is done, or an
    /// operator decides so), telling it `note`.
    ReturnToAi {
        /// Who asked (an agent id, or `api`).
        by: String,
        /// What the AI agent is told.
        note: Option<String>,
    },
}

/// One live call on the supervision board.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveCallView {
    /// The call.
    pub call_id: String,
    /// Where the caller is: `assistant`, `waiting`, `with_person`, `callback`.
    pub stage: &'static str,
    /// Since the call started.
    pub duration_seconds: u64,
    /// The human agent on it, once one answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The latest turn.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_turn: Option<LastTurn>,
    /// The caller's sentiment per turn (−1…+1), oldest first, at most 20.
    pub sentiment: Vec<f32>,
    /// The AI agent's confidence per turn (0…1), oldest first, at most 20.
    pub confidence: Vec<f32>,
    /// How close the call is to an escalation (0…1), by the seed's rules.
    pub risk: f32,
}

/// A turn as the board shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LastTurn {
    /// Who spoke.
    pub role: Role,
    /// What they said (redacted like the transcript, at most 160 characters).
    pub text: String,
}

/// How close a call is to an escalation, from the seed's rules ("two
/// consecutive unhelpful responses or confidence below 50 % twice in a row")
/// and the caller's mood: 0.95 once a rule has fired, about 0.6 halfway there
/// (one low-confidence or unhelpful turn), and a strongly negative caller
/// counts as much as that. A board's figure, not the decision itself.
pub fn escalation_risk(confidence: &[f32], unhelpful_run: u32, sentiment: &[f32]) -> f32 {
    let low = |c: &&f32| **c < 0.5;
    let last_two_low = confidence.len() >= 2 && confidence.iter().rev().take(2).all(|c| low(&c));
    let by_confidence = match confidence.last() {
        _ if last_two_low => 0.95,
        Some(c) if *c < 0.5 => 0.6,
        Some(c) => (1.0 - c) * 0.5,
        None => 0.0,
    };
    let by_help = match unhelpful_run {
        0 => 0.0,
        1 => 0.55,
        _ => 0.95,
    };
    let by_mood = match sentiment.last() {
        Some(s) if *s <= -0.5 => 0.8,
        Some(s) if *s <= -0.2 => 0.5,
        _ => 0.0,
    };
    by_confidence.max(by_help).max(by_mood).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn risk_follows_the_seeds_two_in_a_row_rules() {
        assert_eq!(escalation_risk(&[], 0, &[]), 0.0);
        assert!(escalation_risk(&[0.9, 0.95], 0, &[0.1]) < 0.1);
        // One low-confidence turn: halfway; two in a row: the rule fires.
        assert!((escalation_risk(&[0.9, 0.4], 0, &[]) - 0.6).abs() < 1e-6);
        assert!(escalation_risk(&[0.4, 0.3], 0, &[]) >= 0.95);
        // Low, then a confident answer: back down.
        assert!(escalation_risk(&[0.4, 0.9], 0, &[]) < 0.1);
        assert!(escalation_risk(&[0.9], 2, &[]) >= 0.95);
        assert!(escalation_risk(&[0.9], 0, &[-0.7]) >= 0.8);
    }
}
