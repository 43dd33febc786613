//! Human agents on SIP phones (UAC): an agent with `sip_uri` is "signed in" by
//! this task instead of a console. An offer rings the phone with an INVITE;
//! 180/183 keep it ringing, 200 accepts (the whisper then plays on this leg
//! only, as on a console), 486/603/other finals decline (next agent), and a
//! withdrawn offer or the ring timeout CANCELs.

use super::endpoint::{Incoming, SipEndpoint, Transport};
use super::greeting::{Greeting, GreetingConfig, GreetingWatch};
use super::handoff_headers::HandoffSignal;
use super::message::{SipMessage, host_port_of, request, uri_of};
use super::rtp_leg::{self, RtpControl};
use super::sdp;
use super::uas::{token, wait_bye_answer};
use crate::domain::{OfferKind, WithdrawReason};
use crate::legs::desk::{AcceptOutcome, HumanCommand};
use crate::legs::{HangupCause, LegCommand, LegEvent, recv_or_pending};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Longest ring before warmline gives up on its own (routing's ring timeout is usually shorter).
const MAX_RING: Duration = Duration::from_secs(60);

/// Starts a phone task for every configured agent with a `sip_uri`.
pub fn spawn_all(endpoint: &Arc<SipEndpoint>) {
    for seed in &endpoint.services.config().routing.agents {
        if seed.sip_uri.is_empty() {
            continue;
        }
        let phone = Phone {
            agent_id: seed.id.clone(),
            uri: seed.sip_uri.clone(),
            dtmf: seed.dtmf_after_answer.clone(),
            greeting: (seed.voicemail_after_ms > 0).then(|| GreetingConfig {
                quiet_start: GREETING_QUIET_START,
                voicemail_after: Duration::from_millis(seed.voicemail_after_ms),
            }),
        };
        let ep = Arc::clone(endpoint);
        tokio::spawn(async move { serve(ep, phone).await });
    }
}

/// One agent's phone (or a destination's channel).
struct Phone {
    agent_id: String,
    uri: String,
    /// Digits sent once it answers, before the whisper (`,` = 500 ms pause).
    dtmf: String,
    /// Wait for its greeting to end before the whisper (and spot a voicemail box).
    greeting: Option<GreetingConfig>,
}

/// A person who answers and says nothing gets the whisper after this.
const GREETING_QUIET_START: Duration = Duration::from_millis(1500);

/// The dialog task's relay between the call and a media leg that started
/// before the call was accepted (to send digits or hear the greeting out);
/// all `None` when the leg got the call's channels directly.
#[derive(Default)]
struct Relay {
    to_leg: Option<mpsc::Sender<LegCommand>>,
    from_leg: Option<mpsc::Receiver<LegEvent>>,
    from_call: Option<mpsc::Receiver<LegCommand>>,
}

/// Listens to an answered destination until its greeting is judged: over
/// (or never said) — the whisper may start — or a voicemail box. A leg that
/// ends meanwhile counts as a voicemail box too (nobody to brief).
async fn hear_greeting(config: GreetingConfig, events: &mut mpsc::Receiver<LegEvent>) -> Greeting {
    let mut watch = GreetingWatch::new(config, std::time::Instant::now());
    let mut pcm = Vec::new();
    loop {
        if let Some(verdict) = watch.verdict(std::time::Instant::now()) {
            return verdict;
        }
        match tokio::time::timeout_at(watch.deadline().into(), events.recv()).await {
            Ok(Some(LegEvent::Audio(ulaw))) => {
                crate::media::g711::decode_ulaw(&ulaw, &mut pcm);
                watch.frame(&pcm, std::time::Instant::now());
            }
            Ok(Some(LegEvent::Hangup(_)) | None) => return Greeting::Voicemail,
            Ok(Some(_)) | Err(_) => {}
        }
    }
}

/// Gap between two digits sent after answer.
const DIGIT_GAP: Duration = Duration::from_millis(250);
/// What `,` waits in a digit string.
const DIGIT_PAUSE: Duration = Duration::from_millis(500);

async fn serve(endpoint: Arc<SipEndpoint>, phone: Phone) {
    let Phone {
        agent_id,
        uri,
        dtmf,
        greeting,
    } = phone;
    let (tx, mut rx) = mpsc::channel::<HumanCommand>(16);
    if let Err(e) = endpoint.services.phone_connected(&agent_id, tx) {
        tracing::error!(agent = %agent_id, error = %e, "SIP phone cannot sign in");
        return;
    }
    tracing::info!(agent = %agent_id, %uri, "agent reachable on a SIP phone");
    while let Some(cmd) = rx.recv().await {
        match cmd {
            HumanCommand::Offer {
                call_id,
                kind: OfferKind::Call,
                ..
            } => {
                ring(
                    &endpoint,
                    (&agent_id, &uri, &dtmf, greeting),
                    &call_id,
                    &mut rx,
                )
                .await
            }
            HumanCommand::Offer { call_id, .. } => {
                // A saved callback needs a screen to show its context on.
                tracing::info!(agent = %agent_id, call = %call_id, "callback not offered to a SIP phone");
                let _ = endpoint
                    .services
                    .decline(&agent_id, &call_id, WithdrawReason::Declined);
            }
            HumanCommand::OfferWithdrawn { .. } | HumanCommand::Presence(_) => {}
            HumanCommand::SignedOut { reason } => {
                tracing::warn!(agent = %agent_id, %reason, "SIP phone signed out; it takes no more calls until restart");
                break;
            }
        }
    }
}

/// One offer: ring, then (if answered) carry the call until either side hangs up.
async fn ring(
    endpoint: &Arc<SipEndpoint>,
    (agent_id, uri, dtmf, greeting): (&str, &str, &str, Option<GreetingConfig>),
    call: &str,
    offers: &mut mpsc::Receiver<HumanCommand>,
) {
    let desk = &endpoint.services;
    let decline = |why: &str| {
        tracing::info!(agent = %agent_id, call = %call, why, "SIP phone did not take the call");
        let _ = desk.decline(agent_id, call, WithdrawReason::Declined);
    };
    let Some(target) = host_port_of(uri) else {
        decline("the agent's sip_uri does not resolve");
        return;
    };
    let Some(sockets) = endpoint.ports.bind().await else {
        decline("no free RTP ports");
        return;
    };
    let transport = Transport::Udp(target);
    let sip_call_id = format!("{}@warmline", token());
    let (tx, mut rx) = mpsc::channel::<Incoming>(32);
    endpoint.register(&sip_call_id, tx);
    let our_tag = token();
    let from = format!("<sip:warmline@{}>;tag={our_tag}", endpoint.local);
    let branch = token();
    // Every request of this dialog: same URI, From (our tag) and Call-ID.
    let req = |method: &str, target: &str, branch: &str, to: &str, cseq: u32| {
        request(
            method,
            target,
            "UDP",
            endpoint.local,
            branch,
            &from,
            to,
            &sip_call_id,
            cseq,
        )
    };
    let their_uri = format!("<{uri}>");
    let services = &endpoint.services;
    // The context travels in the signalling: a desk without a warmline console
    // still knows who, why and how urgent, and where to fetch the rest.
    let mut context_headers = Vec::new();
    if services.config().routing.signal_context {
        let context = services.store().context(call).await.ok().flatten();
        let signal = HandoffSignal::from_context(call, context.as_deref());
        let url = desk.context_url(call);
        let routing = &services.config().routing;
        context_headers = signal.headers(Some(&url), routing.assert_caller_id, &routing.diversion);
    }
    let sdp_offer = sdp::describe(sockets.local, u64::from(sockets.local.port()), None);
    let build_invite = |branch: &str, cseq: u32, auth: Option<(&'static str, String)>| {
        let mut invite = req("INVITE", uri, branch, &their_uri, cseq)
            .with("Contact", format!("<sip:warmline@{}>", endpoint.local))
            .with("Subject", format!("warmline call {call}"));
        for (name, value) in &context_headers {
            invite = invite.with(name, value.clone());
        }
        if let Some((name, value)) = auth {
            invite = invite.with(name, value);
        }
        invite.with_body("application/sdp", sdp_offer.clone())
    };
    let mut branch = branch;
    let mut cseq = 1u32;
    let mut invite = build_invite(&branch, cseq, None);
    endpoint.send(&invite, &transport).await;
    let ack_for = |resp: &SipMessage, branch: &str, cseq: u32| {
        req("ACK", uri, branch, resp.header("To").unwrap_or(""), cseq)
    };
    let mut cancel = req("CANCEL", uri, &branch, &their_uri, cseq);
    let sip_config = &services.config().sip;
    let mut authenticated = sip_config.outbound_user.is_empty();
    let mut retransmit = Duration::from_millis(500);
    let mut next = tokio::time::Instant::now() + retransmit;
    let mut provisional = false;
    let deadline = tokio::time::Instant::now() + MAX_RING;
    let answer = loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next), if !provisional => {
                endpoint.send(&invite, &transport).await;
                retransmit = (retransmit * 2).min(Duration::from_secs(4));
                next += retransmit;
            }
            _ = tokio::time::sleep_until(deadline) => {
                endpoint.send(&cancel, &transport).await;
                decline("no answer");
                break None;
            }
            cmd = offers.recv() => match cmd {
                Some(HumanCommand::OfferWithdrawn { call_id, reason }) if call_id == call => {
                    tracing::info!(agent = %agent_id, %reason, "offer withdrawn: cancelling the ring");
                    endpoint.send(&cancel, &transport).await;
                    break None;
                }
                Some(_) => {}
                None => break None,
            },
            incoming = rx.recv() => {
                let Some(Incoming { msg, .. }) = incoming else { break None };
                match (msg.method(), msg.code()) {
                    ("INVITE", Some(100..=199)) => provisional = true,
                    ("INVITE", Some(200..=299)) => {
                        endpoint.send(&ack_for(&msg, &token(), cseq), &transport).await;
                        break Some(msg);
                    }
                    ("INVITE", Some(code @ (401 | 407))) if !authenticated => {
                        // The trunk asks who we are: answer its digest challenge once.
                        endpoint.send(&ack_for(&msg, &branch, cseq), &transport).await;
                        let (challenge, answer_header) = if code == 401 {
                            ("WWW-Authenticate", "Authorization")
                        } else {
                            ("Proxy-Authenticate", "Proxy-Authorization")
                        };
                        let answered = msg.header(challenge).ok_or_else(|| "no challenge".to_string()).and_then(|c| {
                            super::digest::answer_challenge(c, "INVITE", uri, &sip_config.outbound_user, &sip_config.outbound_password)
                                .map_err(|e| e.to_string())
                        });
                        let Ok(value) = answered else {
                            decline(&format!("{code} with a challenge warmline cannot answer"));
                            break None;
                        };
                        authenticated = true;
                        branch = token();
                        cseq += 1;
                        invite = build_invite(&branch, cseq, Some((answer_header, value)));
                        cancel = req("CANCEL", uri, &branch, &their_uri, cseq);
                        endpoint.send(&invite, &transport).await;
                        retransmit = Duration::from_millis(500);
                        next = tokio::time::Instant::now() + retransmit;
                        provisional = false;
                    }
                    ("INVITE", Some(code)) => {
                        endpoint.send(&ack_for(&msg, &branch, cseq), &transport).await;
                        decline(&format!("{code} {}", match &msg.start { super::message::StartLine::Response { reason, .. } => reason.as_str(), _ => "" }));
                        break None;
                    }
                    _ => {}
                }
            }
        }
    };
    let Some(ok) = answer else {
        // Absorb the 487 to a CANCEL and ACK it, briefly.
        let until = tokio::time::Instant::now() + Duration::from_secs(2);
        while let Ok(Some(Incoming { msg, .. })) = tokio::time::timeout_at(until, rx.recv()).await {
            if msg.method() == "INVITE" && msg.code().is_some_and(|c| c >= 300) {
                endpoint
                    .send(&ack_for(&msg, &branch, cseq), &transport)
                    .await;
                break;
            }
        }
        endpoint.unregister(&sip_call_id);
        return;
    };
    let negotiated = match sdp::negotiate(&ok.body) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(agent = %agent_id, error = %e, "agent phone answered with unusable SDP");
            let bye = req(
                "BYE",
                uri_of(ok.header("Contact").unwrap_or(uri)),
                &token(),
                ok.header("To").unwrap_or(""),
                cseq + 1,
            );
            endpoint.send(&bye, &transport).await;
            decline("unusable SDP answer");
            endpoint.unregister(&sip_call_id);
            return;
        }
    };
    let remote_target = uri_of(ok.header("Contact").unwrap_or(uri)).to_string();
    let bye = req(
        "BYE",
        &remote_target,
        &token(),
        ok.header("To").unwrap_or(""),
        cseq + 1,
    );
    let (ctl_tx, ctl_rx) = mpsc::channel(4);
    let (hung_tx, mut hung_rx) = oneshot::channel();
    // warmline dialled this phone (a configured URI): its SDP address is ours to trust.
    let (jitter, mut latch) = endpoint.services.config().sip.rtp();
    latch.trust_sdp = true;
    let leg = format!("agent:{agent_id}");
    let codec = negotiated.codec;
    let too_late = |why: String| {
        tracing::warn!(agent = %agent_id, error = %why, "answered too late; hanging up the phone");
    };
    let accepted = |outcome: Result<AcceptOutcome, String>| match outcome {
        Ok(AcceptOutcome::Call(end)) => Ok((end.commands, end.events)),
        Err(e) => Err(e),
        Ok(_) => Err("a callback cannot be taken on a phone".to_string()),
    };
    // With digits to send (an extension, an IVR choice) or a greeting to hear
    // out, the media leg starts on channels of its own: the digits go first,
    // then the greeting is judged, and only then is the call accepted, so the
    // whisper follows them; the dialog task then relays the call's frames.
    // Otherwise the leg gets the call's channels directly (no relay hop per frame).
    let mut relay = Relay::default();
    let (media, call_events) = if dtmf.is_empty() && greeting.is_none() {
        let (commands, events) = match accepted(Arc::clone(desk).accept(agent_id, call).await) {
            Ok(links) => links,
            Err(why) => {
                too_late(why);
                endpoint.send(&bye, &transport).await;
                endpoint.unregister(&sip_call_id);
                return;
            }
        };
        let links = rtp_leg::RtpLegLinks {
            events: events.clone(),
            commands,
            control: ctl_rx,
            hung_up: hung_tx,
        };
        let media = rtp_leg::spawn(sockets, negotiated, (jitter, latch), links, call, &leg);
        (media, events)
    } else {
        let (leg_commands, commands) = mpsc::channel(crate::legs::twilio::COMMAND_QUEUE);
        let (events, mut leg_events) = mpsc::channel(crate::legs::twilio::EVENT_QUEUE);
        let links = rtp_leg::RtpLegLinks {
            events,
            commands,
            control: ctl_rx,
            hung_up: hung_tx,
        };
        let media = rtp_leg::spawn(sockets, negotiated, (jitter, latch), links, call, &leg);
        if !dtmf.is_empty() {
            tracing::info!(agent = %agent_id, call = %call, digits = dtmf, "sending digits after answer");
        }
        for digit in dtmf.chars() {
            let wait = if digit == ',' {
                DIGIT_PAUSE
            } else {
                let _ = leg_commands.send(LegCommand::Dtmf(digit)).await;
                DIGIT_GAP
            };
            tokio::time::sleep(wait).await;
            // What the desk plays meanwhile (an IVR's prompts) is for nobody.
            while leg_events.try_recv().is_ok() {}
        }
        if let Some(config) = greeting
            && hear_greeting(config, &mut leg_events).await != Greeting::Over
        {
            tracing::info!(agent = %agent_id, call = %call, "a voicemail box answered; moving the call on");
            endpoint.send(&bye, &transport).await;
            let _ = ctl_tx.send(RtpControl::Stop).await;
            let _ = desk.decline(agent_id, call, WithdrawReason::Voicemail);
            endpoint.unregister(&sip_call_id);
            return;
        }
        match accepted(Arc::clone(desk).accept(agent_id, call).await) {
            Ok((call_commands, call_events)) => {
                relay = Relay {
                    to_leg: Some(leg_commands),
                    from_leg: Some(leg_events),
                    from_call: Some(call_commands),
                };
                (media, call_events)
            }
            Err(why) => {
                too_late(why);
                endpoint.send(&bye, &transport).await;
                let _ = ctl_tx.send(RtpControl::Stop).await;
                endpoint.unregister(&sip_call_id);
                return;
            }
        }
    };
    tracing::info!(agent = %agent_id, call = %call, ?codec, "agent answered on the SIP phone");
    loop {
        let from_call = recv_or_pending(relay.from_call.as_mut());
        let from_leg = recv_or_pending(relay.from_leg.as_mut());
        tokio::select! {
            cmd = from_call => {
                let Some(to_leg) = relay.to_leg.as_ref() else { continue };
                // The call letting go of this phone reaches the leg as a hang-up.
                let last = cmd.is_none();
                if to_leg.send(cmd.unwrap_or(LegCommand::Hangup)).await.is_err() || last {
                    relay.from_call = None;
                }
            }
            event = from_leg => match event {
                Some(event) => {
                    let _ = call_events.send(event).await;
                }
                None => relay.from_leg = None,
            },
            _ = &mut hung_rx => {
                endpoint.send(&bye, &transport).await;
                wait_bye_answer(&mut rx).await;
                break;
            }
            incoming = rx.recv() => {
                let Some(Incoming { msg, transport: t }) = incoming else { break };
                let theirs = msg.tag("From") == ok.tag("To") && msg.tag("To") == Some(our_tag.as_str());
                if msg.code().is_none() && !theirs {
                    tracing::warn!(method = msg.method(), from = %t.peer(), "request with tags that are not the agent phone dialog's refused (481)");
                    if msg.method() != "ACK" {
                        endpoint.send(&msg.response(481, "Call/Transaction Does Not Exist", None), &t).await;
                    }
                    continue;
                }
                match (msg.method(), msg.code()) {
                    ("BYE", None) => {
                        endpoint.send(&msg.response(200, "OK", None), &t).await;
                        let _ = call_events.send(LegEvent::Hangup(HangupCause::Normal)).await;
                        let _ = ctl_tx.send(RtpControl::Stop).await;
                        break;
                    }
                    ("INVITE", Some(200..=299)) => {
                        // Our ACK was lost: answer the retransmitted 200 again.
                        endpoint.send(&ack_for(&msg, &token(), cseq), &t).await;
                    }
                    (_, None) if msg.method() != "ACK" => {
                        endpoint.send(&msg.response(200, "OK", None), &t).await;
                    }
                    _ => {}
                }
            }
        }
    }
    drop(ctl_tx);
    if let Ok(stats) = media.await {
        endpoint.record_media(call, stats.to_row(&leg));
    }
    endpoint.unregister(&sip_call_id);
}
