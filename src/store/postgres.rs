//! The PostgreSQL backend (several gateway nodes share one database): the same
//! tables as SQLite, with PostgreSQL types, plus the cluster's routing tables
//! (see [`crate::cluster`]). Timestamps stay RFC 3339 text in the call tables so
//! rows read back exactly as from SQLite.
//!
//! Runs on the store thread with the blocking `postgres` client; migrations run
//! under a transaction-scoped advisory lock, so nodes starting together migrate once.

use super::{
    CallRow, CallbackRow, DecisionRow, HandoffRow, MediaLegRow, StoreBackend, StoreError,
    StoredAgent, Write,
};
use ::postgres::{Client, NoTls, Row};

/// Advisory lock key held while migrating (any constant shared by all nodes).
const MIGRATION_LOCK: i64 = 0x7761_726d_6c69_6e65; // "warmline"

/// Migrations in order; `warmline_migrations` records which ran.
pub const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE calls (
    id TEXT PRIMARY KEY,
    call_sid TEXT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    end_reason TEXT,
    escalated BOOLEAN NOT NULL DEFAULT false,
    caller_number TEXT
);
CREATE INDEX calls_started ON calls (started_at);
CREATE INDEX calls_caller_number ON calls (caller_number, started_at);
CREATE TABLE turns (
    call_id TEXT NOT NULL,
    idx BIGINT NOT NULL,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    at TEXT NOT NULL,
    confidence REAL,
    helpful BOOLEAN,
    PRIMARY KEY (call_id, idx)
);
CREATE TABLE sentiment (
    call_id TEXT NOT NULL,
    turn_idx BIGINT NOT NULL,
    score REAL NOT NULL,
    label TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (call_id, turn_idx)
);
CREATE TABLE decisions (
    call_id TEXT PRIMARY KEY,
    trigger TEXT NOT NULL,
    urgency TEXT NOT NULL,
    description TEXT NOT NULL,
    rule TEXT NOT NULL,
    evidence TEXT NOT NULL,
    decided_at TEXT NOT NULL,
    latency_us BIGINT
);
CREATE TABLE contexts (
    call_id TEXT PRIMARY KEY,
    json TEXT NOT NULL,
    summary_source TEXT,
    updated_at TEXT NOT NULL
);
CREATE TABLE callbacks (
    call_id TEXT PRIMARY KEY,
    number TEXT NOT NULL,
    reason TEXT NOT NULL,
    context TEXT NOT NULL,
    created_at TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    offered_to TEXT,
    offer_deadline TIMESTAMPTZ,
    declined_by TEXT[] NOT NULL DEFAULT '{}',
    agent_id TEXT
);
CREATE TABLE agents (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    token_sha256 TEXT NOT NULL,
    skills TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'available'
);
CREATE TABLE handoffs (
    call_id TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL,
    offered_at TEXT,
    answered_at TEXT,
    merged_at TEXT,
    whisper_seconds DOUBLE PRECISION,
    first_words_ms BIGINT
);
CREATE TABLE wrapups (
    call_id TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL,
    resolved BOOLEAN,
    caller_repeated BOOLEAN,
    context_accurate BOOLEAN,
    notes TEXT NOT NULL DEFAULT '',
    at TEXT NOT NULL
);
CREATE TABLE media_legs (
    call_id TEXT NOT NULL,
    leg TEXT NOT NULL,
    codec TEXT NOT NULL,
    received BIGINT NOT NULL,
    sent BIGINT NOT NULL,
    lost BIGINT NOT NULL,
    late_or_duplicate BIGINT NOT NULL,
    foreign_packets BIGINT NOT NULL,
    malformed BIGINT NOT NULL,
    jitter_ms BIGINT NOT NULL,
    peer_fraction_lost DOUBLE PRECISION,
    peer_jitter_ms BIGINT,
    PRIMARY KEY (call_id, leg)
);
"#,
    // The cluster's shared routing state (crate::cluster::db).
    r#"
CREATE TABLE wl_nodes (
    node_id TEXT PRIMARY KEY,
    media_url TEXT NOT NULL,
    heartbeat_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE wl_presence (
    agent_id TEXT PRIMARY KEY,
    node_id TEXT NOT NULL,
    status TEXT NOT NULL,
    skills TEXT[] NOT NULL,
    idle_since TIMESTAMPTZ NOT NULL,
    offered_call TEXT
);
CREATE TABLE wl_queue (
    call_id TEXT PRIMARY KEY,
    node_id TEXT NOT NULL,
    skill TEXT NOT NULL,
    urgency SMALLINT NOT NULL,
    enqueued_at TIMESTAMPTZ NOT NULL,
    tried TEXT[] NOT NULL,
    context TEXT NOT NULL,
    callback_number TEXT NOT NULL DEFAULT '',
    ringing_agent TEXT,
    ring_deadline TIMESTAMPTZ
);
"#,
    r#"
ALTER TABLE wrapups ADD COLUMN disposition TEXT NOT NULL DEFAULT '';
"#,
    r#"
CREATE TABLE handoff_outcomes (
    call_id TEXT NOT NULL,
    outcome TEXT NOT NULL,
    agent TEXT,
    at TEXT NOT NULL
);
"#,
    r#"
ALTER TABLE wl_queue ADD COLUMN only_agent TEXT;
"#,
];

/// Connects and runs pending migrations (blocking; call off the async runtime).
pub fn connect_and_migrate(url: &str) -> Result<Client, StoreError> {
    let failed = |source| StoreError::PostgresConnect {
        url: crate::util::redact_url(url),
        source,
    };
    let mut config: ::postgres::Config = url.parse().map_err(failed)?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(std::time::Duration::from_secs(5));
    }
    let mut client = config.connect(NoTls).map_err(failed)?;
    migrate(&mut client).map_err(failed)?;
    Ok(client)
}

fn migrate(client: &mut Client) -> Result<(), ::postgres::Error> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS warmline_migrations (version INTEGER PRIMARY KEY)",
    )?;
    let done: i32 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM warmline_migrations",
            &[],
        )?
        .get(0);
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done.max(0) as usize) {
        tx.batch_execute(sql)?;
        tx.execute(
            "INSERT INTO warmline_migrations (version) VALUES ($1)",
            &[&((i + 1) as i32)],
        )?;
    }
    tx.commit()
}

/// PostgreSQL, one blocking connection on the store thread (reconnected when lost).
pub struct PostgresBackend {
    url: String,
    client: Client,
}

impl std::fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PostgresBackend({})", crate::util::redact_url(&self.url))
    }
}

impl PostgresBackend {
    /// Connects and migrates (blocking).
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        Ok(PostgresBackend {
            url: url.to_string(),
            client: connect_and_migrate(url)?,
        })
    }

    /// The connection, reconnecting first if the server dropped it.
    fn client(&mut self) -> Result<&mut Client, StoreError> {
        if self.client.is_closed() {
            tracing::warn!(db = %crate::util::redact_url(&self.url), "PostgreSQL connection lost; reconnecting");
            self.client = connect_and_migrate(&self.url)?;
        }
        Ok(&mut self.client)
    }

    fn call_rows(&mut self, rows: Vec<Row>) -> Result<Vec<CallRow>, StoreError> {
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let id: String = r.get(0);
            let reason: Option<String> = r.get(4);
            let c = self.client()?;
            out.push(CallRow {
                decision: decision(c, &id)?,
                handoff: handoff(c, &id)?,
                media: media_legs(c, &id)?,
                caller_number: r.get(6),
                recontact_within_24h: r.get(7),
                call_sid: r.get(1),
                started_at: r.get(2),
                ended_at: r.get(3),
                end_reason: reason.and_then(|s| serde_json::from_str(&s).ok()),
                turns: r.get(5),
                id,
            });
        }
        Ok(out)
    }
}

/// SQL: calls that came from a number that had called in the 24 h before.
const RECONTACT: &str = "c.caller_number IS NOT NULL AND EXISTS (
    SELECT 1 FROM calls p WHERE p.caller_number = c.caller_number AND p.id <> c.id
      AND c.started_at::timestamptz - p.started_at::timestamptz BETWEEN interval '0' AND interval '1 day')";

fn call_columns() -> String {
    format!(
        "SELECT c.id, c.call_sid, c.started_at, c.ended_at, c.end_reason,
            (SELECT COUNT(*) FROM turns t WHERE t.call_id = c.id), c.caller_number, ({RECONTACT})
         FROM calls c"
    )
}

fn decision(c: &mut Client, id: &str) -> Result<Option<DecisionRow>, StoreError> {
    let row = c.query_opt(
        "SELECT trigger, urgency, description, rule, evidence, decided_at, latency_us
         FROM decisions WHERE call_id = $1",
        &[&id],
    )?;
    Ok(row.map(|r| {
        let evidence: String = r.get(4);
        DecisionRow {
            trigger: r.get(0),
            urgency: r.get(1),
            description: r.get(2),
            rule: r.get(3),
            evidence: serde_json::from_str(&evidence).unwrap_or(serde_json::Value::Null),
            decided_at: r.get(5),
            latency_us: r.get(6),
        }
    }))
}

fn handoff(c: &mut Client, id: &str) -> Result<Option<HandoffRow>, StoreError> {
    let row = c.query_opt(
        "SELECT h.agent_id, h.answered_at, h.merged_at, h.whisper_seconds, h.first_words_ms,
                w.resolved, w.caller_repeated, w.context_accurate, w.notes, w.disposition
         FROM handoffs h LEFT JOIN wrapups w ON w.call_id = h.call_id WHERE h.call_id = $1",
        &[&id],
    )?;
    Ok(row.map(|r| HandoffRow {
        agent_id: r.get(0),
        answered_at: r.get(1),
        merged_at: r.get(2),
        whisper_seconds: r.get(3),
        merge_to_first_words_ms: r.get(4),
        resolved: r.get(5),
        caller_repeated: r.get(6),
        context_accurate: r.get(7),
        notes: r.get(8),
        disposition: r.get::<_, Option<String>>(9).filter(|d| !d.is_empty()),
    }))
}

fn media_legs(c: &mut Client, id: &str) -> Result<Vec<MediaLegRow>, StoreError> {
    let rows = c.query(
        "SELECT leg, codec, received, sent, lost, late_or_duplicate, foreign_packets, malformed,
                jitter_ms, peer_fraction_lost, peer_jitter_ms
         FROM media_legs WHERE call_id = $1 ORDER BY leg",
        &[&id],
    )?;
    Ok(rows
        .iter()
        .map(|r| MediaLegRow {
            leg: r.get(0),
            codec: r.get(1),
            received: r.get(2),
            sent: r.get(3),
            lost: r.get(4),
            late_or_duplicate: r.get(5),
            foreign: r.get(6),
            malformed: r.get(7),
            jitter_ms: r.get(8),
            peer_fraction_lost: r.get(9),
            peer_jitter_ms: r.get(10),
        })
        .collect())
}

impl super::stats::FigureSource for PostgresBackend {
    fn count(&mut self, sql: &str) -> Result<i64, StoreError> {
        Ok(self.client()?.query_one(sql, &[])?.get(0))
    }

    fn average(&mut self, sql: &str) -> Result<Option<f64>, StoreError> {
        Ok(self.client()?.query_one(sql, &[])?.get(0))
    }

    fn grouped(&mut self, sql: &str) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = self.client()?.query(sql, &[])?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    fn recontact_condition(&self) -> &'static str {
        RECONTACT
    }
}

impl StoreBackend for PostgresBackend {
    fn apply(&mut self, w: &Write) -> Result<(), StoreError> {
        let c = self.client()?;
        match w {
            Write::CallStarted { id, call_sid, started_at, caller_number } => c.execute(
                "INSERT INTO calls (id, call_sid, started_at, caller_number) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (id) DO UPDATE SET call_sid = excluded.call_sid,
                    started_at = excluded.started_at, caller_number = excluded.caller_number",
                &[id, call_sid, started_at, caller_number],
            )?,
            Write::HandoffOutcome {
                call_id,
                outcome,
                agent,
                at,
            } => c.execute(
                "INSERT INTO handoff_outcomes (call_id, outcome, agent, at) VALUES ($1, $2, $3, $4)",
                &[call_id, outcome, agent, at],
            )?,
            Write::Merged { call_id, merged_at } => c.execute(
                "UPDATE handoffs SET merged_at = $2 WHERE call_id = $1",
                &[call_id, merged_at],
            )?,
            Write::AgentFirstWords { call_id, ms } => c.execute(
                "UPDATE handoffs SET first_words_ms = $2 WHERE call_id = $1",
                &[call_id, &(*ms as i64)],
            )?,
            Write::AgentStatus { id, status } => c.execute(
                "UPDATE agents SET status = $2 WHERE id = $1",
                &[id, status],
            )?,
            Write::Wrapup { call_id, agent_id, resolved, caller_repeated, context_accurate, notes, disposition, at } => c
                .execute(
                    "INSERT INTO wrapups (call_id, agent_id, resolved, caller_repeated, context_accurate, notes, at, disposition)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                     ON CONFLICT (call_id) DO UPDATE SET agent_id = excluded.agent_id,
                        resolved = excluded.resolved, caller_repeated = excluded.caller_repeated,
                        context_accurate = excluded.context_accurate, notes = excluded.notes, at = excluded.at,
                        disposition = excluded.disposition",
                    &[call_id, agent_id, resolved, caller_repeated, context_accurate, notes, at, disposition],
                )?,
            Write::Turn { call_id, idx, role, content, at, confidence, helpful, sentiment } => {
                let mut tx = c.transaction()?;
                tx.execute(
                    "INSERT INTO turns (call_id, idx, role, content, at, confidence, helpful)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (call_id, idx) DO UPDATE SET role = excluded.role,
                        content = excluded.content, at = excluded.at,
                        confidence = excluded.confidence, helpful = excluded.helpful",
                    &[call_id, &(*idx as i64), role, content, at, confidence, helpful],
                )?;
                if let Some(score) = sentiment {
                    let label = format!("{:?}", crate::monitor::sentiment::SentimentLabel::of(*score))
                        .to_lowercase();
                    tx.execute(
                        "INSERT INTO sentiment (call_id, turn_idx, score, label, at) VALUES ($1, $2, $3, $4, $5)
                         ON CONFLICT (call_id, turn_idx) DO UPDATE SET score = excluded.score,
                            label = excluded.label, at = excluded.at",
                        &[call_id, &(*idx as i64), score, &label, at],
                    )?;
                }
                tx.commit()?;
                1
            }
            Write::Decision { call_id, trigger, urgency, description, rule, evidence, decided_at, latency_us } => {
                let mut tx = c.transaction()?;
                tx.execute(
                    "INSERT INTO decisions (call_id, trigger, urgency, description, rule, evidence, decided_at, latency_us)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                     ON CONFLICT (call_id) DO UPDATE SET trigger = excluded.trigger, urgency = excluded.urgency,
                        description = excluded.description, rule = excluded.rule, evidence = excluded.evidence,
                        decided_at = excluded.decided_at, latency_us = excluded.latency_us",
                    &[call_id, trigger, urgency, description, rule, evidence, decided_at, &(*latency_us as i64)],
                )?;
                tx.execute("UPDATE calls SET escalated = true WHERE id = $1", &[call_id])?;
                tx.commit()?;
                1
            }
            Write::Context { call_id, json, summary_source, updated_at } => c.execute(
                "INSERT INTO contexts (call_id, json, summary_source, updated_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (call_id) DO UPDATE SET json = excluded.json,
                    summary_source = excluded.summary_source, updated_at = excluded.updated_at",
                &[call_id, json, summary_source, updated_at],
            )?,
            Write::Callback { call_id, number, reason, context, created_at } => {
                // One pending callback per number: a newer one replaces the older.
                c.execute(super::SUPERSEDE_CALLBACKS_POSTGRES, &[number, call_id])?;
                c.execute(
                "INSERT INTO callbacks (call_id, number, reason, context, created_at) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (call_id) DO UPDATE SET number = excluded.number, reason = excluded.reason,
                    context = excluded.context, created_at = excluded.created_at",
                &[call_id, number, reason, context, created_at],
            )?
            }
            Write::Agent { id, name, token_sha256, skills } => c.execute(
                "INSERT INTO agents (id, name, token_sha256, skills) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name,
                    token_sha256 = excluded.token_sha256, skills = excluded.skills",
                &[id, name, token_sha256, &serde_json::to_string(skills).unwrap_or_else(|_| "[]".into())],
            )?,
            Write::Handoff { call_id, agent_id, answered_at, whisper_seconds } => c.execute(
                "INSERT INTO handoffs (call_id, agent_id, answered_at, whisper_seconds) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (call_id) DO UPDATE SET agent_id = excluded.agent_id,
                    answered_at = excluded.answered_at, whisper_seconds = excluded.whisper_seconds",
                &[call_id, agent_id, answered_at, whisper_seconds],
            )?,
            Write::MediaLeg { call_id, row } => c.execute(
                "INSERT INTO media_legs (call_id, leg, codec, received, sent, lost, late_or_duplicate,
                    foreign_packets, malformed, jitter_ms, peer_fraction_lost, peer_jitter_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
                 ON CONFLICT (call_id, leg) DO UPDATE SET codec = excluded.codec, received = excluded.received,
                    sent = excluded.sent, lost = excluded.lost, late_or_duplicate = excluded.late_or_duplicate,
                    foreign_packets = excluded.foreign_packets, malformed = excluded.malformed,
                    jitter_ms = excluded.jitter_ms, peer_fraction_lost = excluded.peer_fraction_lost,
                    peer_jitter_ms = excluded.peer_jitter_ms",
                &[
                    call_id, &row.leg, &row.codec, &row.received, &row.sent, &row.lost, &row.late_or_duplicate,
                    &row.foreign, &row.malformed, &row.jitter_ms, &row.peer_fraction_lost, &row.peer_jitter_ms,
                ],
            )?,
            Write::CallEnded { id, ended_at, reason } => c.execute(
                "UPDATE calls SET ended_at = $2, end_reason = $3 WHERE id = $1",
                &[id, ended_at, reason],
            )?,
        };
        Ok(())
    }

    fn list_calls(&mut self, limit: usize) -> Result<Vec<CallRow>, StoreError> {
        let sql = format!("{} ORDER BY c.started_at DESC LIMIT $1", call_columns());
        let rows = self.client()?.query(&sql, &[&(limit as i64)])?;
        self.call_rows(rows)
    }

    fn call(&mut self, id: &str) -> Result<Option<CallRow>, StoreError> {
        let sql = format!("{} WHERE c.id = $1", call_columns());
        let rows = self.client()?.query(&sql, &[&id])?;
        Ok(self.call_rows(rows)?.into_iter().next())
    }

    fn context(&mut self, id: &str) -> Result<Option<String>, StoreError> {
        let row = self
            .client()?
            .query_opt("SELECT json FROM contexts WHERE call_id = $1", &[&id])?;
        Ok(row.map(|r| r.get(0)))
    }

    fn claim_callback(
        &mut self,
        call_id: &str,
        agent_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let row = self.client()?.query_opt(
            "UPDATE callbacks SET status = 'assigned', agent_id = $2, offered_to = NULL
             WHERE call_id = $1 AND status = 'pending' RETURNING number",
            &[&call_id, &agent_id],
        )?;
        Ok(row.map(|r| r.get(0)))
    }

    fn callbacks(&mut self) -> Result<Vec<CallbackRow>, StoreError> {
        let rows = self.client()?.query(
            "SELECT call_id, number, reason, context, created_at, status FROM callbacks
             WHERE status = 'pending' ORDER BY created_at",
            &[],
        )?;
        Ok(rows
            .iter()
            .map(|r| {
                let context: String = r.get(3);
                CallbackRow {
                    call_id: r.get(0),
                    number: r.get(1),
                    reason: r.get(2),
                    context: serde_json::from_str(&context).unwrap_or(serde_json::Value::Null),
                    created_at: r.get(4),
                    status: r.get(5),
                }
            })
            .collect())
    }

    fn stats(&mut self) -> Result<serde_json::Value, StoreError> {
        super::stats::figures(self)
    }

    fn agents(&mut self) -> Result<Vec<StoredAgent>, StoreError> {
        let rows = self.client()?.query(
            "SELECT id, name, token_sha256, skills, status FROM agents ORDER BY id",
            &[],
        )?;
        Ok(rows
            .iter()
            .map(|r| {
                let skills: String = r.get(3);
                StoredAgent {
                    id: r.get(0),
                    name: r.get(1),
                    token_sha256: r.get(2),
                    skills: serde_json::from_str(&skills).unwrap_or_default(),
                    status: r.get(4),
                }
            })
            .collect())
    }
}
