//! The handoff quality figures, per call and at `GET /v1/stats`: a call queued
//! for its skill, merge → the human agent's first words (VAD on their leg), the
//! agent's wrap-up flags (recovery, caller repeated, context accurate), and a
//! re-contact by the same number within 24 h.

mod support;

use std::time::Duration;
use support::*;
use warmline::call::timeline::TimelineKind;
use warmline::sim::agent::ScriptedAgent;
use warmline::sim::caller::{self, CallerOptions};
use warmline::sim::human;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quality_figures_are_kept_per_call_and_aggregated() {
    let ai = ScriptedAgent::start(ai_script_requesting_person())
        .await
        .unwrap();
    let gw = gateway(&ai.url(), |c| {
        let mut ann = agent_seed("ann");
        ann.skills = vec!["billing".into()];
        c.routing.agents.push(ann);
    })
    .await;
    let base = format!("ws://{}", gw.addr);
    let mut ann = console(&base, "ann", Duration::from_millis(300));
    ann.skip_after = Some(Duration::from_millis(500));
    ann.say = loud_frames(50);
    ann.hang_up_after = Some(Duration::from_millis(300));
    ann.wrapup = Some(serde_json::json!({
        "resolved": true, "callerRepeated": false, "contextAccurate": true, "notes": "sorted"
    }));
    let ann = tokio::spawn(human::run(ann));
    tokio::time::sleep(Duration::from_millis(200)).await;

    let call = |n: u64, seconds: usize| {
        let mut o = CallerOptions::new(gw.media_url(), caller_requesting_person(seconds), n);
        o.custom_parameters
            .insert("from".into(), "+15550111".into());
        o.custom_parameters.insert("skill".into(), "billing".into());
        o
    };
    caller::run(call(1, 20)).await.unwrap();
    let ann = ann.await.unwrap().unwrap();
    assert!(ann.wrapup_saved, "{:?}", ann.errors);
    let first = gw
        .shared
        .registry
        .wait_finished(1, Duration::from_secs(10))
        .await;
    let t = &first[0];
    assert!(
        step_detail(t, "queued").is_some_and(|d| d.starts_with("billing queue")),
        "{:?}",
        handoff_steps(t)
    );
    let first_words = t.events.iter().find_map(|e| match e.kind {
        TimelineKind::AgentFirstWords { after_merge_ms, .. } => Some(after_merge_ms),
        _ => None,
    });
    assert!(
        first_words.is_some_and(|ms| ms < 5_000),
        "{first_words:?}: the agent spoke right after the merge"
    );
    // The same number calls again (nobody is online now: a callback).
    caller::run(call(2, 6)).await.unwrap();
    gw.shared
        .registry
        .wait_finished(2, Duration::from_secs(10))
        .await;
    assert_eq!(gw.shared.store.flush().await.unwrap(), 0);

    let (status, body) = http(gw.addr, "GET", "/v1/stats", None, None).await;
    assert_eq!(status, 200, "{body}");
    let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(stats["calls"], 2, "{stats}");
    assert_eq!(stats["merged_with_human"], 1, "{stats}");
    assert_eq!(stats["wrapups"], 1, "{stats}");
    assert_eq!(stats["recovery_rate"], 1.0, "{stats}");
    assert_eq!(stats["caller_repeated_rate"], 0.0, "{stats}");
    assert_eq!(stats["context_accurate_rate"], 1.0, "{stats}");
    assert_eq!(stats["recontacts_within_24h"], 1, "{stats}");
    assert_eq!(stats["recontact_rate"], 0.5, "{stats}");
    assert_eq!(
        stats["avg_merge_to_agent_first_words_ms"].as_f64(),
        first_words.map(|ms| ms as f64)
    );

    let (status, body) = http(
        gw.addr,
        "GET",
        &format!("/v1/calls/{}", t.call_id),
        None,
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let reply: serde_json::Value = serde_json::from_str(&body).unwrap();
    let row = &reply["call"];
    assert_eq!(row["caller_number"], "+15550111", "{row}");
    assert_eq!(row["recontact_within_24h"], false, "{row}");
    assert_eq!(row["handoff"]["agent_id"], "ann", "{row}");
    assert_eq!(row["handoff"]["resolved"], true, "{row}");
    assert!(row["handoff"]["merged_at"].is_string(), "{row}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_billing_call_nobody_in_billing_can_take_overflows_to_general_and_is_counted() {
    let ai = ScriptedAgent::start(ai_script_requesting_person())
        .await
        .unwrap();
    let gw = gateway(&ai.url(), |c| {
        let mut gina = agent_seed("gina");
        gina.skills = vec!["general".into()];
        c.routing.agents.push(gina);
        c.routing.overflow.push(warmline::config::OverflowSeed {
            skill: "billing".into(),
            after_seconds: 2,
            to: vec!["general".into()],
        });
    })
    .await;
    let mut gina = console(
        &format!("ws://{}", gw.addr),
        "gina",
        Duration::from_millis(200),
    );
    gina.skip_after = Some(Duration::from_millis(300));
    gina.hang_up_after = Some(Duration::from_millis(300));
    let gina = tokio::spawn(human::run(gina));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut o = CallerOptions::new(gw.media_url(), caller_requesting_person(14), 7);
    o.custom_parameters.insert("skill".into(), "billing".into());
    caller::run(o).await.unwrap();
    let _ = gina.await;
    let done = gw
        .shared
        .registry
        .wait_finished(1, Duration::from_secs(10))
        .await;
    let steps = handoff_steps(&done[0]);
    let at = |name: &str| steps.iter().position(|(s, _)| s == name);
    assert!(
        at("queued") < at("overflowed") && at("overflowed") < at("ringing"),
        "queued for billing, waited, then overflowed: {steps:?}"
    );
    assert_eq!(
        steps[at("overflowed").unwrap_or(0)].1.as_deref(),
        Some("gina"),
        "{steps:?}"
    );
    assert!(
        at("merged").is_some(),
        "the general agent took it: {steps:?}"
    );
    let waited = |name: &str| {
        done[0]
            .events
            .iter()
            .find(|e| serde_json::to_value(&e.kind).is_ok_and(|v| v["step"] == name))
            .map(|e| e.at_ms)
            .unwrap_or(0.0)
    };
    assert!(
        waited("overflowed") - waited("queued") >= 1_900.0,
        "it waited its 2 s for billing first"
    );
    assert_eq!(gw.shared.store.flush().await.unwrap(), 0);
    let (status, body) = http(gw.addr, "GET", "/v1/stats", None, None).await;
    assert_eq!(status, 200, "{body}");
    let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(stats["overflows"], 1, "{stats}");
    assert!(
        stats["handoff_outcomes"].get("overflowed").is_none(),
        "an overflow is not an outcome: {stats}"
    );
    gw.shutdown().await;
}
