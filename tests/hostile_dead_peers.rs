//! Dead and stalling peers are found and let go within their timeouts: a frozen
//! agent console is signed out (and the agent can sign in again), a caller
//! stream or an AI agent that goes silent without closing ends its leg, idle and
//! slow HTTP connections are closed, one address cannot hold every connection
//! slot, and a request body that never finishes gets 408. Real sockets; short
//! timeouts set in the config so each case takes about a second.

mod support;

use futures_util::{SinkExt, StreamExt};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use support::*;
use tokio_tungstenite::tungstenite::Message;
use warmline::config::Config;

/// Ping after 150 ms of quiet, give up after 600 ms.
fn quick_liveness(c: &mut Config) {
    c.server.ws_ping_interval_ms = 150;
    c.server.ws_peer_timeout_ms = 600;
}

/// Polls `f` until it holds or `within` passes.
async fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    f()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_console_is_signed_out_and_the_agent_can_sign_in_again() {
    let gw = gateway("ws://127.0.0.1:9/none", |c| {
        quick_liveness(c);
        c.routing.agents.push(agent_seed("ann"));
    })
    .await;
    let url = format!("ws://{}/v1/agents/ann/ws?token=ann-secret-token", gw.addr);
    let (mut frozen, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("console");
    let first = tokio::time::timeout(SOON, frozen.next()).await;
    assert!(
        matches!(&first, Ok(Some(Ok(Message::Text(t)))) if t.contains("connected")),
        "{first:?}"
    );
    let connected = |gw: &warmline::gateway::RunningGateway| {
        gw.shared
            .routing
            .agents()
            .iter()
            .any(|a| a.id == "ann" && a.connected)
    };
    assert!(connected(&gw));
    // The console stops reading (a frozen tab, a laptop lid closed): it never
    // answers a ping. The gateway must let it go instead of routing calls to it.
    let gone = eventually(Duration::from_secs(3), || !connected(&gw)).await;
    assert!(gone, "a console that answers nothing is still signed in");
    // The agent signs in again from a working console, which stays up because
    // it answers the pings (tungstenite answers them while it reads).
    let (mut fresh, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("sign in again");
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        match tokio::time::timeout(Duration::from_millis(100), fresh.next()).await {
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => {
                panic!("a console that answers pings was closed")
            }
            _ => {}
        }
    }
    assert!(connected(&gw), "the answering console stays signed in");
    drop(frozen);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_stream_that_goes_silent_ends_its_call() {
    let mut ai = RawAgent::start().await;
    let gw = gateway(&ai.url, quick_liveness).await;
    let (caller, _writer) = started_caller(&gw.media_url(), "CAsilent").await;
    let (mut agent, _, _) = ai.accept().await;
    // The agent stays healthy: it reads (and so answers pings) throughout.
    tokio::spawn(async move { while agent.stream.next().await.is_some() {} });
    // The caller's side vanishes without a FIN: no frame, no pong, no reads.
    let done = gw.shared.registry.wait_finished(1, SOON).await;
    assert_eq!(done.len(), 1, "the call is still up with a dead caller");
    let timeline = serde_json::to_string(&*done[0]).expect("json");
    assert!(timeline.contains("caller silent"), "{timeline}");
    drop(caller);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ai_agent_that_goes_silent_is_given_up() {
    let mut ai = RawAgent::start().await;
    let gw = gateway(&ai.url, quick_liveness).await;
    let (caller, mut writer) = started_caller(&gw.media_url(), "CAagentgone").await;
    let (agent, _, _) = ai.accept().await;
    // The caller is alive: it talks and listens.
    let (mut sink, mut stream) = (caller.sink, caller.stream);
    let talking = tokio::spawn(async move {
        let frame = vec![0xffu8; 160];
        for _ in 0..100 {
            let text = writer.media(&frame);
            if sink.send(Message::Text(text.into())).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // After 2 s the caller hangs up (the apology and the handoff that
        // follow a lost agent are other tests' business).
        let _ = sink
            .send(Message::Text(writer.stop("ACtest", "CAagentgone").into()))
            .await;
    });
    tokio::spawn(async move { while stream.next().await.is_some() {} });
    // The agent's process hangs: it holds the socket and does nothing. The
    // gateway gives it up within the timeout (the caller would hear the apology
    // and be handed on) instead of waiting for hours.
    let done = gw.shared.registry.wait_finished(1, SOON).await;
    assert_eq!(done.len(), 1, "the call waits on a silent AI agent");
    let timeline = serde_json::to_string(&*done[0]).expect("json");
    assert!(timeline.contains("agent silent"), "{timeline}");
    talking.abort();
    drop(agent);
    gw.shutdown().await;
}

/// A TCP connection to `to` from the loopback address `from` (Linux routes all
/// of 127.0.0.0/8 to lo), so one test can be two clients.
fn connect_from(from: &str, to: SocketAddr) -> std::net::TcpStream {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    let local: SocketAddr = format!("{from}:0").parse().expect("addr");
    socket.bind(&local.into()).expect("bind");
    socket.connect(&to.into()).expect("connect");
    socket.into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_http_connections_cannot_starve_the_health_check() {
    let gw = gateway("ws://127.0.0.1:9/none", |c| {
        c.server.http_header_timeout_ms = 400;
        c.server.max_connections_per_ip = 8;
    })
    .await;
    let addr = gw.addr;
    let outcome = tokio::task::spawn_blocking(move || {
        // One address opens its whole share and sends nothing.
        let mut idle: Vec<_> = (0..8).map(|_| connect_from("127.0.0.2", addr)).collect();
        std::thread::sleep(Duration::from_millis(100));
        // Its next connection is closed at once…
        let mut over = connect_from("127.0.0.2", addr);
        let refused_at_once = closed_by_peer_within(&mut over, Duration::from_millis(300));
        // …while the health check from elsewhere still answers.
        let health = {
            let mut s = std::net::TcpStream::connect(addr).expect("connect");
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .expect("write");
            s.set_read_timeout(Some(Duration::from_secs(2))).expect("t");
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            out
        };
        // A slow sender (one header byte every 100 ms) is closed by the header
        // timeout although it never stops sending.
        let mut slow = std::net::TcpStream::connect(addr).expect("connect");
        let started = Instant::now();
        let mut slow_closed = false;
        for b in b"GET /healthz HTTP/1.1\r\nHost: slow-slow-slow-slow-slow\r\n".iter() {
            if slow.write_all(&[*b]).is_err() {
                slow_closed = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            if started.elapsed() > Duration::from_secs(3) {
                break;
            }
        }
        let slow_closed =
            slow_closed || closed_by_peer_within(&mut slow, Duration::from_millis(200));
        // The idle connections are all gone by now (header timeout).
        let idle_closed = idle
            .iter_mut()
            .map(|s| closed_by_peer_within(s, Duration::from_millis(500)))
            .filter(|closed| *closed)
            .count();
        (refused_at_once, health, slow_closed, idle_closed)
    })
    .await
    .expect("client thread");
    let (refused_at_once, health, slow_closed, idle_closed) = outcome;
    assert!(
        refused_at_once,
        "a connection over the per-IP limit is kept"
    );
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(slow_closed, "a slow-header connection is held open");
    assert_eq!(idle_closed, 8, "idle connections are held open");
    let metrics = gw.shared.render_metrics();
    assert!(
        metrics.contains(r#"warmline_peer_drops_total{peer="http",kind="connections_per_ip"}"#),
        "{metrics}"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_that_never_finishes_gets_408() {
    let gw = gateway("ws://127.0.0.1:9/none", |c| {
        c.server.http_request_timeout_ms = 400;
    })
    .await;
    let addr = gw.addr;
    let (reply, took) = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        s.write_all(
            b"POST /v1/agents HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{\"id\":",
        )
        .expect("write");
        let started = Instant::now();
        s.set_read_timeout(Some(Duration::from_secs(3))).expect("t");
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).unwrap_or(0);
        (String::from_utf8_lossy(&buf[..n]).to_string(), started.elapsed())
    })
    .await
    .expect("client thread");
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    gw.shutdown().await;
}
