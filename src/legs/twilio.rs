//! The caller leg: a WebSocket endpoint byte-compatible with Twilio's
//! bidirectional Media Streams (`<Connect><Stream url="wss://…/media">`).
//!
//! Before `start` the socket only waits (bounded in time and in refused
//! messages); `start` must announce μ-law 8 kHz mono. Then each inbound message
//! becomes a [`LegEvent`] for the call task and each [`LegCommand`] becomes an
//! outbound `media`/`mark`/`clear` carrying the `streamSid`.

use crate::config::ServerConfig;
use crate::legs::liveness::{Liveness, LivenessConfig};
use crate::legs::media_streams::{self, AppWriter, ProtocolError, StartMeta, StreamMessage};
use crate::legs::{
    CallStarter, HangupCause, LegCommand, LegEvent, keep_alive, send_within, start_caller,
};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// Events buffered from the caller towards the call task.
pub const EVENT_QUEUE: usize = 256;
/// Commands buffered towards the caller (≈ 10 s of audio).
pub const COMMAND_QUEUE: usize = 512;

/// WebSocket close code for a policy problem (no start in time, too many bad messages).
const CLOSE_POLICY: u16 = 1008;
/// WebSocket close code for data the endpoint cannot accept (wrong codec).
const CLOSE_UNSUPPORTED: u16 = 1003;
/// WebSocket close code for a peer given up (RFC 6455 §7.4.1, "going away").
const CLOSE_GOING_AWAY: u16 = 1001;
/// WebSocket close code for a message too big to take (RFC 6455 §7.4.1).
const CLOSE_TOO_BIG: u16 = 1009;

/// Whether a read error is tungstenite's size limit (message or frame too long).
fn is_too_big(error: &str) -> bool {
    error.contains("too long") || error.contains("Space limit exceeded")
}

/// Serves one provider stream from upgrade to close: the call starts through
/// `calls` once a valid `start` arrived.
pub async fn serve_stream(
    mut socket: WebSocket,
    server: &ServerConfig,
    calls: Arc<dyn CallStarter>,
) {
    let Some((start, stream_sid)) = await_start(&mut socket, server).await else {
        return;
    };
    let ends = start_caller(
        calls,
        start,
        stream_sid.clone(),
        (Instant::now(), SystemTime::now()),
    );
    let (ev_tx, mut cmd_rx) = (ends.events, ends.commands);

    let writer = AppWriter::new(stream_sid.clone());
    let max = server.max_message_bytes;
    let liveness = LivenessConfig::from_server(server);
    let mut live = Liveness::new(liveness, Instant::now());
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(live.deadline().into()) => {
                let ping = Message::Ping(Default::default());
                if let Some(why) = keep_alive(&mut live, &mut socket, ping, liveness.dead_after, "caller").await {
                    let _ = ev_tx.send(LegEvent::Hangup(HangupCause::Lost(why))).await;
                    close(&mut socket, CLOSE_GOING_AWAY, "peer timeout").await;
                    break;
                }
            }
            msg = socket.recv() => {
                live.heard(Instant::now());
                let event = match msg {
                    Some(Ok(Message::Text(text))) => translate(media_streams::parse(&text, max), &stream_sid),
                    Some(Ok(Message::Binary(b))) => Some(LegEvent::Error(ProtocolError::BinaryFrame(b.len()))),
                    Some(Ok(Message::Close(_))) => Some(LegEvent::Hangup(HangupCause::Lost(
                        "caller socket closed without stop".into(),
                    ))),
                    Some(Ok(_)) => None,
                    Some(Err(e)) => {
                        let why = format!("caller socket error: {e}");
                        if is_too_big(&why) {
                            // Over the hard cap (4 × server.max_message_bytes): the
                            // socket cannot go on, but it is closed properly.
                            tracing::warn!(error = %e, "message over the hard size cap; closing the stream (1009)");
                            close(&mut socket, CLOSE_TOO_BIG, "message too big").await;
                        }
                        Some(LegEvent::Hangup(HangupCause::Lost(why)))
                    }
                    None => Some(LegEvent::Hangup(HangupCause::Lost("caller socket dropped".into()))),
                };
                let Some(event) = event else { continue };
                let last = matches!(event, LegEvent::Hangup(_));
                if ev_tx.send(event).await.is_err() {
                    // The call already ended: close the stream properly.
                    close(&mut socket, 1000, "call ended").await;
                    break;
                }
                if last {
                    break;
                }
            }
            cmd = cmd_rx.recv() => {
                let text = match cmd {
                    Some(LegCommand::Audio(bytes)) => writer.media(&bytes),
                    Some(LegCommand::Mark(name)) => writer.mark(&name),
                    Some(LegCommand::Clear) => writer.clear(),
                    Some(LegCommand::Dtmf(_)) | Some(LegCommand::HandoffResult(_)) | Some(LegCommand::Hint(_)) | Some(LegCommand::Park(_)) | Some(LegCommand::Unpark) => continue,
                    Some(LegCommand::Hangup) | None => {
                        close(&mut socket, 1000, "call ended").await;
                        break;
                    }
                };
                if let Err(e) = send_within(&mut socket, Message::Text(text.into()), liveness.dead_after).await {
                    let why = format!("caller socket write failed: {e}");
                    let _ = ev_tx.send(LegEvent::Hangup(HangupCause::Lost(why))).await;
                    break;
                }
            }
        }
    }
}

/// Reads until a valid `start`; returns `None` (socket closed) on failure.
async fn await_start(socket: &mut WebSocket, server: &ServerConfig) -> Option<(StartMeta, String)> {
    let max = server.max_message_bytes;
    let timeout = std::time::Duration::from_millis(server.start_timeout_ms);
    let deadline = tokio::time::Instant::now() + timeout;
    let mut refused = 0u32;
    loop {
        let msg = match tokio::time::timeout_at(deadline, socket.recv()).await {
            Err(_) => {
                tracing::warn!(
                    timeout_ms = timeout.as_millis() as u64,
                    "no start on the stream in time; closing"
                );
                close(socket, CLOSE_POLICY, "no start event in time").await;
                return None;
            }
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return None,
            Ok(Some(Ok(msg))) => msg,
        };
        let error = match msg {
            Message::Text(text) => match media_streams::parse(&text, max) {
                Ok(StreamMessage::Connected { .. }) => continue,
                Ok(StreamMessage::Start {
                    start, stream_sid, ..
                }) => {
                    if let Err(e) = media_streams::check_format(&start.media_format) {
                        tracing::warn!(error = %e, call_sid = %start.call_sid, "stream refused");
                        close(socket, CLOSE_UNSUPPORTED, &e.to_string()).await;
                        return None;
                    }
                    let stream_sid = if stream_sid.is_empty() {
                        start.stream_sid.clone()
                    } else {
                        stream_sid
                    };
                    return Some((start, stream_sid));
                }
                Ok(StreamMessage::Media { .. }) => ProtocolError::MediaBeforeStart,
                Ok(_) => ProtocolError::Unexpected("non-start event before start"),
                Err(e) => e,
            },
            Message::Binary(b) => ProtocolError::BinaryFrame(b.len()),
            _ => continue,
        };
        refused += 1;
        tracing::warn!(%error, "message before start dropped");
        if refused >= 50 {
            close(
                socket,
                CLOSE_POLICY,
                "too many invalid messages before start",
            )
            .await;
            return None;
        }
    }
}

/// Turns a message from the provider into a leg event.
pub fn translate(
    parsed: Result<StreamMessage, ProtocolError>,
    stream_sid: &str,
) -> Option<LegEvent> {
    let msg = match crate::legs::common_event(parsed, "provider") {
        Ok(msg) => msg,
        Err(event) => return event,
    };
    Some(match msg {
        StreamMessage::Dtmf { dtmf, .. } => match media_streams::parse_digit(&dtmf.digit) {
            Ok(d) => LegEvent::Dtmf(d),
            Err(e) => LegEvent::Error(e),
        },
        StreamMessage::Stop { .. } => LegEvent::Hangup(HangupCause::Normal),
        StreamMessage::Start { .. } => {
            LegEvent::Error(ProtocolError::DuplicateStart(stream_sid.into()))
        }
        StreamMessage::Connected { .. }
        | StreamMessage::Media { .. }
        | StreamMessage::Mark { .. }
        | StreamMessage::Unknown => return None,
        StreamMessage::Clear { .. } => LegEvent::Error(ProtocolError::Unexpected("clear")),
        StreamMessage::Turn { .. }
        | StreamMessage::Escalate { .. }
        | StreamMessage::Tool { .. }
        | StreamMessage::Customer { .. }
        | StreamMessage::Intent { .. } => {
            LegEvent::Error(ProtocolError::Unexpected("agent extension"))
        }
        StreamMessage::HandoffResult { .. } | StreamMessage::SupervisorHint { .. } => {
            LegEvent::Error(ProtocolError::Unexpected("gateway extension"))
        }
    })
}

async fn close(socket: &mut WebSocket, code: u16, reason: &str) {
    let reason: String = reason.chars().take(120).collect();
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    // Bounded like every send: a peer that stopped reading must not hold the
    // leg (and its socket) after the call is over.
    if send_within(socket, Message::Close(Some(frame)), CLOSE_HANDSHAKE)
        .await
        .is_err()
    {
        return;
    }
    // The closing handshake (RFC 6455 §7.1.1): read on, dropping what the peer
    // still sends, until its Close arrives. Dropping the socket with unread data
    // would reset the connection and the peer would see an error, not an end.
    let deadline = tokio::time::Instant::now() + CLOSE_HANDSHAKE;
    while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(deadline, socket.recv()).await {
        if matches!(msg, Message::Close(_)) {
            break;
        }
    }
}

/// How long the gateway waits for the peer's Close after sending its own.
const CLOSE_HANDSHAKE: std::time::Duration = std::time::Duration::from_secs(2);
