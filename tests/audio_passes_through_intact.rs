//! μ-law audio crosses the gateway byte for byte in both directions over real
//! WebSockets; marks round-trip; start metadata and DTMF reach the agent.

mod support;

use support::*;
use warmline::legs::media_streams::{AppWriter, StreamMessage};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_audio_reaches_the_agent_unchanged_and_agent_audio_reaches_the_caller_unchanged() {
    let mut agent = RawAgent::start().await;
    let gw = gateway(&agent.url, |_| {}).await;
    let (mut caller, mut writer) = started_caller(&gw.media_url(), "CApass1").await;
    let (mut agent_peer, start, stream_sid) = agent.accept().await;
    assert_eq!(start.call_sid, "CApass1");
    assert_eq!(start.custom_parameters["customerId"], "C-1042");
    assert_eq!(start.media_format.encoding, "audio/x-mulaw");

    // Caller → agent: 50 frames of distinct bytes.
    let said = noise(160 * 50, 1);
    for chunk in said.chunks(160) {
        caller.send(writer.media(chunk)).await;
    }
    let mut got = Vec::new();
    let mut last_chunk = 0u64;
    while got.len() < said.len() {
        match agent_peer
            .next_msg(SOON)
            .await
            .expect("agent receives media")
        {
            StreamMessage::Media {
                media,
                sequence_number,
                ..
            } => {
                // Provider-side details an agent built for Twilio relies on: string counters.
                let chunk: u64 = media
                    .chunk
                    .as_deref()
                    .expect("chunk")
                    .parse()
                    .expect("numeric string");
                assert_eq!(chunk, last_chunk + 1);
                last_chunk = chunk;
                assert!(sequence_number.is_some());
                assert_eq!(media.track.as_deref(), Some("inbound"));
                got.extend(warmline::legs::media_streams::decode_payload(&media).unwrap());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        got, said,
        "caller audio must arrive at the agent byte for byte"
    );

    // Agent → caller: a line of audio in one burst, then a mark.
    let app = AppWriter::new(stream_sid);
    let line = noise(160 * 40, 2);
    for chunk in line.chunks(320) {
        agent_peer.send(app.media(chunk)).await;
    }
    agent_peer.send(app.mark("line-1")).await;
    let heard = caller.audio(line.len(), SOON).await;
    assert_eq!(
        heard, line,
        "agent audio must reach the caller byte for byte"
    );
    match caller.next_msg(SOON).await {
        Some(StreamMessage::Mark {
            mark, stream_sid, ..
        }) => {
            assert_eq!(mark.name, "line-1");
            assert_eq!(
                stream_sid, "MZCApass1",
                "outbound messages carry the caller's streamSid"
            );
            caller.send(writer.mark(&mark.name)).await;
        }
        other => panic!("expected the mark after the audio, got {other:?}"),
    }
    match agent_peer.next_msg(SOON).await {
        Some(StreamMessage::Mark { mark, .. }) => assert_eq!(mark.name, "line-1"),
        other => panic!("expected the mark echo at the agent, got {other:?}"),
    }

    // DTMF goes to the agent.
    caller.send(writer.dtmf('7')).await;
    match agent_peer.next_msg(SOON).await {
        Some(StreamMessage::Dtmf { dtmf, .. }) => assert_eq!(dtmf.digit, "7"),
        other => panic!("expected dtmf, got {other:?}"),
    }
    caller.send(writer.stop("ACtest", "CApass1")).await;
    let (_, rest) = agent_peer.until_closed(SOON).await;
    assert!(
        rest.iter().any(|m| matches!(m, StreamMessage::Stop { .. })),
        "agent gets stop"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_audio_is_paced_in_real_time_not_burst() {
    let mut agent = RawAgent::start().await;
    let gw = gateway(&agent.url, |c| c.media.playout_lead_ms = 40).await;
    let (mut caller, _writer) = started_caller(&gw.media_url(), "CApace").await;
    let (mut agent_peer, _, stream_sid) = agent.accept().await;
    let app = AppWriter::new(stream_sid);
    // One second of audio in a single burst.
    for chunk in noise(8000, 3).chunks(160) {
        agent_peer.send(app.media(chunk)).await;
    }
    let t0 = std::time::Instant::now();
    let first_100ms = caller.audio(160 * 3, SOON).await;
    assert_eq!(
        first_100ms.len(),
        480,
        "the lead (40 ms) plus the current frame arrive at once"
    );
    let rest = caller.audio(8000 - 480, SOON).await;
    assert_eq!(rest.len(), 8000 - 480);
    // 50 frames at 20 ms cannot arrive in less than 47 frame times if paced.
    let elapsed = t0.elapsed();
    assert!(
        elapsed >= std::time::Duration::from_millis(900),
        "1 s of audio was delivered in {elapsed:?}: not paced"
    );
}
