//! Routing to human agents: the registry (who is online, available, idle for
//! how long, with which skills), the queue of escalated calls with a wait
//! estimate, offers with screen-pop, accept/decline, and "nobody" → callback.
//!
//! Touched at escalation, offer and answer only — never per audio frame — so
//! one mutex is enough.

mod cluster_port;
mod cluster_side;
pub mod webhook;

pub use crate::domain::{AgentStatus, OfferKind, WithdrawReason};
pub use crate::legs::desk::{
    AgentEnd, Arrival, HeldCall, HumanCommand, Presence, QueueView, Team, TeamMember, WrapUpNews,
};
pub use cluster_port::{ClusterOp, PresentAgent, QueueEntry};

use crate::brief::context::HandoffContext;
use crate::domain::Urgency;
use crate::legs::{LegCommand, LegEvent};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::sync::mpsc;

/// The audio link between an answering agent and the call.
#[derive(Debug)]
pub struct HumanLink {
    /// Towards the agent's console (whisper, caller audio, stop).
    pub commands: mpsc::Sender<LegCommand>,
    /// From the agent's console (voice, skip, hang-up).
    pub events: mpsc::Receiver<LegEvent>,
}

/// What routing tells a queued call.
#[derive(Debug)]
pub enum RoutingEvent {
    /// An agent got the screen-pop and is being rung.
    Offered {
        /// The agent.
        agent: String,
    },
    /// The agent accepted; here is their audio link.
    Answered {
        /// The agent.
        agent: String,
        /// The link.
        link: HumanLink,
    },
    /// The agent declined, their console went away, or (a destination) a
    /// voicemail box answered.
    Declined {
        /// The agent.
        agent: String,
        /// Why the offer ended.
        reason: WithdrawReason,
    },
    /// Nobody can take the call.
    NoAgent {
        /// Why, for the caller and the timeline.
        reason: String,
    },
    /// The call waited long enough (or is critical) to be offered beyond its
    /// skill (`[[routing.overflow]]`); an `Offered` to `agent` follows.
    Overflowed {
        /// The agent or destination it overflowed to.
        agent: String,
    },
}

/// A registered human agent.
#[derive(Debug, Clone, Serialize)]
pub struct AgentInfo {
    /// Id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Skills (empty = takes anything).
    pub skills: Vec<String>,
    /// Status.
    pub status: AgentStatus,
    /// Console connected.
    pub connected: bool,
    /// Seconds idle (available), for longest-idle selection.
    pub idle_seconds: f64,
    /// The cluster node their console is on, when not this one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// Routing refused a request.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RoutingError {
    /// No such agent.
    #[error("unknown agent {0:?}")]
    UnknownAgent(String),
    /// Wrong token.
    #[error("invalid token for agent {0:?}")]
    BadToken(String),
    /// A sign-in ticket that is unknown, used or expired.
    #[error("sign-in ticket for agent {0:?} is invalid, used or expired; sign in again")]
    BadTicket(String),
    /// The agent has another console open.
    #[error("agent {0:?} is already connected from another console")]
    AlreadyConnected(String),
    /// The offer is not (or no longer) for this agent.
    #[error(
        "call {call} is not offered to agent {agent:?} (already taken, withdrawn or never offered)"
    )]
    NotOffered {
        /// The agent.
        agent: String,
        /// The call.
        call: String,
    },
    /// The call left the queue.
    #[error("call {0} is no longer waiting")]
    CallGone(String),
}

/// Tuning.
#[derive(Debug, Clone)]
pub struct RoutingConfig {
    /// Handle time assumed before any call completed.
    pub default_handle: Duration,
    /// Longer estimated waits go straight to a callback.
    pub max_wait: Duration,
    /// Business hours.
    pub schedule: crate::domain::hours::Schedule,
    /// Intent keyword → skill (see [`Routing::skill_for`]).
    pub intent_skills: std::collections::BTreeMap<String, String>,
    /// Wrap-up time after a call (zero: until the agent saves it).
    pub wrapup: Duration,
    /// Overflow rules, one per skill at most (the first wins).
    pub overflow: Vec<OverflowRule>,
}

/// A call waiting for `skill` longer than `after` (a critical one at once) may
/// also go to the agents `to` names: a skill they have, their id, or a
/// destination's id (any of its channels, `<id>-2`…).
#[derive(Debug, Clone, PartialEq)]
pub struct OverflowRule {
    /// The queue it widens.
    pub skill: String,
    /// How long a call waits for its own skill first.
    pub after: Duration,
    /// Skills, agent ids or destination ids.
    pub to: Vec<String>,
}

impl RoutingConfig {
    fn overflow_for(&self, skill: &str) -> Option<&OverflowRule> {
        self.overflow.iter().find(|r| r.skill == skill)
    }

    /// How long a call of `urgency` waits for its skill before it overflows.
    fn overflow_after(&self, skill: &str, urgency: Urgency) -> Option<Duration> {
        self.overflow_for(skill).map(|r| {
            if urgency == Urgency::Critical {
                Duration::ZERO
            } else {
                r.after
            }
        })
    }

    /// The overflow targets open to `w` at `now` (none for a transfer to a named agent).
    fn overflow_open(&self, w: &Waiting, now: Instant) -> &[String] {
        match (
            self.overflow_for(&w.skill),
            self.overflow_after(&w.skill, w.urgency),
        ) {
            (Some(rule), Some(after))
                if w.only.is_none() && now.saturating_duration_since(w.enqueued) >= after =>
            {
                &rule.to
            }
            _ => &[],
        }
    }

    /// Every overflow target `skill` may ever reach.
    fn overflow_targets(&self, skill: &str) -> &[String] {
        self.overflow_for(skill).map_or(&[], |r| &r.to)
    }
}

/// Whether agent `id` is one of the overflow targets `to`.
fn is_overflow_target(id: &str, agent: &Agent, to: &[String]) -> bool {
    to.iter().any(|t| {
        let channel_of = id
            .strip_prefix(t.as_str())
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
        id == t || channel_of || (!t.is_empty() && agent.skills.iter().any(|k| k == t))
    })
}

impl RoutingConfig {
    /// The tuning `[routing]` configures (business hours validated at load).
    pub fn from_config(config: &crate::config::Config) -> Self {
        RoutingConfig {
            default_handle: Duration::from_secs(config.routing.default_handle_seconds),
            max_wait: Duration::from_secs(config.routing.max_wait_seconds),
            intent_skills: config.routing.intent_skills.clone(),
            wrapup: Duration::from_secs(config.routing.wrapup_seconds),
            overflow: config
                .routing
                .overflow
                .iter()
                .map(|o| OverflowRule {
                    skill: o.skill.clone(),
                    after: Duration::from_secs(o.after_seconds),
                    to: o.to.clone(),
                })
                .collect(),
            schedule: config
                .schedule()
                .unwrap_or_else(|_| crate::domain::hours::Schedule::always()),
        }
    }
}

struct Agent {
    name: String,
    token_sha256: String,
    skills: Vec<String>,
    status: AgentStatus,
    idle_since: Instant,
    console: Option<mpsc::Sender<HumanCommand>>,
    offered: Option<String>,
    /// What the agent chose (or was put in, after a missed offer) for when
    /// no call holds them: available, break, not ready or offline. A
    /// reconnecting console comes back to it.
    chosen: AgentStatus,
    /// Whether this agent wraps up after calls (a console; not a SIP phone).
    wraps_up: bool,
    /// The call they owe a wrap-up for, and until when (none: until saved).
    wrapup: Option<(String, Option<Instant>)>,
    /// A call held for their console to take back.
    held: Option<HeldCall>,
    /// Calls they took (most recent last), which they may wrap up.
    taken: VecDeque<String>,
    /// Sign-in tickets issued (SHA-256 of each) and when they expire.
    tickets: Vec<(String, Instant)>,
    /// Routing's "a presence changed" signal.
    team_changed: Arc<tokio::sync::Notify>,
    /// When this agent takes calls (a destination's own hours; none: whenever
    /// the team is open).
    hours: Option<crate::domain::hours::Schedule>,
}

impl Agent {
    /// Whether their own hours (if any) cover `unix_seconds`.
    fn on_duty(&self, unix_seconds: i64) -> bool {
        self.hours.as_ref().is_none_or(|h| h.is_open(unix_seconds))
    }

    /// Moves to `status`, telling the console when it changed.
    fn set(&mut self, status: AgentStatus) {
        if self.status == status {
            return;
        }
        if status == AgentStatus::Available {
            self.idle_since = Instant::now();
        }
        self.status = status;
        if let Some(console) = &self.console {
            let _ = console.try_send(HumanCommand::Presence(self.presence(Instant::now())));
        }
        self.team_changed.notify_waiters();
    }

    /// The presence as the console shows it.
    fn presence(&self, now: Instant) -> Presence {
        Presence {
            status: self.status,
            wrap_up: self
                .wrapup
                .as_ref()
                .filter(|_| self.status == AgentStatus::WrapUp)
                .map(|(call_id, until)| WrapUpNews {
                    call_id: call_id.clone(),
                    seconds_left: until.map(|u| u.saturating_duration_since(now).as_secs()),
                }),
        }
    }

    /// Whether the wrap-up they owe has run out of time by `now`.
    fn wrapup_over(&self, now: Instant) -> bool {
        self.wrapup
            .as_ref()
            .is_some_and(|(_, until)| until.is_some_and(|u| u <= now))
    }

    /// Where the agent goes when nothing holds them: wrap-up if owed, else their choice.
    fn settle(&mut self) {
        let status = if self.console.is_none() {
            AgentStatus::Offline
        } else if self.wrapup.is_some() {
            AgentStatus::WrapUp
        } else {
            self.chosen
        };
        self.set(status);
    }

    /// Tells the console an offer is gone.
    fn withdraw(&mut self, call_id: &str, reason: &str) {
        if let Some(console) = &self.console {
            let _ = console.try_send(HumanCommand::OfferWithdrawn {
                call_id: call_id.to_string(),
                reason: reason.to_string(),
            });
        }
    }

    /// Notes a call they took (for wrap-up).
    fn took(&mut self, call_id: &str) {
        if self.taken.len() >= 32 {
            self.taken.pop_front();
        }
        self.taken.push_back(call_id.to_string());
    }

    /// Whether this agent takes calls for `skill`.
    fn takes(&self, skill: &str) -> bool {
        takes_skill(&self.skills, skill)
    }
}

struct Waiting {
    call_id: String,
    skill: String,
    urgency: Urgency,
    enqueued: Instant,
    tried: HashSet<String>,
    context: Arc<HandoffContext>,
    notify: mpsc::Sender<RoutingEvent>,
    ringing: Option<String>,
    /// Offered to this agent only (a transfer to a named agent).
    only: Option<String>,
}

struct State {
    agents: BTreeMap<String, Agent>,
    queue: Vec<Waiting>,
    handle_times: VecDeque<Duration>,
    /// Agents whose consoles are on other cluster nodes (from their presence).
    remote: BTreeMap<String, cluster_side::RemoteAgent>,
    /// Agents who are supervisors (`[[routing.agents]] supervisor = true`).
    supervisors: HashSet<String>,
}

/// The routing service. Alone, it decides every offer itself; in a cluster
/// ([`Routing::join_cluster`]) the decisions are made in PostgreSQL by
/// [`crate::cluster`] and this keeps the node's own consoles and queued calls.
pub struct Routing {
    config: RoutingConfig,
    /// Woken on every presence change (consoles refresh their team view).
    team_changed: Arc<tokio::sync::Notify>,
    state: Mutex<State>,
    cluster: std::sync::OnceLock<mpsc::UnboundedSender<ClusterOp>>,
}

impl std::fmt::Debug for Routing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Routing")
    }
}

/// How long a console sign-in ticket lasts.
pub const TICKET_TTL: Duration = Duration::from_secs(30);

/// The result of joining the queue.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QueueTicket {
    /// Position (1 = next).
    pub position: usize,
    /// Estimated wait.
    pub estimated_wait: Duration,
}

impl Routing {
    /// An empty registry.
    pub fn new(config: RoutingConfig) -> Self {
        Routing {
            config,
            team_changed: Arc::new(tokio::sync::Notify::new()),
            state: Mutex::new(State {
                agents: BTreeMap::new(),
                queue: Vec::new(),
                handle_times: VecDeque::new(),
                remote: BTreeMap::new(),
                supervisors: HashSet::new(),
            }),
            cluster: std::sync::OnceLock::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers (or updates) an agent; new agents start offline until their
    /// console connects. Only the token's SHA-256 is kept.
    pub fn register(&self, id: &str, name: &str, token: &str, skills: Vec<String>) {
        self.register_hashed(id, name, &token_sha256(token), skills);
    }

    /// Registers an agent whose token is already hashed (from the database).
    pub fn register_hashed(&self, id: &str, name: &str, token_sha256: &str, skills: Vec<String>) {
        let mut s = self.lock();
        match s.agents.get_mut(id) {
            Some(a) => {
                let rotated = a.token_sha256 != token_sha256;
                a.name = name.to_string();
                a.token_sha256 = token_sha256.to_string();
                a.skills = skills;
                if rotated {
                    drop(s);
                    self.sign_out(id, "your token was changed; sign in with the new one");
                }
            }
            None => {
                s.agents.insert(
                    id.to_string(),
                    Agent {
                        name: name.to_string(),
                        token_sha256: token_sha256.to_string(),
                        skills,
                        status: AgentStatus::Offline,
                        idle_since: Instant::now(),
                        console: None,
                        offered: None,
                        chosen: AgentStatus::Available,
                        wraps_up: true,
                        wrapup: None,
                        held: None,
                        taken: VecDeque::new(),
                        tickets: Vec::new(),
                        team_changed: Arc::clone(&self.team_changed),
                        hours: None,
                    },
                );
            }
        }
    }

    /// Sets when agent `id` takes calls (`[[routing.destinations]]` and phone
    /// agents' own `open_days`/`open_hours`); `None`: whenever the team is open.
    /// Outside them they are offered nothing, and a call nobody else can
    /// take goes to the fallback rather than waiting for them to open.
    pub fn set_hours(&self, id: &str, hours: Option<crate::domain::hours::Schedule>) {
        if let Ok(agent) = agent_mut(&mut self.lock(), id) {
            agent.hours = hours;
        }
        self.dispatch();
    }

    /// Restores an agent's own choice to be offline (from the database): their
    /// console stays offline when it connects until they go available.
    pub fn restore_away(&self, id: &str, away: bool) {
        if let Ok(agent) = agent_mut(&mut self.lock(), id) {
            agent.chosen = if away {
                AgentStatus::Offline
            } else {
                AgentStatus::Available
            };
        }
    }

    /// All agents.
    pub fn agents(&self) -> Vec<AgentInfo> {
        let s = self.lock();
        let now = Instant::now();
        let mut all: Vec<AgentInfo> = s
            .agents
            .iter()
            .filter(|(id, a)| a.console.is_some() || !s.remote.contains_key(*id))
            .map(|(id, a)| AgentInfo {
                id: id.clone(),
                name: a.name.clone(),
                skills: a.skills.clone(),
                status: a.status,
                connected: a.console.is_some(),
                idle_seconds: if a.status == AgentStatus::Available {
                    now.saturating_duration_since(a.idle_since).as_secs_f64()
                } else {
                    0.0
                },
                node: None,
            })
            .collect();
        all.extend(cluster_side::remote_info(&s));
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// A one-time sign-in ticket for an agent already authenticated by
    /// token: the console's WebSocket URL carries it instead of the token.
    /// It works once, within [`TICKET_TTL`].
    pub fn issue_ticket(&self, id: &str) -> Result<String, RoutingError> {
        let ticket = format!(
            "{:016x}{:016x}",
            crate::util::random_u64(),
            crate::util::random_u64()
        );
        let mut s = self.lock();
        let agent = agent_mut(&mut s, id)?;
        let now = Instant::now();
        agent.tickets.retain(|(_, until)| *until > now);
        if agent.tickets.len() >= 4 {
            agent.tickets.remove(0);
        }
        agent
            .tickets
            .push((token_sha256(&ticket), now + TICKET_TTL));
        Ok(ticket)
    }

    /// Uses up a sign-in ticket (see [`Routing::issue_ticket`]).
    pub fn redeem_ticket(&self, id: &str, ticket: &str) -> Result<(), RoutingError> {
        let mut s = self.lock();
        let agent = agent_mut(&mut s, id)?;
        let now = Instant::now();
        let given = token_sha256(ticket);
        let found = agent.tickets.iter().position(|(hash, until)| {
            *until > now && crate::util::constant_time_eq(hash.as_bytes(), given.as_bytes())
        });
        match found {
            Some(i) => {
                agent.tickets.remove(i);
                Ok(())
            }
            None => Err(RoutingError::BadTicket(id.to_string())),
        }
    }

    /// Makes an agent a supervisor (or not).
    pub fn set_supervisor(&self, id: &str, supervisor: bool) {
        let mut s = self.lock();
        if supervisor {
            s.supervisors.insert(id.to_string());
        } else {
            s.supervisors.remove(id);
        }
    }

    /// Whether an agent is a supervisor.
    pub fn is_supervisor(&self, id: &str) -> bool {
        self.lock().supervisors.contains(id)
    }

    /// Checks an agent's token (constant time).
    pub fn authenticate(&self, id: &str, token: &str) -> Result<(), RoutingError> {
        let s = self.lock();
        let agent = s
            .agents
            .get(id)
            .ok_or_else(|| RoutingError::UnknownAgent(id.to_string()))?;
        let given = token_sha256(token);
        if !token.is_empty()
            && crate::util::constant_time_eq(agent.token_sha256.as_bytes(), given.as_bytes())
        {
            Ok(())
        } else {
            Err(RoutingError::BadToken(id.to_string()))
        }
    }

    /// An agent's console connected: they are back in the state they chose
    /// (available unless they chose otherwise), in the wrap-up they owe, or
    /// on the call they dropped within the grace period (returned to take back).
    pub fn console_connected(
        &self,
        id: &str,
        console: mpsc::Sender<HumanCommand>,
    ) -> Result<Arrival, RoutingError> {
        self.desk_connected(id, console, true)
    }

    /// An agent's SIP phone is ready: like a console, without wrap-up.
    pub fn phone_connected(
        &self,
        id: &str,
        phone: mpsc::Sender<HumanCommand>,
    ) -> Result<(), RoutingError> {
        self.desk_connected(id, phone, false).map(|_| ())
    }

    fn desk_connected(
        &self,
        id: &str,
        console: mpsc::Sender<HumanCommand>,
        wraps_up: bool,
    ) -> Result<Arrival, RoutingError> {
        let arrival = {
            let mut s = self.lock();
            let agent = agent_mut(&mut s, id)?;
            if agent.console.as_ref().is_some_and(|c| !c.is_closed()) {
                return Err(RoutingError::AlreadyConnected(id.to_string()));
            }
            agent.wraps_up = wraps_up;
            let now = Instant::now();
            if agent.wrapup_over(now) {
                agent.wrapup = None;
            }
            let held = agent.held.take().filter(|h| !h.reclaim.is_closed());
            // The console hears this state in its `connected`, not as a change.
            agent.status = if held.is_some() {
                AgentStatus::Busy
            } else if agent.wrapup.is_some() {
                AgentStatus::WrapUp
            } else {
                agent.chosen
            };
            agent.console = Some(console);
            agent.idle_since = now;
            agent.team_changed.notify_waiters();
            Arrival {
                presence: agent.presence(now),
                held,
            }
        };
        self.announce(id);
        self.dispatch();
        Ok(arrival)
    }

    /// Ends an agent's console session at once (a rotated token, an admin
    /// setting them offline): the console is told and closes, any offer to
    /// them is declined, and they are offline until they sign in again.
    pub fn sign_out(&self, id: &str, reason: &str) {
        let (console, declined) = {
            let mut s = self.lock();
            let Some(agent) = s.agents.get_mut(id) else {
                return;
            };
            let Some(console) = agent.console.take() else {
                return;
            };
            agent.set(AgentStatus::Offline);
            (console, agent.offered.take())
        };
        tracing::info!(agent = %id, %reason, "console session ended by the gateway");
        let _ = console.try_send(HumanCommand::SignedOut {
            reason: reason.to_string(),
        });
        self.announce(id);
        if let Some(call) = declined {
            let _ = self.decline(id, &call, WithdrawReason::AgentGone);
        }
    }

    /// An agent's console went away: any offer to them is declined; a call
    /// they were on is `held` for them to take back when given. `console`
    /// is the session's own sender: a session already signed out (and perhaps
    /// replaced by a new sign-in) changes nothing.
    pub fn console_gone(
        &self,
        id: &str,
        console: &mpsc::Sender<HumanCommand>,
        held: Option<HeldCall>,
    ) {
        let declined = {
            let mut s = self.lock();
            let Some(agent) = s.agents.get_mut(id) else {
                return;
            };
            if !agent
                .console
                .as_ref()
                .is_some_and(|c| c.same_channel(console))
            {
                return;
            }
            agent.console = None;
            match held {
                // Still on the call (as far as routing knows) until it comes back or ends.
                Some(h) => agent.held = Some(h),
                None => agent.set(AgentStatus::Offline),
            }
            agent.offered.take()
        };
        self.announce(id);
        if let Some(call) = declined {
            let _ = self.decline(id, &call, WithdrawReason::AgentGone);
        }
    }

    /// The held call of an agent is over (taken to the next agent, or ended).
    pub fn held_call_gone(&self, id: &str, call_id: &str) {
        let mut s = self.lock();
        if let Some(agent) = s.agents.get_mut(id)
            && agent.held.as_ref().is_some_and(|h| h.call_id == call_id)
        {
            agent.held = None;
        }
    }

    /// Whether `call_id` is one this agent took (and so may wrap up).
    pub fn took(&self, id: &str, call_id: &str) -> bool {
        self.lock()
            .agents
            .get(id)
            .is_some_and(|a| a.taken.iter().any(|c| c == call_id))
    }

    /// The agent saved the wrap-up of `call_id`: wrap-up is over.
    pub fn wrapup_done(&self, id: &str, call_id: &str) {
        {
            let mut s = self.lock();
            let Some(agent) = s.agents.get_mut(id) else {
                return;
            };
            if agent.wrapup.as_ref().is_none_or(|(c, _)| c != call_id) {
                return;
            }
            agent.wrapup = None;
            if agent.status == AgentStatus::WrapUp {
                agent.settle();
            }
        }
        self.announce(id);
        self.dispatch();
    }

    /// Ends the wrap-ups whose time is up (the consoles' timers call this;
    /// a dispatch round does too).
    pub fn tick(&self) {
        let now = Instant::now();
        let (ended, overflow_due) = {
            let mut s = self.lock();
            let ended = Self::end_wrapups(&mut s, now);
            // A waiting call whose overflow opened may now reach more agents
            // (single node: a cluster's dispatch rounds do not overflow yet).
            let due = self.cluster.get().is_none()
                && s.queue
                    .iter()
                    .any(|w| w.ringing.is_none() && !self.config.overflow_open(w, now).is_empty());
            (ended, due)
        };
        for id in &ended {
            self.announce(id);
        }
        if !ended.is_empty() || overflow_due {
            self.dispatch();
        }
    }

    fn end_wrapups(s: &mut State, now: Instant) -> Vec<String> {
        let mut ended = Vec::new();
        for (id, agent) in s.agents.iter_mut() {
            if agent.wrapup_over(now) {
                agent.wrapup = None;
                if agent.status == AgentStatus::WrapUp {
                    agent.settle();
                    ended.push(id.clone());
                }
            }
        }
        ended
    }

    /// Sets availability (REST or console). A choice (available, break,
    /// offline) is kept for when no call holds them: while ringing or on a
    /// call it takes effect after; choosing it in wrap-up ends the wrap-up.
    pub fn set_status(&self, id: &str, status: AgentStatus) -> Result<(), RoutingError> {
        {
            let mut s = self.lock();
            let agent = agent_mut(&mut s, id)?;
            if status.is_choosable() || status == AgentStatus::NotReady {
                agent.chosen = status;
                match agent.status {
                    AgentStatus::Ringing | AgentStatus::Busy => {}
                    AgentStatus::WrapUp => {
                        agent.wrapup = None;
                        agent.settle();
                    }
                    _ => agent.settle(),
                }
            } else {
                // An administrator forcing ringing/busy (REST): as told.
                agent.set(status);
            }
        }
        self.announce(id);
        self.dispatch();
        Ok(())
    }

    /// The skill a call is queued for: the one its provider named (`requested`,
    /// from the stream's `customParameters.skill`), else the first configured
    /// intent keyword found in `intent`, else "" (any agent).
    pub fn skill_for(&self, requested: Option<&str>, intent: &str) -> String {
        if let Some(skill) = requested.map(str::trim).filter(|s| !s.is_empty()) {
            return skill.to_ascii_lowercase();
        }
        let words = crate::monitor::text::words(&intent.replace('_', " "));
        self.config
            .intent_skills
            .iter()
            .find(|(keyword, _)| words.iter().any(|w| w.starts_with(keyword.as_str())))
            .map(|(_, skill)| skill.clone())
            .unwrap_or_default()
    }

    /// The estimated wait for a call joining the queue for `skill` now.
    pub fn estimate_wait(&self, skill: &str) -> Duration {
        let s = self.lock();
        let position = Self::waiting_for(&s, skill) + 1;
        Self::estimate(&s, &self.config, skill, position)
    }

    /// Every queue with calls in it: (skill, calls waiting, estimated wait of
    /// the next call in seconds, infinite when nobody with the skill is online).
    pub fn queues(&self) -> Vec<(String, usize, f64)> {
        let s = self.lock();
        let skills: std::collections::BTreeSet<&str> =
            s.queue.iter().map(|w| w.skill.as_str()).collect();
        skills
            .into_iter()
            .map(|skill| {
                let waiting = Self::waiting_for(&s, skill);
                let wait = Self::estimate(&s, &self.config, skill, waiting + 1);
                let secs = if wait == Duration::MAX {
                    f64::INFINITY
                } else {
                    wait.as_secs_f64()
                };
                (skill.to_string(), waiting, secs)
            })
            .collect()
    }

    /// Woken whenever an agent's presence changes (see [`Routing::team`]).
    pub fn team_changed(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.team_changed)
    }

    /// What an agent's console shows of the team: the calls waiting per skill
    /// (with the longest wait so far) and every agent's presence.
    pub fn team(&self) -> Team {
        let queues = {
            let s = self.lock();
            let now = Instant::now();
            let mut queues: BTreeMap<String, QueueView> = BTreeMap::new();
            for w in &s.queue {
                let q = queues.entry(w.skill.clone()).or_insert_with(|| QueueView {
                    skill: w.skill.clone(),
                    waiting: 0,
                    longest_wait_seconds: 0,
                });
                q.waiting += 1;
                let waited = now.saturating_duration_since(w.enqueued).as_secs();
                q.longest_wait_seconds = q.longest_wait_seconds.max(waited);
            }
            queues.into_values().collect()
        };
        let agents = self
            .agents()
            .into_iter()
            .map(|a| TeamMember {
                id: a.id,
                name: a.name,
                status: a.status,
            })
            .collect();
        Team { queues, agents }
    }

    /// Calls for `skill` waiting for an agent (those already ringing one are not).
    fn waiting_for(s: &State, skill: &str) -> usize {
        s.queue
            .iter()
            .filter(|w| w.skill == skill && w.ringing.is_none())
            .count()
    }

    /// The wait of the `position`th call for `skill`: zero while enough agents
    /// with the skill are free, else the mean recent handle time times the
    /// calls ahead per agent online with the skill.
    fn estimate(s: &State, config: &RoutingConfig, skill: &str, position: usize) -> Duration {
        let skilled = |a: &&Agent| a.console.is_some() && a.takes(skill);
        let (remote_online, remote_available) = cluster_side::remote_counts(s, skill);
        let online = s
            .agents
            .values()
            .filter(skilled)
            .filter(|a| a.status != AgentStatus::Offline)
            .count()
            + remote_online;
        let available = s
            .agents
            .values()
            .filter(skilled)
            .filter(|a| a.status == AgentStatus::Available)
            .count()
            + remote_available;
        if available >= position {
            return Duration::ZERO;
        }
        if online == 0 {
            return Duration::MAX;
        }
        let handle = if s.handle_times.is_empty() {
            config.default_handle
        } else {
            s.handle_times.iter().sum::<Duration>() / s.handle_times.len() as u32
        };
        handle.mul_f64((position - available) as f64 / online as f64)
    }

    /// Whether the team is open at `unix_seconds`.
    pub fn is_open(&self, unix_seconds: i64) -> bool {
        self.config.schedule.is_open(unix_seconds)
    }

    /// Whether the team is open now (reads the wall clock).
    pub fn is_open_now(&self) -> bool {
        self.is_open(crate::util::unix_seconds(std::time::SystemTime::now()) as i64)
    }

    /// Puts a call in the queue. Events about it arrive on `notify`.
    pub fn enqueue(
        &self,
        call_id: &str,
        skill: &str,
        urgency: Urgency,
        context: Arc<HandoffContext>,
        notify: mpsc::Sender<RoutingEvent>,
    ) -> QueueTicket {
        self.enqueue_excluding(call_id, skill, urgency, context, notify, HashSet::new())
    }

    /// Puts a call (back) in the queue, never offering it to the agents in `tried`
    /// (e.g. the one who dropped during the whisper).
    pub fn enqueue_excluding(
        &self,
        call_id: &str,
        skill: &str,
        urgency: Urgency,
        context: Arc<HandoffContext>,
        notify: mpsc::Sender<RoutingEvent>,
        tried: HashSet<String>,
    ) -> QueueTicket {
        self.enqueue_for(call_id, skill, urgency, context, notify, tried, None)
    }

    /// Puts a call (back) in the queue for one agent only (`only`: a transfer
    /// to a named agent; it waits for them like any queued call), never for
    /// the agents in `tried`.
    #[allow(clippy::too_many_arguments)]
    pub fn enqueue_for(
        &self,
        call_id: &str,
        skill: &str,
        urgency: Urgency,
        context: Arc<HandoffContext>,
        notify: mpsc::Sender<RoutingEvent>,
        tried: HashSet<String>,
        only: Option<String>,
    ) -> QueueTicket {
        let ticket = {
            let mut s = self.lock();
            let position = Self::waiting_for(&s, skill) + 1;
            // A transfer to a named agent waits for them, whatever the skill.
            let mut estimated_wait = match only.as_deref().map(|id| s.agents.get(id)) {
                None => Self::estimate(&s, &self.config, skill, position),
                Some(Some(a)) if a.console.is_some() && a.status == AgentStatus::Available => {
                    Duration::ZERO
                }
                Some(Some(a)) if a.console.is_some() && a.status != AgentStatus::Offline => {
                    self.config.default_handle
                }
                Some(_) => Duration::MAX,
            };
            // Overflow agents online: the call may reach them after the rule's wait.
            let overflow_online = s.agents.iter().any(|(id, a)| {
                a.console.is_some()
                    && a.status != AgentStatus::Offline
                    && is_overflow_target(id, a, self.config.overflow_targets(skill))
            });
            if only.is_none()
                && overflow_online
                && let Some(after) = self.config.overflow_after(skill, urgency)
            {
                estimated_wait = estimated_wait.min(after);
            }
            let ticket = QueueTicket {
                position,
                estimated_wait,
            };
            let closed = !self.is_open_now();
            // In a cluster, "nobody online" is the shared database's call (other
            // nodes' presence may be late, or NATS briefly down): queue, and let
            // a dispatch round say so.
            let nobody_online = estimated_wait == Duration::MAX && self.cluster.get().is_none();
            let too_long = estimated_wait != Duration::MAX && estimated_wait > self.config.max_wait;
            if closed || nobody_online || too_long {
                let reason = if closed {
                    "we are outside business hours".to_string()
                } else if let (Some(id), Duration::MAX) = (&only, estimated_wait) {
                    format!("{id} is not online")
                } else if estimated_wait == Duration::MAX && skill.is_empty() {
                    "no agents are online".to_string()
                } else if estimated_wait == Duration::MAX {
                    format!("no agents for {skill} are online")
                } else {
                    format!(
                        "the wait is about {} minutes",
                        estimated_wait.as_secs().div_ceil(60)
                    )
                };
                let _ = notify.try_send(RoutingEvent::NoAgent { reason });
                return ticket;
            }
            s.queue.push(Waiting {
                call_id: call_id.to_string(),
                skill: skill.to_string(),
                urgency,
                enqueued: Instant::now(),
                tried,
                context,
                notify,
                ringing: None,
                only,
            });
            if let (Some(cluster), Some(waiting)) = (self.cluster.get(), s.queue.last()) {
                let entry = cluster_side::queue_entry(waiting);
                let _ = cluster.send(ClusterOp::Enqueue(entry));
            }
            ticket
        };
        self.dispatch();
        ticket
    }

    /// Updates the context a queued call shows on the next screen-pop.
    pub fn update_context(&self, call_id: &str, context: Arc<HandoffContext>) {
        if let Some(cluster) = self.cluster.get() {
            let _ = cluster.send(ClusterOp::UpdateContext {
                call_id: call_id.to_string(),
                context: serde_json::to_string(context.as_ref()).unwrap_or_else(|_| "{}".into()),
            });
        }
        let mut s = self.lock();
        if let Some(w) = s.queue.iter_mut().find(|w| w.call_id == call_id) {
            w.context = context;
        }
    }

    /// The agent accepts the call offered to them; the call gets the audio link.
    pub fn accept(
        &self,
        agent_id: &str,
        call_id: &str,
        link: HumanLink,
    ) -> Result<(), RoutingError> {
        let mut s = self.lock();
        let agent = agent_mut(&mut s, agent_id)?;
        if agent.offered.as_deref() != Some(call_id) {
            return Err(RoutingError::NotOffered {
                agent: agent_id.to_string(),
                call: call_id.to_string(),
            });
        }
        agent.offered = None;
        agent.set(AgentStatus::Busy);
        agent.took(call_id);
        let waiting = take_waiting(&mut s, call_id)?;
        let _ = waiting.notify.try_send(RoutingEvent::Answered {
            agent: agent_id.to_string(),
            link,
        });
        Ok(())
    }

    /// The agent declines (or the ring timed out, or their console went):
    /// the offer is withdrawn from their console with the reason, and the
    /// next agent is tried. A missed ring leaves them not ready.
    pub fn decline(
        &self,
        agent_id: &str,
        call_id: &str,
        reason: WithdrawReason,
    ) -> Result<(), RoutingError> {
        if let Some(cluster) = self.cluster.get() {
            return self.decline_in_cluster(cluster, agent_id, call_id, reason);
        }
        {
            let mut s = self.lock();
            if let Some(agent) = s.agents.get_mut(agent_id) {
                release_offer(agent, call_id, reason);
            }
            let Some(w) = s.queue.iter_mut().find(|w| w.call_id == call_id) else {
                return Err(RoutingError::CallGone(call_id.to_string()));
            };
            if w.ringing.as_deref() == Some(agent_id) {
                w.ringing = None;
                w.tried.insert(agent_id.to_string());
                let _ = w.notify.try_send(RoutingEvent::Declined {
                    agent: agent_id.to_string(),
                    reason,
                });
            }
        }
        self.dispatch();
        Ok(())
    }

    /// The call left the queue (caller hung up, callback chosen): an agent
    /// it was ringing is told why.
    pub fn leave(&self, call_id: &str, reason: WithdrawReason) {
        let mut s = self.lock();
        let Some(i) = s.queue.iter().position(|w| w.call_id == call_id) else {
            return;
        };
        // Only a call queued here can be in the shared queue (every call's
        // session calls this when it ends: the others cost the database nothing).
        if let Some(cluster) = self.cluster.get() {
            let _ = cluster.send(ClusterOp::Leave {
                call_id: call_id.to_string(),
            });
        }
        let w = s.queue.remove(i);
        if let Some(agent_id) = w.ringing
            && let Some(agent) = s.agents.get_mut(&agent_id)
        {
            release_offer(agent, call_id, reason);
        }
    }

    /// The agent finished `call_id`, which lasted `handled` (feeds the wait
    /// estimate): a console agent goes to wrap-up, others to their choice.
    pub fn call_finished(&self, agent_id: &str, call_id: &str, handled: Duration) {
        {
            let mut s = self.lock();
            s.handle_times.push_back(handled);
            if s.handle_times.len() > 20 {
                s.handle_times.pop_front();
            }
            let wrapup = self.config.wrapup;
            if let Some(agent) = s.agents.get_mut(agent_id) {
                if agent.held.as_ref().is_some_and(|h| h.call_id == call_id) {
                    agent.held = None;
                }
                if agent.status == AgentStatus::Busy || agent.console.is_none() {
                    if agent.wraps_up && agent.taken.iter().any(|c| c == call_id) {
                        let until = (!wrapup.is_zero()).then(|| Instant::now() + wrapup);
                        agent.wrapup = Some((call_id.to_string(), until));
                    }
                    agent.settle();
                }
            }
        }
        self.announce(agent_id);
        self.dispatch();
    }

    /// Offers waiting calls (most urgent, then longest waiting) to the longest-idle
    /// available agent with the skill; calls nobody can take get `NoAgent`.
    fn dispatch(&self) {
        if let Some(cluster) = self.cluster.get() {
            // The cluster decides, in PostgreSQL, for every node at once.
            let _ = cluster.send(ClusterOp::Dispatch);
            return;
        }
        let mut s = self.lock();
        Self::end_wrapups(&mut s, Instant::now());
        let mut order: Vec<usize> = (0..s.queue.len()).collect();
        order.sort_by_key(|&i| {
            (
                std::cmp::Reverse(urgency_rank(s.queue[i].urgency)),
                s.queue[i].enqueued,
            )
        });
        let mut gone = Vec::new();
        let now = Instant::now();
        let unix = crate::util::unix_seconds(std::time::SystemTime::now()) as i64;
        for i in order {
            if s.queue[i].ringing.is_some() {
                continue;
            }
            let (skill, tried) = (s.queue[i].skill.clone(), s.queue[i].tried.clone());
            let only = s.queue[i].only.clone();
            let open = self.config.overflow_open(&s.queue[i], now).to_vec();
            let allowed = |id: &str| only.as_deref().is_none_or(|o| o == id);
            let candidate = s
                .agents
                .iter()
                .filter(|(id, a)| {
                    a.status == AgentStatus::Available
                        && a.console.is_some()
                        && a.on_duty(unix)
                        && !tried.contains(*id)
                        && allowed(id)
                        && (only.is_some() || a.takes(&skill) || is_overflow_target(id, a, &open))
                })
                .min_by_key(|(_, a)| a.idle_since)
                .map(|(id, a)| (id.clone(), only.is_none() && !a.takes(&skill)));
            match candidate {
                Some((agent_id, overflowed)) => {
                    if overflowed {
                        let _ = s.queue[i].notify.try_send(RoutingEvent::Overflowed {
                            agent: agent_id.clone(),
                        });
                    }
                    let (call_id, urgency, context, notify) = {
                        let w = &mut s.queue[i];
                        w.ringing = Some(agent_id.clone());
                        (
                            w.call_id.clone(),
                            w.urgency,
                            Arc::clone(&w.context),
                            w.notify.clone(),
                        )
                    };
                    let Some(agent) = s.agents.get_mut(&agent_id) else {
                        continue;
                    };
                    agent.set(AgentStatus::Ringing);
                    agent.offered = Some(call_id.clone());
                    let delivered = agent.console.as_ref().is_some_and(|c| {
                        c.try_send(HumanCommand::Offer {
                            call_id: call_id.clone(),
                            kind: OfferKind::Call,
                            urgency,
                            context,
                        })
                        .is_ok()
                    });
                    if delivered {
                        let _ = notify.try_send(RoutingEvent::Offered { agent: agent_id });
                    } else {
                        agent.set(AgentStatus::Offline);
                        agent.offered = None;
                        s.queue[i].ringing = None;
                        s.queue[i].tried.insert(agent_id);
                    }
                }
                None => {
                    // Nobody left who could ever take it: every online agent was tried.
                    let targets = self.config.overflow_targets(&skill);
                    let online_untried = s.agents.iter().any(|(id, a)| {
                        a.console.is_some()
                            && a.status != AgentStatus::Offline
                            && a.on_duty(unix)
                            && (only.is_some()
                                || a.takes(&skill)
                                || is_overflow_target(id, a, targets))
                            && allowed(id)
                            && !tried.contains(id)
                    });
                    if !online_untried {
                        gone.push(i);
                    }
                }
            }
        }
        gone.sort_unstable();
        for i in gone.into_iter().rev() {
            let w = s.queue.remove(i);
            let off_duty = s.agents.iter().any(|(id, a)| {
                a.console.is_some()
                    && a.status != AgentStatus::Offline
                    && !a.on_duty(unix)
                    && (w.only.as_deref().is_none_or(|o| o == id))
                    && (w.only.is_some() || a.takes(&w.skill))
            });
            let reason = if !w.tried.is_empty() {
                "no agent answered".to_string()
            } else if off_duty {
                "no one who takes these calls is on duty now".to_string()
            } else {
                "no agents are online".to_string()
            };
            let _ = w.notify.try_send(RoutingEvent::NoAgent { reason });
        }
    }
}

/// An offer to `agent` is over for `reason`: their console is told, and they
/// are free again (not ready after a missed ring).
fn release_offer(agent: &mut Agent, call_id: &str, reason: WithdrawReason) {
    if agent.offered.as_deref() != Some(call_id) {
        return;
    }
    agent.offered = None;
    agent.withdraw(call_id, reason.as_str());
    if agent.status == AgentStatus::Ringing {
        // A console agent who let it ring out is not ready until they say
        // so (a SIP phone cannot say so: it stays available).
        if reason == WithdrawReason::RingTimeout && agent.wraps_up {
            agent.chosen = AgentStatus::NotReady;
        }
        agent.settle();
    }
}

/// Takes a call out of the queue to hand it to an agent.
fn take_waiting(s: &mut State, call_id: &str) -> Result<Waiting, RoutingError> {
    let i = s
        .queue
        .iter()
        .position(|w| w.call_id == call_id)
        .ok_or_else(|| RoutingError::CallGone(call_id.to_string()))?;
    Ok(s.queue.remove(i))
}

fn agent_mut<'a>(s: &'a mut State, id: &str) -> Result<&'a mut Agent, RoutingError> {
    s.agents
        .get_mut(id)
        .ok_or_else(|| RoutingError::UnknownAgent(id.to_string()))
}

/// The hex SHA-256 of a console token (what is kept in memory and in SQLite).
pub fn token_sha256(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// Whether an agent with `skills` takes calls for `skill` (agents without
/// skills take all; calls without one go to anyone).
fn takes_skill(skills: &[String], skill: &str) -> bool {
    skill.is_empty() || skills.is_empty() || skills.iter().any(|k| k == skill)
}

fn urgency_rank(u: Urgency) -> u8 {
    match u {
        Urgency::Standard => 0,
        Urgency::Elevated => 1,
        Urgency::Critical => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routing() -> Routing {
        Routing::new(RoutingConfig {
            default_handle: Duration::from_secs(180),
            max_wait: Duration::from_secs(600),
            schedule: crate::domain::hours::Schedule::always(),
            intent_skills: [("billing".to_string(), "billing".to_string())].into(),
            overflow: Vec::new(),
            wrapup: Duration::from_secs(60),
        })
    }

    /// What a console was told, presence changes left out.
    fn told(rx: &mut mpsc::Receiver<HumanCommand>) -> Option<HumanCommand> {
        loop {
            match rx.try_recv() {
                Ok(HumanCommand::Presence(_)) => continue,
                Ok(other) => return Some(other),
                Err(_) => return None,
            }
        }
    }

    /// The presence changes a console was told, in order (other news dropped).
    fn presences(rx: &mut mpsc::Receiver<HumanCommand>) -> Vec<AgentStatus> {
        let mut all = Vec::new();
        while let Ok(cmd) = rx.try_recv() {
            if let HumanCommand::Presence(p) = cmd {
                all.push(p.status);
            }
        }
        all
    }

    fn status_of(r: &Routing, id: &str) -> AgentStatus {
        r.agents()
            .iter()
            .find(|a| a.id == id)
            .map(|a| a.status)
            .unwrap_or(AgentStatus::Offline)
    }

    fn link() -> (
        HumanLink,
        mpsc::Receiver<LegCommand>,
        mpsc::Sender<LegEvent>,
    ) {
        let (ctx, crx) = mpsc::channel(8);
        let (etx, erx) = mpsc::channel(8);
        (
            HumanLink {
                commands: ctx,
                events: erx,
            },
            crx,
            etx,
        )
    }

    /// Routing where billing calls overflow to `to` after `after`.
    fn overflowing(after: Duration, to: &[&str]) -> Routing {
        let mut r = routing();
        r.config.overflow = vec![OverflowRule {
            skill: "billing".into(),
            after,
            to: to.iter().map(|t| t.to_string()).collect(),
        }];
        r
    }

    /// Everything `rx` got so far, as short names ("overflowed:gen", "offered:gen", "no_agent").
    fn news(rx: &mut mpsc::Receiver<RoutingEvent>) -> Vec<String> {
        let mut all = Vec::new();
        while let Ok(e) = rx.try_recv() {
            all.push(match e {
                RoutingEvent::Overflowed { agent } => format!("overflowed:{agent}"),
                RoutingEvent::Offered { agent } => format!("offered:{agent}"),
                RoutingEvent::NoAgent { .. } => "no_agent".into(),
                RoutingEvent::Answered { agent, .. } => format!("answered:{agent}"),
                RoutingEvent::Declined { agent, .. } => format!("declined:{agent}"),
            });
        }
        all
    }

    #[tokio::test]
    async fn a_call_waits_for_its_skill_then_overflows_and_a_critical_one_at_once() {
        let r = overflowing(Duration::from_millis(150), &["general"]);
        r.register("gen", "Gen", "t", vec!["general".into()]);
        let (gen_tx, mut gen_rx) = mpsc::channel(8);
        r.console_connected("gen", gen_tx).expect("console");
        // Nobody takes billing, but overflow can: the call waits (no callback).
        let (tx, mut rx) = mpsc::channel(8);
        let ticket = r.enqueue("C1", "billing", Urgency::Standard, Arc::default(), tx);
        assert_eq!(ticket.estimated_wait, Duration::from_millis(150));
        r.tick();
        assert!(news(&mut rx).is_empty(), "not before its wait");
        assert!(told(&mut gen_rx).is_none());
        tokio::time::sleep(Duration::from_millis(200)).await;
        r.tick();
        assert_eq!(news(&mut rx), ["overflowed:gen", "offered:gen"]);
        assert!(
            matches!(told(&mut gen_rx), Some(HumanCommand::Offer { call_id, .. }) if call_id == "C1")
        );
        r.leave("C1", WithdrawReason::CallerHangup);
        // A critical call overflows at once.
        let (tx, mut rx) = mpsc::channel(8);
        r.enqueue("C2", "billing", Urgency::Critical, Arc::default(), tx);
        assert_eq!(news(&mut rx), ["overflowed:gen", "offered:gen"]);
    }

    #[tokio::test]
    async fn overflow_names_destinations_by_id_and_never_widens_a_named_transfer() {
        let r = overflowing(Duration::ZERO, &["tier2"]);
        // A destination's second channel, and an agent whose id merely starts alike.
        r.register("tier2-2", "Tier 2", "t", vec!["desk".into()]);
        r.register("tier2x", "Other", "t", vec!["desk".into()]);
        let (a_tx, _a_rx) = mpsc::channel(8);
        let (b_tx, _b_rx) = mpsc::channel(8);
        r.console_connected("tier2x", b_tx).expect("console");
        r.console_connected("tier2-2", a_tx).expect("console");
        let (tx, mut rx) = mpsc::channel(8);
        r.enqueue("C1", "billing", Urgency::Standard, Arc::default(), tx);
        assert_eq!(news(&mut rx), ["overflowed:tier2-2", "offered:tier2-2"]);
        // A transfer to a named agent rings them only, never an overflow target.
        r.register("named", "Named", "t", vec!["other".into()]);
        let (n_tx, _n_rx) = mpsc::channel(8);
        r.console_connected("named", n_tx).expect("console");
        let (tx, mut transfer) = mpsc::channel(8);
        r.enqueue_for(
            "C3",
            "billing",
            Urgency::Critical,
            Arc::default(),
            tx,
            HashSet::new(),
            Some("named".into()),
        );
        assert_eq!(news(&mut transfer), ["offered:named"]);
        r.leave("C1", WithdrawReason::CallerHangup);
        // Without overflow the same call has nobody: a callback at once.
        let plain = routing();
        plain.register("gen", "Gen", "t", vec!["general".into()]);
        let (g_tx, _g_rx) = mpsc::channel(8);
        plain.console_connected("gen", g_tx).expect("console");
        let (tx, mut rx) = mpsc::channel(8);
        plain.enqueue("C2", "billing", Urgency::Standard, Arc::default(), tx);
        assert_eq!(news(&mut rx), ["no_agent"]);
    }

    #[tokio::test]
    async fn the_longest_idle_agent_gets_the_offer_then_the_call_on_accept() {
        let r = routing();
        r.register("ann", "Ann", "t-ann", vec![]);
        r.register("bob", "Bob", "t-bob", vec![]);
        let (ann_tx, mut ann_rx) = mpsc::channel(8);
        let (bob_tx, mut bob_rx) = mpsc::channel(8);
        r.console_connected("ann", ann_tx).unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        r.console_connected("bob", bob_tx).unwrap();
        assert_eq!(r.authenticate("ann", "t-ann"), Ok(()));
        assert!(r.authenticate("ann", "nope").is_err());
        assert_eq!(r.estimate_wait(""), Duration::ZERO);
        let (tx, mut rx) = mpsc::channel(8);
        r.enqueue("CA1", "", Urgency::Standard, Arc::default(), tx);
        assert!(
            matches!(told(&mut ann_rx), Some(HumanCommand::Offer { .. })),
            "ann idled longest"
        );
        assert!(told(&mut bob_rx).is_none());
        assert!(matches!(rx.try_recv(), Ok(RoutingEvent::Offered { agent }) if agent == "ann"));
        // Bob cannot take a call offered to Ann.
        assert!(matches!(
            r.accept("bob", "CA1", link().0),
            Err(RoutingError::NotOffered { .. })
        ));
        r.accept("ann", "CA1", link().0).unwrap();
        assert!(
            matches!(rx.try_recv(), Ok(RoutingEvent::Answered { agent, .. }) if agent == "ann")
        );
        // A second accept of the same offer fails.
        assert!(r.accept("ann", "CA1", link().0).is_err());
        assert_eq!(
            r.agents().iter().find(|a| a.id == "ann").unwrap().status,
            AgentStatus::Busy
        );
    }

    #[tokio::test]
    async fn declines_go_to_the_next_agent_then_no_agent() {
        let r = routing();
        for id in ["ann", "bob"] {
            r.register(id, id, "t", vec![]);
            let (tx, rx) = mpsc::channel(8);
            std::mem::forget(rx);
            r.console_connected(id, tx).unwrap();
        }
        let (tx, mut rx) = mpsc::channel(8);
        r.enqueue("CA1", "", Urgency::Standard, Arc::default(), tx);
        let first = match rx.try_recv() {
            Ok(RoutingEvent::Offered { agent }) => agent,
            other => panic!("{other:?}"),
        };
        r.decline(&first, "CA1", WithdrawReason::Declined).unwrap();
        assert!(matches!(rx.try_recv(), Ok(RoutingEvent::Declined { .. })));
        let second = match rx.try_recv() {
            Ok(RoutingEvent::Offered { agent }) => agent,
            other => panic!("{other:?}"),
        };
        assert_ne!(first, second);
        r.decline(&second, "CA1", WithdrawReason::Declined).unwrap();
        assert!(matches!(rx.try_recv(), Ok(RoutingEvent::Declined { .. })));
        assert!(
            matches!(rx.try_recv(), Ok(RoutingEvent::NoAgent { reason }) if reason == "no agent answered")
        );
    }

    #[tokio::test]
    async fn outside_business_hours_the_call_goes_to_callback() {
        let mut closed = crate::domain::hours::Schedule::always();
        closed.days = [false; 7];
        let r = Routing::new(RoutingConfig {
            default_handle: Duration::from_secs(180),
            max_wait: Duration::from_secs(600),
            schedule: closed,
            intent_skills: Default::default(),
            overflow: Vec::new(),
            wrapup: Duration::ZERO,
        });
        r.register("ann", "Ann", "t", vec![]);
        let (tx, _keep) = mpsc::channel(8);
        r.console_connected("ann", tx).unwrap();
        let (tx, mut rx) = mpsc::channel(8);
        r.enqueue("CA1", "", Urgency::Standard, Arc::default(), tx);
        assert!(
            matches!(rx.try_recv(), Ok(RoutingEvent::NoAgent { reason }) if reason.contains("business hours"))
        );
    }

    #[tokio::test]
    async fn a_destination_outside_its_own_hours_is_offered_nothing_and_alone_sends_the_call_to_the_fallback()
     {
        let mut closed = crate::domain::hours::Schedule::always();
        closed.days = [false; 7];
        let r = routing();
        r.register("day-desk", "Day desk", "t", vec![]);
        r.register("night-desk", "Night desk", "t", vec![]);
        r.set_hours("day-desk", Some(closed.clone()));
        r.set_hours("night-desk", Some(crate::domain::hours::Schedule::always()));
        let (day_tx, mut day_rx) = mpsc::channel(8);
        r.phone_connected("day-desk", day_tx).unwrap();
        // The day desk has been idle longest: with its hours open it would ring first.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let (night_tx, mut night_rx) = mpsc::channel(8);
        r.phone_connected("night-desk", night_tx).unwrap();
        let (tx, mut rx) = mpsc::channel(8);
        r.enqueue("CA1", "", Urgency::Standard, Arc::default(), tx);
        assert_eq!(news(&mut rx), vec!["offered:night-desk"]);
        assert!(told(&mut day_rx).is_none(), "a closed desk is never rung");
        assert!(matches!(
            told(&mut night_rx),
            Some(HumanCommand::Offer { .. })
        ));

        // With only the closed desk left, the call does not wait for it to open.
        r.decline("night-desk", "CA1", WithdrawReason::Declined)
            .unwrap();
        assert_eq!(news(&mut rx), vec!["declined:night-desk", "no_agent"]);
        let r2 = routing();
        r2.register("day-desk", "Day desk", "t", vec![]);
        r2.set_hours("day-desk", Some(closed));
        let (day_tx, _keep) = mpsc::channel(8);
        r2.phone_connected("day-desk", day_tx).unwrap();
        let (tx, mut rx) = mpsc::channel(8);
        r2.enqueue("CA2", "", Urgency::Standard, Arc::default(), tx);
        assert!(
            matches!(rx.try_recv(), Ok(RoutingEvent::NoAgent { reason }) if reason.contains("on duty")),
            "told why"
        );
        // Back within its hours, it is rung again.
        r2.set_hours("day-desk", None);
        let (tx, mut rx) = mpsc::channel(8);
        r2.enqueue("CA3", "", Urgency::Standard, Arc::default(), tx);
        assert_eq!(news(&mut rx), vec!["offered:day-desk"]);
    }

    #[tokio::test]
    async fn with_nobody_online_the_call_goes_to_callback_at_once() {
        let r = routing();
        r.register("ann", "Ann", "t", vec![]);
        let (tx, mut rx) = mpsc::channel(8);
        r.enqueue("CA1", "", Urgency::Standard, Arc::default(), tx);
        assert!(
            matches!(rx.try_recv(), Ok(RoutingEvent::NoAgent { reason }) if reason == "no agents are online")
        );
    }

    #[tokio::test]
    async fn a_busy_pool_queues_and_estimates_the_wait() {
        let r = routing();
        r.register("ann", "Ann", "t", vec![]);
        let (tx, _keep) = mpsc::channel(8);
        r.console_connected("ann", tx).unwrap();
        r.set_status("ann", AgentStatus::Busy).unwrap();
        assert_eq!(r.estimate_wait(""), Duration::from_secs(180));
        let (tx, mut rx) = mpsc::channel(8);
        let ticket = r.enqueue("CA1", "", Urgency::Standard, Arc::default(), tx);
        assert_eq!(ticket.position, 1);
        assert!(rx.try_recv().is_err(), "waiting, not refused");
        r.call_finished("ann", "CA0", Duration::from_secs(60));
        assert!(matches!(rx.try_recv(), Ok(RoutingEvent::Offered { .. })));
    }

    #[tokio::test]
    async fn each_skill_has_its_own_queue_and_wait() {
        let r = routing();
        r.register("ann", "Ann", "t", vec!["billing".into()]);
        r.register("tom", "Tom", "t", vec!["technical".into()]);
        let (ann_tx, mut ann_rx) = mpsc::channel(8);
        let (tom_tx, mut tom_rx) = mpsc::channel(8);
        r.console_connected("ann", ann_tx).unwrap();
        r.console_connected("tom", tom_tx).unwrap();
        assert_eq!(r.skill_for(None, "billing_dispute"), "billing");
        assert_eq!(r.skill_for(Some(" Technical "), "billing"), "technical");
        assert_eq!(r.skill_for(None, "order_status"), "");
        // A billing call goes to Ann, never to Tom.
        let (tx1, mut rx1) = mpsc::channel(8);
        r.enqueue("CA1", "billing", Urgency::Standard, Arc::default(), tx1);
        assert!(matches!(rx1.try_recv(), Ok(RoutingEvent::Offered { agent }) if agent == "ann"));
        assert!(matches!(
            told(&mut ann_rx),
            Some(HumanCommand::Offer { .. })
        ));
        assert!(told(&mut tom_rx).is_none());
        // Ann is ringing: the next billing caller waits, a technical one does not.
        assert_eq!(r.estimate_wait("billing"), Duration::from_secs(180));
        assert_eq!(r.estimate_wait("technical"), Duration::ZERO);
        let (tx2, mut rx2) = mpsc::channel(8);
        let ticket = r.enqueue("CA2", "billing", Urgency::Standard, Arc::default(), tx2);
        assert_eq!(
            ticket.position, 1,
            "first in line: the call ringing Ann is not waiting"
        );
        assert!(
            rx2.try_recv().is_err(),
            "waits for Ann, Tom is not offered it"
        );
        assert!(told(&mut tom_rx).is_none());
        // Nobody online with a skill: a callback at once, saying why.
        let (tx3, mut rx3) = mpsc::channel(8);
        r.enqueue("CA3", "spanish", Urgency::Standard, Arc::default(), tx3);
        assert!(matches!(rx3.try_recv(), Ok(RoutingEvent::NoAgent { .. })));
    }

    #[tokio::test]
    async fn a_console_signs_in_to_its_true_presence_and_hears_every_change() {
        let r = routing();
        r.register("ann", "Ann", "t", vec![]);
        let (tx, mut rx) = mpsc::channel(16);
        let arrival = r.console_connected("ann", tx).unwrap();
        assert_eq!(arrival.presence.status, AgentStatus::Available);
        assert!(presences(&mut rx).is_empty(), "said once, at sign-in");
        r.set_status("ann", AgentStatus::Break).unwrap();
        assert_eq!(presences(&mut rx), vec![AgentStatus::Break]);
        // On a break: not offered calls.
        let (ctx, mut crx) = mpsc::channel(8);
        r.enqueue("CA1", "", Urgency::Standard, Arc::default(), ctx);
        assert!(matches!(
            crx.try_recv(),
            Ok(RoutingEvent::NoAgent { .. }) | Err(_)
        ));
        assert!(told(&mut rx).is_none());
        // A console that comes back after choosing a break is still on it.
        drop(rx);
        let (tx, _rx) = mpsc::channel(16);
        let arrival = r.console_connected("ann", tx).unwrap();
        assert_eq!(arrival.presence.status, AgentStatus::Break);
    }

    #[tokio::test]
    async fn a_missed_ring_withdraws_the_offer_and_leaves_the_agent_not_ready() {
        let r = routing();
        r.register("ann", "Ann", "t", vec![]);
        let (tx, mut rx) = mpsc::channel(16);
        r.console_connected("ann", tx).unwrap();
        let (ctx, mut crx) = mpsc::channel(8);
        r.enqueue("CA1", "", Urgency::Standard, Arc::default(), ctx);
        assert!(matches!(crx.try_recv(), Ok(RoutingEvent::Offered { .. })));
        assert_eq!(presences(&mut rx), vec![AgentStatus::Ringing]);
        r.decline("ann", "CA1", WithdrawReason::RingTimeout)
            .unwrap();
        assert!(matches!(
            told(&mut rx),
            Some(HumanCommand::OfferWithdrawn { call_id, reason }) if call_id == "CA1" && reason == "ring_timeout"
        ));
        assert_eq!(status_of(&r, "ann"), AgentStatus::NotReady);
        // Not offered the next call until they choose to be available.
        let (ctx2, mut crx2) = mpsc::channel(8);
        r.enqueue("CA2", "", Urgency::Standard, Arc::default(), ctx2);
        assert!(!matches!(crx2.try_recv(), Ok(RoutingEvent::Offered { .. })));
        r.set_status("ann", AgentStatus::Available).unwrap();
        assert!(
            matches!(crx2.try_recv(), Ok(RoutingEvent::Offered { agent }) if agent == "ann"),
            "back to available: the waiting call rings"
        );
        assert_eq!(status_of(&r, "ann"), AgentStatus::Ringing);
    }

    #[tokio::test]
    async fn a_caller_leaving_withdraws_the_offer_with_the_reason() {
        let r = routing();
        r.register("ann", "Ann", "t", vec![]);
        let (tx, mut rx) = mpsc::channel(16);
        r.console_connected("ann", tx).unwrap();
        let (ctx, _crx) = mpsc::channel(8);
        r.enqueue("CA1", "", Urgency::Standard, Arc::default(), ctx);
        assert!(matches!(told(&mut rx), Some(HumanCommand::Offer { .. })));
        r.leave("CA1", WithdrawReason::CallerHangup);
        assert!(matches!(
            told(&mut rx),
            Some(HumanCommand::OfferWithdrawn { reason, .. }) if reason == "caller_hangup"
        ));
        assert_eq!(status_of(&r, "ann"), AgentStatus::Available);
    }

    #[tokio::test]
    async fn wrap_up_takes_no_offers_until_saved() {
        let r = routing();
        r.register("ann", "Ann", "t", vec![]);
        let (tx, mut rx) = mpsc::channel(16);
        r.console_connected("ann", tx).unwrap();
        let (ctx, mut crx) = mpsc::channel(8);
        r.enqueue("CA1", "", Urgency::Standard, Arc::default(), ctx);
        assert!(matches!(crx.try_recv(), Ok(RoutingEvent::Offered { .. })));
        r.accept("ann", "CA1", link().0).unwrap();
        assert!(r.took("ann", "CA1"));
        r.call_finished("ann", "CA1", Duration::from_secs(30));
        assert_eq!(status_of(&r, "ann"), AgentStatus::WrapUp);
        let _ = presences(&mut rx);
        // A new caller waits while Ann wraps up.
        let (ctx2, mut crx2) = mpsc::channel(8);
        r.enqueue("CA2", "", Urgency::Standard, Arc::default(), ctx2);
        assert!(crx2.try_recv().is_err(), "queued, not offered");
        assert!(told(&mut rx).is_none(), "no offer during wrap-up");
        // A wrap-up for another call does not end this one.
        r.wrapup_done("ann", "CA9");
        assert_eq!(status_of(&r, "ann"), AgentStatus::WrapUp);
        r.wrapup_done("ann", "CA1");
        assert!(matches!(crx2.try_recv(), Ok(RoutingEvent::Offered { .. })));
        assert!(
            matches!(told(&mut rx), Some(HumanCommand::Offer { call_id, .. }) if call_id == "CA2")
        );
    }

    #[tokio::test]
    async fn wrap_up_ends_by_itself_when_its_time_is_up() {
        let r = Routing::new(RoutingConfig {
            wrapup: Duration::from_millis(30),
            ..routing().config
        });
        r.register("ann", "Ann", "t", vec![]);
        let (tx, mut rx) = mpsc::channel(16);
        r.console_connected("ann", tx).unwrap();
        let (ctx, _crx) = mpsc::channel(8);
        r.enqueue("CA1", "", Urgency::Standard, Arc::default(), ctx);
        r.accept("ann", "CA1", link().0).unwrap();
        r.call_finished("ann", "CA1", Duration::from_secs(30));
        let _ = presences(&mut rx);
        r.tick();
        assert_eq!(status_of(&r, "ann"), AgentStatus::WrapUp, "not yet");
        tokio::time::sleep(Duration::from_millis(40)).await;
        r.tick();
        assert_eq!(status_of(&r, "ann"), AgentStatus::Available);
        assert_eq!(presences(&mut rx), vec![AgentStatus::Available]);
    }

    #[tokio::test]
    async fn a_console_that_drops_mid_call_finds_its_call_held_when_it_returns() {
        let r = routing();
        r.register("ann", "Ann", "t", vec![]);
        let (tx, _rx) = mpsc::channel(16);
        r.console_connected("ann", tx.clone()).unwrap();
        let (ctx, _crx) = mpsc::channel(8);
        r.enqueue("CA1", "", Urgency::Standard, Arc::default(), ctx);
        r.accept("ann", "CA1", link().0).unwrap();
        let (reclaim, _keep) = tokio::sync::oneshot::channel();
        let held = HeldCall {
            call_id: "CA1".into(),
            context: None,
            merged: true,
            on_hold: false,
            reclaim,
        };
        r.console_gone("ann", &tx, Some(held));
        assert_eq!(status_of(&r, "ann"), AgentStatus::Busy, "still on the call");
        // Nobody else's call is offered to the returning console meanwhile.
        let (tx2, _rx2) = mpsc::channel(16);
        let arrival = r.console_connected("ann", tx2).unwrap();
        assert_eq!(arrival.presence.status, AgentStatus::Busy);
        assert_eq!(arrival.held.map(|h| h.call_id), Some("CA1".to_string()));
    }
}
