//! What the caller is told at escalation and at callback, from config templates.

use crate::domain::Trigger;
use std::time::Duration;

/// From this expected wait on, the caller is offered a callback (DTMF 2).
pub const OFFER_CALLBACK_FROM: Duration = Duration::from_secs(120);

/// Why a person is needed, said to the caller.
pub fn reason_for_caller(trigger: Trigger) -> &'static str {
    match trigger {
        Trigger::CustomerRequest => "you asked to speak with a person",
        Trigger::AuthorityLimit => "this needs someone with more authority than I have",
        Trigger::Complexity => "this needs one of our specialists",
        Trigger::Policy => "this is something our team handles directly",
        Trigger::RepeatedFailure => "I haven't been able to solve this for you",
    }
}

/// The expected wait, said to the caller.
pub fn wait_for_caller(wait: Duration) -> String {
    let minutes = wait.as_secs().div_ceil(60);
    match minutes {
        0 | 1 => "less than a minute".to_string(),
        m => format!("about {m} minutes"),
    }
}

/// Fills `{reason}` and `{wait}` in the disclosure template.
pub fn disclosure(template: &str, trigger: Trigger, wait: Duration) -> String {
    template
        .replace("{reason}", reason_for_caller(trigger))
        .replace("{wait}", &wait_for_caller(wait))
}

/// The caller's prompt templates (`[prompts]`).
#[derive(Debug, Clone, Copy)]
pub struct Templates<'a> {
    /// The disclosure.
    pub disclosure: &'a str,
    /// The disclosure that offers a callback (long waits).
    pub disclosure_offer: &'a str,
    /// The callback promise.
    pub callback: &'a str,
    /// Said instead of the callback promise when nobody can call back.
    pub no_callback: &'a str,
}

/// Who is escalated, as far as the prompts care.
#[derive(Debug, Clone, Copy)]
pub struct CallerFacts<'a> {
    /// Why a person is needed.
    pub trigger: Trigger,
    /// The expected wait.
    pub wait: Duration,
    /// The number to call back, if known.
    pub number: Option<&'a str>,
    /// A browser caller (no caller ID: reachable only at a number they gave).
    pub web_caller: bool,
    /// Why nobody may take the call ("our team is closed at this hour", …).
    pub why: &'a str,
}

/// The disclosure and the callback line for this caller. A browser caller
/// with no number is neither offered nor promised a callback: they are told
/// plainly that none can be made.
pub fn caller_lines(t: Templates<'_>, c: CallerFacts<'_>) -> (String, String) {
    let number = c.number.map(str::trim).filter(|n| !n.is_empty());
    let reachable = number.is_some() || !c.web_caller;
    let template = if reachable && c.wait >= OFFER_CALLBACK_FROM {
        t.disclosure_offer
    } else {
        t.disclosure
    };
    let callback_line = if reachable {
        callback(t.callback, c.why, number)
    } else {
        t.no_callback.replace("{why}", c.why)
    };
    (disclosure(template, c.trigger, c.wait), callback_line)
}

/// Fills `{why}` and `{number}` in the callback template.
pub fn callback(template: &str, why: &str, number: Option<&str>) -> String {
    let number = match number.map(str::trim).filter(|n| !n.is_empty()) {
        Some(n) => format!("at {}", spaced_digits(n)),
        None => "on the number you called from".to_string(),
    };
    template.replace("{why}", why).replace("{number}", &number)
}

/// A phone number read digit by digit ("+1 555 0100" → "1 5 5 5 0 1 0 0").
pub fn spaced_digits(number: &str) -> String {
    number
        .chars()
        .filter(|c| c.is_ascii_digit())
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_web_caller_without_a_number_is_never_promised_a_callback() {
        let t = Templates {
            disclosure: "Connecting you because {reason}; wait {wait}.",
            disclosure_offer: "Wait {wait}, or press 2 for a callback.",
            callback: "Sorry, {why}. We will call you back {number}.",
            no_callback: "Sorry, {why}. We have no number to call you back on.",
        };
        let facts = |number, web_caller| CallerFacts {
            trigger: Trigger::CustomerRequest,
            wait: Duration::from_secs(600),
            number,
            web_caller,
            why: "nobody is free",
        };
        let (offer, promise) = caller_lines(t, facts(None, true));
        assert!(!offer.contains("press 2"), "{offer}");
        assert!(!promise.contains("will call"), "{promise}");
        assert!(promise.contains("no number"), "{promise}");
        // A web caller who gave a number, and a phone caller, are offered one.
        let (offer, promise) = caller_lines(t, facts(Some("+15550100"), true));
        assert!(offer.contains("press 2"));
        assert!(promise.contains("at 1 5 5 5 0 1 0 0"), "{promise}");
        let (_, promise) = caller_lines(t, facts(None, false));
        assert!(promise.contains("the number you called from"), "{promise}");
    }

    #[test]
    fn templates_say_why_and_how_long() {
        let t = "Because {reason}. Wait {wait}.";
        assert_eq!(
            disclosure(t, Trigger::CustomerRequest, Duration::from_secs(30)),
            "Because you asked to speak with a person. Wait less than a minute."
        );
        assert_eq!(wait_for_caller(Duration::from_secs(150)), "about 3 minutes");
        assert_eq!(
            callback(
                "Sorry, {why}. We call you {number}.",
                "no one is free",
                Some("+1 555-0100")
            ),
            "Sorry, no one is free. We call you at 1 5 5 5 0 1 0 0."
        );
        assert!(callback("{number}", "x", None).contains("number you called from"));
    }
}
