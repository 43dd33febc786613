//! The real `warmline serve` process and its signals: SIGTERM drains (new
//! calls refused with 503, /healthz 503, the live call finishes, then a clean
//! exit); `kill -9` while a callback is saved, then a restart on the same
//! database: the callback and its handoff context are all still there.

mod support;

use std::process::Command;
use std::time::Duration;
use support::*;
use warmline::sim::agent::ScriptedAgent;
use warmline::sim::caller::{self, CallerOptions};

async fn active_calls(addr: std::net::SocketAddr) -> u64 {
    let (_, body) = http(addr, "GET", "/calls", None, None).await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    v["counts"]["active"].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_refuses_new_calls_lets_the_live_one_finish_then_exits_cleanly() {
    let ai = ScriptedAgent::start(warmline::demo::demo_script().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = serve_process(dir.path(), &ai.url(), "", "").await;
    let url = format!("ws://{addr}/media");
    let (mut caller, mut writer) = started_caller(&url, "CAterm").await;
    let deadline = tokio::time::Instant::now() + SOON;
    while active_calls(addr).await < 1 {
        assert!(tokio::time::Instant::now() < deadline, "the call is up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body) = http(addr, "GET", "/media", None, None).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("draining"), "{body}");
    assert_eq!(http(addr, "GET", "/healthz", None, None).await.0, 503);
    // The live call is unaffected, and ends when the caller hangs up.
    assert_eq!(caller.audio(4000, SOON).await.len(), 4000);
    assert!(
        child.try_wait().unwrap().is_none(),
        "still serving the call"
    );
    caller.send(writer.stop("AC1", "CAterm")).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "exited after the drain"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "clean exit: {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_then_restart_keeps_every_saved_callback_and_context() {
    let ai = ScriptedAgent::start(ai_script_requesting_person())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = serve_process(dir.path(), &ai.url(), "", "").await;
    // Nobody is online: the caller who asks for a person gets a callback.
    let mut options = CallerOptions::new(
        format!("ws://{addr}/media"),
        caller_requesting_person(30),
        99,
    );
    options
        .custom_parameters
        .insert("name".into(), "Sarah Chen".into());
    options
        .custom_parameters
        .insert("from".into(), "+15551234567".into());
    let caller = tokio::spawn(caller::run(options));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let saved = loop {
        let (status, body) = http(addr, "GET", "/v1/callbacks", None, None).await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let list = v["callbacks"].as_array().cloned().unwrap_or_default();
        if status == 200 && !list.is_empty() {
            break list[0].clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a callback was saved: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let call_id = saved["call_id"].as_str().expect("call id").to_string();
    // The context as the API served it before the crash.
    let context_path = format!("/v1/calls/{call_id}/context");
    let (_, before) = http(addr, "GET", &context_path, None, None).await;

    child.kill().unwrap(); // SIGKILL: no drain, no flush
    child.wait().unwrap();
    caller.abort();
    let (mut child, addr) = serve_process(dir.path(), &ai.url(), "", "").await;
    let (status, body) = http(addr, "GET", "/v1/callbacks", None, None).await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let after = v["callbacks"]
        .as_array()
        .and_then(|l| l.iter().find(|c| c["call_id"] == call_id.as_str()).cloned())
        .unwrap_or_else(|| panic!("the callback survived kill -9: {body}"));
    assert_eq!(after["number"], saved["number"]);
    assert_eq!(after["context"], saved["context"]);
    assert_eq!(after["context"]["customer"]["name"], "Sarah Chen");
    let (status, context) = http(addr, "GET", &context_path, None, None).await;
    assert_eq!(status, 200, "{context}");
    let (before, context): (serde_json::Value, serde_json::Value) = (
        serde_json::from_str(&before).unwrap(),
        serde_json::from_str(&context).unwrap(),
    );
    assert_eq!(
        context["escalationReason"], before["escalationReason"],
        "the saved context is the one served before the crash"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}
