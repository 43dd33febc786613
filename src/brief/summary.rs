//! Summaries of the conversation: an extractive one, always available and
//! rebuilt every turn (no network), and at escalation an optional LLM summary
//! from any OpenAI-compatible chat-completions endpoint, within a time budget,
//! falling back to the extractive one.

use crate::brief::context::{HandoffContext, VerificationStatus, clip};
use crate::domain::Role;
use crate::monitor::sentiment::SentimentLabel;
use serde::Serialize;
use std::time::Duration;
use thiserror::Error;

/// Builds a 3–5 sentence summary from the context alone.
pub fn extractive(ctx: &HandoffContext) -> String {
    let mut sentences = Vec::new();
    let who = if ctx.customer.name.is_empty() {
        "The caller".to_string()
    } else {
        ctx.customer.name.clone()
    };
    let verified = match ctx.customer.verification_status {
        VerificationStatus::Verified => "verified",
        VerificationStatus::Partial => "partly verified",
        VerificationStatus::Unverified => "not verified",
    };
    let about = if !ctx.intent.primary.is_empty() {
        ctx.intent.primary.replace('_', " ")
    } else if let Some(first) = ctx.caller_turns().find(|t| !t.trim().is_empty()) {
        format!("\"{}\"", clip(first.trim(), 120))
    } else {
        "an unstated request".to_string()
    };
    sentences.push(format!("{who} ({verified}) called about {about}."));
    if !ctx.tools_used.is_empty() {
        let tools: Vec<String> = ctx
            .tools_used
            .iter()
            .map(|t| {
                let ok = t.result.get("ok").and_then(|v| v.as_bool()).unwrap_or(true);
                format!("{} ({})", t.tool, if ok { "worked" } else { "failed" })
            })
            .collect();
        sentences.push(format!("The assistant used {}.", tools.join(", ")));
    }
    if !ctx.intent.unresolved_items.is_empty() {
        sentences.push(format!(
            "Still unresolved: {}.",
            ctx.intent.unresolved_items.join("; ")
        ));
    } else if !ctx.intent.resolved_items.is_empty() {
        sentences.push(format!(
            "Resolved so far: {}.",
            ctx.intent.resolved_items.join("; ")
        ));
    }
    let last_agent = ctx
        .transcript
        .iter()
        .rev()
        .find(|t| t.role == Role::Agent && !t.content.trim().is_empty());
    if let Some(t) = last_agent {
        sentences.push(format!(
            "The assistant last said: \"{}\"",
            clip(t.content.trim(), 140)
        ));
    }
    if let Some(reason) = &ctx.escalation_reason {
        sentences.push(format!(
            "It was escalated ({}, {} urgency): {}",
            reason.trigger.as_str().replace('_', " "),
            reason.urgency.as_str(),
            reason.description.trim_end_matches('.').to_string() + "."
        ));
    }
    if sentences.len() < 5
        && let Some(score) = ctx.latest_sentiment()
    {
        sentences.push(format!(
            "The caller sounds {} ({score:+.2}).",
            SentimentLabel::spoken(score)
        ));
    }
    let fillers = [
        format!(
            "The conversation has {} turns so far.",
            ctx.transcript.len()
        ),
        "The assistant has not used any tools.".to_string(),
        "It has not been escalated.".to_string(),
    ];
    for filler in fillers {
        if sentences.len() >= 3 {
            break;
        }
        sentences.push(filler);
    }
    sentences.truncate(5);
    sentences.join(" ")
}

/// Where the summary came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum SummarySource {
    /// The LLM answered in time.
    Llm {
        /// How long it took, ms.
        took_ms: u64,
    },
    /// The extractive summary, with the reason the LLM was not used.
    Extractive {
        /// Why not the LLM (none when no LLM is configured).
        fallback_reason: Option<String>,
    },
}

/// The LLM summary failed.
#[derive(Debug, Error)]
pub enum SummaryError {
    /// No answer within the budget.
    #[error("no answer within {0} ms")]
    Timeout(u64),
    /// The request failed.
    #[error("request failed: {0}")]
    Http(String),
    /// The server answered with an error status.
    #[error("server answered {status}: {body}")]
    Status {
        /// HTTP status.
        status: u16,
        /// Start of the body.
        body: String,
    },
    /// The answer was not in the chat-completions shape.
    #[error("unexpected answer: {0}")]
    Shape(String),
}

/// An OpenAI-compatible chat-completions client for summaries.
#[derive(Debug, Clone)]
pub struct LlmSummarizer {
    client: reqwest::Client,
    url: String,
    model: String,
    api_key: String,
    budget: Duration,
}

impl LlmSummarizer {
    /// A client for `url` (the full `/v1/chat/completions` URL).
    pub fn new(
        url: &str,
        model: &str,
        api_key: &str,
        budget: Duration,
    ) -> Result<Self, SummaryError> {
        let client = reqwest::Client::builder()
            .timeout(budget)
            .build()
            .map_err(|e| SummaryError::Http(e.to_string()))?;
        Ok(LlmSummarizer {
            client,
            url: url.to_string(),
            model: model.to_string(),
            api_key: api_key.to_string(),
            budget,
        })
    }

    /// Asks the LLM for a 3–5 sentence summary, within the time budget.
    pub async fn summarize(&self, ctx: &HandoffContext) -> Result<String, SummaryError> {
        let transcript: Vec<String> = ctx
            .transcript
            .iter()
            .map(|t| {
                let who = if t.role == Role::User {
                    "Caller"
                } else {
                    "Assistant"
                };
                format!("{who}: {}", clip(&t.content, 500))
            })
            .collect();
        let reason = ctx
            .escalation_reason
            .as_ref()
            .map(|r| r.description.clone())
            .unwrap_or_default();
        let body = serde_json::json!({
            "model": self.model,
            "temperature": 0.2,
            "max_tokens": 220,
            "messages": [
                {"role": "system", "content": "You write handoff notes for contact-centre agents. Summarise the call in 3 to 5 plain sentences: who called, what they want, what the assistant tried, why it is being handed to a human. No lists, no greetings."},
                {"role": "user", "content": format!("Customer: {} ({:?})\nIntent: {}\nEscalation: {}\nTranscript:\n{}",
                    ctx.customer.name, ctx.customer.verification_status, ctx.intent.primary, reason, transcript.join("\n"))}
            ]
        });
        let content =
            chat_completion(&self.client, &self.url, &self.api_key, self.budget, &body).await?;
        Ok(clip(&content, 1200))
    }
}

/// One OpenAI-compatible chat completion within `budget`: the first choice's
/// message content, or why there is none. Shared by the summary and the monitor's judge.
pub async fn chat_completion(
    client: &reqwest::Client,
    url: &str,
    api_key: &str,
    budget: Duration,
    body: &serde_json::Value,
) -> Result<String, SummaryError> {
    let mut request = client.post(url).json(body);
    if !api_key.is_empty() {
        request = request.bearer_auth(api_key);
    }
    let budget_ms = budget.as_millis() as u64;
    let answer = tokio::time::timeout(budget, async {
        let response = request.send().await.map_err(|e| {
            if e.is_timeout() {
                SummaryError::Timeout(budget_ms)
            } else {
                SummaryError::Http(e.to_string())
            }
        })?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| SummaryError::Http(e.to_string()))?;
        if !status.is_success() {
            return Err(SummaryError::Status {
                status: status.as_u16(),
                body: clip(&text, 200),
            });
        }
        Ok(text)
    })
    .await
    .map_err(|_| SummaryError::Timeout(budget_ms))??;
    let json: serde_json::Value =
        serde_json::from_str(&answer).map_err(|e| SummaryError::Shape(e.to_string()))?;
    json["choices"][0]["message"]["content"]
        .as_str()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .ok_or_else(|| SummaryError::Shape("no choices[0].message.content".into()))
}

/// The LLM summary when configured and in time, otherwise the extractive one.
pub async fn best_summary(
    llm: Option<&LlmSummarizer>,
    ctx: &HandoffContext,
) -> (String, SummarySource) {
    let Some(llm) = llm else {
        return (
            extractive(ctx),
            SummarySource::Extractive {
                fallback_reason: None,
            },
        );
    };
    let started = std::time::Instant::now();
    match llm.summarize(ctx).await {
        Ok(text) => (
            text,
            SummarySource::Llm {
                took_ms: started.elapsed().as_millis() as u64,
            },
        ),
        Err(e) => {
            tracing::warn!(error = %e, "LLM summary unavailable; using the extractive summary");
            (
                extractive(ctx),
                SummarySource::Extractive {
                    fallback_reason: Some(e.to_string()),
                },
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::brief::context::{ConversationTurn, EscalationReason};
    use crate::domain::{Trigger, Urgency};

    fn sentences(s: &str) -> usize {
        s.split(". ").count()
    }

    #[test]
    fn an_empty_context_still_gets_three_sentences() {
        let s = extractive(&HandoffContext::default());
        assert!(
            s.starts_with("The caller (not verified) called about an unstated request."),
            "{s}"
        );
        assert!(sentences(&s) >= 3, "{s}");
    }

    #[test]
    fn a_rich_context_is_summarised_in_at_most_five_sentences() {
        let mut ctx = HandoffContext::default();
        ctx.customer.name = "Sarah Chen".into();
        ctx.customer.verification_status = VerificationStatus::Verified;
        ctx.intent.primary = "billing_dispute".into();
        ctx.intent.unresolved_items = vec!["refund of $45 for order 8821".into()];
        ctx.transcript.push(ConversationTurn {
            role: Role::Agent,
            content: "I can't issue refunds above my limit.".into(),
            timestamp: String::new(),
            sentiment: None,
            confidence: Some(0.4),
            helpful: Some(false),
        });
        ctx.escalation_reason = Some(EscalationReason {
            trigger: Trigger::AuthorityLimit,
            description: "Refund above the assistant's limit".into(),
            urgency: Urgency::Elevated,
        });
        let s = extractive(&ctx);
        assert!(
            s.contains("Sarah Chen (verified) called about billing dispute."),
            "{s}"
        );
        assert!(s.contains("refund of $45 for order 8821"));
        assert!(s.contains("authority limit, elevated urgency"), "{s}");
        assert!((3..=5).contains(&sentences(&s)), "{s}");
    }
}
