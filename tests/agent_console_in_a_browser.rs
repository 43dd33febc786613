//! The human agent console in a real headless Chromium: the agent signs in,
//! goes available, gets the screen-pop of an escalated call with its context,
//! accepts, hears the whisper over WebRTC (measured in the page with WebAudio),
//! then talks with the caller: the caller hears the agent's microphone and
//! never the whisper. Screenshots are kept in target/tmp/screenshots.

mod support;

use std::time::Duration;
use support::browser::{Browser, microphone_wav};
use support::*;
use warmline::call::timeline::EndReason;
use warmline::media::analysis::best_lag_correlation;
use warmline::sim::agent::ScriptedAgent;
use warmline::sim::caller::{self, CallerOptions};

/// The agent's microphone: a spoken line (the demo's human agent voice).
fn agent_voice() -> Vec<i16> {
    let ulaw =
        warmline::assets::ulaw(warmline::assets::DEMO_HUMAN_AGENT_WAV, "agent").expect("asset");
    pcm(&ulaw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_takes_an_escalated_call_in_the_browser_console() {
    let ai = ScriptedAgent::start(ai_script_requesting_person())
        .await
        .unwrap();
    let records = tempfile::tempdir().unwrap();
    let gw = gateway(&ai.url(), |c| {
        c.routing.agents.push(agent_seed("ann"));
        c.recording.enabled = true;
        c.recording.dir = records.path().to_path_buf();
    })
    .await;
    let mic_dir = tempfile::tempdir().unwrap();
    let mic = mic_dir.path().join("agent.wav");
    let voice = agent_voice();
    microphone_wav(&voice, &mic);

    // Sign in with a wrong token first: a clear error, no session.
    let browser = Browser::launch(&mic, 1280, 900).await;
    let console = format!("http://{}/console", gw.addr);
    browser
        .sign_in(&format!("{console}?agent=ann&token=wrong"))
        .await;
    browser
        .wait_for(
            "window.warmline.errors.some(e => e.includes('refused') || e.includes('token'))",
            SOON,
            "the wrong token refused",
        )
        .await;

    browser
        .sign_in_available(&format!(
            "{console}?agent=ann&token=ann-secret-token&processing=off"
        ))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A phone caller asks for a person; the console pops the context.
    let caller_audio = caller_requesting_person(60);
    let mut options = CallerOptions::new(gw.media_url(), caller_audio, 4242);
    options
        .custom_parameters
        .insert("name".into(), "Sarah Chen".into());
    options.end = warmline::sim::caller::CallerEnd::Stop;
    let caller = tokio::spawn(caller::run(options));
    browser
        .wait_for(
            "window.warmline.phase === 'offered'",
            Duration::from_secs(20),
            "the screen-pop",
        )
        .await;
    let card = browser
        .js(
            "return {name: document.getElementById('c-name').textContent,
                     trigger: document.getElementById('reason-trigger').textContent,
                     urgency: document.getElementById('urgency').textContent,
                     turns: document.querySelectorAll('#transcript li').length,
                     next: document.getElementById('next-action').textContent,
                     acceptShown: document.getElementById('accept').offsetParent !== null,
                     skipShown: document.getElementById('skip').offsetParent !== null,
                     hangupShown: document.getElementById('hangup').offsetParent !== null};",
        )
        .await;
    assert_eq!(card["name"], "Sarah Chen", "{card}");
    assert_eq!(
        card["trigger"], "Caller asked for a person",
        "a readable reason, not a code: {card}"
    );
    assert!(card["turns"].as_u64().unwrap_or(0) >= 2, "{card}");
    assert!(!card["urgency"].as_str().unwrap_or("").is_empty(), "{card}");
    assert_eq!(card["acceptShown"], true, "accept is offered: {card}");
    assert_eq!(
        card["skipShown"], false,
        "no whisper controls before accepting: {card}"
    );
    assert_eq!(
        card["hangupShown"], false,
        "no call controls before accepting: {card}"
    );
    browser.screenshot("console-1-screen-pop").await;

    // Accept: the whisper plays in the headset, then the caller is connected.
    browser.click("accept").await;
    browser
        .wait_for(
            "window.warmline.phase === 'whisper'",
            SOON,
            "the whisper phase",
        )
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    browser.screenshot("console-2-whisper").await;
    browser
        .wait_for(
            "window.warmline.phase === 'in-call'",
            Duration::from_secs(25),
            "the merge",
        )
        .await;
    // The agent talks for a while (the fake microphone loops their line).
    tokio::time::sleep(Duration::from_secs(4)).await;
    browser.screenshot("console-3-in-call").await;
    let heard = browser.js("return window.warmline.heard;").await;
    // ≥ 5 s of sound during the whisper (100 windows of 50 ms), and the caller after the merge.
    assert!(
        heard["whisper"].as_u64().unwrap_or(0) >= 100,
        "the headset played the whisper: {heard}"
    );
    assert!(
        heard["in-call"].as_u64().unwrap_or(0) >= 20,
        "the headset played the caller after the merge: {heard}"
    );

    browser.click("hangup").await;
    browser
        .wait_for(
            "window.warmline.phase === 'wrapup'",
            SOON,
            "the wrap-up form",
        )
        .await;
    browser
        .js("document.getElementById('w-resolved').checked = true;
             document.getElementById('w-notes').value = 'Refund approved by phone.'; return true;")
        .await;
    browser.screenshot("console-4-wrapup").await;
    browser
        .js("document.querySelector('#wrapup-form button').click(); return true;")
        .await;
    browser
        .wait_for(
            "window.warmline.events.includes('wrapup_saved')",
            SOON,
            "the wrap-up saved",
        )
        .await;

    let done = gw
        .shared
        .registry
        .wait_finished(1, Duration::from_secs(20))
        .await;
    let t = done.first().expect("the call finished");
    assert_eq!(t.end_reason(), Some(&EndReason::HumanAgentHangup));
    assert_handed_over(t);
    let report = caller.await.unwrap().unwrap();

    // The caller heard the agent's microphone (through Opus both ways) and
    // nothing like the whisper.
    let heard_by_caller = pcm(&report.heard);
    let whisper = whisper_sent_to_agent(records.path(), &t.call_id, 4);
    let (_, whisper_score) = best_lag_correlation(&whisper, &heard_by_caller, 8);
    // The best of four 1 s stretches of the agent's line (one scheduling
    // hiccup in the browser's fake capture must not decide the test).
    let agent_score = (0..4)
        .map(|k| best_lag_correlation(&voice[k * 8000..(k + 1) * 8000], &heard_by_caller, 8).1)
        .fold(0.0, f64::max);
    println!("caller vs agent voice ncc {agent_score:.3}, vs whisper ncc {whisper_score:.3}");
    assert!(
        whisper_score < 0.3,
        "the caller heard something like the whisper (ncc {whisper_score:.3})"
    );
    assert!(
        agent_score > 0.8,
        "the caller heard the agent's microphone (ncc {agent_score:.3})"
    );
    assert_eq!(
        leaked_whisper_frames(&whisper, &report.heard),
        0,
        "whisper frames reached the caller"
    );

    // The wrap-up is on the call.
    let row = gw.shared.store.call(&t.call_id).await.unwrap().unwrap();
    let handoff = row.handoff.expect("handoff figures");
    assert_eq!(handoff.resolved, Some(true));
    assert_eq!(handoff.notes.as_deref(), Some("Refund approved by phone."));
    browser.quit().await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_tab_for_the_same_agent_is_refused_with_a_clear_error() {
    let ai = ScriptedAgent::start(ai_script_requesting_person())
        .await
        .unwrap();
    let gw = gateway(&ai.url(), |c| c.routing.agents.push(agent_seed("bob"))).await;
    let mic_dir = tempfile::tempdir().unwrap();
    let mic = mic_dir.path().join("agent.wav");
    microphone_wav(&agent_voice(), &mic);
    // The first tab: a simulated console already signed in as bob.
    let base = format!("ws://{}", gw.addr);
    let first = tokio::spawn(warmline::sim::human::run(console(
        &base,
        "bob",
        Duration::from_secs(1),
    )));
    tokio::time::sleep(Duration::from_millis(300)).await;

    let browser = Browser::launch(&mic, 820, 1000).await;
    browser
        .sign_in(&format!(
            "http://{}/console?agent=bob&token=bob-secret-token",
            gw.addr
        ))
        .await;
    browser
        .wait_for(
            "window.warmline.errors.length > 0",
            SOON,
            "an error for the second tab",
        )
        .await;
    let errors = browser.js("return window.warmline.errors;").await;
    assert!(
        errors.to_string().contains("already"),
        "the error says the agent is already signed in: {errors}"
    );
    browser.screenshot("console-second-tab-tablet-width").await;
    browser.quit().await;
    first.abort();
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_browser_mid_whisper_hands_the_call_to_the_next_agent() {
    let ai = ScriptedAgent::start(ai_script_requesting_person())
        .await
        .unwrap();
    let gw = gateway(&ai.url(), |c| {
        c.routing.agents.push(agent_seed("ann"));
        c.routing.agents.push(agent_seed("bob"));
        c.routing.reattach_grace_ms = 1500;
    })
    .await;
    let mic_dir = tempfile::tempdir().unwrap();
    let mic = mic_dir.path().join("agent.wav");
    microphone_wav(&agent_voice(), &mic);
    let browser = Browser::launch(&mic, 1280, 900).await;
    browser
        .sign_in_available(&format!(
            "http://{}/console?agent=ann&token=ann-secret-token",
            gw.addr
        ))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // bob signs in after ann, so ann (idle longest) is offered the call first.
    let mut bob = console(
        &format!("ws://{}", gw.addr),
        "bob",
        Duration::from_millis(500),
    );
    bob.hang_up_after = Some(Duration::from_millis(500));
    bob.say = noise(8000, 99);
    let bob = tokio::spawn(warmline::sim::human::run(bob));
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut options = CallerOptions::new(gw.media_url(), caller_requesting_person(40), 77);
    options.end = warmline::sim::caller::CallerEnd::Stop;
    let caller = tokio::spawn(caller::run(options));
    browser
        .wait_for(
            "window.warmline.phase === 'offered'",
            Duration::from_secs(20),
            "the screen-pop",
        )
        .await;
    browser.click("accept").await;
    browser
        .wait_for("window.warmline.phase === 'whisper'", SOON, "the whisper")
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The browser goes away mid-whisper: the call goes on to bob.
    browser.quit().await;

    let done = gw
        .shared
        .registry
        .wait_finished(1, Duration::from_secs(60))
        .await;
    let t = done.first().expect("the call finished");
    assert_eq!(t.end_reason(), Some(&EndReason::HumanAgentHangup));
    let agents: Vec<Option<String>> = handoff_steps(t)
        .into_iter()
        .filter(|(s, _)| s == "answered")
        .map(|(_, a)| a)
        .collect();
    assert_eq!(
        agents,
        vec![Some("ann".to_string()), Some("bob".to_string())],
        "ann answered, dropped, bob took over"
    );
    let bob = bob.await.unwrap().unwrap();
    assert!(bob.whisper.len() > 8000 * 5, "bob heard a whisper too");
    caller.await.unwrap().unwrap();
    gw.shutdown().await;
}

#[tokio::test]
async fn a_bad_console_offer_gets_a_clear_error_and_the_console_stays_up() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let gw = gateway("ws://127.0.0.1:9", |c| {
        c.routing.agents.push(agent_seed("cy"))
    })
    .await;
    let url = format!("ws://{}/v1/agents/cy/ws?token=cy-secret-token", gw.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(next_event(&mut ws).await["event"], "connected");
    for (sdp, says) in [("junk", "bad SDP offer"), ("", "bad SDP offer")] {
        ws.send(Message::text(
            serde_json::json!({"event": "webrtc_offer", "sdp": sdp}).to_string(),
        ))
        .await
        .unwrap();
        let reply = next_event(&mut ws).await;
        assert_eq!(reply["event"], "error", "{reply}");
        assert!(reply["message"].as_str().unwrap().contains(says), "{reply}");
    }
    // Still signed in: a status change is accepted without an error.
    ws.send(Message::text(r#"{"event":"status","status":"available"}"#))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let agents = gw.shared.routing.agents();
    assert!(agents.iter().any(|a| a.id == "cy" && a.connected));
    gw.shutdown().await;
}

/// The next console event (presence and team news left out), as JSON.
async fn next_event<S>(ws: &mut S) -> serde_json::Value
where
    S: futures_util::Stream<
            Item = Result<
                tokio_tungstenite::tungstenite::Message,
                tokio_tungstenite::tungstenite::Error,
            >,
        > + Unpin,
{
    use futures_util::StreamExt;
    loop {
        match tokio::time::timeout(SOON, ws.next()).await {
            Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t)))) => {
                let v: serde_json::Value =
                    serde_json::from_str(&t).expect("console events are JSON");
                if v["event"] != "presence" && v["event"] != "team" {
                    return v;
                }
            }
            other => panic!("no console event: {other:?}"),
        }
    }
}
