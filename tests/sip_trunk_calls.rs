//! SIP trunk calls, driven by real SIP tools (sipp from Debian's sip-tester):
//! an inbound call with PCMU audio and an RFC 4733 digit reaches the AI agent
//! and ends with the caller's BYE; a CANCEL while ringing ends it cleanly; an
//! offer with no codec we take gets 488; malformed SIP gets 400, not a crash; a
//! human agent's phone answering 486 moves the call on (here: to a callback);
//! the INVITE to a person carries the context; a tel: destination is dialled
//! through a trunk that challenges; an outside desk pressing 2 passes the call on.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::*;
use warmline::call::timeline::{EndReason, TimelineKind};
use warmline::media::analysis::best_lag_correlation;
use warmline::media::g711;
use warmline::sim::agent::ScriptedAgent;

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

/// sipp as a UAS (a person's phone, a desk, a trunk) on `port`, for one call;
/// `log`, when given, gets every message it sent and received.
fn spawn_uas(
    scenario: PathBuf,
    port: u16,
    media_port: u16,
    log: Option<&Path>,
) -> tokio::task::JoinHandle<std::process::Output> {
    let log = log.map(|l| l.to_string_lossy().to_string());
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new("sipp");
        cmd.args(["-sf", &scenario.to_string_lossy()])
            .args(["-i", "127.0.0.1", "-mi", "127.0.0.1"])
            .args(["-p", &port.to_string(), "-mp", &media_port.to_string()])
            .args(["-m", "1", "-nostdin", "-timeout", "40s", "-timeout_error"]);
        if let Some(l) = &log {
            cmd.args(["-trace_msg", "-message_file", l]);
        }
        cmd.output().expect("sipp")
    })
}

/// A Media Streams caller asking for a person (over `seconds`) through `gw`;
/// the call's timeline once it has finished.
async fn escalated_call(
    gw: &warmline::gateway::RunningGateway,
    seconds: usize,
    rtp_seed: u64,
) -> std::sync::Arc<warmline::call::timeline::Timeline> {
    tokio::time::sleep(Duration::from_millis(200)).await;
    let options = warmline::sim::caller::CallerOptions::new(
        gw.media_url(),
        caller_requesting_person(seconds),
        rtp_seed,
    );
    warmline::sim::caller::run(options).await.unwrap();
    let mut done = gw
        .shared
        .registry
        .wait_finished(1, Duration::from_secs(10))
        .await;
    done.remove(0)
}

/// Runs sipp as a UAC against `target`; returns (exit code, its output).
fn sipp(
    scenario: &Path,
    target: std::net::SocketAddr,
    local_port: u16,
    media_port: u16,
    extra: &[&str],
) -> (i32, String) {
    let out = Command::new("sipp")
        .arg(target.to_string())
        .args(["-sf", &scenario.to_string_lossy()])
        .args(["-i", "127.0.0.1", "-mi", "127.0.0.1"])
        .args([
            "-p",
            &local_port.to_string(),
            "-mp",
            &media_port.to_string(),
        ])
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
    pcmu_call_with_audio_and_digit(&[], 21_000, 15_071, 16_000, "udp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trunk_call_over_sip_tcp_works_like_one_over_udp() {
    pcmu_call_with_audio_and_digit(&["-t", "t1"], 21_700, 15_079, 16_400, "tcp").await;
}

/// One sipp PCMU call (5.5 s of audio, an RFC 4733 digit, BYE) over the
/// transport `sipp_args` choose; checks what reached the AI agent.
async fn pcmu_call_with_audio_and_digit(
    sipp_args: &'static [&'static str],
    ports: u16,
    sipp_port: u16,
    media_port: u16,
    transport: &str,
) {
    let ai = ScriptedAgent::start(warmline::demo::demo_script().unwrap())
        .await
        .unwrap();
    let gw = gateway(&ai.url(), |c| sip_gateway_config(c, ports)).await;
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
    let (code, out) =
        tokio::task::spawn_blocking(move || sipp(&sf, sip, sipp_port, media_port, sipp_args))
            .await
            .unwrap();
    assert_eq!(code, 0, "sipp failed:\n{out}");
    let done = gw
        .shared
        .registry
        .wait_finished(1, Duration::from_secs(10))
        .await;
    let t = &done[0];
    assert_eq!(
        t.end_reason(),
        Some(&EndReason::CallerHangup),
        "{:#?}",
        t.events
    );
    assert!(
        t.events
            .iter()
            .any(|e| matches!(e.kind, TimelineKind::Dtmf { digit: '1' })),
        "the RFC 4733 digit reached the call: {:#?}",
        t.events
    );
    // The AI agent received the caller's audio, sample for sample (PCMU passthrough).
    let sessions = ai.wait_sessions(1, SOON).await;
    assert_eq!(sessions.len(), 1);
    let session = &sessions[0];
    assert_eq!(
        session
            .start
            .as_ref()
            .map(|s| s.custom_parameters["from"].clone())
            .as_deref(),
        Some("+15550100")
    );
    assert_eq!(
        session
            .start
            .as_ref()
            .map(|s| s.custom_parameters["transport"].clone()),
        Some(format!("sip/{transport}"))
    );
    let (mut sent, mut got) = (Vec::new(), Vec::new());
    g711::decode_ulaw(&speech, &mut sent);
    g711::decode_ulaw(&session.received_audio, &mut got);
    let (_, score) = best_lag_correlation(&sent, &got, 1);
    assert!(
        score > 0.99,
        "caller audio at the agent: correlation {score}"
    );
    assert!(session.dtmf.contains(&'1'), "{:?}", session.dtmf);
    assert!(
        t.events.iter().any(|e| matches!(&e.kind, TimelineKind::Turn { content, .. } if content.starts_with("Hi. I'm calling about my order"))),
        "the agent heard an utterance and answered"
    );
    assert_eq!(
        gw.sip.as_ref().unwrap().dialogs(),
        0,
        "the dialog was released"
    );
    // The RTP leg's figures are stored with the call.
    let mut media = Vec::new();
    for _ in 0..20 {
        gw.shared.store.flush().await.unwrap();
        let call = gw
            .shared
            .store
            .call(&t.call_id)
            .await
            .unwrap()
            .expect("stored call");
        media = call.media;
        if !media.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let caller = media
        .iter()
        .find(|m| m.leg == "caller")
        .expect("caller leg figures");
    assert_eq!(caller.codec, "Pcmu");
    // 5 s of 20 ms frames plus the digit's packets (its repeated end packets
    // count as duplicates), none lost on loopback.
    assert!((250..=275).contains(&caller.received), "{caller:?}");
    assert_eq!(
        (caller.lost, caller.malformed, caller.foreign),
        (0, 0, 0),
        "{caller:?}"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trunk_with_credentials_is_challenged_and_only_the_right_password_gets_in() {
    let ai = ScriptedAgent::start(warmline::demo::demo_script().unwrap())
        .await
        .unwrap();
    let gw = gateway(&ai.url(), |c| {
        sip_gateway_config(c, 21_800);
        c.sip.auth_user = "trunk".into();
        c.sip.auth_password = "s3cret".into();
    })
    .await;
    let sip = gw.sip.as_ref().unwrap().local;
    let dir = tempfile::tempdir().unwrap();
    let sf = scenario(dir.path(), "uac_digest_call.xml", &[]);
    let attempt = |password: &'static str| {
        let sf = sf.clone();
        tokio::task::spawn_blocking(move || {
            // sipp takes a second 401 for a retransmission of the first and
            // waits; a short timeout ends a refused attempt.
            let args = ["-au", "trunk", "-ap", password, "-timeout", "6s"];
            sipp(&sf, sip, 15_081, 16_500, &args)
        })
    };
    let (code, out) = attempt("s3cret").await.unwrap();
    assert_eq!(code, 0, "the right password is let in:\n{out}");
    gw.shared
        .registry
        .wait_finished(1, Duration::from_secs(10))
        .await;
    // The agent records its session when its socket closes, just after the call ends.
    assert_eq!(
        ai.wait_sessions(1, SOON).await.len(),
        1,
        "one call reached the agent"
    );
    // A forged nonce: 401 again, with a fresh challenge, and no call.
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let forged = "INVITE sip:ai@x SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKf\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\nCall-ID: forged\r\nCSeq: 2 INVITE\r\nAuthorization: Digest username=\"trunk\", realm=\"warmline\", nonce=\"abc\", uri=\"sip:ai@x\", response=\"00\"\r\nContent-Length: 0\r\n\r\n";
    sock.send_to(forged.as_bytes(), sip).await.unwrap();
    let mut buf = vec![0u8; 4000];
    let (n, _) = tokio::time::timeout(Duration::from_secs(2), sock.recv_from(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    let reply = String::from_utf8_lossy(&buf[..n]);
    assert!(
        reply.starts_with("SIP/2.0 401")
            && reply.contains("WWW-Authenticate: Digest realm=\"warmline\""),
        "{reply}"
    );
    let (code, out) = attempt("guess").await.unwrap();
    assert_ne!(code, 0, "a wrong password must not get a 200:\n{out}");
    assert!(out.contains("401"), "it was answered 401 again:\n{out}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ai.sessions().len(), 1, "no call for the wrong password");
    assert_eq!(gw.sip.as_ref().unwrap().dialogs(), 0, "nothing left open");
    gw.shutdown().await;
}

/// Runs a sipp UAC `scenario` whose INVITE never becomes a call; checks sipp
/// saw the responses it expects, the dialog is released and no call started.
async fn attempt_without_a_call(
    name: &str,
    ports: u16,
    ring_ms: u64,
    sipp_port: u16,
    media_port: u16,
    why: &str,
) {
    let ai = ScriptedAgent::start(warmline::demo::demo_script().unwrap())
        .await
        .unwrap();
    let gw = gateway(&ai.url(), |c| {
        sip_gateway_config(c, ports);
        c.sip.ring_ms = ring_ms;
    })
    .await;
    let sip = gw.sip.as_ref().unwrap().local;
    let dir = tempfile::tempdir().unwrap();
    let sf = scenario(dir.path(), name, &[]);
    let (code, out) =
        tokio::task::spawn_blocking(move || sipp(&sf, sip, sipp_port, media_port, &[]))
            .await
            .unwrap();
    assert_eq!(code, 0, "sipp failed:\n{out}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(gw.sip.as_ref().unwrap().dialogs(), 0, "dialog released");
    assert!(ai.sessions().is_empty(), "no call was started {why}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_while_ringing_ends_the_attempt_and_frees_the_dialog() {
    attempt_without_a_call(
        "uac_cancel.xml",
        21_100,
        3000,
        15_073,
        16_100,
        "for a cancelled INVITE",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_without_a_codec_we_take_gets_488() {
    attempt_without_a_call(
        "uac_unsupported_codec.xml",
        21_200,
        0,
        15_075,
        16_200,
        "for an offer refused with 488",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_sip_gets_400_or_a_logged_drop_and_the_endpoint_keeps_serving() {
    let gw = gateway("ws://127.0.0.1:9/none", |c| sip_gateway_config(c, 21_300)).await;
    let sip = gw.sip.as_ref().unwrap().local;
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut buf = vec![0u8; 4096];
    let mut ask = async |bytes: &[u8]| -> Option<String> {
        sock.send_to(bytes, sip).await.unwrap();
        match tokio::time::timeout(Duration::from_millis(500), sock.recv_from(&mut buf)).await {
            Ok(Ok((n, _))) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            _ => None,
        }
    };
    let via = "Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKbad\r\n";
    // A request without Call-ID: answered 400 with the reason.
    let reply = ask(format!("INVITE sip:ai@x SIP/2.0\r\n{via}From: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\nCSeq: 1 INVITE\r\n\r\n").as_bytes()).await;
    assert!(
        reply
            .as_deref()
            .is_some_and(|r| r.starts_with("SIP/2.0 400") && r.contains("Call-ID")),
        "{reply:?}"
    );
    // Garbage and binary: dropped without an answer.
    assert_eq!(ask(b"\x00\x01\x02 hello").await, None);
    assert_eq!(ask(&[0xff; 300]).await, None);
    // A BYE for a call that does not exist: 481.
    let bye = format!(
        "BYE sip:ai@x SIP/2.0\r\n{via}From: <sip:a@x>;tag=1\r\nTo: <sip:b@x>;tag=2\r\nCall-ID: nope\r\nCSeq: 2 BYE\r\n\r\n"
    );
    assert!(
        ask(bye.as_bytes())
            .await
            .is_some_and(|r| r.starts_with("SIP/2.0 481"))
    );
    // An INVITE with an unreadable SDP: 400, dialog released.
    let invite = format!(
        "INVITE sip:ai@x SIP/2.0\r\n{via}From: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\nCall-ID: bad-sdp\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\n\r\nv=0\r\nm=audio x\r\n"
    );
    let mut replies = Vec::new();
    replies.push(ask(invite.as_bytes()).await);
    if replies[0]
        .as_deref()
        .is_some_and(|r| r.starts_with("SIP/2.0 100"))
    {
        let mut b = vec![0u8; 4096];
        if let Ok(Ok((n, _))) =
            tokio::time::timeout(Duration::from_millis(500), sock.recv_from(&mut b)).await
        {
            replies.push(Some(String::from_utf8_lossy(&b[..n]).into_owned()));
        }
    }
    assert!(
        replies
            .iter()
            .flatten()
            .any(|r| r.starts_with("SIP/2.0 400")),
        "{replies:?}"
    );
    // Still serving.
    let options = format!(
        "OPTIONS sip:ai@x SIP/2.0\r\n{via}From: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\nCall-ID: ping\r\nCSeq: 3 OPTIONS\r\n\r\n"
    );
    let pong = ask(options.as_bytes()).await;
    assert!(
        pong.as_deref()
            .is_some_and(|r| r.starts_with("SIP/2.0 200") && r.contains("Allow: INVITE")),
        "{pong:?}"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_agent_phone_486_moves_the_call_on_to_a_callback() {
    let dir = tempfile::tempdir().unwrap();
    let sf = scenario(dir.path(), "uas_busy_agent.xml", &[]);
    // The agent's phone: sipp as a UAS answering 486.
    let phone = spawn_uas(sf, 15077, 16300, None);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ai = ScriptedAgent::start(ai_script_requesting_person())
        .await
        .unwrap();
    let gw = gateway(&ai.url(), |c| {
        sip_gateway_config(c, 21_600);
        let mut bob = agent_seed("bob");
        bob.sip_uri = "sip:bob@127.0.0.1:15077".into();
        c.routing.agents.push(bob);
    })
    .await;
    let done = [escalated_call(&gw, 20, 4860).await];
    let t = &done[0];
    let out = phone.await.unwrap();
    assert!(
        out.status.success(),
        "sipp: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let steps: Vec<String> = handoff_steps(t).into_iter().map(|(s, _)| s).collect();
    assert!(steps.iter().any(|s| s == "ringing"), "{steps:?}");
    assert!(
        matches!(t.end_reason(), Some(EndReason::CallbackScheduled(r)) if r == "no agent answered"),
        "{:?} {steps:?}",
        t.end_reason()
    );
    assert_eq!(gw.shared.store.flush().await.unwrap(), 0);
    assert_eq!(
        gw.shared.store.callbacks().await.unwrap().len(),
        1,
        "the callback is saved"
    );
    assert_eq!(
        gw.sip.as_ref().unwrap().dialogs(),
        0,
        "the phone's dialog is released"
    );
    gw.shutdown().await;
}

/// The INVITE sipp received, from its `-trace_msg` log.
fn received_invite(log: &str) -> String {
    let start = log.find("INVITE sip:").expect("sipp logged the INVITE");
    let rest = &log[start..];
    let end = rest
        .find("\n\n")
        .or_else(|| rest.find("\r\n\r\n"))
        .unwrap_or(rest.len());
    rest[..end].to_string()
}

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_s_phone_gets_the_context_in_the_invite_and_a_signed_link_to_all_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let sf = scenario(dir.path(), "uas_busy_agent.xml", &[]);
    let log = dir.path().join("messages.log");
    // The person's phone: sipp as a UAS that logs every message, then says busy.
    let phone = spawn_uas(sf, 15_083, 16_700, Some(&log));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ai = ScriptedAgent::start(ai_script_requesting_person())
        .await
        .unwrap();
    let gw = gateway(&ai.url(), |c| {
        sip_gateway_config(c, 22_000);
        c.routing.context_url_secret = "desk-secret".into();
        c.routing.diversion = "tel:+15550199".into();
        let mut bob = agent_seed("bob");
        bob.sip_uri = "sip:bob@127.0.0.1:15083".into();
        c.routing.agents.push(bob);
    })
    .await;
    let done = [escalated_call(&gw, 20, 4870).await];
    let call_id = done[0].call_id.clone();
    let out = phone.await.unwrap();
    assert!(
        out.status.success(),
        "sipp: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let invite = received_invite(&std::fs::read_to_string(&log).expect("sipp's message log"));

    // Who, why, how urgent: in headers a desk can route on.
    assert_eq!(
        header(&invite, "X-Warmline-Call-Id"),
        Some(call_id.as_str()),
        "{invite}"
    );
    assert_eq!(
        header(&invite, "X-Warmline-Reason"),
        Some("customer_request"),
        "{invite}"
    );
    assert!(header(&invite, "X-Warmline-Urgency").is_some(), "{invite}");
    // Which line the caller dialled (RFC 5806), for a desk shared by several.
    assert_eq!(
        header(&invite, "Diversion"),
        Some("<tel:+15550199>;reason=deflection;counter=1"),
        "{invite}"
    );
    let uui = header(&invite, "User-to-User").expect("User-to-User");
    let (hex_part, params) = uui.split_once(';').expect("UUI parameters");
    assert_eq!(params, "encoding=hex;purpose=isdn-uui");
    let uui_json: serde_json::Value =
        serde_json::from_slice(&hex::decode(hex_part).expect("hex")).expect("UUI is JSON");
    assert_eq!(uui_json["callId"], call_id.as_str());
    assert_eq!(uui_json["trigger"], "customer_request");
    for line in invite.lines() {
        assert!(line.len() <= 1024, "header longer than 1 KiB: {line}");
    }

    // The signed link fetches the whole context: the same bytes as the API.
    let url = header(&invite, "X-Warmline-Context-Url").expect("context link");
    let path = url
        .strip_prefix(&format!("http://{}", gw.addr))
        .expect("the link points at this gateway");
    assert!(!path.contains("token"), "{path}");
    let (status, via_link) = http(gw.addr, "GET", path, None, None).await;
    assert_eq!(status, 200, "{via_link}");
    let (_, via_api) = http(
        gw.addr,
        "GET",
        &format!("/v1/calls/{call_id}/context"),
        None,
        None,
    )
    .await;
    assert_eq!(
        via_link, via_api,
        "byte-identical to GET /v1/calls/{{id}}/context"
    );
    let ctx: serde_json::Value = serde_json::from_str(&via_link).expect("context JSON");
    assert_eq!(ctx["escalationReason"]["trigger"], "customer_request");

    // A tampered link, another call's link and an expired one are refused.
    let tampered = format!(
        "{}0",
        path.trim_end_matches(|c: char| c.is_ascii_hexdigit())
    );
    assert_eq!(http(gw.addr, "GET", &tampered, None, None).await.0, 403);
    let other = path.replace(&call_id, "someone-else");
    assert_eq!(http(gw.addr, "GET", &other, None, None).await.0, 403);
    let signer = warmline::util::signature::UrlSigner::new("desk-secret");
    let past = 1_000_000u64;
    let expired = format!(
        "/v1/handoff/{call_id}/context?exp={past}&sig={}",
        signer.sign(&call_id, past)
    );
    let (status, body) = http(gw.addr, "GET", &expired, None, None).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("expired"), "{body}");
    assert_eq!(
        http(
            gw.addr,
            "GET",
            &format!("/v1/handoff/{call_id}/context"),
            None,
            None
        )
        .await
        .0,
        403
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_number_destination_is_dialled_through_the_outbound_trunk_with_its_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let sf = scenario(dir.path(), "uas_trunk_challenges.xml", &[]);
    let log = dir.path().join("messages.log");
    let trunk = spawn_uas(sf, 15_085, 16_800, Some(&log));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ai = ScriptedAgent::start(ai_script_requesting_person())
        .await
        .unwrap();
    let gw = gateway(&ai.url(), |c| {
        sip_gateway_config(c, 22_100);
        c.sip.outbound_proxy = "sip:127.0.0.1:15085".into();
        c.sip.outbound_user = "warmline".into();
        c.sip.outbound_password = "tr-secret".into();
        c.routing
            .destinations
            .push(warmline::config::DestinationSeed {
                id: "oncall".into(),
                name: "On-call engineer".into(),
                uri: "tel:+15550123".into(),
                skills: Vec::new(),
                channels: 1,
                consult_seconds: 0,
                dtmf: String::new(),
                voicemail_after_ms: 0,
                hours: Default::default(),
            });
        // What the config loader does with destinations, for a config built in code.
        c.expand_destinations().expect("destination is valid");
    })
    .await;
    let done = [escalated_call(&gw, 20, 4880).await];
    let out = trunk.await.unwrap();
    assert!(
        out.status.success(),
        "sipp: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let messages = std::fs::read_to_string(&log).expect("sipp's message log");
    assert!(
        messages.contains("INVITE sip:+15550123@127.0.0.1:15085;user=phone SIP/2.0"),
        "the number is dialled at the trunk: {messages}"
    );
    assert!(
        messages
            .lines()
            .any(|l| l.starts_with("Authorization: Digest")),
        "{messages}"
    );
    assert!(
        messages.contains("SIP/2.0 486 Busy Here") && !messages.contains("403 Wrong Credentials"),
        "the trunk accepted warmline's digest answer: {messages}"
    );
    assert!(
        messages.contains("X-Warmline-Call-Id:"),
        "the context travels to the trunk too"
    );
    assert!(
        matches!(done[0].end_reason(), Some(EndReason::CallbackScheduled(_))),
        "{:?}",
        done[0].end_reason()
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outside_desk_that_presses_2_after_answering_passes_the_call_on() {
    let dir = tempfile::tempdir().unwrap();
    let sf = scenario(dir.path(), "uas_desk_presses_2.xml", &[]);
    let desk = spawn_uas(sf, 15_087, 16_900, None);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ai = ScriptedAgent::start(ai_script_requesting_person())
        .await
        .unwrap();
    let gw = gateway(&ai.url(), |c| {
        sip_gateway_config(c, 22_200);
        c.routing
            .destinations
            .push(warmline::config::DestinationSeed {
                id: "tier2".into(),
                name: "Tier 2 desk".into(),
                uri: "sip:queue@127.0.0.1:15087".into(),
                skills: Vec::new(),
                channels: 1,
                consult_seconds: 5,
                dtmf: String::new(),
                voicemail_after_ms: 0,
                hours: Default::default(),
            });
        c.expand_destinations().expect("destination is valid");
    })
    .await;
    let done = [escalated_call(&gw, 40, 4890).await];
    let out = desk.await.unwrap();
    assert!(
        out.status.success(),
        "sipp (the desk was hung up on after pressing 2): {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let steps: Vec<String> = handoff_steps(&done[0])
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    let at = |s: &str| steps.iter().position(|x| x == s);
    assert!(at("answered").is_some(), "{steps:?}");
    assert!(at("consult_declined") > at("answered"), "{steps:?}");
    assert!(
        at("merged").is_none(),
        "a desk that passed is never merged: {steps:?}"
    );
    assert!(
        matches!(done[0].end_reason(), Some(EndReason::CallbackScheduled(_))),
        "nobody else: a callback, not dead air: {:?} {steps:?}",
        done[0].end_reason()
    );
    gw.shutdown().await;
}

/// What a raw desk got: every RTP packet (payload type, payload, arrival),
/// when its own greeting ended, and whether the gateway hung up on it.
struct DeskLog {
    packets: Vec<(u8, Vec<u8>, std::time::Instant)>,
    greeting_ended: Option<std::time::Instant>,
    hung_up_on: bool,
}

/// A desk on a raw UDP socket: answers every INVITE with 200 OK (PCMU and
/// telephone-event 101), then says a loud `greeting` (none when zero) and
/// silence after it, 20 ms a frame, answers BYE, and keeps every RTP packet
/// it gets, in arrival order, until the call ends.
async fn recording_desk(
    greeting: Duration,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<DeskLog>) {
    use warmline::legs::sip::message::SipMessage;
    let sip = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let rtp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sip.local_addr().unwrap();
    let rtp_port = rtp.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (mut sbuf, mut rbuf) = (vec![0u8; 8192], vec![0u8; 2048]);
        let mut log = DeskLog {
            packets: Vec::new(),
            greeting_ended: None,
            hung_up_on: false,
        };
        let loud = loud_frames(1);
        let mut talk: Option<(std::net::SocketAddr, std::time::Instant, u16)> = None;
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
        loop {
            tokio::select! {
                r = sip.recv_from(&mut sbuf) => {
                    let Ok((len, from)) = r else { break };
                    let Ok(msg) = SipMessage::parse(&sbuf[..len]) else { continue };
                    let reply = match msg.method() {
                        _ if msg.code().is_some() => continue,
                        "INVITE" => {
                            if let Ok(offer) = warmline::legs::sip::sdp::negotiate(&msg.body)
                                && !greeting.is_zero()
                            {
                                talk = Some((offer.remote, std::time::Instant::now(), 0));
                            }
                            let sdp = format!(
                                "v=0\r\no=desk 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                                 m=audio {rtp_port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
                                 a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\n"
                            );
                            msg.response(200, "OK", Some("desk"))
                                .with("Contact", format!("<sip:desk@{addr}>"))
                                .with_body("application/sdp", sdp.into_bytes())
                        }
                        "BYE" => {
                            log.hung_up_on = true;
                            let _ = sip.send_to(&msg.response(200, "OK", None).to_bytes(), from).await;
                            break;
                        }
                        "ACK" => continue,
                        _ => msg.response(200, "OK", None),
                    };
                    let _ = sip.send_to(&reply.to_bytes(), from).await;
                }
                r = rtp.recv_from(&mut rbuf) => {
                    let Ok((len, _)) = r else { break };
                    if let Ok(p) = warmline::media::rtp::RtpPacket::parse(&rbuf[..len]) {
                        log.packets.push((p.payload_type, p.payload.to_vec(), std::time::Instant::now()));
                    }
                }
                _ = tick.tick() => {
                    let Some((to, since, seq)) = talk.as_mut() else { continue };
                    let speaking = since.elapsed() < greeting;
                    if !speaking {
                        log.greeting_ended.get_or_insert_with(std::time::Instant::now);
                    }
                    let payload = if speaking { loud.clone() } else { vec![g711::ULAW_SILENCE; 160] };
                    let packet = warmline::media::rtp::RtpPacket {
                        marker: *seq == 0,
                        payload_type: 0,
                        seq: *seq,
                        timestamp: u32::from(*seq) * 160,
                        ssrc: 0x0de5_c0de,
                        payload,
                    };
                    *seq = seq.wrapping_add(1);
                    let _ = rtp.send_to(&packet.to_bytes(), *to).await;
                }
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        log
    });
    (addr, task)
}

/// A gateway whose only person is the destination at `desk`.
async fn gateway_with_desk(
    ai: &ScriptedAgent,
    ports: u16,
    desk: std::net::SocketAddr,
    (dtmf, voicemail_after_ms): (&str, u64),
) -> warmline::gateway::RunningGateway {
    gateway(&ai.url(), |c| {
        sip_gateway_config(c, ports);
        c.routing
            .destinations
            .push(warmline::config::DestinationSeed {
                id: "desk".into(),
                name: "Billing desk".into(),
                uri: format!("sip:pbx@{desk}"),
                skills: Vec::new(),
                channels: 1,
                consult_seconds: 0,
                dtmf: dtmf.into(),
                voicemail_after_ms,
                hours: Default::default(),
            });
        c.expand_destinations().expect("destination is valid");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_desk_s_hello_is_not_talked_over_and_a_voicemail_box_is_never_briefed() {
    let ai = ScriptedAgent::start(ai_script_requesting_person())
        .await
        .unwrap();
    // A person: "hello?" for a second, then listening.
    let (desk, heard) = recording_desk(Duration::from_secs(1)).await;
    let gw = gateway_with_desk(&ai, 22_400, desk, ("", 4000)).await;
    let done = escalated_call(&gw, 12, 4960).await;
    let log = heard.await.unwrap();
    gw.shutdown().await;
    let ended = log.greeting_ended.expect("the desk's greeting ended");
    let first_sound = log
        .packets
        .iter()
        .find(|(pt, p, _)| *pt == 0 && p.iter().any(|&b| b != g711::ULAW_SILENCE))
        .map(|(_, _, at)| *at)
        .expect("the desk heard the whisper");
    assert!(
        first_sound >= ended,
        "the whisper started {:?} before the desk's hello ended",
        ended.saturating_duration_since(first_sound)
    );
    println!(
        "greeting end → first whisper sound at the desk: {:?}",
        first_sound - ended
    );
    let steps: Vec<String> = handoff_steps(&done).into_iter().map(|(s, _)| s).collect();
    assert!(steps.iter().any(|s| s == "merged"), "{steps:?}");

    // A voicemail box: a greeting that runs on. Never briefed, hung up on,
    // and the caller moves on (nobody else: a callback) — no dead air.
    let (desk, heard) = recording_desk(Duration::from_secs(12)).await;
    let gw = gateway_with_desk(&ai, 22_500, desk, ("", 4000)).await;
    // The caller stays on long enough to hear the callback offer to its end.
    let done = escalated_call(&gw, 40, 4970).await;
    let log = heard.await.unwrap();
    gw.shutdown().await;
    assert!(log.hung_up_on, "the gateway hung up on the voicemail box");
    let briefed = log
        .packets
        .iter()
        .filter(|(pt, p, _)| *pt == 0 && p.iter().any(|&b| b != g711::ULAW_SILENCE))
        .count();
    assert_eq!(briefed, 0, "no whisper into a voicemail box");
    assert_eq!(
        step_detail(&done, "declined").as_deref(),
        Some("voicemail"),
        "{:?}",
        handoff_steps(&done)
    );
    assert!(
        matches!(done.end_reason(), Some(EndReason::CallbackScheduled(_))),
        "{:?}",
        done.end_reason()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_desk_reached_through_an_extension_gets_the_digits_before_the_whisper() {
    let (desk, heard) = recording_desk(Duration::ZERO).await;
    let ai = ScriptedAgent::start(ai_script_requesting_person())
        .await
        .unwrap();
    let gw = gateway_with_desk(&ai, 22_300, desk, ("2,04#", 0)).await;
    let done = escalated_call(&gw, 14, 4950).await;
    let packets: Vec<(u8, Vec<u8>)> = heard
        .await
        .unwrap()
        .packets
        .into_iter()
        .map(|(pt, p, _)| (pt, p))
        .collect();
    // RFC 4733 events (payload type 101): the first byte is the event, in order.
    let mut digits = String::new();
    let mut first_event = None;
    for (i, (pt, payload)) in packets.iter().enumerate() {
        if *pt == 101 && !payload.is_empty() {
            first_event.get_or_insert(i);
            let d = match payload[0] {
                e @ 0..=9 => char::from(b'0' + e),
                10 => '*',
                11 => '#',
                _ => '?',
            };
            // One digit is several packets of the same event (no digit repeats here).
            if !digits.ends_with(d) {
                digits.push(d);
            }
        }
    }
    assert_eq!(digits, "204#", "the digits, in order: {packets:?}");
    let first_audio = packets
        .iter()
        .position(|(pt, p)| *pt == 0 && p.iter().any(|&b| b != g711::ULAW_SILENCE));
    assert!(
        first_event < first_audio,
        "the digits go before the whisper (first event {first_event:?}, first sound {first_audio:?})"
    );
    let steps: Vec<String> = handoff_steps(&done).into_iter().map(|(s, _)| s).collect();
    assert!(
        steps.iter().any(|s| s == "merged"),
        "the desk still got the caller: {steps:?}"
    );
    gw.shutdown().await;
}
