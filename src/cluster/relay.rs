//! An agent's audio across nodes. The agent's node, having won the accept,
//! dials the call's node at `GET /cluster/v1/calls/{call}/agents/{agent}`
//! (WebSocket, `Authorization: Bearer <cluster.secret>`); the call's node hands
//! the call over to that socket exactly as to a local console. The agent's
//! console keeps its one connection (and its WebRTC audio) to its own node.
//!
//! Wire: binary messages are μ-law 8 kHz audio, either way; text messages are
//! JSON control — `{"event":"mark","name":…}` to the agent's node,
//! `{"event":"skip"}` and `{"event":"hangup"}` from it. Closing is hanging up.
//! The whisper is only ever written to this link (the agent's), never to the
//! caller's leg, exactly as on one node.

use super::ClusterHost;
use crate::legs::{HangupCause, LegCommand, LegEvent};
use crate::routing::AgentEnd;
use axum::extract::ws::{Message as AxMessage, WebSocket};
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use thiserror::Error;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as TgMessage;

/// Largest relay message accepted (one second of audio is 8000 bytes).
const MAX_MESSAGE: usize = 64 * 1024;

/// A control message on the relay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Control {
    /// A marker in the agent's audio (e.g. `whisper-end`).
    Mark {
        /// Its name.
        name: String,
    },
    /// The agent skips the rest of the whisper.
    Skip,
    /// The agent hangs up.
    Hangup,
    /// The agent's console dropped; the call is held for it (hold audio).
    Away,
    /// The agent's console came back.
    Back,
    /// The agent put the caller on hold.
    Hold,
    /// The agent took the caller off hold.
    Resume,
    /// The agent's console did not come back in time: the agent is lost.
    Lost {
        /// Why.
        reason: String,
    },
    /// The agent hands the call on: to another agent, or to a skill's queue.
    Transfer {
        /// An agent id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent: Option<String>,
        /// Or a skill.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        skill: Option<String>,
    },
    /// The agent gives the caller back to the AI agent, with a note for it.
    ReturnToAi {
        /// The note.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
}

impl Control {
    /// What an agent-side leg event becomes on the relay (`None`: audio,
    /// which goes as a binary frame, and events no call acts on).
    fn from_agent(event: &LegEvent) -> Option<Control> {
        use crate::domain::TransferTarget;
        Some(match event {
            LegEvent::SkipWhisper => Control::Skip,
            LegEvent::Detached => Control::Away,
            LegEvent::Reattached => Control::Back,
            LegEvent::Hold => Control::Hold,
            LegEvent::Resume => Control::Resume,
            LegEvent::Transfer(TransferTarget::Agent(a)) => Control::Transfer {
                agent: Some(a.clone()),
                skill: None,
            },
            LegEvent::Transfer(TransferTarget::Skill(s)) => Control::Transfer {
                agent: None,
                skill: Some(s.clone()),
            },
            LegEvent::ReturnToAi(note) => Control::ReturnToAi { note: note.clone() },
            LegEvent::Hangup(HangupCause::Normal) => Control::Hangup,
            LegEvent::Hangup(other) => Control::Lost {
                reason: other.lost_because().unwrap_or_default(),
            },
            _ => return None,
        })
    }

    /// The agent-side event a control stands for on the call's node (`None`:
    /// a control that travels towards the agent, or a malformed transfer).
    fn into_agent_event(self) -> Option<LegEvent> {
        use crate::domain::TransferTarget;
        Some(match self {
            Control::Skip => LegEvent::SkipWhisper,
            Control::Hangup => LegEvent::Hangup(HangupCause::Normal),
            Control::Away => LegEvent::Detached,
            Control::Back => LegEvent::Reattached,
            Control::Hold => LegEvent::Hold,
            Control::Resume => LegEvent::Resume,
            Control::Lost { reason } => LegEvent::Hangup(HangupCause::Lost(reason)),
            Control::ReturnToAi { note } => LegEvent::ReturnToAi(note),
            Control::Transfer {
                agent: Some(a),
                skill: None,
            } => LegEvent::Transfer(TransferTarget::Agent(a)),
            Control::Transfer {
                agent: None,
                skill: Some(s),
            } => LegEvent::Transfer(TransferTarget::Skill(s)),
            Control::Mark { .. } | Control::Transfer { .. } => return None,
        })
    }
}

/// The call's node could not be reached.
#[derive(Debug, Error)]
pub enum RelayError {
    /// The URL is not usable.
    #[error("bad node URL {0:?}")]
    Url(String),
    /// The WebSocket did not open.
    #[error("cannot reach the call's node at {url}: {reason}")]
    Connect {
        /// Where.
        url: String,
        /// Why.
        reason: String,
    },
}

/// The relay URL for a call on the node advertised at `base`.
pub fn relay_url(base: &str, call_id: &str, agent_id: &str) -> Result<String, RelayError> {
    let ws = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        return Err(RelayError::Url(base.to_string()));
    };
    let safe = |s: &str| {
        s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    if !safe(call_id) || !safe(agent_id) {
        return Err(RelayError::Url(format!("{call_id}/{agent_id}")));
    }
    Ok(format!(
        "{}/cluster/v1/calls/{call_id}/agents/{agent_id}",
        ws.trim_end_matches('/')
    ))
}

/// The agent's node: connects to the call's node and returns the agent's end
/// of the call, relayed over the socket until either side hangs up.
pub async fn dial(
    shared: &Arc<dyn ClusterHost>,
    base: &str,
    secret: &str,
    call_id: &str,
    agent_id: &str,
) -> Result<AgentEnd, RelayError> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = relay_url(base, call_id, agent_id)?;
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| RelayError::Url(e.to_string()))?;
    let bearer = format!("Bearer {secret}")
        .parse()
        .map_err(|_| RelayError::Url("cluster.secret is not a valid header value".into()))?;
    request.headers_mut().insert("authorization", bearer);
    let connect = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        tokio_tungstenite::connect_async(request),
    )
    .await
    .map_err(|_| RelayError::Connect {
        url: url.clone(),
        reason: "no answer within 5 s".into(),
    })?;
    let (socket, _) = connect.map_err(|e| RelayError::Connect {
        url: url.clone(),
        reason: e.to_string(),
    })?;
    let (cmd_tx, cmd_rx) = mpsc::channel(crate::legs::agent::COMMAND_QUEUE);
    let (ev_tx, mut ev_rx) = mpsc::channel::<LegEvent>(crate::legs::agent::EVENT_QUEUE);
    let shared = Arc::clone(shared);
    let (agent, call) = (agent_id.to_string(), call_id.to_string());
    tokio::spawn(async move {
        let started = std::time::Instant::now();
        let (mut sink, mut stream) = socket.split();
        loop {
            tokio::select! {
                msg = stream.next() => {
                    let cmd = match msg {
                        Some(Ok(TgMessage::Binary(b))) if b.len() <= MAX_MESSAGE => LegCommand::Audio(b.to_vec()),
                        Some(Ok(TgMessage::Text(t))) if t.len() <= MAX_MESSAGE => match serde_json::from_str::<Control>(&t) {
                            Ok(Control::Mark { name }) => LegCommand::Mark(name),
                            Ok(Control::Hangup) => break,
                            // Agent-side news: never sent towards the agent.
                            Ok(_) => continue,
                            Err(e) => {
                                tracing::warn!(call = %call, error = %e, "relay control message dropped");
                                continue;
                            }
                        },
                        Some(Ok(TgMessage::Binary(_) | TgMessage::Text(_))) => {
                            tracing::warn!(call = %call, "oversized relay message dropped");
                            continue;
                        }
                        Some(Ok(TgMessage::Close(_))) | None | Some(Err(_)) => break,
                        Some(Ok(_)) => continue,
                    };
                    if cmd_tx.send(cmd).await.is_err() {
                        break;
                    }
                }
                event = ev_rx.recv() => {
                    let (out, last) = match event {
                        Some(LegEvent::Audio(bytes)) => (TgMessage::Binary(bytes.into()), false),
                        Some(event) => match Control::from_agent(&event) {
                            Some(control) => (control_tg(&control), matches!(event, LegEvent::Hangup(_))),
                            None => continue,
                        },
                        None => (control_tg(&Control::Hangup), true),
                    };
                    if sink.send(out).await.is_err() || last {
                        break;
                    }
                }
            }
        }
        let _ = sink.send(TgMessage::Close(None)).await;
        let _ = cmd_tx.send(LegCommand::Hangup).await;
        shared
            .routing()
            .call_finished(&agent, &call, started.elapsed());
        tracing::info!(agent = %agent, call = %call, "relayed call ended");
    });
    Ok(AgentEnd {
        commands: cmd_rx,
        events: ev_tx,
    })
}

fn control_tg(c: &Control) -> TgMessage {
    TgMessage::Text(serde_json::to_string(c).unwrap_or_default().into())
}

fn control_ax(c: &Control) -> AxMessage {
    AxMessage::Text(serde_json::to_string(c).unwrap_or_default().into())
}

/// The call's node: serves an agent's relayed audio once their node won the accept.
pub async fn serve(
    mut socket: WebSocket,
    shared: Arc<dyn ClusterHost>,
    call_id: String,
    agent_id: String,
) {
    let end = match shared.routing().hand_over(&call_id, &agent_id) {
        Ok(end) => end,
        Err(e) => {
            tracing::warn!(call = %call_id, agent = %agent_id, error = %e, "relay refused");
            let _ = socket.send(control_ax(&Control::Hangup)).await;
            let _ = socket.send(AxMessage::Close(None)).await;
            return;
        }
    };
    tracing::info!(call = %call_id, agent = %agent_id, "agent on another node connected to the call");
    let AgentEnd {
        mut commands,
        events,
    } = end;
    loop {
        tokio::select! {
            cmd = commands.recv() => {
                let out = match cmd {
                    Some(LegCommand::Audio(bytes)) => AxMessage::Binary(bytes.into()),
                    Some(LegCommand::Mark(name)) => control_ax(&Control::Mark { name }),
                    Some(LegCommand::Clear | LegCommand::Dtmf(_) | LegCommand::HandoffResult(_) | LegCommand::Hint(_) | LegCommand::Park(_) | LegCommand::Unpark) => continue,
                    Some(LegCommand::Hangup) | None => {
                        let _ = socket.send(control_ax(&Control::Hangup)).await;
                        break;
                    }
                };
                if socket.send(out).await.is_err() {
                    let _ = events.try_send(LegEvent::Hangup(HangupCause::Lost("agent's node unreachable".into())));
                    break;
                }
            }
            msg = socket.recv() => {
                let event = match msg {
                    Some(Ok(AxMessage::Binary(b))) if b.len() <= MAX_MESSAGE => LegEvent::Audio(b.to_vec()),
                    Some(Ok(AxMessage::Text(t))) if t.len() <= MAX_MESSAGE => match serde_json::from_str::<Control>(&t) {
                        Ok(control) => match control.into_agent_event() {
                            Some(event) => event,
                            None => continue,
                        },
                        Err(e) => {
                            tracing::warn!(call = %call_id, error = %e, "relay control message dropped");
                            continue;
                        }
                    },
                    Some(Ok(AxMessage::Binary(_) | AxMessage::Text(_))) => {
                        tracing::warn!(call = %call_id, "oversized relay message dropped");
                        continue;
                    }
                    Some(Ok(AxMessage::Close(_))) | None | Some(Err(_)) => {
                        let _ = events.try_send(LegEvent::Hangup(HangupCause::Lost("agent's node disconnected".into())));
                        break;
                    }
                    Some(Ok(_)) => continue,
                };
                let hangup = matches!(event, LegEvent::Hangup(_));
                if events.send(event).await.is_err() || hangup {
                    break;
                }
            }
        }
    }
    let _ = socket.send(AxMessage::Close(None)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_agent_side_event_crosses_the_relay_unchanged() {
        use crate::domain::TransferTarget;
        for event in [
            LegEvent::SkipWhisper,
            LegEvent::Detached,
            LegEvent::Reattached,
            LegEvent::Hold,
            LegEvent::Resume,
            LegEvent::Transfer(TransferTarget::Agent("bob".into())),
            LegEvent::Transfer(TransferTarget::Skill("billing".into())),
            LegEvent::ReturnToAi(Some("survey please".into())),
            LegEvent::ReturnToAi(None),
            LegEvent::Hangup(HangupCause::Normal),
            LegEvent::Hangup(HangupCause::Lost("console gone".into())),
        ] {
            let control = Control::from_agent(&event).expect("relayed");
            let wire = serde_json::to_string(&control).expect("JSON");
            let back: Control = serde_json::from_str(&wire).expect("parsed");
            assert_eq!(back.into_agent_event(), Some(event), "{wire}");
        }
        // A transfer naming both (or neither) is not acted on.
        let both = r#"{"event":"transfer","agent":"bob","skill":"billing"}"#;
        let parsed: Control = serde_json::from_str(both).expect("parsed");
        assert_eq!(parsed.into_agent_event(), None);
    }

    #[test]
    fn relay_urls_follow_the_advertised_scheme_and_refuse_odd_ids() {
        assert_eq!(
            relay_url("http://10.0.0.5:8080/", "CA1", "ana").unwrap(),
            "ws://10.0.0.5:8080/cluster/v1/calls/CA1/agents/ana"
        );
        assert_eq!(
            relay_url("https://gw.example", "CA1", "ana").unwrap(),
            "wss://gw.example/cluster/v1/calls/CA1/agents/ana"
        );
        assert!(relay_url("ftp://x", "CA1", "ana").is_err());
        assert!(relay_url("http://x", "../etc", "ana").is_err());
    }
}
