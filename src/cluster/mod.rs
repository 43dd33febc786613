//! Scale-out: several gateway nodes share one pool of agents, one queue and
//! the callbacks, on PostgreSQL (the ledger: [`db`]) and NATS (the doorbell:
//! [`bus`]). Media stays on the node that holds the call; an agent whose
//! console is on another node gets the call's audio through their own node,
//! which dials the call's node ([`relay`]). Design and diagram: docs/DEPLOY.md.
//!
//! One task per node ([`Cluster::spawn`]) owns the database and NATS traffic:
//! routing hands it [`ClusterOp`]s (never blocking a call), it runs dispatch
//! rounds, renews the node's lease, sweeps expired offers and dead nodes, and
//! turns what other nodes say into offers on this node's consoles and news for
//! this node's queued calls. Failed database work is kept in order and retried
//! each heartbeat, so a database outage delays escalations but loses none;
//! calls already connected never touch the database or NATS.

pub mod bus;
pub mod db;
pub mod relay;

use crate::brief::context::HandoffContext;
use crate::config::Config;
use crate::routing::{RoutingEvent, WithdrawReason};
use bus::{CallNews, NodeMessage, Presence, PresentAgent};
use db::{Accepted, ClusterDb, ClusterDbError, OfferKind, Released, Round};
use futures_util::StreamExt;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use thiserror::Error;
use tokio::sync::mpsc;

/// What the cluster needs of the node it runs in: its routing (the
/// composition root, `gateway.rs`, implements it; the cluster holds it weakly
/// and stops when it is gone).
pub trait ClusterHost: Send + Sync {
    /// This node's routing.
    fn routing(&self) -> &crate::routing::Routing;
}

/// The cluster could not be joined.
#[derive(Debug, Error)]
pub enum ClusterError {
    /// PostgreSQL is unreachable.
    #[error(transparent)]
    Db(#[from] ClusterDbError),
    /// NATS is unreachable.
    #[error("cannot reach NATS at {url}: {reason}")]
    Nats {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
}

/// Work routing hands the cluster task (routing's port, defined there).
pub use crate::routing::ClusterOp;

/// What an agent's accept gave them (the agents' legs' type).
pub use crate::legs::desk::AcceptOutcome;

/// This node's membership of the cluster.
pub struct Cluster {
    /// This node.
    pub node_id: String,
    /// Where other nodes reach this node's HTTP listener.
    pub advertise_url: String,
    secret: String,
    /// The shared routing state.
    pub db: ClusterDb,
    nats: async_nats::Client,
    nats_url: String,
    heartbeat: Duration,
    lease: Duration,
    /// Offers delivered to this node's consoles: agent → (call, kind).
    offers: Mutex<HashMap<String, (String, OfferKind)>>,
    /// Routing work waiting for PostgreSQL (for /metrics).
    pending_ops: AtomicUsize,
    /// Whether the last heartbeat reached PostgreSQL (for /metrics).
    database_up: AtomicBool,
    /// Calls queued here but missing from the shared queue, by heartbeats missed.
    missing: Mutex<HashMap<String, u8>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cluster({})", self.node_id)
    }
}

/// The node id: configured, else host name and listen port.
pub fn node_id(config: &Config) -> String {
    if !config.cluster.node_id.is_empty() {
        return config.cluster.node_id.clone();
    }
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "node".into());
    let port = config.server.listen.rsplit(':').next().unwrap_or("0");
    format!("{host}-{port}")
}

impl Cluster {
    /// Connects to PostgreSQL and NATS (failing fast, with the reason).
    pub async fn connect(config: &Config) -> Result<Cluster, ClusterError> {
        let c = &config.cluster;
        let lease = Duration::from_millis(c.lease_ms);
        // The call's node rings for routing.ring_timeout_ms itself; the lease
        // only catches offers nobody is left to time out.
        let ring_lease = Duration::from_millis(config.routing.ring_timeout_ms) + lease;
        let node = node_id(config);
        let db = ClusterDb::connect(&config.store.postgres_url, &node, lease, ring_lease).await?;
        let nats = tokio::time::timeout(
            Duration::from_secs(5),
            async_nats::ConnectOptions::new()
                .name(format!("warmline {node}"))
                .retry_on_initial_connect()
                .connect(c.nats_url.as_str()),
        )
        .await
        .map_err(|_| ClusterError::Nats {
            url: c.nats_url.clone(),
            reason: "no answer within 5 s".into(),
        })?
        .map_err(|e| ClusterError::Nats {
            url: c.nats_url.clone(),
            reason: e.to_string(),
        })?;
        // retry_on_initial_connect returns at once; check we are really connected.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while nats.connection_state() != async_nats::connection::State::Connected {
            if tokio::time::Instant::now() > deadline {
                return Err(ClusterError::Nats {
                    url: c.nats_url.clone(),
                    reason: "not connected within 5 s".into(),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Cluster {
            node_id: node,
            advertise_url: c.advertise_url.trim_end_matches('/').to_string(),
            secret: c.secret.clone(),
            db,
            nats,
            nats_url: c.nats_url.clone(),
            heartbeat: Duration::from_millis(c.heartbeat_ms),
            lease,
            offers: Mutex::new(HashMap::new()),
            pending_ops: AtomicUsize::new(0),
            database_up: AtomicBool::new(true),
            missing: Mutex::new(HashMap::new()),
        })
    }

    /// (routing work waiting for PostgreSQL, whether the last heartbeat reached it).
    pub fn health(&self) -> (usize, bool) {
        (
            self.pending_ops.load(Ordering::Relaxed),
            self.database_up.load(Ordering::Relaxed),
        )
    }

    /// Whether `presented` is the cluster secret (constant time).
    pub fn secret_matches(&self, presented: &str) -> bool {
        !presented.is_empty()
            && crate::util::constant_time_eq(presented.as_bytes(), self.secret.as_bytes())
    }

    /// Renews the lease once (before serving), then runs the node's cluster
    /// task: routing's ops, NATS messages, heartbeats.
    pub async fn spawn(
        self: &Arc<Self>,
        shared: Weak<dyn ClusterHost>,
    ) -> Result<(), ClusterError> {
        // Created (a new node) or renewed (a restart within the lease): nothing to rejoin yet.
        let _ = self.db.heartbeat(&self.advertise_url).await?;
        let nats_err = |e: async_nats::SubscribeError| ClusterError::Nats {
            url: self.nats_url.clone(),
            reason: e.to_string(),
        };
        let inbox = self
            .nats
            .subscribe(bus::node_subject(&self.node_id))
            .await
            .map_err(nats_err)?;
        let presence = self.nats.subscribe(bus::PRESENCE).await.map_err(nats_err)?;
        let (ops_tx, ops_rx) = mpsc::unbounded_channel();
        if let Some(s) = shared.upgrade() {
            s.routing().join_cluster(ops_tx);
        }
        let me = Arc::clone(self);
        tokio::spawn(async move { me.run(shared, ops_rx, inbox, presence).await });
        tracing::info!(node = %self.node_id, url = %self.advertise_url, "joined the cluster");
        Ok(())
    }

    /// Other nodes' messages, in their own task: offers and call news reach
    /// consoles and sessions even while the database work below is slow.
    async fn listen(
        self: Arc<Self>,
        shared: Weak<dyn ClusterHost>,
        mut inbox: async_nats::Subscriber,
        mut presence: async_nats::Subscriber,
    ) {
        loop {
            tokio::select! {
                msg = inbox.next() => {
                    let Some(msg) = msg else { break };
                    let Some(shared) = shared.upgrade() else { break };
                    match serde_json::from_slice::<NodeMessage>(&msg.payload) {
                        Ok(m) => self.on_message(&shared, m).await,
                        Err(e) => tracing::warn!(error = %e, "malformed cluster message dropped"),
                    }
                }
                msg = presence.next() => {
                    let Some(msg) = msg else { break };
                    let Some(shared) = shared.upgrade() else { break };
                    match serde_json::from_slice::<Presence>(&msg.payload) {
                        Ok(p) if p.node_id != self.node_id => shared.routing().remote_presence(&p.node_id, p.agents, self.lease),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "malformed presence announcement dropped"),
                    }
                }
            }
        }
    }

    async fn run(
        self: Arc<Self>,
        shared: Weak<dyn ClusterHost>,
        mut ops: mpsc::UnboundedReceiver<ClusterOp>,
        inbox: async_nats::Subscriber,
        presence: async_nats::Subscriber,
    ) {
        let listener = tokio::spawn(Arc::clone(&self).listen(shared.clone(), inbox, presence));
        let mut pending: VecDeque<ClusterOp> = VecDeque::new();
        let mut beat = tokio::time::interval(self.heartbeat);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let mut heartbeat = false;
            tokio::select! {
                op = ops.recv() => match op {
                    Some(op) => pending.push_back(op),
                    None => break,
                },
                _ = beat.tick() => heartbeat = true,
            }
            let Some(shared) = shared.upgrade() else {
                break;
            };
            while let Ok(op) = ops.try_recv() {
                pending.push_back(op);
            }
            let mut dispatch = heartbeat;
            // Ops in order; the first failure stops the batch and keeps the rest for the next beat.
            while let Some(op) = pending.pop_front() {
                if matches!(op, ClusterOp::Dispatch) {
                    dispatch = true;
                    continue;
                }
                match self.apply(&shared, &op).await {
                    Ok(()) => dispatch = true,
                    Err(e) => {
                        tracing::warn!(error = %e, ?op, "cluster database unavailable; will retry");
                        pending.push_front(op);
                        break;
                    }
                }
            }
            self.pending_ops.store(pending.len(), Ordering::Relaxed);
            if heartbeat {
                self.beat(&shared).await;
                if pending.is_empty() {
                    self.reconcile(&shared).await;
                }
            }
            if dispatch && pending.is_empty() {
                self.dispatch(&shared).await;
            }
        }
        listener.abort();
        tracing::info!(node = %self.node_id, "cluster task ended");
    }

    /// Lease, presence, sweep.
    async fn beat(&self, shared: &Arc<dyn ClusterHost>) {
        match self.db.heartbeat(&self.advertise_url).await {
            Ok(true) => {
                // Our lease had expired: the others took our agents offline and
                // saved our queued callers as callbacks. They are still here.
                let queued = shared.routing().queued_entries();
                tracing::warn!(node = %self.node_id, queued = queued.len(),
                    "this node was cut off longer than its lease; rejoining the cluster");
                if let Err(e) = self.db.rejoin(&queued).await {
                    tracing::warn!(error = %e, "rejoin failed; retrying next heartbeat");
                    return;
                }
                for agent in shared.routing().local_presence() {
                    let _ = self.store_presence(&agent).await;
                }
            }
            Ok(false) => {}
            Err(e) => {
                self.database_up.store(false, Ordering::Relaxed);
                tracing::warn!(error = %e, "cluster heartbeat failed");
                return;
            }
        }
        self.database_up.store(true, Ordering::Relaxed);
        self.announce(shared).await;
        match self.db.sweep().await {
            Ok((released, takeovers)) => {
                for r in released {
                    self.on_released(shared, r, WithdrawReason::RingTimeout.as_str())
                        .await;
                }
                for t in takeovers {
                    tracing::warn!(node = %t.node, callbacks = t.callbacks_saved.len(),
                        "a cluster node stopped; its queued callers are saved as callbacks");
                    shared.routing().forget_node(&t.node);
                    for r in t.released {
                        self.on_released(shared, r, WithdrawReason::CallLost.as_str())
                            .await;
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cluster sweep failed"),
        }
    }

    /// Makes up for lost NATS messages from the database: offers to this
    /// node's agents that never reached their console are delivered, and a
    /// call of this node that left the shared queue without news for two
    /// heartbeats (its "nobody can take it" was lost, or the agent who won it
    /// never connected) joins it again, never to be offered to that agent; the
    /// next round offers it on or says, from here, that nobody can take it.
    async fn reconcile(&self, shared: &Arc<dyn ClusterHost>) {
        match self.db.offers_on_node(self.heartbeat).await {
            Ok(offers) => {
                for m in offers {
                    if shared.routing().is_offered(&m.agent_id, &m.call_id) {
                        continue;
                    }
                    tracing::warn!(agent = %m.agent_id, call = %m.call_id,
                        "offer never reached the console (message lost); delivering it from the database");
                    self.on_message(shared, m.into()).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "offer reconciliation failed"),
        }
        let queued = match self.db.queued_on_node().await {
            Ok(q) => q,
            Err(e) => {
                tracing::warn!(error = %e, "queue reconciliation failed");
                return;
            }
        };
        let mut lost = Vec::new();
        {
            let mut missing = self.missing.lock().unwrap_or_else(|p| p.into_inner());
            let here = shared.routing().queued_calls();
            missing.retain(|call, _| here.contains(call));
            for call in here {
                if queued.contains(&call) {
                    missing.remove(&call);
                    continue;
                }
                let misses = missing.entry(call.clone()).or_default();
                *misses += 1;
                if *misses >= 2 {
                    lost.push(call);
                }
            }
            for call in &lost {
                missing.remove(call);
            }
        }
        for call in lost {
            let Some(mut entry) = shared.routing().queued_entry(&call) else {
                continue;
            };
            if let Some(agent) = shared.routing().ringing_agent(&call)
                && !entry.tried.contains(&agent)
            {
                entry.tried.push(agent);
            }
            tracing::warn!(call = %call, tried = ?entry.tried,
                "call left the shared queue without news; queuing it again");
            if let Err(e) = self.db.enqueue(&entry).await {
                tracing::warn!(error = %e, "re-queue failed; retrying next heartbeat");
            }
        }
    }

    /// One of this node's agents' availability, into the shared table.
    async fn store_presence(&self, a: &PresentAgent) -> Result<(), ClusterDbError> {
        let idle = Duration::from_secs_f64(a.idle_seconds.max(0.0));
        self.db
            .set_presence(&a.id, a.status.as_str(), &a.skills, idle)
            .await
    }

    async fn announce(&self, shared: &Arc<dyn ClusterHost>) {
        let p = Presence {
            node_id: self.node_id.clone(),
            agents: shared.routing().local_presence(),
        };
        if let Ok(body) = serde_json::to_vec(&p)
            && let Err(e) = self.nats.publish(bus::PRESENCE, body.into()).await
        {
            tracing::warn!(error = %e, "presence not announced");
        }
    }

    async fn apply(
        &self,
        shared: &Arc<dyn ClusterHost>,
        op: &ClusterOp,
    ) -> Result<(), ClusterDbError> {
        match op {
            ClusterOp::Presence(a) => {
                self.store_presence(a).await?;
                self.announce(shared).await;
            }
            ClusterOp::Enqueue(e) => self.db.enqueue(e).await?,
            ClusterOp::UpdateContext { call_id, context } => {
                self.db.update_context(call_id, context).await?
            }
            ClusterOp::Leave { call_id } => {
                if let Some(r) = self.db.leave(call_id).await? {
                    self.on_released(shared, r, WithdrawReason::CallerHangup.as_str())
                        .await;
                }
            }
            ClusterOp::Release { agent_id, call_id } => {
                self.forget_offer(agent_id, call_id);
                // None: already released, or accepted but the agent's audio never
                // reached the call (their node failed between) — `reconcile`
                // queues such a call again.
                if let Some(r) = self.db.release(agent_id, call_id).await? {
                    self.on_released(shared, r, WithdrawReason::Declined.as_str())
                        .await;
                }
            }
            ClusterOp::Dispatch => {}
        }
        Ok(())
    }

    /// Runs dispatch rounds until nothing more pairs up.
    async fn dispatch(&self, shared: &Arc<dyn ClusterHost>) {
        loop {
            let round = match self.db.dispatch_round().await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "dispatch round failed; retrying next heartbeat");
                    return;
                }
            };
            if round == Round::default() {
                return;
            }
            for u in round.unroutable {
                self.tell_owner(
                    shared,
                    &u.owner_node,
                    &u.call_id,
                    CallNews::NoAgent { reason: u.reason },
                )
                .await;
            }
            for m in round.matches {
                tracing::info!(call = %m.call_id, agent = %m.agent_id, agent_node = %m.agent_node,
                    kind = ?m.kind, "offer");
                if m.kind == OfferKind::Call {
                    self.tell_owner(
                        shared,
                        &m.owner_node,
                        &m.call_id,
                        CallNews::Offered {
                            agent_id: m.agent_id.clone(),
                        },
                    )
                    .await;
                }
                let node = m.agent_node.clone();
                self.send(shared, &node, m.into()).await;
            }
        }
    }

    /// Delivers `msg` to `node`: handled at once when it is this node.
    async fn send(&self, shared: &Arc<dyn ClusterHost>, node: &str, msg: NodeMessage) {
        if node == self.node_id {
            Box::pin(self.on_message(shared, msg)).await;
            return;
        }
        match serde_json::to_vec(&msg) {
            Ok(body) => {
                if let Err(e) = self
                    .nats
                    .publish(bus::node_subject(node), body.into())
                    .await
                {
                    tracing::warn!(%node, error = %e, "cluster message not sent");
                }
            }
            Err(e) => tracing::error!(error = %e, "cluster message not encoded"),
        }
    }

    async fn tell_owner(
        &self,
        shared: &Arc<dyn ClusterHost>,
        owner: &str,
        call_id: &str,
        event: CallNews,
    ) {
        let msg = NodeMessage::Call {
            call_id: call_id.to_string(),
            event,
        };
        self.send(shared, owner, msg).await;
    }

    async fn on_released(&self, shared: &Arc<dyn ClusterHost>, r: Released, reason: &str) {
        if let Some(node) = &r.agent_node {
            let msg = NodeMessage::Withdraw {
                agent_id: r.agent_id.clone(),
                call_id: r.call_id.clone(),
                reason: reason.to_string(),
            };
            self.send(shared, node, msg).await;
        }
        if let Some(owner) = &r.owner_node {
            self.tell_owner(
                shared,
                owner,
                &r.call_id,
                CallNews::Declined {
                    agent_id: r.agent_id.clone(),
                },
            )
            .await;
        }
    }

    /// A message from another node (or from this one, short-circuited).
    async fn on_message(&self, shared: &Arc<dyn ClusterHost>, msg: NodeMessage) {
        match msg {
            NodeMessage::Offer {
                agent_id,
                call_id,
                kind,
                urgency,
                context,
                owner_node,
            } => {
                let context: HandoffContext = serde_json::from_str(&context).unwrap_or_else(|e| {
                    tracing::warn!(call = %call_id, error = %e, "offer context unreadable; showing an empty one");
                    HandoffContext::default()
                });
                if shared.routing().deliver_offer(
                    &agent_id,
                    &call_id,
                    kind,
                    urgency,
                    Arc::new(context),
                ) {
                    tracing::info!(agent = %agent_id, call = %call_id, owner = %owner_node, "screen-pop sent");
                    self.offers
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(agent_id, (call_id, kind));
                } else {
                    tracing::info!(agent = %agent_id, call = %call_id, "offered agent has no console here; releasing");
                    match self.db.release(&agent_id, &call_id).await {
                        Ok(Some(r)) => {
                            Box::pin(self.on_released(
                                shared,
                                r,
                                WithdrawReason::AgentGone.as_str(),
                            ))
                            .await
                        }
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "offer release failed; the ring lease will")
                        }
                    }
                }
            }
            NodeMessage::Withdraw {
                agent_id,
                call_id,
                reason,
            } => {
                self.forget_offer(&agent_id, &call_id);
                shared
                    .routing()
                    .withdraw_offer(&agent_id, &call_id, &reason);
            }
            NodeMessage::Call { call_id, event } => {
                let event = match event {
                    CallNews::Offered { agent_id } => RoutingEvent::Offered { agent: agent_id },
                    CallNews::Declined { agent_id } => RoutingEvent::Declined {
                        agent: agent_id,
                        reason: crate::routing::WithdrawReason::Declined,
                    },
                    CallNews::NoAgent { reason } => RoutingEvent::NoAgent { reason },
                };
                if !shared.routing().notify_queued(&call_id, event) {
                    tracing::debug!(call = %call_id, "news for a call no longer queued here");
                }
            }
        }
    }

    fn forget_offer(&self, agent_id: &str, call_id: &str) {
        let mut offers = self.offers.lock().unwrap_or_else(|p| p.into_inner());
        if offers.get(agent_id).is_some_and(|(c, _)| c == call_id) {
            offers.remove(agent_id);
        }
    }

    /// One of this node's agents accepts their offer. Exactly one accept of
    /// an offer wins (in PostgreSQL); a live call on this node is handed over
    /// here, one on another node is reached through [`relay::dial`].
    pub async fn accept(
        &self,
        shared: &Arc<dyn ClusterHost>,
        agent_id: &str,
        call_id: &str,
    ) -> Result<AcceptOutcome, String> {
        let kind = self
            .offers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(agent_id)
            .filter(|(c, _)| c == call_id)
            .map_or(OfferKind::Call, |(_, k)| *k);
        let accepted = self
            .db
            .accept(agent_id, kind, call_id)
            .await
            .map_err(|e| e.to_string())?;
        self.forget_offer(agent_id, call_id);
        shared.routing().accepted_here(agent_id, call_id, kind);
        match accepted {
            Accepted::Callback { number } => {
                tracing::info!(agent = %agent_id, call = %call_id, "callback assigned");
                self.dispatch(shared).await;
                Ok(AcceptOutcome::Callback { number })
            }
            Accepted::Call { owner_node, .. } if owner_node == self.node_id => shared
                .routing()
                .hand_over(call_id, agent_id)
                .map(AcceptOutcome::Call)
                .map_err(|e| e.to_string()),
            Accepted::Call {
                owner_node,
                owner_url,
            } => {
                tracing::info!(agent = %agent_id, call = %call_id, owner = %owner_node,
                    "call held by another node; connecting its audio");
                relay::dial(shared, &owner_url, &self.secret, call_id, agent_id)
                    .await
                    .map(AcceptOutcome::Call)
                    .map_err(|e| e.to_string())
            }
        }
    }

    /// Leaves the cluster on shutdown: agents offline at once, lease given up.
    pub async fn leave(&self) {
        match self.db.leave_cluster().await {
            Ok(t) => tracing::info!(callbacks = t.callbacks_saved.len(), "left the cluster"),
            Err(e) => {
                tracing::warn!(error = %e, "could not leave the cluster cleanly; the lease will expire")
            }
        }
    }
}
