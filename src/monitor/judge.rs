//! The optional LLM judge, its pure half: what to ask about a turn the heads are
//! unsure of (an OpenAI-compatible chat-completions body) and how to read the
//! answer. The call's insight task sends it within `judge_budget_ms`, off the
//! audio path, and feeds the verdicts back with [`crate::monitor::Monitor::judged`];
//! without a judge, or when it is late or wrong, the heads' reading stands.

use crate::domain::Role;
use crate::monitor::heads::Label;
use serde::Serialize;

/// A question for the judge about one turn.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JudgeRequest {
    /// The turn's transcript index.
    pub turn: usize,
    /// Who said it.
    pub role: Role,
    /// What was said (customer names masked, at most 600 characters).
    pub text: String,
    /// The assistant's previous turn offered to connect the caller with a person.
    pub after_offer: bool,
    /// The labels to decide, yes or no.
    pub candidates: Vec<Label>,
}

/// Why a judge's answer was not used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum JudgeError {
    /// The answer is not the JSON asked for.
    #[error("judge answer is not {{\"labels\": [...]}}: {0}")]
    Shape(String),
}

impl Label {
    /// What the label means, for a judge.
    pub fn meaning(self) -> &'static str {
        match self {
            Label::AsksPerson => "the caller asks to talk to a human person (in any words)",
            Label::AcceptsOffer => {
                "the caller accepts the assistant's offer to connect them with a person"
            }
            Label::DeclinesOffer => "the caller declines the assistant's offer of a person",
            Label::LegalThreat => {
                "the caller threatens legal action or a regulator complaint against the company"
            }
            Label::FraudEmergency => {
                "the caller reports fraud, unauthorised use of their account, or a safety emergency"
            }
            Label::CancelRequest => {
                "the caller asks to cancel their service or close their account (not just asks about it)"
            }
            Label::ComplaintRequest => {
                "the caller asks to file a formal complaint (not just asks about the process)"
            }
            Label::RegulatedAdvice => {
                "the caller asks for investment, medical or legal advice about their own situation"
            }
            Label::Contradicts => {
                "the caller disputes a fact the assistant or its records/tools stated"
            }
            Label::Frustrated => "the caller is clearly annoyed or angry",
            Label::RepeatYourself => "the caller says they are repeating themselves",
            Label::Hedge => "the assistant is unsure or could not find what was asked",
            Label::NotUnderstood => "the assistant did not understand the caller",
            Label::Cannot => {
                "the assistant says the task is beyond what it is able or allowed to do"
            }
            Label::RecordsConflict => "the assistant says its records conflict or do not match",
            Label::OffersPerson => "the assistant offers to connect the caller with a person",
            Label::Repeats => "the assistant repeats what it already said",
        }
    }
}

/// The chat-completions body that asks the judge.
pub fn chat_body(model: &str, req: &JudgeRequest) -> serde_json::Value {
    let speaker = match req.role {
        Role::User => "caller",
        Role::Agent => "AI assistant",
    };
    let questions: Vec<String> = req
        .candidates
        .iter()
        .map(|l| format!("- {}: {}", l.as_str(), l.meaning()))
        .collect();
    let context = if req.after_offer {
        "The assistant's previous turn offered to connect the caller with a person.\n"
    } else {
        ""
    };
    serde_json::json!({
        "model": model,
        "temperature": 0,
        "max_tokens": 60,
        "response_format": {"type": "json_object"},
        "messages": [
            {"role": "system", "content": "You label single turns of customer-service phone calls for a contact centre. Answer only with JSON: {\"labels\": [names of the labels that apply]}. Use only the label names offered; an empty list when none apply."},
            {"role": "user", "content": format!("{context}Turn by the {speaker}: \"{}\"\nWhich of these apply?\n{}", req.text.replace('"', "'"), questions.join("\n"))}
        ]
    })
}

/// Reads the judge's message content: a yes/no verdict for every candidate
/// (labels it names outside the candidates are ignored).
pub fn parse_answer(content: &str, candidates: &[Label]) -> Result<Vec<(Label, bool)>, JudgeError> {
    let trimmed = content
        .trim()
        .trim_start_matches("```json")
        .trim_start_matches("```")
        .trim_end_matches("```")
        .trim();
    let v: serde_json::Value =
        serde_json::from_str(trimmed).map_err(|e| JudgeError::Shape(e.to_string()))?;
    let named: Vec<&str> = v["labels"]
        .as_array()
        .ok_or_else(|| JudgeError::Shape("no \"labels\" array".into()))?
        .iter()
        .filter_map(|x| x.as_str())
        .collect();
    Ok(candidates
        .iter()
        .map(|l| (*l, named.contains(&l.as_str())))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_strictly_and_only_for_the_labels_asked() {
        let asked = [Label::AsksPerson, Label::LegalThreat];
        assert_eq!(
            parse_answer(
                "{\"labels\": [\"asks_person\", \"cancel_request\"]}",
                &asked
            ),
            Ok(vec![(Label::AsksPerson, true), (Label::LegalThreat, false)])
        );
        assert_eq!(
            parse_answer("```json\n{\"labels\": []}\n```", &asked),
            Ok(vec![
                (Label::AsksPerson, false),
                (Label::LegalThreat, false)
            ])
        );
        assert!(parse_answer("yes, asks_person", &asked).is_err());
        assert!(parse_answer("{\"label\": \"asks_person\"}", &asked).is_err());
    }

    #[test]
    fn the_question_names_each_candidate_with_its_meaning() {
        let req = JudgeRequest {
            turn: 3,
            role: Role::User,
            text: "is anybody \"real\" there".into(),
            after_offer: false,
            candidates: vec![Label::AsksPerson],
        };
        let body = chat_body("m", &req);
        let prompt = body["messages"][1]["content"].as_str().unwrap_or("");
        assert!(prompt.contains("asks_person: the caller asks to talk to a human"));
        assert!(prompt.contains("'real'"));
        assert_eq!(body["model"], "m");
    }
}
