//! Routing's port to the rest of the cluster: what this node's routing hands
//! the cluster task ([`ClusterOp`], through the channel given to
//! [`super::Routing::join_cluster`]) and the data both sides share. Routing
//! defines them and [`crate::cluster`] consumes them (it re-exports them under
//! their former paths), so routing needs nothing of the cluster.

use crate::domain::Urgency;
use serde::{Deserialize, Serialize};

/// Work routing hands the cluster task.
#[derive(Debug, Clone)]
pub enum ClusterOp {
    /// One of this node's agents changed availability.
    Presence(PresentAgent),
    /// A call joined the queue on this node.
    Enqueue(QueueEntry),
    /// A queued call's context changed.
    UpdateContext {
        /// The call.
        call_id: String,
        /// The context, JSON.
        context: String,
    },
    /// An offer is declined or timed out.
    Release {
        /// The agent.
        agent_id: String,
        /// The call.
        call_id: String,
    },
    /// A call left the queue.
    Leave {
        /// The call.
        call_id: String,
    },
    /// Something changed: run a dispatch round.
    Dispatch,
}

/// A queued call as the owning node enqueues it.
#[derive(Debug, Clone)]
pub struct QueueEntry {
    /// The call.
    pub call_id: String,
    /// Skill ("" = any agent).
    pub skill: String,
    /// Urgency.
    pub urgency: Urgency,
    /// Agents never to offer it to.
    pub tried: Vec<String>,
    /// The handoff context, JSON.
    pub context: String,
    /// The caller's number, for a callback if this node dies.
    pub callback_number: String,
    /// Offered to this agent only, whatever their skills (a transfer to a named agent).
    pub only: Option<String>,
}

/// An agent in a presence announcement (`cluster::bus::Presence`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PresentAgent {
    /// Id.
    pub id: String,
    /// What they are doing (available, ringing, busy, wrap-up, break, not ready or
    /// offline); calls are offered only to the available.
    pub status: super::AgentStatus,
    /// Skills.
    pub skills: Vec<String>,
    /// Seconds idle.
    pub idle_seconds: f64,
}
