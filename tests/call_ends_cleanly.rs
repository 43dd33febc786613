//! Every way a call can end leaves no hung task, tells the other side, and
//! records why; a caller whose agent is missing hears an apology, never dead air.

mod support;

use futures_util::SinkExt;
use std::time::Duration;
use support::*;
use warmline::call::timeline::EndReason;
use warmline::legs::media_streams::{AppWriter, StreamMessage};
use warmline::media::analysis::best_lag_correlation;

async fn end_reason(gw: &warmline::gateway::RunningGateway) -> EndReason {
    let done = gw.shared.registry.wait_finished(1, SOON).await;
    let timeline = done.first().expect("the call finished");
    assert_eq!(gw.shared.registry.counts().active, 0, "no call left active");
    timeline.end_reason().cloned().expect("an end reason")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_from_the_caller_ends_the_call_and_stops_the_agent() {
    let mut agent = RawAgent::start().await;
    let gw = gateway(&agent.url, |_| {}).await;
    let (mut caller, mut writer) = started_caller(&gw.media_url(), "CAstop").await;
    let (mut agent_peer, _, _) = agent.accept().await;
    caller.send(writer.stop("ACtest", "CAstop")).await;
    let (_, seen) = agent_peer.until_closed(SOON).await;
    assert!(seen.iter().any(|m| matches!(m, StreamMessage::Stop { .. })));
    assert_eq!(end_reason(&gw).await, EndReason::CallerHangup);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_callers_socket_ends_the_call() {
    let mut agent = RawAgent::start().await;
    let gw = gateway(&agent.url, |_| {}).await;
    let (caller, _writer) = started_caller(&gw.media_url(), "CAlost").await;
    let (mut agent_peer, _, _) = agent.accept().await;
    drop(caller); // TCP goes away without stop
    let (_, seen) = agent_peer.until_closed(SOON).await;
    assert!(
        seen.iter().any(|m| matches!(m, StreamMessage::Stop { .. })),
        "agent still gets stop"
    );
    assert!(matches!(end_reason(&gw).await, EndReason::CallerLost(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_hangs_up_lets_its_last_words_play_then_ends_the_call() {
    let mut agent = RawAgent::start().await;
    let gw = gateway(&agent.url, |_| {}).await;
    let (mut caller, mut writer) = started_caller(&gw.media_url(), "CAbye").await;
    let (mut agent_peer, _, sid) = agent.accept().await;
    let app = AppWriter::new(sid);
    let goodbye = noise(160 * 25, 9);
    for chunk in goodbye.chunks(160) {
        agent_peer.send(app.media(chunk)).await;
    }
    agent_peer.sink.close().await.ok();
    let mut heard = Vec::new();
    loop {
        match caller.next_msg(SOON).await {
            Some(StreamMessage::Media { media, .. }) => {
                heard.extend(warmline::legs::media_streams::decode_payload(&media).unwrap())
            }
            Some(StreamMessage::Mark { mark, .. }) => caller.send(writer.mark(&mark.name)).await,
            Some(_) => {}
            None => break,
        }
    }
    assert_eq!(
        heard, goodbye,
        "the agent's last line plays in full before the call ends"
    );
    assert_eq!(end_reason(&gw).await, EndReason::AgentHangup);
}

async fn assert_hears_apology_then_call_ends(
    caller: &mut CallerPeer,
    writer: &mut warmline::legs::media_streams::ProviderWriter,
) {
    let mut heard = Vec::new();
    loop {
        match caller.next_msg(Duration::from_secs(15)).await {
            Some(StreamMessage::Media { media, .. }) => {
                heard.extend(warmline::legs::media_streams::decode_payload(&media).unwrap())
            }
            Some(StreamMessage::Mark { mark, .. }) => caller.send(writer.mark(&mark.name)).await,
            Some(_) => {}
            None => break,
        }
    }
    let apology =
        warmline::assets::pcm(warmline::assets::AGENT_UNAVAILABLE_WAV, "apology").unwrap();
    let mut heard_pcm = Vec::new();
    warmline::media::g711::decode_ulaw(&heard, &mut heard_pcm);
    let (_, score) = best_lag_correlation(&apology, &heard_pcm, 8);
    assert!(
        score > 0.95,
        "the caller heard the apology (correlation {score:.3})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_agent_gets_the_caller_an_apology_not_dead_air() {
    // A port with nothing listening.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/agent", closed.local_addr().unwrap());
    drop(closed);
    let gw = gateway(&url, |_| {}).await;
    let (mut caller, mut writer) = started_caller(&gw.media_url(), "CAnoagent").await;
    assert_hears_apology_then_call_ends(&mut caller, &mut writer).await;
    assert!(matches!(
        end_reason(&gw).await,
        EndReason::AgentUnavailable(_)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_drops_mid_call_gets_the_caller_an_apology() {
    let mut agent = RawAgent::start().await;
    let gw = gateway(&agent.url, |_| {}).await;
    let (mut caller, mut writer) = started_caller(&gw.media_url(), "CAdrop").await;
    let (agent_peer, _, _) = agent.accept().await;
    drop(agent_peer); // TCP reset, no close frame
    assert_hears_apology_then_call_ends(&mut caller, &mut writer).await;
    let reason = end_reason(&gw).await;
    assert!(
        matches!(reason, EndReason::AgentUnavailable(_)),
        "{reason:?}"
    );
    let timeline = gw.shared.registry.finished()[0].clone();
    let json = serde_json::to_string(timeline.as_ref()).unwrap();
    assert!(
        json.contains("agent_lost") && json.contains("prompt_started"),
        "{json}"
    );
}
