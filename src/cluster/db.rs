//! The cluster's shared routing state in PostgreSQL: node leases, agent
//! presence, the queue of escalated calls, offers and accepts.
//!
//! Every decision that two nodes could race for is one transaction over row
//! locks: a dispatch round claims a waiting call and an available agent with
//! `FOR UPDATE SKIP LOCKED` (concurrent rounds on other nodes skip rows this one
//! holds), and an accept is a conditional `UPDATE … WHERE offered_call = $call`
//! that only one transaction can win. No timer lives in one process: ring
//! deadlines and node heartbeats are timestamps any live node may expire.

use crate::domain::Urgency;
use std::time::Duration;
use thiserror::Error;
use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls};

/// Cluster database errors.
#[derive(Debug, Error)]
pub enum ClusterDbError {
    /// PostgreSQL refused or dropped the connection.
    #[error("cluster database {url}: {source}")]
    Connect {
        /// The URL, password removed.
        url: String,
        /// Why.
        source: tokio_postgres::Error,
    },
    /// A statement failed.
    #[error("cluster database query failed: {0}")]
    Query(#[from] tokio_postgres::Error),
    /// The offer is not (or no longer) this agent's.
    #[error(
        "call {call} is not offered to agent {agent:?} (already taken, withdrawn or never offered)"
    )]
    NotOffered {
        /// The agent.
        agent: String,
        /// The call (or callback).
        call: String,
    },
}

pub use crate::domain::OfferKind;

/// One pairing made by a dispatch round.
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    /// Call or callback.
    pub kind: OfferKind,
    /// The call id.
    pub call_id: String,
    /// The node holding the call (empty for callbacks).
    pub owner_node: String,
    /// The agent offered it.
    pub agent_id: String,
    /// The node the agent's console is on.
    pub agent_node: String,
    /// Urgency.
    pub urgency: Urgency,
    /// The handoff context, JSON.
    pub context: String,
}

/// A call nobody can take: routing tells its node.
#[derive(Debug, Clone, PartialEq)]
pub struct Unroutable {
    /// The call.
    pub call_id: String,
    /// The node holding it.
    pub owner_node: String,
    /// Why, for the caller and the timeline.
    pub reason: String,
}

/// The result of a dispatch round.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Round {
    /// New offers.
    pub matches: Vec<Match>,
    /// Calls taken out of the queue because nobody online could take them.
    pub unroutable: Vec<Unroutable>,
}

/// Who won an accept.
#[derive(Debug, Clone, PartialEq)]
pub enum Accepted {
    /// A live call: its audio is on `owner_node`, reachable at `owner_url`.
    Call {
        /// The node holding the call.
        owner_node: String,
        /// That node's advertised base URL.
        owner_url: String,
    },
    /// A callback, now assigned to the agent.
    Callback {
        /// The number to call back.
        number: String,
    },
}

/// An offer undone (declined, ring lease expired, agent's node died).
#[derive(Debug, Clone, PartialEq)]
pub struct Released {
    /// The call.
    pub call_id: String,
    /// The agent it was offered to.
    pub agent_id: String,
    /// The call's node (its session is told), if it is a live call.
    pub owner_node: Option<String>,
    /// The agent's node (its console is told), if the agent is still present.
    pub agent_node: Option<String>,
}

/// What a node's death left behind, handled by the node that noticed.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Takeover {
    /// The dead node.
    pub node: String,
    /// Its queued callers, now saved as callbacks.
    pub callbacks_saved: Vec<String>,
    /// Offers to its agents, released.
    pub released: Vec<Released>,
}

pub use crate::routing::QueueEntry;

fn urgency_rank(u: Urgency) -> i16 {
    match u {
        Urgency::Standard => 0,
        Urgency::Elevated => 1,
        Urgency::Critical => 2,
    }
}

fn urgency_of(rank: i16) -> Urgency {
    match rank {
        2 => Urgency::Critical,
        1 => Urgency::Elevated,
        _ => Urgency::Standard,
    }
}

/// The prefix marking a callback in `wl_presence.offered_call`.
const CALLBACK_PREFIX: &str = "callback:";

/// Most pairings considered per dispatch round.
const ROUND_LIMIT: i64 = 50;

/// The shared routing state of one node's view (one connection, reconnected when lost).
pub struct ClusterDb {
    url: String,
    client: Mutex<Client>,
    /// This node.
    pub node_id: String,
    /// A node silent this long is dead.
    pub lease: Duration,
    /// An offer not answered this long (plus the owner's own ring timer) is released.
    pub ring_lease: Duration,
}

impl std::fmt::Debug for ClusterDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClusterDb({})", self.node_id)
    }
}

async fn connect(url: &str) -> Result<Client, ClusterDbError> {
    let failed = |source| ClusterDbError::Connect {
        url: crate::util::redact_url(url),
        source,
    };
    let mut config: tokio_postgres::Config = url.parse().map_err(failed)?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(5));
    }
    let (client, connection) = config.connect(NoTls).await.map_err(failed)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "cluster database connection ended");
        }
    });
    Ok(client)
}

impl ClusterDb {
    /// Connects. The tables come from the store's migrations
    /// ([`crate::store::postgres::MIGRATIONS`]), which the store runs at start.
    pub async fn connect(
        url: &str,
        node_id: &str,
        lease: Duration,
        ring_lease: Duration,
    ) -> Result<ClusterDb, ClusterDbError> {
        Ok(ClusterDb {
            url: url.to_string(),
            client: Mutex::new(connect(url).await?),
            node_id: node_id.to_string(),
            lease,
            ring_lease,
        })
    }

    async fn client(&self) -> Result<tokio::sync::MutexGuard<'_, Client>, ClusterDbError> {
        let mut c = self.client.lock().await;
        if c.is_closed() {
            *c = connect(&self.url).await?;
        }
        Ok(c)
    }

    fn lease_secs(&self) -> f64 {
        self.lease.as_secs_f64()
    }

    /// Renews this node's lease (and says where its HTTP listener is).
    /// True when the lease had to be created: the node is new, or other nodes
    /// had declared it dead (it was cut off longer than the lease).
    pub async fn heartbeat(&self, advertise_url: &str) -> Result<bool, ClusterDbError> {
        let row = self
            .client()
            .await?
            .query_one(
                "INSERT INTO wl_nodes (node_id, media_url, heartbeat_at) VALUES ($1, $2, now())
                 ON CONFLICT (node_id) DO UPDATE SET media_url = excluded.media_url, heartbeat_at = now()
                 RETURNING (xmax = 0)",
                &[&self.node_id, &advertise_url],
            )
            .await?;
        Ok(row.get(0))
    }

    /// After being declared dead while still running: the calls still queued
    /// here go back into the shared queue, and the callbacks the takeover
    /// saved for them (they never hung up) are withdrawn.
    pub async fn rejoin(&self, queued: &[QueueEntry]) -> Result<(), ClusterDbError> {
        for e in queued {
            self.enqueue(e).await?;
            self.client()
                .await?
                .execute(
                    "DELETE FROM callbacks WHERE call_id = $1 AND status = 'pending' AND offered_to IS NULL",
                    &[&e.call_id],
                )
                .await?;
        }
        Ok(())
    }

    /// Publishes one of this node's agents' availability. An agent with an
    /// offer outstanding stays `ringing` until the offer is accepted or
    /// released, and only a dispatch round makes an agent `ringing`. `offline`
    /// only counts from the node the agent is on (a console that moved to
    /// another node is not taken offline by the old one).
    pub async fn set_presence(
        &self,
        agent_id: &str,
        status: &str,
        skills: &[String],
        idle_for: Duration,
    ) -> Result<(), ClusterDbError> {
        if status == "offline" {
            self.client()
                .await?
                .execute(
                    "UPDATE wl_presence SET status = 'offline' WHERE agent_id = $1 AND node_id = $2",
                    &[&agent_id, &self.node_id],
                )
                .await?;
            return Ok(());
        }
        let status = if status == "ringing" {
            "available"
        } else {
            status
        };
        self.client()
            .await?
            .execute(
                "INSERT INTO wl_presence (agent_id, node_id, status, skills, idle_since)
                 VALUES ($1, $2, $3, $4, now() - make_interval(secs => $5))
                 ON CONFLICT (agent_id) DO UPDATE SET node_id = excluded.node_id,
                    skills = excluded.skills,
                    status = CASE WHEN wl_presence.offered_call IS NOT NULL
                                  THEN wl_presence.status ELSE excluded.status END,
                    idle_since = CASE WHEN wl_presence.status = excluded.status
                                  THEN wl_presence.idle_since ELSE excluded.idle_since END",
                &[
                    &agent_id,
                    &self.node_id,
                    &status,
                    &skills,
                    &idle_for.as_secs_f64(),
                ],
            )
            .await?;
        Ok(())
    }

    /// Puts a call in the shared queue (again, after a failed hand-over). A
    /// call already there keeps its place and any offer out for it (a retried
    /// or repeated join must not undo a ring in progress).
    pub async fn enqueue(&self, e: &QueueEntry) -> Result<(), ClusterDbError> {
        self.client()
            .await?
            .execute(
                "INSERT INTO wl_queue (call_id, node_id, skill, urgency, enqueued_at, tried, context, callback_number, only_agent)
                 VALUES ($1, $2, $3, $4, now(), $5, $6, $7, $8)
                 ON CONFLICT (call_id) DO UPDATE SET skill = excluded.skill, urgency = excluded.urgency,
                    context = excluded.context, only_agent = excluded.only_agent,
                    tried = ARRAY(SELECT DISTINCT unnest(wl_queue.tried || excluded.tried))",
                &[
                    &e.call_id,
                    &self.node_id,
                    &e.skill,
                    &urgency_rank(e.urgency),
                    &e.tried,
                    &e.context,
                    &e.callback_number,
                    &e.only,
                ],
            )
            .await?;
        Ok(())
    }

    /// Replaces the context the next screen-pop shows.
    pub async fn update_context(&self, call_id: &str, context: &str) -> Result<(), ClusterDbError> {
        self.client()
            .await?
            .execute(
                "UPDATE wl_queue SET context = $2 WHERE call_id = $1",
                &[&call_id, &context],
            )
            .await?;
        Ok(())
    }

    /// Pairs waiting calls (most urgent, then oldest), then pending callbacks,
    /// with the longest-idle available agent of a live node who has the skill
    /// and has not tried it. Safe to run on every node at once.
    pub async fn dispatch_round(&self) -> Result<Round, ClusterDbError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let mut round = Round::default();
        let lease = self.lease_secs();
        let ring = self.ring_lease.as_secs_f64();
        let waiting = tx
            .query(
                "SELECT call_id, node_id, skill, urgency, tried, context, only_agent FROM wl_queue
                 WHERE ringing_agent IS NULL ORDER BY urgency DESC, enqueued_at LIMIT $1
                 FOR UPDATE SKIP LOCKED",
                &[&ROUND_LIMIT],
            )
            .await?;
        // $4: a named agent (a transfer) takes it whatever their skills; nobody else does.
        const CANDIDATE: &str = "SELECT p.agent_id, p.node_id FROM wl_presence p
             JOIN wl_nodes n ON n.node_id = p.node_id
             WHERE p.status = 'available' AND p.offered_call IS NULL
               AND (CASE WHEN $4::text IS NULL
                    THEN ($1 = '' OR cardinality(p.skills) = 0 OR $1 = ANY(p.skills))
                    ELSE p.agent_id = $4 END)
               AND NOT (p.agent_id = ANY($2))
               AND n.heartbeat_at > now() - make_interval(secs => $3)
             ORDER BY p.idle_since LIMIT 1 FOR UPDATE OF p SKIP LOCKED";
        for w in &waiting {
            let (call_id, owner, skill): (String, String, String) = (w.get(0), w.get(1), w.get(2));
            let tried: Vec<String> = w.get(4);
            let only: Option<String> = w.get(6);
            match tx
                .query_opt(CANDIDATE, &[&skill, &tried, &lease, &only])
                .await?
            {
                Some(agent) => {
                    let (agent_id, agent_node): (String, String) = (agent.get(0), agent.get(1));
                    tx.execute(
                        "UPDATE wl_presence SET status = 'ringing', offered_call = $2 WHERE agent_id = $1",
                        &[&agent_id, &call_id],
                    )
                    .await?;
                    tx.execute(
                        "UPDATE wl_queue SET ringing_agent = $2,
                            ring_deadline = now() + make_interval(secs => $3) WHERE call_id = $1",
                        &[&call_id, &agent_id, &ring],
                    )
                    .await?;
                    round.matches.push(Match {
                        kind: OfferKind::Call,
                        call_id,
                        owner_node: owner,
                        agent_id,
                        agent_node,
                        urgency: urgency_of(w.get(3)),
                        context: w.get(5),
                    });
                }
                None => {
                    // Nobody left who could ever take it: every online agent with the skill tried it.
                    let someone = tx
                        .query_opt(
                            "SELECT 1 FROM wl_presence p JOIN wl_nodes n ON n.node_id = p.node_id
                             WHERE p.status <> 'offline'
                               AND (CASE WHEN $4::text IS NULL
                                    THEN ($1 = '' OR cardinality(p.skills) = 0 OR $1 = ANY(p.skills))
                                    ELSE p.agent_id = $4 END)
                               AND NOT (p.agent_id = ANY($2))
                               AND n.heartbeat_at > now() - make_interval(secs => $3) LIMIT 1",
                            &[&skill, &tried, &lease, &only],
                        )
                        .await?;
                    if someone.is_none() {
                        tx.execute("DELETE FROM wl_queue WHERE call_id = $1", &[&call_id])
                            .await?;
                        round.unroutable.push(Unroutable {
                            call_id,
                            owner_node: owner,
                            reason: if tried.is_empty() {
                                "no agents are online".into()
                            } else {
                                "no agent answered".into()
                            },
                        });
                    }
                }
            }
        }
        // Saved callbacks go to agents nobody on a live call needs.
        let callbacks = tx
            .query(
                "SELECT call_id, context, declined_by FROM callbacks
                 WHERE status = 'pending' AND offered_to IS NULL ORDER BY created_at LIMIT $1
                 FOR UPDATE SKIP LOCKED",
                &[&ROUND_LIMIT],
            )
            .await?;
        for cb in &callbacks {
            let call_id: String = cb.get(0);
            let declined: Vec<String> = cb.get(2);
            let Some(agent) = tx
                .query_opt(
                    CANDIDATE,
                    &[&String::new(), &declined, &lease, &None::<String>],
                )
                .await?
            else {
                break;
            };
            let (agent_id, agent_node): (String, String) = (agent.get(0), agent.get(1));
            let offered = format!("{CALLBACK_PREFIX}{call_id}");
            tx.execute(
                "UPDATE wl_presence SET status = 'ringing', offered_call = $2 WHERE agent_id = $1",
                &[&agent_id, &offered],
            )
            .await?;
            tx.execute(
                "UPDATE callbacks SET offered_to = $2,
                    offer_deadline = now() + make_interval(secs => $3) WHERE call_id = $1",
                &[&call_id, &agent_id, &ring],
            )
            .await?;
            round.matches.push(Match {
                kind: OfferKind::Callback,
                call_id,
                owner_node: String::new(),
                agent_id,
                agent_node,
                urgency: Urgency::Standard,
                context: cb.get(1),
            });
        }
        tx.commit().await?;
        Ok(round)
    }

    /// The agent takes what they were offered. Exactly one accept of an offer
    /// succeeds, whichever node or console sends it.
    pub async fn accept(
        &self,
        agent_id: &str,
        kind: OfferKind,
        call_id: &str,
    ) -> Result<Accepted, ClusterDbError> {
        let not_offered = || ClusterDbError::NotOffered {
            agent: agent_id.to_string(),
            call: call_id.to_string(),
        };
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let offered = match kind {
            OfferKind::Call => call_id.to_string(),
            OfferKind::Callback => format!("{CALLBACK_PREFIX}{call_id}"),
        };
        let next_status = match kind {
            OfferKind::Call => "busy",
            OfferKind::Callback => "available",
        };
        let claimed = tx
            .execute(
                "UPDATE wl_presence SET status = $3, offered_call = NULL, idle_since = now()
                 WHERE agent_id = $1 AND offered_call = $2",
                &[&agent_id, &offered, &next_status],
            )
            .await?;
        if claimed != 1 {
            return Err(not_offered());
        }
        let accepted = match kind {
            OfferKind::Call => {
                let row = tx
                    .query_opt(
                        "DELETE FROM wl_queue q USING wl_nodes n
                         WHERE q.call_id = $1 AND q.ringing_agent = $2 AND n.node_id = q.node_id
                         RETURNING q.node_id, n.media_url",
                        &[&call_id, &agent_id],
                    )
                    .await?
                    .ok_or_else(not_offered)?;
                Accepted::Call {
                    owner_node: row.get(0),
                    owner_url: row.get(1),
                }
            }
            OfferKind::Callback => {
                let row = tx
                    .query_opt(
                        "UPDATE callbacks SET status = 'assigned', agent_id = $2, offered_to = NULL,
                            offer_deadline = NULL WHERE call_id = $1 AND offered_to = $2 RETURNING number",
                        &[&call_id, &agent_id],
                    )
                    .await?
                    .ok_or_else(not_offered)?;
                Accepted::Callback { number: row.get(0) }
            }
        };
        tx.commit().await?;
        Ok(accepted)
    }

    /// Releases an offer (declined, not answered in time): the agent is free
    /// again and the call goes back to waiting, never offered to them again.
    /// `None` when the offer was already gone (accepted or released before).
    pub async fn release(
        &self,
        agent_id: &str,
        call_id: &str,
    ) -> Result<Option<Released>, ClusterDbError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let released = release_in(&tx, agent_id, call_id).await?;
        tx.commit().await?;
        Ok(released)
    }

    /// The call left the queue (hung up, callback chosen, handed over). Returns
    /// the offer it withdraws, if one was out.
    pub async fn leave(&self, call_id: &str) -> Result<Option<Released>, ClusterDbError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let row = tx
            .query_opt(
                "DELETE FROM wl_queue WHERE call_id = $1 RETURNING node_id, ringing_agent",
                &[&call_id],
            )
            .await?;
        let mut released = None;
        if let Some(row) = row
            && let Some(agent_id) = row.get::<_, Option<String>>(1)
        {
            let agent_node = free_agent(&tx, &agent_id, call_id).await?;
            released = Some(Released {
                call_id: call_id.to_string(),
                agent_id,
                owner_node: Some(row.get(0)),
                agent_node,
            });
        }
        tx.commit().await?;
        Ok(released)
    }

    /// Expires what no live node looks after: offers past their ring lease, and
    /// nodes past theirs (their agents leave, their queued callers become
    /// callbacks). Each piece is claimed by exactly one node's sweep.
    pub async fn sweep(&self) -> Result<(Vec<Released>, Vec<Takeover>), ClusterDbError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let mut released = Vec::new();
        let expired = tx
            .query(
                "SELECT call_id, ringing_agent FROM wl_queue
                 WHERE ring_deadline < now() FOR UPDATE SKIP LOCKED",
                &[],
            )
            .await?;
        for row in &expired {
            let (call_id, agent_id): (String, String) = (row.get(0), row.get(1));
            if let Some(r) = release_in(&tx, &agent_id, &call_id).await? {
                released.push(r);
            }
        }
        let expired_callbacks = tx
            .query(
                "SELECT call_id, offered_to FROM callbacks
                 WHERE offer_deadline < now() FOR UPDATE SKIP LOCKED",
                &[],
            )
            .await?;
        for row in &expired_callbacks {
            let (call_id, agent_id): (String, String) = (row.get(0), row.get(1));
            if let Some(r) = release_in(&tx, &agent_id, &call_id).await? {
                released.push(r);
            }
        }
        let dead = tx
            .query(
                "DELETE FROM wl_nodes WHERE heartbeat_at < now() - make_interval(secs => $1)
                 AND node_id <> $2 RETURNING node_id",
                &[&self.lease_secs(), &self.node_id],
            )
            .await?;
        let mut takeovers = Vec::new();
        for row in &dead {
            let node: String = row.get(0);
            takeovers.push(take_over(&tx, &node).await?);
        }
        tx.commit().await?;
        Ok((released, takeovers))
    }

    /// The offers out to this node's agents made more than `older_than` ago
    /// (calls and callbacks), to re-deliver any whose NATS message was lost.
    pub async fn offers_on_node(&self, older_than: Duration) -> Result<Vec<Match>, ClusterDbError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT p.agent_id, q.call_id, q.urgency, q.context, q.node_id, false
                 FROM wl_presence p JOIN wl_queue q ON q.call_id = p.offered_call AND q.ringing_agent = p.agent_id
                 WHERE p.node_id = $1
                   AND q.ring_deadline < now() + make_interval(secs => $2) - make_interval(secs => $3)
                 UNION ALL
                 SELECT p.agent_id, c.call_id, 0::smallint, c.context, '', true
                 FROM wl_presence p JOIN callbacks c ON p.offered_call = $4 || c.call_id AND c.offered_to = p.agent_id
                 WHERE p.node_id = $1
                   AND c.offer_deadline < now() + make_interval(secs => $2) - make_interval(secs => $3)",
                &[
                    &self.node_id,
                    &self.ring_lease.as_secs_f64(),
                    &older_than.as_secs_f64(),
                    &CALLBACK_PREFIX,
                ],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| Match {
                kind: if r.get(5) {
                    OfferKind::Callback
                } else {
                    OfferKind::Call
                },
                call_id: r.get(1),
                owner_node: r.get(4),
                agent_id: r.get(0),
                agent_node: self.node_id.clone(),
                urgency: urgency_of(r.get(2)),
                context: r.get(3),
            })
            .collect())
    }

    /// The calls of this node in the shared queue.
    pub async fn queued_on_node(&self) -> Result<Vec<String>, ClusterDbError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT call_id FROM wl_queue WHERE node_id = $1",
                &[&self.node_id],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// The live nodes and their advertised URLs.
    pub async fn nodes(&self) -> Result<Vec<(String, String)>, ClusterDbError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT node_id, media_url FROM wl_nodes
                 WHERE heartbeat_at > now() - make_interval(secs => $1) ORDER BY node_id",
                &[&self.lease_secs()],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Leaving the cluster cleanly: this node's agents go offline at once
    /// (instead of after the lease) and its lease is given up.
    pub async fn leave_cluster(&self) -> Result<Takeover, ClusterDbError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute("DELETE FROM wl_nodes WHERE node_id = $1", &[&self.node_id])
            .await?;
        let t = take_over(&tx, &self.node_id).await?;
        tx.commit().await?;
        Ok(t)
    }
}

/// Frees `agent_id` from `call_id`'s offer; the agent's node if they are present.
async fn free_agent(
    tx: &tokio_postgres::Transaction<'_>,
    agent_id: &str,
    call_id: &str,
) -> Result<Option<String>, ClusterDbError> {
    let row = tx
        .query_opt(
            "UPDATE wl_presence SET offered_call = NULL,
                status = CASE WHEN status = 'ringing' THEN 'available' ELSE status END,
                idle_since = now()
             WHERE agent_id = $1 AND (offered_call = $2 OR offered_call = $3) RETURNING node_id",
            &[&agent_id, &call_id, &format!("{CALLBACK_PREFIX}{call_id}")],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

async fn release_in(
    tx: &tokio_postgres::Transaction<'_>,
    agent_id: &str,
    call_id: &str,
) -> Result<Option<Released>, ClusterDbError> {
    let call = tx
        .query_opt(
            "UPDATE wl_queue SET ringing_agent = NULL, ring_deadline = NULL, tried = array_append(tried, $2)
             WHERE call_id = $1 AND ringing_agent = $2 RETURNING node_id",
            &[&call_id, &agent_id],
        )
        .await?;
    let callback = tx
        .execute(
            "UPDATE callbacks SET offered_to = NULL, offer_deadline = NULL,
                declined_by = array_append(declined_by, $2)
             WHERE call_id = $1 AND offered_to = $2",
            &[&call_id, &agent_id],
        )
        .await?;
    if call.is_none() && callback == 0 {
        return Ok(None);
    }
    let agent_node = free_agent(tx, agent_id, call_id).await?;
    Ok(Some(Released {
        call_id: call_id.to_string(),
        agent_id: agent_id.to_string(),
        owner_node: call.map(|r| r.get(0)),
        agent_node,
    }))
}

/// A node is gone: its agents leave; its queued callers become callbacks with
/// their context; offers between its calls and other nodes' agents are released.
async fn take_over(
    tx: &tokio_postgres::Transaction<'_>,
    node: &str,
) -> Result<Takeover, ClusterDbError> {
    let mut t = Takeover {
        node: node.to_string(),
        ..Default::default()
    };
    let agents = tx
        .query(
            "DELETE FROM wl_presence WHERE node_id = $1 RETURNING agent_id, offered_call",
            &[&node],
        )
        .await?;
    for a in &agents {
        let (agent_id, offered): (String, Option<String>) = (a.get(0), a.get(1));
        let Some(offered) = offered else { continue };
        let call_id = offered
            .strip_prefix(CALLBACK_PREFIX)
            .unwrap_or(&offered)
            .to_string();
        if let Some(r) = release_in(tx, &agent_id, &call_id).await? {
            t.released.push(r);
        } else {
            t.released.push(Released {
                call_id,
                agent_id,
                owner_node: None,
                agent_node: None,
            });
        }
    }
    let queued = tx
        .query(
            "DELETE FROM wl_queue WHERE node_id = $1
             RETURNING call_id, context, callback_number, ringing_agent",
            &[&node],
        )
        .await?;
    let now = crate::brief::context::rfc3339(std::time::SystemTime::now());
    for q in &queued {
        let call_id: String = q.get(0);
        let reason = format!(
            "the call was cut off (gateway node {node} stopped) while waiting for an agent"
        );
        tx.execute(
            crate::store::SUPERSEDE_CALLBACKS_POSTGRES,
            &[&q.get::<_, String>(2), &call_id],
        )
        .await?;
        tx.execute(
            "INSERT INTO callbacks (call_id, number, reason, context, created_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (call_id) DO NOTHING",
            &[&call_id, &q.get::<_, String>(2), &reason, &q.get::<_, String>(1), &now],
        )
        .await?;
        if let Some(agent_id) = q.get::<_, Option<String>>(3) {
            let agent_node = free_agent(tx, &agent_id, &call_id).await?;
            t.released.push(Released {
                call_id: call_id.clone(),
                agent_id,
                owner_node: None,
                agent_node,
            });
        }
        t.callbacks_saved.push(call_id);
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urgency_ranks_round_trip() {
        for u in [Urgency::Standard, Urgency::Elevated, Urgency::Critical] {
            assert_eq!(urgency_of(urgency_rank(u)), u);
        }
    }
}
