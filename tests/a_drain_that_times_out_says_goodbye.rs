//! When a drain (SIGTERM) times out with a call still up, the caller is not cut
//! off mid-sentence: whatever they were hearing stops, they hear the closing
//! goodbye in full, then the stream is closed properly and the AI agent is hung
//! up; the call ends with reason `shutdown`. Real sockets.

mod support;

use std::time::Duration;
use support::*;
use warmline::legs::media_streams::{self, StreamMessage};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callers_left_at_the_drain_timeout_hear_a_goodbye_then_a_proper_close() {
    let mut ai = RawAgent::start().await;
    let gw = gateway(&ai.url, |_| {}).await;
    let shared = std::sync::Arc::clone(&gw.shared);
    let (mut caller, mut writer) = started_caller(&gw.media_url(), "CAdrain").await;
    let (mut agent, _, _) = ai.accept().await;
    // The caller's provider: plays what it is sent and echoes marks when the
    // audio before them has played (as Twilio does), until the stream closes.
    let listening = tokio::spawn(async move {
        let mut audio = Vec::new();
        let mut closed_properly = false;
        loop {
            match caller.next_raw(Duration::from_secs(20)).await {
                Some(tokio_tungstenite::tungstenite::Message::Text(t)) => {
                    match media_streams::parse(&t, 1 << 20) {
                        Ok(StreamMessage::Media { media, .. }) => {
                            audio.extend(media_streams::decode_payload(&media).expect("base64"))
                        }
                        Ok(StreamMessage::Mark { mark, .. }) => {
                            caller.send(writer.mark(&mark.name)).await;
                        }
                        _ => {}
                    }
                }
                Some(tokio_tungstenite::tungstenite::Message::Close(_)) => {
                    closed_properly = true;
                    break;
                }
                Some(_) => {}
                None => break,
            }
        }
        (audio, closed_properly)
    });
    let agent_hung_up = tokio::spawn(async move {
        // The agent hears `stop` (and a close) when the gateway lets it go.
        loop {
            match agent.next_msg(Duration::from_secs(20)).await {
                Some(StreamMessage::Stop { .. }) | None => return true,
                Some(_) => {}
            }
        }
    });
    let left = gw.drain(Duration::from_millis(300)).await;
    assert_eq!(left, 0, "every call ended before the gateway stopped");
    let (audio, closed_properly) = listening.await.expect("caller task");
    assert!(closed_properly, "the stream ended with a close frame");
    let goodbye = warmline::assets::shutting_down().expect("asset");
    // The caller heard the whole goodbye (frame padding aside) and it was speech.
    assert!(
        audio.len() >= goodbye.len() - 160,
        "heard {} of {} goodbye bytes",
        audio.len(),
        goodbye.len()
    );
    assert!(
        audio
            .windows(goodbye.len().min(1600))
            .any(|w| w == &goodbye[..goodbye.len().min(1600)]),
        "what the caller heard starts the goodbye"
    );
    assert!(
        agent_hung_up.await.expect("agent task"),
        "the AI agent was let go"
    );
    let done = shared.registry.finished();
    let timeline = serde_json::to_string(&*done[0]).expect("json");
    assert!(timeline.contains("shutting_down"), "{timeline}");
    assert!(timeline.contains(r#""code":"shutdown""#), "{timeline}");
}
