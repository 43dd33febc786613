//! Routing as one node of a cluster: what the cluster task asks of this
//! node's consoles and queued calls, and the other nodes' agents as seen in
//! their presence announcements (for wait estimates and listings).

use super::{
    AgentEnd, AgentInfo, AgentStatus, ClusterOp, HumanCommand, HumanLink, OfferKind, PresentAgent,
    QueueEntry, Routing, RoutingError, RoutingEvent, State,
};
use crate::brief::context::HandoffContext;
use crate::domain::Urgency;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// An agent whose console is on another node.
#[derive(Debug, Clone)]
pub(super) struct RemoteAgent {
    node: String,
    status: AgentStatus,
    skills: Vec<String>,
    idle_seconds: f64,
    seen: Instant,
}

impl RemoteAgent {
    fn takes(&self, skill: &str) -> bool {
        super::takes_skill(&self.skills, skill)
    }
}

/// (online, available) remote agents for `skill`.
pub(super) fn remote_counts(s: &State, skill: &str) -> (usize, usize) {
    let skilled = || s.remote.values().filter(|a| a.takes(skill));
    (
        skilled()
            .filter(|a| a.status != AgentStatus::Offline)
            .count(),
        skilled()
            .filter(|a| a.status == AgentStatus::Available)
            .count(),
    )
}

/// The remote agents, as listed by [`Routing::agents`].
pub(super) fn remote_info(s: &State) -> Vec<AgentInfo> {
    s.remote
        .iter()
        .filter(|(id, _)| {
            s.agents
                .get(*id)
                .is_none_or(|local| local.console.is_none())
        })
        .map(|(id, a)| AgentInfo {
            id: id.clone(),
            name: s
                .agents
                .get(id)
                .map_or_else(|| id.clone(), |l| l.name.clone()),
            skills: a.skills.clone(),
            status: a.status,
            connected: true,
            idle_seconds: a.idle_seconds,
            node: Some(a.node.clone()),
        })
        .collect()
}

/// A new audio link between a call (its half) and an agent (theirs).
fn link_pair() -> (HumanLink, AgentEnd) {
    let (cmd_tx, cmd_rx) = mpsc::channel(crate::legs::agent::COMMAND_QUEUE);
    let (ev_tx, ev_rx) = mpsc::channel(crate::legs::agent::EVENT_QUEUE);
    (
        HumanLink {
            commands: cmd_tx,
            events: ev_rx,
        },
        AgentEnd {
            commands: cmd_rx,
            events: ev_tx,
        },
    )
}

impl Routing {
    /// `accept` with a new audio link, returning the agent's end of it.
    pub fn accept_local(&self, agent_id: &str, call_id: &str) -> Result<AgentEnd, RoutingError> {
        let (link, end) = link_pair();
        self.accept(agent_id, call_id, link)?;
        Ok(end)
    }

    /// Makes this routing one node of a cluster: offers, accepts and declines
    /// go through `ops` to the cluster task instead of being decided here.
    pub fn join_cluster(&self, ops: mpsc::UnboundedSender<ClusterOp>) {
        let _ = self.cluster.set(ops);
    }

    /// Whether this node is part of a cluster.
    pub fn in_cluster(&self) -> bool {
        self.cluster.get().is_some()
    }

    /// Tells the cluster about one of this node's agents: their status while
    /// their console is here, `offline` when it just left. Agents whose
    /// console is on another node are that node's to announce.
    pub(super) fn announce(&self, agent_id: &str) {
        let Some(cluster) = self.cluster.get() else {
            return;
        };
        if let Some(agent) = self.local_agent(agent_id)
            && (agent.status != AgentStatus::Offline || !self.is_remote(agent_id))
        {
            let _ = cluster.send(ClusterOp::Presence(agent));
        }
    }

    fn is_remote(&self, agent_id: &str) -> bool {
        self.lock().remote.contains_key(agent_id)
    }

    /// One of this node's agents as announced (offline unless their console is here).
    pub fn local_agent(&self, agent_id: &str) -> Option<PresentAgent> {
        let s = self.lock();
        let a = s.agents.get(agent_id)?;
        Some(PresentAgent {
            id: agent_id.to_string(),
            status: if a.console.is_some() {
                a.status
            } else {
                AgentStatus::Offline
            },
            skills: a.skills.clone(),
            idle_seconds: Instant::now()
                .saturating_duration_since(a.idle_since)
                .as_secs_f64(),
        })
    }

    /// This node's agents with a console connected.
    pub fn local_presence(&self) -> Vec<PresentAgent> {
        let ids: Vec<String> = {
            let s = self.lock();
            s.agents
                .iter()
                .filter(|(_, a)| a.console.is_some())
                .map(|(id, _)| id.clone())
                .collect()
        };
        ids.iter().filter_map(|id| self.local_agent(id)).collect()
    }

    /// Another node's announcement (`node_id`'s agents with a console
    /// connected); announcements older than `lease` are forgotten.
    pub fn remote_presence(&self, node_id: &str, agents: Vec<PresentAgent>, lease: Duration) {
        let mut s = self.lock();
        let now = Instant::now();
        s.remote
            .retain(|_, a| a.node != node_id && now.duration_since(a.seen) < lease);
        for a in agents {
            s.remote.insert(
                a.id,
                RemoteAgent {
                    node: node_id.to_string(),
                    status: a.status,
                    skills: a.skills,
                    idle_seconds: a.idle_seconds,
                    seen: now,
                },
            );
        }
    }

    /// Forgets the agents of a node declared dead.
    pub fn forget_node(&self, node_id: &str) {
        self.lock().remote.retain(|_, a| a.node != node_id);
    }

    /// Puts the cluster's offer on one of this node's consoles (the
    /// screen-pop). False when the agent has no console here any more.
    pub fn deliver_offer(
        &self,
        agent_id: &str,
        call_id: &str,
        kind: OfferKind,
        urgency: Urgency,
        context: Arc<HandoffContext>,
    ) -> bool {
        let mut s = self.lock();
        let Some(agent) = s.agents.get_mut(agent_id) else {
            return false;
        };
        let delivered = agent.console.as_ref().is_some_and(|c| {
            c.try_send(HumanCommand::Offer {
                call_id: call_id.to_string(),
                kind,
                urgency,
                context,
            })
            .is_ok()
        });
        if delivered {
            agent.set(AgentStatus::Ringing);
            agent.offered = Some(call_id.to_string());
        }
        delivered
    }

    /// The offer to one of this node's agents is gone.
    pub fn withdraw_offer(&self, agent_id: &str, call_id: &str, reason: &str) {
        let mut s = self.lock();
        let Some(agent) = s.agents.get_mut(agent_id) else {
            return;
        };
        if agent.offered.as_deref() != Some(call_id) {
            return;
        }
        agent.offered = None;
        agent.withdraw(call_id, reason);
        if agent.status == AgentStatus::Ringing {
            agent.settle();
        }
    }

    /// News from the cluster for a call queued on this node. `NoAgent` takes
    /// it out of the queue. False when the call is not queued here.
    pub fn notify_queued(&self, call_id: &str, event: RoutingEvent) -> bool {
        let mut s = self.lock();
        let Some(i) = s.queue.iter().position(|w| w.call_id == call_id) else {
            return false;
        };
        match &event {
            RoutingEvent::Offered { agent } => s.queue[i].ringing = Some(agent.clone()),
            RoutingEvent::Declined { agent, .. } => {
                s.queue[i].ringing = None;
                s.queue[i].tried.insert(agent.clone());
            }
            _ => {}
        }
        let notify = if matches!(event, RoutingEvent::NoAgent { .. }) {
            s.queue.remove(i).notify
        } else {
            s.queue[i].notify.clone()
        };
        let _ = notify.try_send(event);
        true
    }

    /// The queue entry of a call waiting on this node (to queue it again).
    pub fn queued_entry(&self, call_id: &str) -> Option<QueueEntry> {
        let s = self.lock();
        s.queue
            .iter()
            .find(|w| w.call_id == call_id)
            .map(queue_entry)
    }

    /// The agent a call waiting here is ringing, as far as this node heard.
    pub fn ringing_agent(&self, call_id: &str) -> Option<String> {
        let s = self.lock();
        s.queue
            .iter()
            .find(|w| w.call_id == call_id)
            .and_then(|w| w.ringing.clone())
    }

    /// Every call waiting on this node.
    pub fn queued_entries(&self) -> Vec<QueueEntry> {
        self.lock().queue.iter().map(queue_entry).collect()
    }

    /// The ids of the calls waiting on this node.
    pub fn queued_calls(&self) -> Vec<String> {
        self.lock()
            .queue
            .iter()
            .map(|w| w.call_id.clone())
            .collect()
    }

    /// An agent won the accept of a call queued here: the call leaves the
    /// queue and gets the agent's audio link; the agent's end is returned.
    pub fn hand_over(&self, call_id: &str, agent_id: &str) -> Result<AgentEnd, RoutingError> {
        let (link, end) = link_pair();
        let waiting = super::take_waiting(&mut self.lock(), call_id)?;
        if waiting.ringing.as_deref() != Some(agent_id) {
            // The "offered" news travels by NATS, the accept by the relay: when
            // the accept wins the race, the call hears of the ring first.
            let _ = waiting.notify.try_send(RoutingEvent::Offered {
                agent: agent_id.to_string(),
            });
        }
        waiting
            .notify
            .try_send(RoutingEvent::Answered {
                agent: agent_id.to_string(),
                link,
            })
            .map_err(|_| RoutingError::CallGone(call_id.to_string()))?;
        Ok(end)
    }

    /// One of this node's agents won an accept: busy on a call, or (a
    /// callback) free again at once.
    pub fn accepted_here(&self, agent_id: &str, call_id: &str, kind: OfferKind) {
        {
            let mut s = self.lock();
            if let Some(agent) = s.agents.get_mut(agent_id) {
                agent.offered = None;
                match kind {
                    OfferKind::Call => {
                        agent.set(AgentStatus::Busy);
                        agent.took(call_id);
                    }
                    OfferKind::Callback => agent.settle(),
                }
                agent.idle_since = Instant::now();
            }
        }
        self.announce(agent_id);
    }

    /// Whether one of this node's agents holds an offer of `call_id`.
    pub fn is_offered(&self, agent_id: &str, call_id: &str) -> bool {
        self.lock()
            .agents
            .get(agent_id)
            .is_some_and(|a| a.offered.as_deref() == Some(call_id))
    }

    /// `decline` in a cluster: the agent (if here) is free; the cluster
    /// releases the offer and tells the call's node. A call that already left
    /// this node's queue (answered, then the agent dropped) is `CallGone`, as
    /// alone, unless the decline is the agent's own answer to an offer.
    pub(super) fn decline_in_cluster(
        &self,
        cluster: &mpsc::UnboundedSender<ClusterOp>,
        agent_id: &str,
        call_id: &str,
        reason: super::WithdrawReason,
    ) -> Result<(), RoutingError> {
        let (queued_here, was_offered) = {
            let mut s = self.lock();
            let mut was_offered = false;
            if let Some(agent) = s.agents.get_mut(agent_id) {
                was_offered = agent.offered.as_deref() == Some(call_id);
                super::release_offer(agent, call_id, reason);
            }
            (s.queue.iter().any(|w| w.call_id == call_id), was_offered)
        };
        let _ = cluster.send(ClusterOp::Release {
            agent_id: agent_id.to_string(),
            call_id: call_id.to_string(),
        });
        self.announce(agent_id);
        if queued_here || was_offered {
            Ok(())
        } else {
            Err(RoutingError::CallGone(call_id.to_string()))
        }
    }
}

/// A call waiting here, as the shared queue keeps it.
pub(super) fn queue_entry(w: &super::Waiting) -> QueueEntry {
    QueueEntry {
        call_id: w.call_id.clone(),
        skill: w.skill.clone(),
        urgency: w.urgency,
        tried: w.tried.iter().cloned().collect(),
        context: serde_json::to_string(w.context.as_ref()).unwrap_or_else(|_| "{}".into()),
        callback_number: w.context.caller_number().unwrap_or_default(),
        only: w.only.clone(),
    }
}
