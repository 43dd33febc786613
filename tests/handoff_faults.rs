//! Every way a handoff can go wrong ends in a defined state with a timeline
//! entry: nobody online → callback saved (and still there after a restart);
//! decline or ring timeout → the next agent; the agent drops mid-whisper → back
//! to the queue → callback; the caller hangs up while queued; the whisper is
//! skipped; a second agent cannot take another agent's offer.

mod support;

use std::time::Duration;
use support::*;
use warmline::call::timeline::EndReason;
use warmline::sim::agent::ScriptedAgent;
use warmline::sim::caller::{self, CallerOptions};
use warmline::sim::human;

async fn call(
    gw: &warmline::gateway::RunningGateway,
    seconds: usize,
    n: u64,
) -> warmline::sim::caller::CallerReport {
    let mut options = CallerOptions::new(gw.media_url(), caller_requesting_person(seconds), n);
    options
        .custom_parameters
        .insert("name".into(), "Sarah Chen".into());
    options
        .custom_parameters
        .insert("from".into(), "+15550100".into());
    caller::run(options).await.expect("caller runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nobody_online_the_caller_is_told_and_the_callback_survives_a_restart() {
    let ai = ScriptedAgent::start(ai_script_requesting_person())
        .await
        .unwrap();
    let gw = gateway(&ai.url(), |c| c.routing.agents.push(agent_seed("ann"))).await;
    let report = call(&gw, 30, 1).await;
    assert!(
        report.closed_by_gateway,
        "the call ends after the callback prompt"
    );
    let done = gw
        .shared
        .registry
        .wait_finished(1, Duration::from_secs(10))
        .await;
    let t = &done[0];
    assert!(
        matches!(t.end_reason(), Some(EndReason::CallbackScheduled(r)) if r == "no agents are online"),
        "{:?}",
        t.end_reason()
    );
    let steps: Vec<String> = handoff_steps(t).into_iter().map(|s| s.0).collect();
    assert!(
        steps.contains(&"no_agent".into()) && steps.contains(&"callback_saved".into()),
        "{steps:?}"
    );
    // The caller heard the callback prompt (rendered speech, several seconds).
    assert!(report.received_audio.len() > 8000 * 5);
    assert_eq!(gw.shared.store.flush().await.unwrap(), 0);
    // "Restart": open the same database again.
    let path = gw.shared.config.store.path.clone();
    gw.shutdown().await;
    let store = warmline::store::Store::open(&path).unwrap();
    let callbacks = store.callbacks().await.unwrap();
    assert_eq!(callbacks.len(), 1);
    assert_eq!(callbacks[0].number, "+15550100");
    assert_eq!(callbacks[0].context["customer"]["name"], "Sarah Chen");
    assert_eq!(
        callbacks[0].context["escalationReason"]["trigger"],
        "customer_request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decline_and_a_ring_timeout_move_the_call_to_the_next_agent() {
    let ai = ScriptedAgent::start(ai_script_requesting_person())
        .await
        .unwrap();
    let gw = gateway(&ai.url(), |c| {
        c.routing.ring_timeout_ms = 1500;
        for id in ["ann", "bob", "cat"] {
            c.routing.agents.push(agent_seed(id));
        }
    })
    .await;
    let base = format!("ws://{}", gw.addr);
    // Longest idle first: ann (declines), then bob (never answers), then cat.
    let mut ann = console(&base, "ann", Duration::from_millis(300));
    ann.decline = true;
    ann.max_duration = Duration::from_secs(8);
    let ann = tokio::spawn(human::run(ann));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut bob = console(&base, "bob", Duration::from_secs(3600));
    bob.max_duration = Duration::from_secs(8);
    let bob = tokio::spawn(human::run(bob));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut cat = console(&base, "cat", Duration::from_millis(200));
    cat.skip_after = Some(Duration::from_millis(500));
    cat.hang_up_after = Some(Duration::from_millis(300));
    let cat = tokio::spawn(human::run(cat));
    tokio::time::sleep(Duration::from_millis(200)).await;

    let report = call(&gw, 20, 2).await;
    let (ann, bob, cat) = (
        ann.await.unwrap().unwrap(),
        bob.await.unwrap().unwrap(),
        cat.await.unwrap().unwrap(),
    );
    assert_eq!(
        (ann.offers.len(), bob.offers.len(), cat.offers.len()),
        (1, 1, 1)
    );
    assert!(cat.got_stop);
    assert!(report.closed_by_gateway);
    let done = gw
        .shared
        .registry
        .wait_finished(1, Duration::from_secs(10))
        .await;
    let t = &done[0];
    assert_eq!(t.end_reason(), Some(&EndReason::HumanAgentHangup));
    let steps = handoff_steps(t);
    let ringing: Vec<&str> = steps
        .iter()
        .filter(|(s, _)| s == "ringing")
        .filter_map(|(_, a)| a.as_deref())
        .collect();
    assert_eq!(ringing, vec!["ann", "bob", "cat"], "{steps:?}");
    assert!(
        steps
            .iter()
            .any(|(s, a)| s == "declined" && a.as_deref() == Some("ann"))
    );
    assert!(steps.iter().any(|(s, _)| s == "ring_timeout"), "{steps:?}");
    assert!(
        steps
            .iter()
            .any(|(s, a)| s == "whisper_skipped" && a.as_deref() == Some("cat"))
    );
    assert!(
        steps
            .iter()
            .any(|(s, a)| s == "merged" && a.as_deref() == Some("cat"))
    );
    // Skipped after 0.5 s: the agent heard only the start of the whisper.
    assert!(
        cat.whisper.len() < 8000 * 3,
        "{} bytes of whisper",
        cat.whisper.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_who_drops_mid_whisper_sends_the_call_back_to_the_queue_then_callback() {
    let ai = ScriptedAgent::start(ai_script_requesting_person())
        .await
        .unwrap();
    let gw = gateway(&ai.url(), |c| {
        c.routing.agents.push(agent_seed("ann"));
        // A console that vanishes is waited for this long before the call moves on.
        c.routing.reattach_grace_ms = 1000;
    })
    .await;
    let base = format!("ws://{}", gw.addr);
    let mut ann = console(&base, "ann", Duration::from_millis(200));
    ann.drop_after = Some(Duration::from_secs(1));
    let ann = tokio::spawn(human::run(ann));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let report = call(&gw, 30, 3).await;
    let ann = ann.await.unwrap().unwrap();
    assert!(!ann.whisper.is_empty());
    assert!(report.closed_by_gateway);
    let done = gw
        .shared
        .registry
        .wait_finished(1, Duration::from_secs(10))
        .await;
    let t = &done[0];
    let steps: Vec<String> = handoff_steps(t).into_iter().map(|s| s.0).collect();
    let held = steps.iter().position(|s| s == "agent_detached");
    let gone = steps.iter().position(|s| s == "agent_disconnected");
    assert!(
        held.is_some() && gone > held,
        "held for the console, then given up: {steps:?}"
    );
    assert!(
        matches!(t.end_reason(), Some(EndReason::CallbackScheduled(_))),
        "{:?}",
        t.end_reason()
    );
    let agents = gw.shared.routing.agents();
    assert!(!agents[0].connected, "the dropped console is offline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_who_hangs_up_in_the_queue_frees_everything_and_a_stolen_accept_is_refused() {
    let ai = ScriptedAgent::start(ai_script_requesting_person())
        .await
        .unwrap();
    let gw = gateway(&ai.url(), |c| {
        c.routing.agents.push(agent_seed("ann"));
        c.routing.agents.push(agent_seed("bob"));
    })
    .await;
    let base = format!("ws://{}", gw.addr);
    // Ann is offered the call but is slow; Bob tries to take Ann's call.
    let mut ann = console(&base, "ann", Duration::from_secs(3600));
    ann.max_duration = Duration::from_secs(12);
    let ann = tokio::spawn(human::run(ann));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (ws, _) =
        tokio_tungstenite::connect_async(format!("{base}/v1/agents/bob/ws?token=bob-secret-token"))
            .await
            .unwrap();
    let (mut bob_tx, mut bob_rx) = futures_util::StreamExt::split(ws);
    let report = {
        let gw_url = gw.media_url();
        let mut options = CallerOptions::new(gw_url, caller_requesting_person(3), 4);
        options.tail = Duration::ZERO;
        caller::run(options).await.unwrap()
    };
    assert!(!report.closed_by_gateway, "the caller hung up first");
    let done = gw
        .shared
        .registry
        .wait_finished(1, Duration::from_secs(10))
        .await;
    assert_eq!(done[0].end_reason(), Some(&EndReason::CallerHangup));
    let call_id = done[0].call_id.clone();
    use futures_util::{SinkExt, StreamExt};
    let steal = serde_json::json!({"event": "accept", "callId": call_id}).to_string();
    bob_tx
        .send(tokio_tungstenite::tungstenite::Message::Text(steal.into()))
        .await
        .unwrap();
    let mut refused = false;
    while let Ok(Some(Ok(msg))) = tokio::time::timeout(Duration::from_secs(2), bob_rx.next()).await
    {
        if let tokio_tungstenite::tungstenite::Message::Text(t) = msg
            && t.contains("\"error\"")
        {
            refused = t.contains("not offered");
            break;
        }
    }
    assert!(
        refused,
        "bob cannot take a call that was not offered to him"
    );
    let ann = ann.await.unwrap().unwrap();
    assert_eq!(
        ann.offers.len(),
        1,
        "ann got the screen-pop while the call was queued"
    );
    // Everyone is free again.
    for agent in gw.shared.routing.agents() {
        assert_ne!(
            agent.status,
            warmline::routing::AgentStatus::Ringing,
            "{agent:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_business_hours_the_caller_is_told_and_a_callback_is_saved() {
    let ai = ScriptedAgent::start(ai_script_requesting_person())
        .await
        .unwrap();
    // A one-hour window twelve hours from now: closed at the time of the test.
    let hour = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 3600
        + 12)
        % 24;
    let gw = gateway(&ai.url(), |c| {
        c.routing.agents.push(agent_seed("ann"));
        c.routing.open_hours = format!("{hour:02}:00-{hour:02}:59");
    })
    .await;
    let base = format!("ws://{}", gw.addr);
    let mut ann = console(&base, "ann", Duration::from_millis(100));
    ann.max_duration = Duration::from_secs(15);
    let ann = tokio::spawn(human::run(ann));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let report = call(&gw, 30, 5).await;
    assert!(report.closed_by_gateway);
    let done = gw
        .shared
        .registry
        .wait_finished(1, Duration::from_secs(10))
        .await;
    assert!(
        matches!(done[0].end_reason(), Some(EndReason::CallbackScheduled(r)) if r.contains("business hours")),
        "{:?}",
        done[0].end_reason()
    );
    assert_eq!(gw.shared.store.flush().await.unwrap(), 0);
    assert_eq!(gw.shared.store.callbacks().await.unwrap().len(), 1);
    gw.shutdown().await;
    assert!(
        ann.await.unwrap().unwrap().offers.is_empty(),
        "nobody is offered a call after hours"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_long_wait_the_caller_may_press_2_for_a_callback() {
    let ai = ScriptedAgent::start(ai_script_requesting_person())
        .await
        .unwrap();
    let gw = gateway(&ai.url(), |c| c.routing.agents.push(agent_seed("ann"))).await;
    let base = format!("ws://{}", gw.addr);
    let mut ann = console(&base, "ann", Duration::from_millis(100));
    ann.max_duration = Duration::from_secs(20);
    let ann = tokio::spawn(human::run(ann));
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Ann is on another call: the expected wait is the default handle time (3 min).
    gw.shared
        .routing
        .set_status("ann", warmline::routing::AgentStatus::Busy)
        .unwrap();
    let mut options = CallerOptions::new(gw.media_url(), caller_requesting_person(30), 6);
    options.dtmf = vec![(Duration::from_secs(8), '2')];
    let report = caller::run(options).await.unwrap();
    assert!(report.closed_by_gateway);
    let done = gw
        .shared
        .registry
        .wait_finished(1, Duration::from_secs(10))
        .await;
    let t = &done[0];
    assert!(
        matches!(t.end_reason(), Some(EndReason::CallbackScheduled(r)) if r == "the caller chose a callback"),
        "{:?}",
        t.end_reason()
    );
    let detail = step_detail(t, "queued").unwrap_or_default();
    assert!(detail.contains("about 3 minutes"), "{detail}");
    let disclosure = step_detail(t, "disclosure").unwrap_or_default();
    assert!(
        disclosure.contains("press 2 and we'll call you back"),
        "{disclosure}"
    );
    gw.shutdown().await;
    assert!(ann.await.unwrap().unwrap().offers.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_long_wait_the_caller_may_say_call_me_back() {
    use std::sync::Arc;
    use warmline::sim::agent::{ScriptLine, ScriptReply};
    // The AI leg keeps transcribing the caller on hold; its second turn carries
    // the caller's spoken choice.
    let mut script = ai_script_requesting_person();
    script.replies.push(ScriptReply {
        caller_said: "Just call me back later, thanks.".into(),
        line: ScriptLine {
            text: "(never heard by the caller)".into(),
            audio: Arc::from(&[0xFFu8; 1600][..]),
            confidence: 0.9,
        },
        events: vec![],
    });
    let ai = ScriptedAgent::start(script).await.unwrap();
    let gw = gateway(&ai.url(), |c| c.routing.agents.push(agent_seed("ann"))).await;
    let base = format!("ws://{}", gw.addr);
    let mut ann = console(&base, "ann", Duration::from_millis(100));
    ann.max_duration = Duration::from_secs(20);
    let ann = tokio::spawn(human::run(ann));
    tokio::time::sleep(Duration::from_millis(200)).await;
    gw.shared
        .routing
        .set_status("ann", warmline::routing::AgentStatus::Busy)
        .unwrap();
    // The request for a person, then (during hold) a second utterance.
    let silence = warmline::media::g711::ULAW_SILENCE;
    let mut audio = caller_requesting_person(0);
    audio.extend(vec![silence; 8000 * 4]);
    audio.extend(loud_frames(50));
    audio.extend(vec![silence; 8000 * 20]);
    let report = caller::run(CallerOptions::new(gw.media_url(), audio, 30))
        .await
        .unwrap();
    let done = gw
        .shared
        .registry
        .wait_finished(1, Duration::from_secs(10))
        .await;
    let t = &done[0];
    assert!(report.closed_by_gateway, "{:#?}", t);
    assert!(
        matches!(t.end_reason(), Some(EndReason::CallbackScheduled(r)) if r == "the caller chose a callback"),
        "{:?}",
        handoff_steps(t)
    );
    assert_eq!(
        step_detail(t, "caller_chose_callback").as_deref(),
        Some("speech")
    );
    assert_eq!(gw.shared.store.flush().await.unwrap(), 0);
    assert_eq!(gw.shared.store.callbacks().await.unwrap().len(), 1);
    gw.shutdown().await;
    assert!(ann.await.unwrap().unwrap().offers.is_empty());
}
