//! Hostile Media Streams peers against a real gateway over real WebSockets:
//! floods of refused messages, keypad digits and marks are cut, counted and
//! not kept; the AI agent cannot send the gateway's own marks; an oversized
//! message closes the stream properly.

mod support;

use futures_util::SinkExt;
use std::time::Duration;
use support::*;
use tokio_tungstenite::tungstenite::Message;
use warmline::call::timeline::{EndReason, TimelineKind};
use warmline::legs::media_streams::{AppWriter, StreamMessage};

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_messages_interleaved_with_valid_ones_still_end_the_call_and_are_not_all_kept() {
    let mut ai = RawAgent::start().await;
    let gw = gateway(&ai.url, |_| {}).await;
    let (mut caller, mut writer) = started_caller(&gw.media_url(), "CAinterleaved").await;
    let _agent = ai.accept().await;
    // 39 invalid + 1 valid, over and over: never 50 in a row.
    'flood: for _ in 0..100 {
        for _ in 0..39 {
            if caller
                .sink
                .send(Message::Text("{not json".into()))
                .await
                .is_err()
            {
                break 'flood;
            }
        }
        if caller
            .sink
            .send(Message::Text(writer.media(&[0xff; 160]).into()))
            .await
            .is_err()
        {
            break;
        }
    }
    let done = gw.shared.registry.wait_finished(1, SOON).await;
    let t = done.first().expect("the call ended");
    assert!(
        matches!(t.end_reason(), Some(EndReason::ProtocolErrors(why)) if why.contains("within")),
        "{:?}",
        t.end_reason()
    );
    let kept = t
        .events
        .iter()
        .filter(|e| matches!(e.kind, TimelineKind::ProtocolError { .. }))
        .count();
    assert!(kept <= 20, "{kept} refused messages kept");
    assert!(t.suppressed.get("protocol_error").is_some_and(|n| *n > 0));
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keypad_and_mark_flood_is_cut_to_its_limits_and_the_call_record_stays_small() {
    let mut ai = RawAgent::start().await;
    let gw = gateway(&ai.url, |_| {}).await;
    let rss_before = rss_kb();
    let (mut caller, mut writer) = started_caller(&gw.media_url(), "CAflood").await;
    let (mut agent, _start, _sid) = ai.accept().await;
    let long_name = "m".repeat(250);
    for i in 0..3000 {
        let msg = if i % 2 == 0 {
            writer.dtmf('5')
        } else {
            writer.mark(&format!("{long_name}{i}"))
        };
        caller
            .sink
            .feed(Message::Text(msg.into()))
            .await
            .expect("send");
    }
    caller.sink.flush().await.expect("flush");
    // A well-behaved frame afterwards is still taken, then the caller hangs up.
    caller.send(writer.media(&[0xff; 160])).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    caller.send(writer.stop("ACtest", "CAflood")).await;
    let done = gw.shared.registry.wait_finished(1, SOON).await;
    let t = done.first().expect("ended");
    assert_eq!(t.end_reason(), Some(&EndReason::CallerHangup));
    // The agent got digits at the allowed rate, not 1,500.
    let mut digits = 0;
    while let Some(m) = agent.next_msg(Duration::from_millis(300)).await {
        if matches!(m, StreamMessage::Dtmf { .. }) {
            digits += 1;
        }
    }
    assert!((1..=40).contains(&digits), "{digits} digits forwarded");
    let bytes = serde_json::to_vec(&**t).expect("json").len();
    assert!(bytes < 2 << 20, "the call's record is {bytes} bytes");
    assert!(
        t.suppressed.get("mark_played").is_some_and(|n| *n > 0),
        "{:?}",
        t.suppressed
    );
    let growth_kb = rss_kb().saturating_sub(rss_before);
    eprintln!("timeline {bytes} bytes; process RSS grew {growth_kb} kB over the flooded call");
    let (_, metrics) = http(gw.addr, "GET", "/metrics", None, None).await;
    assert!(
        metrics.contains("warmline_peer_drops_total{peer=\"caller\",kind=\"dtmf\"}"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("peer_drops"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ai_agent_cannot_send_the_gateways_own_marks() {
    let mut ai = RawAgent::start().await;
    let gw = gateway(&ai.url, |_| {}).await;
    let (mut caller, mut writer) = started_caller(&gw.media_url(), "CAmarks").await;
    let (mut agent, _start, stream_sid) = ai.accept().await;
    let app = AppWriter::new(stream_sid);
    agent.send(app.media(&[0x11; 160])).await;
    for name in [
        "warmline-end",
        "whisper-end",
        "warmline-disclosure",
        "my-own-mark",
    ] {
        agent.send(app.mark(name)).await;
    }
    let mut marks = Vec::new();
    while let Some(m) = caller.next_msg(Duration::from_millis(800)).await {
        if let StreamMessage::Mark { mark, .. } = m {
            marks.push(mark.name);
        }
    }
    assert_eq!(
        marks,
        vec!["my-own-mark".to_string()],
        "only the agent's own mark reached the caller"
    );
    caller.send(writer.stop("ACtest", "CAmarks")).await;
    let done = gw.shared.registry.wait_finished(1, SOON).await;
    let refused = refused_messages(&done[0]);
    assert_eq!(refused.len(), 3, "{refused:?}");
    assert!(refused.iter().all(|e| e.contains("reserved")));
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_the_hard_size_cap_closes_the_stream_with_1009() {
    let mut ai = RawAgent::start().await;
    let gw = gateway(&ai.url, |_| {}).await;
    let (mut caller, _writer) = started_caller(&gw.media_url(), "CAhuge").await;
    let _agent = ai.accept().await;
    let huge = format!(
        "{{\"event\":\"media\",\"pad\":\"{}\"}}",
        "x".repeat(1 << 20)
    );
    let _ = caller.sink.send(Message::Text(huge.into())).await;
    let (code, _) = caller.until_closed(SOON).await;
    assert_eq!(code, Some(1009));
    gw.shutdown().await;
}
