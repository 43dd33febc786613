//! SIP end to end: a caller on a SIP phone (baresip) is escalated and handed to
//! a human agent on another SIP phone (baresip). The agent's phone hears the
//! whisper, the caller's phone hears hold audio and then the agent — never the
//! whisper — and both RTP legs' figures (ours and the phones' RTCP) are stored.

mod support;

use std::time::Duration;
use support::*;
use warmline::call::timeline::EndReason;
use warmline::media::analysis::best_lag_correlation;
use warmline::sim::agent::ScriptedAgent;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sip_caller_is_handed_to_an_agent_on_a_sip_phone() {
    let dir = tempfile::tempdir().unwrap();
    let (agent_dir, caller_dir) = (dir.path().join("agent"), dir.path().join("caller"));
    std::fs::create_dir_all(&agent_dir).unwrap();
    std::fs::create_dir_all(&caller_dir).unwrap();
    // The agent's phone: auto-answers; its microphone repeats one second of a
    // distinct sound every three seconds, so whenever the merge comes the caller
    // hears it.
    let burst = pcm(&noise(8000, 2024));
    let mut agent_mic = Vec::new();
    for _ in 0..30 {
        agent_mic.extend(&burst);
        agent_mic.extend(vec![0i16; 16_000]);
    }
    let mut agent_phone = baresip_phone(&agent_dir, "ann", 15_096, &agent_mic, None, &[]);
    tokio::time::sleep(Duration::from_millis(800)).await;

    let ai = ScriptedAgent::start(ai_script_requesting_person())
        .await
        .unwrap();
    let rec_dir = dir.path().join("calls");
    let gw = gateway(&ai.url(), |c| {
        sip_gateway_config(c, 21_900);
        c.recording.enabled = true;
        c.recording.dir = rec_dir.clone();
        let mut ann = agent_seed("ann");
        ann.sip_uri = "sip:ann@127.0.0.1:15096".into();
        c.routing.agents.push(ann);
    })
    .await;
    let sip = gw.sip.as_ref().unwrap().local;
    tokio::time::sleep(Duration::from_millis(200)).await;

    // The caller's phone asks for a person, stays quiet, and hangs up (quits) at 40 s.
    let mut caller_mic = pcm(&caller_requesting_person(0));
    caller_mic.extend(vec![0i16; 8000 * 60]);
    let mut caller_phone = baresip_phone(
        &caller_dir,
        "caller",
        15_094,
        &caller_mic,
        Some(&format!("sip:ai@{sip}")),
        &["-t", "40"],
    );
    let done = gw
        .shared
        .registry
        .wait_finished(1, Duration::from_secs(60))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = caller_phone.kill();
    let _ = caller_phone.wait();
    let _ = agent_phone.kill();
    let _ = agent_phone.wait();
    let t = done.first().expect("the SIP call finished");
    assert_handed_over(t);
    assert_eq!(
        t.end_reason(),
        Some(&EndReason::CallerHangup),
        "{:?}",
        handoff_steps(t)
    );
    let whisper = &whisper_sent_to_agent(&rec_dir, &t.call_id, 4);
    let agent_heard = baresip_heard(&agent_dir);
    let caller_heard = baresip_heard(&caller_dir);
    let (_, whisper_at_agent) = best_lag_correlation(whisper, &agent_heard, 8);
    let (_, agent_at_caller) = best_lag_correlation(&burst, &caller_heard, 8);
    let (_, whisper_at_caller) = best_lag_correlation(whisper, &caller_heard, 8);
    println!(
        "ncc: whisper at the agent's phone {whisper_at_agent:.3}, agent at the caller's phone {agent_at_caller:.3}, whisper at the caller's phone {whisper_at_caller:.3}"
    );
    assert!(
        whisper_at_agent > 0.9,
        "agent heard the whisper ({whisper_at_agent:.3})"
    );
    assert!(
        agent_at_caller > 0.9,
        "caller heard the agent ({agent_at_caller:.3})"
    );
    assert!(
        whisper_at_caller < 0.3,
        "the caller heard something like the whisper ({whisper_at_caller:.3})"
    );

    // Both legs' media figures are stored with the call, with the phones' RTCP.
    let mut media = Vec::new();
    for _ in 0..30 {
        gw.shared.store.flush().await.unwrap();
        media = gw
            .shared
            .store
            .call(&t.call_id)
            .await
            .unwrap()
            .unwrap()
            .media;
        if media.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let legs: Vec<&str> = media.iter().map(|m| m.leg.as_str()).collect();
    assert_eq!(legs, ["agent:ann", "caller"], "{media:?}");
    for leg in &media {
        assert!(leg.received > 500 && leg.sent > 500, "{leg:?}");
        assert_eq!(leg.lost, 0, "{leg:?}");
        assert!(
            leg.peer_fraction_lost.is_some(),
            "the phone sent RTCP: {leg:?}"
        );
    }
    gw.shutdown().await;
}
