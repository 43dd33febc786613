//! The human agent leg: an agent's console (browser, softphone bridge, or the
//! simulator) connects a WebSocket to `/v1/agents/{id}/ws?token=…`. Between
//! calls it receives offers (the screen-pop with the full context) and answers
//! `accept`/`decline`; on a call it receives μ-law `media` in Media Streams
//! framing — first the whisper, then the caller — and sends its own voice back.
//! Protocol: docs/agent-protocol.md, "Human agent console".

use crate::brief::context::HandoffContext;
use crate::domain::Urgency;
use crate::domain::{AgentStatus, OfferKind, WithdrawReason};
use crate::legs::desk::{
    AcceptOutcome, AgentEnd, ConsoleDesk, HeldCall, HumanCommand, Presence, Team, WrapUpNews,
};
use crate::legs::liveness::{Liveness, LivenessConfig};
use crate::legs::media_streams::{self, MarkBody, MediaChunk, ProtocolError};
use crate::legs::{HangupCause, LegCommand, LegEvent, keep_alive, recv_or_pending};
use axum::extract::ws::{Message, WebSocket};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

/// A supervisor on a call's audio: the call, its feed, where their voice goes.
type Monitoring = (String, mpsc::Receiver<Vec<u8>>, mpsc::Sender<Vec<u8>>);

/// Frames of a supervisor's feed (and voice) in flight (1 s).
const MONITOR_FRAMES: usize = 50;

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
    /// (Supervisors) escalate this AI call now, to me only.
    TakeOver {
        /// The call.
        call_id: String,
    },
    /// Take a pending callback from the list: it is this agent's to make.
    ClaimCallback {
        /// The call the callback came from.
        call_id: String,
    },
    /// Hand the call (after the merge) to another agent or to a skill's
    /// queue: the caller hears hold audio, the next agent gets the screen-pop
    /// and the whisper; this agent leaves the call (wrap-up follows).
    Transfer {
        /// An agent id.
        #[serde(default)]
        agent: Option<String>,
        /// Or a skill.
        #[serde(default)]
        skill: Option<String>,
    },
    /// (Supervisors) join a live call's audio: `listen` (hear the caller and
    /// whoever they hear), `coach` (also speak to the human agent only) or
    /// `barge` (also speak to the caller: three-way). Again to change mode.
    Monitor {
        /// The call.
        call_id: String,
        /// How.
        mode: crate::domain::SupervisorMode,
    },
    /// (Supervisors) leave the call's audio.
    StopMonitor,
    /// (Supervisors) coach the AI agent on this call with a text hint.
    Hint {
        /// The call (with the AI).
        call_id: String,
        /// The hint.
        text: String,
    },
    /// Give the caller back to the AI agent (after the merge), which is told
    /// `note`: for a survey, a payment, or closing questions. This agent
    /// leaves the call (wrap-up follows).
    ReturnToAi {
        /// What the AI agent is told (trimmed; at most
        /// [`crate::domain::handoff::MAX_NOTE_CHARS`] characters are kept).
        #[serde(default)]
        note: Option<String>,
    },
    /// A keypad digit sent to the caller's side (after the merge): `0`–`9`,
    /// `*`, `#`, `A`–`D`.
    Dtmf {
        /// The digit.
        digit: String,
    },
    /// Put the caller on hold (after the merge): they hear hold audio.
    Hold,
    /// Take the caller off hold.
    Resume,
    /// Availability.
    Status {
        /// `available`, `break` or `offline`.
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
        /// One of `routing.dispositions` (or empty).
        #[serde(default)]
        disposition: String,
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
        /// Their presence as the gateway routes them.
        status: AgentStatus,
        /// The wrap-up they owe, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        wrap_up: Option<&'a WrapUpNews>,
        /// The disposition codes of the wrap-up form.
        dispositions: &'a [String],
        /// A supervisor (gets `calls` and may `take_over`).
        supervisor: bool,
    },
    /// (Supervisors) every live call, AI or human (sent every 2 s).
    Calls {
        /// Oldest first.
        calls: &'a [crate::domain::LiveCallView],
    },
    /// (Supervisors) on the call's audio now (its audio follows as `media`
    /// with this `streamSid`, or over WebRTC).
    Monitoring {
        /// The call.
        call_id: &'a str,
        /// How.
        mode: crate::domain::SupervisorMode,
    },
    /// (Supervisors) off the call's audio (they left, or the call ended).
    MonitorEnded {
        /// The call.
        call_id: &'a str,
    },
    /// (Supervisors) the hint went to the call's AI agent.
    HintSent {
        /// The call.
        call_id: &'a str,
    },
    /// (Supervisors) the take-over started: the call will be offered to you.
    TakingOver {
        /// The call.
        call_id: &'a str,
    },
    /// The agent's presence changed.
    Presence {
        /// The state.
        status: AgentStatus,
        /// In wrap-up: the call and the time left.
        #[serde(skip_serializing_if = "Option::is_none")]
        wrap_up: Option<&'a WrapUpNews>,
    },
    /// The screen-pop.
    Offer {
        /// The call.
        call_id: &'a str,
        /// Seconds it rings before it goes to the next agent.
        ring_seconds: u64,
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
    /// The caller is on hold (`on`) or back.
    Hold {
        /// On hold.
        on: bool,
    },
    /// Accepted: the whisper follows, then the caller.
    CallStarted {
        /// The call.
        call_id: &'a str,
    },
    /// After a reload or network blip: the call this agent was on is theirs
    /// again (the caller heard hold audio meanwhile).
    CallResumed {
        /// The call.
        call_id: &'a str,
        /// Whether the caller was already connected (the whisper was over).
        merged: bool,
        /// Whether the agent had put the caller on hold.
        on_hold: bool,
        /// Its urgency, when known.
        #[serde(skip_serializing_if = "Option::is_none")]
        urgency: Option<Urgency>,
        /// The screen-pop, when known.
        #[serde(skip_serializing_if = "Option::is_none")]
        context: Option<&'a HandoffContext>,
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
    /// The team: calls waiting per skill and every agent's presence (sent
    /// when it changes, at most every 2 s).
    Team {
        /// The team.
        team: &'a Team,
    },
    /// The pending callbacks (sent when the list changes, checked every 10 s).
    Callbacks {
        /// Oldest first.
        callbacks: &'a [CallbackBrief],
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
        config: &crate::config::WebRtcSection,
        offer: &str,
        agent_id: &str,
    ) -> Result<(Self, String), crate::legs::webrtc::WebRtcError> {
        use crate::legs::webrtc::{WebRtcLinks, bind_and_answer, spawn};
        let (peer, udp, answer) = bind_and_answer(config, offer).await?;
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

/// A pending callback as the console lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallbackBrief {
    /// The call it came from.
    call_id: String,
    /// The number to call.
    number: String,
    /// Why nobody took the call.
    reason: String,
    /// When it was saved (RFC 3339).
    created_at: String,
    /// The caller's name, when known.
    name: String,
}

/// The pending callbacks, briefly (at most 50, oldest first).
async fn pending_callbacks(store: &crate::store::Store) -> Option<Vec<CallbackBrief>> {
    let rows = store.callbacks().await.ok()?;
    Some(
        rows.into_iter()
            .take(50)
            .map(|r| CallbackBrief {
                name: r.context["customer"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                call_id: r.call_id,
                number: r.number,
                reason: r.reason,
                created_at: r.created_at,
            })
            .collect(),
    )
}

/// The call a console is on.
struct LiveCall {
    call_id: String,
    commands: mpsc::Receiver<LegCommand>,
    events: mpsc::Sender<LegEvent>,
    /// What the console was shown for it (to show again after a reload).
    context: Option<(Urgency, Arc<HandoffContext>)>,
    /// The whisper is over: the caller and the agent hear each other.
    merged: bool,
    /// The agent put the caller on hold.
    on_hold: bool,
}

/// Holds a call whose console dropped: the caller hears hold audio (the
/// bridge plays it on `Detached`), what the call sends the agent is dropped,
/// and the call waits `grace` for the agent's console to take it back. After
/// that the agent is lost and the call moves on (next agent or callback).
fn hold_for_reattach(
    desk: &Arc<dyn ConsoleDesk>,
    agent_id: &str,
    call: LiveCall,
    grace: std::time::Duration,
) -> HeldCall {
    let (reclaim_tx, mut reclaim_rx) =
        tokio::sync::oneshot::channel::<tokio::sync::oneshot::Sender<AgentEnd>>();
    let LiveCall {
        call_id,
        mut commands,
        events,
        context,
        merged,
        on_hold,
    } = call;
    let _ = events.try_send(LegEvent::Detached);
    tracing::warn!(agent = %agent_id, call = %call_id, grace_ms = grace.as_millis() as u64,
        "agent console dropped mid-call; holding the call for it to come back");
    let (desk, agent, call) = (Arc::clone(desk), agent_id.to_string(), call_id.clone());
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + grace;
        let mut reclaimable = true;
        loop {
            tokio::select! {
                reply = &mut reclaim_rx, if reclaimable => match reply {
                    Ok(reply) => {
                        tracing::info!(agent = %agent, call = %call, "agent console came back: call handed back");
                        if let Err(end) = reply.send(AgentEnd { commands, events }) {
                            let _ = end.events.try_send(LegEvent::Hangup(HangupCause::Lost(
                                "agent console came back and left again".into(),
                            )));
                        }
                        return;
                    }
                    Err(_) => reclaimable = false,
                },
                cmd = commands.recv() => {
                    if matches!(cmd, Some(LegCommand::Hangup) | None) {
                        // The call ended while held (the caller hung up).
                        desk.held_call_gone(&agent, &call);
                        return;
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(agent = %agent, call = %call, "agent console did not come back in time; the call moves on");
                    desk.held_call_gone(&agent, &call);
                    let _ = events.try_send(LegEvent::Hangup(HangupCause::Lost(format!(
                        "agent console did not come back within {} s",
                        grace.as_secs_f64()
                    ))));
                    return;
                }
            }
        }
    });
    HeldCall {
        call_id,
        context,
        merged,
        on_hold,
        reclaim: reclaim_tx,
    }
}

/// Takes back a held call (see [`hold_for_reattach`]).
async fn reclaim(held: HeldCall) -> Option<LiveCall> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    held.reclaim.send(tx).ok()?;
    let end = tokio::time::timeout(std::time::Duration::from_secs(2), rx)
        .await
        .ok()?
        .ok()?;
    let _ = end.events.try_send(LegEvent::Reattached);
    Some(LiveCall {
        call_id: held.call_id,
        commands: end.commands,
        events: end.events,
        context: held.context,
        merged: held.merged,
        on_hold: held.on_hold,
    })
}

/// Sends the team view when it changed since `sent`.
async fn send_team(
    socket: &mut ConsoleSocket,
    desk: &dyn ConsoleDesk,
    sent: &mut Option<Team>,
) -> Result<(), String> {
    let team = desk.team();
    if sent.as_ref() != Some(&team) {
        socket
            .send(text(&ConsoleEvent::Team { team: &team }))
            .await?;
        *sent = Some(team);
    }
    Ok(())
}

/// The console's chosen presence, from its wire name (a state an agent may
/// choose: [`AgentStatus::is_choosable`]).
fn chosen_status(name: &str) -> Option<AgentStatus> {
    serde_json::from_value::<AgentStatus>(serde_json::Value::String(name.to_string()))
        .ok()
        .filter(|s| s.is_choosable())
}

/// When a wrap-up in `presence` ends by itself, from `now`.
fn wrapup_deadline(presence: &Presence, now: Instant) -> Option<Instant> {
    let left = presence.wrap_up.as_ref()?.seconds_left?;
    Some(now + std::time::Duration::from_secs(left))
}

/// Serves one authenticated console until it disconnects.
pub async fn serve_console(socket: WebSocket, desk: Arc<dyn ConsoleDesk>, agent_id: String) {
    let config = desk.config();
    let liveness = LivenessConfig::from_server(&config.server);
    let mut socket = ConsoleSocket {
        ws: socket,
        limit: liveness.dead_after,
        broken: false,
    };
    let mut live = Liveness::new(liveness, Instant::now());
    let ring_seconds = config.routing.ring_timeout_ms.div_ceil(1000);
    let supervisor = desk.is_supervisor(&agent_id);
    let grace = std::time::Duration::from_millis(config.routing.reattach_grace_ms);
    let (console_tx, mut console_rx) = mpsc::channel::<HumanCommand>(16);
    let session = console_tx.clone();
    let arrival = match desk.console_connected(&agent_id, console_tx) {
        Ok(arrival) => arrival,
        Err(e) => {
            let _ = socket.send(text(&ConsoleEvent::Error { message: e })).await;
            let _ = socket.send(Message::Close(None)).await;
            return;
        }
    };
    tracing::info!(agent = %agent_id, status = arrival.presence.status.as_str(), "agent console connected");
    let _ = socket
        .send(text(&ConsoleEvent::Connected {
            agent_id: &agent_id,
            status: arrival.presence.status,
            wrap_up: arrival.presence.wrap_up.as_ref(),
            dispositions: &config.routing.dispositions,
            supervisor,
        }))
        .await;
    // When the wrap-up ends by itself (the gateway's clock; routing decides).
    let mut wrapup_ends = wrapup_deadline(&arrival.presence, Instant::now());
    let max = config.server.max_message_bytes;
    // The call in progress.
    let mut call: Option<LiveCall> = None;
    if let Some(held) = arrival.held {
        let held_id = held.call_id.clone();
        match reclaim(held).await {
            Some(c) => {
                tracing::info!(agent = %agent_id, call = %c.call_id, "console re-attached to its call");
                let (urgency, context) = match &c.context {
                    Some((u, ctx)) => (Some(*u), Some(ctx.as_ref())),
                    None => (None, None),
                };
                let _ = socket
                    .send(text(&ConsoleEvent::CallResumed {
                        call_id: &c.call_id,
                        merged: c.merged,
                        on_hold: c.on_hold,
                        urgency,
                        context,
                    }))
                    .await;
                call = Some(c);
            }
            None => {
                // The call ended or moved on just now: this agent is free.
                desk.held_call_gone(&agent_id, &held_id);
                let _ = desk.set_status(&agent_id, AgentStatus::Available);
            }
        }
    }
    // The latest screen-pop (to keep with the call it becomes).
    let mut offered: Option<(String, Urgency, Arc<HandoffContext>)> = None;
    // (Supervisors) the call whose audio this console is on: its id, its feed,
    // where the supervisor's voice goes.
    let mut monitoring: Option<Monitoring> = None;
    // The console's WebRTC audio, once offered; `audio_up` once connected.
    let mut audio: Option<ConsoleAudio> = None;
    let mut audio_up = false;
    // A gateway sign-out ends the session for good: no call is held for it.
    let mut signed_out = false;
    // The team view, sent when it changed.
    let team_every = std::time::Duration::from_secs(2);
    let mut team_tick =
        tokio::time::interval_at(tokio::time::Instant::now() + team_every, team_every);
    team_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut team_sent: Option<Team> = None;
    let mut callbacks_sent: Option<Vec<CallbackBrief>> = None;
    let team_news = desk.team_changed();
    let mut ticks: u64 = 0;
    loop {
        if socket.broken {
            tracing::warn!(agent = %agent_id, "console takes no data; treating it as gone");
            break;
        }
        let leg_cmd = recv_or_pending(call.as_mut().map(|c| &mut c.commands));
        let audio_event = recv_or_pending(audio.as_mut().map(|a| &mut a.events));
        let monitor_feed = recv_or_pending(monitoring.as_mut().map(|(_, feed, _)| feed));
        let wrapup_over = async {
            match wrapup_ends {
                Some(at) => tokio::time::sleep_until(at.into()).await,
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
            frame = monitor_feed => match frame {
                Some(frame) if call.is_none() => {
                    let Some((call_id, _, _)) = &monitoring else { continue };
                    if audio_up {
                        if let Some(a) = &audio {
                            let _ = a.commands.try_send(LegCommand::Audio(frame));
                        }
                    } else {
                        let msg = text(&ConsoleEvent::Media {
                            stream_sid: call_id,
                            media: MediaChunk { track: None, chunk: None, timestamp: None, payload: media_streams::encode_payload(&frame) },
                        });
                        if socket.send(msg).await.is_err() {
                            break;
                        }
                    }
                }
                Some(_) => {}
                None => {
                    if let Some((call_id, _, _)) = monitoring.take() {
                        let _ = socket.send(text(&ConsoleEvent::MonitorEnded { call_id: &call_id })).await;
                    }
                }
            },
            () = wrapup_over => {
                wrapup_ends = None;
                desk.tick();
            }
            _ = team_tick.tick() => {
                if ticks.is_multiple_of(5)
                    && let Some(list) = pending_callbacks(desk.store()).await
                    && callbacks_sent.as_ref() != Some(&list)
                {
                    if socket.send(text(&ConsoleEvent::Callbacks { callbacks: &list })).await.is_err() {
                        break;
                    }
                    callbacks_sent = Some(list);
                }
                ticks += 1;
                if supervisor {
                    let board = desk.board();
                    if socket.send(text(&ConsoleEvent::Calls { calls: &board })).await.is_err() {
                        break;
                    }
                }
                if send_team(&mut socket, desk.as_ref(), &mut team_sent).await.is_err() {
                    break;
                }
            }
            () = team_news.notified() => {
                // A presence changed: every console's team view follows at once.
                if send_team(&mut socket, desk.as_ref(), &mut team_sent).await.is_err() {
                    break;
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
                        if let Some(c) = &call {
                            let _ = c.events.try_send(LegEvent::Audio(frame));
                        } else if let Some((_, _, voice)) = &monitoring {
                            let _ = voice.try_send(frame);
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
                        if was_up && let Some(c) = call.take() {
                            let _ = c.events.try_send(LegEvent::Hangup(HangupCause::Lost(
                                "agent console audio (WebRTC) lost".into(),
                            )));
                            let _ = socket.send(text(&ConsoleEvent::Stop { call_id: &c.call_id })).await;
                        }
                    }
                    _ => {}
                }
            }
            cmd = console_rx.recv() => {
                let msg = match cmd {
                    Some(HumanCommand::Offer { call_id, kind, urgency, context }) => {
                        tracing::info!(agent = %agent_id, call = %call_id, "screen-pop sent");
                        let msg = text(&ConsoleEvent::Offer { call_id: &call_id, ring_seconds, kind, urgency, context: &context });
                        offered = Some((call_id, urgency, context));
                        msg
                    }
                    Some(HumanCommand::OfferWithdrawn { call_id, reason }) => {
                        tracing::info!(agent = %agent_id, call = %call_id, %reason, "offer withdrawn");
                        text(&ConsoleEvent::OfferWithdrawn { call_id: &call_id, reason: &reason })
                    }
                    Some(HumanCommand::Presence(presence)) => {
                        wrapup_ends = wrapup_deadline(&presence, Instant::now());
                        text(&ConsoleEvent::Presence { status: presence.status, wrap_up: presence.wrap_up.as_ref() })
                    }
                    Some(HumanCommand::SignedOut { reason }) => {
                        tracing::info!(agent = %agent_id, %reason, "console signed out by the gateway");
                        signed_out = true;
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
                let Some(c) = call.as_mut() else { continue };
                let msg = match cmd {
                    Some(LegCommand::Audio(bytes)) if audio_up => {
                        if let Some(a) = &audio {
                            let _ = a.commands.try_send(LegCommand::Audio(bytes));
                        }
                        continue;
                    }
                    Some(LegCommand::Audio(bytes)) => text(&ConsoleEvent::Media {
                        stream_sid: &c.call_id,
                        media: MediaChunk { track: None, chunk: None, timestamp: None, payload: media_streams::encode_payload(&bytes) },
                    }),
                    Some(LegCommand::Mark(name)) => {
                        if name == crate::domain::GatewayMark::WhisperEnd.as_str() {
                            c.merged = true;
                        }
                        text(&ConsoleEvent::Mark { stream_sid: &c.call_id, mark: MarkBody { name } })
                    }
                    Some(LegCommand::Clear)
                    | Some(LegCommand::Dtmf(_))
                    | Some(LegCommand::HandoffResult(_))
                    | Some(LegCommand::Hint(_))
                    | Some(LegCommand::Park(_))
                    | Some(LegCommand::Unpark) => continue,
                    Some(LegCommand::Hangup) | None => {
                        let stop = text(&ConsoleEvent::Stop { call_id: &c.call_id });
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
                        match Arc::clone(&desk).accept(&agent_id, &call_id).await {
                            Ok(AcceptOutcome::Callback { number }) => {
                                tracing::info!(agent = %agent_id, call = %call_id, "callback assigned");
                                let _ = socket.send(text(&ConsoleEvent::CallbackAssigned { call_id: &call_id, number: &number })).await;
                            }
                            Ok(AcceptOutcome::Call(AgentEnd { commands, events })) => {
                                tracing::info!(agent = %agent_id, call = %call_id, "agent accepted");
                                let _ = socket.send(text(&ConsoleEvent::CallStarted { call_id: &call_id })).await;
                                let context = offered
                                    .take()
                                    .filter(|(id, _, _)| *id == call_id)
                                    .map(|(_, u, ctx)| (u, ctx));
                                call = Some(LiveCall { call_id, commands, events, context, merged: false, on_hold: false });
                                // Taking a call of one's own ends any listening.
                                monitoring = None;
                            }
                            Err(message) => {
                                let _ = socket.send(text(&ConsoleEvent::Error { message })).await;
                            }
                        }
                    }
                    ConsoleMessage::Decline { call_id } => {
                        if let Err(message) = desk.decline(&agent_id, &call_id, WithdrawReason::Declined) {
                            let _ = socket.send(text(&ConsoleEvent::Error { message })).await;
                        }
                    }
                    ConsoleMessage::Status { status } => {
                        let Some(s) = chosen_status(&status) else {
                            let message = format!("unknown status {status:?} (available, break or offline)");
                            let _ = socket.send(text(&ConsoleEvent::Error { message })).await;
                            continue;
                        };
                        let _ = desk.set_status(&agent_id, s);
                    }
                    ConsoleMessage::Media { media } => {
                        if let Some(c) = &call {
                            let event = match media_streams::decode_payload(&media) {
                                Ok(bytes) => LegEvent::Audio(bytes),
                                Err(e) => LegEvent::Error(e),
                            };
                            let _ = c.events.try_send(event);
                        } else if let Some((_, _, voice)) = &monitoring
                            && let Ok(bytes) = media_streams::decode_payload(&media)
                        {
                            let _ = voice.try_send(bytes);
                        }
                    }
                    ConsoleMessage::Skip => {
                        if let Some(c) = &call {
                            let _ = c.events.try_send(LegEvent::SkipWhisper);
                        }
                    }
                    ConsoleMessage::Transfer { agent, skill } => {
                        let target = match (agent.filter(|a| !a.is_empty()), skill.filter(|s| !s.is_empty())) {
                            (Some(a), None) if a == agent_id => Err("you cannot transfer a call to yourself".to_string()),
                            (Some(a), None) if !desk.is_agent(&a) => Err(format!("unknown agent {a:?}")),
                            (Some(a), None) => Ok(crate::domain::TransferTarget::Agent(a)),
                            (None, Some(s)) => Ok(crate::domain::TransferTarget::Skill(s)),
                            _ => Err("transfer needs exactly one of agent or skill".to_string()),
                        };
                        match (target, call.take()) {
                            (Ok(target), Some(c)) if c.merged => {
                                tracing::info!(agent = %agent_id, call = %c.call_id, %target, "agent transferred the call");
                                let _ = c.events.try_send(LegEvent::Transfer(target));
                                let _ = socket.send(text(&ConsoleEvent::Stop { call_id: &c.call_id })).await;
                            }
                            (target, c) => {
                                let message = match (&target, &c) {
                                    (Err(e), _) => e.clone(),
                                    (Ok(_), Some(_)) => "transfer needs a connected caller (after the whisper)".into(),
                                    (Ok(_), None) => "no call to transfer".into(),
                                };
                                call = c;
                                let _ = socket.send(text(&ConsoleEvent::Error { message })).await;
                            }
                        }
                    }
                    ConsoleMessage::Dtmf { digit } => {
                        let error = match (&call, media_streams::parse_digit(&digit)) {
                            (Some(c), Ok(d)) if c.merged => {
                                let _ = c.events.try_send(LegEvent::Dtmf(d));
                                None
                            }
                            (_, Err(e)) => Some(e.to_string()),
                            _ => Some("the keypad needs a connected caller (after the whisper)".to_string()),
                        };
                        if let Some(message) = error {
                            let _ = socket.send(text(&ConsoleEvent::Error { message })).await;
                        }
                    }
                    ConsoleMessage::ReturnToAi { note } => match &call {
                        Some(c) if c.merged => {
                            tracing::info!(agent = %agent_id, call = %c.call_id, "agent gives the caller back to the AI agent");
                            // The call ends for this agent when the gateway
                            // hangs up their leg (a `stop` follows).
                            let _ = c.events.try_send(LegEvent::ReturnToAi(note));
                        }
                        _ => {
                            let message = "back to the assistant needs a connected caller (after the whisper)".to_string();
                            let _ = socket.send(text(&ConsoleEvent::Error { message })).await;
                        }
                    },
                    ConsoleMessage::Monitor { call_id, mode } => {
                        let reply = if !supervisor {
                            ConsoleEvent::Error { message: "only a supervisor can listen to calls".into() }
                        } else if call.is_some() {
                            ConsoleEvent::Error { message: "finish your own call before listening to another".into() }
                        } else if monitoring.as_ref().is_some_and(|(id, _, _)| *id == call_id) {
                            // Same call, another mode: the audio link stays.
                            match desk.monitor_mode(&call_id, &agent_id, mode) {
                                Ok(()) => ConsoleEvent::Monitoring { call_id: &call_id, mode },
                                Err(message) => ConsoleEvent::Error { message },
                            }
                        } else {
                            let (feed_tx, feed_rx) = mpsc::channel(MONITOR_FRAMES);
                            let (voice_tx, voice_rx) = mpsc::channel(MONITOR_FRAMES);
                            let link = crate::legs::MonitorLink {
                                supervisor: agent_id.clone(),
                                mode,
                                to_supervisor: feed_tx,
                                from_supervisor: voice_rx,
                            };
                            match desk.monitor(&call_id, link) {
                                Ok(()) => {
                                    tracing::info!(agent = %agent_id, call = %call_id, mode = mode.as_str(), "supervisor on a call's audio");
                                    monitoring = Some((call_id.clone(), feed_rx, voice_tx));
                                    ConsoleEvent::Monitoring { call_id: &call_id, mode }
                                }
                                Err(message) => ConsoleEvent::Error { message },
                            }
                        };
                        let _ = socket.send(text(&reply)).await;
                    }
                    ConsoleMessage::StopMonitor => {
                        if let Some((call_id, _, _)) = monitoring.take() {
                            let _ = socket.send(text(&ConsoleEvent::MonitorEnded { call_id: &call_id })).await;
                        }
                    }
                    ConsoleMessage::Hint { call_id, text: hint } => {
                        let reply = if !supervisor {
                            ConsoleEvent::Error { message: "only a supervisor can coach the AI".into() }
                        } else {
                            match desk.hint(&call_id, &agent_id, &hint) {
                                Ok(()) => {
                                    tracing::info!(agent = %agent_id, call = %call_id, "supervisor coaches the AI agent");
                                    ConsoleEvent::HintSent { call_id: &call_id }
                                }
                                Err(message) => ConsoleEvent::Error { message },
                            }
                        };
                        let _ = socket.send(text(&reply)).await;
                    }
                    ConsoleMessage::TakeOver { call_id } => {
                        let reply = if !supervisor {
                            ConsoleEvent::Error { message: "only a supervisor can take a call over".into() }
                        } else {
                            let request = crate::domain::CallControl::TakeOver { supervisor: agent_id.clone() };
                            match desk.control(&call_id, request) {
                                Ok(()) => {
                                    tracing::info!(agent = %agent_id, call = %call_id, "supervisor takes the call over");
                                    ConsoleEvent::TakingOver { call_id: &call_id }
                                }
                                Err(message) => ConsoleEvent::Error { message },
                            }
                        };
                        let _ = socket.send(text(&reply)).await;
                    }
                    ConsoleMessage::ClaimCallback { call_id } => {
                        let reply = match desk.store().claim_callback(&call_id, &agent_id).await {
                            Ok(Some(number)) => {
                                tracing::info!(agent = %agent_id, call = %call_id, "callback claimed from the list");
                                // The list changed: send it again at the next look.
                                callbacks_sent = None;
                                ticks = 0;
                                text(&ConsoleEvent::CallbackAssigned { call_id: &call_id, number: &number })
                            }
                            Ok(None) => text(&ConsoleEvent::Error { message: format!("callback {call_id} is no longer pending (another agent has it)") }),
                            Err(e) => text(&ConsoleEvent::Error { message: format!("callbacks cannot be claimed now: {e}") }),
                        };
                        let _ = socket.send(reply).await;
                    }
                    ConsoleMessage::Hold | ConsoleMessage::Resume => {
                        let on = matches!(message, ConsoleMessage::Hold);
                        let reply = match call.as_mut() {
                            Some(c) if c.merged => {
                                c.on_hold = on;
                                let _ = c.events.try_send(if on { LegEvent::Hold } else { LegEvent::Resume });
                                ConsoleEvent::Hold { on }
                            }
                            _ => ConsoleEvent::Error { message: "hold needs a connected caller (after the whisper)".into() },
                        };
                        let _ = socket.send(text(&reply)).await;
                    }
                    ConsoleMessage::Hangup => {
                        if let Some(c) = call.take() {
                            let _ = c.events.try_send(LegEvent::Hangup(HangupCause::Normal));
                            let _ = socket.send(text(&ConsoleEvent::Stop { call_id: &c.call_id })).await;
                        }
                    }
                    ConsoleMessage::Wrapup { call_id, resolved, caller_repeated, context_accurate, notes, disposition } => {
                        let known = disposition.is_empty() || config.routing.dispositions.contains(&disposition);
                        let reply = if !known {
                            text(&ConsoleEvent::Error { message: format!("unknown disposition {disposition:?} (routing.dispositions)") })
                        } else if desk.took(&agent_id, &call_id) {
                            desk.store().write(crate::store::Write::Wrapup {
                                call_id: call_id.clone(),
                                agent_id: agent_id.clone(),
                                resolved,
                                caller_repeated,
                                context_accurate,
                                notes: desk.redactor().text(&notes.chars().take(4000).collect::<String>()).into_owned(),
                                disposition,
                                at: crate::brief::context::rfc3339(std::time::SystemTime::now()),
                            });
                            desk.wrapup_done(&agent_id, &call_id);
                            text(&ConsoleEvent::WrapupSaved { call_id: &call_id })
                        } else {
                            text(&ConsoleEvent::Error { message: format!("call {call_id} was not taken by {agent_id}") })
                        };
                        let _ = socket.send(reply).await;
                    }
                    ConsoleMessage::WebrtcOffer { sdp } => {
                        // A new offer replaces the old peer (its task ends with its channel).
                        audio = None;
                        audio_up = false;
                        let reply = match ConsoleAudio::answer(&config.webrtc, &sdp, &agent_id).await {
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
    let held = match call.take() {
        Some(c) if !signed_out && !grace.is_zero() => {
            Some(hold_for_reattach(&desk, &agent_id, c, grace))
        }
        Some(c) => {
            let _ = c.events.try_send(LegEvent::Hangup(HangupCause::Lost(
                "agent console disconnected".into(),
            )));
            None
        }
        None => None,
    };
    desk.console_gone(&agent_id, &session, held);
    tracing::info!(agent = %agent_id, "agent console disconnected");
}
