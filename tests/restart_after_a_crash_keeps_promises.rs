//! A gateway that died without ending its calls (kill -9) leaves them open in
//! the database. The next start closes them with reason `gateway_restart`, and
//! every escalated caller among them who never reached a person becomes a
//! callback: nothing a caller was promised is lost.

mod support;

use support::*;
use warmline::store::{Store, Write};

fn decision(call_id: &str) -> Write {
    Write::Decision {
        call_id: call_id.into(),
        trigger: "customer_request".into(),
        urgency: "standard".into(),
        description: "asked for a person".into(),
        rule: "explicit_request".into(),
        evidence: "[0]".into(),
        decided_at: "2026-12-01T08:00:02Z".into(),
        latency_us: 40,
    }
}

fn started(id: &str, number: &str) -> Write {
    Write::CallStarted {
        id: id.into(),
        call_sid: format!("CA-{id}"),
        started_at: "2026-12-01T08:00:00Z".into(),
        caller_number: Some(number.into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_a_crash_left_open_are_closed_and_cut_off_escalated_callers_get_a_callback() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("warmline.db");
    {
        let store = Store::open(&db).expect("store");
        // Escalated, waiting for a person when the gateway died.
        store.write(started("waiting", "+15550101"));
        store.write(decision("waiting"));
        store.write(Write::Context {
            call_id: "waiting".into(),
            json: r#"{"conversationId":"waiting","intent":"refund"}"#.into(),
            summary_source: "{}".into(),
            updated_at: "2026-12-01T08:00:02Z".into(),
        });
        // Escalated and already with a person (merged): no callback owed.
        store.write(started("merged", "+15550102"));
        store.write(decision("merged"));
        store.write(Write::Handoff {
            call_id: "merged".into(),
            agent_id: "ann".into(),
            answered_at: "2026-12-01T08:00:05Z".into(),
            whisper_seconds: Some(12.0),
        });
        store.write(Write::Merged {
            call_id: "merged".into(),
            merged_at: "2026-12-01T08:00:18Z".into(),
        });
        // Talking to the AI, never escalated: closed, no callback.
        store.write(started("ai-only", "+15550103"));
        // Finished properly before the crash: untouched.
        store.write(started("done", "+15550104"));
        store.write(Write::CallEnded {
            id: "done".into(),
            ended_at: "2026-12-01T08:01:00Z".into(),
            reason: r#"{"code":"caller_hangup"}"#.into(),
        });
        assert_eq!(store.flush().await.expect("flush"), 0);
    }

    let gw = gateway("ws://127.0.0.1:9/none", |c| c.store.path = db.clone()).await;
    let store = &gw.shared.store;
    let callbacks = store.callbacks().await.expect("callbacks");
    let owed: Vec<&str> = callbacks.iter().map(|c| c.call_id.as_str()).collect();
    assert_eq!(owed, vec!["waiting"], "{callbacks:?}");
    assert_eq!(callbacks[0].number, "+15550101");
    assert!(
        callbacks[0].context.to_string().contains("refund"),
        "the context travels with it"
    );
    for id in ["waiting", "merged", "ai-only"] {
        let row = store.call(id).await.expect("read").expect("row");
        assert!(row.ended_at.is_some(), "{id} closed");
        assert_eq!(
            row.end_reason.as_ref().and_then(|r| r["code"].as_str()),
            Some("gateway_restart")
        );
    }
    let done = store.call("done").await.expect("read").expect("row");
    assert_eq!(
        done.end_reason.as_ref().and_then(|r| r["code"].as_str()),
        Some("caller_hangup")
    );
    gw.shutdown().await;

    // A second start finds nothing more to do (no second callback).
    let gw = gateway("ws://127.0.0.1:9/none", |c| c.store.path = db.clone()).await;
    assert_eq!(
        gw.shared.store.callbacks().await.expect("callbacks").len(),
        1
    );
    gw.shutdown().await;
}
