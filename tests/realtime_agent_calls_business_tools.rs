//! A Realtime agent behind warmline can do real work: the business functions
//! in `[realtime] tools` are declared to the model, each call is POSTed to the
//! tools URL (signed like the webhook), the answer goes back to the model as the
//! function's output (and the model is asked to go on), and the call records
//! the tool with its arguments and result. A slow tool, a failing one and
//! unreadable arguments reach the model as errors and the timeline as failed
//! tools. Real sockets: a local Realtime stand-in and a local tools server.

mod support;

use axum::extract::State;
use axum::http::HeaderMap;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::realtime::{FakeRealtime, Step};
use support::*;
use warmline::call::timeline::TimelineKind;
use warmline::sim::caller::{self, CallerOptions};

type Seen = Arc<Mutex<Vec<(HeaderMap, String)>>>;

async fn tools_server() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let app = axum::Router::new()
        .route(
            "/tools",
            axum::routing::post(
                |State(seen): State<Seen>, headers: HeaderMap, body: String| async move {
                    seen.lock().expect("seen").push((headers, body.clone()));
                    let call: Value = serde_json::from_str(&body).unwrap_or_default();
                    match call["tool"].as_str() {
                        Some("order_lookup") => (
                            axum::http::StatusCode::OK,
                            json!({"status": "shipped", "eta": "2026-12-03"}).to_string(),
                        ),
                        Some("slow_lookup") => {
                            tokio::time::sleep(Duration::from_secs(3)).await;
                            (axum::http::StatusCode::OK, "{}".to_string())
                        }
                        _ => (
                            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                            "database down".to_string(),
                        ),
                    }
                },
            ),
        )
        .with_state(Arc::clone(&seen));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/tools"), seen)
}

fn function_call(call_id: &str, name: &str, arguments: &str) -> Step {
    Step::Send(json!({
        "type": "response.function_call_arguments.done",
        "response_id": "resp_1", "item_id": format!("item_{call_id}"), "output_index": 0,
        "call_id": call_id, "name": name, "arguments": arguments,
    }))
}

fn tool(name: &str) -> warmline::config::RealtimeTool {
    warmline::config::RealtimeTool {
        name: name.into(),
        description: format!("{name} for the test"),
        parameters: json!({"type": "object", "properties": {"order_id": {"type": "string"}}}),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn business_functions_are_called_answered_and_recorded_and_failures_reach_the_model() {
    let (tools_url, seen) = tools_server().await;
    let fake = FakeRealtime::start(vec![
        Step::WaitFor("session.update"),
        Step::WaitAudioMs(300),
        function_call("call_1", "order_lookup", r#"{"order_id":"8821"}"#),
        Step::WaitForCount("response.create", 1),
        function_call("call_2", "slow_lookup", r#"{"order_id":"1"}"#),
        Step::WaitForCount("response.create", 2),
        function_call("call_3", "broken_lookup", r#"{"order_id":"2"}"#),
        Step::WaitForCount("response.create", 3),
        function_call("call_4", "order_lookup", "{not json"),
        Step::WaitForCount("response.create", 4),
    ])
    .await;
    let url = fake.url();
    let gw = gateway("ws://127.0.0.1:9/native-agent-not-used", |c| {
        c.realtime.url = url;
        c.realtime.tools = vec![
            tool("order_lookup"),
            tool("slow_lookup"),
            tool("broken_lookup"),
        ];
        c.realtime.tools_url = tools_url;
        c.realtime.tools_secret = "tools-secret".into();
        c.realtime.tools_timeout_ms = 500;
    })
    .await;
    let mut options = CallerOptions::new(gw.media_url(), noise(8000 * 6, 9), 1);
    options
        .custom_parameters
        .insert("agent".into(), "realtime".into());
    let _ = caller::run(options).await.expect("caller");
    let done = gw.shared.registry.wait_finished(1, SOON).await;
    gw.shutdown().await;
    let t = done.first().expect("the call finished");
    let log = fake.log();

    // Declared next to warmline's own function.
    let session = &log.first("session.update").expect("session.update")["session"];
    let names: Vec<&str> = session["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "escalate_to_human",
            "order_lookup",
            "slow_lookup",
            "broken_lookup"
        ]
    );
    assert_eq!(
        session["tools"][1]["parameters"]["properties"]["order_id"]["type"],
        "string"
    );

    // Each output went back to the model, paired with its call.
    let outputs: Vec<(String, Value)> = log
        .events
        .iter()
        .filter(|e| e["type"] == "conversation.item.create")
        .map(|e| {
            let item = &e["item"];
            (
                item["call_id"].as_str().unwrap_or("").to_string(),
                serde_json::from_str(item["output"].as_str().unwrap_or("null"))
                    .unwrap_or(Value::Null),
            )
        })
        .collect();
    let output = |id: &str| {
        outputs
            .iter()
            .find(|(c, _)| c == id)
            .map(|(_, o)| o.clone())
    };
    assert_eq!(
        output("call_1"),
        Some(json!({"status": "shipped", "eta": "2026-12-03"}))
    );
    for (id, why) in [
        ("call_2", "within 500 ms"),
        ("call_3", "500"),
        ("call_4", "not JSON"),
    ] {
        let out = output(id).unwrap_or_else(|| panic!("no output for {id}: {outputs:?}"));
        assert!(
            out["error"].as_str().is_some_and(|e| e.contains(why)),
            "{id}: {out}"
        );
    }

    // The tools server got signed requests it can verify (unparseable
    // arguments were never sent).
    let seen = seen.lock().expect("seen").clone();
    assert_eq!(seen.len(), 3, "{seen:?}");
    for (headers, body) in &seen {
        let ts: u64 = headers["x-warmline-timestamp"]
            .to_str()
            .expect("ts")
            .parse()
            .expect("n");
        let expected = warmline::util::signature::sign(b"tools-secret", ts, body.as_bytes());
        assert_eq!(
            headers["x-warmline-signature"].to_str().expect("sig"),
            expected
        );
    }
    let first: Value = serde_json::from_str(&seen[0].1).expect("json");
    assert_eq!(first["tool"], "order_lookup");
    assert_eq!(first["arguments"], json!({"order_id": "8821"}));

    // The call recorded every tool with its arguments and result.
    let used: Vec<(String, bool, Option<Value>, Option<Value>)> = t
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            TimelineKind::ToolUsed {
                name,
                ok,
                args,
                result,
                ..
            } => Some((
                name.clone(),
                *ok,
                args.as_deref().cloned(),
                result.as_deref().cloned(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(used.len(), 4, "{used:?}");
    assert_eq!(
        used[0],
        (
            "order_lookup".to_string(),
            true,
            Some(json!({"order_id": "8821"})),
            Some(json!({"status": "shipped", "eta": "2026-12-03"}))
        )
    );
    assert!(used[1..].iter().all(|u| !u.1), "{used:?}");
}
