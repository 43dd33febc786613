//! End-to-end latency harness: how much time the gateway adds to each 20 ms
//! μ-law frame in Media Streams passthrough, over loopback, against a baseline
//! of the same caller talking to the same agent directly, measured in the same run.
//!
//! Run: `cargo bench --bench passthrough_latency` (writes target/bench-report/passthrough.json;
//! `WARMLINE_BENCH_CALLS=1,50` picks the concurrency levels).
//! Every frame carries its sequence number in its first 4 payload bytes, so send
//! and receive instants are matched exactly (the gateway forwards bytes unchanged).

use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use warmline::config::Config;
use warmline::gateway::RunningGateway;
use warmline::legs::media_streams::{
    self, AppWriter, MediaFormat, ProviderWriter, StartMeta, StreamMessage,
};

const FRAMES: u32 = 250;

type Stamps = Vec<(u32, f64)>;

fn frame(seq: u32) -> Vec<u8> {
    let mut f = vec![0xFFu8; 160];
    f[..4].copy_from_slice(&seq.to_be_bytes());
    f
}

fn seq_of(payload: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(payload.get(..4)?.try_into().ok()?))
}

fn micros(origin: Instant) -> f64 {
    origin.elapsed().as_secs_f64() * 1e6
}

/// What the agent saw on one call: call id, caller frames received, own frames sent.
type AgentLog = (String, Stamps, Stamps);

/// The agent: stamps each caller frame on arrival; after `start`, sends its own paced frames.
async fn agent_server(origin: Instant) -> (String, mpsc::Receiver<AgentLog>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("ws://{}/agent", listener.local_addr().expect("addr"));
    let (tx, rx) = mpsc::channel(1024);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let _ = tcp.set_nodelay(true);
            let tx = tx.clone();
            tokio::spawn(async move {
                let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                let (sink, mut stream) = ws.split();
                let mut sink = Some(sink);
                let mut received = Vec::new();
                let mut call = String::new();
                let mut sender = None;
                while let Some(Ok(Message::Text(text))) = stream.next().await {
                    match media_streams::parse(&text, 1 << 20) {
                        Ok(StreamMessage::Start {
                            start, stream_sid, ..
                        }) => {
                            call = start.call_sid.clone();
                            let app = AppWriter::new(stream_sid);
                            let Some(mut sink) = sink.take() else {
                                continue;
                            };
                            sender = Some(tokio::spawn(async move {
                                let mut sent = Vec::new();
                                let mut tick = tokio::time::interval(Duration::from_millis(20));
                                for seq in 0..FRAMES {
                                    tick.tick().await;
                                    sent.push((seq, micros(origin)));
                                    let msg = Message::Text(app.media(&frame(seq)).into());
                                    if sink.send(msg).await.is_err() {
                                        break;
                                    }
                                }
                                (sent, sink)
                            }));
                        }
                        Ok(StreamMessage::Media { media, .. }) => {
                            let at = micros(origin);
                            let payload = media_streams::decode_payload(&media).unwrap_or_default();
                            if let Some(seq) = seq_of(&payload) {
                                received.push((seq, at));
                            }
                        }
                        Ok(StreamMessage::Stop { .. }) => break,
                        _ => {}
                    }
                }
                let sent = match sender {
                    Some(task) => task.await.map(|(sent, _sink)| sent).unwrap_or_default(),
                    None => Vec::new(),
                };
                let _ = tx.send((call, received, sent)).await;
            });
        }
    });
    (url, rx)
}

/// One caller: sends paced frames, stamps the agent's frames on arrival.
async fn caller(url: String, n: usize, origin: Instant) -> (String, Stamps, Stamps) {
    let call_sid = format!("CAbench{n}");
    let (ws, _) = tokio_tungstenite::connect_async_with_config(url.as_str(), None, true)
        .await
        .expect("caller connects");
    let (mut sink, mut stream) = ws.split();
    let receiver = tokio::spawn(async move {
        let mut got = Vec::new();
        while let Some(Ok(Message::Text(text))) = stream.next().await {
            if let Ok(StreamMessage::Media { media, .. }) = media_streams::parse(&text, 1 << 20) {
                let at = micros(origin);
                let payload = media_streams::decode_payload(&media).unwrap_or_default();
                if let Some(seq) = seq_of(&payload) {
                    got.push((seq, at));
                }
            }
        }
        got
    });
    let mut writer = ProviderWriter::new(format!("MZbench{n}"));
    let start = StartMeta {
        account_sid: "ACbench".into(),
        stream_sid: String::new(),
        call_sid: call_sid.clone(),
        tracks: vec!["inbound".into()],
        custom_parameters: Default::default(),
        media_format: MediaFormat::default(),
    };
    for text in [writer.connected(), writer.start(start)] {
        sink.send(Message::Text(text.into())).await.expect("send");
    }
    let mut sent = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for seq in 0..FRAMES {
        tick.tick().await;
        sent.push((seq, micros(origin)));
        let msg = Message::Text(writer.media(&frame(seq)).into());
        sink.send(msg).await.expect("send media");
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let _ = sink
        .send(Message::Text(writer.stop("ACbench", &call_sid).into()))
        .await;
    let _ = sink.close().await;
    let received = tokio::time::timeout(Duration::from_secs(3), receiver)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    (call_sid, sent, received)
}

#[derive(Debug, Default)]
struct Result2 {
    up: Vec<f64>,
    down: Vec<f64>,
    lost_up: usize,
    lost_down: usize,
}

fn latencies(sent: &Stamps, received: &Stamps) -> (Vec<f64>, usize) {
    let at: HashMap<u32, f64> = received.iter().copied().collect();
    let mut out = Vec::new();
    let mut lost = 0;
    for (seq, t) in sent {
        match at.get(seq) {
            Some(r) => out.push(r - t),
            None => lost += 1,
        }
    }
    (out, lost)
}

async fn scenario(
    caller_url: Option<String>,
    agent_url: &str,
    agent_rx: &mut mpsc::Receiver<AgentLog>,
    calls: usize,
    origin: Instant,
) -> Result2 {
    let target = caller_url.unwrap_or_else(|| agent_url.to_string());
    let mut tasks = Vec::new();
    for n in 0..calls {
        tasks.push(tokio::spawn(caller(target.clone(), n, origin)));
        tokio::time::sleep(Duration::from_millis(3)).await; // spread frame phases
    }
    let mut callers = HashMap::new();
    for t in tasks {
        let (sid, sent, received) = t.await.expect("caller task");
        callers.insert(sid, (sent, received));
    }
    let mut result = Result2::default();
    for _ in 0..calls {
        let Some((sid, agent_received, agent_sent)) =
            tokio::time::timeout(Duration::from_secs(5), agent_rx.recv())
                .await
                .ok()
                .flatten()
        else {
            break;
        };
        let Some((caller_sent, caller_received)) = callers.get(&sid) else {
            continue;
        };
        let (up, lost_up) = latencies(caller_sent, &agent_received);
        let (down, lost_down) = latencies(&agent_sent, caller_received);
        result.up.extend(up);
        result.down.extend(down);
        result.lost_up += lost_up;
        result.lost_down += lost_down;
    }
    result
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

fn main() {
    let levels: Vec<usize> = std::env::var("WARMLINE_BENCH_CALLS")
        .unwrap_or_else(|_| "1,50".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let report = rt.block_on(async {
        let origin = Instant::now();
        let (agent_url, mut agent_rx) = agent_server(origin).await;
        let mut config = Config::default();
        config.server.listen = "127.0.0.1:0".into();
        config.agent.url = agent_url.clone();
        config.media.barge_in = false;
        config.store.path =
            std::env::temp_dir().join(format!("warmline-bench-{}.db", std::process::id()));
        let gateway = RunningGateway::start(config).await.expect("gateway");
        let mut rows = Vec::new();
        for &calls in &levels {
            let mut base = scenario(None, &agent_url, &mut agent_rx, calls, origin).await;
            let mut gw = scenario(
                Some(gateway.media_url()),
                &agent_url,
                &mut agent_rx,
                calls,
                origin,
            )
            .await;
            for (dir, b, g, lost) in [
                ("caller→agent", &mut base.up, &mut gw.up, gw.lost_up),
                ("agent→caller", &mut base.down, &mut gw.down, gw.lost_down),
            ] {
                let row = serde_json::json!({
                    "calls": calls,
                    "direction": dir,
                    "frames": g.len(),
                    "lost_frames_via_gateway": lost,
                    "direct_p50_us": pct(b, 0.50),
                    "direct_p99_us": pct(b, 0.99),
                    "gateway_p50_us": pct(g, 0.50),
                    "gateway_p99_us": pct(g, 0.99),
                    "gateway_p999_us": pct(g, 0.999),
                    "added_p50_us": pct(g, 0.50) - pct(b, 0.50),
                    "added_p99_us": pct(g, 0.99) - pct(b, 0.99),
                    "ratio_p50": pct(g, 0.50) / pct(b, 0.50),
                    "ratio_p99": pct(g, 0.99) / pct(b, 0.99),
                });
                rows.push(row);
            }
        }
        gateway.shutdown().await;
        rows
    });
    println!(
        "\nμ-law passthrough over loopback, {FRAMES} frames per call; 'direct' = same peers without the gateway (one hop)"
    );
    println!(
        "| calls | direction | frames | lost | direct p50 µs | direct p99 µs | gateway p50 µs | gateway p99 µs | gateway p99.9 µs | added p50 µs | added p99 µs | ratio p50 | ratio p99 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in &report {
        println!(
            "| {} | {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} | {:.2} |",
            r["calls"],
            r["direction"].as_str().unwrap_or(""),
            r["frames"],
            r["lost_frames_via_gateway"],
            r["direct_p50_us"].as_f64().unwrap_or(f64::NAN),
            r["direct_p99_us"].as_f64().unwrap_or(f64::NAN),
            r["gateway_p50_us"].as_f64().unwrap_or(f64::NAN),
            r["gateway_p99_us"].as_f64().unwrap_or(f64::NAN),
            r["gateway_p999_us"].as_f64().unwrap_or(f64::NAN),
            r["added_p50_us"].as_f64().unwrap_or(f64::NAN),
            r["added_p99_us"].as_f64().unwrap_or(f64::NAN),
            r["ratio_p50"].as_f64().unwrap_or(f64::NAN),
            r["ratio_p99"].as_f64().unwrap_or(f64::NAN),
        );
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-report");
    if std::fs::create_dir_all(&dir).is_ok() {
        let path = dir.join("passthrough.json");
        match serde_json::to_vec_pretty(&report) {
            Ok(json) => {
                if std::fs::write(&path, json).is_ok() {
                    println!("\nwritten {}", path.display());
                }
            }
            Err(e) => eprintln!("cannot write report: {e}"),
        }
    }
}
