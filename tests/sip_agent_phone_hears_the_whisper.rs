//! A human agent on a real SIP phone (baresip, auto-answer): warmline rings it
//! with an INVITE when a Media Streams caller is escalated, the phone hears the
//! whole whisper and then the caller — and the caller never hears the whisper.

mod support;

use std::time::Duration;
use support::*;
use warmline::call::timeline::EndReason;
use warmline::media::analysis::best_lag_correlation;
use warmline::sim::agent::ScriptedAgent;
use warmline::sim::caller::{self, CallerOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_on_a_sip_phone_is_rung_hears_the_whisper_then_the_caller() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    // The phone: auto-answers, its microphone is silence, it records what it hears.
    let mut phone = baresip_phone(&d, "ann", 15_092, &vec![0i16; 8000 * 90], None, &[]);
    tokio::time::sleep(Duration::from_millis(800)).await;

    let ai = ScriptedAgent::start(ai_script_requesting_person())
        .await
        .unwrap();
    let rec_dir = d.join("calls");
    let gw = gateway(&ai.url(), |c| {
        sip_gateway_config(c, 21_500);
        c.recording.enabled = true;
        c.recording.dir = rec_dir.clone();
        let mut ann = agent_seed("ann");
        ann.sip_uri = "sip:ann@127.0.0.1:15092".into();
        c.routing.agents.push(ann);
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = caller_requesting_person(25);
    let report = caller::run(CallerOptions::new(gw.media_url(), sent.clone(), 777))
        .await
        .unwrap();
    let done = gw
        .shared
        .registry
        .wait_finished(1, Duration::from_secs(15))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = phone.kill();
    let _ = phone.wait();
    let t = &done[0];
    assert_handed_over(t);
    assert_eq!(
        t.end_reason(),
        Some(&EndReason::CallerHangup),
        "{:?}",
        handoff_steps(t)
    );
    let whisper = whisper_sent_to_agent(&rec_dir, &t.call_id, 10);
    let phone_heard = baresip_heard(&d);
    let (_, whisper_at_phone) = best_lag_correlation(&whisper[..8000 * 4], &phone_heard, 8);
    let tail = &sent[sent.len() - 8000 * 6..sent.len() - 8000 * 5];
    let (_, caller_at_phone) = best_lag_correlation(&pcm(tail), &phone_heard, 8);
    let (_, whisper_at_caller) = best_lag_correlation(&whisper[..8000 * 4], &pcm(&report.heard), 8);
    println!(
        "ncc: whisper at the phone {whisper_at_phone:.3}, caller at the phone {caller_at_phone:.3}, whisper at the caller {whisper_at_caller:.3}"
    );
    assert!(
        whisper_at_phone > 0.9,
        "the phone heard the whisper ({whisper_at_phone:.3})"
    );
    assert!(
        caller_at_phone > 0.9,
        "then the caller ({caller_at_phone:.3})"
    );
    // Not one whisper frame in what the caller received, and nothing like it
    // beyond the likeness of one synthetic voice to itself.
    let mut shifted = Vec::new();
    warmline::media::g711::encode_ulaw(&whisper[37..], &mut shifted);
    assert!(
        leaked_whisper_frames(&whisper, &shifted) > 300,
        "the check finds whisper frames at any alignment"
    );
    let leaked = leaked_whisper_frames(&whisper, &report.received_audio);
    assert_eq!(leaked, 0, "{leaked} whisper frames reached the caller");
    assert!(
        whisper_at_caller < 0.3,
        "the caller's audio resembles the whisper ({whisper_at_caller:.3})"
    );
    gw.shutdown().await;
}
