//! The invariant on the SIP path, with a real phone: baresip calls warmline over
//! SIP/RTP (PCMU), asks for a person, is held while a human agent hears the
//! whisper, then talks with the agent. baresip's own recording of what it heard
//! contains the agent's voice and nothing like the whisper.

mod support;

use std::time::Duration;
use support::*;
use warmline::call::timeline::EndReason;
use warmline::media::analysis::best_lag_correlation;
use warmline::sim::agent::ScriptedAgent;
use warmline::sim::human;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sip_phone_caller_never_hears_the_whisper_but_hears_the_agent() {
    let ai = ScriptedAgent::start(ai_script_requesting_person())
        .await
        .unwrap();
    let gw = gateway(&ai.url(), |c| {
        sip_gateway_config(c, 21_400);
        c.routing.agents.push(agent_seed("ann"));
    })
    .await;
    let sip = gw.sip.as_ref().unwrap().local;
    let base = format!("ws://{}", gw.addr);
    let agent_voice = noise(8000 * 3, 4711);
    let mut ann = console(&base, "ann", Duration::from_secs(1));
    ann.say = agent_voice.clone();
    ann.hang_up_after = Some(Duration::from_millis(500));
    let ann = tokio::spawn(human::run(ann));
    tokio::time::sleep(Duration::from_millis(200)).await;

    // The phone: its microphone says it wants a person, then stays quiet.
    let dir = tempfile::tempdir().unwrap();
    let mut mic = pcm(&caller_requesting_person(0));
    mic.extend(vec![0i16; 8000 * 40]);
    let mut phone = baresip_phone(
        dir.path(),
        "caller",
        15_090,
        &mic,
        Some(&format!("sip:ai@{sip}")),
        &[],
    );

    let done = gw
        .shared
        .registry
        .wait_finished(1, Duration::from_secs(60))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = phone.kill();
    let _ = phone.wait();
    let t = done.first().expect("the SIP call finished");
    assert_eq!(
        t.end_reason(),
        Some(&EndReason::HumanAgentHangup),
        "{:?}",
        handoff_steps(t)
    );
    let ann = ann.await.unwrap().unwrap();
    assert!(ann.whisper.len() > 8000 * 10, "the agent heard the whisper");

    // What the phone heard, as it recorded it.
    let heard = baresip_heard(dir.path());
    let whisper = pcm(&ann.whisper);
    let (_, whisper_score) = best_lag_correlation(&whisper[..8000 * 4], &heard, 8);
    let (_, agent_score) = best_lag_correlation(&pcm(&agent_voice)[..8000], &heard, 8);
    assert!(
        agent_score > 0.9,
        "the phone heard the human agent (ncc {agent_score:.3})"
    );
    // Cross-correlation against the whisper as the agent received it: a μ-law
    // round trip scores ≈ 1, an unrelated utterance in the same synthetic voice
    // (the disclosure, the callback prompt) ≈ 0.1. (An exact-frame search over
    // every alignment is not used: espeak renders the same word — "a person" in
    // the disclosure and in the whisper — to identical frames.)
    assert!(
        whisper_score < 0.3,
        "the phone heard something like the whisper (ncc {whisper_score:.3})"
    );
    gw.shutdown().await;
}
