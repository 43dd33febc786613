//! A hostile peer cannot make a call cost the gateway memory: calls flooded
//! with refused messages, oversized marks, keypad digits and media faster than
//! real time, one after another through the real `warmline serve` process,
//! leave its resident memory within 2 MB per call once its allocator is warm
//! (the kept records are capped; the rest is counted, not kept).

mod support;

use futures_util::SinkExt;
use std::time::Duration;
use support::*;
use tokio_tungstenite::tungstenite::Message;

/// The gateway process's resident memory, KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// One call whose provider floods the gateway, then hangs up.
async fn flooded_call(url: &str, ai: &mut RawAgent, n: usize) {
    let sid = format!("CAflood{n}");
    let (mut caller, mut writer) = started_caller(url, &sid).await;
    let (agent, _, _) = ai.accept().await;
    let long = "m".repeat(250);
    for i in 0..4000 {
        let msg = match i % 5 {
            0 => writer.dtmf('5'),
            1 => writer.mark(&format!("{long}{i}")),
            2 => "{\"event\":\"media\",\"media\":{\"payload\":\"%%%not base64%%%\"}}".to_string(),
            3 => format!("{{\"event\":\"nonsense{i}\",\"junk\":\"{long}\"}}"),
            _ => writer.media(&[0x7f; 160]),
        };
        if caller.sink.feed(Message::Text(msg.into())).await.is_err() {
            break;
        }
    }
    let _ = caller.sink.flush().await;
    let _ = caller
        .sink
        .send(Message::Text(writer.stop("ACtest", &sid).into()))
        .await;
    let _ = caller.until_closed(SOON).await;
    drop(agent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flooded_calls_cost_the_gateway_at_most_two_megabytes_each() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ai = RawAgent::start().await;
    let (mut gateway, addr) = serve_process(dir.path(), &ai.url, "per_ip_rate = 0.0", "").await;
    let pid = gateway.id();
    let url = format!("ws://{addr}/media");
    // Warm-up: the allocator's arenas and the runtime's threads.
    for n in 0..3 {
        flooded_call(&url, &mut ai, n).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(pid);
    let calls = 10;
    for n in 3..3 + calls {
        flooded_call(&url, &mut ai, n).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib(pid);
    let per_call_kib = after.saturating_sub(before) as f64 / calls as f64;
    println!(
        "gateway RSS {before} → {after} KiB over {calls} flooded calls: {per_call_kib:.0} KiB per call"
    );
    let _ = gateway.kill();
    let _ = gateway.wait();
    assert!(before > 0 && after > 0, "RSS readable");
    assert!(
        per_call_kib <= 2048.0,
        "a flooded call costs the gateway {per_call_kib:.0} KiB"
    );
}
