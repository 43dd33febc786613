//! Hostile or broken input from the provider or the agent gets a typed, logged
//! error and the call carries on (or ends cleanly) — never a panic or a hang.

mod support;

use support::*;
use warmline::call::timeline::{EndReason, TimelineKind};
use warmline::domain::Party;
use warmline::legs::media_streams::AppWriter;

fn protocol_errors(t: &warmline::call::timeline::Timeline, leg: Party) -> Vec<String> {
    t.events
        .iter()
        .filter_map(|e| match &e.kind {
            TimelineKind::ProtocolError { leg: l, error } if *l == leg => Some(error.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_caller_messages_are_dropped_and_the_call_carries_on() {
    let mut agent = RawAgent::start().await;
    let gw = gateway(&agent.url, |c| c.server.max_message_bytes = 4096).await;
    let (mut caller, mut writer) = started_caller(&gw.media_url(), "CAbad").await;
    let (mut agent_peer, _, _) = agent.accept().await;

    caller.send("{this is not json").await;
    caller
        .send(r#"{"event":"media","streamSid":"MZ","media":{"payload":"***not base64***"}}"#)
        .await;
    caller.send(r#"{"event":"media","streamSid":"MZ"}"#).await;
    caller
        .send(r#"{"event":"teleport","streamSid":"MZ"}"#)
        .await;
    caller
        .send(format!(
            r#"{{"event":"media","media":{{"payload":"{}"}}}}"#,
            "A".repeat(8000)
        ))
        .await;
    caller.send_binary(vec![0xFF; 160]).await;
    caller.send(writer.start(start_meta("CAbad"))).await;
    caller
        .send(r#"{"event":"dtmf","dtmf":{"digit":"99"}}"#)
        .await;

    // The call is still up: good audio after all that arrives intact.
    let good = noise(160 * 5, 11);
    for chunk in good.chunks(160) {
        caller.send(writer.media(chunk)).await;
    }
    assert_eq!(agent_peer.audio(good.len(), SOON).await, good);
    caller.send(writer.stop("ACtest", "CAbad")).await;
    let done = gw.shared.registry.wait_finished(1, SOON).await;
    let timeline = &done[0];
    assert_eq!(timeline.end_reason(), Some(&EndReason::CallerHangup));
    let errors = protocol_errors(timeline, Party::Caller).join("\n");
    for expected in [
        "malformed JSON",
        "not valid base64",
        "invalid message",
        "exceeds the 4096-byte limit",
        "binary WebSocket frame",
        "a second start",
        "invalid DTMF digit",
    ] {
        assert!(
            errors.contains(expected),
            "missing {expected:?} in:\n{errors}"
        );
    }
    assert!(
        !errors.contains("teleport"),
        "unknown events are ignored, not errors"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_in_the_wrong_codec_is_refused_with_a_close_code() {
    let agent = RawAgent::start().await;
    let gw = gateway(&agent.url, |_| {}).await;
    let mut caller = raw_caller(&gw.media_url()).await;
    let mut meta = start_meta("CAalaw");
    meta.media_format.encoding = "audio/x-alaw".into();
    let mut writer = warmline::legs::media_streams::ProviderWriter::new("MZalaw");
    caller.send(writer.connected()).await;
    caller.send(writer.start(meta)).await;
    let (code, _) = caller.until_closed(SOON).await;
    assert_eq!(code, Some(1003), "unsupported data");
    assert_eq!(gw.shared.registry.counts().total, 0, "no call was created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_before_start_is_dropped_and_a_silent_stream_times_out() {
    let agent = RawAgent::start().await;
    let gw = gateway(&agent.url, |c| c.server.start_timeout_ms = 300).await;
    let mut caller = raw_caller(&gw.media_url()).await;
    let mut writer = warmline::legs::media_streams::ProviderWriter::new("MZearly");
    caller.send(writer.media(&[0xFF; 160])).await;
    let (code, _) = caller.until_closed(SOON).await;
    assert_eq!(code, Some(1008), "closed for not starting in time");
    assert_eq!(gw.shared.registry.counts().total, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_garbage_ends_the_call_cleanly() {
    let mut agent = RawAgent::start().await;
    let gw = gateway(&agent.url, |_| {}).await;
    let (mut caller, _writer) = started_caller(&gw.media_url(), "CAflood").await;
    let (mut agent_peer, _, _) = agent.accept().await;
    for i in 0..50 {
        caller.send(format!("garbage {i}")).await;
    }
    let (code, _) = caller.until_closed(SOON).await;
    assert_eq!(code, Some(1000));
    agent_peer.until_closed(SOON).await;
    let done = gw.shared.registry.wait_finished(1, SOON).await;
    assert!(matches!(
        done[0].end_reason(),
        Some(EndReason::ProtocolErrors(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_agent_messages_are_dropped_and_the_caller_keeps_hearing_the_agent() {
    let mut agent = RawAgent::start().await;
    let gw = gateway(&agent.url, |_| {}).await;
    let (mut caller, mut writer) = started_caller(&gw.media_url(), "CAbadagent").await;
    let (mut agent_peer, _, sid) = agent.accept().await;
    let app = AppWriter::new(sid);
    agent_peer.send("][").await;
    agent_peer
        .send(r#"{"event":"media","media":{"payload":"%%%"}}"#)
        .await;
    agent_peer
        .send(r#"{"event":"escalate","escalate":{"trigger":"boredom"}}"#)
        .await;
    agent_peer.send(r#"{"event":"sparkle"}"#).await;
    agent_peer.send_binary(vec![1, 2, 3]).await;
    let line = noise(160 * 5, 12);
    agent_peer.send(app.media(&line)).await;
    assert_eq!(caller.audio(line.len(), SOON).await, line);
    caller.send(writer.stop("ACtest", "CAbadagent")).await;
    let done = gw.shared.registry.wait_finished(1, SOON).await;
    let errors = protocol_errors(&done[0], Party::AiAgent);
    assert_eq!(errors.len(), 4, "{errors:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_call_ids_get_a_404_with_a_reason() {
    let agent = RawAgent::start().await;
    let gw = gateway(&agent.url, |_| {}).await;
    let (status, body) = http(gw.addr, "GET", "/calls/CAnope", None, None).await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no call with id"), "{body}");
}

#[test]
fn check_config_rejects_a_bad_file_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[media]\nplayout_lead_ms = \"soon\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_warmline"))
        .args(["check-config", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml"), "{err}");
    let ok = std::process::Command::new(env!("CARGO_BIN_EXE_warmline"))
        .arg("check-config")
        .env("WARMLINE_AGENT_URL", "ws://10.9.9.9:1/x")
        .output()
        .unwrap();
    assert!(ok.status.success());
    assert!(String::from_utf8_lossy(&ok.stdout).contains("ws://10.9.9.9:1/x"));
}
