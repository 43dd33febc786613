//! Redaction of personal data in free text (`[privacy]`), before anything is
//! stored, logged, summarised or sent: payment card numbers (13–19 digits,
//! spaced or dashed, checked with Luhn so order numbers survive), national
//! identity numbers (US SSN, UK National Insurance), e-mail addresses, and the
//! operator's own patterns. Each is replaced by a label the human agent can
//! still work with ("[card ending 4242]", "[email]", "[ssn]", "[policy_number]").
//!
//! The gateway applies it where text enters a call (the AI agent's turns,
//! tool arguments and results, escalation descriptions, intent, a console's
//! wrap-up notes), so the timeline, the store, the context, the whisper, the
//! summary LLM and the webhook never see the raw text.

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `[privacy]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacyConfig {
    /// Replace card numbers that pass the Luhn check.
    pub redact_cards: bool,
    /// Replace US social security numbers and UK National Insurance numbers.
    pub redact_national_ids: bool,
    /// Replace e-mail addresses.
    pub redact_emails: bool,
    /// The operator's patterns: each match is replaced by `[name]`.
    pub patterns: Vec<PatternConfig>,
}

/// One operator pattern.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatternConfig {
    /// The label put in place of a match (letters, digits, `_`, `-`).
    pub name: String,
    /// A regular expression (Rust `regex` syntax).
    pub regex: String,
}

/// A pattern that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PiiError {
    /// The regular expression does not compile.
    #[error("privacy pattern {name:?}: {message}")]
    BadPattern {
        /// Its name.
        name: String,
        /// The compiler's message.
        message: String,
    },
    /// The name is not a plain label.
    #[error("privacy pattern name {0:?} must be 1–40 letters, digits, '_' or '-'")]
    BadName(String),
}

/// The compiled redactor (cheap to share; clone the `Arc` it lives in).
#[derive(Debug, Clone)]
pub struct Redactor {
    card: Option<Regex>,
    ssn: Option<Regex>,
    nino: Option<Regex>,
    email: Option<Regex>,
    custom: Vec<(String, Regex)>,
}

impl Redactor {
    /// Compiles `[privacy]`; an invalid pattern is an error at start, never a
    /// silently unredacted call.
    pub fn new(config: &PrivacyConfig) -> Result<Redactor, PiiError> {
        // Fixed patterns: compiled from literals, checked by the unit tests.
        let fixed = |re: &str| Regex::new(re).ok();
        let mut custom = Vec::new();
        for p in &config.patterns {
            let plain = !p.name.is_empty()
                && p.name.len() <= 40
                && p.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !plain {
                return Err(PiiError::BadName(p.name.clone()));
            }
            let re = regex::RegexBuilder::new(&p.regex)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| PiiError::BadPattern {
                    name: p.name.clone(),
                    message: e.to_string(),
                })?;
            custom.push((p.name.clone(), re));
        }
        Ok(Redactor {
            card: config
                .redact_cards
                .then(|| fixed(r"\d(?:[ \-]?\d){12,18}"))
                .flatten(),
            ssn: config
                .redact_national_ids
                .then(|| fixed(r"\b\d{3}[ \-]\d{2}[ \-]\d{4}\b"))
                .flatten(),
            nino: config
                .redact_national_ids
                .then(|| {
                    fixed(
                        r"(?i)\b[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b",
                    )
                })
                .flatten(),
            email: config
                .redact_emails
                .then(|| fixed(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+"))
                .flatten(),
            custom,
        })
    }

    /// A redactor that changes nothing.
    pub fn off() -> Redactor {
        Redactor {
            card: None,
            ssn: None,
            nino: None,
            email: None,
            custom: Vec::new(),
        }
    }

    /// `text` with personal data replaced; borrowed back when nothing matched.
    pub fn text<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        let mut out = std::borrow::Cow::Borrowed(text);
        for (name, re) in &self.custom {
            if re.is_match(&out) {
                let label = format!("[{name}]");
                out = std::borrow::Cow::Owned(re.replace_all(&out, label.as_str()).into_owned());
            }
        }
        if let Some(re) = &self.email
            && re.is_match(&out)
        {
            out = std::borrow::Cow::Owned(re.replace_all(&out, "[email]").into_owned());
        }
        if let Some(re) = &self.card
            && re.is_match(&out)
        {
            let haystack = out.clone();
            let replaced = re.replace_all(&out, |c: &regex::Captures<'_>| {
                let digits: String = c[0].chars().filter(char::is_ascii_digit).collect();
                // Glued to letters ("card4111…") is still a card; glued to more
                // digits it is some longer number.
                let whole = c.get(0).map_or((0, 0), |m| (m.start(), m.end()));
                let digit_before = haystack[..whole.0]
                    .chars()
                    .next_back()
                    .is_some_and(|ch| ch.is_ascii_digit());
                let digit_after = haystack[whole.1..]
                    .chars()
                    .next()
                    .is_some_and(|ch| ch.is_ascii_digit());
                if !digit_before && !digit_after && luhn(&digits) {
                    format!("[card ending {}]", &digits[digits.len() - 4..])
                } else {
                    c[0].to_string()
                }
            });
            out = std::borrow::Cow::Owned(replaced.into_owned());
        }
        for (re, label) in [
            (&self.ssn, "[ssn]"),
            (&self.nino, "[national insurance number]"),
        ] {
            if let Some(re) = re
                && re.is_match(&out)
            {
                out = std::borrow::Cow::Owned(re.replace_all(&out, label).into_owned());
            }
        }
        out
    }

    /// Redacts `s` in place.
    pub fn string(&self, s: &mut String) {
        if let std::borrow::Cow::Owned(new) = self.text(s) {
            *s = new;
        }
    }

    /// Redacts every string in a JSON value (keys are kept).
    pub fn json(&self, value: &mut Value) {
        match value {
            Value::String(s) => self.string(s),
            Value::Array(items) => items.iter_mut().for_each(|v| self.json(v)),
            Value::Object(map) => map.values_mut().for_each(|v| self.json(v)),
            _ => {}
        }
    }
}

/// The Luhn check over a string of ASCII digits.
fn luhn(digits: &str) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.bytes().rev().enumerate() {
        let mut n = u32::from(d - b'0');
        if i % 2 == 1 {
            n *= 2;
            if n > 9 {
                n -= 9;
            }
        }
        sum += n;
    }
    digits.len() >= 13 && sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_on() -> Redactor {
        Redactor::new(&PrivacyConfig {
            redact_cards: true,
            redact_national_ids: true,
            redact_emails: true,
            patterns: vec![PatternConfig {
                name: "policy_number".into(),
                regex: r"POL-\d{8}".into(),
            }],
        })
        .expect("compiles")
    }

    #[test]
    fn the_fixed_patterns_compile() {
        let r = all_on();
        assert!(r.card.is_some() && r.ssn.is_some() && r.nino.is_some() && r.email.is_some());
    }

    #[test]
    fn card_numbers_are_replaced_however_they_are_written() {
        let r = all_on();
        for said in [
            "my card is 4111111111111111 thanks",
            "my card is 4111 1111 1111 1111 thanks",
            "my card is 4111-1111-1111-1111 thanks",
            "my card is 378282246310005 thanks",
        ] {
            let out = r.text(said);
            assert!(
                !out.contains("1111 1111") && !out.contains("411111"),
                "{out}"
            );
            assert!(out.contains("[card ending"), "{out}");
        }
        assert_eq!(
            r.text("card 4242 4242 4242 4242."),
            "card [card ending 4242]."
        );
        assert_eq!(r.text("card4111111111111111"), "card[card ending 1111]");
    }

    #[test]
    fn numbers_that_are_not_cards_survive() {
        let r = all_on();
        for said in [
            "order 1234567890123 is late", // fails Luhn
            "order 88213 shipped",
            "call me on +1 555 010 0199",
            "the total was 1,234.56 dollars",
        ] {
            assert_eq!(r.text(said), said);
        }
    }

    #[test]
    fn identity_numbers_emails_and_operator_patterns_are_replaced() {
        let r = all_on();
        assert_eq!(r.text("SSN 078-05-1120 ok"), "SSN [ssn] ok");
        assert_eq!(
            r.text("it's AB 12 34 56 C"),
            "it's [national insurance number]"
        );
        assert_eq!(
            r.text("write to sarah.chen+bills@example.co.uk please"),
            "write to [email] please"
        );
        assert_eq!(r.text("policy POL-12345678"), "policy [policy_number]");
    }

    #[test]
    fn json_strings_are_redacted_and_keys_kept() {
        let r = all_on();
        let mut v = serde_json::json!({"card": "4111111111111111", "n": 5, "list": ["a@b.io"]});
        r.json(&mut v);
        assert_eq!(
            v,
            serde_json::json!({"card": "[card ending 1111]", "n": 5, "list": ["[email]"]})
        );
    }

    #[test]
    fn a_bad_operator_pattern_is_an_error_not_a_silent_pass() {
        let bad = |name: &str, regex: &str| {
            Redactor::new(&PrivacyConfig {
                redact_cards: false,
                redact_national_ids: false,
                redact_emails: false,
                patterns: vec![PatternConfig {
                    name: name.into(),
                    regex: regex.into(),
                }],
            })
        };
        assert!(matches!(
            bad("x", "(unclosed"),
            Err(PiiError::BadPattern { .. })
        ));
        assert!(matches!(bad("has space", "a"), Err(PiiError::BadName(_))));
        assert!(bad("ok_name", "a+").is_ok());
    }

    #[test]
    fn off_changes_nothing() {
        let said = "4111111111111111 a@b.io 078-05-1120";
        assert_eq!(Redactor::off().text(said), said);
    }
}
