//! `GET /v1/stats`: the handoff quality figures, computed with the same SQL on
//! either backend (plain SQL both SQLite and PostgreSQL run; only the
//! "called again within 24 h" test differs, and each backend supplies it).

use super::StoreError;

/// What a backend runs for [`figures`].
pub trait FigureSource {
    /// One integer (`COUNT(*)`, a sum cast to BIGINT).
    fn count(&mut self, sql: &str) -> Result<i64, StoreError>;
    /// One average (cast to DOUBLE PRECISION; NULL when there are no rows).
    fn average(&mut self, sql: &str) -> Result<Option<f64>, StoreError>;
    /// (key, count) rows of a `SELECT key, COUNT(*) … GROUP BY` query.
    fn grouped(&mut self, sql: &str) -> Result<Vec<(String, i64)>, StoreError>;
    /// `WHERE` condition on `calls c`: the number called before within 24 h.
    fn recontact_condition(&self) -> &'static str;
}

/// The share of wrap-ups answering `column` with yes (None before any answer).
fn flag_rate(db: &mut impl FigureSource, column: &str) -> Result<Option<f64>, StoreError> {
    db.average(&format!(
        "SELECT CAST(AVG(CASE WHEN {column} THEN 1.0 ELSE 0.0 END) AS DOUBLE PRECISION)
         FROM wrapups WHERE {column} IS NOT NULL"
    ))
}

/// A `SELECT key, COUNT(*) … GROUP BY` as a JSON object.
fn grouped(
    db: &mut impl FigureSource,
    sql: &str,
) -> Result<serde_json::Map<String, serde_json::Value>, StoreError> {
    Ok(db
        .grouped(sql)?
        .into_iter()
        .map(|(k, n)| (k, n.into()))
        .collect())
}

/// Handoff quality figures over every stored call.
pub fn figures(db: &mut impl FigureSource) -> Result<serde_json::Value, StoreError> {
    let calls = db.count("SELECT COUNT(*) FROM calls")?;
    let escalated = db.count("SELECT COUNT(*) FROM calls WHERE escalated")?;
    let handed_off = db.count("SELECT COUNT(*) FROM handoffs")?;
    let callbacks = db.count("SELECT COUNT(*) FROM callbacks")?;
    let merged = db.count("SELECT COUNT(*) FROM handoffs WHERE merged_at IS NOT NULL")?;
    let recontacts = db.count(&format!(
        "SELECT COUNT(*) FROM calls c WHERE {}",
        db.recontact_condition()
    ))?;
    let with_number = db.count("SELECT COUNT(*) FROM calls WHERE caller_number IS NOT NULL")?;
    let wrapups = db.count("SELECT COUNT(*) FROM wrapups")?;
    let rtp_legs = db.count("SELECT COUNT(*) FROM media_legs")?;
    let rtp_received =
        db.count("SELECT CAST(COALESCE(SUM(received), 0) AS BIGINT) FROM media_legs")?;
    let rtp_lost = db.count("SELECT CAST(COALESCE(SUM(lost), 0) AS BIGINT) FROM media_legs")?;
    let avg = |column: &str, table: &str| {
        format!(
            "SELECT CAST(AVG({column}) AS DOUBLE PRECISION) FROM {table} WHERE {column} IS NOT NULL"
        )
    };
    let avg_whisper = db.average(&avg("whisper_seconds", "handoffs"))?;
    let avg_decision_us = db.average(&avg("latency_us", "decisions"))?;
    let avg_first_words_ms = db.average(&avg("first_words_ms", "handoffs"))?;
    let rtp_jitter_ms = db.average(&avg("jitter_ms", "media_legs"))?;
    let by_trigger = grouped(
        db,
        "SELECT trigger, COUNT(*) FROM decisions GROUP BY trigger ORDER BY 2 DESC, 1",
    )?;
    // How handoff attempts ended: merged, declined, ring_timeout,
    // consult_declined, no_agent, returned_to_ai, transferred, …
    let mut outcomes = grouped(
        db,
        "SELECT outcome, COUNT(*) FROM handoff_outcomes GROUP BY outcome ORDER BY 2 DESC, 1",
    )?;
    // Overflows are kept with the outcomes but are not one: counted apart.
    let overflows = outcomes
        .remove("overflowed")
        .and_then(|n| n.as_i64())
        .unwrap_or(0);
    let returns_to_ai = outcomes
        .get("returned_to_ai")
        .and_then(serde_json::Value::as_i64)
        .unwrap_or(0);
    let share = |n: i64, of: i64| if of > 0 { n as f64 / of as f64 } else { 0.0 };
    Ok(serde_json::json!({
        "calls": calls,
        "escalated": escalated,
        "escalation_rate": share(escalated, calls),
        "escalations_by_trigger": by_trigger,
        "handed_to_human": handed_off,
        "handoff_outcomes": outcomes,
        "returns_to_ai": returns_to_ai,
        "overflows": overflows,
        "callbacks_saved": callbacks,
        "ai_resolved_rate": share(calls - escalated, calls),
        "avg_whisper_seconds": avg_whisper,
        "avg_decision_latency_us": avg_decision_us,
        "merged_with_human": merged,
        "avg_merge_to_agent_first_words_ms": avg_first_words_ms,
        "recontacts_within_24h": recontacts,
        "recontact_rate": share(recontacts, with_number),
        "wrapups": wrapups,
        "recovery_rate": flag_rate(db, "resolved")?,
        "caller_repeated_rate": flag_rate(db, "caller_repeated")?,
        "context_accurate_rate": flag_rate(db, "context_accurate")?,
        "rtp_legs": rtp_legs,
        "rtp_loss_rate": share(rtp_lost, rtp_received + rtp_lost),
        "rtp_avg_jitter_ms": rtp_jitter_ms,
    }))
}
