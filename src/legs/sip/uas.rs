//! An inbound SIP call (UAS dialog): INVITE → 100 (→ 180) → 200 with the SDP
//! answer, retransmitted until the ACK; then the call runs through the same
//! session as a Media Streams call, with an RTP leg for media. BYE from either
//! side, CANCEL while ringing, re-INVITE (hold) and OPTIONS are handled; every
//! exit releases the dialog and its ports.

use super::endpoint::{ALLOW, Incoming, SipEndpoint, Transport};
use super::message::{SipMessage, StartLine, uri_of, user_of};
use super::rtp_leg::{self, RtpControl};
use super::sdp::{self, SdpError};
use crate::legs::media_streams::StartMeta;
use crate::legs::{HangupCause, LegEvent};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{mpsc, oneshot};

/// RFC 3261 T1 and T2.
const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);

/// Starts the dialog for a new INVITE.
pub fn spawn(endpoint: &Arc<SipEndpoint>, invite: Incoming) {
    let (tx, rx) = mpsc::channel(32);
    let call_id = invite.msg.call_id().to_string();
    endpoint.register(&call_id, tx);
    let endpoint = Arc::clone(endpoint);
    let span = tracing::info_span!("sip", sip_call_id = %call_id);
    tokio::spawn(tracing::Instrument::instrument(
        async move {
            run(&endpoint, invite, rx).await;
            endpoint.unregister(&call_id);
        },
        span,
    ));
}

/// A random-enough hex token (tags, branches).
pub fn token() -> String {
    format!("{:016x}", super::random_u64())
}

async fn run(endpoint: &Arc<SipEndpoint>, invite: Incoming, mut rx: mpsc::Receiver<Incoming>) {
    let to_tag = token();
    let transport = invite.transport.clone();
    let msg = invite.msg;
    endpoint
        .send(&msg.response(100, "Trying", None), &transport)
        .await;
    let offer = if msg.body.is_empty() {
        Err(SdpError::Malformed(
            "no SDP offer in the INVITE (late offer is not supported)".into(),
        ))
    } else {
        sdp::negotiate(&msg.body)
    };
    let negotiated = match offer {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "INVITE refused");
            let (code, reason) = match e {
                SdpError::NoCommonCodec(_) | SdpError::Unacceptable(_) => {
                    (488, "Not Acceptable Here")
                }
                SdpError::Malformed(_) => (400, "Bad Request"),
            };
            let reply = msg
                .response(code, reason, Some(&to_tag))
                .with("Warning", warning(&e));
            final_response(endpoint, &msg, reply, &transport, &mut rx).await;
            return;
        }
    };
    let Some(sockets) = endpoint.ports.bind().await else {
        tracing::error!("no free RTP ports in sip.rtp_port_min..max");
        let reply = msg
            .response(503, "Service Unavailable", Some(&to_tag))
            .with("Retry-After", "5");
        final_response(endpoint, &msg, reply, &transport, &mut rx).await;
        return;
    };
    let local_media = sockets.local;
    let contact = format!(
        "<sip:warmline@{};transport={}>",
        endpoint.local,
        transport.name().to_ascii_lowercase()
    );
    // Ring first when configured; a CANCEL meanwhile ends it (487).
    let ring = Duration::from_millis(endpoint.services.config().sip.ring_ms);
    if !ring.is_zero() {
        endpoint
            .send(
                &msg.response(180, "Ringing", Some(&to_tag))
                    .with("Contact", contact.clone()),
                &transport,
            )
            .await;
        let until = tokio::time::Instant::now() + ring;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => break,
                incoming = rx.recv() => {
                    let Some(Incoming { msg: m, transport: t }) = incoming else { return };
                    if !belongs_to_dialog(&m, &msg, &to_tag) {
                        refuse_stranger(endpoint, &m, &t).await;
                        continue;
                    }
                    if m.method() == "CANCEL" {
                        endpoint.send(&m.response(200, "OK", Some(&to_tag)), &t).await;
                        let reply = msg.response(487, "Request Terminated", Some(&to_tag));
                        final_response(endpoint, &msg, reply, &transport, &mut rx).await;
                        tracing::info!("caller cancelled while ringing");
                        return;
                    }
                    if m.method() == "INVITE" && m.code().is_none() {
                        endpoint.send(&msg.response(180, "Ringing", Some(&to_tag)), &transport).await;
                    }
                }
            }
        }
    }
    let session_id = u64::from(local_media.port());
    let ok = msg
        .response(200, "OK", Some(&to_tag))
        .with("Contact", contact.clone())
        .with("Allow", ALLOW)
        .with_body(
            "application/sdp",
            sdp::describe(local_media, session_id, Some(&negotiated)),
        );
    endpoint.send(&ok, &transport).await;
    let _slot = endpoint.establish();

    // The call: same session as a Media Streams caller, RTP for media.
    let from_user = user_of(uri_of(msg.header("From").unwrap_or(""))).to_string();
    let to_user = user_of(uri_of(msg.header("To").unwrap_or(""))).to_string();
    let call_sid = msg.call_id().to_string();
    let started = Instant::now();
    let started_wall = SystemTime::now();
    let services = Arc::clone(&endpoint.services);
    let stream_sid = format!("SIP-{to_tag}");
    let mut start = StartMeta {
        call_sid: call_sid.clone(),
        stream_sid: stream_sid.clone(),
        tracks: vec!["inbound".into(), "outbound".into()],
        ..StartMeta::default()
    };
    start.custom_parameters.insert("from".into(), from_user);
    start.custom_parameters.insert("to".into(), to_user.clone());
    start.custom_parameters.insert(
        "transport".into(),
        format!("sip/{}", transport.name().to_ascii_lowercase()),
    );
    if !to_user.is_empty()
        && !to_user.starts_with('+')
        && !to_user.chars().all(|c| c.is_ascii_digit())
    {
        start.custom_parameters.insert("dialed".into(), to_user);
    }
    let crate::legs::CallerEnds {
        call_id,
        events: ev_tx,
        commands: cmd_rx,
    } = crate::legs::start_caller(
        Arc::clone(&services) as _,
        start,
        stream_sid,
        (started, started_wall),
    );
    tracing::info!(codec = ?negotiated.codec, remote = %negotiated.remote, call = %call_id, "SIP call answered");
    let (ctl_tx, ctl_rx) = mpsc::channel(4);
    let (hung_tx, mut hung_rx) = oneshot::channel();
    let rtp_tuning = services.config().sip.rtp();
    let links = rtp_leg::RtpLegLinks {
        events: ev_tx.clone(),
        commands: cmd_rx,
        control: ctl_rx,
        hung_up: hung_tx,
    };
    let media = rtp_leg::spawn(
        sockets,
        negotiated.clone(),
        rtp_tuning,
        links,
        &call_id,
        "caller",
    );

    // The dialog until BYE (either side).
    let mut acked = false;
    let mut retransmit = T1;
    let mut next_retransmit = tokio::time::Instant::now() + T1;
    let give_up = tokio::time::Instant::now() + 64 * T1;
    let mut local_cseq = 1u32;
    let remote_target = transport.clone();
    let mut last_reinvite: Option<(u32, SipMessage)> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next_retransmit), if !acked => {
                if tokio::time::Instant::now() >= give_up {
                    tracing::warn!("no ACK for the 200 OK; ending the call");
                    let _ = ev_tx.send(LegEvent::Hangup(HangupCause::Lost("no ACK from the caller".into()))).await;
                    let _ = ctl_tx.send(RtpControl::Stop).await;
                    send_bye(endpoint, &msg, &to_tag, &mut local_cseq, &remote_target).await;
                    break;
                }
                if matches!(transport, Transport::Udp(_)) {
                    endpoint.send(&ok, &transport).await;
                }
                retransmit = (retransmit * 2).min(T2);
                next_retransmit += retransmit;
            }
            _ = &mut hung_rx => {
                // The call ended on our side (gateway hangup): BYE the caller.
                send_bye(endpoint, &msg, &to_tag, &mut local_cseq, &remote_target).await;
                wait_bye_answer(&mut rx).await;
                break;
            }
            incoming = rx.recv() => {
                let Some(Incoming { msg: m, transport: t }) = incoming else { break };
                let is_request = matches!(m.start, StartLine::Request { .. });
                if is_request && !belongs_to_dialog(&m, &msg, &to_tag) {
                    refuse_stranger(endpoint, &m, &t).await;
                    continue;
                }
                match (m.method(), is_request) {
                    ("ACK", true) => acked = true,
                    ("INVITE", true) if m.tag("To").is_none() => {
                        // A retransmission of the original INVITE.
                        endpoint.send(&ok, &t).await;
                    }
                    ("INVITE", true) => {
                        // re-INVITE: hold/resume or a new address.
                        let cseq = m.cseq().map(|c| c.0).unwrap_or(0);
                        if let Some((seen, reply)) = &last_reinvite && *seen == cseq {
                            endpoint.send(reply, &t).await;
                            continue;
                        }
                        let reply = match sdp::negotiate(&m.body) {
                            Ok(n) => {
                                tracing::info!(on_hold = n.on_hold, remote = %n.remote, "re-INVITE");
                                let body = sdp::describe(local_media, session_id + u64::from(cseq), Some(&n));
                                let _ = ctl_tx.send(RtpControl::Update(n)).await;
                                m.response(200, "OK", None)
                                    .with("Contact", contact.clone())
                                    .with_body("application/sdp", body)
                            }
                            Err(e) => m
                                .response(488, "Not Acceptable Here", None)
                                .with("Warning", warning(&e)),
                        };
                        endpoint.send(&reply, &t).await;
                        last_reinvite = Some((cseq, reply));
                    }
                    ("BYE", true) => {
                        endpoint.send(&m.response(200, "OK", None), &t).await;
                        tracing::info!("caller hung up (BYE)");
                        let _ = ev_tx.send(LegEvent::Hangup(HangupCause::Normal)).await;
                        let _ = ctl_tx.send(RtpControl::Stop).await;
                        break;
                    }
                    ("CANCEL", true) => {
                        // Too late: the call is answered (RFC 3261 §9.2).
                        endpoint.send(&m.response(200, "OK", None), &t).await;
                    }
                    ("OPTIONS", true) => {
                        endpoint.send(&m.response(200, "OK", None).with("Allow", ALLOW), &t).await;
                    }
                    (_, true) => {
                        endpoint.send(&m.response(501, "Not Implemented", None).with("Allow", ALLOW), &t).await;
                    }
                    (_, false) => {} // responses to our BYE arrive after we stop listening
                }
            }
        }
    }
    drop(ctl_tx);
    if let Ok(stats) = media.await {
        endpoint.record_media(&call_id, stats.to_row("caller"));
    }
}

/// Whether an incoming request with this dialog's Call-ID really is part of it
/// (RFC 3261 §12.2.2): with a To tag, both tags must be the dialog's; without
/// one it can only be the INVITE's own transaction again (a retransmission or
/// its CANCEL: the caller's From tag and the INVITE's CSeq number).
fn belongs_to_dialog(m: &SipMessage, invite: &SipMessage, to_tag: &str) -> bool {
    if m.tag("From") != invite.tag("From") {
        return false;
    }
    match m.tag("To") {
        Some(tag) => tag == to_tag,
        None => {
            matches!(m.method(), "INVITE" | "CANCEL" | "ACK")
                && m.cseq().ok().map(|c| c.0) == invite.cseq().ok().map(|c| c.0)
        }
    }
}

/// A request that names this dialog's Call-ID with the wrong tags: `481`
/// (an ACK is never answered), and nothing in the call changes.
async fn refuse_stranger(endpoint: &SipEndpoint, m: &SipMessage, t: &Transport) {
    tracing::warn!(
        method = m.method(),
        from = %t.peer(),
        "in-dialog request with tags that are not the dialog's refused (481)"
    );
    if m.method() != "ACK" {
        let reply = m.response(481, "Call/Transaction Does Not Exist", None);
        endpoint.send(&reply, t).await;
    }
}

/// A Warning header value (RFC 3261 §20.43) carrying why an offer was refused.
fn warning(e: &SdpError) -> String {
    format!("399 warmline \"{}\"", e.to_string().replace('"', "'"))
}

/// Sends a final (error) response and absorbs INVITE retransmissions until the ACK.
async fn final_response(
    endpoint: &SipEndpoint,
    invite: &SipMessage,
    reply: SipMessage,
    transport: &Transport,
    rx: &mut mpsc::Receiver<Incoming>,
) {
    endpoint.send(&reply, transport).await;
    let deadline = tokio::time::Instant::now() + 32 * T1;
    let mut next = tokio::time::Instant::now() + T1;
    let mut interval = T1;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return,
            _ = tokio::time::sleep_until(next), if matches!(transport, Transport::Udp(_)) => {
                endpoint.send(&reply, transport).await;
                interval = (interval * 2).min(T2);
                next += interval;
            }
            incoming = rx.recv() => match incoming {
                None => return,
                Some(i) if i.msg.method() == "ACK" => return,
                Some(i) if i.msg.method() == "INVITE" && i.msg.cseq().ok() == invite.cseq().ok() => {
                    endpoint.send(&reply, transport).await;
                }
                Some(i) if i.msg.code().is_none() && i.msg.method() != "ACK" => {
                    let r = i.msg.response(481, "Call/Transaction Does Not Exist", None);
                    endpoint.send(&r, &i.transport).await;
                }
                Some(_) => {}
            }
        }
    }
}

/// BYE to the caller: From is our side (the INVITE's To with our tag), To is theirs.
async fn send_bye(
    endpoint: &SipEndpoint,
    invite: &SipMessage,
    to_tag: &str,
    cseq: &mut u32,
    transport: &Transport,
) {
    let target = invite
        .header("Contact")
        .map(uri_of)
        .unwrap_or_else(|| uri_of(invite.header("From").unwrap_or("")))
        .to_string();
    let ours = invite.header("To").unwrap_or("");
    let from = if super::message::param(ours, "tag").is_some() {
        ours.to_string()
    } else {
        format!("{ours};tag={to_tag}")
    };
    *cseq += 1;
    let bye = super::message::request(
        "BYE",
        &target,
        transport.name(),
        endpoint.local,
        &token(),
        &from,
        invite.header("From").unwrap_or(""),
        invite.call_id(),
        *cseq,
    );
    endpoint.send(&bye, transport).await;
}

/// Waits briefly for the answer to our BYE (retransmissions are not needed on
/// loopback-grade links; the dialog is released either way).
pub(super) async fn wait_bye_answer(rx: &mut mpsc::Receiver<Incoming>) {
    let deadline = tokio::time::Instant::now() + 4 * T1;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return,
            incoming = rx.recv() => match incoming {
                None => return,
                Some(i) if i.msg.method() == "BYE" && i.msg.code().is_some_and(|c| c >= 200) => return,
                Some(_) => {}
            }
        }
    }
}
