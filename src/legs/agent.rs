//! The AI agent leg: warmline dials the agent's WebSocket for each call and
//! plays the provider's part of Twilio Media Streams towards it, so an agent
//! written for Twilio works unchanged. Extension events (`turn`, `escalate`,
//! `tool`, `customer`, `intent`) come back as [`LegEvent`]s.

use crate::config::Config;
use crate::legs::liveness::{Liveness, LivenessConfig};
use crate::legs::media_streams::{self, ProtocolError, ProviderWriter, StartMeta, StreamMessage};
use crate::legs::{HangupCause, LegCommand, LegEvent, keep_alive, send_within};
use futures_util::{SinkExt, StreamExt};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// Commands buffered towards the agent (≈ 10 s of audio: covers the dial time).
pub const COMMAND_QUEUE: usize = 512;
/// Events buffered from the agent.
pub const EVENT_QUEUE: usize = 256;

/// How to reach the agent.
#[derive(Debug, Clone)]
pub struct AgentLegConfig {
    /// WebSocket URL.
    pub url: String,
    /// Dial timeout.
    pub connect_timeout: Duration,
    /// Largest accepted message.
    pub max_message_bytes: usize,
    /// When a quiet agent is pinged and when a silent one is given up.
    pub(crate) liveness: LivenessConfig,
}

impl AgentLegConfig {
    /// From the gateway configuration.
    pub fn from_config(config: &Config) -> Self {
        AgentLegConfig {
            url: config.agent.url.clone(),
            connect_timeout: config.agent_connect_timeout(),
            max_message_bytes: config.server.max_message_bytes,
            liveness: LivenessConfig::from_server(&config.server),
        }
    }
}

/// Starts the agent leg for one call. Commands sent before the socket is up are
/// buffered; the first event is `Connected` or `Hangup(Unreachable)`.
pub fn spawn(
    config: AgentLegConfig,
    start: StartMeta,
    stream_sid: String,
) -> (mpsc::Sender<LegCommand>, mpsc::Receiver<LegEvent>) {
    let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_QUEUE);
    let (ev_tx, ev_rx) = mpsc::channel(EVENT_QUEUE);
    // Runs in the call's span, so its logs carry the call id.
    tokio::spawn(tracing::Instrument::in_current_span(run(
        config, start, stream_sid, cmd_rx, ev_tx,
    )));
    (cmd_tx, ev_rx)
}

async fn run(
    config: AgentLegConfig,
    start: StartMeta,
    stream_sid: String,
    mut cmd_rx: mpsc::Receiver<LegCommand>,
    ev_tx: mpsc::Sender<LegEvent>,
) {
    let ws_config = crate::legs::ws_config()
        .max_message_size(Some(config.max_message_bytes * 4))
        .max_frame_size(Some(config.max_message_bytes * 4));
    let dialled = dial(
        config.url.as_str(),
        &config.url,
        ws_config,
        config.connect_timeout,
    )
    .await;
    let ws = match dialled {
        Ok(ws) => ws,
        Err(why) => {
            let _ = ev_tx
                .send(LegEvent::Hangup(HangupCause::Unreachable(why)))
                .await;
            return;
        }
    };
    let (mut sink, mut stream) = ws.split();
    let mut writer = ProviderWriter::new(stream_sid);
    let call_sid = start.call_sid.clone();
    let account_sid = start.account_sid.clone();
    let hello = [writer.connected(), writer.start(start)];
    for text in hello {
        if let Err(e) = sink.send(Message::Text(text.into())).await {
            let why = format!("agent socket failed during setup: {e}");
            let _ = ev_tx.send(LegEvent::Hangup(HangupCause::Lost(why))).await;
            return;
        }
    }
    if ev_tx.send(LegEvent::Connected).await.is_err() {
        return;
    }
    let mut live = Liveness::new(config.liveness, Instant::now());
    let write_limit = config.liveness.dead_after;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(live.deadline().into()) => {
                if let Some(why) = keep_alive(&mut live, &mut sink, Message::Ping(Default::default()), write_limit, "agent").await {
                    let _ = ev_tx.send(LegEvent::Hangup(HangupCause::Lost(why))).await;
                    return;
                }
            }
            cmd = cmd_rx.recv() => {
                let text = match cmd {
                    Some(LegCommand::Audio(bytes)) => writer.media(&bytes),
                    Some(LegCommand::Mark(name)) => writer.mark(&name),
                    Some(LegCommand::Dtmf(digit)) => writer.dtmf(digit),
                    Some(LegCommand::HandoffResult(result)) => writer.handoff_result(&result),
                    Some(LegCommand::Hint(hint)) => writer.supervisor_hint(&hint),
                    Some(LegCommand::Clear) | Some(LegCommand::Park(_)) | Some(LegCommand::Unpark) => continue,
                    Some(LegCommand::Hangup) | None => {
                        let _ = sink.send(Message::Text(writer.stop(&account_sid, &call_sid).into())).await;
                        let _ = sink.close().await;
                        return;
                    }
                };
                if let Err(e) = send_within(&mut sink, Message::Text(text.into()), write_limit).await {
                    let why = format!("agent socket write failed: {e}");
                    let _ = ev_tx.send(LegEvent::Hangup(HangupCause::Lost(why))).await;
                    return;
                }
            }
            msg = stream.next() => {
                live.heard(Instant::now());
                let (event, last) = match msg {
                    Some(Ok(Message::Text(text))) => {
                        (translate(media_streams::parse(&text, config.max_message_bytes)), false)
                    }
                    Some(Ok(Message::Binary(b))) => {
                        (Some(LegEvent::Error(ProtocolError::BinaryFrame(b.len()))), false)
                    }
                    Some(Ok(Message::Close(_))) => (Some(LegEvent::Hangup(HangupCause::Normal)), true),
                    Some(Ok(_)) => (None, false),
                    Some(Err(e)) => {
                        (Some(LegEvent::Hangup(HangupCause::Lost(format!("agent socket error: {e}")))), true)
                    }
                    None => (
                        Some(LegEvent::Hangup(HangupCause::Lost(
                            "agent socket closed without a close frame".into(),
                        ))),
                        true,
                    ),
                };
                if let Some(event) = event
                    && ev_tx.send(event).await.is_err()
                {
                    return;
                }
                if last {
                    return;
                }
            }
        }
    }
}

/// An AI agent's WebSocket, dialled within `timeout`; the error says why not,
/// naming `shown_url` (for both agent protocols).
pub(crate) async fn dial(
    request: impl tokio_tungstenite::tungstenite::client::IntoClientRequest + Unpin,
    shown_url: &str,
    ws_config: tokio_tungstenite::tungstenite::protocol::WebSocketConfig,
    timeout: Duration,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    String,
> {
    let connect = tokio_tungstenite::connect_async_with_config(request, Some(ws_config), true);
    match tokio::time::timeout(timeout, connect).await {
        Ok(Ok((ws, _response))) => Ok(ws),
        Ok(Err(e)) => Err(format!("cannot connect to {shown_url}: {e}")),
        Err(_) => Err(format!(
            "no answer from {shown_url} within {} ms",
            timeout.as_millis()
        )),
    }
}

/// Turns a message from the agent (the application side) into a leg event.
pub fn translate(parsed: Result<StreamMessage, ProtocolError>) -> Option<LegEvent> {
    let msg = match crate::legs::common_event(parsed, "agent") {
        Ok(msg) => msg,
        Err(event) => return event,
    };
    Some(match msg {
        StreamMessage::Clear { .. } => LegEvent::Clear,
        StreamMessage::Turn { turn, .. } => LegEvent::Turn(turn),
        StreamMessage::Escalate { escalate, .. } => LegEvent::Escalate(escalate),
        StreamMessage::Tool { tool, .. } => LegEvent::Tool(tool),
        StreamMessage::Customer { customer, .. } => LegEvent::Customer(customer),
        StreamMessage::Intent { intent, .. } => LegEvent::Intent(intent),
        StreamMessage::Connected { .. } => LegEvent::Error(ProtocolError::Unexpected("connected")),
        StreamMessage::Start { .. } => LegEvent::Error(ProtocolError::Unexpected("start")),
        StreamMessage::Dtmf { .. } => LegEvent::Error(ProtocolError::Unexpected("dtmf")),
        StreamMessage::Stop { .. } => LegEvent::Error(ProtocolError::Unexpected("stop")),
        StreamMessage::HandoffResult { .. } => {
            LegEvent::Error(ProtocolError::Unexpected("handoff_result"))
        }
        StreamMessage::SupervisorHint { .. } => {
            LegEvent::Error(ProtocolError::Unexpected("supervisor_hint"))
        }
        StreamMessage::Media { .. } | StreamMessage::Mark { .. } | StreamMessage::Unknown => {
            return None;
        }
    })
}
