//! The PostgreSQL store keeps everything the SQLite store keeps: the same writes
//! read back as the same rows from both (a real PostgreSQL server), across a
//! reconnect, and an unreachable server is a clear error at start.

mod support;

use std::time::Duration;
use warmline::store::{MediaLegRow, Store, Write};

fn writes() -> Vec<Write> {
    let at = |s: u32| format!("2026-11-30T10:00:{s:02}.000Z");
    vec![
        Write::CallStarted {
            id: "CA1".into(),
            call_sid: "CA1".into(),
            started_at: at(0),
            caller_number: Some("+15550100".into()),
        },
        Write::CallStarted {
            id: "CA2".into(),
            call_sid: "CA2".into(),
            started_at: at(30),
            caller_number: Some("+15550100".into()),
        },
        Write::Turn {
            call_id: "CA1".into(),
            idx: 0,
            role: "user".into(),
            content: "I want a real person 😡 'quoted'".into(),
            at: at(1),
            confidence: None,
            helpful: None,
            sentiment: Some(-0.6),
        },
        Write::Turn {
            call_id: "CA1".into(),
            idx: 1,
            role: "assistant".into(),
            content: "Let me get someone.".into(),
            at: at(2),
            confidence: Some(0.25),
            helpful: Some(false),
            sentiment: None,
        },
        Write::Decision {
            call_id: "CA1".into(),
            trigger: "customer_request".into(),
            urgency: "standard".into(),
            description: "asked for a person".into(),
            rule: "explicit_request".into(),
            evidence: "[0]".into(),
            decided_at: at(2),
            latency_us: 41,
        },
        Write::Context {
            call_id: "CA1".into(),
            json: "{\"conversationId\":\"CA1\"}".into(),
            summary_source: "{}".into(),
            updated_at: at(2),
        },
        Write::Agent {
            id: "ana".into(),
            name: "Ana".into(),
            token_sha256: "ab".repeat(32),
            skills: vec!["billing".into()],
        },
        Write::AgentStatus {
            id: "ana".into(),
            status: "offline".into(),
        },
        Write::Handoff {
            call_id: "CA1".into(),
            agent_id: "ana".into(),
            answered_at: at(5),
            whisper_seconds: Some(12.5),
        },
        Write::HandoffOutcome {
            call_id: "c1".into(),
            outcome: "declined".into(),
            agent: Some("bob".into()),
            at: at(17),
        },
        Write::HandoffOutcome {
            call_id: "c1".into(),
            outcome: "merged".into(),
            agent: Some("ann".into()),
            at: at(18),
        },
        Write::Merged {
            call_id: "CA1".into(),
            merged_at: at(18),
        },
        Write::AgentFirstWords {
            call_id: "CA1".into(),
            ms: 640,
        },
        Write::Wrapup {
            call_id: "CA1".into(),
            agent_id: "ana".into(),
            resolved: Some(true),
            caller_repeated: Some(false),
            context_accurate: None,
            notes: "refund issued".into(),
            disposition: "Resolved".into(),
            at: at(40),
        },
        Write::MediaLeg {
            call_id: "CA1".into(),
            row: MediaLegRow {
                leg: "caller".into(),
                codec: "PCMU".into(),
                received: 900,
                sent: 880,
                lost: 3,
                late_or_duplicate: 1,
                foreign: 0,
                malformed: 0,
                jitter_ms: 4,
                peer_fraction_lost: Some(0.01),
                peer_jitter_ms: Some(5),
            },
        },
        // The same caller asked twice: the second callback replaces the first.
        Write::Callback {
            call_id: "CA1".into(),
            number: "+15550100".into(),
            reason: "no agents are online".into(),
            context: "{\"conversationId\":\"CA1\"}".into(),
            created_at: at(40),
        },
        Write::Callback {
            call_id: "CA2".into(),
            number: "+15550100".into(),
            reason: "no agent answered".into(),
            context: "{\"conversationId\":\"CA2\"}".into(),
            created_at: at(50),
        },
        // A web caller who gave no number never replaces another.
        Write::Callback {
            call_id: "CW1".into(),
            number: "".into(),
            reason: "no agent answered".into(),
            context: "{}".into(),
            created_at: at(51),
        },
        Write::Callback {
            call_id: "CW2".into(),
            number: "".into(),
            reason: "no agent answered".into(),
            context: "{}".into(),
            created_at: at(52),
        },
        Write::CallEnded {
            id: "CA1".into(),
            ended_at: at(60),
            reason: "\"caller_hung_up\"".into(),
        },
    ]
}

async fn everything(store: &Store) -> serde_json::Value {
    assert_eq!(store.flush().await.expect("flush"), 0, "every write landed");
    let agents: Vec<_> = store
        .agents()
        .await
        .expect("agents")
        .into_iter()
        .map(|a| (a.id, a.name, a.token_sha256, a.skills, a.status))
        .collect();
    serde_json::json!({
        "calls": store.list_calls(10).await.expect("list"),
        "one": store.call("CA1").await.expect("call"),
        "none": store.call("nope").await.expect("no call"),
        "context": store.context("CA1").await.expect("context"),
        "callbacks": store.callbacks().await.expect("callbacks"),
        "stats": store.stats().await.expect("stats"),
        "agents": agents,
    })
}

#[tokio::test]
async fn postgres_reads_back_what_sqlite_reads_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = Store::open(&dir.path().join("warmline.db")).expect("sqlite");
    let url = support::cluster::fresh_database("store").await;
    let pg = Store::open_postgres(&url).expect("postgres");
    for w in writes() {
        sqlite.write(w.clone());
        pg.write(w);
    }
    let from_sqlite = everything(&sqlite).await;
    let from_pg = everything(&pg).await;
    assert_eq!(from_pg, from_sqlite);
    // Not vacuous: the figures that need every table are there.
    assert_eq!(from_pg["stats"]["handed_to_human"], 1);
    assert_eq!(from_pg["stats"]["handoff_outcomes"]["declined"], 1);
    assert_eq!(from_pg["stats"]["handoff_outcomes"]["merged"], 1);
    assert_eq!(from_pg["stats"]["recontacts_within_24h"], 1);
    assert_eq!(from_pg["one"]["turns"], 2);
    let pending: Vec<&str> = from_pg["callbacks"]
        .as_array()
        .map(|a| a.iter().filter_map(|c| c["call_id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        pending,
        vec!["CA2", "CW1", "CW2"],
        "one pending callback per number, the newest"
    );
    assert!(
        !pg.location().contains("warmline:warmline@"),
        "password hidden: {}",
        pg.location()
    );

    // A second node opening the same database migrates nothing twice and sees it all.
    drop(pg);
    let again = Store::open_postgres(&url).expect("reopen");
    assert_eq!(everything(&again).await, from_sqlite);
}

#[tokio::test]
async fn an_unreachable_postgres_is_a_clear_error_at_start() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let started = std::time::Instant::now();
    let err = Store::open_postgres(&format!("postgres://wl:pw@127.0.0.1:{port}/wl"))
        .expect_err("nothing listens there");
    let text = err.to_string();
    assert!(
        text.contains("cannot use PostgreSQL at postgres://wl:***@127.0.0.1"),
        "{text}"
    );
    assert!(!text.contains("pw@"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn a_callback_is_claimed_by_exactly_one_agent_in_either_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = Store::open(&dir.path().join("warmline.db")).expect("sqlite");
    let url = support::cluster::fresh_database("claims").await;
    let pg = Store::open_postgres(&url).expect("postgres");
    for store in [&sqlite, &pg] {
        store.write(Write::Callback {
            call_id: "CB1".into(),
            number: "+15550100".into(),
            reason: "no agent answered".into(),
            context: "{}".into(),
            created_at: "2026-11-30T10:00:00.000Z".into(),
        });
        store.flush().await.expect("flushed");
        let (ann, bob) = tokio::join!(
            store.claim_callback("CB1", "ann"),
            store.claim_callback("CB1", "bob")
        );
        let won: Vec<_> = [ann.expect("ann's claim"), bob.expect("bob's claim")]
            .into_iter()
            .flatten()
            .collect();
        assert_eq!(won, vec!["+15550100".to_string()], "{}", store.location());
        assert!(store.callbacks().await.expect("list").is_empty());
        assert_eq!(
            store.claim_callback("CB9", "ann").await.expect("claim"),
            None,
            "an unknown callback is nobody's"
        );
    }
}
