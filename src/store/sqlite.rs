//! The SQLite backend (embedded, single node): the schema, its migrations,
//! the writes and the read queries.

use super::{
    CallRow, CallbackRow, DecisionRow, HandoffRow, MediaLegRow, StoreBackend, StoreError,
    StoredAgent, Write,
};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::time::Duration;

/// Migrations in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE calls (
    id TEXT PRIMARY KEY,
    call_sid TEXT NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    end_reason TEXT,
    escalated INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE turns (
    call_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    at TEXT NOT NULL,
    confidence REAL,
    helpful INTEGER,
    PRIMARY KEY (call_id, idx)
);
CREATE TABLE sentiment (
    call_id TEXT NOT NULL,
    turn_idx INTEGER NOT NULL,
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
    latency_us INTEGER
);
CREATE TABLE contexts (
    call_id TEXT PRIMARY KEY,
    json TEXT NOT NULL,
    summary_source TEXT,
    updated_at TEXT NOT NULL
);
CREATE INDEX calls_started ON calls (started_at);
"#,
    r#"
CREATE TABLE callbacks (
    call_id TEXT PRIMARY KEY,
    number TEXT NOT NULL,
    reason TEXT NOT NULL,
    context TEXT NOT NULL,
    created_at TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending'
);
CREATE TABLE agents (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    token_sha256 TEXT NOT NULL,
    skills TEXT NOT NULL
);
CREATE TABLE handoffs (
    call_id TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL,
    offered_at TEXT,
    answered_at TEXT,
    merged_at TEXT,
    whisper_seconds REAL
);
"#,
    r#"
ALTER TABLE calls ADD COLUMN caller_number TEXT;
CREATE INDEX calls_caller_number ON calls (caller_number, started_at);
ALTER TABLE handoffs ADD COLUMN first_words_ms INTEGER;
ALTER TABLE agents ADD COLUMN status TEXT NOT NULL DEFAULT 'available';
CREATE TABLE wrapups (
    call_id TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL,
    resolved INTEGER,
    caller_repeated INTEGER,
    context_accurate INTEGER,
    notes TEXT NOT NULL DEFAULT '',
    at TEXT NOT NULL
);
"#,
    r#"
CREATE TABLE media_legs (
    call_id TEXT NOT NULL,
    leg TEXT NOT NULL,
    codec TEXT NOT NULL,
    received INTEGER NOT NULL,
    sent INTEGER NOT NULL,
    lost INTEGER NOT NULL,
    late_or_duplicate INTEGER NOT NULL,
    foreign_packets INTEGER NOT NULL,
    malformed INTEGER NOT NULL,
    jitter_ms INTEGER NOT NULL,
    peer_fraction_lost REAL,
    peer_jitter_ms INTEGER,
    PRIMARY KEY (call_id, leg)
);
"#,
    r#"
ALTER TABLE wrapups ADD COLUMN disposition TEXT NOT NULL DEFAULT '';
"#,
    r#"
ALTER TABLE callbacks ADD COLUMN agent_id TEXT;
"#,
    r#"
CREATE TABLE handoff_outcomes (
    call_id TEXT NOT NULL,
    outcome TEXT NOT NULL,
    agent TEXT,
    at TEXT NOT NULL
);
"#,
];

/// Opens the database in WAL mode and runs pending migrations.
fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(2))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(conn)
}

fn decision(conn: &Connection, id: &str) -> rusqlite::Result<Option<DecisionRow>> {
    conn.query_row(
        "SELECT trigger, urgency, description, rule, evidence, decided_at, latency_us FROM decisions WHERE call_id = ?1",
        params![id],
        |r| {
            let evidence: String = r.get(4)?;
            Ok(DecisionRow {
                trigger: r.get(0)?,
                urgency: r.get(1)?,
                description: r.get(2)?,
                rule: r.get(3)?,
                evidence: serde_json::from_str(&evidence).unwrap_or(serde_json::Value::Null),
                decided_at: r.get(5)?,
                latency_us: r.get(6)?,
            })
        },
    )
    .optional()
}

/// The handoff quality figures of one call, if a human agent took it.
fn handoff(conn: &Connection, id: &str) -> rusqlite::Result<Option<HandoffRow>> {
    conn.query_row(
        "SELECT h.agent_id, h.answered_at, h.merged_at, h.whisper_seconds, h.first_words_ms,
                w.resolved, w.caller_repeated, w.context_accurate, w.notes, w.disposition
         FROM handoffs h LEFT JOIN wrapups w ON w.call_id = h.call_id WHERE h.call_id = ?1",
        params![id],
        |r| {
            Ok(HandoffRow {
                agent_id: r.get(0)?,
                answered_at: r.get(1)?,
                merged_at: r.get(2)?,
                whisper_seconds: r.get(3)?,
                merge_to_first_words_ms: r.get(4)?,
                resolved: r.get(5)?,
                caller_repeated: r.get(6)?,
                context_accurate: r.get(7)?,
                notes: r.get(8)?,
                disposition: r.get::<_, Option<String>>(9)?.filter(|d| !d.is_empty()),
            })
        },
    )
    .optional()
}

/// The RTP legs' media figures of one call (none for WebSocket-only calls).
fn media_legs(conn: &Connection, id: &str) -> rusqlite::Result<Vec<MediaLegRow>> {
    let mut stmt = conn.prepare(
        "SELECT leg, codec, received, sent, lost, late_or_duplicate, foreign_packets, malformed,
                jitter_ms, peer_fraction_lost, peer_jitter_ms
         FROM media_legs WHERE call_id = ?1 ORDER BY leg",
    )?;
    let rows = stmt.query_map(params![id], |r| {
        Ok(MediaLegRow {
            leg: r.get(0)?,
            codec: r.get(1)?,
            received: r.get(2)?,
            sent: r.get(3)?,
            lost: r.get(4)?,
            late_or_duplicate: r.get(5)?,
            foreign: r.get(6)?,
            malformed: r.get(7)?,
            jitter_ms: r.get(8)?,
            peer_fraction_lost: r.get(9)?,
            peer_jitter_ms: r.get(10)?,
        })
    })?;
    rows.collect()
}

/// SQL: the calls that came from a number that had called in the 24 h before.
const RECONTACT: &str = "c.caller_number IS NOT NULL AND EXISTS (
    SELECT 1 FROM calls p WHERE p.caller_number = c.caller_number AND p.id != c.id
      AND julianday(c.started_at) - julianday(p.started_at) BETWEEN 0 AND 1)";

fn row(conn: &Connection, r: &rusqlite::Row<'_>) -> rusqlite::Result<CallRow> {
    let id: String = r.get(0)?;
    let reason: Option<String> = r.get(4)?;
    let recontact: i64 = conn.query_row(
        &format!("SELECT COUNT(*) FROM calls c WHERE {RECONTACT} AND c.id = ?1"),
        params![id],
        |r| r.get(0),
    )?;
    Ok(CallRow {
        decision: decision(conn, &id)?,
        handoff: handoff(conn, &id)?,
        media: media_legs(conn, &id)?,
        caller_number: r.get(6)?,
        recontact_within_24h: recontact > 0,
        call_sid: r.get(1)?,
        started_at: r.get(2)?,
        ended_at: r.get(3)?,
        end_reason: reason.and_then(|s| serde_json::from_str(&s).ok()),
        turns: r.get(5)?,
        id,
    })
}

const CALL_COLUMNS: &str = "SELECT c.id, c.call_sid, c.started_at, c.ended_at, c.end_reason,
    (SELECT COUNT(*) FROM turns t WHERE t.call_id = c.id), c.caller_number FROM calls c";

/// The most recent calls.
fn list_calls(conn: &Connection, limit: usize) -> rusqlite::Result<Vec<CallRow>> {
    let mut stmt = conn.prepare(&format!(
        "{CALL_COLUMNS} ORDER BY c.started_at DESC LIMIT ?1"
    ))?;
    let rows = stmt.query_map(params![limit as i64], |r| row(conn, r))?;
    rows.collect()
}

/// One call.
fn call(conn: &Connection, id: &str) -> rusqlite::Result<Option<CallRow>> {
    conn.query_row(
        &format!("{CALL_COLUMNS} WHERE c.id = ?1"),
        params![id],
        |r| row(conn, r),
    )
    .optional()
}

/// Pending callbacks, oldest first.
fn callbacks(conn: &Connection) -> rusqlite::Result<Vec<CallbackRow>> {
    let mut stmt = conn.prepare(
        "SELECT call_id, number, reason, context, created_at, status FROM callbacks WHERE status = 'pending' ORDER BY created_at",
    )?;
    let rows = stmt.query_map([], |r| {
        let context: String = r.get(3)?;
        Ok(CallbackRow {
            call_id: r.get(0)?,
            number: r.get(1)?,
            reason: r.get(2)?,
            context: serde_json::from_str(&context).unwrap_or(serde_json::Value::Null),
            created_at: r.get(4)?,
            status: r.get(5)?,
        })
    })?;
    rows.collect()
}

/// Registered human agents: (id, name, token hash, skills).
fn agents(conn: &Connection) -> rusqlite::Result<Vec<StoredAgent>> {
    let mut stmt =
        conn.prepare("SELECT id, name, token_sha256, skills, status FROM agents ORDER BY id")?;
    let rows = stmt.query_map([], |r| {
        let skills: String = r.get(3)?;
        Ok(StoredAgent {
            id: r.get(0)?,
            name: r.get(1)?,
            token_sha256: r.get(2)?,
            skills: serde_json::from_str(&skills).unwrap_or_default(),
            status: r.get(4)?,
        })
    })?;
    rows.collect()
}

/// SQLite, one connection on the store thread.
#[derive(Debug)]
pub struct SqliteBackend {
    conn: Connection,
}

impl SqliteBackend {
    /// Opens the database in WAL mode and runs pending migrations.
    pub fn open(path: &Path) -> rusqlite::Result<Self> {
        Ok(SqliteBackend { conn: open(path)? })
    }
}

impl super::stats::FigureSource for SqliteBackend {
    fn count(&mut self, sql: &str) -> Result<i64, StoreError> {
        Ok(self.conn.query_row(sql, [], |r| r.get(0))?)
    }

    fn average(&mut self, sql: &str) -> Result<Option<f64>, StoreError> {
        Ok(self.conn.query_row(sql, [], |r| r.get(0))?)
    }

    fn grouped(&mut self, sql: &str) -> Result<Vec<(String, i64)>, StoreError> {
        let mut stmt = self.conn.prepare(sql)?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn recontact_condition(&self) -> &'static str {
        RECONTACT
    }
}

impl StoreBackend for SqliteBackend {
    fn apply(&mut self, write: &Write) -> Result<(), StoreError> {
        Ok(apply(&self.conn, write)?)
    }

    fn list_calls(&mut self, limit: usize) -> Result<Vec<CallRow>, StoreError> {
        Ok(list_calls(&self.conn, limit)?)
    }

    fn call(&mut self, id: &str) -> Result<Option<CallRow>, StoreError> {
        Ok(call(&self.conn, id)?)
    }

    fn context(&mut self, id: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT json FROM contexts WHERE call_id = ?1",
                params![id],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn callbacks(&mut self) -> Result<Vec<CallbackRow>, StoreError> {
        Ok(callbacks(&self.conn)?)
    }

    fn claim_callback(
        &mut self,
        call_id: &str,
        agent_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let won = self.conn.execute(
            "UPDATE callbacks SET status = 'assigned', agent_id = ?2 WHERE call_id = ?1 AND status = 'pending'",
            params![call_id, agent_id],
        )?;
        if won == 0 {
            return Ok(None);
        }
        Ok(Some(self.conn.query_row(
            "SELECT number FROM callbacks WHERE call_id = ?1",
            params![call_id],
            |r| r.get(0),
        )?))
    }

    fn stats(&mut self) -> Result<serde_json::Value, StoreError> {
        super::stats::figures(self)
    }

    fn agents(&mut self) -> Result<Vec<StoredAgent>, StoreError> {
        Ok(agents(&self.conn)?)
    }

    fn recover_open_calls(&mut self, now: &str) -> Result<super::Recovered, StoreError> {
        let tx = self.conn.transaction()?;
        let callbacks = tx.execute(
            "INSERT INTO callbacks (call_id, number, reason, context, created_at, status)
             SELECT c.id, COALESCE(c.caller_number, ''), 'gateway_restart',
                    COALESCE((SELECT json FROM contexts x WHERE x.call_id = c.id), '{}'), ?1, 'pending'
             FROM calls c
             WHERE c.ended_at IS NULL AND c.escalated
               AND NOT EXISTS (SELECT 1 FROM callbacks b WHERE b.call_id = c.id)
               AND NOT EXISTS (SELECT 1 FROM handoffs h WHERE h.call_id = c.id AND h.merged_at IS NOT NULL)",
            params![now],
        )?;
        let closed = tx.execute(
            "UPDATE calls SET ended_at = ?1, end_reason = ?2 WHERE ended_at IS NULL",
            params![now, super::GATEWAY_RESTART],
        )?;
        tx.commit()?;
        Ok(super::Recovered { closed, callbacks })
    }
}

fn apply(conn: &Connection, w: &Write) -> rusqlite::Result<()> {
    match w {
        Write::CallStarted { id, call_sid, started_at, caller_number } => conn
            .execute(
                "INSERT INTO calls (id, call_sid, started_at, caller_number) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(id) DO UPDATE SET call_sid = excluded.call_sid, started_at = excluded.started_at,
                    caller_number = excluded.caller_number",
                params![id, call_sid, started_at, caller_number],
            )
            .map(drop),
        Write::HandoffOutcome { call_id, outcome, agent, at } => conn
            .execute(
                "INSERT INTO handoff_outcomes (call_id, outcome, agent, at) VALUES (?1, ?2, ?3, ?4)",
                params![call_id, outcome, agent, at],
            )
            .map(drop),
        Write::Merged { call_id, merged_at } => conn
            .execute("UPDATE handoffs SET merged_at = ?2 WHERE call_id = ?1", params![call_id, merged_at])
            .map(drop),
        Write::AgentFirstWords { call_id, ms } => conn
            .execute("UPDATE handoffs SET first_words_ms = ?2 WHERE call_id = ?1", params![call_id, *ms as i64])
            .map(drop),
        Write::AgentStatus { id, status } => conn
            .execute("UPDATE agents SET status = ?2 WHERE id = ?1", params![id, status])
            .map(drop),
        Write::Wrapup { call_id, agent_id, resolved, caller_repeated, context_accurate, notes, disposition, at } => conn
            .execute(
                "INSERT OR REPLACE INTO wrapups (call_id, agent_id, resolved, caller_repeated, context_accurate, notes, at, disposition)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![call_id, agent_id, resolved, caller_repeated, context_accurate, notes, at, disposition],
            )
            .map(drop),
        Write::Turn { call_id, idx, role, content, at, confidence, helpful, sentiment } => {
            conn.execute(
                "INSERT OR REPLACE INTO turns (call_id, idx, role, content, at, confidence, helpful)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![call_id, *idx as i64, role, content, at, confidence, helpful],
            )?;
            if let Some(score) = sentiment {
                conn.execute(
                    "INSERT OR REPLACE INTO sentiment (call_id, turn_idx, score, label, at) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        call_id,
                        *idx as i64,
                        score,
                        format!("{:?}", crate::monitor::sentiment::SentimentLabel::of(*score)).to_lowercase(),
                        at
                    ],
                )?;
            }
            Ok(())
        }
        Write::Decision { call_id, trigger, urgency, description, rule, evidence, decided_at, latency_us } => {
            conn.execute(
                "INSERT OR REPLACE INTO decisions (call_id, trigger, urgency, description, rule, evidence, decided_at, latency_us)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![call_id, trigger, urgency, description, rule, evidence, decided_at, *latency_us as i64],
            )?;
            conn.execute("UPDATE calls SET escalated = 1 WHERE id = ?1", params![call_id])
                .map(drop)
        }
        Write::Context { call_id, json, summary_source, updated_at } => conn
            .execute(
                "INSERT OR REPLACE INTO contexts (call_id, json, summary_source, updated_at) VALUES (?1, ?2, ?3, ?4)",
                params![call_id, json, summary_source, updated_at],
            )
            .map(drop),
        Write::Callback { call_id, number, reason, context, created_at } => {
            // One pending callback per number: a newer one replaces the older.
            conn.execute(super::SUPERSEDE_CALLBACKS_SQLITE, params![number, call_id])?;
            conn.execute(
                "INSERT OR REPLACE INTO callbacks (call_id, number, reason, context, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![call_id, number, reason, context, created_at],
            )
            .map(drop)
        }
        Write::Agent { id, name, token_sha256, skills } => conn
            .execute(
                "INSERT OR REPLACE INTO agents (id, name, token_sha256, skills) VALUES (?1, ?2, ?3, ?4)",
                params![id, name, token_sha256, serde_json::to_string(skills).unwrap_or_else(|_| "[]".into())],
            )
            .map(drop),
        Write::Handoff { call_id, agent_id, answered_at, whisper_seconds } => conn
            .execute(
                "INSERT OR REPLACE INTO handoffs (call_id, agent_id, answered_at, whisper_seconds) VALUES (?1, ?2, ?3, ?4)",
                params![call_id, agent_id, answered_at, whisper_seconds],
            )
            .map(drop),
        Write::MediaLeg { call_id, row } => conn
            .execute(
                "INSERT OR REPLACE INTO media_legs (call_id, leg, codec, received, sent, lost, late_or_duplicate,
                    foreign_packets, malformed, jitter_ms, peer_fraction_lost, peer_jitter_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![
                    call_id, row.leg, row.codec, row.received, row.sent, row.lost, row.late_or_duplicate,
                    row.foreign, row.malformed, row.jitter_ms, row.peer_fraction_lost, row.peer_jitter_ms
                ],
            )
            .map(drop),
        Write::CallEnded { id, ended_at, reason } => conn
            .execute(
                "UPDATE calls SET ended_at = ?2, end_reason = ?3 WHERE id = ?1",
                params![id, ended_at, reason],
            )
            .map(drop),
    }
}
