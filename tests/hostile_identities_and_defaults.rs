//! Outsiders cannot choose identities or privileges, and the defaults are safe:
//! a reused provider call id never reaches another call's record, a rotated
//! token or an admin's "offline" ends the old console session at once, the call
//! lists need the API token, and an open API is refused off loopback.

mod support;

use futures_util::StreamExt;
use std::time::Duration;
use support::*;
use tokio_tungstenite::tungstenite::Message;
use warmline::config::Config;
use warmline::gateway::{GatewayError, RunningGateway};

/// One Media Streams call with `call_sid` that the caller ends at once.
async fn short_call(gw: &RunningGateway, ai: &mut RawAgent, call_sid: &str) {
    let (mut caller, mut writer) = started_caller(&gw.media_url(), call_sid).await;
    let (_agent, _start, _sid) = ai.accept().await;
    caller.send(writer.stop("ACtest", call_sid)).await;
    let _ = caller.until_closed(SOON).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_provider_call_id_never_reaches_another_calls_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("warmline.db");
    let mut ai = RawAgent::start().await;
    // The same CallSid on two gateway lifetimes sharing one database (the
    // in-memory registry forgets between them, as after a restart).
    for _ in 0..2 {
        let gw = gateway(&ai.url, |c| c.store.path = db.clone()).await;
        short_call(&gw, &mut ai, "CAreused").await;
        let done = gw.shared.registry.wait_finished(1, SOON).await;
        assert_ne!(
            done[0].call_id, "CAreused",
            "the provider's id is not the key"
        );
        gw.shutdown().await;
    }
    let store = warmline::store::Store::open(&db).expect("store");
    let rows = store.list_calls(10).await.expect("calls");
    let reused: Vec<_> = rows.iter().filter(|r| r.call_sid == "CAreused").collect();
    assert_eq!(reused.len(), 2, "both calls kept: {rows:?}");
    assert_ne!(reused[0].id, reused[1].id);
    assert!(reused.iter().all(|r| r.ended_at.is_some()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_gateway_has_every_queued_call_record_on_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("warmline.db");
    let gw = gateway("ws://127.0.0.1:9/none", |c| c.store.path = db.clone()).await;
    // Records queued just before the stop (as a call that ends as the gateway
    // stops queues its last rows) are written before shutdown returns.
    let queued = 3000;
    for i in 0..queued {
        gw.shared.store.write(warmline::store::Write::CallStarted {
            id: format!("call-{i}"),
            call_sid: format!("CA{i}"),
            started_at: "2026-12-03T07:00:00Z".into(),
            caller_number: None,
        });
    }
    gw.shutdown().await;
    let store = warmline::store::Store::open(&db).expect("store");
    let rows = store.list_calls(queued + 10).await.expect("calls");
    assert_eq!(
        rows.len(),
        queued,
        "every queued row is on disk at the stop"
    );
}

async fn console(
    gw: &RunningGateway,
    id: &str,
    token: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let url = format!("ws://{}/v1/agents/{id}/ws?token={token}", gw.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("console");
    let first = tokio::time::timeout(SOON, ws.next())
        .await
        .expect("a message");
    let text = match first {
        Some(Ok(Message::Text(t))) => t.to_string(),
        other => panic!("expected connected, got {other:?}"),
    };
    assert!(text.contains("\"connected\""), "{text}");
    ws
}

/// Reads until the console is closed by the gateway; the texts seen before.
async fn closed_by_gateway(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout(SOON, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => seen.push(t.to_string()),
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => return seen,
            Ok(Some(Ok(_))) => {}
            Err(_) => panic!("the old session is still open; saw {seen:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_token_or_an_admins_offline_ends_the_console_session_at_once() {
    let gw = gateway("ws://127.0.0.1:9/none", |c| {
        c.api.token = "admin-token".into();
        c.routing.agents.push(agent_seed("ann"));
    })
    .await;
    let mut old = console(&gw, "ann", "ann-secret-token").await;
    let rotate = r#"{"id": "ann", "name": "Ann", "token": "ann-new-token-2"}"#;
    let (status, body) = http(
        gw.addr,
        "POST",
        "/v1/agents",
        Some("admin-token"),
        Some(rotate),
    )
    .await;
    assert!((200..300).contains(&status), "{status} {body}");
    let said = closed_by_gateway(&mut old).await;
    assert!(said.iter().any(|t| t.contains("signed out")), "{said:?}");
    let agents = gw.shared.routing.agents();
    let ann = agents.iter().find(|a| a.id == "ann").expect("ann");
    assert!(!ann.connected, "no session left behind");

    // The new token signs in; an admin's "offline" ends that session too.
    let mut new = console(&gw, "ann", "ann-new-token-2").await;
    let offline = r#"{"status": "offline"}"#;
    let (status, _) = http(
        gw.addr,
        "POST",
        "/v1/agents/ann/status",
        Some("admin-token"),
        Some(offline),
    )
    .await;
    assert_eq!(status, 200);
    let said = closed_by_gateway(&mut new).await;
    assert!(said.iter().any(|t| t.contains("signed out")), "{said:?}");
    // And the agent can sign in again afterwards (the closed session did not
    // take the new one's place down with it).
    let _again = console(&gw, "ann", "ann-new-token-2").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let agents = gw.shared.routing.agents();
    assert!(agents.iter().any(|a| a.id == "ann" && a.connected));
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_lists_and_timelines_need_the_api_token() {
    let gw = gateway("ws://127.0.0.1:9/none", |c| {
        c.api.token = "admin-token".into()
    })
    .await;
    for path in ["/calls", "/calls/anything", "/v1/calls"] {
        let (status, _) = http(gw.addr, "GET", path, None, None).await;
        assert_eq!(status, 401, "{path} without the token");
    }
    let (status, _) = http(gw.addr, "GET", "/calls", Some("admin-token"), None).await;
    assert_eq!(status, 200);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_api_on_a_non_loopback_address_refuses_to_start() {
    let base = || {
        let mut c = Config::default();
        c.server.listen = "0.0.0.0:0".into();
        c.agent.url = "ws://127.0.0.1:9/none".into();
        c.store.path = tempfile::tempdir().expect("tempdir").keep().join("w.db");
        c
    };
    match RunningGateway::start(base()).await {
        Err(GatewayError::OpenApi(addr)) => {
            let text = GatewayError::OpenApi(addr).to_string();
            assert!(
                text.contains("api.token") && text.contains("allow_open"),
                "{text}"
            );
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("an open API on 0.0.0.0 started"),
    }
    let mut with_token = base();
    with_token.api.token = "admin-token".into();
    RunningGateway::start(with_token)
        .await
        .expect("a token is enough")
        .shutdown()
        .await;
    let mut opted_out = base();
    opted_out.api.allow_open = true;
    RunningGateway::start(opted_out)
        .await
        .expect("allow_open opts out")
        .shutdown()
        .await;
}

/// A console sign-in from the loopback address `from`; the HTTP status of the
/// upgrade (101 when it is signed in).
async fn sign_in_from(gw: &RunningGateway, from: &str, id: &str, token: &str) -> u16 {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    let local: std::net::SocketAddr = format!("{from}:0").parse().expect("addr");
    socket.bind(&local.into()).expect("bind");
    socket.connect(&gw.addr.into()).expect("connect");
    let std: std::net::TcpStream = socket.into();
    std.set_nonblocking(true).expect("nonblocking");
    let tcp = tokio::net::TcpStream::from_std(std).expect("tokio stream");
    let url = format!("ws://{}/v1/agents/{id}/ws?token={token}", gw.addr);
    match tokio_tungstenite::client_async(url, tcp).await {
        Ok((_ws, response)) => response.status().as_u16(),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("handshake: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_guesser_is_slowed_down_but_never_locks_the_real_agent_out() {
    let gw = gateway("ws://127.0.0.1:9/none", |c| {
        c.routing.agents.push(agent_seed("ann"));
    })
    .await;
    // A guesser at 127.0.0.2: its first failures are answered 401…
    let mut statuses = Vec::new();
    for i in 0..8 {
        statuses.push(sign_in_from(&gw, "127.0.0.2", "ann", &format!("guess-{i}")).await);
    }
    assert_eq!(&statuses[..5], &[401; 5], "{statuses:?}");
    // …then it must wait (429, the token not even checked), even with the
    // right token.
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");
    assert_eq!(
        sign_in_from(&gw, "127.0.0.2", "ann", "ann-secret-token").await,
        429
    );
    // The real agent at another address signs in at once.
    assert_eq!(
        sign_in_from(&gw, "127.0.0.3", "ann", "ann-secret-token").await,
        101
    );
    let metrics = gw.shared.render_metrics();
    assert!(metrics.contains(r#"kind="sign_in_backoff""#), "{metrics}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_console_signs_in_with_a_one_time_ticket_so_no_token_is_in_a_url() {
    let gw = gateway("ws://127.0.0.1:9", |c| {
        c.routing.agents.push(agent_seed("tia"))
    })
    .await;
    let http = reqwest::Client::new();
    let ticket_url = format!("http://{}/v1/agents/tia/ticket", gw.addr);
    // No token, or a wrong one: no ticket.
    let none = http.post(&ticket_url).send().await.expect("reply");
    assert_eq!(none.status(), 401);
    let wrong = http
        .post(&ticket_url)
        .bearer_auth("not-her-token")
        .send()
        .await
        .expect("reply");
    assert_eq!(wrong.status(), 401);
    // The token in a header buys a ticket…
    let buy = || async {
        http.post(&ticket_url)
            .bearer_auth("tia-secret-token")
            .send()
            .await
            .expect("reply")
            .json::<serde_json::Value>()
            .await
            .expect("JSON")
    };
    let reply = buy().await;
    let ticket = reply["ticket"].as_str().expect("a ticket").to_string();
    assert!(!ticket.contains("tia-secret-token"));
    assert_eq!(reply["expiresInSeconds"], 30);
    // …which signs the console in once.
    let url = format!("ws://{}/v1/agents/tia/ws?ticket={ticket}", gw.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("signed in with the ticket");
    let first = tokio::time::timeout(SOON, ws.next())
        .await
        .expect("a message");
    assert!(
        matches!(&first, Some(Ok(Message::Text(t))) if t.contains("\"connected\"")),
        "{first:?}"
    );
    drop(ws);
    tokio::time::sleep(Duration::from_millis(200)).await;
    match tokio_tungstenite::connect_async(url.as_str()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("a used ticket must be refused: {other:?}"),
    }
    // A ticket is for its agent only.
    let reply = buy().await;
    let other = format!(
        "ws://{}/v1/agents/ann/ws?ticket={}",
        gw.addr,
        reply["ticket"].as_str().unwrap_or_default()
    );
    assert!(
        tokio_tungstenite::connect_async(other.as_str())
            .await
            .is_err()
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guessed_call_id_tells_nothing_about_a_live_call_without_its_callers_token() {
    let mut ai = RawAgent::start().await;
    let gw = gateway(&ai.url, |c| {
        c.routing.context_url_secret = "node-secret".into()
    })
    .await;
    let (mut caller, mut writer) = started_caller(&gw.media_url(), "CAguessed").await;
    let (_agent, _start, _sid) = ai.accept().await;
    let id = live_call_id(&gw);
    let status = |call: &str, token: Option<String>| {
        let url = format!("http://{}/v1/webrtc/calls/{call}", gw.addr);
        async move {
            let mut request = reqwest::Client::new().get(url);
            if let Some(t) = token {
                request = request.header("x-call-token", t);
            }
            let r = request.send().await.expect("status request");
            (r.status().as_u16(), r.text().await.unwrap_or_default())
        }
    };
    // Someone who knows (or guessed) the id but holds no token learns nothing.
    let (code, body) = status(&id, None).await;
    assert_eq!(code, 404, "{body}");
    assert!(!body.contains("assistant"), "{body}");
    let (code, _) = status(&id, Some("00".repeat(32))).await;
    assert_eq!(code, 404);
    let (unknown, _) = status("no-such-call", None).await;
    assert_eq!(
        unknown, code,
        "the same answer as for an id that never existed"
    );
    // The caller's own token (the HMAC the POST answer carries) opens it.
    let mut mac =
        <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(b"node-secret").expect("key");
    hmac::Mac::update(&mut mac, format!("caller-status\n{id}").as_bytes());
    let token = hex::encode(hmac::Mac::finalize(mac).into_bytes());
    let (code, body) = status(&id, Some(token)).await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"stage\""), "{body}");
    caller.send(writer.stop("ACtest", "CAguessed")).await;
    let _ = caller.until_closed(SOON).await;
    gw.shutdown().await;
}
