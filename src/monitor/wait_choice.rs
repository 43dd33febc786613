//! The caller's spoken answer to "would you like to wait, or shall we call you
//! back?", read from the AI leg's transcript while the caller is on hold.

use super::text::{clauses, find_phrase, negated_before, words};

/// What the caller chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitChoice {
    /// Stay on the line for the next agent.
    Wait,
    /// Hang up and be called back.
    Callback,
}

const CALLBACK_PHRASES: &[&str] = &[
    "call me back",
    "callback",
    "call back",
    "ring me back",
    "phone me back",
    "call me later",
    "call me",
];
const WAIT_PHRASES: &[&str] = &[
    "i'll wait",
    "i will wait",
    "i can wait",
    "keep waiting",
    "i'll hold",
    "i will hold",
    "i can hold",
    "hold on",
    "stay on the line",
    "wait",
];

/// The choice `text` states, if it clearly states one.
///
/// "Please call me back" → Callback; "I'll wait" → Wait; "don't call me back,
/// I'll wait" → Wait (a negated phrase does not count); a sentence naming both
/// unnegated ("wait or call back?") is no choice.
pub fn wait_choice(text: &str) -> Option<WaitChoice> {
    let found = |phrases: &[&str]| {
        clauses(text).iter().any(|clause| {
            phrases.iter().any(|p| {
                find_phrase(clause, &words(p)).is_some_and(|at| !negated_before(clause, at))
            })
        })
    };
    match (found(CALLBACK_PHRASES), found(WAIT_PHRASES)) {
        (true, false) => Some(WaitChoice::Callback),
        (false, true) => Some(WaitChoice::Wait),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_clear_answers_and_ignores_unclear_ones() {
        for t in [
            "Please call me back.",
            "Just call me back later",
            "A callback would be great",
            "Can you ring me back tomorrow",
            "I don't want to wait, call me back",
        ] {
            assert_eq!(wait_choice(t), Some(WaitChoice::Callback), "{t:?}");
        }
        for t in [
            "I'll wait.",
            "I can hold, thanks",
            "That's fine, I will wait",
            "Yes, keep waiting please",
        ] {
            assert_eq!(wait_choice(t), Some(WaitChoice::Wait), "{t:?}");
        }
        assert_eq!(wait_choice("No, don't call me back"), None);
        for t in [
            "",
            "hmm",
            "what are my options",
            "should I wait or get a call back?",
        ] {
            assert_eq!(wait_choice(t), None, "{t:?}");
        }
    }
}
