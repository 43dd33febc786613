//! The parties of a call.

use serde::{Deserialize, Serialize};

/// Who takes part in a call: the leg an event came from or went to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Party {
    /// The person who called (provider stream, SIP trunk or browser).
    #[serde(rename = "caller")]
    Caller,
    /// The AI voice agent.
    #[serde(rename = "agent")]
    AiAgent,
    /// The human agent the call is handed to (console or phone).
    #[serde(rename = "human")]
    HumanAgent,
}

impl Party {
    /// The wire name (`caller`, `agent`, `human`), as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Party::Caller => "caller",
            Party::AiAgent => "agent",
            Party::HumanAgent => "human",
        }
    }
}
