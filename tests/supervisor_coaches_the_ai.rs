//! Supervision of live calls over real sockets: a supervisor coaches the AI
//! agent with a text hint over the REST API (it reaches the AI agent as
//! `supervisor_hint`, lands on the timeline with the supervisor's id, and is
//! refused with a clear status when it could reach nobody), and listens to and
//! coaches a person on a call from a console — the person hears the coach,
//! the caller never does.

mod support;

use std::time::Duration;
use support::*;
use warmline::legs::media_streams::{AppWriter, StreamMessage};
use warmline::media::g711;
use warmline::sim::caller::{CallerOptions, run as run_caller};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hint_reaches_the_ai_agent_only_while_the_caller_is_with_it() {
    let mut ai = RawAgent::start().await;
    let gw = gateway(&ai.url, |c| c.api.token = "admin-token".into()).await;
    let caller = tokio::spawn(run_caller(CallerOptions::new(
        gw.media_url(),
        vec![g711::ULAW_SILENCE; 8000 * 8],
        0x417,
    )));
    let (mut agent, _start, sid) = ai.accept().await;
    let call_id = live_call_id(&gw);
    let path = format!("/v1/calls/{call_id}/hint");
    let post = |body: &'static str| http(gw.addr, "POST", &path, Some("admin-token"), Some(body));

    let (status, body) = post(r#"{"text":"  ","supervisor":"sam"}"#).await;
    assert_eq!(status, 400, "an empty hint: {body}");
    let (status, body) = post(r#"{"text":"Offer the goodwill credit.","supervisor":"sam"}"#).await;
    assert_eq!(status, 202, "{body}");
    let mut got = None;
    for _ in 0..20 {
        if let Some(StreamMessage::SupervisorHint {
            supervisor_hint, ..
        }) = agent.next_msg(Duration::from_millis(250)).await
        {
            got = Some(supervisor_hint);
            break;
        }
    }
    assert_eq!(
        got,
        Some(warmline::domain::SupervisorHint {
            from: "sam".into(),
            text: "Offer the goodwill credit.".into()
        })
    );
    let (status, _) = http(
        gw.addr,
        "POST",
        "/v1/calls/nope/hint",
        Some("admin-token"),
        Some(r#"{"text":"x"}"#),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = http(gw.addr, "POST", &path, None, Some(r#"{"text":"x"}"#)).await;
    assert_eq!(status, 401, "the API token is needed");

    // Once the caller waits for a person, a hint would reach nobody.
    let w = AppWriter::new(sid);
    agent
        .send(w.turn(warmline::domain::Turn {
            role: warmline::domain::Role::User,
            content: "Put me through to a human.".into(),
            confidence: None,
        }))
        .await;
    let left_ai = wait_stage(&gw, &call_id, Duration::from_secs(5), |s| {
        s != Some(warmline::call::registry::CallerStage::Assistant)
    })
    .await;
    assert!(left_ai, "the call was escalated");
    let (status, body) = post(r#"{"text":"too late"}"#).await;
    assert_eq!(status, 409, "not with the AI any more: {body}");
    let _ = caller.await;
    let done = gw.shared.registry.wait_finished(1, SOON * 4).await;
    let hints: Vec<(String, String)> = done[0]
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            warmline::call::timeline::TimelineKind::SupervisorHint { supervisor, text } => {
                Some((supervisor.clone(), text.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        hints,
        vec![("sam".to_string(), "Offer the goodwill credit.".to_string())]
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_listens_then_coaches_the_person_and_the_caller_hears_none_of_it() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use warmline::media::analysis::best_lag_correlation;
    let mut ai = RawAgent::start().await;
    let gw = gateway(&ai.url, |c| {
        c.routing.agents.push(agent_seed("ann"));
        let mut sam = agent_seed("sam");
        sam.supervisor = true;
        c.routing.agents.push(sam);
    })
    .await;
    let base = format!("ws://{}", gw.addr);
    // Ann takes the call, skips the whisper, and says a short line.
    let ann_voice = noise(8000, 11);
    let ann = tokio::spawn(warmline::sim::human::run(
        warmline::sim::human::HumanOptions {
            skip_after: Some(Duration::from_millis(200)),
            say: ann_voice,
            max_duration: Duration::from_secs(40),
            ..console(&base, "ann", Duration::from_millis(200))
        },
    ));
    // Sam supervises from a raw console socket (busy: he takes no offers).
    let (mut sam, _) =
        tokio_tungstenite::connect_async(format!("{base}/v1/agents/sam/ws?token=sam-secret-token"))
            .await
            .expect("sam's console");
    sam.send(Message::Text(
        r#"{"event":"status","status":"break"}"#.into(),
    ))
    .await
    .expect("send");
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The caller: quiet, then talks (distinct noise) for the rest of the call.
    let caller_voice = noise(8000 * 14, 22);
    let mut said = vec![g711::ULAW_SILENCE; 8000 * 2];
    said.extend(&caller_voice);
    let caller = tokio::spawn(run_caller(CallerOptions::new(gw.media_url(), said, 0x5a3)));
    let (mut agent, _start, sid) = ai.accept().await;
    let w = AppWriter::new(sid);
    agent
        .send(w.turn(warmline::domain::Turn {
            role: warmline::domain::Role::User,
            content: "I need to speak to a person.".into(),
            confidence: None,
        }))
        .await;
    let call_id = live_call_id(&gw);
    let with_person = wait_stage(&gw, &call_id, Duration::from_secs(10), |s| {
        s == Some(warmline::call::registry::CallerStage::WithPerson)
    })
    .await;
    assert!(with_person, "the call reached Ann");
    // Listen for 3 s, then coach for 3 s while still listening.
    let monitor = |mode: &str| {
        serde_json::json!({"event": "monitor", "callId": call_id, "mode": mode}).to_string()
    };
    sam.send(Message::Text(monitor("listen").into()))
        .await
        .expect("send");
    let coach_voice = noise(160 * 150, 33);
    let mut heard_by_sam = Vec::new();
    let mut replies = Vec::new();
    let started = tokio::time::Instant::now();
    let mut coaching = false;
    let mut sent = coach_voice.chunks(160);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    while started.elapsed() < Duration::from_secs(6) {
        tokio::select! {
            _ = tick.tick() => {
                if !coaching && started.elapsed() >= Duration::from_secs(3) {
                    coaching = true;
                    sam.send(Message::Text(monitor("coach").into())).await.expect("send");
                }
                if coaching && let Some(chunk) = sent.next() {
                    let msg = serde_json::json!({"event": "media", "media": {"payload": warmline::legs::media_streams::encode_payload(chunk)}});
                    sam.send(Message::Text(msg.to_string().into())).await.expect("send");
                }
            }
            msg = sam.next() => {
                let Some(Ok(Message::Text(t))) = msg else { continue };
                let v: serde_json::Value = serde_json::from_str(&t).unwrap_or_default();
                match v["event"].as_str() {
                    Some("media") => {
                        if let Some(p) = v["media"]["payload"].as_str() {
                            let chunk = warmline::legs::media_streams::MediaChunk { track: None, chunk: None, timestamp: None, payload: p.into() };
                            heard_by_sam.extend(warmline::legs::media_streams::decode_payload(&chunk).unwrap_or_default());
                        }
                    }
                    Some(other) if other != "calls" && other != "team" && other != "callbacks" => replies.push(v.clone()),
                    _ => {}
                }
            }
        }
    }
    assert!(
        replies
            .iter()
            .any(|r| r["event"] == "monitoring" && r["mode"] == "coach"),
        "sam is on the call: {replies:?}"
    );
    // Sam heard the caller.
    let (_, caller_in_feed) = best_lag_correlation(
        &pcm(&caller_voice[8000 * 4..8000 * 5]),
        &pcm(&heard_by_sam),
        4,
    );
    assert!(
        caller_in_feed > 0.5,
        "the supervisor hears the caller: {caller_in_feed:.2}"
    );
    let _ = sam.close(None).await;
    let heard_by_caller = caller.await.expect("caller task").expect("caller ran");
    let ann = ann.await.expect("ann task").expect("ann ran");
    let coach_probe = pcm(&coach_voice[160 * 20..160 * 70]);
    let (_, in_ann) = best_lag_correlation(&coach_probe, &pcm(&ann.after_whisper), 4);
    let (_, in_caller) =
        best_lag_correlation(&coach_probe, &pcm(&heard_by_caller.received_audio), 4);
    eprintln!(
        "supervision: caller in the feed {caller_in_feed:.2}, coach in Ann's ear {in_ann:.2}, coach in the caller's {in_caller:.2}"
    );
    assert!(in_ann > 0.5, "Ann hears the coach: {in_ann:.2}");
    assert!(
        in_caller < 0.2,
        "the caller never hears the coach: {in_caller:.2}"
    );
    let done = gw.shared.registry.wait_finished(1, SOON * 4).await;
    let modes: Vec<Option<warmline::domain::SupervisorMode>> = done[0]
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            warmline::call::timeline::TimelineKind::Supervision { supervisor, mode } => {
                assert_eq!(supervisor, "sam");
                Some(*mode)
            }
            _ => None,
        })
        .collect();
    use warmline::domain::SupervisorMode::*;
    assert_eq!(
        modes,
        vec![Some(Listen), Some(Coach), None],
        "on the timeline"
    );
    gw.shutdown().await;
}
