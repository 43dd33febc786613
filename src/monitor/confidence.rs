//! Agent-turn confidence and helpfulness: the agent's stated confidence when it
//! gives one, otherwise derived from hedging, repetition and failed tools.

use crate::monitor::text::{content_words, jaccard, words};
use serde::Serialize;

/// Why an agent turn counts as unhelpful.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum UnhelpfulReason {
    /// Confidence below the threshold.
    LowConfidence {
        /// The confidence.
        confidence: f32,
    },
    /// The agent hedged ("I'm not sure", "I can't").
    Hedging {
        /// The phrase found.
        phrase: String,
    },
    /// The agent did not understand the caller.
    NotUnderstood,
    /// The caller had to repeat their request.
    CallerRepeated,
    /// The agent said nearly the same thing as its previous turn.
    AgentRepeated,
    /// A tool the agent used failed.
    ToolFailed {
        /// The tool.
        tool: String,
    },
}

/// The verdict on one agent turn.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TurnAssessment {
    /// Confidence in 0..1 (stated, or derived).
    pub confidence: f32,
    /// Whether the agent stated it.
    pub stated: bool,
    /// Helpful or not.
    pub helpful: bool,
    /// Why not.
    pub reasons: Vec<UnhelpfulReason>,
}

const HEDGES: &[&str] = &[
    "i'm not sure",
    "im not sure",
    "i am not sure",
    "not sure i can",
    "i don't know",
    "i do not know",
    "i can't",
    "i cannot",
    "i'm unable",
    "i am unable",
    "i'm not able",
    "i am not able",
    "i don't have access",
    "i didn't understand",
    "i did not understand",
    "i didn't catch",
    "could you repeat",
    "i'm afraid i",
    "unfortunately i",
];

/// Similarity at which two utterances count as the same request.
const REPEAT_SIMILARITY: f32 = 0.6;
/// Fewest content words for a repetition to count (so "yes" twice is not one).
const REPEAT_MIN_WORDS: usize = 3;

/// The first hedging phrase in `text`, if any.
pub fn hedging_phrase(text: &str) -> Option<&'static str> {
    let normalised = words(text).join(" ");
    HEDGES.iter().copied().find(|h| {
        normalised == *h
            || normalised.starts_with(&format!("{h} "))
            || normalised.contains(&format!(" {h} "))
            || normalised.ends_with(&format!(" {h}"))
    })
}

/// What the turn classifier heard in an agent turn.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AgentSignals {
    /// It hedged (the phrase, or what the classifier calls it).
    pub hedge: Option<String>,
    /// It did not understand the caller.
    pub not_understood: bool,
    /// It repeats itself in other words.
    pub repeats: bool,
}

/// Tracks the signals that confidence is derived from, turn by turn.
#[derive(Debug, Clone)]
pub struct ConfidenceTracker {
    threshold: f32,
    recent_user: Vec<Vec<String>>,
    caller_repeated: bool,
    /// The last agent turn asked the caller to say it again ("sorry, I didn't
    /// catch that"): repeating is then doing as asked, not a new failure.
    agent_asked_again: bool,
    last_agent: Vec<String>,
    failed_tool: Option<String>,
}

impl ConfidenceTracker {
    /// A tracker that calls turns below `threshold` unhelpful.
    pub fn new(threshold: f32) -> Self {
        ConfidenceTracker {
            threshold,
            recent_user: Vec::new(),
            caller_repeated: false,
            agent_asked_again: false,
            last_agent: Vec::new(),
            failed_tool: None,
        }
    }

    /// A caller turn; returns whether it repeats one of the caller's last three
    /// (which counts against the agent's next turn unless the agent had asked
    /// the caller to say it again).
    pub fn on_user_turn(&mut self, text: &str) -> bool {
        let w = content_words(text);
        let repeated = w.len() >= REPEAT_MIN_WORDS
            && self
                .recent_user
                .iter()
                .any(|prev| jaccard(prev, &w) >= REPEAT_SIMILARITY);
        self.caller_repeated |= repeated && !self.agent_asked_again;
        self.recent_user.push(w);
        if self.recent_user.len() > 3 {
            self.recent_user.remove(0);
        }
        repeated
    }

    /// The caller said they are repeating themselves ("I already told you"):
    /// the agent's next turn answers a caller it already failed once.
    pub fn mark_caller_repeated(&mut self) {
        self.caller_repeated = true;
    }

    /// A tool result reported by the agent.
    pub fn on_tool(&mut self, name: &str, ok: bool) {
        if !ok {
            self.failed_tool = Some(name.to_string());
        }
    }

    /// Assesses an agent turn and resets the per-turn signals.
    pub fn assess_agent_turn(
        &mut self,
        text: &str,
        stated: Option<f32>,
        signals: AgentSignals,
    ) -> TurnAssessment {
        let mut reasons = Vec::new();
        let mut derived: f32 = 0.8;
        if signals.not_understood {
            reasons.push(UnhelpfulReason::NotUnderstood);
            derived -= 0.45;
        } else if let Some(phrase) = signals.hedge {
            reasons.push(UnhelpfulReason::Hedging { phrase });
            derived -= 0.45;
        }
        if std::mem::take(&mut self.caller_repeated) {
            reasons.push(UnhelpfulReason::CallerRepeated);
            derived -= 0.3;
        }
        let w = content_words(text);
        if signals.repeats
            || (w.len() >= REPEAT_MIN_WORDS && jaccard(&self.last_agent, &w) >= REPEAT_SIMILARITY)
        {
            reasons.push(UnhelpfulReason::AgentRepeated);
            derived -= 0.3;
        }
        self.last_agent = w;
        if let Some(tool) = self.failed_tool.take() {
            reasons.push(UnhelpfulReason::ToolFailed { tool });
            derived -= 0.3;
        }
        let stated = stated.filter(|c| c.is_finite()).map(|c| c.clamp(0.0, 1.0));
        let confidence = stated.unwrap_or(derived.clamp(0.0, 1.0));
        if confidence < self.threshold {
            reasons.insert(0, UnhelpfulReason::LowConfidence { confidence });
        }
        self.agent_asked_again = signals.not_understood;
        TurnAssessment {
            confidence,
            stated: stated.is_some(),
            helpful: reasons.is_empty(),
            reasons,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phrase_signals(text: &str) -> AgentSignals {
        AgentSignals {
            hedge: hedging_phrase(text).map(str::to_string),
            ..AgentSignals::default()
        }
    }

    #[test]
    fn hedging_makes_a_turn_unhelpful_and_lowers_derived_confidence() {
        let mut t = ConfidenceTracker::new(0.5);
        let a = t.assess_agent_turn(
            "I'm not sure I can help with that refund.",
            None,
            phrase_signals("I'm not sure I can help with that refund."),
        );
        assert!(!a.helpful);
        assert!(a.confidence < 0.5);
        assert!(matches!(
            a.reasons[..],
            [
                UnhelpfulReason::LowConfidence { .. },
                UnhelpfulReason::Hedging { .. }
            ]
        ));
        let ok = t.assess_agent_turn(
            "Your order shipped yesterday.",
            None,
            phrase_signals("Your order shipped yesterday."),
        );
        assert!(ok.helpful, "{ok:?}");
        assert!(
            hedging_phrase("I can't wait to help").is_some(),
            "a phrase list, not understanding"
        );
        assert!(hedging_phrase("Scanning the shelf").is_none());
    }

    #[test]
    fn stated_confidence_wins_but_signals_still_count() {
        let mut t = ConfidenceTracker::new(0.5);
        assert!(
            !t.assess_agent_turn("Here you go.", Some(0.3), AgentSignals::default())
                .helpful
        );
        t.on_tool("refund", false);
        let a = t.assess_agent_turn("Done.", Some(0.9), AgentSignals::default());
        assert!(!a.helpful);
        assert_eq!(
            a.reasons,
            vec![UnhelpfulReason::ToolFailed {
                tool: "refund".into()
            }]
        );
    }

    #[test]
    fn the_caller_repeating_themselves_and_the_agent_looping_are_noticed() {
        let mut t = ConfidenceTracker::new(0.5);
        assert!(!t.on_user_turn("Where is my order 8821?"));
        t.assess_agent_turn(
            "Let me look up your account details for you.",
            None,
            phrase_signals("Let me look up your account details for you."),
        );
        assert!(t.on_user_turn("I asked where my order 8821 is"));
        let a = t.assess_agent_turn(
            "Let me look up your account details for you now.",
            None,
            phrase_signals("Let me look up your account details for you now."),
        );
        assert!(a.reasons.contains(&UnhelpfulReason::CallerRepeated));
        assert!(a.reasons.contains(&UnhelpfulReason::AgentRepeated));
        assert!(!t.on_user_turn("yes"));
        assert!(!t.on_user_turn("yes"), "short answers are not repetition");
    }

    #[test]
    fn repeating_as_the_agent_asked_does_not_count_against_its_next_answer() {
        let mut t = ConfidenceTracker::new(0.5);
        t.on_user_turn("I need to move my dental appointment on Thursday");
        let asked = t.assess_agent_turn(
            "Sorry, I didn't catch that. Could you say it again?",
            Some(0.9),
            AgentSignals {
                not_understood: true,
                ..AgentSignals::default()
            },
        );
        assert!(!asked.helpful);
        // The caller just says it again, as asked.
        t.on_user_turn("I need to move my dental appointment on Thursday please");
        let answer = t.assess_agent_turn(
            "Of course. I can offer Friday at ten instead.",
            Some(0.9),
            AgentSignals::default(),
        );
        assert!(answer.helpful, "{answer:?}");
        // After an answer that looked fine, the same repeat is evidence it was not.
        t.on_user_turn("No, I need to move my dental appointment on Thursday");
        let next =
            t.assess_agent_turn("Friday at ten is free.", Some(0.9), AgentSignals::default());
        assert!(
            next.reasons.contains(&UnhelpfulReason::CallerRepeated),
            "{next:?}"
        );
    }
}
