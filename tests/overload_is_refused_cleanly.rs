//! Limits at the edge: past `server.max_calls` a new call gets a clean 503
//! while the calls already up keep their audio; one IP opening connections too
//! fast gets 429; a call reaching `server.max_call_seconds` ends; a draining
//! gateway refuses new calls, says 503 on /healthz and lets live calls finish.

mod support;

use std::time::Duration;
use support::*;
use warmline::call::timeline::EndReason;
use warmline::sim::agent::ScriptedAgent;

/// The HTTP status of a refused WebSocket upgrade (None if it was accepted).
async fn upgrade_status(url: &str) -> Option<u16> {
    match tokio_tungstenite::connect_async(url).await {
        Ok(_) => None,
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Some(response.status().as_u16())
        }
        Err(e) => panic!("unexpected upgrade error: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_max_calls_a_new_call_gets_503_and_calls_up_keep_their_audio() {
    let ai = ScriptedAgent::start(warmline::demo::demo_script().unwrap())
        .await
        .unwrap();
    let gw = gateway(&ai.url(), |c| c.server.max_calls = 2).await;
    let (mut first, _w1) = started_caller(&gw.media_url(), "CAfirst").await;
    let (_second, _w2) = started_caller(&gw.media_url(), "CAsecond").await;
    let deadline = tokio::time::Instant::now() + SOON;
    while gw.shared.registry.counts().active < 2 {
        assert!(tokio::time::Instant::now() < deadline, "two calls up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(upgrade_status(&gw.media_url()).await, Some(503));
    let (status, body) = http(gw.addr, "GET", "/media", None, None).await;
    assert_eq!(status, 503);
    assert!(body.contains("max_calls"), "{body}");
    // The first call still hears its agent's greeting.
    let heard = first.audio(8000, SOON).await;
    assert_eq!(heard.len(), 8000, "a call already up is not disturbed");
    assert_eq!(gw.shared.registry.counts().active, 2);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_opening_connections_too_fast_gets_429() {
    let gw = gateway("ws://127.0.0.1:9", |c| {
        c.server.per_ip_rate = 1.0;
        c.server.per_ip_burst = 3;
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(http(gw.addr, "GET", "/v1/agents/x/ws", None, None).await.0);
    }
    assert_eq!(
        statuses.iter().filter(|&&s| s == 429).count(),
        3,
        "the burst of 3 passes (refused for other reasons), the rest is rate-limited: {statuses:?}"
    );
    // Other endpoints (health, API) are not rate-limited.
    assert_eq!(http(gw.addr, "GET", "/healthz", None, None).await.0, 200);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_reaches_max_call_seconds_ends() {
    let ai = ScriptedAgent::start(warmline::demo::demo_script().unwrap())
        .await
        .unwrap();
    let gw = gateway(&ai.url(), |c| c.server.max_call_seconds = 1).await;
    let started = std::time::Instant::now();
    let (mut caller, _w) = started_caller(&gw.media_url(), "CAlong").await;
    let (_, _) = caller.until_closed(Duration::from_secs(5)).await;
    let done = gw.shared.registry.wait_finished(1, SOON).await;
    let t = done.first().expect("the call ended");
    assert_eq!(t.end_reason(), Some(&EndReason::TimeLimit));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(4),
        "{took:?}"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_gateway_refuses_new_calls_and_lets_live_ones_finish() {
    let ai = ScriptedAgent::start(warmline::demo::demo_script().unwrap())
        .await
        .unwrap();
    let gw = gateway(&ai.url(), |_| {}).await;
    let (addr, url, shared) = (gw.addr, gw.media_url(), std::sync::Arc::clone(&gw.shared));
    let (mut caller, mut writer) = started_caller(&url, "CAlive").await;
    let deadline = tokio::time::Instant::now() + SOON;
    while shared.registry.counts().active < 1 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drain = tokio::spawn(gw.drain(Duration::from_secs(20)));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(upgrade_status(&url).await, Some(503), "new calls refused");
    let (status, body) = http(addr, "GET", "/healthz", None, None).await;
    assert_eq!((status, body.as_str()), (503, "draining"));
    // The live call goes on: it still hears audio, then hangs up normally.
    assert_eq!(caller.audio(4000, SOON).await.len(), 4000);
    caller.send(writer.stop("AC1", "CAlive")).await;
    let left = tokio::time::timeout(Duration::from_secs(10), drain)
        .await
        .expect("drain finished once the call ended")
        .unwrap();
    assert_eq!(left, 0, "no call was cut");
    let t = shared.registry.finished();
    assert_eq!(t[0].end_reason(), Some(&EndReason::CallerHangup));
}
