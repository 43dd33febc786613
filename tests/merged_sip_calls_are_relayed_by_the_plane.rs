//! The relay plane on the real path: a caller on a SIP phone (baresip) is handed
//! to a person on another SIP phone (baresip), the call is not recorded, so once
//! merged and steady its RTP is forwarded by the plane's threads, socket to
//! socket. Both phones hear each other through it, the plane's counters show it
//! carried the call, both legs' figures include what it carried, and a phone
//! that goes silent while relayed still ends the call by the media timeout.

mod support;

use std::time::Duration;
use support::*;
use warmline::call::timeline::EndReason;
use warmline::media::analysis::best_lag_correlation;
use warmline::sim::agent::ScriptedAgent;

/// A phone process killed when the test ends, even by a failed assertion (a
/// phone left running would hold its SIP port for the next run).
struct Phone(std::process::Child);

impl Drop for Phone {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A microphone repeating `burst` then two seconds of silence, `times` times.
fn repeating(burst: &[i16], times: usize) -> Vec<i16> {
    let mut mic = Vec::new();
    for _ in 0..times {
        mic.extend(burst);
        mic.extend(vec![0i16; 16_000]);
    }
    mic
}

/// Waits (40 s at most) until the plane carries one call.
async fn wait_until_relayed(gw: &warmline::gateway::RunningGateway) {
    let mut relaying = 0;
    for _ in 0..400 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (_, text) = http(gw.addr, "GET", "/metrics", None, None).await;
        relaying = metric(&text, "warmline_relay_plane_calls");
        if relaying == 1 {
            break;
        }
    }
    assert_eq!(relaying, 1, "the merged call never reached the relay plane");
}

/// The value of a plain (label-less) metric in a `/metrics` text.
fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} in /metrics:\n{text}"))
}

// The plane is one per process and its gauge counts every gateway's pairs, so
// the two calls run one after the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merged_phone_calls_are_relayed_by_the_plane_and_still_time_out() {
    a_merged_call_between_two_phones_is_carried_by_the_relay_plane_both_ways().await;
    a_phone_that_goes_silent_while_relayed_still_ends_the_call_by_the_media_timeout().await;
}

async fn a_merged_call_between_two_phones_is_carried_by_the_relay_plane_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let (agent_dir, caller_dir) = (dir.path().join("agent"), dir.path().join("caller"));
    std::fs::create_dir_all(&agent_dir).unwrap();
    std::fs::create_dir_all(&caller_dir).unwrap();
    let agent_burst = pcm(&noise(8000, 2024));
    let caller_burst = pcm(&noise(8000, 77));
    let agent_phone = Phone(baresip_phone(
        &agent_dir,
        "ann",
        15_110,
        &repeating(&agent_burst, 30),
        None,
        &[],
    ));
    tokio::time::sleep(Duration::from_millis(800)).await;

    let ai = ScriptedAgent::start(ai_script_requesting_person())
        .await
        .unwrap();
    let gw = gateway(&ai.url(), |c| {
        sip_gateway_config(c, 22_300);
        c.sip.direct_relay = true;
        c.recording.enabled = false;
        let mut ann = agent_seed("ann");
        ann.sip_uri = "sip:ann@127.0.0.1:15110".into();
        c.routing.agents.push(ann);
    })
    .await;
    let sip = gw.sip.as_ref().unwrap().local;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, before) = http(gw.addr, "GET", "/metrics", None, None).await;
    let forwarded_before = metric(&before, "warmline_relay_plane_packets_total");

    // The caller asks for a person, then keeps saying something distinct, and
    // hangs up at 45 s.
    let mut caller_mic = pcm(&caller_requesting_person(0));
    caller_mic.extend(repeating(&caller_burst, 20));
    let caller_phone = Phone(baresip_phone(
        &caller_dir,
        "caller",
        15_112,
        &caller_mic,
        Some(&format!("sip:ai@{sip}")),
        &["-t", "45"],
    ));
    // While the call is up, the plane carries it.
    wait_until_relayed(&gw).await;
    let done = gw
        .shared
        .registry
        .wait_finished(1, Duration::from_secs(60))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop((caller_phone, agent_phone));
    let t = done.first().expect("the SIP call finished");
    assert_handed_over(t);
    assert_eq!(
        t.end_reason(),
        Some(&EndReason::CallerHangup),
        "{:?}",
        handoff_steps(t)
    );
    let (_, after) = http(gw.addr, "GET", "/metrics", None, None).await;
    let forwarded = metric(&after, "warmline_relay_plane_packets_total") - forwarded_before;
    assert_eq!(
        metric(&after, "warmline_relay_plane_calls"),
        0,
        "the pair was let go"
    );
    // Both directions, for most of the ≈ 20 s after the merge.
    assert!(forwarded > 1000, "the plane forwarded {forwarded} packets");

    let caller_heard = baresip_heard(&caller_dir);
    let agent_heard = baresip_heard(&agent_dir);
    let (_, agent_at_caller) = best_lag_correlation(&agent_burst, &caller_heard, 8);
    let (_, caller_at_agent) = best_lag_correlation(&caller_burst, &agent_heard, 8);
    println!(
        "relayed {forwarded} packets; ncc: agent at the caller's phone {agent_at_caller:.3}, caller at the agent's phone {caller_at_agent:.3}"
    );
    assert!(
        agent_at_caller > 0.9,
        "caller heard the agent ({agent_at_caller:.3})"
    );
    assert!(
        caller_at_agent > 0.9,
        "agent heard the caller ({caller_at_agent:.3})"
    );

    // Each leg's stored figures include what the plane carried for it.
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
    assert_eq!(media.len(), 2, "{media:?}");
    for leg in &media {
        assert!(leg.received > 1000 && leg.sent > 1000, "{leg:?}");
    }
    gw.shutdown().await;
}

async fn a_phone_that_goes_silent_while_relayed_still_ends_the_call_by_the_media_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (agent_dir, caller_dir) = (dir.path().join("agent"), dir.path().join("caller"));
    std::fs::create_dir_all(&agent_dir).unwrap();
    std::fs::create_dir_all(&caller_dir).unwrap();
    let agent_phone = Phone(baresip_phone(
        &agent_dir,
        "bo",
        15_114,
        &repeating(&pcm(&noise(8000, 5)), 30),
        None,
        &[],
    ));
    tokio::time::sleep(Duration::from_millis(800)).await;
    let ai = ScriptedAgent::start(ai_script_requesting_person())
        .await
        .unwrap();
    let gw = gateway(&ai.url(), |c| {
        sip_gateway_config(c, 22_400);
        c.sip.direct_relay = true;
        c.sip.media_timeout_ms = 3000;
        c.recording.enabled = false;
        let mut bo = agent_seed("bo");
        bo.sip_uri = "sip:bo@127.0.0.1:15114".into();
        c.routing.agents.push(bo);
    })
    .await;
    let sip = gw.sip.as_ref().unwrap().local;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut caller_mic = pcm(&caller_requesting_person(0));
    caller_mic.extend(vec![0i16; 8000 * 60]);
    let caller_phone = Phone(baresip_phone(
        &caller_dir,
        "caller",
        15_116,
        &caller_mic,
        Some(&format!("sip:ai@{sip}")),
        &["-t", "60"],
    ));
    wait_until_relayed(&gw).await;
    // The caller's phone freezes: no RTP, no BYE.
    let frozen = std::time::Instant::now();
    let _ = std::process::Command::new("kill")
        .args(["-STOP", &caller_phone.0.id().to_string()])
        .status();
    let done = gw
        .shared
        .registry
        .wait_finished(1, Duration::from_secs(20))
        .await;
    let took = frozen.elapsed();
    drop((caller_phone, agent_phone));
    let t = done.first().expect("the call ended");
    assert!(
        matches!(t.end_reason(), Some(EndReason::MediaTimeout(_))),
        "{:?}",
        t.end_reason()
    );
    println!("ended {took:?} after the caller's phone froze (timeout 3 s)");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    gw.shutdown().await;
}
