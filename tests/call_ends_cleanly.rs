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

/// Everything the caller hears until the gateway closes the stream, with
/// the arrival time of each frame; marks are echoed like a provider does.
async fn hear_until_closed(
    caller: &mut CallerPeer,
    writer: &mut warmline::legs::media_streams::ProviderWriter,
) -> Vec<(std::time::Instant, Vec<u8>)> {
    let mut heard = Vec::new();
    loop {
        match caller.next_msg(Duration::from_secs(30)).await {
            Some(StreamMessage::Media { media, .. }) => heard.push((
                std::time::Instant::now(),
                warmline::legs::media_streams::decode_payload(&media).unwrap(),
            )),
            Some(StreamMessage::Mark { mark, .. }) => caller.send(writer.mark(&mark.name)).await,
            Some(_) => {}
            None => break,
        }
    }
    heard
}

/// How well the caller's audio matches a bundled prompt (normalised cross-correlation).
fn prompt_score(heard: &[(std::time::Instant, Vec<u8>)], prompt_wav: &[u8]) -> f64 {
    let prompt = warmline::assets::pcm(prompt_wav, "prompt").unwrap();
    let ulaw: Vec<u8> = heard.iter().flat_map(|(_, f)| f.iter().copied()).collect();
    best_lag_correlation(&prompt, &pcm(&ulaw), 8).1
}

fn decided_by_rule(t: &warmline::call::timeline::Timeline, wanted: &str) -> bool {
    t.events.iter().any(|e| {
        matches!(&e.kind, warmline::call::timeline::TimelineKind::EscalationDecided { rule, .. } if rule == wanted)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_agent_gets_the_caller_an_apology_and_with_nobody_online_a_callback() {
    // A port with nothing listening.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/agent", closed.local_addr().unwrap());
    drop(closed);
    let gw = gateway(&url, |_| {}).await;
    let (mut caller, mut writer) = started_caller(&gw.media_url(), "CAnoagent").await;
    let heard = hear_until_closed(&mut caller, &mut writer).await;
    let done = gw.shared.registry.wait_finished(1, SOON).await;
    let t = done.first().expect("the call finished");
    let score = prompt_score(&heard, warmline::assets::AGENT_FAILED_WAV);
    assert!(
        score > 0.95,
        "the caller heard the apology (ncc {score:.3}); {} frames heard; {:#?}",
        heard.len(),
        t.events
    );
    assert!(decided_by_rule(t, "agent_failure"), "escalated");
    assert!(
        matches!(t.end_reason(), Some(EndReason::CallbackScheduled(_))),
        "{:?}",
        t.end_reason()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_drops_mid_call_gets_the_caller_an_apology_within_a_second_and_a_person() {
    let mut agent = RawAgent::start().await;
    let gw = gateway(&agent.url, |c| c.routing.agents.push(agent_seed("ann"))).await;
    let mut ann = console(
        &format!("ws://{}", gw.addr),
        "ann",
        Duration::from_millis(300),
    );
    ann.say = noise(8000, 5);
    ann.hang_up_after = Some(Duration::from_millis(300));
    let ann = tokio::spawn(warmline::sim::human::run(ann));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (mut caller, mut writer) = started_caller(&gw.media_url(), "CAdrop").await;
    let (agent_peer, _, _) = agent.accept().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let dropped = std::time::Instant::now();
    drop(agent_peer); // TCP reset, no close frame
    let heard = hear_until_closed(&mut caller, &mut writer).await;
    let first_sound = heard
        .iter()
        .find(|(at, f)| {
            *at > dropped && f.iter().any(|&b| b != warmline::media::g711::ULAW_SILENCE)
        })
        .map(|(at, _)| at.duration_since(dropped))
        .expect("the caller heard something after the drop");
    println!("apology started {first_sound:?} after the AI agent dropped");
    assert!(first_sound < Duration::from_secs(1), "{first_sound:?}");
    let score = prompt_score(&heard, warmline::assets::AGENT_FAILED_WAV);
    assert!(
        score > 0.95,
        "the caller heard the apology (ncc {score:.3})"
    );

    let done = gw.shared.registry.wait_finished(1, SOON).await;
    let t = done.first().expect("the call finished");
    assert!(decided_by_rule(t, "agent_failure"), "escalated");
    assert_handed_over(t);
    assert_eq!(t.end_reason(), Some(&EndReason::HumanAgentHangup));
    let json = serde_json::to_string(t.as_ref()).unwrap();
    assert!(
        json.contains("agent_lost") && json.contains("agent_failed"),
        "{json}"
    );
    let ann = ann.await.unwrap().unwrap();
    assert!(ann.whisper.len() > 8000 * 5, "the agent was briefed");
}
