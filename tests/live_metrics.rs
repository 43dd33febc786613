//! `GET /metrics` in the Prometheus text format counts what happened on a real
//! call: the call, its escalation by trigger and urgency, the whisper length,
//! each handoff stage, and the per-frame processing time of the call task.

mod support;

use std::collections::HashMap;
use std::time::Duration;
use support::*;
use warmline::sim::agent::ScriptedAgent;
use warmline::sim::caller::{self, CallerOptions};
use warmline::sim::human;

/// `name{labels}` → value, for every sample line.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            let value = if value == "+Inf" {
                f64::INFINITY
            } else {
                value.parse().ok()?
            };
            Some((name.to_string(), value))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_the_call_its_escalation_and_each_handoff_stage() {
    let ai = ScriptedAgent::start(ai_script_requesting_person())
        .await
        .unwrap();
    let gw = gateway(&ai.url(), |c| c.routing.agents.push(agent_seed("ann"))).await;
    let base = format!("ws://{}", gw.addr);
    let mut ann = console(&base, "ann", Duration::from_millis(300));
    ann.hang_up_after = Some(Duration::from_millis(300));
    let ann = tokio::spawn(human::run(ann));
    tokio::time::sleep(Duration::from_millis(200)).await;

    let (status, before) = http(gw.addr, "GET", "/metrics", None, None).await;
    assert_eq!(status, 200);
    let before = samples(&before);
    assert_eq!(before["warmline_calls_total"], 0.0);
    assert_eq!(
        before["warmline_agents{status=\"available\"}"], 1.0,
        "{before:?}"
    );

    caller::run(CallerOptions::new(
        gw.media_url(),
        caller_requesting_person(20),
        9,
    ))
    .await
    .unwrap();
    ann.await.unwrap().unwrap();
    gw.shared
        .registry
        .wait_finished(1, Duration::from_secs(10))
        .await;

    let (status, text) = http(gw.addr, "GET", "/metrics", None, None).await;
    assert_eq!(status, 200, "{text}");
    let m = samples(&text);
    assert_eq!(m["warmline_calls_total"], 1.0);
    assert_eq!(m["warmline_calls_active"], 0.0);
    let escalations: f64 = m
        .iter()
        .filter(|(k, _)| k.starts_with("warmline_escalations_total{trigger=\"customer_request\""))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(escalations, 1.0, "{text}");
    assert_eq!(m["warmline_whisper_seconds_count"], 1.0);
    let whisper = m["warmline_whisper_seconds_sum"];
    assert!((9.0..=15.5).contains(&whisper), "whisper {whisper} s");
    for stage in [
        "decision_to_ringing",
        "ringing_to_answered",
        "answered_to_whisper",
        "whisper_to_merged",
    ] {
        let key = format!("warmline_handoff_stage_seconds_count{{stage=\"{stage}\"}}");
        assert_eq!(m.get(&key), Some(&1.0), "{key} in\n{text}");
    }
    // The whisper stage lasts the whisper; the merge follows its end.
    let merged = m["warmline_handoff_stage_seconds_sum{stage=\"whisper_to_merged\"}"];
    assert!(
        (whisper - 0.5..whisper + 1.0).contains(&merged),
        "{merged} vs {whisper}"
    );
    // Every caller frame was timed: the caller streamed through the whole
    // handoff (the whisper alone is over 10 s = 500 frames).
    let frames = m["warmline_frame_processing_seconds_count"];
    assert!(frames >= 500.0, "{frames} frames timed");
    let under_1ms = m["warmline_frame_processing_seconds_bucket{le=\"0.001\"}"];
    assert!(under_1ms <= frames);
    gw.shutdown().await;
}
