//! A human agent's presence and offers, as every layer that deals with agents
//! speaks them (the console and phone legs, routing, the cluster's ledger and
//! announcements): [`AgentStatus`], [`OfferKind`], [`WithdrawReason`]. Their
//! wire names are fixed here (formerly in `routing` and `cluster::db`).

/// Presence: what an agent is doing, and whether they are offered calls
/// (only when `Available`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    /// Can take a call.
    Available,
    /// Offered a call, not answered yet.
    Ringing,
    /// On a call.
    Busy,
    /// After a call, writing it up: no offers until saved or the timer ends.
    WrapUp,
    /// Signed in, on a break (their choice).
    Break,
    /// Signed in, missed an offer: no offers until they choose available.
    NotReady,
    /// Not taking calls.
    Offline,
}

impl AgentStatus {
    /// The wire name, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Available => "available",
            AgentStatus::Ringing => "ringing",
            AgentStatus::Busy => "busy",
            AgentStatus::WrapUp => "wrap_up",
            AgentStatus::Break => "break",
            AgentStatus::NotReady => "not_ready",
            AgentStatus::Offline => "offline",
        }
    }

    /// A state an agent may choose for themselves between calls.
    pub fn is_choosable(self) -> bool {
        matches!(
            self,
            AgentStatus::Available | AgentStatus::Break | AgentStatus::Offline
        )
    }
}

/// What an agent is offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OfferKind {
    /// A live call waiting in the queue: accepting connects its audio.
    Call,
    /// A saved callback: accepting assigns it to the agent, who calls back.
    Callback,
}

/// Why an offer was taken back from an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WithdrawReason {
    /// Nobody answered within `routing.ring_timeout_ms`.
    RingTimeout,
    /// The agent declined it.
    Declined,
    /// The caller hung up while it rang.
    CallerHangup,
    /// The caller chose a callback while it rang.
    CallbackChosen,
    /// The agent's console went away.
    AgentGone,
    /// The call's gateway node stopped (in a cluster it becomes a callback).
    CallLost,
    /// The caller went back to the AI agent.
    ReturnedToAi,
    /// A destination answered with a greeting that ran on: a voicemail box.
    Voicemail,
}

impl WithdrawReason {
    /// The wire name (`offer_withdrawn.reason`).
    pub fn as_str(self) -> &'static str {
        match self {
            WithdrawReason::RingTimeout => "ring_timeout",
            WithdrawReason::Declined => "declined",
            WithdrawReason::CallerHangup => "caller_hangup",
            WithdrawReason::CallbackChosen => "callback_chosen",
            WithdrawReason::AgentGone => "agent_gone",
            WithdrawReason::CallLost => "call_lost",
            WithdrawReason::ReturnedToAi => "returned_to_ai",
            WithdrawReason::Voicemail => "voicemail",
        }
    }
}
