//! At queue join the handoff context is POSTed to the configured webhook, signed
//! with HMAC-SHA256 over "<timestamp>.<body>", and retried when the receiver fails.

mod support;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;
use warmline::routing::webhook::{SIGNATURE_HEADER, TIMESTAMP_HEADER, sign};
use warmline::sim::agent::ScriptedAgent;
use warmline::sim::caller::{self, CallerOptions};

const SECRET: &str = "webhook-secret-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_screen_pop_is_signed_and_retried_until_delivered() {
    // A receiver that fails the first attempt and checks every signature.
    let seen: Arc<Mutex<Vec<(bool, serde_json::Value)>>> = Arc::default();
    let log = Arc::clone(&seen);
    let app = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: Bytes| {
            let log = Arc::clone(&log);
            async move {
                let ts: u64 = headers[TIMESTAMP_HEADER].to_str().unwrap().parse().unwrap();
                let valid = headers[SIGNATURE_HEADER].to_str().unwrap()
                    == sign(SECRET.as_bytes(), ts, &body);
                let json = serde_json::from_slice(&body).unwrap_or_default();
                let mut log = log.lock().unwrap();
                log.push((valid, json));
                if log.len() == 1 {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let ai = ScriptedAgent::start(ai_script_requesting_person())
        .await
        .unwrap();
    let gw = gateway(&ai.url(), |c| {
        c.webhook.url = hook.clone();
        c.webhook.secret = SECRET.into();
    })
    .await;
    let mut options = CallerOptions::new(gw.media_url(), caller_requesting_person(3), 10);
    options
        .custom_parameters
        .insert("name".into(), "Sarah Chen".into());
    caller::run(options).await.unwrap();
    let done = gw
        .shared
        .registry
        .wait_finished(1, Duration::from_secs(10))
        .await;
    let steps = handoff_steps(&done[0]);
    for _ in 0..50 {
        if seen.lock().unwrap().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2, "one failure, then delivered ({steps:?})");
    assert!(
        seen.iter().all(|(valid, _)| *valid),
        "every attempt carries a valid signature"
    );
    let body = &seen[1].1;
    assert_eq!(body["event"], "screen_pop");
    assert_eq!(body["context"]["customer"]["name"], "Sarah Chen");
    assert_eq!(
        body["context"]["escalationReason"]["trigger"],
        "customer_request"
    );
}
