//! `HandoffContext`: everything the receiving human needs, in the schema other
//! systems exchange (camelCase JSON, RFC 3339 timestamps; docs/handoff-context.schema.json).
//!
//! Reading is tolerant — every field has a default, unknown fields are ignored —
//! because contexts also come from other systems. Building is progressive: the
//! [`ContextBuilder`] is fed each turn, tool and agent event as it happens.

use crate::domain::{Role, Trigger, Urgency};
use crate::monitor::confidence::TurnAssessment;
use crate::monitor::policy::Decision;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::time::SystemTime;

/// How far the caller's identity was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum VerificationStatus {
    /// Identity confirmed.
    Verified,
    /// Some checks passed.
    Partial,
    /// Not checked or failed.
    #[default]
    Unverified,
}

/// How the customer reached us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// A phone or browser call.
    #[default]
    Voice,
    /// Web chat.
    Chat,
    /// Email.
    Email,
    /// SMS / messaging apps.
    Messaging,
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct Customer {
    /// Customer id in the business's systems.
    pub id: String,
    /// Name.
    pub name: String,
    /// Verification.
    pub verification_status: VerificationStatus,
    /// Channel.
    pub channel: Channel,
    /// How to reach them: the phone number, or else an address (the seed's `contactInfo: string`).
    #[serde(deserialize_with = "contact_string")]
    pub contact_info: String,
    /// Other contact fields the agent sent (warmline extension, outside the seed's names).
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub contact_details: Map<String, Value>,
}

/// The one contact string of a contact object: its phone, else its email, else any string field.
fn contact_of(m: &Map<String, Value>) -> String {
    ["phone", "phoneNumber", "mobile", "email", "address"]
        .iter()
        .find_map(|k| m.get(*k).and_then(|v| v.as_str()))
        .or_else(|| m.values().find_map(|v| v.as_str()))
        .unwrap_or("")
        .to_string()
}

/// Reads `contactInfo` as a string, tolerating the object older warmline wrote.
fn contact_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => s,
        Value::Object(m) => contact_of(&m),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    })
}

/// What the caller wants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct Intent {
    /// Main reason for the call.
    pub primary: String,
    /// Other reasons.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secondary: Option<Vec<String>>,
    /// Done during the AI phase.
    pub resolved_items: Vec<String>,
    /// Still open.
    pub unresolved_items: Vec<String>,
}

/// One utterance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationTurn {
    /// Who spoke.
    pub role: Role,
    /// What was said.
    #[serde(default)]
    pub content: String,
    /// When (RFC 3339).
    #[serde(default)]
    pub timestamp: String,
    /// Caller sentiment of this turn, −1..1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentiment: Option<f32>,
    /// Agent confidence of this turn, 0..1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f32>,
    /// Whether the monitor judged this agent turn helpful.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helpful: Option<bool>,
}

/// A point of the sentiment arc.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct SentimentPoint {
    /// When (RFC 3339).
    pub at: String,
    /// Score −1..1.
    pub score: f32,
}

/// A tool the AI used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct ToolCallRecord {
    /// Tool name.
    pub tool: String,
    /// Its arguments (any JSON).
    pub args: Value,
    /// Its result (any JSON).
    pub result: Value,
    /// When (RFC 3339).
    pub called_at: String,
    /// Whether it succeeded (warmline extension; failed tools are marked on the screen-pop).
    #[serde(default = "yes")]
    pub ok: bool,
}

fn yes() -> bool {
    true
}

/// Why the call was escalated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EscalationReason {
    /// Reason code.
    pub trigger: Trigger,
    /// Human-readable reason.
    #[serde(default)]
    pub description: String,
    /// Urgency.
    #[serde(default)]
    pub urgency: Urgency,
}

/// The context package.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct HandoffContext {
    /// Who.
    pub customer: Customer,
    /// What they want.
    pub intent: Intent,
    /// 3–5 plain sentences.
    pub summary: String,
    /// The conversation.
    pub transcript: Vec<ConversationTurn>,
    /// Caller sentiment over time.
    pub sentiment_arc: Vec<SentimentPoint>,
    /// Tools the AI used.
    pub tools_used: Vec<ToolCallRecord>,
    /// What the AI tried that did not resolve the issue.
    pub attempted_resolutions: Vec<String>,
    /// Why it was escalated (absent until it is).
    pub escalation_reason: Option<EscalationReason>,
    /// What the human should do first.
    pub suggested_next_action: String,
    /// The call id.
    pub conversation_id: String,
    /// Call start (RFC 3339).
    pub started_at: String,
    /// Escalation time (RFC 3339), absent until escalated.
    pub escalated_at: Option<String>,
    /// Version of the AI agent / gateway that produced it.
    pub agent_version: String,
}

impl HandoffContext {
    /// The number to call the customer back on: `customer.contactInfo` as a
    /// string, or its `phone` field.
    pub fn caller_number(&self) -> Option<String> {
        let c = &self.customer;
        let phone_like = |s: &str| {
            let digits = s.chars().filter(char::is_ascii_digit).count();
            digits >= 3 && !s.contains('@')
        };
        if phone_like(&c.contact_info) {
            return Some(c.contact_info.clone());
        }
        c.contact_details
            .get("phone")
            .and_then(|v| v.as_str())
            .filter(|s| phone_like(s))
            .map(str::to_string)
    }
}

impl HandoffContext {
    /// Parses a context from JSON, tolerating missing optional fields.
    pub fn from_json(text: &str) -> Result<HandoffContext, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Pretty JSON.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".into())
    }

    /// The latest caller sentiment.
    pub fn latest_sentiment(&self) -> Option<f32> {
        self.sentiment_arc.last().map(|p| p.score)
    }

    /// The caller's turns, in order.
    pub fn caller_turns(&self) -> impl Iterator<Item = &str> {
        self.transcript
            .iter()
            .filter(|t| t.role == Role::User)
            .map(|t| t.content.as_str())
    }
}

/// RFC 3339 with milliseconds, UTC.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Builds a [`HandoffContext`] turn by turn.
#[derive(Debug, Clone)]
pub struct ContextBuilder {
    ctx: HandoffContext,
}

impl ContextBuilder {
    /// A context for call `conversation_id` that started at `started`.
    pub fn new(conversation_id: &str, started: SystemTime, agent_version: &str) -> Self {
        ContextBuilder {
            ctx: HandoffContext {
                conversation_id: conversation_id.to_string(),
                started_at: rfc3339(started),
                agent_version: agent_version.to_string(),
                ..HandoffContext::default()
            },
        }
    }

    /// The context as built so far.
    pub fn context(&self) -> &HandoffContext {
        &self.ctx
    }

    /// Details from the call's start (`customParameters`): customerId, name, from.
    pub fn on_call_parameters(&mut self, params: &std::collections::BTreeMap<String, String>) {
        let map: Map<String, Value> = params
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        self.on_customer(&map);
    }

    /// Merges a `customer` event (or call parameters). Accepts common spellings.
    pub fn on_customer(&mut self, fields: &Map<String, Value>) {
        let c = &mut self.ctx.customer;
        let text = |keys: &[&str]| {
            keys.iter().find_map(|k| match fields.get(*k) {
                Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            })
        };
        if let Some(id) = text(&["id", "customerId", "customer_id", "accountId"]) {
            c.id = id;
        }
        if let Some(name) = text(&["name", "customerName", "fullName"]) {
            c.name = name;
        }
        if let Some(Value::Bool(v)) = fields.get("verified") {
            c.verification_status = if *v {
                VerificationStatus::Verified
            } else {
                VerificationStatus::Unverified
            };
        }
        if let Some(Value::String(v)) = fields
            .get("verificationStatus")
            .or_else(|| fields.get("verification"))
            && let Ok(status) = serde_json::from_value(Value::String(v.to_lowercase()))
        {
            c.verification_status = status;
        }
        if let Some(Value::String(v)) = fields.get("channel")
            && let Ok(channel) = serde_json::from_value(Value::String(v.to_lowercase()))
        {
            c.channel = channel;
        }
        match fields.get("contactInfo").or_else(|| fields.get("contact")) {
            Some(Value::String(s)) => c.contact_info = s.clone(),
            Some(Value::Object(m)) => {
                c.contact_info = contact_of(m);
                c.contact_details = m.clone();
            }
            _ => {
                if let Some(phone) = text(&["phone", "from", "callerNumber"]) {
                    c.contact_info = phone;
                }
            }
        }
    }

    /// Merges an `intent` event.
    pub fn on_intent(&mut self, fields: &Map<String, Value>) {
        let i = &mut self.ctx.intent;
        if let Some(Value::String(p)) = fields.get("primary") {
            i.primary = p.clone();
        }
        let list = |v: &Value| -> Vec<String> {
            match v {
                Value::Array(a) => a
                    .iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect(),
                Value::String(s) => vec![s.clone()],
                _ => Vec::new(),
            }
        };
        if let Some(v) = fields.get("secondary") {
            i.secondary = Some(list(v));
        }
        if let Some(v) = fields
            .get("resolvedItems")
            .or_else(|| fields.get("resolved"))
        {
            i.resolved_items = list(v);
        }
        if let Some(v) = fields
            .get("unresolvedItems")
            .or_else(|| fields.get("unresolved"))
        {
            i.unresolved_items = list(v);
        }
    }

    /// Adds a turn with what the monitor made of it.
    pub fn on_turn(
        &mut self,
        role: Role,
        content: &str,
        at: SystemTime,
        sentiment: Option<f32>,
        assessment: Option<&TurnAssessment>,
    ) {
        let timestamp = rfc3339(at);
        if let Some(score) = sentiment {
            self.ctx.sentiment_arc.push(SentimentPoint {
                at: timestamp.clone(),
                score,
            });
        }
        if let Some(a) = assessment
            && !a.helpful
            && !content.trim().is_empty()
        {
            self.ctx
                .attempted_resolutions
                .push(format!("The assistant said: \"{}\"", clip(content, 160)));
        }
        self.ctx.transcript.push(ConversationTurn {
            role,
            content: content.to_string(),
            timestamp,
            sentiment,
            confidence: assessment.map(|a| a.confidence),
            helpful: assessment.map(|a| a.helpful),
        });
    }

    /// Adds a tool use.
    pub fn on_tool(
        &mut self,
        name: &str,
        ok: bool,
        detail: Option<&str>,
        args: Option<&Value>,
        result: Option<&Value>,
        at: SystemTime,
    ) {
        self.ctx.tools_used.push(ToolCallRecord {
            tool: name.to_string(),
            args: args.cloned().unwrap_or(Value::Null),
            // Kept exactly as sent; without a result, what the agent said of it.
            result: result
                .cloned()
                .unwrap_or_else(|| serde_json::json!({ "ok": ok, "detail": detail })),
            called_at: rfc3339(at),
            ok,
        });
        let outcome = match (ok, detail) {
            (true, Some(d)) => format!("succeeded: {d}"),
            (true, None) => "succeeded".to_string(),
            (false, Some(d)) => format!("failed: {d}"),
            (false, None) => "failed".to_string(),
        };
        self.ctx
            .attempted_resolutions
            .push(format!("Used {name} ({outcome})"));
    }

    /// Records the escalation decision and derives the suggested next action.
    pub fn on_decision(&mut self, decision: &Decision, at: SystemTime) {
        self.ctx.escalation_reason = Some(EscalationReason {
            trigger: decision.trigger,
            description: decision.description.clone(),
            urgency: decision.urgency,
        });
        self.ctx.escalated_at = Some(rfc3339(at));
        self.ctx.suggested_next_action = suggest_next_action(&self.ctx, decision.trigger);
    }

    /// Sets the summary.
    pub fn set_summary(&mut self, summary: String) {
        self.ctx.summary = summary;
    }
}

/// What the human should do first, from the reason and what is known.
pub fn suggest_next_action(ctx: &HandoffContext, trigger: Trigger) -> String {
    let who = if ctx.customer.name.is_empty() {
        "the caller".to_string()
    } else {
        ctx.customer.name.clone()
    };
    let topic = ctx
        .intent
        .unresolved_items
        .first()
        .cloned()
        .or_else(|| (!ctx.intent.primary.is_empty()).then(|| ctx.intent.primary.replace('_', " ")))
        .unwrap_or_else(|| "their request".to_string());
    let verify = if ctx.customer.verification_status == VerificationStatus::Verified {
        ""
    } else {
        "Verify identity, then "
    };
    let action = match trigger {
        Trigger::AuthorityLimit => {
            format!("review and decide on {topic} for {who}; the assistant was not allowed to")
        }
        Trigger::CustomerRequest => {
            format!("greet {who} by name and take over {topic} without asking them to repeat it")
        }
        Trigger::Complexity => format!("take over {topic}; the assistant was unsure"),
        Trigger::Policy => format!("handle {topic} for {who} under the applicable policy"),
        Trigger::RepeatedFailure => {
            format!("resolve {topic} for {who}; do not repeat what the assistant already tried")
        }
    };
    let mut out = format!("{verify}{action}.");
    if let Some(first) = out.get(..1) {
        out = first.to_uppercase() + &out[1..];
    }
    out
}

/// At most `max` characters of `s`, with an ellipsis when cut.
pub fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max).collect();
        out.push('…');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn serialises_in_camel_case_with_rfc3339_times() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_600_000);
        let mut b = ContextBuilder::new("CA1", t0, "warmline/0.1");
        let mut cust = Map::new();
        cust.insert("name".into(), "Sarah Chen".into());
        cust.insert("verified".into(), true.into());
        cust.insert("phone".into(), "+15550100".into());
        b.on_customer(&cust);
        b.on_turn(Role::User, "Where is my refund?", t0, Some(-0.3), None);
        b.on_tool("refund", false, Some("over limit"), None, None, t0);
        let json: Value = serde_json::to_value(b.context()).unwrap();
        assert_eq!(json["customer"]["verificationStatus"], "verified");
        assert_eq!(
            json["customer"]["contactInfo"], "+15550100",
            "a string, as the seed types it"
        );
        assert_eq!(json["conversationId"], "CA1");
        assert_eq!(json["startedAt"], "2026-11-25T09:46:40.000Z");
        assert_eq!(json["sentimentArc"][0]["score"], serde_json::json!(-0.3f32));
        assert_eq!(json["toolsUsed"][0]["calledAt"], "2026-11-25T09:46:40.000Z");
        assert!(json["escalationReason"].is_null());
    }

    #[test]
    fn reading_tolerates_missing_and_extra_fields() {
        let ctx =
            HandoffContext::from_json(r#"{"customer":{"name":"Ann"},"somethingElse":1}"#).unwrap();
        assert_eq!(ctx.customer.name, "Ann");
        assert_eq!(
            ctx.customer.verification_status,
            VerificationStatus::Unverified
        );
        let full = r#"{"customer":{"id":"C1","name":"Sarah Chen","verificationStatus":"partial","channel":"chat","contactInfo":{"email":"s@x"}},
          "intent":{"primary":"billing_dispute","secondary":["address change"],"resolvedItems":[],"unresolvedItems":["refund for order 8821"]},
          "summary":"s","transcript":[{"role":"user","content":"hi","timestamp":"2026-11-25T10:00:00Z"}],
          "sentimentArc":[{"at":"2026-11-25T10:00:00Z","score":-0.5}],
          "toolsUsed":[{"tool":"refund","args":{"amount":45},"result":"denied","calledAt":"2026-11-25T10:00:01Z"}],
          "attemptedResolutions":["x"],"escalationReason":{"trigger":"authority_limit","description":"d","urgency":"elevated"},
          "suggestedNextAction":"n","conversationId":"c","startedAt":"2026-11-25T10:00:00Z","escalatedAt":"2026-11-25T10:01:00Z","agentVersion":"v"}"#;
        let ctx = HandoffContext::from_json(full).unwrap();
        assert_eq!(ctx.customer.channel, Channel::Chat);
        assert_eq!(ctx.escalation_reason.unwrap().urgency, Urgency::Elevated);
        assert_eq!(ctx.tools_used[0].args["amount"], 45);
    }

    #[test]
    fn the_next_action_follows_the_reason() {
        let mut ctx = HandoffContext::default();
        ctx.customer.name = "Sarah Chen".into();
        ctx.intent.unresolved_items = vec!["the refund for order 8821".into()];
        let a = suggest_next_action(&ctx, Trigger::AuthorityLimit);
        assert!(a.starts_with("Verify identity, then review"), "{a}");
        assert!(a.contains("order 8821") && a.contains("Sarah Chen"));
    }
}
