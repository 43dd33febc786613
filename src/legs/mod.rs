//! Legs: tasks that turn a transport into [`LegEvent`]s and carry out [`LegCommand`]s.

pub mod agent;
pub mod alarm;
pub mod desk;
pub mod human;
pub(crate) mod liveness;
pub mod media_streams;
pub mod realtime;
pub mod sip;
pub mod twilio;
pub mod webrtc;

/// Read buffer of every WebSocket leg. tungstenite zero-fills its whole read
/// buffer before each socket read (128 KiB by default): with one small message
/// per 20 ms frame that memset was the gateway's largest CPU cost (15 % under
/// load, measured with perf in the e2e bench). A 20 ms media message is ~300
/// bytes; larger messages just take more reads.
pub const WS_READ_BUFFER: usize = 4096;

/// A WebSocket client/server config with the small [`WS_READ_BUFFER`].
pub fn ws_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(WS_READ_BUFFER)
}

/// Sends one message on a WebSocket (the gateway's server side or a client
/// leg), giving up after `limit`: a peer that stopped reading fills its socket
/// buffer, and an unbounded send would hold the leg (and its call) forever.
/// Zero means no limit.
pub(crate) async fn send_within<S, M>(
    sink: &mut S,
    message: M,
    limit: std::time::Duration,
) -> Result<(), String>
where
    S: futures_util::Sink<M> + Unpin,
    S::Error: std::fmt::Display,
{
    use futures_util::SinkExt;
    let sent = if limit.is_zero() {
        sink.send(message).await
    } else {
        match tokio::time::timeout(limit, sink.send(message)).await {
            Ok(sent) => sent,
            Err(_) => {
                return Err(format!(
                    "the peer took no data for {} ms",
                    limit.as_millis()
                ));
            }
        }
    };
    sent.map_err(|e| e.to_string())
}

/// A leg's liveness deadline came: sends `ping` to a quiet peer, or says why
/// the peer is given up (`None`: carry on). `who` names the peer in the reason
/// ("caller silent for 30000 ms …") and the log.
pub(crate) async fn keep_alive<S, M>(
    live: &mut liveness::Liveness,
    sink: &mut S,
    ping: M,
    write_limit: std::time::Duration,
    who: &str,
) -> Option<String>
where
    S: futures_util::Sink<M> + Unpin,
    S::Error: std::fmt::Display,
{
    let why = match live.poll(std::time::Instant::now()) {
        liveness::LivenessAction::Wait => return None,
        liveness::LivenessAction::Ping => match send_within(sink, ping, write_limit).await {
            Ok(()) => return None,
            Err(e) => format!("{who} socket write failed (ping): {e}"),
        },
        liveness::LivenessAction::Dead { silent_for } => format!(
            "{who} silent for {} ms (no frame, no pong)",
            silent_for.as_millis()
        ),
    };
    tracing::warn!(%why, who, "peer presumed dead; ending its leg");
    Some(why)
}

use crate::domain::{EscalationRequest, ToolUse, Turn};
use media_streams::{ProtocolError, StreamMessage};

/// A caller who arrived on some transport (Media Streams, SIP, WebRTC), as
/// the leg hands them to the call: the one way a call starts.
#[derive(Debug)]
pub struct CallArrival {
    /// What the caller's transport said about the call (ids, parameters).
    pub start: media_streams::StartMeta,
    /// The caller's stream id.
    pub stream_sid: String,
    /// When the call started (monotonic).
    pub started: std::time::Instant,
    /// When the call started (wall clock).
    pub started_wall: std::time::SystemTime,
    /// What the caller's leg reports.
    pub events: tokio::sync::mpsc::Receiver<LegEvent>,
    /// What the call asks of the caller's leg.
    pub commands: tokio::sync::mpsc::Sender<LegCommand>,
}

/// The port caller legs start calls through (implemented by the call layer),
/// so a leg never reaches up into the call or the gateway to do it.
pub trait CallStarter: Send + Sync {
    /// Registers the call and starts its task; returns the gateway's call id.
    fn start_call(self: std::sync::Arc<Self>, arrival: CallArrival) -> String;
}

/// A caller leg's ends of its call: the call id, where the leg reports, and
/// what the call asks of it.
pub struct CallerEnds {
    /// The gateway's call id.
    pub call_id: String,
    /// Events from the leg to the call.
    pub events: tokio::sync::mpsc::Sender<LegEvent>,
    /// Commands from the call to the leg.
    pub commands: tokio::sync::mpsc::Receiver<LegCommand>,
}

/// Makes a caller leg's channels (bounded: [`twilio::EVENT_QUEUE`] events,
/// [`twilio::COMMAND_QUEUE`] commands) and starts its call through `calls`,
/// started at `started` (monotonic, wall clock).
pub fn start_caller(
    calls: std::sync::Arc<dyn CallStarter>,
    start: media_streams::StartMeta,
    stream_sid: String,
    started: (std::time::Instant, std::time::SystemTime),
) -> CallerEnds {
    let (events, events_rx) = tokio::sync::mpsc::channel(twilio::EVENT_QUEUE);
    let (commands_tx, commands) = tokio::sync::mpsc::channel(twilio::COMMAND_QUEUE);
    let call_id = calls.start_call(CallArrival {
        start,
        stream_sid,
        started: started.0,
        started_wall: started.1,
        events: events_rx,
        commands: commands_tx,
    });
    CallerEnds {
        call_id,
        events,
        commands,
    }
}

/// Why a leg went away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HangupCause {
    /// An orderly end (`stop`, or a WebSocket close handshake).
    Normal,
    /// The transport broke (reset, close without `stop`, read error).
    Lost(String),
    /// The leg never came up (connect failed or timed out).
    Unreachable(String),
    /// The peer sent no media for this long (its BYE was lost, or it is gone).
    MediaTimeout(std::time::Duration),
}

impl HangupCause {
    /// Why the transport is gone, for a leg that was lost rather than hung up.
    pub fn lost_because(&self) -> Option<String> {
        match self {
            HangupCause::Normal => None,
            HangupCause::Lost(e) | HangupCause::Unreachable(e) => Some(e.clone()),
            HangupCause::MediaTimeout(d) => Some(format!("no media for {} s", d.as_secs())),
        }
    }
}

/// Something that happened on a leg.
#[derive(Debug, Clone, PartialEq)]
pub enum LegEvent {
    /// The leg is up (for outbound legs, once connected).
    Connected,
    /// Encoded audio (μ-law bytes for Media Streams legs), unchanged from the wire.
    Audio(Vec<u8>),
    /// The far end reports a mark as played.
    Mark(String),
    /// The far end asks to drop buffered audio (AI agent barge-in).
    Clear,
    /// A keypad digit.
    Dtmf(char),
    /// A conversation turn (agent extension).
    Turn(Turn),
    /// The agent asks for a human (agent extension).
    Escalate(EscalationRequest),
    /// The agent used a tool (agent extension).
    Tool(ToolUse),
    /// Customer details (agent extension).
    Customer(serde_json::Map<String, serde_json::Value>),
    /// Intent details (agent extension).
    Intent(serde_json::Map<String, serde_json::Value>),
    /// The human agent skips the rest of the whisper.
    SkipWhisper,
    /// The human agent's console dropped; the call is held for it to come
    /// back (the caller hears hold audio meanwhile).
    Detached,
    /// The human agent's console came back.
    Reattached,
    /// The human agent put the caller on hold (the caller hears hold audio,
    /// the agent is not heard).
    Hold,
    /// The human agent took the caller off hold.
    Resume,
    /// The human agent hands the call on (they leave it; it is queued again).
    Transfer(crate::domain::TransferTarget),
    /// The human agent gives the caller back to the AI agent, with a note for it.
    ReturnToAi(Option<String>),
    /// A message was refused; the leg stays up.
    Error(ProtocolError),
    /// An RTP leg whose media the relay plane can carry once the call is
    /// merged (sent once, when the call first talks to the leg).
    CanRelay,
    /// The leg is gone.
    Hangup(HangupCause),
}

/// The next message of a channel that may not be there yet: never ready
/// without one (for a `select!` arm on an optional leg).
pub(crate) async fn recv_or_pending<T>(
    rx: Option<&mut tokio::sync::mpsc::Receiver<T>>,
) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// A supervisor's audio link to a live call.
#[derive(Debug)]
pub struct MonitorLink {
    /// The supervisor's agent id.
    pub supervisor: String,
    /// Listen, coach or barge.
    pub mode: crate::domain::SupervisorMode,
    /// What the supervisor hears (μ-law 20 ms frames).
    pub to_supervisor: tokio::sync::mpsc::Sender<Vec<u8>>,
    /// What the supervisor says (used when coaching or barging).
    pub from_supervisor: tokio::sync::mpsc::Receiver<Vec<u8>>,
}

/// Something a leg must do.
#[derive(Debug, Clone, PartialEq)]
pub enum LegCommand {
    /// Send one frame of encoded audio.
    Audio(Vec<u8>),
    /// Send a mark after the audio sent so far.
    Mark(String),
    /// Tell the far end to drop its buffered audio.
    Clear,
    /// Send a keypad digit.
    Dtmf(char),
    /// Tell the AI agent how a handoff ended (the caller is back with it);
    /// other legs ignore it.
    HandoffResult(Box<crate::domain::HandoffResult>),
    /// Pass a supervisor's text hint to the AI agent; other legs ignore it.
    Hint(crate::domain::SupervisorHint),
    /// Hand this leg's RTP to the relay plane, paired with the other leg
    /// given the same offer (RTP legs that announced [`LegEvent::CanRelay`];
    /// others ignore it).
    Park(RelayOffer),
    /// Take the RTP back from the relay plane (both legs of the pair resume).
    Unpark,
    /// End the leg.
    Hangup,
}

/// The call's offer to relay two legs' RTP directly (one [`sip::relay_plane::Pairing`]
/// shared by both legs); equal when it is the same offer.
#[derive(Debug, Clone, Default)]
pub struct RelayOffer(pub(crate) std::sync::Arc<sip::relay_plane::Pairing>);

impl PartialEq for RelayOffer {
    fn eq(&self, other: &Self) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

/// Handles what both Media Streams legs treat alike — refused messages, unknown
/// events, `media` and `mark` — and hands back any other message for the leg to
/// translate. `side` names the far end in logs.
pub fn common_event(
    parsed: Result<StreamMessage, ProtocolError>,
    side: &'static str,
) -> Result<StreamMessage, Option<LegEvent>> {
    match parsed {
        Ok(StreamMessage::Media { media, .. }) => {
            Err(Some(match media_streams::decode_payload(&media) {
                Ok(bytes) => LegEvent::Audio(bytes),
                Err(e) => LegEvent::Error(e),
            }))
        }
        Ok(StreamMessage::Mark { mark, .. }) if mark.name.len() > media_streams::MAX_MARK_NAME => {
            Err(Some(LegEvent::Error(ProtocolError::MarkNameTooLong(
                mark.name.len(),
            ))))
        }
        Ok(StreamMessage::Mark { mark, .. }) => Err(Some(LegEvent::Mark(mark.name))),
        Ok(StreamMessage::Unknown) => Err(None),
        Ok(other) => Ok(other),
        Err(ProtocolError::UnknownEvent(name)) => {
            tracing::debug!(event = %name, side, "unknown event ignored");
            Err(None)
        }
        Err(e) => Err(Some(LegEvent::Error(e))),
    }
}
