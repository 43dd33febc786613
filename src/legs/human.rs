//! The human agent leg: an agent's console (browser, softphone bridge, or the
//! simulator) connects a WebSocket to `/v1/agents/{id}/ws?token=…`. Between
//! calls it receives offers (the screen-pop with the full context) and answers
//! `accept`/`decline`; on a call it receives μ-law `media` in Media Streams
//! framing — first the whisper, then the caller — and sends its own voice back.
//! Protocol: docs/agent-protocol.md, "Human agent console".

use crate::brief::context::HandoffContext;
use crate::cluster::AcceptOutcome;
use crate::domain::Urgency;
use crate::gateway::Shared;
use crate::legs::liveness::{Liveness, LivenessConfig};
use crate::legs::media_streams::{self, MarkBody, MediaChunk, ProtocolError};
use crate::legs::{HangupCause, LegCommand, LegEvent, keep_alive};
use crate::routing::{AgentEnd, AgentStatus, HumanCommand, OfferKind};
use axum::extract::ws::{Message, WebSocket};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

/// Messages from the console.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(
    tag = "event",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub enum ConsoleMessage {
    /// Take the offered call.
    Accept {
        /// The call.
        call_id: String,
    },
    /// Refuse the offered call.
    Decline {
        /// The call.
        call_id: String,
    },
    /// Skip the rest of the whisper.
    Skip,
    /// Leave the call.
    Hangup,
    /// Availability.
    Status {
        /// `available` or `offline`.
        status: String,
    },
    /// After a call: the agent's wrap-up (quality flags and notes).
    Wrapup {
        /// The call (one this agent took).
        call_id: String,
        /// The caller's issue was resolved.
        #[serde(default)]
        resolved: Option<bool>,
        /// The caller had to repeat what they had told the AI.
        #[serde(default)]
        caller_repeated: Option<bool>,
        /// The handoff context was accurate.
        #[serde(default)]
        context_accurate: Option<bool>,
        /// Free notes (at most 4000 characters are kept).
        #[serde(default)]
        notes: String,
    },
    /// The agent's voice (μ-law 8 kHz).
    Media {
        /// The audio.
        media: MediaChunk,
    },
    /// The console's WebRTC offer: its audio for every call goes over WebRTC
    /// (Opus) once connected, instead of `media` messages.
    WebrtcOffer {
        /// The SDP offer, ICE candidates gathered.
        sdp: String,
    },
    /// A mark echo (ignored).
    Mark {
        /// The mark.
        mark: MarkBody,
    },
    /// Anything else.
    #[serde(other)]
    Unknown,
}

/// Messages to the console.
#[derive(Debug, Clone, Serialize)]
#[serde(
    tag = "event",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub enum ConsoleEvent<'a> {
    /// Signed in.
    Connected {
        /// The agent.
        agent_id: &'a str,
    },
    /// The screen-pop.
    Offer {
        /// The call.
        call_id: &'a str,
        /// `call` (accepting connects it) or, in a cluster, `callback` (a saved
        /// callback: accepting assigns it to the agent, who calls the number back).
        kind: OfferKind,
        /// Urgency.
        urgency: Urgency,
        /// The handoff context.
        context: &'a HandoffContext,
    },
    /// The offer is gone.
    OfferWithdrawn {
        /// The call.
        call_id: &'a str,
        /// Why.
        reason: &'a str,
    },
    /// Accepted: the whisper follows, then the caller.
    CallStarted {
        /// The call.
        call_id: &'a str,
    },
    /// Audio for the agent.
    Media {
        /// The call.
        stream_sid: &'a str,
        /// The audio.
        media: MediaChunk,
    },
    /// A marker in the audio (`whisper-end` when the caller is connected).
    Mark {
        /// The call.
        stream_sid: &'a str,
        /// The mark.
        mark: MarkBody,
    },
    /// The call is over.
    Stop {
        /// The call.
        call_id: &'a str,
    },
    /// The answer to `webrtc_offer`.
    WebrtcAnswer {
        /// The SDP answer.
        sdp: String,
    },
    /// The console's WebRTC audio is up (ICE + DTLS).
    WebrtcConnected,
    /// The console's WebRTC audio is gone; audio falls back to `media` messages.
    WebrtcClosed {
        /// Why.
        reason: String,
    },
    /// A callback offer was accepted: it is this agent's to call back.
    CallbackAssigned {
        /// The call the callback came from.
        call_id: &'a str,
        /// The number to call.
        number: &'a str,
    },
    /// The wrap-up was saved.
    WrapupSaved {
        /// The call.
        call_id: &'a str,
    },
    /// A refused request.
    Error {
        /// What went wrong.
        message: String,
    },
}

fn text(event: &ConsoleEvent<'_>) -> Message {
    Message::Text(
        serde_json::to_string(event)
            .unwrap_or_else(|_| "{}".into())
            .into(),
    )
}

/// A console's WebRTC audio leg (see [`crate::legs::webrtc`]).
struct ConsoleAudio {
    commands: mpsc::Sender<LegCommand>,
    events: mpsc::Receiver<LegEvent>,
}

impl ConsoleAudio {
    async fn answer(
        shared: &Shared,
        offer: &str,
        agent_id: &str,
    ) -> Result<(Self, String), crate::legs::webrtc::WebRtcError> {
        use crate::legs::webrtc::{WebRtcLinks, bind_and_answer, spawn};
        let (peer, udp, answer) = bind_and_answer(&shared.config.webrtc, offer).await?;
        let (cmd_tx, cmd_rx) = mpsc::channel(crate::legs::agent::COMMAND_QUEUE);
        let (ev_tx, ev_rx) = mpsc::channel(crate::legs::agent::EVENT_QUEUE);
        spawn(
            peer,
            udp,
            WebRtcLinks {
                events: ev_tx,
                commands: cmd_rx,
            },
            agent_id,
            "agent-console",
        );
        Ok((
            ConsoleAudio {
                commands: cmd_tx,
                events: ev_rx,
            },
            answer,
        ))
    }
}

/// A console's WebSocket whose sends give up on a peer that stopped reading
/// (`server.ws_peer_timeout_ms`); once one has, the console is treated as gone.
struct ConsoleSocket {
    ws: WebSocket,
    limit: std::time::Duration,
    broken: bool,
}

impl ConsoleSocket {
    async fn send(&mut self, message: Message) -> Result<(), String> {
        if self.broken {
            return Err("console socket already failed".into());
        }
        let sent = crate::legs::send_within(&mut self.ws, message, self.limit).await;
        if sent.is_err() {
            self.broken = true;
        }
        sent
    }

    async fn recv(&mut self) -> Option<Result<Message, axum::Error>> {
        self.ws.recv().await
    }
}

/// Serves one authenticated console until it disconnects.
pub async fn serve_console(socket: WebSocket, shared: Arc<Shared>, agent_id: String) {
    let liveness = LivenessConfig::from_server(&shared.config.server);
    let mut socket = ConsoleSocket {
        ws: socket,
        limit: liveness.dead_after,
        broken: false,
    };
    let mut live = Liveness::new(liveness, Instant::now());
    let routing = &shared.routing;
    let (console_tx, mut console_rx) = mpsc::channel::<HumanCommand>(16);
    let session = console_tx.clone();
    if let Err(e) = routing.console_connected(&agent_id, console_tx) {
        let _ = socket
            .send(text(&ConsoleEvent::Error {
                message: e.to_string(),
            }))
            .await;
        let _ = socket.send(Message::Close(None)).await;
        return;
    }
    tracing::info!(agent = %agent_id, "agent console connected");
    let _ = socket
        .send(text(&ConsoleEvent::Connected {
            agent_id: &agent_id,
        }))
        .await;
    let max = shared.config.server.max_message_bytes;
    // The call in progress: its id, commands from it, and where our events go.
    let mut call: Option<(String, mpsc::Receiver<LegCommand>, mpsc::Sender<LegEvent>)> = None;
    // Calls this console took (most recent last), which it may wrap up.
    let mut taken: std::collections::VecDeque<String> = std::collections::VecDeque::new();
    // The console's WebRTC audio, once offered; `audio_up` once connected.
    let mut audio: Option<ConsoleAudio> = None;
    let mut audio_up = false;
    loop {
        if socket.broken {
            tracing::warn!(agent = %agent_id, "console takes no data; treating it as gone");
            break;
        }
        let leg_cmd = async {
            match call.as_mut() {
                Some((_, rx, _)) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        let audio_event = async {
            match audio.as_mut() {
                Some(a) => a.events.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep_until(live.deadline().into()) => {
                let ping = Message::Ping(Default::default());
                if keep_alive(&mut live, &mut socket.ws, ping, socket.limit, "console").await.is_some() {
                    break; // signed out below, like a console that closed
                }
            }
            event = audio_event => {
                match event {
                    Some(LegEvent::Connected) => {
                        audio_up = true;
                        tracing::info!(agent = %agent_id, "console audio connected (WebRTC)");
                        let _ = socket.send(text(&ConsoleEvent::WebrtcConnected)).await;
                    }
                    Some(LegEvent::Audio(frame)) => {
                        if let Some((_, _, ev_tx)) = &call {
                            let _ = ev_tx.try_send(LegEvent::Audio(frame));
                        }
                    }
                    Some(LegEvent::Hangup(_)) | None => {
                        let reason = match event {
                            Some(LegEvent::Hangup(cause)) => format!("{cause:?}"),
                            _ => "audio task ended".into(),
                        };
                        tracing::warn!(agent = %agent_id, %reason, "console audio (WebRTC) gone");
                        let was_up = std::mem::take(&mut audio_up);
                        audio = None;
                        let _ = socket.send(text(&ConsoleEvent::WebrtcClosed { reason })).await;
                        // The agent can no longer hear the call: let it move on.
                        if was_up && let Some((call_id, _, ev_tx)) = call.take() {
                            let _ = ev_tx.try_send(LegEvent::Hangup(HangupCause::Lost(
                                "agent console audio (WebRTC) lost".into(),
                            )));
                            let _ = socket.send(text(&ConsoleEvent::Stop { call_id: &call_id })).await;
                        }
                    }
                    _ => {}
                }
            }
            cmd = console_rx.recv() => {
                let msg = match cmd {
                    Some(HumanCommand::Offer { call_id, kind, urgency, context }) => {
                        tracing::info!(agent = %agent_id, call = %call_id, "screen-pop sent");
                        text(&ConsoleEvent::Offer { call_id: &call_id, kind, urgency, context: &context })
                    }
                    Some(HumanCommand::OfferWithdrawn { call_id, reason }) => {
                        text(&ConsoleEvent::OfferWithdrawn { call_id: &call_id, reason: &reason })
                    }
                    Some(HumanCommand::SignedOut { reason }) => {
                        tracing::info!(agent = %agent_id, %reason, "console signed out by the gateway");
                        let _ = socket.send(text(&ConsoleEvent::Error { message: format!("signed out: {reason}") })).await;
                        let _ = socket.send(Message::Close(Some(axum::extract::ws::CloseFrame {
                            code: 4001,
                            reason: "signed out".into(),
                        }))).await;
                        break;
                    }
                    None => break,
                };
                if socket.send(msg).await.is_err() {
                    break;
                }
            }
            cmd = leg_cmd => {
                let Some((call_id, _, _)) = call.as_ref() else { continue };
                let msg = match cmd {
                    Some(LegCommand::Audio(bytes)) if audio_up => {
                        if let Some(a) = &audio {
                            let _ = a.commands.try_send(LegCommand::Audio(bytes));
                        }
                        continue;
                    }
                    Some(LegCommand::Audio(bytes)) => text(&ConsoleEvent::Media {
                        stream_sid: call_id,
                        media: MediaChunk { track: None, chunk: None, timestamp: None, payload: media_streams::encode_payload(&bytes) },
                    }),
                    Some(LegCommand::Mark(name)) => text(&ConsoleEvent::Mark { stream_sid: call_id, mark: MarkBody { name } }),
                    Some(LegCommand::Clear) | Some(LegCommand::Dtmf(_)) => continue,
                    Some(LegCommand::Hangup) | None => {
                        let stop = text(&ConsoleEvent::Stop { call_id });
                        call = None;
                        if socket.send(stop).await.is_err() {
                            break;
                        }
                        continue;
                    }
                };
                if socket.send(msg).await.is_err() {
                    break;
                }
            }
            msg = socket.recv() => {
                live.heard(Instant::now());
                let parsed = match msg {
                    Some(Ok(Message::Text(t))) if t.len() > max => Err(ProtocolError::Oversized { len: t.len(), max }),
                    Some(Ok(Message::Text(t))) => serde_json::from_str::<ConsoleMessage>(&t)
                        .map_err(|e| ProtocolError::InvalidMessage(e.to_string())),
                    Some(Ok(Message::Binary(b))) => Err(ProtocolError::BinaryFrame(b.len())),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => continue,
                };
                let message = match parsed {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(agent = %agent_id, error = %e, "console message refused");
                        let _ = socket.send(text(&ConsoleEvent::Error { message: e.to_string() })).await;
                        continue;
                    }
                };
                match message {
                    ConsoleMessage::Accept { call_id } => {
                        match shared.accept_offer(&agent_id, &call_id).await {
                            Ok(AcceptOutcome::Callback { number }) => {
                                tracing::info!(agent = %agent_id, call = %call_id, "callback assigned");
                                let _ = socket.send(text(&ConsoleEvent::CallbackAssigned { call_id: &call_id, number: &number })).await;
                            }
                            Ok(AcceptOutcome::Call(AgentEnd { commands: cmd_rx, events: ev_tx })) => {
                                tracing::info!(agent = %agent_id, call = %call_id, "agent accepted");
                                let _ = socket.send(text(&ConsoleEvent::CallStarted { call_id: &call_id })).await;
                                if taken.len() >= 32 {
                                    taken.pop_front();
                                }
                                taken.push_back(call_id.clone());
                                call = Some((call_id, cmd_rx, ev_tx));
                            }
                            Err(message) => {
                                let _ = socket.send(text(&ConsoleEvent::Error { message })).await;
                            }
                        }
                    }
                    ConsoleMessage::Decline { call_id } => {
                        if let Err(e) = routing.decline(&agent_id, &call_id) {
                            let _ = socket.send(text(&ConsoleEvent::Error { message: e.to_string() })).await;
                        }
                    }
                    ConsoleMessage::Status { status } => {
                        let s = match status.as_str() {
                            "available" => AgentStatus::Available,
                            "offline" => AgentStatus::Offline,
                            other => {
                                let message = format!("unknown status {other:?} (available or offline)");
                                let _ = socket.send(text(&ConsoleEvent::Error { message })).await;
                                continue;
                            }
                        };
                        let _ = shared.set_agent_status(&agent_id, s);
                    }
                    ConsoleMessage::Media { media } => {
                        if let Some((_, _, ev_tx)) = &call {
                            let event = match media_streams::decode_payload(&media) {
                                Ok(bytes) => LegEvent::Audio(bytes),
                                Err(e) => LegEvent::Error(e),
                            };
                            let _ = ev_tx.try_send(event);
                        }
                    }
                    ConsoleMessage::Skip => {
                        if let Some((_, _, ev_tx)) = &call {
                            let _ = ev_tx.try_send(LegEvent::SkipWhisper);
                        }
                    }
                    ConsoleMessage::Hangup => {
                        if let Some((call_id, _, ev_tx)) = call.take() {
                            let _ = ev_tx.try_send(LegEvent::Hangup(HangupCause::Normal));
                            let _ = socket.send(text(&ConsoleEvent::Stop { call_id: &call_id })).await;
                        }
                    }
                    ConsoleMessage::Wrapup { call_id, resolved, caller_repeated, context_accurate, notes } => {
                        let reply = if taken.contains(&call_id) {
                            shared.store.write(crate::store::Write::Wrapup {
                                call_id: call_id.clone(),
                                agent_id: agent_id.clone(),
                                resolved,
                                caller_repeated,
                                context_accurate,
                                notes: shared.redactor.text(&notes.chars().take(4000).collect::<String>()).into_owned(),
                                at: crate::brief::context::rfc3339(std::time::SystemTime::now()),
                            });
                            text(&ConsoleEvent::WrapupSaved { call_id: &call_id })
                        } else {
                            text(&ConsoleEvent::Error { message: format!("call {call_id} was not taken by {agent_id} on this console") })
                        };
                        let _ = socket.send(reply).await;
                    }
                    ConsoleMessage::WebrtcOffer { sdp } => {
                        // A new offer replaces the old peer (its task ends with its channel).
                        audio = None;
                        audio_up = false;
                        let reply = match ConsoleAudio::answer(&shared, &sdp, &agent_id).await {
                            Ok((a, answer)) => {
                                audio = Some(a);
                                ConsoleEvent::WebrtcAnswer { sdp: answer }
                            }
                            Err(e) => {
                                tracing::warn!(agent = %agent_id, error = %e, "console WebRTC offer refused");
                                ConsoleEvent::Error { message: e.to_string() }
                            }
                        };
                        let _ = socket.send(text(&reply)).await;
                    }
                    ConsoleMessage::Mark { .. } | ConsoleMessage::Unknown => {}
                }
            }
        }
    }
    if let Some((_, _, ev_tx)) = call.take() {
        let _ = ev_tx.try_send(LegEvent::Hangup(HangupCause::Lost(
            "agent console disconnected".into(),
        )));
    }
    routing.console_gone(&agent_id, &session);
    tracing::info!(agent = %agent_id, "agent console disconnected");
}
