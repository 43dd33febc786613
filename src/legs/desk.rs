//! The port between human agents' legs — the console ([`super::human`]) and
//! SIP phones ([`super::sip::agent_phone`]) — and what they sign in to
//! (routing, and in a cluster the other nodes). The legs speak only the types
//! here and ask through [`AgentDesk`] (and the console through
//! [`ConsoleDesk`]); routing re-exports the types under its former paths, and
//! the composition root (`gateway.rs`) implements the traits over routing, the
//! cluster and the call registry.

use crate::brief::context::HandoffContext;
use crate::config::Config;
use crate::domain::{
    AgentStatus, CallControl, LiveCallView, OfferKind, SupervisorMode, Urgency, WithdrawReason,
};
use crate::legs::{LegCommand, LegEvent, MonitorLink};
use crate::store::Store;
use crate::util::pii::Redactor;
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

/// The team as a console shows it (routing's `Routing::team`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Team {
    /// Skills with calls waiting.
    pub queues: Vec<QueueView>,
    /// Every agent and their presence.
    pub agents: Vec<TeamMember>,
}

/// One skill's queue.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueView {
    /// The skill ("" = any agent).
    pub skill: String,
    /// Calls waiting (ringing ones included).
    pub waiting: usize,
    /// How long the longest-waiting call has waited.
    pub longest_wait_seconds: u64,
}

/// One agent, as the team sees them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TeamMember {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Presence.
    pub status: AgentStatus,
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

/// What an agent's console asks besides [`AgentDesk`]: its sign-in and
/// presence, the team view, wrap-ups, and (supervisors) the live calls.
pub trait ConsoleDesk: AgentDesk {
    /// The settings in force.
    fn config(&self) -> &Config;
    /// Persistence (callbacks, wrap-ups).
    fn store(&self) -> &Store;
    /// Personal data out of free text (wrap-up notes).
    fn redactor(&self) -> &Redactor;

    /// A console signed in on `console`: its presence, and a call it dropped
    /// within the grace period, to take back.
    fn console_connected(
        &self,
        agent_id: &str,
        console: mpsc::Sender<HumanCommand>,
    ) -> Result<Arrival, String>;
    /// The console session on `console` went away, holding `held` for the agent.
    fn console_gone(
        &self,
        agent_id: &str,
        console: &mpsc::Sender<HumanCommand>,
        held: Option<HeldCall>,
    );
    /// The agent's held call is over (moved on, or ended).
    fn held_call_gone(&self, agent_id: &str, call_id: &str);
    /// Whether the agent is a supervisor.
    fn is_supervisor(&self, agent_id: &str) -> bool;
    /// Whether `agent_id` is an agent routing knows (on any node).
    fn is_agent(&self, agent_id: &str) -> bool;
    /// The agent chose a presence (kept across restarts when it is their own choice).
    fn set_status(&self, agent_id: &str, status: AgentStatus) -> Result<(), String>;
    /// Routing's clock: wrap-ups that end, waiting calls that overflow.
    fn tick(&self);
    /// The team view.
    fn team(&self) -> Team;
    /// Woken on every presence change.
    fn team_changed(&self) -> Arc<tokio::sync::Notify>;
    /// Whether `call_id` is one the agent took (and so may wrap up).
    fn took(&self, agent_id: &str, call_id: &str) -> bool;
    /// The agent saved the wrap-up of `call_id`.
    fn wrapup_done(&self, agent_id: &str, call_id: &str);

    /// (Supervisors) the live calls.
    fn board(&self) -> Vec<LiveCallView>;
    /// (Supervisors) connects a supervisor's audio to a live call.
    fn monitor(&self, call_id: &str, link: MonitorLink) -> Result<(), String>;
    /// (Supervisors) changes how the supervisor on a call's audio takes part.
    fn monitor_mode(
        &self,
        call_id: &str,
        supervisor: &str,
        mode: SupervisorMode,
    ) -> Result<(), String>;
    /// (Supervisors) a hint for the call's AI agent.
    fn hint(&self, call_id: &str, supervisor: &str, text: &str) -> Result<(), String>;
    /// (Supervisors) a request to a live call (take over).
    fn control(&self, call_id: &str, request: CallControl) -> Result<(), String>;
}
