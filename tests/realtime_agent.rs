//! A caller bridged to a speech-to-speech agent on the OpenAI Realtime API
//! (a local server speaking its event shapes, tests/support/realtime.rs):
//! μ-law audio both ways with no transcoding, barge-in that flushes the caller's
//! audio and truncates the item where the caller stopped hearing it, both
//! sides' transcripts reaching the monitor, the `escalate_to_human` function
//! starting the handoff — and server errors, malformed events and a dropped
//! socket handled without leaving the caller stuck; and the handoff (whisper to
//! the human only, merge) working exactly as with a native agent.

mod support;

use serde_json::json;
use std::time::Duration;
use support::realtime::{FakeRealtime, Step, audio_deltas};
use support::*;
use warmline::call::timeline::{EndReason, Timeline, TimelineKind};
use warmline::domain::{Role, Trigger, Urgency};
use warmline::media::analysis::best_lag_correlation;
use warmline::sim::caller::{self, CallerOptions};

fn transcript(kind: &str, text: &str) -> Step {
    Step::Send(json!({"type": kind, "item_id": "item_u", "transcript": text}))
}

fn user_said(text: &str) -> Step {
    transcript(
        "conversation.item.input_audio_transcription.completed",
        text,
    )
}

fn escalate_call(arguments: &str) -> Step {
    Step::Send(json!({
        "type": "response.function_call_arguments.done",
        "response_id": "resp_2", "item_id": "item_f", "output_index": 0,
        "call_id": "call_1", "name": "escalate_to_human", "arguments": arguments,
    }))
}

/// A call whose start asks for the Realtime adapter (the default stays
/// native). With `human`, agent "ann" is online, answers, hears the whisper and
/// hangs up 300 ms into the merged call; the whisper she heard is returned.
async fn realtime_call(
    fake: &FakeRealtime,
    audio: Vec<u8>,
    n: u64,
    human: bool,
) -> (std::sync::Arc<Timeline>, Vec<u8>, Vec<u8>) {
    let url = fake.url();
    let gw = gateway("ws://127.0.0.1:9/native-agent-not-used", |c| {
        c.realtime.url = url;
        c.realtime.api_key = "sk-test-key".into();
        if human {
            c.routing.agents.push(agent_seed("ann"));
        }
    })
    .await;
    let ann = human.then(|| {
        let mut ann = console(
            &format!("ws://{}", gw.addr),
            "ann",
            Duration::from_millis(300),
        );
        ann.hang_up_after = Some(Duration::from_millis(300));
        tokio::spawn(warmline::sim::human::run(ann))
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut options = CallerOptions::new(gw.media_url(), audio, n);
    options
        .custom_parameters
        .insert("agent".into(), "realtime".into());
    let report = caller::run(options).await.expect("caller");
    let whisper = match ann {
        Some(task) => task.await.expect("console task").expect("console").whisper,
        None => Vec::new(),
    };
    let done = gw
        .shared
        .registry
        .wait_finished(1, Duration::from_secs(20))
        .await;
    gw.shutdown().await;
    let t = std::sync::Arc::clone(done.first().expect("the call finished"));
    (t, report.heard, whisper)
}

fn turns(t: &Timeline) -> Vec<(Role, String)> {
    t.events
        .iter()
        .filter_map(|e| match &e.kind {
            TimelineKind::Turn { role, content, .. } => Some((*role, content.clone())),
            _ => None,
        })
        .collect()
}

fn decision(t: &Timeline) -> Option<(Trigger, Urgency, String)> {
    t.events.iter().find_map(|e| match &e.kind {
        TimelineKind::EscalationDecided {
            trigger,
            urgency,
            description,
            ..
        } => Some((*trigger, *urgency, description.clone())),
        _ => None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_realtime_agent_talks_is_interrupted_and_escalates_with_its_transcripts() {
    let agent_voice = noise(16_000, 77); // 2 s
    let mut script = vec![
        Step::WaitFor("session.update"),
        Step::WaitAudioMs(1000),
        user_said("Hi, my order 8821 has not arrived."),
    ];
    // The whole 2 s answer at once, faster than real time, as the API does.
    script.extend(audio_deltas("item_a", &agent_voice));
    script.extend([
        transcript("response.audio_transcript.done", "Let me look that up for you."),
        Step::Sleep(600),
        Step::Send(json!({"type": "input_audio_buffer.speech_started", "audio_start_ms": 3100, "item_id": "item_u2"})),
        Step::WaitFor("conversation.item.truncate"),
        user_said("Can you check again, please?"),
        escalate_call(r#"{"trigger":"customer_request","description":"caller asked for a person","urgency":"elevated"}"#),
        Step::WaitFor("conversation.item.create"),
    ]);
    let fake = FakeRealtime::start(script).await;
    let caller_audio = noise(8000 * 40, 5);
    let (t, heard, whisper) = realtime_call(&fake, caller_audio.clone(), 1, true).await;
    let log = fake.log();

    // The session asks for μ-law both ways, server VAD, transcription and the tool.
    assert!(log.path.contains("model="), "{}", log.path);
    assert_eq!(log.authorization.as_deref(), Some("Bearer sk-test-key"));
    let session = &log.first("session.update").expect("session.update")["session"];
    assert_eq!(session["input_audio_format"], "g711_ulaw");
    assert_eq!(session["output_audio_format"], "g711_ulaw");
    assert_eq!(session["turn_detection"]["type"], "server_vad");
    assert_eq!(session["tools"][0]["name"], "escalate_to_human");
    assert!(session["input_audio_transcription"]["model"].is_string());

    // The caller's audio reached the agent unchanged.
    let (_, score) =
        best_lag_correlation(&pcm(&caller_audio[8000..16_000]), &pcm(&log.appended), 1);
    assert!(score > 0.99, "caller audio at the agent: {score}");

    // Barge-in: truncated where the caller stopped hearing it (≈ 600 ms in,
    // within the playout lead), and the rest never reached the caller.
    let truncate = log.first("conversation.item.truncate").expect("truncate");
    assert_eq!(truncate["item_id"], "item_a");
    let end_ms = truncate["audio_end_ms"].as_u64().unwrap_or(0);
    assert!((300..=1200).contains(&end_ms), "truncated at {end_ms} ms");
    let heard_pcm = pcm(&heard);
    let (_, head) = best_lag_correlation(&pcm(&agent_voice[..2400]), &heard_pcm, 1);
    let (_, tail) = best_lag_correlation(&pcm(&agent_voice[12_000..]), &heard_pcm, 1);
    assert!(
        head > 0.9,
        "the caller heard the start of the answer ({head:.3})"
    );
    assert!(
        tail < 0.3,
        "the caller heard the flushed end of the answer ({tail:.3})"
    );
    assert!(
        t.events
            .iter()
            .any(|e| matches!(e.kind, TimelineKind::Cleared { .. })),
        "the flush is on the timeline"
    );

    // Both sides' words reached the monitor, and the function call escalated.
    let turns = turns(&t);
    assert!(
        turns.contains(&(Role::User, "Hi, my order 8821 has not arrived.".into())),
        "{turns:?}"
    );
    assert!(
        turns.contains(&(Role::Agent, "Let me look that up for you.".into())),
        "{turns:?}"
    );
    let (trigger, urgency, description) = decision(&t).expect("an escalation decision");
    assert_eq!(
        (trigger, urgency),
        (Trigger::CustomerRequest, Urgency::Elevated)
    );
    assert!(description.contains("asked for a person"), "{description}");
    let output = log
        .first("conversation.item.create")
        .expect("function output");
    assert_eq!(output["item"]["call_id"], "call_1");
    // The handoff ran as with a native agent: the human heard the whisper, the
    // caller none of it, then they talked until the human hung up.
    assert!(
        whisper.len() > 8000 * 9,
        "the human agent heard the whisper"
    );
    let (_, leaked) = best_lag_correlation(&pcm(&whisper[..8000 * 4]), &heard_pcm, 8);
    assert!(
        leaked < 0.3,
        "the caller heard something like the whisper ({leaked:.3})"
    );
    assert_eq!(
        t.end_reason(),
        Some(&EndReason::HumanAgentHangup),
        "{:?}",
        handoff_steps(&t)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_and_malformed_events_are_on_the_timeline_and_the_caller_is_handed_on() {
    let fake = FakeRealtime::start(vec![
        Step::WaitFor("session.update"),
        Step::WaitAudioMs(500),
        Step::SendRaw("{this is not json".into()),
        Step::Send(json!({"type": "response.audio.delta", "item_id": "x", "delta": "%%% not base64"})),
        escalate_call("{broken"),
        Step::Send(json!({"type": "error", "error": {"type": "server_error", "code": "server_error", "message": "The server had an error while processing your request."}})),
    ])
    .await;
    let (t, _, _) = realtime_call(&fake, noise(8000 * 40, 9), 2, false).await;
    let errors = refused_messages(&t);
    assert!(
        errors.iter().any(|e| e.contains("malformed JSON")),
        "{errors:?}"
    );
    assert!(errors.iter().any(|e| e.contains("base64")), "{errors:?}");
    assert!(
        errors.iter().any(|e| e.contains("unreadable arguments")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("server had an error")),
        "{errors:?}"
    );
    // The broken function call still escalated (first escalation wins).
    let (trigger, ..) = decision(&t).expect("escalated");
    assert_eq!(trigger, Trigger::CustomerRequest);
    assert!(
        matches!(t.end_reason(), Some(EndReason::CallbackScheduled(_))),
        "{:?}",
        t.end_reason()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_error_before_any_escalation_hands_the_caller_on_with_the_reason() {
    let fake = FakeRealtime::start(vec![
        Step::WaitFor("session.update"),
        Step::WaitAudioMs(500),
        Step::Send(json!({"type": "error", "error": {"type": "rate_limit_error", "code": "rate_limit_exceeded", "message": "Rate limit reached"}})),
    ])
    .await;
    let (t, heard, _) = realtime_call(&fake, noise(8000 * 40, 11), 3, false).await;
    let (trigger, urgency, description) = decision(&t).expect("escalated");
    assert_eq!((trigger, urgency), (Trigger::Complexity, Urgency::Elevated));
    assert!(description.contains("Rate limit"), "{description}");
    assert!(heard.len() > 8000, "the caller was told what happens next");
    assert!(
        matches!(t.end_reason(), Some(EndReason::CallbackScheduled(_))),
        "{:?}",
        t.end_reason()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_dropped_mid_answer_gets_an_apology_and_a_person_not_dead_air() {
    let mut script = vec![Step::WaitFor("session.update"), Step::WaitAudioMs(500)];
    script.extend(audio_deltas("item_a", &noise(4000, 3)));
    script.push(Step::Drop);
    let fake = FakeRealtime::start(script).await;
    // Nobody is online to take it, so the escalation ends in a callback.
    let (t, heard, _) = realtime_call(&fake, noise(8000 * 40, 13), 4, false).await;
    assert!(
        t.events
            .iter()
            .any(|e| matches!(e.kind, TimelineKind::AgentLost { .. })),
        "{:#?}",
        t.events
    );
    assert!(
        t.events.iter().any(|e| matches!(
            &e.kind,
            TimelineKind::EscalationDecided { rule, .. } if rule == "agent_failure"
        )),
        "the failure escalated the call: {:#?}",
        t.events
    );
    assert!(
        matches!(t.end_reason(), Some(EndReason::CallbackScheduled(_))),
        "{:?} {:#?}",
        t.end_reason(),
        t.events
    );
    assert!(
        heard.len() > 4000 + 8000 * 4,
        "the caller heard the answer, then the apology"
    );
}
