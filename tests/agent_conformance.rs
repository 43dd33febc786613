//! Conformance suite for the native agent protocol (docs/agent-protocol.md,
//! version 1). It plays warmline's side of the socket against an agent and
//! checks the agent's side of the contract. Run it against your own agent:
//!
//! ```sh
//! WARMLINE_CONFORMANCE_AGENT_URL=ws://127.0.0.1:9000/agent cargo test --test agent_conformance
//! ```
//!
//! Without the variable it runs against the bundled scripted agent (the demo's),
//! so the suite itself is exercised in CI. Each check is its own test, named by
//! the rule it holds the agent to.

mod support;

use futures_util::{SinkExt, StreamExt};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use warmline::legs::media_streams::{self, MediaFormat, ProviderWriter, StartMeta, StreamMessage};

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The agent under test: the configured URL, else the bundled scripted agent
/// (returned too, to keep it serving while the test runs).
async fn agent_under_test() -> (String, Option<warmline::sim::agent::ScriptedAgent>) {
    if let Ok(url) = std::env::var("WARMLINE_CONFORMANCE_AGENT_URL") {
        return (url, None);
    }
    let agent = warmline::sim::agent::ScriptedAgent::start(
        warmline::demo::escalation_script().expect("bundled script"),
    )
    .await
    .expect("scripted agent");
    (agent.url(), Some(agent))
}

/// Connects and sends `connected` + `start` as warmline does.
async fn open_call(
    writer: &mut ProviderWriter,
) -> (Socket, Option<warmline::sim::agent::ScriptedAgent>) {
    let (url, agent) = agent_under_test().await;
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap_or_else(|e| panic!("the agent must accept a WebSocket at {url}: {e}"));
    let start = StartMeta {
        account_sid: "ACconformance".into(),
        stream_sid: String::new(),
        call_sid: "CAconformance".into(),
        tracks: vec!["inbound".into()],
        custom_parameters: [("customerId".to_string(), "C-1".to_string())].into(),
        media_format: MediaFormat::default(),
    };
    for text in [writer.connected(), writer.start(start)] {
        ws.send(Message::Text(text.into())).await.expect("send");
    }
    (ws, agent)
}

/// 20 ms μ-law frames of a voiced sound, then silence: an utterance.
fn utterance() -> Vec<Vec<u8>> {
    let loud = support::loud_frames(75);
    let mut frames: Vec<Vec<u8>> = vec![vec![0xFF; 160]; 25];
    frames.extend(loud.chunks(160).map(<[u8]>::to_vec));
    frames.extend(vec![vec![0xFF; 160]; 75]);
    frames
}

/// Streams `frames` in real time while collecting what the agent sends for `listen`.
async fn talk_and_listen(
    ws: &mut Socket,
    writer: &mut ProviderWriter,
    frames: &[Vec<u8>],
    listen: Duration,
) -> Vec<Message> {
    let mut got = Vec::new();
    let end = Instant::now() + listen;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut next = frames.iter();
    while Instant::now() < end {
        tokio::select! {
            _ = tick.tick() => {
                if let Some(f) = next.next() {
                    ws.send(Message::Text(writer.media(f).into())).await.expect("send media");
                }
            }
            msg = ws.next() => match msg {
                Some(Ok(m)) => got.push(m),
                Some(Err(e)) => panic!("the agent's socket failed: {e}"),
                None => break,
            },
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_only_valid_json_text_messages_of_the_agent_side() {
    let mut writer = ProviderWriter::new("MZconformance");
    let (mut ws, _agent) = open_call(&mut writer).await;
    let got = talk_and_listen(&mut ws, &mut writer, &utterance(), Duration::from_secs(6)).await;
    assert!(!got.is_empty(), "the agent said nothing in 6 s");
    for m in &got {
        match m {
            Message::Text(text) => {
                let parsed = media_streams::parse(text, 1 << 20)
                    .unwrap_or_else(|e| panic!("refused by warmline ({e}): {text}"));
                match parsed {
                    StreamMessage::Media { media, .. } => {
                        let bytes = media_streams::decode_payload(&media)
                            .unwrap_or_else(|e| panic!("bad payload ({e}): {text}"));
                        assert!(!bytes.is_empty(), "empty media payload: {text}");
                    }
                    StreamMessage::Mark { .. }
                    | StreamMessage::Clear { .. }
                    | StreamMessage::Turn { .. }
                    | StreamMessage::Escalate { .. }
                    | StreamMessage::Tool { .. }
                    | StreamMessage::Customer { .. }
                    | StreamMessage::Intent { .. } => {}
                    other => panic!("not an agent-side message: {other:?}"),
                }
            }
            Message::Binary(b) => panic!(
                "binary frame of {} bytes: the protocol is JSON text",
                b.len()
            ),
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_an_utterance_with_audio_and_reports_its_turn() {
    let mut writer = ProviderWriter::new("MZconformance");
    let (mut ws, _agent) = open_call(&mut writer).await;
    let got = talk_and_listen(&mut ws, &mut writer, &utterance(), Duration::from_secs(8)).await;
    let parsed: Vec<StreamMessage> = got
        .iter()
        .filter_map(|m| match m {
            Message::Text(t) => media_streams::parse(t, 1 << 20).ok(),
            _ => None,
        })
        .collect();
    let audio_bytes: usize = parsed
        .iter()
        .filter_map(|m| match m {
            StreamMessage::Media { media, .. } => media_streams::decode_payload(media).ok(),
            _ => None,
        })
        .map(|b| b.len())
        .sum();
    assert!(
        audio_bytes >= 8000 / 2,
        "the agent spoke less than 0.5 s ({audio_bytes} bytes)"
    );
    // Turns are optional in the protocol, but an agent that wants warmline to
    // monitor and hand off well reports what it said.
    let agent_turns = parsed
        .iter()
        .filter(|m| matches!(m, StreamMessage::Turn { turn, .. } if turn.role == warmline::domain::Role::Agent))
        .count();
    assert!(
        agent_turns >= 1,
        "no agent `turn` event: warmline cannot monitor this agent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tolerates_dtmf_and_echoed_marks_and_keeps_the_socket_open() {
    let mut writer = ProviderWriter::new("MZconformance");
    let (mut ws, _agent) = open_call(&mut writer).await;
    for text in [writer.dtmf('5'), writer.mark("not-one-of-yours")] {
        ws.send(Message::Text(text.into())).await.expect("send");
    }
    let got = talk_and_listen(&mut ws, &mut writer, &[], Duration::from_secs(1)).await;
    assert!(
        !got.iter().any(|m| matches!(m, Message::Close(_))),
        "the agent closed the call on a dtmf or an unknown mark"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tolerates_handoff_results_and_supervisor_hints_and_still_answers() {
    let mut writer = ProviderWriter::new("MZconformance");
    let (mut ws, _agent) = open_call(&mut writer).await;
    let result = warmline::domain::HandoffResult {
        outcome: warmline::domain::HandoffOutcome::Completed,
        agent: Some("alex".into()),
        note: Some("Refund issued; run the survey.".into()),
        conversation: vec![warmline::domain::Turn {
            role: warmline::domain::Role::User,
            content: "My order hasn't arrived.".into(),
            confidence: None,
        }],
    };
    let hint = warmline::domain::SupervisorHint {
        from: "sam".into(),
        text: "Offer the goodwill credit.".into(),
    };
    // Whatever the agent says on its own (a greeting) first.
    let _ = talk_and_listen(&mut ws, &mut writer, &[], Duration::from_secs(1)).await;
    for text in [
        writer.handoff_result(&result),
        writer.supervisor_hint(&hint),
    ] {
        ws.send(Message::Text(text.into())).await.expect("send");
    }
    let got = talk_and_listen(&mut ws, &mut writer, &utterance(), Duration::from_secs(8)).await;
    assert!(
        !got.iter().any(|m| matches!(m, Message::Close(_))),
        "the agent closed the call on a handoff_result or a supervisor_hint"
    );
    let spoke = got.iter().any(|m| {
        matches!(m, Message::Text(t) if matches!(
            media_streams::parse(t, 1 << 20),
            Ok(StreamMessage::Media { .. })
        ))
    });
    assert!(
        spoke,
        "the agent stopped answering after the extension events"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closes_the_socket_after_stop() {
    let mut writer = ProviderWriter::new("MZconformance");
    let (mut ws, _agent) = open_call(&mut writer).await;
    let _ = talk_and_listen(&mut ws, &mut writer, &[], Duration::from_millis(300)).await;
    ws.send(Message::Text(
        writer.stop("ACconformance", "CAconformance").into(),
    ))
    .await
    .expect("send stop");
    let closed = tokio::time::timeout(Duration::from_secs(3), async {
        while let Some(msg) = ws.next().await {
            match msg {
                Ok(Message::Close(_)) | Err(_) => return true,
                Ok(_) => {}
            }
        }
        true
    })
    .await;
    assert_eq!(
        closed,
        Ok(true),
        "the agent kept the socket open 3 s after stop"
    );
}
