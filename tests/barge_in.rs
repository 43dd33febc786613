//! Barge-in: an agent `clear` or the caller talking over the agent flushes the
//! caller's audio at once, tells the provider to `clear`, and returns pending marks.

mod support;

use support::*;
use warmline::legs::media_streams::{AppWriter, StreamMessage};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_clear_flushes_the_callers_audio_within_one_frame() {
    let mut agent = RawAgent::start().await;
    let gw = gateway(&agent.url, |c| c.media.playout_lead_ms = 40).await;
    let (mut caller, _writer) = started_caller(&gw.media_url(), "CAclear").await;
    let (mut agent_peer, _, stream_sid) = agent.accept().await;
    let app = AppWriter::new(stream_sid);
    // Ten seconds of audio with a mark at the end, then clear after ~200 ms.
    for chunk in noise(160 * 500, 4).chunks(160) {
        agent_peer.send(app.media(chunk)).await;
    }
    agent_peer.send(app.mark("long-line")).await;
    let before = caller.audio(160 * 10, SOON).await;
    assert_eq!(before.len(), 1600);
    agent_peer.send(app.clear()).await;

    // Frames already released before the clear may still be in flight: at most
    // the 40 ms lead plus the frame being sent. Then `clear`, then nothing.
    let mut in_flight = 0;
    loop {
        match caller.next_msg(SOON).await.expect("caller gets clear") {
            StreamMessage::Media { .. } => in_flight += 1,
            StreamMessage::Clear { .. } => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(in_flight <= 3, "{in_flight} frames after the agent's clear");
    assert!(
        caller
            .next_msg(std::time::Duration::from_millis(300))
            .await
            .is_none(),
        "no audio after clear"
    );
    // The pending mark comes back to the agent, as Twilio does on clear.
    match agent_peer.next_msg(SOON).await {
        Some(StreamMessage::Mark { mark, .. }) => assert_eq!(mark.name, "long-line"),
        other => panic!("expected the pending mark back, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_speech_over_the_agent_barges_in() {
    let mut agent = RawAgent::start().await;
    let gw = gateway(&agent.url, |c| c.media.barge_in = true).await;
    let (mut caller, mut writer) = started_caller(&gw.media_url(), "CAbarge").await;
    let (mut agent_peer, _, stream_sid) = agent.accept().await;
    let app = AppWriter::new(stream_sid);
    for chunk in noise(160 * 250, 5).chunks(160) {
        agent_peer.send(app.media(chunk)).await;
    }
    agent_peer.send(app.mark("answer")).await;
    assert_eq!(caller.audio(160 * 5, SOON).await.len(), 800);
    // The caller starts talking: loud frames in real time.
    let speech = loud_frames(10);
    let mut cleared = false;
    let mut received = 800;
    for chunk in speech.chunks(160) {
        caller.send(writer.media(chunk)).await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    while let Some(msg) = caller.next_msg(std::time::Duration::from_millis(500)).await {
        match msg {
            StreamMessage::Media { .. } if !cleared => received += 160,
            StreamMessage::Media { .. } => panic!("audio after clear"),
            StreamMessage::Clear { .. } => cleared = true,
            _ => {}
        }
    }
    assert!(cleared, "the gateway told the provider to clear");
    assert!(
        received < 160 * 250 / 2,
        "the agent's 5 s line was cut short ({received} bytes heard)"
    );
    // The agent learns through its pending mark, and still hears the caller.
    let mut got_mark = false;
    let mut caller_audio = 0;
    while let Some(msg) = agent_peer
        .next_msg(std::time::Duration::from_millis(500))
        .await
    {
        match msg {
            StreamMessage::Mark { mark, .. } => got_mark |= mark.name == "answer",
            StreamMessage::Media { .. } => caller_audio += 1,
            _ => {}
        }
    }
    assert!(got_mark, "pending mark returned on barge-in");
    assert_eq!(
        caller_audio, 10,
        "the caller's speech still reaches the agent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn barge_in_can_be_turned_off() {
    let mut agent = RawAgent::start().await;
    let gw = gateway(&agent.url, |c| c.media.barge_in = false).await;
    let (mut caller, mut writer) = started_caller(&gw.media_url(), "CAnobarge").await;
    let (mut agent_peer, _, stream_sid) = agent.accept().await;
    let app = AppWriter::new(stream_sid);
    for chunk in noise(160 * 40, 6).chunks(160) {
        agent_peer.send(app.media(chunk)).await;
    }
    for chunk in loud_frames(10).chunks(160) {
        caller.send(writer.media(chunk)).await;
    }
    let heard = caller.audio(160 * 40, SOON).await;
    assert_eq!(
        heard.len(),
        160 * 40,
        "the whole line plays when barge-in is off"
    );
}
