//! The invariant that matters most, on the real audio path: during a whole
//! escalated call the caller receives not one whisper frame, while the human
//! agent receives the complete whisper followed, with no gap, by the caller.

mod support;

use std::time::Duration;
use support::*;
use warmline::call::timeline::{EndReason, TimelineKind};
use warmline::media::analysis::best_lag_correlation;
use warmline::media::g711;
use warmline::sim::agent::ScriptedAgent;
use warmline::sim::caller::{self, CallerOptions};
use warmline::sim::human::{self, HumanOptions};

fn frames(bytes: &[u8]) -> std::collections::HashSet<&[u8]> {
    bytes
        .chunks_exact(160)
        .filter(|f| f.iter().any(|&b| b != g711::ULAW_SILENCE))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_caller_never_hears_a_whisper_sample_and_the_agent_hears_it_all_then_the_caller() {
    let ai = ScriptedAgent::start(ai_script_requesting_person())
        .await
        .unwrap();
    let gw = gateway(&ai.url(), |c| {
        c.routing.agents.push(warmline::config::AgentSeed {
            id: "ann".into(),
            name: "Ann Lee".into(),
            token: "ann-secret-token".into(),
            skills: vec![],
            sip_uri: String::new(),
            supervisor: false,
            consult_seconds: 0,
            dtmf_after_answer: String::new(),
            voicemail_after_ms: 0,
            hours: Default::default(),
        });
    })
    .await;
    let base = format!("ws://{}", gw.addr);
    // The human agent: answers after 1 s, then says a line once connected.
    let agent_voice = noise(8000 * 2, 777);
    let human = tokio::spawn(human::run(HumanOptions {
        base_url: base.clone(),
        agent_id: "ann".into(),
        token: "ann-secret-token".into(),
        answer_after: Duration::from_secs(1),
        decline: false,
        skip_after: None,
        drop_after: None,
        say: agent_voice.clone(),
        hang_up_after: Some(Duration::from_millis(500)),
        return_to_ai: None,
        max_duration: Duration::from_secs(60),
        wrapup: None,
    }));
    tokio::time::sleep(Duration::from_millis(200)).await; // console signs in
    let sent = caller_requesting_person(40);
    let mut options = CallerOptions::new(gw.media_url(), sent.clone(), 9001);
    options
        .custom_parameters
        .insert("name".into(), "Sarah Chen".into());
    options
        .custom_parameters
        .insert("from".into(), "+15550100".into());
    let caller_report = caller::run(options).await.unwrap();
    let human_report = human.await.unwrap().unwrap();

    let done = gw
        .shared
        .registry
        .wait_finished(1, Duration::from_secs(10))
        .await;
    let timeline = &done[0];
    assert_eq!(
        timeline.end_reason(),
        Some(&EndReason::HumanAgentHangup),
        "{:#?}",
        timeline.events
    );
    let steps: Vec<String> = timeline
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            TimelineKind::HandoffStep { step, .. } => Some(step.as_str().to_string()),
            _ => None,
        })
        .collect();
    for expected in [
        "escalating",
        "queued",
        "ringing",
        "answered",
        "whisper_started",
        "merged",
    ] {
        assert!(
            steps.iter().any(|s| s == expected),
            "missing step {expected}: {steps:?}"
        );
    }

    // The screen-pop carried the context.
    assert_eq!(human_report.offers.len(), 1);
    assert_eq!(human_report.offers[0]["customer"]["name"], "Sarah Chen");
    assert_eq!(
        human_report.offers[0]["escalationReason"]["trigger"],
        "customer_request"
    );

    // The agent heard the complete whisper: 10-15 s of speech.
    let whisper = &human_report.whisper;
    let seconds = whisper.len() as f64 / 8000.0;
    assert!((10.0..=15.1).contains(&seconds), "whisper {seconds:.2} s");
    // The whisper is rendered again as the context grows; the agent hears the
    // last render.
    let rendered = timeline
        .events
        .iter()
        .rev()
        .find_map(|e| match &e.kind {
            TimelineKind::WhisperRendered { seconds, .. } => Some(*seconds),
            _ => None,
        })
        .expect("whisper rendered");
    assert!(
        (seconds - rendered).abs() < 0.03,
        "all of it: {seconds:.3} s of {rendered:.3} s"
    );

    // THE INVARIANT: not one whisper frame reached the caller...
    let whisper_frames = frames(whisper);
    assert!(whisper_frames.len() > 400);
    let leaked = caller_report
        .received_audio
        .chunks_exact(160)
        .filter(|f| whisper_frames.contains(f))
        .count();
    assert_eq!(leaked, 0, "{leaked} whisper frames reached the caller");
    // ...and nothing like it (correlation against the decoded whisper).
    let mut whisper_pcm = Vec::new();
    g711::decode_ulaw(whisper, &mut whisper_pcm);
    let mut heard_pcm = Vec::new();
    g711::decode_ulaw(&caller_report.heard, &mut heard_pcm);
    let (_, score) = best_lag_correlation(&whisper_pcm[..8000 * 4], &heard_pcm, 8);
    assert!(
        score < 0.3,
        "the caller's audio resembles the whisper (ncc {score:.3})"
    );

    // After the whisper, the agent hears the caller, byte for byte, with no gap.
    let after = &human_report.after_whisper;
    assert!(
        after.len() >= 8000,
        "the agent heard the caller ({} bytes)",
        after.len()
    );
    let probe = &after[..1600];
    assert!(
        sent.windows(1600).any(|w| w == probe),
        "what the agent hears after the whisper is the caller's own audio"
    );
    let (start, gap) = whisper_start_and_merge_gap(&human_report);
    println!(
        "whisper start after accept: {:.1} ms; merge gap: {:.1} ms",
        start.as_secs_f64() * 1e3,
        gap.as_secs_f64() * 1e3
    );

    // The caller heard the agent after the merge, byte for byte.
    let probe = &agent_voice[3200..4800];
    assert!(
        caller_report
            .received_audio
            .windows(1600)
            .any(|w| w == probe),
        "the caller hears the human agent"
    );
    assert!(human_report.got_stop, "the console was told the call ended");
    assert!(
        caller_report.closed_by_gateway,
        "the caller's stream was closed after the agent hung up"
    );
    let sessions = ai.wait_sessions(1, SOON).await;
    assert!(sessions[0].got_stop, "the AI leg was stopped");
}
