//! The conversation: turns and the tools the AI agent used.

use serde::{Deserialize, Serialize};

/// Who spoke a conversation turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The caller.
    User,
    /// The AI agent.
    Agent,
}

impl Role {
    /// The wire name (`user`, `agent`), as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Agent => "agent",
        }
    }
}

/// One utterance of the conversation, as the AI agent transcribed or said it
/// (the agent protocol's `turn` event).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    /// Who spoke.
    pub role: Role,
    /// What was said.
    pub content: String,
    /// The agent's confidence in its answer, 0..1 (agent turns only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f32>,
}

/// The AI agent used a tool (lookup, refund, …): the agent protocol's `tool` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolUse {
    /// Tool name.
    pub name: String,
    /// Whether it succeeded.
    pub ok: bool,
    /// What it returned or why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The arguments it was called with (any JSON), kept as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<serde_json::Value>,
    /// What it returned (any JSON), kept as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
}
