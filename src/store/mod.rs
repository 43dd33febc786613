//! Persistence on a dedicated thread: calls, turns, sentiment, decisions,
//! handoff contexts, agents, callbacks and handoff figures. Writes are queued
//! from the call tasks and never block them; a failed write is kept and
//! retried, so a locked or briefly unreachable database loses nothing once it
//! recovers.
//!
//! Two backends implement [`StoreBackend`]: SQLite (embedded, the single-node
//! default, [`sqlite`]) and PostgreSQL (shared by several gateway nodes,
//! [`postgres`]). Both keep the same tables and timestamps as RFC 3339 text, so
//! rows read back identically.

pub mod postgres;
pub mod sqlite;
pub mod stats;

use serde::Serialize;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::time::Duration;
use thiserror::Error;
use tokio::sync::oneshot;

/// Writes queued before the store refuses more (logged).
const QUEUE: usize = 10_000;
/// Failed writes kept for retry.
const RETRY_KEEP: usize = 10_000;
/// How often failed writes are retried.
const RETRY_EVERY: Duration = Duration::from_millis(500);

/// Store errors.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The database could not be opened or migrated.
    #[error("cannot open database {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
    },
    /// The folder for the database could not be created.
    #[error("cannot create {path}: {source}")]
    Folder {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A query failed.
    #[error("database query failed: {0}")]
    Query(#[from] rusqlite::Error),
    /// PostgreSQL could not be reached or set up at start.
    #[error("cannot use PostgreSQL at {url}: {source}")]
    PostgresConnect {
        /// The URL, password removed.
        url: String,
        /// Why.
        source: ::postgres::Error,
    },
    /// A PostgreSQL query failed.
    #[error("PostgreSQL query failed: {0}")]
    Postgres(#[from] ::postgres::Error),
    /// The store thread is gone.
    #[error("the store is closed")]
    Closed,
    /// The write queue is full.
    #[error("the store's write queue is full; write dropped")]
    Full,
}

/// A write to persist.
#[derive(Debug, Clone)]
pub enum Write {
    /// A call began.
    CallStarted {
        /// Call id.
        id: String,
        /// Provider call id.
        call_sid: String,
        /// RFC 3339.
        started_at: String,
        /// The caller's number, when known (for re-contact figures).
        caller_number: Option<String>,
    },
    /// A conversation turn (with sentiment for caller turns).
    Turn {
        /// Call id.
        call_id: String,
        /// Index in the transcript.
        idx: usize,
        /// `user` / `agent`.
        role: String,
        /// Text.
        content: String,
        /// RFC 3339.
        at: String,
        /// Agent confidence.
        confidence: Option<f32>,
        /// Agent helpfulness.
        helpful: Option<bool>,
        /// Caller sentiment score.
        sentiment: Option<f32>,
    },
    /// The escalation decision.
    Decision {
        /// Call id.
        call_id: String,
        /// Reason code.
        trigger: String,
        /// Urgency.
        urgency: String,
        /// Description.
        description: String,
        /// Rule that fired.
        rule: String,
        /// Evidence turn indices (JSON array).
        evidence: String,
        /// RFC 3339.
        decided_at: String,
        /// Last input → decision, µs.
        latency_us: u64,
    },
    /// The latest handoff context.
    Context {
        /// Call id.
        call_id: String,
        /// The JSON.
        json: String,
        /// Where the summary came from (JSON).
        summary_source: String,
        /// RFC 3339.
        updated_at: String,
    },
    /// A callback to make, with the context that goes with it.
    Callback {
        /// Call id.
        call_id: String,
        /// Number to call.
        number: String,
        /// Why the call could not be taken now.
        reason: String,
        /// The handoff context JSON.
        context: String,
        /// RFC 3339.
        created_at: String,
    },
    /// A human agent was registered (the token is stored as its SHA-256).
    Agent {
        /// Id.
        id: String,
        /// Name.
        name: String,
        /// SHA-256 of the console token, hex.
        token_sha256: String,
        /// Skills.
        skills: Vec<String>,
    },
    /// A human agent took the call.
    Handoff {
        /// Call id.
        call_id: String,
        /// The agent.
        agent_id: String,
        /// RFC 3339 of the answer.
        answered_at: String,
        /// Whisper length, s.
        whisper_seconds: Option<f64>,
    },
    /// How one handoff attempt ended (a step's wire name: `merged`,
    /// `declined`, `ring_timeout`, `consult_declined`, `no_agent`,
    /// `returned_to_ai`, …), for the outcome counts in `/v1/stats`.
    HandoffOutcome {
        /// Call id.
        call_id: String,
        /// The step.
        outcome: String,
        /// The person concerned, if any.
        agent: Option<String>,
        /// RFC 3339.
        at: String,
    },
    /// The caller and the human agent were connected.
    Merged {
        /// Call id.
        call_id: String,
        /// RFC 3339.
        merged_at: String,
    },
    /// The human agent's first words after the merge.
    AgentFirstWords {
        /// Call id.
        call_id: String,
        /// Milliseconds from the merge.
        ms: u64,
    },
    /// An agent chose to be available or offline (kept across restarts).
    AgentStatus {
        /// Agent id.
        id: String,
        /// `available` or `offline`.
        status: String,
    },
    /// The human agent's wrap-up of a call.
    Wrapup {
        /// Call id.
        call_id: String,
        /// The agent.
        agent_id: String,
        /// The caller's issue was resolved.
        resolved: Option<bool>,
        /// The caller had to repeat what they told the AI.
        caller_repeated: Option<bool>,
        /// The handoff context was accurate.
        context_accurate: Option<bool>,
        /// Free notes.
        notes: String,
        /// The disposition code the agent chose ("" = none).
        disposition: String,
        /// RFC 3339.
        at: String,
    },
    /// An RTP leg's media figures, written when the leg ends.
    MediaLeg {
        /// Call id.
        call_id: String,
        /// The figures.
        row: MediaLegRow,
    },
    /// A call ended.
    CallEnded {
        /// Call id.
        id: String,
        /// RFC 3339.
        ended_at: String,
        /// End reason (JSON).
        reason: String,
    },
}

/// A call as listed by the API.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CallRow {
    /// Call id.
    pub id: String,
    /// Provider call id.
    pub call_sid: String,
    /// RFC 3339.
    pub started_at: String,
    /// RFC 3339, once ended.
    pub ended_at: Option<String>,
    /// End reason, once ended.
    pub end_reason: Option<serde_json::Value>,
    /// Turns stored.
    pub turns: i64,
    /// The escalation decision, if any.
    pub decision: Option<DecisionRow>,
    /// The caller's number, when known.
    pub caller_number: Option<String>,
    /// The same number had called in the 24 h before this call.
    pub recontact_within_24h: bool,
    /// The handoff to a human agent and its quality figures, if any.
    pub handoff: Option<HandoffRow>,
    /// Media figures of the call's RTP legs (SIP calls).
    pub media: Vec<MediaLegRow>,
}

/// One RTP leg's media figures (RTCP-style), as stored at the leg's end.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct MediaLegRow {
    /// `caller`, or `agent:<id>` for a human agent's phone.
    pub leg: String,
    /// The negotiated codec.
    pub codec: String,
    /// Packets received and accepted.
    pub received: i64,
    /// Packets sent.
    pub sent: i64,
    /// Declared lost by the jitter buffer.
    pub lost: i64,
    /// Arrived too late or twice.
    pub late_or_duplicate: i64,
    /// From an address other than the latched one.
    pub foreign: i64,
    /// Unreadable datagrams or payloads.
    pub malformed: i64,
    /// Interarrival jitter we measured at the end (RFC 3550 §6.4.1), ms.
    pub jitter_ms: i64,
    /// Fraction lost the peer last reported in RTCP (0..1).
    pub peer_fraction_lost: Option<f64>,
    /// Jitter the peer last reported in RTCP, ms.
    pub peer_jitter_ms: Option<i64>,
}

/// A handoff as stored, with the agent's wrap-up.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HandoffRow {
    /// The agent who took the call.
    pub agent_id: String,
    /// RFC 3339 of the answer.
    pub answered_at: Option<String>,
    /// RFC 3339 of the merge.
    pub merged_at: Option<String>,
    /// Whisper length, s.
    pub whisper_seconds: Option<f64>,
    /// From the merge to the agent's first words (VAD), ms.
    pub merge_to_first_words_ms: Option<i64>,
    /// Wrap-up: resolved.
    pub resolved: Option<bool>,
    /// Wrap-up: the caller had to repeat themselves.
    pub caller_repeated: Option<bool>,
    /// Wrap-up: the context was accurate.
    pub context_accurate: Option<bool>,
    /// Wrap-up notes.
    pub notes: Option<String>,
    /// The wrap-up's disposition code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disposition: Option<String>,
}

/// A stored decision.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DecisionRow {
    /// Reason code.
    pub trigger: String,
    /// Urgency.
    pub urgency: String,
    /// Description.
    pub description: String,
    /// Rule.
    pub rule: String,
    /// Evidence turn indices.
    pub evidence: serde_json::Value,
    /// RFC 3339.
    pub decided_at: String,
    /// Last input → decision, µs.
    pub latency_us: Option<i64>,
}

/// Marks the pending callbacks of a number (other than the new call's) as
/// `superseded`: one pending callback per number (an empty number, a caller
/// who gave none, is never matched). SQLite form: `?1` number, `?2` call id.
pub(crate) const SUPERSEDE_CALLBACKS_SQLITE: &str = "UPDATE callbacks SET status = 'superseded'
     WHERE number = ?1 AND number <> '' AND status = 'pending' AND call_id <> ?2";
/// [`SUPERSEDE_CALLBACKS_SQLITE`] for PostgreSQL (`$1` number, `$2` call id).
pub(crate) const SUPERSEDE_CALLBACKS_POSTGRES: &str = "UPDATE callbacks SET status = 'superseded'
     WHERE number = $1 AND number <> '' AND status = 'pending' AND call_id <> $2";

/// A saved callback.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CallbackRow {
    /// The call it came from.
    pub call_id: String,
    /// Number to call.
    pub number: String,
    /// Why.
    pub reason: String,
    /// The handoff context.
    pub context: serde_json::Value,
    /// RFC 3339.
    pub created_at: String,
    /// `pending`, …
    pub status: String,
}

/// A registered agent as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAgent {
    /// Id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// SHA-256 of the console token, hex.
    pub token_sha256: String,
    /// Skills.
    pub skills: Vec<String>,
    /// The availability the agent last chose: `available` or `offline`.
    pub status: String,
}

enum Command {
    Write(Write),
    ListCalls(usize, oneshot::Sender<Result<Vec<CallRow>, StoreError>>),
    Call(String, oneshot::Sender<Result<Option<CallRow>, StoreError>>),
    Context(String, oneshot::Sender<Result<Option<String>, StoreError>>),
    Callbacks(oneshot::Sender<Result<Vec<CallbackRow>, StoreError>>),
    ClaimCallback(
        String,
        String,
        oneshot::Sender<Result<Option<String>, StoreError>>,
    ),
    Stats(oneshot::Sender<Result<serde_json::Value, StoreError>>),
    Agents(oneshot::Sender<Result<Vec<StoredAgent>, StoreError>>),
    Recover(String, oneshot::Sender<Result<Recovered, StoreError>>),
    Flush(oneshot::Sender<usize>),
}

/// What [`Store::recover_after_crash`] found and did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Recovered {
    /// Calls left open by a previous run, now closed (`gateway_restart`).
    pub closed: usize,
    /// Of those, escalated callers who were never handed over: now callbacks.
    pub callbacks: usize,
}

/// The end reason written on calls a crash left open.
pub const GATEWAY_RESTART: &str =
    r#"{"code":"gateway_restart","detail":"the gateway stopped without ending this call"}"#;

/// Handle to the store thread (cheap to clone).
#[derive(Debug, Clone)]
pub struct Store {
    tx: std_mpsc::SyncSender<Command>,
    location: String,
}

/// A database the store thread writes to and reads from. Every method runs on
/// the store's own thread, so implementations may block.
pub trait StoreBackend: Send + 'static {
    /// Applies one write (an error keeps it for a retry).
    fn apply(&mut self, write: &Write) -> Result<(), StoreError>;
    /// The most recent calls, newest first.
    fn list_calls(&mut self, limit: usize) -> Result<Vec<CallRow>, StoreError>;
    /// One call.
    fn call(&mut self, id: &str) -> Result<Option<CallRow>, StoreError>;
    /// The latest context JSON of a call.
    fn context(&mut self, id: &str) -> Result<Option<String>, StoreError>;
    /// Pending callbacks, oldest first.
    fn callbacks(&mut self) -> Result<Vec<CallbackRow>, StoreError>;
    /// Assigns a pending callback to an agent: its number when this claim
    /// won, `None` when it was not pending (another agent has it, or gone).
    fn claim_callback(
        &mut self,
        call_id: &str,
        agent_id: &str,
    ) -> Result<Option<String>, StoreError>;
    /// Handoff quality figures over every stored call.
    fn stats(&mut self) -> Result<serde_json::Value, StoreError>;
    /// Registered human agents.
    fn agents(&mut self) -> Result<Vec<StoredAgent>, StoreError>;
    /// Closes calls a previous run left open (at `now`, RFC 3339), saving a
    /// callback for every escalated caller among them who was never handed over.
    /// Backends shared by several live nodes leave this to the cluster.
    fn recover_open_calls(&mut self, now: &str) -> Result<Recovered, StoreError> {
        let _ = now;
        Ok(Recovered::default())
    }
}

impl Store {
    /// Opens (creating if needed) the SQLite database at `path` and starts its thread.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Folder {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let owned = path.to_path_buf();
        Self::start(path.display().to_string(), move || {
            sqlite::SqliteBackend::open(&owned).map_err(|source| StoreError::Open {
                path: owned.clone(),
                source,
            })
        })
    }

    /// Connects to PostgreSQL at `url` (running pending migrations) and starts
    /// the store thread. Fails at once, with the reason, when it is unreachable.
    pub fn open_postgres(url: &str) -> Result<Store, StoreError> {
        let owned = url.to_string();
        Self::start(crate::util::redact_url(url), move || {
            postgres::PostgresBackend::connect(&owned)
        })
    }

    /// Opens what `config` names: PostgreSQL when `postgres_url` is set, else SQLite.
    pub fn from_config(config: &crate::config::StoreConfig) -> Result<Store, StoreError> {
        if config.postgres_url.is_empty() {
            Self::open(&config.path)
        } else {
            Self::open_postgres(&config.postgres_url)
        }
    }

    /// Starts the store thread, which opens the backend with `open` (blocking
    /// clients such as `postgres` must be created off the async runtime) and
    /// reports whether that worked before serving.
    fn start<B: StoreBackend>(
        location: String,
        open: impl FnOnce() -> Result<B, StoreError> + Send + 'static,
    ) -> Result<Store, StoreError> {
        let (tx, rx) = std_mpsc::sync_channel(QUEUE);
        let (opened_tx, opened_rx) = std_mpsc::sync_channel(1);
        let thread_location = location.clone();
        std::thread::Builder::new()
            .name("warmline-store".into())
            .spawn(move || match open() {
                Ok(backend) => {
                    let _ = opened_tx.send(Ok(()));
                    run(backend, rx, &thread_location)
                }
                Err(e) => {
                    let _ = opened_tx.send(Err(e));
                }
            })
            .map_err(|e| StoreError::Folder {
                path: PathBuf::from(&location),
                source: e,
            })?;
        opened_rx.recv().map_err(|_| StoreError::Closed)??;
        Ok(Store { tx, location })
    }

    /// Where the data lives: the SQLite file, or the PostgreSQL URL without its password.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Queues a write; never blocks.
    pub fn write(&self, write: Write) {
        match self.tx.try_send(Command::Write(write)) {
            Ok(()) => {}
            Err(std_mpsc::TrySendError::Full(_)) => tracing::error!("{}", StoreError::Full),
            Err(std_mpsc::TrySendError::Disconnected(_)) => {
                tracing::error!("{}", StoreError::Closed)
            }
        }
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx.try_send(make(reply)).map_err(|e| match e {
            std_mpsc::TrySendError::Full(_) => StoreError::Full,
            std_mpsc::TrySendError::Disconnected(_) => StoreError::Closed,
        })?;
        rx.await.map_err(|_| StoreError::Closed)
    }

    /// The most recent calls, newest first.
    pub async fn list_calls(&self, limit: usize) -> Result<Vec<CallRow>, StoreError> {
        self.ask(|r| Command::ListCalls(limit, r)).await?
    }

    /// One call.
    pub async fn call(&self, id: &str) -> Result<Option<CallRow>, StoreError> {
        self.ask(|r| Command::Call(id.to_string(), r)).await?
    }

    /// The latest context JSON of a call.
    pub async fn context(&self, id: &str) -> Result<Option<String>, StoreError> {
        self.ask(|r| Command::Context(id.to_string(), r)).await?
    }

    /// Registered human agents.
    pub async fn agents(&self) -> Result<Vec<StoredAgent>, StoreError> {
        self.ask(Command::Agents).await?
    }

    /// Handoff quality figures (escalation rate and reasons, handoffs, callbacks).
    pub async fn stats(&self) -> Result<serde_json::Value, StoreError> {
        self.ask(Command::Stats).await?
    }

    /// At start: closes the calls a crash (kill -9, power loss) left open with
    /// reason `gateway_restart`, and turns the escalated callers among them who
    /// never reached a person into callbacks: nothing a caller was promised is lost.
    pub async fn recover_after_crash(&self, now: &str) -> Result<Recovered, StoreError> {
        self.ask(|r| Command::Recover(now.to_string(), r)).await?
    }

    /// Pending callbacks, oldest first.
    pub async fn callbacks(&self) -> Result<Vec<CallbackRow>, StoreError> {
        self.ask(Command::Callbacks).await?
    }

    /// Claims a pending callback for `agent_id` (one owner, in either backend):
    /// the number to call when the claim won.
    pub async fn claim_callback(
        &self,
        call_id: &str,
        agent_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let (call, agent) = (call_id.to_string(), agent_id.to_string());
        self.ask(move |reply| Command::ClaimCallback(call, agent, reply))
            .await?
    }

    /// Waits until every write queued so far was attempted; returns how many are
    /// still waiting for a retry (0 when all are on disk).
    pub async fn flush(&self) -> Result<usize, StoreError> {
        self.ask(Command::Flush).await
    }
}

fn run(mut db: impl StoreBackend, rx: std_mpsc::Receiver<Command>, location: &str) {
    let mut retry: VecDeque<Write> = VecDeque::new();
    loop {
        let command = match rx.recv_timeout(RETRY_EVERY) {
            Ok(c) => Some(c),
            Err(std_mpsc::RecvTimeoutError::Timeout) => None,
            Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
        };
        // Older failed writes go first, so rows keep their order.
        let pending = retry.len();
        for _ in 0..pending {
            let Some(w) = retry.pop_front() else { break };
            if let Err(e) = db.apply(&w) {
                tracing::warn!(db = %location, error = %e, "store write still failing; will retry");
                retry.push_front(w);
                break;
            }
        }
        match command {
            Some(Command::Write(w)) => {
                if !retry.is_empty() {
                    keep(&mut retry, w);
                } else if let Err(e) = db.apply(&w) {
                    tracing::warn!(db = %location, error = %e, "store write failed; will retry");
                    keep(&mut retry, w);
                }
            }
            Some(Command::ListCalls(limit, reply)) => {
                let _ = reply.send(db.list_calls(limit));
            }
            Some(Command::Call(id, reply)) => {
                let _ = reply.send(db.call(&id));
            }
            Some(Command::Context(id, reply)) => {
                let _ = reply.send(db.context(&id));
            }
            Some(Command::Agents(reply)) => {
                let _ = reply.send(db.agents());
            }
            Some(Command::Recover(now, reply)) => {
                let _ = reply.send(db.recover_open_calls(&now));
            }
            Some(Command::Stats(reply)) => {
                let _ = reply.send(db.stats());
            }
            Some(Command::Callbacks(reply)) => {
                let _ = reply.send(db.callbacks());
            }
            Some(Command::ClaimCallback(call, agent, reply)) => {
                let _ = reply.send(db.claim_callback(&call, &agent));
            }
            Some(Command::Flush(reply)) => {
                let _ = reply.send(retry.len());
            }
            None => {}
        }
    }
    // Last chance for anything still pending.
    for w in retry {
        if let Err(e) = db.apply(&w) {
            tracing::error!(db = %location, error = %e, ?w, "store write lost at shutdown");
        }
    }
}

fn keep(retry: &mut VecDeque<Write>, w: Write) {
    if retry.len() >= RETRY_KEEP {
        tracing::error!(?w, "store retry queue full; write dropped");
    } else {
        retry.push_back(w);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_land_and_read_back_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db/warmline.db");
        {
            let store = Store::open(&path).unwrap();
            store.write(Write::CallStarted {
                id: "CA1".into(),
                call_sid: "CA1".into(),
                started_at: "2026-11-25T10:00:00.000Z".into(),
                caller_number: None,
            });
            store.write(Write::Turn {
                call_id: "CA1".into(),
                idx: 0,
                role: "user".into(),
                content: "I want a real person 😡".into(),
                at: "2026-11-25T10:00:01.000Z".into(),
                confidence: None,
                helpful: None,
                sentiment: Some(-0.4),
            });
            store.write(Write::Decision {
                call_id: "CA1".into(),
                trigger: "customer_request".into(),
                urgency: "standard".into(),
                description: "asked".into(),
                rule: "explicit_request".into(),
                evidence: "[0]".into(),
                decided_at: "2026-11-25T10:00:01.000Z".into(),
                latency_us: 12,
            });
            store.write(Write::Context {
                call_id: "CA1".into(),
                json: "{\"conversationId\":\"CA1\"}".into(),
                summary_source: "{}".into(),
                updated_at: "2026-11-25T10:00:01.000Z".into(),
            });
            assert_eq!(store.flush().await.unwrap(), 0);
        }
        let store = Store::open(&path).unwrap();
        let call = store.call("CA1").await.unwrap().unwrap();
        assert_eq!(call.turns, 1);
        assert_eq!(call.decision.unwrap().trigger, "customer_request");
        assert!(store.context("CA1").await.unwrap().unwrap().contains("CA1"));
        assert!(store.call("nope").await.unwrap().is_none());
        assert_eq!(store.list_calls(10).await.unwrap().len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_locked_database_delays_writes_but_loses_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("warmline.db");
        let store = Store::open(&path).unwrap();
        // Another process holds an exclusive lock for longer than the busy timeout.
        let locker = rusqlite::Connection::open(&path).unwrap();
        locker.execute_batch("BEGIN EXCLUSIVE").unwrap();
        for i in 0..3 {
            store.write(Write::CallStarted {
                id: format!("CA{i}"),
                call_sid: format!("CA{i}"),
                started_at: format!("2026-11-25T10:00:0{i}.000Z"),
                caller_number: None,
            });
        }
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(
            store.flush().await.unwrap() > 0,
            "writes are waiting for a retry"
        );
        locker.execute_batch("COMMIT").unwrap();
        drop(locker);
        let mut pending = usize::MAX;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            pending = store.flush().await.unwrap();
            if pending == 0 {
                break;
            }
        }
        assert_eq!(pending, 0);
        let calls = store.list_calls(10).await.unwrap();
        let ids: Vec<&str> = calls.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, vec!["CA2", "CA1", "CA0"], "all written, in order");
    }

    #[test]
    fn an_unusable_path_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain-file");
        std::fs::write(&file, b"x").unwrap();
        let err = Store::open(&file.join("warmline.db")).unwrap_err();
        assert!(err.to_string().contains("cannot create"), "{err}");
    }
}
