//! The port between human agents' legs — the console ([`super::human`]) and
//! SIP phones ([`super::sip::agent_phone`]) — and what they sign in to
//! (routing, and in a cluster the other nodes). The legs speak only the types
//! here and ask through [`AgentDesk`]; routing re-exports the types under its
//! former paths, and the composition root (`gateway.rs`) implements the trait
//! over routing and the cluster.

use crate::brief::context::HandoffContext;
use crate::domain::{AgentStatus, OfferKind, Urgency, WithdrawReason};
use crate::legs::{LegCommand, LegEvent};
use serde::Serialize;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::mpsc;

/// What an agent's console is told.
#[derive(Debug, Clone)]
pub enum HumanCommand {
    /// A call is offered (the screen-pop): accept or decline.
    Offer {
        /// The call.
        call_id: String,
        /// A live call, or (in a cluster) a saved callback.
        kind: OfferKind,
        /// Its urgency.
        urgency: Urgency,
        /// Everything known about it.
        context: Arc<HandoffContext>,
    },
    /// The offer is withdrawn (caller hung up, timed out).
    OfferWithdrawn {
        /// The call.
        call_id: String,
        /// Why: a [`WithdrawReason`] wire name (a cluster peer may send others).
        reason: String,
    },
    /// The agent's presence changed (the console shows it as it is).
    Presence(Presence),
    /// This console session is over (token rotated, set offline by an admin):
    /// it must close at once and take nothing more.
    SignedOut {
        /// Why.
        reason: String,
    },
}

/// An agent's presence as their console shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Presence {
    /// The state.
    pub status: AgentStatus,
    /// In wrap-up: which call, and how long is left.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wrap_up: Option<WrapUpNews>,
}

/// The wrap-up an agent owes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WrapUpNews {
    /// The call to wrap up.
    pub call_id: String,
    /// Seconds until the agent is available again (none: until saved).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds_left: Option<u64>,
}

/// A call whose console dropped mid-call, held for the agent to take back
/// within `routing.reattach_grace_ms`.
#[derive(Debug)]
pub struct HeldCall {
    /// The call.
    pub call_id: String,
    /// What the console showed (urgency and screen-pop), to show it again.
    pub context: Option<(Urgency, Arc<HandoffContext>)>,
    /// The caller had been merged with the agent (the whisper was over).
    pub merged: bool,
    /// The agent had put the caller on hold.
    pub on_hold: bool,
    /// Send a reply channel here to get the call's link back.
    pub reclaim: tokio::sync::oneshot::Sender<tokio::sync::oneshot::Sender<AgentEnd>>,
}

/// What a console finds when it signs in.
#[derive(Debug)]
pub struct Arrival {
    /// Its presence.
    pub presence: Presence,
    /// A call it dropped within the grace period, to take back.
    pub held: Option<HeldCall>,
}

/// The side of an agent's audio link the agent's end keeps.
#[derive(Debug)]
pub struct AgentEnd {
    /// Audio and marks for the agent.
    pub commands: mpsc::Receiver<LegCommand>,
    /// The agent's voice, skip and hang-up.
    pub events: mpsc::Sender<LegEvent>,
}

/// What an agent's accept gave them.
#[derive(Debug)]
pub enum AcceptOutcome {
    /// A live call: its audio link.
    Call(AgentEnd),
    /// A callback assigned to them: the number to call.
    Callback {
        /// The number.
        number: String,
    },
}

/// A boxed future answering an [`AgentDesk`] request.
pub type DeskFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a human agent's leg asks of routing and the cluster. Errors are the
/// refusal as it is shown to the agent (or logged).
pub trait AgentDesk: Send + Sync + std::fmt::Debug {
    /// An agent's SIP phone is ready to be offered calls on `phone`.
    fn phone_connected(
        &self,
        agent_id: &str,
        phone: mpsc::Sender<HumanCommand>,
    ) -> Result<(), String>;

    /// The agent refuses (or can no longer take) the offer of `call_id`.
    fn decline(&self, agent_id: &str, call_id: &str, reason: WithdrawReason) -> Result<(), String>;

    /// The agent accepts their offer of `call_id`: a live call's audio link,
    /// or (in a cluster) a callback assigned to them.
    fn accept<'a>(
        self: Arc<Self>,
        agent_id: &'a str,
        call_id: &'a str,
    ) -> DeskFuture<'a, Result<AcceptOutcome, String>>;

    /// The signed, expiring URL a desk fetches `call_id`'s handoff context from.
    fn context_url(&self, call_id: &str) -> String;
}
