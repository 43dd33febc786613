//! Why a call escalates to a person, and how urgently.

use serde::{Deserialize, Serialize};

/// Why a handoff to a human is needed (the seed's reason codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// The action is beyond what the AI may do.
    AuthorityLimit,
    /// The caller asked for a person.
    CustomerRequest,
    /// The problem is too complex for the AI.
    Complexity,
    /// A policy requires a human.
    Policy,
    /// The AI failed repeatedly.
    RepeatedFailure,
}

impl Trigger {
    /// The wire name (`authority_limit`, …), as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::AuthorityLimit => "authority_limit",
            Trigger::CustomerRequest => "customer_request",
            Trigger::Complexity => "complexity",
            Trigger::Policy => "policy",
            Trigger::RepeatedFailure => "repeated_failure",
        }
    }
}

/// How quickly a human must take over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Urgency {
    /// Normal queueing.
    #[default]
    Standard,
    /// Ahead of standard calls.
    Elevated,
    /// Immediately.
    Critical,
}

impl Urgency {
    /// The wire name (`standard`, `elevated`, `critical`), as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Urgency::Standard => "standard",
            Urgency::Elevated => "elevated",
            Urgency::Critical => "critical",
        }
    }
}

/// A request for a person: the agent protocol's `escalate` event, or the
/// monitor's own decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscalationRequest {
    /// The reason code.
    pub trigger: Trigger,
    /// A sentence a human can read.
    #[serde(default)]
    pub description: String,
    /// How urgent.
    #[serde(default)]
    pub urgency: Urgency,
}
