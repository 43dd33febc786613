//! The monitor escalates real calls: a scripted agent that fails twice gets a
//! repeated_failure decision; a caller asking for a person or pressing 0 gets an
//! immediate customer_request. The handoff context is complete, saved in SQLite
//! and served by the authenticated /v1 API.

mod support;

use std::sync::Arc;
use std::time::Duration;
use support::*;
use warmline::call::timeline::{Timeline, TimelineKind};
use warmline::domain::{Trigger, Urgency};
use warmline::sim::agent::{AgentScript, ScriptLine, ScriptReply, ScriptedAgent};
use warmline::sim::caller::{self, CallerOptions};

/// A short line of real speech (the first 1.5 s of a bundled prompt).
fn line(text: &str, confidence: f32) -> ScriptLine {
    let audio = warmline::assets::ulaw(warmline::assets::DEMO_REPLY_WAVS[0], "reply").unwrap();
    ScriptLine {
        text: text.into(),
        audio: Arc::from(&audio[..12_000]),
        confidence,
    }
}

fn script(replies: &[(&str, &str, f32)]) -> AgentScript {
    let mut s = warmline::demo::demo_script().unwrap();
    s.greeting = line("Thanks for calling Acme. How can I help?", 0.95);
    s.replies = replies
        .iter()
        .map(|(said, answer, confidence)| ScriptReply {
            caller_said: said.to_string(),
            line: line(answer, *confidence),
            events: vec![],
        })
        .collect();
    s.clear_on_barge_in = false;
    s
}

/// Caller "speech" the agent's VAD hears: `bursts` loud seconds separated by 3 s of silence.
fn caller_audio(bursts: usize) -> Vec<u8> {
    let silence = vec![warmline::media::g711::ULAW_SILENCE; 8000 * 3];
    let mut out = silence.clone();
    for _ in 0..bursts {
        out.extend(loud_frames(50));
        out.extend(&silence);
    }
    out
}

fn decision(t: &Timeline) -> Option<(Trigger, Urgency, String, Vec<usize>, u64)> {
    t.events.iter().find_map(|e| match &e.kind {
        TimelineKind::EscalationDecided {
            trigger,
            urgency,
            rule,
            evidence,
            decision_latency_us,
            ..
        } => Some((
            *trigger,
            *urgency,
            rule.clone(),
            evidence.clone(),
            *decision_latency_us,
        )),
        _ => None,
    })
}

async fn http_get(addr: std::net::SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    http(addr, "GET", path, token, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_fails_twice_is_escalated_for_repeated_failure() {
    let agent = ScriptedAgent::start(script(&[
        (
            "My refund for order 8821 never arrived.",
            "I'm not sure I can help with refunds.",
            0.6,
        ),
        (
            "Can you check the refund for order 8821 please?",
            "Sorry, I didn't quite catch that. Could you say it one more time?",
            0.6,
        ),
    ]))
    .await
    .unwrap();
    let gw = gateway(&agent.url(), |c| c.api.token = "s3cret".into()).await;
    let mut options = CallerOptions::new(gw.media_url(), caller_audio(2), 4242);
    options
        .custom_parameters
        .insert("customerId".into(), "C-1042".into());
    options
        .custom_parameters
        .insert("name".into(), "Sarah Chen".into());
    options.tail = Duration::from_secs(3);
    caller::run(options).await.unwrap();
    let done = gw
        .shared
        .registry
        .wait_finished(1, Duration::from_secs(10))
        .await;
    let timeline = &done[0];
    let (trigger, urgency, rule, evidence, latency_us) = decision(timeline).expect("escalated");
    assert_eq!(
        (trigger, rule.as_str()),
        (Trigger::RepeatedFailure, "repeated_unhelpful")
    );
    assert_eq!(urgency, Urgency::Standard);
    assert_eq!(evidence, vec![2, 4], "the two unhelpful agent turns");
    println!("decision latency (last turn → decision): {latency_us} µs");
    // The whisper was pre-rendered at escalation from the saved context.
    let whisper = timeline
        .events
        .iter()
        .find_map(|e| match &e.kind {
            TimelineKind::WhisperRendered {
                text,
                seconds,
                engine,
                ..
            } => Some((text.clone(), *seconds, engine.clone())),
            _ => None,
        })
        .expect("whisper rendered");
    assert!((10.0..=15.0).contains(&whisper.1), "{whisper:?}");
    assert!(
        whisper.0.contains("Sarah Chen") && whisper.0.contains("Escalated for repeated failure"),
        "{whisper:?}"
    );
    assert_eq!(whisper.2, "espeak-ng");

    // Saved in SQLite: read the real database file.
    assert_eq!(gw.shared.store.flush().await.unwrap(), 0);
    let db = rusqlite::Connection::open(&gw.shared.config.store.path).unwrap();
    let (t, ev): (String, String) = db
        .query_row(
            "SELECT trigger, evidence FROM decisions WHERE call_id = ?1",
            [&timeline.call_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(t, "repeated_failure");
    let ev: serde_json::Value = serde_json::from_str(&ev).unwrap();
    assert_eq!(ev["turns"], serde_json::json!([2, 4]));
    assert_eq!(ev["event"]["kind"], "turn");
    assert_eq!(ev["event"]["turn"], 4);
    assert_eq!(ev["unhelpful"].as_array().map(Vec::len), Some(2), "{ev}");
    let turns: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM turns WHERE call_id = ?1",
            [&timeline.call_id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(turns, 5);
    let json: String = db
        .query_row(
            "SELECT json FROM contexts WHERE call_id = ?1",
            [&timeline.call_id],
            |r| r.get(0),
        )
        .unwrap();
    let ctx: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(ctx["customer"]["name"], "Sarah Chen");
    assert_eq!(ctx["customer"]["id"], "C-1042");
    assert_eq!(ctx["customer"]["channel"], "voice");
    assert_eq!(ctx["escalationReason"]["trigger"], "repeated_failure");
    assert_eq!(ctx["transcript"].as_array().unwrap().len(), 5);
    assert_eq!(ctx["transcript"][1]["role"], "user");
    assert!(ctx["transcript"][2]["helpful"] == false);
    assert!(ctx["sentimentArc"].as_array().unwrap().len() == 2);
    assert_eq!(ctx["attemptedResolutions"].as_array().unwrap().len(), 2);
    let summary = ctx["summary"].as_str().unwrap();
    assert!(
        summary.contains("Sarah Chen") && summary.contains("escalated"),
        "{summary}"
    );
    assert!(
        ctx["suggestedNextAction"]
            .as_str()
            .unwrap()
            .contains("Sarah Chen")
    );
    for key in ["conversationId", "startedAt", "escalatedAt", "agentVersion"] {
        assert!(
            ctx[key].as_str().is_some_and(|s| !s.is_empty()),
            "{key} set"
        );
    }

    // The /v1 API serves it, only with the token.
    let path = format!("/v1/calls/{}/context", timeline.call_id);
    assert_eq!(http_get(gw.addr, &path, None).await.0, 401);
    assert_eq!(http_get(gw.addr, &path, Some("wrong")).await.0, 401);
    let (status, body) = http_get(gw.addr, &path, Some("s3cret")).await;
    assert_eq!(status, 200);
    let served: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(served, ctx);
    assert_matches_context_schema(&served);
    let (status, body) = http_get(gw.addr, "/v1/calls", Some("s3cret")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("repeated_failure"));
    assert_eq!(
        http_get(gw.addr, "/v1/calls/CAnope", Some("s3cret"))
            .await
            .0,
        404
    );
    let (status, body) = http_get(gw.addr, "/v1/stats", Some("s3cret")).await;
    assert_eq!(status, 200, "{body}");
    let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(stats["calls"], 1);
    assert_eq!(stats["escalation_rate"], 1.0);
    assert_eq!(stats["escalations_by_trigger"]["repeated_failure"], 1);
}

/// Places one call to a gateway in front of `script`; returns the finished
/// timeline and the agent (to inspect its sessions).
async fn one_call(
    script: warmline::sim::agent::AgentScript,
    audio: Vec<u8>,
    dtmf: Vec<(Duration, char)>,
    n: u64,
) -> (Arc<Timeline>, ScriptedAgent) {
    one_call_with(script, audio, dtmf, n, |_| {}).await
}

/// One call through a gateway whose config `tweak` adjusts.
async fn one_call_with(
    script: warmline::sim::agent::AgentScript,
    audio: Vec<u8>,
    dtmf: Vec<(Duration, char)>,
    n: u64,
    tweak: impl FnOnce(&mut warmline::config::Config),
) -> (Arc<Timeline>, ScriptedAgent) {
    let agent = ScriptedAgent::start(script).await.unwrap();
    let gw = gateway(&agent.url(), tweak).await;
    let mut options = CallerOptions::new(gw.media_url(), audio, n);
    options.dtmf = dtmf;
    options.tail = Duration::from_secs(2);
    caller::run(options).await.unwrap();
    let done = gw
        .shared
        .registry
        .wait_finished(1, Duration::from_secs(10))
        .await;
    (Arc::clone(&done[0]), agent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asking_for_a_real_person_escalates_at_once() {
    let request = script(&[(
        "I want a real person.",
        "Of course, let me get someone for you.",
        0.9,
    )]);
    let (timeline, _) = one_call(request, caller_audio(1), vec![], 77).await;
    let (trigger, _, rule, evidence, latency_us) = decision(&timeline).expect("escalated");
    assert_eq!(
        (trigger, rule.as_str()),
        (Trigger::CustomerRequest, "explicit_request")
    );
    assert_eq!(evidence, vec![1], "on the caller's first turn, not later");
    println!("decision latency (caller turn → decision): {latency_us} µs");
    // The timeline stamps the decision when it was made, not when the caller's
    // prompts had been rendered: turn → decision on the timeline is the
    // decision latency itself (0.1 ms rounding of each stamp aside).
    let at = |pred: &dyn Fn(&TimelineKind) -> bool| {
        timeline
            .events
            .iter()
            .find(|e| pred(&e.kind))
            .map(|e| e.at_ms)
            .unwrap()
    };
    let turn_at = at(
        &|k| matches!(k, TimelineKind::Turn { content, .. } if content == "I want a real person."),
    );
    let decided_at = at(&|k| matches!(k, TimelineKind::EscalationDecided { .. }));
    let gap_us = (decided_at - turn_at) * 1000.0;
    assert!(
        gap_us <= latency_us as f64 + 200.0,
        "decision stamped {gap_us:.0} µs after the turn, its latency was {latency_us} µs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pressing_zero_escalates_at_once() {
    let dtmf = vec![(Duration::from_millis(300), '0')];
    let (timeline, agent) = one_call(script(&[]), vec![0xFF; 8000], dtmf, 78).await;
    let (trigger, _, rule, _, _) = decision(&timeline).expect("escalated");
    assert_eq!(
        (trigger, rule.as_str()),
        (Trigger::CustomerRequest, "dtmf_zero")
    );
    let sessions = agent.wait_sessions(1, SOON).await;
    assert_eq!(sessions[0].dtmf, vec!['0'], "the agent still got the digit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_polite_call_is_not_escalated() {
    let polite = script(&[(
        "I don't need a human, thanks. Where is my order?",
        "Your order shipped yesterday and arrives tomorrow.",
        0.9,
    )]);
    let (timeline, _) = one_call(polite, caller_audio(1), vec![], 79).await;
    assert!(decision(&timeline).is_none(), "{:?}", timeline.events);
    assert_eq!(timeline.turns().count(), 3);
}

/// A local OpenAI-compatible chat-completions server standing in for the judge:
/// it says `asks_person` applies whenever it was asked about it.
async fn fake_judge() -> String {
    use axum::{Json, Router, routing::post};
    async fn answer(Json(body): Json<serde_json::Value>) -> Json<serde_json::Value> {
        let asked = body["messages"][1]["content"]
            .as_str()
            .is_some_and(|c| c.contains("- asks_person:"));
        let labels = if asked { vec!["asks_person"] } else { vec![] };
        Json(serde_json::json!({
            "id": "chatcmpl-judge", "object": "chat.completion",
            "choices": [{"index": 0, "finish_reason": "stop",
                "message": {"role": "assistant", "content": serde_json::json!({"labels": labels}).to_string()}}]
        }))
    }
    let app = Router::new().route("/v1/chat/completions", post(answer));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/v1/chat/completions")
}

async fn call_with_judge(judge_url: String, n: u64) -> Arc<Timeline> {
    let unsure = script(&[(
        "Mmm, well, you know how it is with these things.",
        "I see. Could you tell me a little more?",
        0.9,
    )]);
    let (timeline, _) = one_call_with(unsure, caller_audio(1), vec![], n, |c| {
        c.monitor.judge_url = judge_url;
        c.monitor.judge_margin = 1.0; // every deciding label counts as unsure
        c.monitor.judge_budget_ms = 500;
    })
    .await;
    timeline
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_judge_settles_a_turn_the_heads_are_unsure_about() {
    let timeline = call_with_judge(fake_judge().await, 81).await;
    let (trigger, _, rule, evidence, _) =
        decision(&timeline).expect("the judge's verdict escalated");
    assert_eq!(
        (trigger, rule.as_str()),
        (Trigger::CustomerRequest, "explicit_request")
    );
    assert_eq!(
        evidence,
        vec![1],
        "decided on the caller's turn the judge read"
    );
    let why = timeline.events.iter().find_map(|e| match &e.kind {
        TimelineKind::EscalationDecided { why, .. } => Some(why.clone()),
        _ => None,
    });
    assert_eq!(why.unwrap()["monitor"], "classifier+judge");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_judge_leaves_the_heads_reading() {
    // A port nothing listens on: the judge fails at once, the call goes on unescalated.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/v1/chat/completions",
        closed.local_addr().unwrap()
    );
    drop(closed);
    let timeline = call_with_judge(url, 82).await;
    assert!(decision(&timeline).is_none(), "{:?}", timeline.events);
    assert_eq!(timeline.turns().count(), 3, "the AI answered as usual");
}
