//! Fifty simultaneous calls through one gateway to the scripted agent: every
//! call completes, every caller hears its own greeting intact, every agent
//! session hears its own caller intact.

mod support;

use std::time::Duration;
use support::*;
use warmline::call::timeline::EndReason;
use warmline::sim::agent::ScriptedAgent;
use warmline::sim::caller::{self, CallerOptions};

const CALLS: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_calls_all_complete_with_intact_audio() {
    let mut script = warmline::demo::demo_script().unwrap();
    script.replies.clear();
    script.clear_on_barge_in = false;
    let greeting = script.greeting.audio.clone();
    let agent = ScriptedAgent::start(script).await.unwrap();
    let gw = gateway(&agent.url(), |c| c.media.barge_in = false).await;
    let greeting_secs = greeting.len() as f64 / 8000.0;

    let mut calls = Vec::new();
    for n in 0..CALLS {
        // Each caller says something unique, for the length of the greeting.
        let mut options = CallerOptions::new(
            gw.media_url(),
            noise(greeting.len(), 100 + n as u64),
            n as u64,
        );
        options.tail = Duration::from_millis(800);
        calls.push(tokio::spawn(caller::run(options)));
    }
    let mut reports = Vec::new();
    for call in calls {
        reports.push(call.await.expect("task").expect("caller ran"));
    }
    for (n, report) in reports.iter().enumerate() {
        assert!(!report.closed_by_gateway, "call {n} was cut");
        // The last partial frame is padded with μ-law silence before the mark.
        let mut expected = greeting.to_vec();
        expected.resize(
            greeting.len().div_ceil(160) * 160,
            warmline::media::g711::ULAW_SILENCE,
        );
        assert_eq!(
            report.received_audio,
            expected,
            "call {n}: the greeting must arrive whole and unchanged ({} of {} bytes)",
            report.received_audio.len(),
            greeting.len()
        );
        assert_eq!(report.marks, vec!["line-0".to_string()]);
    }
    let done = gw
        .shared
        .registry
        .wait_finished(CALLS, Duration::from_secs(10 + greeting_secs as u64))
        .await;
    assert_eq!(done.len(), CALLS);
    assert!(
        done.iter()
            .all(|t| t.end_reason() == Some(&EndReason::CallerHangup))
    );
    assert_eq!(gw.shared.registry.counts().active, 0);

    let sessions = agent.wait_sessions(CALLS, SOON).await;
    assert_eq!(sessions.len(), CALLS);
    for session in &sessions {
        let start = session.start.as_ref().expect("start");
        let n = u64::from_str_radix(start.call_sid.trim_start_matches("CA"), 16).unwrap();
        assert_eq!(
            session.received_audio,
            noise(greeting.len(), 100 + n),
            "agent session for call {n} heard exactly its own caller"
        );
        assert!(session.got_stop);
    }
}
