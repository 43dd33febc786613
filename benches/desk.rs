//! The agent desk's two latency goals, measured over real WebSocket consoles
//! on one gateway (issue: "offer shown ≤ 100 ms after queue join; presence
//! change reflected on every console ≤ 200 ms").
//!
//! 20 consoles sign in over WebSocket (Authorization header, as the console
//! page does), then:
//! - **offer**: a call joins the queue (`Routing::enqueue`) → the `offer`
//!   message is read off a console's socket. Baseline, same run: the same
//!   step to an in-process console channel (no WebSocket), as `benches/cluster.rs`.
//! - **presence**: one console asks for `break` (or `available`) → every other
//!   console has read a `team` message showing it. Baseline, same run: a
//!   WebSocket ping → pong round trip on one console (the transport's floor).
//!
//! `cargo bench --bench desk` writes target/bench-report/desk.{json,md};
//! under `cargo test` it runs a few samples as a smoke check.

use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use warmline::config::Config;
use warmline::domain::Urgency;
use warmline::gateway::RunningGateway;
use warmline::routing::{HumanCommand, WithdrawReason};

const CONSOLES: usize = 20;
const TOKEN: &str = "bench-token";

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn samples() -> usize {
    if std::env::args().any(|a| a == "--bench") {
        300
    } else {
        5
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

async fn start() -> RunningGateway {
    let mut config = Config::default();
    config.server.listen = format!("127.0.0.1:{}", free_port());
    let dir = tempfile::tempdir().expect("tempdir").keep();
    config.store.path = dir.join("warmline.db");
    config.log.level = "warn".into();
    RunningGateway::start(config).await.expect("gateway starts")
}

/// A console signed in over WebSocket; what it reads goes to `seen` with the time.
async fn console(
    gw: &RunningGateway,
    id: &str,
    seen: mpsc::UnboundedSender<(String, String, Instant)>,
) -> mpsc::UnboundedSender<Message> {
    gw.shared
        .routing
        .register(id, id, TOKEN, vec!["desk".into()]);
    let mut request = format!("ws://{}/v1/agents/{id}/ws", gw.addr)
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {TOKEN}").parse().expect("header"),
    );
    let (ws, _): (Ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("console connects");
    let (mut sink, mut stream) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if sink.send(m).await.is_err() {
                break;
            }
        }
    });
    let me = id.to_string();
    tokio::spawn(async move {
        while let Some(Ok(m)) = stream.next().await {
            let at = Instant::now();
            let text = match m {
                Message::Text(t) => t.to_string(),
                Message::Pong(_) => "pong".to_string(),
                _ => continue,
            };
            if seen.send((me.clone(), text, at)).is_err() {
                break;
            }
        }
    });
    tx
}

/// Reads `seen` until `done` says so (or 10 s): the time it did.
async fn until(
    seen: &mut mpsc::UnboundedReceiver<(String, String, Instant)>,
    mut done: impl FnMut(&str, &serde_json::Value) -> bool,
) -> Instant {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let next = tokio::time::timeout_at(deadline, seen.recv())
            .await
            .expect("within 10 s")
            .expect("consoles alive");
        let (who, text, at) = next;
        let v: serde_json::Value = if text == "pong" {
            serde_json::json!({"event": "pong"})
        } else {
            serde_json::from_str(&text).unwrap_or_default()
        };
        if done(&who, &v) {
            return at;
        }
    }
}

fn shows(team: &serde_json::Value, agent: &str, status: &str) -> bool {
    team["team"]["agents"]
        .as_array()
        .is_some_and(|a| a.iter().any(|m| m["id"] == agent && m["status"] == status))
}

fn summary(mut v: Vec<f64>) -> serde_json::Value {
    v.sort_by(f64::total_cmp);
    let pick = |p: f64| {
        v.get(((v.len().max(1) - 1) as f64 * p).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    serde_json::json!({"samples": v.len(), "p50_us": pick(0.5), "p99_us": pick(0.99), "max_us": v.last().copied().unwrap_or(f64::NAN)})
}

async fn run(samples: usize) -> serde_json::Value {
    let gw = start().await;
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let mut consoles = Vec::new();
    for i in 0..CONSOLES {
        consoles.push(console(&gw, &format!("d{i}"), seen_tx.clone()).await);
    }
    // Everyone signed in and every console's team view settled.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    while seen.try_recv().is_ok() {}

    // Baseline for the offer: an in-process console channel, another skill.
    gw.shared
        .routing
        .register("chan", "chan", TOKEN, vec!["chan".into()]);
    let (chan_tx, mut chan_rx) = mpsc::channel(16);
    gw.shared
        .routing
        .console_connected("chan", chan_tx)
        .expect("channel console");
    let mut channel_us = Vec::new();
    let mut offer_us = Vec::new();
    for i in 0..samples {
        let call = format!("C{i}");
        let (notify, _events) = mpsc::channel(8);
        let started = Instant::now();
        gw.shared
            .routing
            .enqueue(&call, "chan", Urgency::Standard, Arc::default(), notify);
        loop {
            let cmd = tokio::time::timeout(Duration::from_secs(10), chan_rx.recv())
                .await
                .expect("an offer within 10 s")
                .expect("channel alive");
            if matches!(cmd, HumanCommand::Offer { ref call_id, .. } if *call_id == call) {
                break;
            }
        }
        channel_us.push(started.elapsed().as_secs_f64() * 1e6);
        gw.shared.routing.leave(&call, WithdrawReason::CallerHangup);

        let call = format!("W{i}");
        let (notify, _events) = mpsc::channel(8);
        let started = Instant::now();
        gw.shared
            .routing
            .enqueue(&call, "desk", Urgency::Standard, Arc::default(), notify);
        let at = until(&mut seen, |_, v| {
            v["event"] == "offer" && v["callId"] == call.as_str()
        })
        .await;
        offer_us.push(at.duration_since(started).as_secs_f64() * 1e6);
        gw.shared.routing.leave(&call, WithdrawReason::CallerHangup);
        tokio::time::sleep(Duration::from_millis(20)).await;
        while seen.try_recv().is_ok() {}
    }

    let mut pong_us = Vec::new();
    let mut presence_us = Vec::new();
    for i in 0..samples {
        let started = Instant::now();
        let _ = consoles[0].send(Message::Ping(Default::default()));
        until(&mut seen, |who, v| who == "d0" && v["event"] == "pong").await;
        pong_us.push(started.elapsed().as_secs_f64() * 1e6);

        let who = i % CONSOLES;
        let agent = format!("d{who}");
        let status = if (i / CONSOLES).is_multiple_of(2) {
            "break"
        } else {
            "available"
        };
        let started = Instant::now();
        let _ = consoles[who].send(Message::Text(
            serde_json::json!({"event": "status", "status": status})
                .to_string()
                .into(),
        ));
        let mut updated = std::collections::BTreeSet::new();
        let at = until(&mut seen, |reader, v| {
            if reader != agent && v["event"] == "team" && shows(v, &agent, status) {
                updated.insert(reader.to_string());
            }
            updated.len() == CONSOLES - 1
        })
        .await;
        presence_us.push(at.duration_since(started).as_secs_f64() * 1e6);
        tokio::time::sleep(Duration::from_millis(20)).await;
        while seen.try_recv().is_ok() {}
    }
    gw.shutdown().await;
    let (channel, offer, pong, presence) = (
        summary(channel_us),
        summary(offer_us),
        summary(pong_us),
        summary(presence_us),
    );
    let ratio = |a: &serde_json::Value, b: &serde_json::Value, k: &str| {
        a[k].as_f64().unwrap_or(f64::NAN) / b[k].as_f64().unwrap_or(f64::NAN)
    };
    serde_json::json!({
        "consoles": CONSOLES,
        "offer_channel_baseline": channel,
        "offer_websocket": offer,
        "offer_ratio_p50": ratio(&offer, &channel, "p50_us"),
        "offer_ratio_p99": ratio(&offer, &channel, "p99_us"),
        "ping_pong_baseline": pong,
        "presence_every_console": presence,
        "presence_ratio_p50": ratio(&presence, &pong, "p50_us"),
        "presence_ratio_p99": ratio(&presence, &pong, "p99_us"),
    })
}

fn markdown(r: &serde_json::Value) -> String {
    let row = |name: &str, s: &serde_json::Value, goal: &str| {
        format!(
            "| {name} | {} | {:.0} | {:.0} | {:.0} | {goal} |\n",
            s["samples"],
            s["p50_us"].as_f64().unwrap_or(f64::NAN),
            s["p99_us"].as_f64().unwrap_or(f64::NAN),
            s["max_us"].as_f64().unwrap_or(f64::NAN),
        )
    };
    let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
    let mut md = format!(
        "{} consoles on one gateway\n\n| step | samples | p50 µs | p99 µs | max µs | goal |\n|---|---|---|---|---|---|\n",
        r["consoles"]
    );
    md.push_str(&row(
        "queue join → offer on an in-process console channel (baseline)",
        &r["offer_channel_baseline"],
        "",
    ));
    md.push_str(&row(
        "queue join → `offer` read off the console's WebSocket",
        &r["offer_websocket"],
        "≤ 100 ms",
    ));
    md.push_str(&row(
        "WebSocket ping → pong, one console (baseline)",
        &r["ping_pong_baseline"],
        "",
    ));
    md.push_str(&row(
        "status change → `team` showing it on every other console",
        &r["presence_every_console"],
        "≤ 200 ms",
    ));
    md.push_str(&format!(
        "\noffer over WebSocket / channel: p50 ×{:.1}, p99 ×{:.1}; presence on all {} others / one ping: p50 ×{:.1}, p99 ×{:.1}\n",
        f("offer_ratio_p50"),
        f("offer_ratio_p99"),
        r["consoles"].as_u64().unwrap_or(0).saturating_sub(1),
        f("presence_ratio_p50"),
        f("presence_ratio_p99"),
    ));
    md
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let report = rt.block_on(run(samples()));
    let md = markdown(&report);
    println!("{md}");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-report");
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(dir.join("desk.json"), report.to_string());
        let _ = std::fs::write(dir.join("desk.md"), md);
    }
}
