//! The agent console passes axe-core (run in the page, in a real headless
//! Chromium) with no serious or critical violation in each view an agent
//! works in: sign-in, waiting, an offer, the supervisor's live calls, on a
//! call, wrap-up.

mod support;

use std::time::Duration;
use support::browser::{Browser, microphone_wav};
use support::*;
use warmline::sim::agent::ScriptedAgent;
use warmline::sim::caller::{self, CallerEnd, CallerOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_console_view_has_no_serious_accessibility_violation() {
    let ai = ScriptedAgent::start(ai_script_requesting_person())
        .await
        .unwrap();
    // A supervisor: the live-calls board is on screen too.
    let gw = gateway(&ai.url(), |c| {
        let mut ann = agent_seed("ann");
        ann.supervisor = true;
        c.routing.agents.push(ann);
    })
    .await;
    let mic_dir = tempfile::tempdir().unwrap();
    let mic = mic_dir.path().join("agent.wav");
    microphone_wav(&vec![0i16; 8000], &mic);
    let browser = Browser::launch(&mic, 1280, 900).await;
    let console = format!("http://{}/console", gw.addr);
    let mut report: Vec<(String, Vec<String>)> = Vec::new();

    browser.goto(&console).await;
    report.push(("sign-in".into(), browser.accessibility_violations().await));

    browser
        .js(&format!(
            "document.getElementById('agent-id').value = 'ann';
             document.getElementById('agent-token').value = {:?}; return true;",
            "ann-secret-token"
        ))
        .await;
    browser.click("signin-button").await;
    browser
        .wait_for(
            "window.warmline.presence === 'available'",
            SOON,
            "signed in",
        )
        .await;
    report.push(("waiting".into(), browser.accessibility_violations().await));

    let mut options = CallerOptions::new(gw.media_url(), caller_requesting_person(40), 61);
    options
        .custom_parameters
        .insert("name".into(), "Sarah Chen".into());
    options.end = CallerEnd::Stop;
    let call = tokio::spawn(caller::run(options));
    browser
        .wait_for(
            "window.warmline.phase === 'offered'",
            Duration::from_secs(20),
            "the offer",
        )
        .await;
    report.push(("offer".into(), browser.accessibility_violations().await));
    browser
        .wait_for(
            "document.querySelectorAll('#board tr').length > 0",
            SOON,
            "the supervision board",
        )
        .await;
    report.push((
        "supervisor".into(),
        browser.accessibility_violations().await,
    ));
    browser.click("accept").await;
    browser
        .wait_for(
            "window.warmline.phase === 'in-call'",
            Duration::from_secs(25),
            "merged",
        )
        .await;
    report.push(("call".into(), browser.accessibility_violations().await));
    browser.click("hangup").await;
    browser
        .wait_for("window.warmline.phase === 'wrapup'", SOON, "the wrap-up")
        .await;
    report.push(("wrap-up".into(), browser.accessibility_violations().await));
    browser.screenshot("console-accessible-wrapup").await;

    for (view, found) in &report {
        println!("{view}: {} serious/critical: {found:?}", found.len());
    }
    let bad: Vec<_> = report.iter().filter(|(_, v)| !v.is_empty()).collect();
    assert!(bad.is_empty(), "axe-core violations: {bad:#?}");
    let _ = call.await;
    browser.quit().await;
    gw.shutdown().await;
}
