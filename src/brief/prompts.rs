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
