//! A caller in a real headless Chromium (call.html) calls the gateway over
//! WebRTC: it is bridged to the scripted AI agent — the agent hears the
//! browser's microphone, the page hears the agent's greeting — and its keypad
//! 0 (RFC 4733 from RTCDTMFSender) asks for a person.

mod support;

use std::time::Duration;
use support::browser::{Browser, microphone_wav};
use support::*;
use warmline::call::timeline::TimelineKind;
use warmline::sim::agent::ScriptedAgent;

/// 20 ms μ-law frames louder than -40 dBFS.
fn loud_frame_count(ulaw: &[u8]) -> usize {
    pcm(ulaw)
        .chunks_exact(160)
        .filter(|f| {
            let energy: f64 = f.iter().map(|&s| f64::from(s) * f64::from(s)).sum::<f64>() / 160.0;
            energy.sqrt() > 328.0
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_caller_talks_with_the_ai_agent_and_presses_zero_for_a_person() {
    let ai = ScriptedAgent::start(warmline::demo::demo_script().unwrap())
        .await
        .unwrap();
    let gw = gateway(&ai.url(), |_| {}).await;
    let mic_dir = tempfile::tempdir().unwrap();
    let mic = mic_dir.path().join("caller.wav");
    let speech =
        warmline::assets::ulaw(warmline::assets::DEMO_CALLER_WAV, "caller").expect("asset");
    // The demo caller waits ~6 s for the greeting; the microphone starts at their first word.
    let speech = pcm(&speech);
    let first_word = speech
        .iter()
        .position(|s| s.unsigned_abs() > 1000)
        .unwrap_or(0);
    microphone_wav(&speech[first_word..], &mic);

    let browser = Browser::launch(&mic, 1024, 700).await;
    browser
        .goto(&format!(
            "http://{}/console/call.html?from=%2B15550100&name=Web%20Caller&agent=realtime&skill=vip",
            gw.addr
        ))
        .await;
    browser.click("call").await;
    browser
        .wait_for(
            "window.warmline.connected",
            Duration::from_secs(10),
            "the call's WebRTC audio",
        )
        .await;
    // The greeting plays in the page (≥ 1 s of sound).
    browser
        .wait_for(
            "window.warmline.heard >= 20",
            Duration::from_secs(10),
            "the AI agent's greeting in the page",
        )
        .await;
    browser.screenshot("browser-caller-connected").await;

    // Let the microphone talk to the AI agent, then press keypad 0.
    tokio::time::sleep(Duration::from_secs(4)).await;
    browser.click("zero").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    browser.click("end").await;
    let done = gw
        .shared
        .registry
        .wait_finished(1, Duration::from_secs(20))
        .await;
    let t = done.first().expect("the browser call ended");

    // The AI agent's side: a WebRTC call with the page's allowed parameters
    // (an anonymous page cannot pick the adapter, the queue or a callback
    // number: this call still reached the configured native agent), that heard
    // the microphone and got the digit.
    let sessions = ai.wait_sessions(1, SOON).await;
    let session = sessions.first().expect("the AI agent's session");
    let start = session.start.clone().expect("start sent to the agent");
    assert_eq!(start.custom_parameters["transport"], "webrtc");
    assert_eq!(start.custom_parameters["name"], "Web Caller");
    for chosen in ["from", "agent", "skill"] {
        assert!(
            !start.custom_parameters.contains_key(chosen),
            "the page chose {chosen}: {:?}",
            start.custom_parameters
        );
    }
    let loud = loud_frame_count(&session.received_audio);
    assert!(
        loud >= 50,
        "the AI agent heard the browser's microphone ({loud} loud frames of {})",
        session.received_audio.len() / 160
    );
    assert!(session.dtmf.contains(&'0'), "{:?}", session.dtmf);
    assert!(
        t.events
            .iter()
            .any(|e| matches!(e.kind, TimelineKind::Dtmf { digit: '0' })),
        "the digit is on the timeline"
    );
    assert!(
        t.events.iter().any(|e| matches!(
            &e.kind,
            TimelineKind::EscalationDecided { trigger, .. }
                if *trigger == warmline::domain::Trigger::CustomerRequest
        )),
        "keypad 0 escalated the call"
    );
    browser.quit().await;
    gw.shutdown().await;
}

#[tokio::test]
async fn bad_offers_get_clear_errors() {
    let gw = gateway("ws://127.0.0.1:9", |_| {}).await;
    let post = |body: &'static str| {
        let addr = gw.addr;
        async move {
            reqwest::Client::new()
                .post(format!("http://{addr}/v1/webrtc/calls"))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap()
        }
    };
    let r = post("{not json").await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("expected"));
    let r = post(r#"{"sdp": "hello"}"#).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("bad SDP offer"));
    // Valid SDP, but only PCMU: the browser legs speak Opus.
    let r = post(r#"{"sdp": "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\na=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=setup:actpass\r\na=rtcp-mux\r\na=sendrecv\r\na=rtpmap:0 PCMU/8000\r\n"}"#).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("no Opus"));
    assert_eq!(gw.shared.registry.counts().total, 0, "no call was started");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caller_page_says_where_the_caller_is_and_resets_when_the_call_ends() {
    let ai = ScriptedAgent::start(warmline::demo::demo_script().unwrap())
        .await
        .unwrap();
    let gw = gateway(&ai.url(), |c| c.routing.agents.push(agent_seed("ann"))).await;
    // A person ready to take it: answers after 3 s, talks, hangs up.
    let mut ann = console(&format!("ws://{}", gw.addr), "ann", Duration::from_secs(3));
    ann.skip_after = Some(Duration::from_millis(500));
    ann.say = noise(8000 * 2, 7);
    ann.hang_up_after = Some(Duration::from_secs(2));
    let ann = tokio::spawn(warmline::sim::human::run(ann));
    let mic_dir = tempfile::tempdir().unwrap();
    let mic = mic_dir.path().join("caller.wav");
    microphone_wav(&vec![0i16; 8000 * 3], &mic);
    let browser = Browser::launch(&mic, 1024, 800).await;
    browser
        .goto(&format!(
            "http://{}/console/call.html?name=Web%20Caller",
            gw.addr
        ))
        .await;
    // The caller leaves a number to be called back on.
    browser
        .js("document.getElementById('number').value = '+1 (555) 010-0199'; return true;")
        .await;
    browser.click("call").await;
    browser
        .wait_for(
            "window.warmline.said.some(s => s.startsWith('Talking with our assistant'))",
            Duration::from_secs(10),
            "the page says the assistant is on",
        )
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    browser.click("zero").await;
    browser
        .wait_for(
            "window.warmline.said.some(s => s.startsWith('On hold for a person'))",
            Duration::from_secs(10),
            "the page says the caller waits for a person",
        )
        .await;
    browser.screenshot("browser-caller-on-hold").await;
    browser
        .wait_for(
            "window.warmline.said.includes('Connected to a person.')",
            Duration::from_secs(30),
            "the page says a person is on",
        )
        .await;
    let timer = browser
        .js("return document.getElementById('timer').textContent;")
        .await;
    assert_ne!(timer, "0:00", "the call timer runs");
    // The person hangs up: the page says so and every button resets.
    browser
        .wait_for(
            "window.warmline.ended",
            Duration::from_secs(30),
            "the page sees the call end",
        )
        .await;
    let buttons = browser
        .js("return {call: document.getElementById('call').disabled,
                     end: document.getElementById('end').disabled,
                     zero: document.getElementById('zero').disabled,
                     mute: document.getElementById('mute').disabled,
                     status: document.getElementById('status').textContent};")
        .await;
    assert_eq!(buttons["call"], false, "Call again is possible: {buttons}");
    assert_eq!(buttons["end"], true, "{buttons}");
    assert_eq!(buttons["zero"], true, "{buttons}");
    assert_eq!(buttons["mute"], true, "{buttons}");
    assert!(
        buttons["status"]
            .as_str()
            .unwrap_or("")
            .starts_with("Call ended"),
        "{buttons}"
    );
    browser.screenshot("browser-caller-ended").await;
    let done = gw
        .shared
        .registry
        .wait_finished(1, Duration::from_secs(10))
        .await;
    // The typed number is the callback number the person saw.
    let ann = ann.await.unwrap().unwrap();
    let offer = ann.offers.first().expect("ann was offered the call");
    assert_eq!(offer["customer"]["contactInfo"], "+15550100199", "{offer}");
    assert!(done[0].end_reason().is_some());
    browser.quit().await;
    gw.shutdown().await;
}
