//! SIP trunk calls, driven by real SIP tools (sipp from Debian's sip-tester):
//! an inbound call with PCMU audio and an RFC 4733 digit reaches the AI agent
//! and ends with the caller's BYE; a CANCEL while ringing ends it cleanly; an
//! offer with no codec we take gets 488; and malformed SIP gets 400, not a crash.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::*;
use warmline::call::timeline::{EndReason, TimelineKind};
use warmline::media::analysis::best_lag_correlation;
use warmline::media::g711;
use warmline::sim::agent::ScriptedAgent;

fn sip_gateway_config(c: &mut warmline::config::Config, ports: u16) {
    c.sip.listen = "127.0.0.1:0".into();
    c.sip.rtp_port_min = ports;
    c.sip.rtp_port_max = ports + 99;
}

/// Writes `scenario` with its placeholders filled into `dir`.
fn scenario(dir: &Path, name: &str, fill: &[(&str, String)]) -> PathBuf {
    let mut text = std::fs::read_to_string(format!("tests/sip/{name}")).expect("scenario");
    for (k, v) in fill {
        text = text.replace(k, v);
    }
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write scenario");
    path
}

/// Runs sipp as a UAC against `target`; returns (exit code, its output).
fn sipp(scenario: &Path, target: std::net::SocketAddr, local_port: u16, media_port: u16, extra: &[&str]) -> (i32, String) {
    let out = Command::new("sipp")
        .arg(target.to_string())
        .args(["-sf", &scenario.to_string_lossy()])
        .args(["-i", "127.0.0.1", "-mi", "127.0.0.1"])
        .args(["-p", &local_port.to_string(), "-mp", &media_port.to_string()])
        .args(["-m", "1", "-nostdin", "-timeout", "40s", "-timeout_error"])
        .args(extra)
        .output()
        .expect("sipp is installed (apt-get install sip-tester)");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pcmu_trunk_call_reaches_the_ai_agent_with_its_audio_and_digits() {
    let ai = ScriptedAgent::start(warmline::demo::demo_script().unwrap()).await.unwrap();
    let gw = gateway(&ai.url(), |c| sip_gateway_config(c, 21_000)).await;
    let sip = gw.sip.as_ref().expect("SIP is on").local;
    let dir = tempfile::tempdir().unwrap();
    // 1 s quiet, 1 s of distinct noise, 3 s quiet: the agent hears an utterance.
    let silence = g711::ULAW_SILENCE;
    let mut audio = vec![silence; 8000];
    let speech = noise(8000, 31);
    audio.extend(&speech);
    audio.extend(vec![silence; 24_000]);
    let audio_path = dir.path().join("caller.ulaw");
    std::fs::write(&audio_path, &audio).unwrap();
    let sf = scenario(
        dir.path(),
        "uac_pcmu_call.xml",
        &[
            ("[field0]", audio_path.to_string_lossy().into_owned()),
            ("[field1]", "5500".into()),
        ],
    );
    let (code, out) = tokio::task::spawn_blocking(move || sipp(&sf, sip, 15_071, 16_000, &[]))
        .await
        .unwrap();
    assert_eq!(code, 0, "sipp failed:\n{out}");
    let done = gw.shared.registry.wait_finished(1, Duration::from_secs(10)).await;
    let t = &done[0];
    assert_eq!(t.end_reason(), Some(&EndReason::CallerHangup), "{:#?}", t.events);
    assert!(
        t.events.iter().any(|e| matches!(e.kind, TimelineKind::Dtmf { digit: '1' })),
        "the RFC 4733 digit reached the call: {:#?}",
        t.events
    );
    // The AI agent received the caller's audio, sample for sample (PCMU passthrough).
    let sessions = ai.sessions();
    assert_eq!(sessions.len(), 1);
    let session = &sessions[0];
    assert_eq!(session.start.as_ref().map(|s| s.custom_parameters["from"].clone()).as_deref(), Some("+15550100"));
    let (mut sent, mut got) = (Vec::new(), Vec::new());
    g711::decode_ulaw(&speech, &mut sent);
    g711::decode_ulaw(&session.received_audio, &mut got);
    let (_, score) = best_lag_correlation(&sent, &got, 1);
    assert!(score > 0.99, "caller audio at the agent: correlation {score}");
    assert!(session.dtmf.contains(&'1'), "{:?}", session.dtmf);
    assert!(
        t.events.iter().any(|e| matches!(&e.kind, TimelineKind::Turn { content, .. } if content.starts_with("Hi. I'm calling about my order"))),
        "the agent heard an utterance and answered"
    );
    assert_eq!(gw.sip.as_ref().unwrap().dialogs(), 0, "the dialog was released");
    gw.shutdown().await;
}
