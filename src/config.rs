//! Configuration: embedded defaults (config/warmline.toml), an optional file
//! that overrides some keys, then `WARMLINE_<SECTION>_<KEY>` environment variables.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;
use thiserror::Error;

/// The documented default configuration, compiled in.
pub const DEFAULT_TOML: &str = include_str!("../config/warmline.toml");

/// A configuration that cannot be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML does not parse.
    #[error("{origin}: invalid TOML: {message}")]
    Syntax {
        /// Where it came from.
        origin: String,
        /// The parser's message.
        message: String,
    },
    /// A key is unknown or has the wrong type.
    #[error("{origin}: {message}")]
    Schema {
        /// Where it came from.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// An environment override names no known key or has a bad value.
    #[error("environment variable {name}: {message}")]
    Env {
        /// The variable.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// A value is out of range.
    #[error("config key {key}: {message}")]
    Invalid {
        /// `section.key`.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// `[server]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Listen address.
    pub listen: String,
    /// Largest accepted WebSocket message.
    pub max_message_bytes: usize,
    /// Time allowed before `start`.
    pub start_timeout_ms: u64,
    /// Refused messages in a row from one peer before its leg is ended.
    pub max_refused_in_row: u32,
    /// Refused messages within `refused_window_s` before the leg is ended.
    pub max_refused_per_window: u32,
    /// The window for `max_refused_per_window`, s.
    pub refused_window_s: u64,
    /// Keypad digits per second taken from a caller (twice as a burst).
    pub max_dtmf_per_second: f64,
    /// Caller audio faster than this multiple of real time is dropped.
    pub max_media_speed: f64,
    /// Marks the AI agent may have waiting in the caller's queue.
    pub max_marks_in_flight: usize,
    /// Events a call's timeline keeps (beyond: counted, not kept).
    pub max_timeline_events: usize,
    /// Finished calls kept in memory.
    pub finished_calls_kept: usize,
    /// Megabytes of finished calls' timelines kept in memory.
    pub finished_calls_mb: usize,
    /// Most calls in progress at once (all legs); more are refused (HTTP 503 / SIP 503).
    pub max_calls: usize,
    /// Longest call, in seconds; a call reaching it ends (`time_limit`).
    pub max_call_seconds: u64,
    /// A WebSocket peer (caller stream, AI agent, console) quiet for this long is pinged, ms (0 = never).
    pub ws_ping_interval_ms: u64,
    /// A WebSocket peer that sends nothing (not even a pong) for this long, or
    /// takes no data for this long, is given up and its leg ended, ms (0 = never).
    pub ws_peer_timeout_ms: u64,
    /// An HTTP connection must send a whole request head within this long, and
    /// an idle keep-alive connection is closed after it, ms.
    pub http_header_timeout_ms: u64,
    /// A plain HTTP request (not a WebSocket) must be read and answered within this long, ms.
    pub http_request_timeout_ms: u64,
    /// Open HTTP/WebSocket connections from one IP address (0 = no limit).
    pub max_connections_per_ip: usize,
    /// Open HTTP/WebSocket connections in all (0 = from the process's file
    /// descriptor limit, keeping `fd_headroom` free).
    pub max_connections: usize,
    /// File descriptors kept free for SIP, RTP, the database, logs and the
    /// health check when `max_connections` is 0.
    pub fd_headroom: usize,
    /// New connections per second allowed from one IP address (sustained).
    pub per_ip_rate: f64,
    /// New connections one IP address may open in a burst.
    pub per_ip_burst: u32,
    /// On SIGTERM, how long calls in progress may go on before the gateway stops, in seconds.
    pub drain_timeout_s: u64,
    /// Twilio auth token; when set, `/media` upgrades must carry a valid `X-Twilio-Signature`.
    pub twilio_auth_token: String,
    /// The public base URL Twilio dials (e.g. `wss://gw.example.com`), used to check signatures.
    pub public_url: String,
}

/// `[sip]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipConfig {
    /// UDP and TCP address of the SIP user agent; empty = no SIP.
    pub listen: String,
    /// Address put in SDP and Contact (empty = the listen address's IP).
    pub media_ip: String,
    /// Lowest RTP port.
    pub rtp_port_min: u16,
    /// Highest RTP port.
    pub rtp_port_max: u16,
    /// Shortest wait for a missing RTP packet, ms.
    pub jitter_min_ms: u64,
    /// Longest wait for a missing RTP packet, ms.
    pub jitter_max_ms: u64,
    /// How long media may go to a silent SDP address, and how long a NAT'd
    /// source waits before it can be latched, ms.
    pub rtp_learning_ms: u64,
    /// Packets in a row a NAT'd source must send to be latched.
    pub rtp_learning_packets: u32,
    /// No RTP from the peer for this long ends the call (0 = never), ms.
    pub media_timeout_ms: u64,
    /// A merged call between two RTP legs is forwarded by the relay plane.
    pub direct_relay: bool,
    /// The relay plane's poll threads (0 = one per core).
    pub relay_threads: usize,
    /// How long an inbound call rings (180) before it is answered, ms.
    pub ring_ms: u64,
    /// Most SIP calls answered at once (more get 503).
    pub max_calls: usize,
    /// New INVITEs per second from one source address (0 = no limit).
    pub invite_rate: f64,
    /// New INVITEs one source address may send in a burst.
    pub invite_burst: u32,
    /// A SIP/TCP connection with no message for this long is closed, s (0 = never).
    pub tcp_idle_s: u64,
    /// A SIP/TCP message must arrive whole within this long of its first byte, ms.
    pub tcp_message_timeout_ms: u64,
    /// Open SIP/TCP connections from one address (0 = no limit).
    pub tcp_max_connections_per_ip: usize,
    /// Open SIP/TCP connections in all.
    pub tcp_max_connections: usize,
    /// Digest realm of the 401 challenge.
    pub auth_realm: String,
    /// User name a trunk must authenticate with; empty = INVITEs are not challenged.
    pub auth_user: String,
    /// The trunk's password (never logged).
    pub auth_password: String,
    /// Where `tel:` destinations are dialled: the outbound trunk or proxy
    /// (`sip:host:port`; empty = no `tel:` destinations).
    pub outbound_proxy: String,
    /// User name for the outbound trunk's digest challenge (401/407).
    pub outbound_user: String,
    /// Its password (never logged).
    pub outbound_password: String,
}

impl SipConfig {
    /// How many relay plane threads to start (0 = no plane).
    pub fn relay_plane_threads(&self) -> usize {
        if !self.direct_relay {
            return 0;
        }
        match self.relay_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n.min(64),
        }
    }

    /// The RTP legs' buffer and latch tuning.
    pub fn rtp(
        &self,
    ) -> (
        crate::media::jitter::JitterConfig,
        crate::media::latch::LatchConfig,
    ) {
        let latch = crate::media::latch::LatchConfig {
            learning: Duration::from_millis(self.rtp_learning_ms),
            min_packets: self.rtp_learning_packets.max(1),
            media_timeout: Duration::from_millis(self.media_timeout_ms),
            trust_sdp: false,
        };
        (self.jitter(), latch)
    }

    /// The RTP receive buffer's bounds.
    pub fn jitter(&self) -> crate::media::jitter::JitterConfig {
        crate::media::jitter::JitterConfig {
            min_hold: Duration::from_millis(self.jitter_min_ms),
            max_hold: Duration::from_millis(self.jitter_max_ms),
            ..Default::default()
        }
    }
}

/// `[webrtc]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebRtcSection {
    /// IP the WebRTC media sockets bind to and announce as their ICE host candidate.
    pub media_ip: String,
    /// Most browser (WebRTC) callers at once; more are refused with 503.
    pub max_calls: usize,
    /// The `parameters` an anonymous browser caller may set; any other
    /// (`agent`, `skill`, `from`, …) is dropped with a log line, so the public
    /// page cannot choose the agent adapter, the queue or a callback number.
    pub caller_parameters: Vec<String>,
}

impl WebRtcSection {
    /// The media IP, parsed.
    pub fn media_ip(&self) -> Result<std::net::IpAddr, String> {
        self.media_ip
            .parse()
            .map_err(|_| format!("webrtc.media_ip {:?} is not an IP address", self.media_ip))
    }
}

/// `[agent]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// The AI agent's WebSocket URL.
    pub url: String,
    /// Dial timeout.
    pub connect_timeout_ms: u64,
    /// Which agent protocol calls use unless their `start` says otherwise
    /// (`customParameters.agent`): `native` or `realtime`.
    pub adapter: AgentAdapter,
}

/// `agent.adapter`: the protocol the AI agent speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentAdapter {
    /// warmline's own agent protocol (docs/agent-protocol.md).
    Native,
    /// The OpenAI Realtime API (`[realtime]`).
    Realtime,
}

impl AgentAdapter {
    /// The configuration name.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentAdapter::Native => "native",
            AgentAdapter::Realtime => "realtime",
        }
    }

    /// From a configuration name (`customParameters.agent` too).
    pub fn parse(name: &str) -> Option<AgentAdapter> {
        match name {
            "native" => Some(AgentAdapter::Native),
            "realtime" => Some(AgentAdapter::Realtime),
            _ => None,
        }
    }
}

/// `[realtime]`: the OpenAI Realtime agent adapter.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealtimeSection {
    /// WebSocket URL (without `?model=`).
    pub url: String,
    /// Model.
    pub model: String,
    /// API key; empty = none sent.
    pub api_key: String,
    /// Voice.
    pub voice: String,
    /// System instructions.
    pub instructions: String,
    /// Transcription model for the caller's speech.
    pub transcription_model: String,
    /// Business functions the model may call besides `escalate_to_human`.
    pub tools: Vec<RealtimeTool>,
    /// Where each call of one of `tools` is POSTed (signed); needed when `tools` is not empty.
    pub tools_url: String,
    /// Key of the tool requests' `x-warmline-signature` (HMAC-SHA256).
    pub tools_secret: String,
    /// Time a tool call may take before the model is told it failed, ms.
    pub tools_timeout_ms: u64,
}

/// One business function declared to the Realtime model (`[[realtime.tools]]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealtimeTool {
    /// Function name (letters, digits, `_`, `-`; at most 64).
    pub name: String,
    /// What it does, for the model.
    #[serde(default)]
    pub description: String,
    /// JSON Schema of its arguments (an object schema).
    #[serde(default = "empty_object_schema")]
    pub parameters: serde_json::Value,
}

fn empty_object_schema() -> serde_json::Value {
    serde_json::json!({"type": "object", "properties": {}})
}

/// `[media]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaConfig {
    /// Playout lead.
    pub playout_lead_ms: u64,
    /// Playout capacity.
    pub max_playout_seconds: u64,
    /// VAD barge-in on/off.
    pub barge_in: bool,
    /// VAD threshold.
    pub vad_threshold_dbfs: f64,
    /// VAD onset.
    pub vad_onset_frames: u32,
    /// VAD hangover.
    pub vad_hangover_frames: u32,
}

/// `[summary]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SummaryConfig {
    /// Chat-completions URL; empty disables the LLM.
    pub llm_url: String,
    /// Model name.
    pub llm_model: String,
    /// API key.
    pub llm_api_key: String,
    /// Time budget.
    pub budget_ms: u64,
}

/// `tts.engine`: what speaks the whisper and the prompts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TtsEngine {
    /// espeak-ng in process (offline).
    Espeak,
    /// An OpenAI-compatible speech endpoint (`tts.http_url`), espeak-ng as the fallback.
    Http,
}

/// `[tts]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TtsConfig {
    /// `espeak` or `http`.
    pub engine: TtsEngine,
    /// espeak-ng voice of the whisper.
    pub voice: String,
    /// espeak-ng voice of caller prompts (disclosure, callback).
    pub prompt_voice: String,
    /// Speaking rate.
    pub words_per_minute: u32,
    /// HTTP engine URL.
    pub http_url: String,
    /// HTTP engine model.
    pub http_model: String,
    /// HTTP engine voice.
    pub http_voice: String,
    /// HTTP engine key.
    pub http_api_key: String,
    /// HTTP engine timeout.
    pub http_timeout_ms: u64,
    /// Whisper worker processes, each rendering one whisper at a time in a
    /// fork of its prepared engine (0 = one per core).
    pub whisper_workers: usize,
    /// The program run as `<it> tts-worker` ("" = this program, when it is the
    /// warmline binary; otherwise whispers are rendered in this process).
    pub whisper_worker_exe: String,
}

/// `[whisper]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhisperConfig {
    /// Shortest whisper.
    pub min_seconds: f64,
    /// Longest whisper.
    pub max_seconds: f64,
}

/// A human agent known at start.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSeed {
    /// Id (used in the console URL).
    pub id: String,
    /// Display name.
    pub name: String,
    /// Console token.
    pub token: String,
    /// Skills (empty = any call).
    #[serde(default)]
    pub skills: Vec<String>,
    /// The agent's SIP phone (`sip:ann@10.0.0.5:5060`): when set, offers ring it
    /// over SIP instead of waiting for a console.
    #[serde(default)]
    pub sip_uri: String,
    /// A supervisor: their console also shows every live call (AI or human)
    /// and may take an AI call over.
    #[serde(default)]
    pub supervisor: bool,
    /// After the whisper, ask this (phone) agent to press 1 to take the call
    /// or 2 to pass; silence for this many seconds takes it (0 = no asking).
    #[serde(default)]
    pub consult_seconds: u64,
    /// Digits sent (RFC 4733) once this phone answers, before the whisper:
    /// an extension or an IVR choice; `,` waits 500 ms ("" = none).
    #[serde(default)]
    pub dtmf_after_answer: String,
    /// Wait for the greeting to end before the whisper, and treat one running
    /// this long (ms) as a voicemail box: the call moves on (0 = no wait).
    #[serde(default)]
    pub voicemail_after_ms: u64,
    /// When this phone takes calls (default: whenever the team is open).
    #[serde(default)]
    pub hours: DeskHours,
}

/// A destination's or phone agent's own hours, inside the team's:
/// `hours = { days = "Mon-Fri", open = "18:00-08:00", time_zone = "Europe/London" }`.
/// Outside them it is offered no calls. Empty fields: every day, all day, the
/// team's `time_zone` (or `utc_offset`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeskHours {
    /// "Mon-Fri", "Sat,Sun" ("" = every day).
    #[serde(default)]
    pub days: String,
    /// "HH:MM-HH:MM"; a close before the open is a night shift ("" = all day).
    #[serde(default)]
    pub open: String,
    /// IANA zone ("" = the team's).
    #[serde(default)]
    pub time_zone: String,
}

impl DeskHours {
    /// Whether no hours are set (the desk follows the team's).
    pub fn is_unset(&self) -> bool {
        self.days.trim().is_empty() && self.open.trim().is_empty()
    }
}

/// A destination outside warmline a call can be handed to: a desk's SIP URI
/// (an ACD queue, an on-call phone) or a phone number dialled through
/// `sip.outbound_proxy`. It takes offers like an agent on a SIP phone, one per
/// channel, and gets the context in the signalling.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationSeed {
    /// Stable id (channels beyond the first are `<id>-2`, `<id>-3`…).
    pub id: String,
    /// Shown to agents and in logs.
    #[serde(default)]
    pub name: String,
    /// `sip:desk@host:port` or `tel:+15550100`.
    pub uri: String,
    /// Skills it serves.
    #[serde(default)]
    pub skills: Vec<String>,
    /// Calls it can take at once.
    #[serde(default = "one_channel")]
    pub channels: u32,
    /// After the whisper the person hears `prompts.consult` ("press 1 to take
    /// the call, 2 to pass"); silence for this many seconds takes it (0 = no asking).
    #[serde(default = "consult_seconds")]
    pub consult_seconds: u64,
    /// Digits sent (RFC 4733) once the desk answers, before the whisper: an
    /// extension or an IVR choice (`0-9`, `*`, `#`, `A-D`); `,` waits 500 ms.
    #[serde(default)]
    pub dtmf: String,
    /// The whisper waits until the desk's greeting ends ("hello?"); a greeting
    /// running this long (ms) is a voicemail box, and the call moves on to the
    /// next person, the AI or a callback (0 = no waiting).
    #[serde(default = "voicemail_after_ms")]
    pub voicemail_after_ms: u64,
    /// When it takes calls (an on-call phone at night; default: whenever the team is open).
    #[serde(default)]
    pub hours: DeskHours,
}

fn voicemail_after_ms() -> u64 {
    4000
}

fn one_channel() -> u32 {
    1
}

fn consult_seconds() -> u64 {
    5
}

/// `[routing]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingSection {
    /// Agents known at start.
    pub agents: Vec<AgentSeed>,
    /// Destinations outside warmline (SIP desks, phone numbers).
    pub destinations: Vec<DestinationSeed>,
    /// How many of `agents` (at the end) were made from `destinations`.
    #[serde(skip)]
    pub destination_agents: usize,
    /// Ring timeout.
    pub ring_timeout_ms: u64,
    /// Wrap-up time after a call before a console agent is offered calls
    /// again (0 = until they save the wrap-up).
    pub wrapup_seconds: u64,
    /// How long a console that dropped mid-call may take the call back.
    pub reattach_grace_ms: u64,
    /// Disposition codes offered in the wrap-up.
    pub dispositions: Vec<String>,
    /// Default handle time.
    pub default_handle_seconds: u64,
    /// Longest acceptable wait.
    pub max_wait_seconds: u64,
    /// Open days.
    pub open_days: String,
    /// Open hours.
    pub open_hours: String,
    /// UTC offset of the hours.
    pub utc_offset: String,
    /// IANA time zone of the hours (overrides `utc_offset`; empty = use the offset).
    pub time_zone: String,
    /// Intent keyword → the skill a call about it is queued for.
    pub intent_skills: std::collections::BTreeMap<String, String>,
    /// Put the handoff context in the signalling of every INVITE sent to a
    /// person (User-to-User, X-Warmline-* headers, a signed context URL).
    pub signal_context: bool,
    /// Base URL desks fetch the context from ("" = http://<server.listen>).
    pub context_url_base: String,
    /// HMAC key of the context URLs ("" = a random key per process).
    pub context_url_secret: String,
    /// How long a context URL stays valid, in seconds.
    pub context_url_ttl_s: u64,
    /// Pass the caller's number as P-Asserted-Identity.
    pub assert_caller_id: bool,
    /// The line callers dialled (`tel:` or `sip:` URI), sent as `Diversion`
    /// (RFC 5806, reason deflection) on every INVITE to a person; "" = none.
    pub diversion: String,
    /// What a caller nobody can take gets: a callback, or the AI agent back.
    pub when_no_agent: NoAgentFallback,
    /// The same, per skill (a skill not listed gets `when_no_agent`).
    #[serde(default)]
    pub when_no_agent_by_skill: std::collections::BTreeMap<String, NoAgentFallback>,
    /// Overflow: after waiting this long for a skill, a call may also go to
    /// other skills' agents or named destinations (`critical` calls at once).
    #[serde(default)]
    pub overflow: Vec<OverflowSeed>,
}

impl RoutingSection {
    /// What a caller queued for `skill` gets when nobody can take the call.
    pub fn when_no_agent_for(&self, skill: &str) -> NoAgentFallback {
        self.when_no_agent_by_skill
            .get(skill.trim())
            .copied()
            .unwrap_or(self.when_no_agent)
    }
}

/// One `[[routing.overflow]]` rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverflowSeed {
    /// The queue it widens ("" = calls queued for anyone).
    pub skill: String,
    /// How long a call waits for its own skill first, in s.
    pub after_seconds: u64,
    /// Skills, agent ids or destination ids that may then take it, in order
    /// of preference (all of them are tried; the longest idle answers first).
    pub to: Vec<String>,
}

/// `routing.when_no_agent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoAgentFallback {
    /// The caller is told they will be called back; the callback is saved.
    Callback,
    /// The caller goes back to the AI agent, told `no_agent` (once per call).
    Ai,
}

/// `[prompts]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptsConfig {
    /// Disclosure template.
    pub disclosure: String,
    /// Disclosure template offering a callback (long waits).
    pub disclosure_offer: String,
    /// Callback template.
    pub callback: String,
    /// Said instead of the callback to a caller with no number to call back.
    pub no_callback: String,
    /// Said to a person asked to take a call after the whisper (destinations
    /// and agents with `consult_seconds`); only they hear it.
    pub consult: String,
}

/// `[webhook]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where to POST; empty = off.
    pub url: String,
    /// HMAC key.
    pub secret: String,
    /// Attempts.
    pub attempts: u32,
}

/// `[store]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// SQLite database file (used when `postgres_url` is empty).
    pub path: PathBuf,
    /// PostgreSQL URL (`postgres://user:password@host/db`); when set, everything
    /// is kept there instead of SQLite. Required by `[cluster]`.
    pub postgres_url: String,
}

/// `[cluster]`: several nodes sharing agents, queues and callbacks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// Join a cluster (needs `store.postgres_url` and `nats_url`).
    pub enabled: bool,
    /// This node's unique name (default: the host name and listen port).
    pub node_id: String,
    /// NATS server(s), comma-separated (`nats://host:4222`).
    pub nats_url: String,
    /// The base URL other nodes reach this node's HTTP listener at
    /// (`http://10.0.0.5:8080`); agents on other nodes get their call audio through it.
    pub advertise_url: String,
    /// Shared secret nodes present to each other's `/cluster` endpoint (16+ characters).
    pub secret: String,
    /// How often this node renews its lease and its agents' presence.
    pub heartbeat_ms: u64,
    /// A node silent this long is dead: its agents go offline and its queued
    /// callers become callbacks, taken over by the nodes still alive.
    pub lease_ms: u64,
    /// When PostgreSQL or NATS is unreachable at start: refuse to start (false),
    /// or run as a single node with its agents only (true).
    pub fallback_single_node: bool,
}

/// `[api]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Bearer token; empty = open (only allowed on loopback unless `allow_open`).
    pub token: String,
    /// Serve an empty `token` on a non-loopback address anyway (something in front guards it).
    pub allow_open: bool,
}

/// `[recording]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordingConfig {
    /// Record calls.
    pub enabled: bool,
    /// Where.
    pub dir: PathBuf,
}

/// `[log]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// EnvFilter directive.
    pub level: String,
}

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[server]`.
    pub server: ServerConfig,
    /// `[agent]`.
    pub agent: AgentConfig,
    /// `[media]`.
    pub media: MediaConfig,
    /// `[monitor]`.
    pub monitor: crate::monitor::PolicyConfig,
    /// `[summary]`.
    pub summary: SummaryConfig,
    /// `[tts]`.
    pub tts: TtsConfig,
    /// `[whisper]`.
    pub whisper: WhisperConfig,
    /// `[routing]`.
    pub routing: RoutingSection,
    /// `[prompts]`.
    pub prompts: PromptsConfig,
    /// `[webhook]`.
    pub webhook: WebhookConfig,
    /// `[store]`.
    pub store: StoreConfig,
    /// `[api]`.
    pub api: ApiConfig,
    /// `[recording]`.
    pub recording: RecordingConfig,
    /// `[sip]`.
    pub sip: SipConfig,
    /// `[realtime]`.
    pub realtime: RealtimeSection,
    /// `[webrtc]`.
    pub webrtc: WebRtcSection,
    /// `[cluster]`.
    pub cluster: ClusterSection,
    /// `[log]`.
    pub log: LogConfig,
    /// `[privacy]`.
    pub privacy: crate::util::pii::PrivacyConfig,
}

impl Default for Config {
    fn default() -> Self {
        // The embedded file is checked by a unit test; fall back loudly if it were ever broken.
        Config::from_layers(None, std::iter::empty()).unwrap_or_else(|e| {
            panic!("embedded config/warmline.toml is invalid: {e}");
        })
    }
}

impl Config {
    /// Loads defaults, then `path` (if any), then `WARMLINE_*` variables from the process environment.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let file = match path {
            Some(p) => Some((
                p.display().to_string(),
                std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_path_buf(),
                    source,
                })?,
            )),
            None => None,
        };
        Config::from_layers(
            file.as_ref().map(|(o, t)| (o.as_str(), t.as_str())),
            std::env::vars().filter(|(k, _)| k.starts_with("WARMLINE_")),
        )
    }

    /// Builds a configuration from the defaults, an optional `(origin, toml)` layer and env pairs.
    pub fn from_layers(
        file: Option<(&str, &str)>,
        env: impl Iterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table = parse_table("embedded defaults", DEFAULT_TOML)?;
        let mut origin = String::from("embedded defaults");
        if let Some((file_origin, text)) = file {
            let overlay = parse_table(file_origin, text)?;
            merge(&mut table, overlay);
            origin = file_origin.to_string();
        }
        for (name, value) in env {
            apply_env(&mut table, &name, &value)?;
        }
        let config: Config =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Schema {
                    origin,
                    message: e.message().to_string(),
                })?;
        config.validate()?;
        let mut config = config;
        config.expand_destinations()?;
        Ok(config)
    }

    /// Each destination channel becomes a phone agent (no token: nobody can
    /// sign in as it) ringing the destination's SIP URI; a `tel:` number is
    /// dialled as `sip:<number>@<outbound proxy>;user=phone`.
    pub fn expand_destinations(&mut self) -> Result<(), ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            key: "routing.destinations",
            message,
        };
        let mut ids: std::collections::HashSet<String> =
            self.routing.agents.iter().map(|a| a.id.clone()).collect();
        for d in self.routing.destinations.clone() {
            let uri = if let Some(number) = d.uri.strip_prefix("tel:") {
                let digits = number.strip_prefix('+').unwrap_or(number);
                if digits.is_empty()
                    || digits.len() > 15
                    || !digits.chars().all(|c| c.is_ascii_digit())
                {
                    return Err(invalid(format!(
                        "{:?}: {:?} is not an E.164 number",
                        d.id, d.uri
                    )));
                }
                let proxy = self.sip.outbound_proxy.trim();
                let Some(host) = proxy.strip_prefix("sip:") else {
                    return Err(invalid(format!(
                        "{:?}: a tel: destination needs sip.outbound_proxy = \"sip:host:port\"",
                        d.id
                    )));
                };
                format!("sip:{number}@{host};user=phone")
            } else if d.uri.starts_with("sip:") && d.uri.contains('@') {
                d.uri.clone()
            } else {
                return Err(invalid(format!(
                    "{:?}: uri {:?} must be sip:user@host[:port] or tel:+E164",
                    d.id, d.uri
                )));
            };
            if d.channels == 0 || d.channels > 100 {
                return Err(invalid(format!("{:?}: channels must be 1–100", d.id)));
            }
            if (1..1000).contains(&d.voicemail_after_ms) {
                return Err(invalid(format!(
                    "{:?}: voicemail_after_ms must be 0 (no waiting) or at least 1000",
                    d.id
                )));
            }
            if let Some(bad) = d
                .dtmf
                .chars()
                .find(|c| !matches!(c, '0'..='9' | '*' | '#' | 'A'..='D' | ','))
                .or((d.dtmf.len() > 32).then_some('…'))
            {
                return Err(invalid(format!(
                    "{:?}: dtmf {:?} has {bad:?}: use up to 32 of 0-9 * # A-D and , (a 500 ms pause)",
                    d.id, d.dtmf
                )));
            }
            for k in 1..=d.channels {
                let id = if k == 1 {
                    d.id.clone()
                } else {
                    format!("{}-{k}", d.id)
                };
                if !ids.insert(id.clone()) {
                    return Err(invalid(format!(
                        "{id:?} is already an agent or destination"
                    )));
                }
                self.routing.agents.push(AgentSeed {
                    id,
                    name: if d.name.is_empty() {
                        d.id.clone()
                    } else {
                        d.name.clone()
                    },
                    token: String::new(),
                    skills: d.skills.clone(),
                    sip_uri: uri.clone(),
                    supervisor: false,
                    consult_seconds: d.consult_seconds,
                    dtmf_after_answer: d.dtmf.clone(),
                    voicemail_after_ms: d.voicemail_after_ms,
                    hours: d.hours.clone(),
                });
                self.routing.destination_agents += 1;
            }
        }
        let configured = self.routing.agents.len() - self.routing.destination_agents;
        for (i, agent) in self.routing.agents.iter().enumerate() {
            if let Err(e) = self.desk_hours(&agent.hours) {
                return Err(ConfigError::Invalid {
                    key: if i < configured {
                        "routing.agents"
                    } else {
                        "routing.destinations"
                    },
                    message: format!("{:?}: hours: {e}", agent.id),
                });
            }
        }
        Ok(())
    }

    /// When a desk with `hours` takes calls: `None` when it has none of its
    /// own (it follows the team's), else its days and times in its zone, the
    /// team's zone when it names none.
    pub fn desk_hours(
        &self,
        hours: &DeskHours,
    ) -> Result<Option<crate::domain::hours::Schedule>, crate::domain::hours::ScheduleError> {
        if hours.is_unset() {
            return Ok(None);
        }
        let or = |value: &str, default: &'static str| -> String {
            if value.trim().is_empty() {
                default.to_string()
            } else {
                value.trim().to_string()
            }
        };
        let fixed = crate::domain::hours::Schedule::parse(
            &or(&hours.days, "Mon-Sun"),
            &or(&hours.open, "00:00-24:00"),
            &self.routing.utc_offset,
        )?;
        let zone = if hours.time_zone.trim().is_empty() {
            self.routing.time_zone.trim()
        } else {
            hours.time_zone.trim()
        };
        if zone.is_empty() {
            Ok(Some(fixed))
        } else {
            fixed.in_zone(zone).map(Some)
        }
    }

    fn validate_realtime_tools(&self) -> Result<(), ConfigError> {
        let rt = &self.realtime;
        let invalid = |message: String| {
            Err(ConfigError::Invalid {
                key: "realtime.tools",
                message,
            })
        };
        let mut seen = std::collections::HashSet::new();
        for tool in &rt.tools {
            let plain = !tool.name.is_empty()
                && tool.name.len() <= 64
                && tool
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !plain {
                return invalid(format!(
                    "{:?}: a name is 1–64 letters, digits, '_' or '-'",
                    tool.name
                ));
            }
            if tool.name == "escalate_to_human" {
                return invalid("escalate_to_human is warmline's own function".into());
            }
            if !seen.insert(tool.name.as_str()) {
                return invalid(format!("{:?} is declared twice", tool.name));
            }
            if tool.parameters.get("type").and_then(|t| t.as_str()) != Some("object") {
                return invalid(format!(
                    "{:?}: parameters must be a JSON Schema with \"type\": \"object\"",
                    tool.name
                ));
            }
        }
        let has_url = rt.tools_url.starts_with("http://") || rt.tools_url.starts_with("https://");
        if !rt.tools.is_empty() && !has_url {
            return Err(ConfigError::Invalid {
                key: "realtime.tools_url",
                message: "functions are declared in realtime.tools: set the http(s) URL their calls are sent to".into(),
            });
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.validate_realtime_tools()?;
        let d = &self.routing.diversion;
        let scheme = ["tel:", "sip:", "sips:"].iter().any(|s| d.starts_with(s));
        let clean = !d
            .chars()
            .any(|c| c.is_control() || matches!(c, '<' | '>' | ' ' | '"'));
        let usable = d.is_empty() || (scheme && clean && d.len() <= 256);
        if !usable {
            return Err(ConfigError::Invalid {
                key: "routing.diversion",
                message: format!(
                    "{d:?}: a tel: or sip: URI of at most 256 characters without spaces, quotes, <, > or control characters"
                ),
            });
        }
        if let Err(e) = crate::util::pii::Redactor::new(&self.privacy) {
            return Err(ConfigError::Invalid {
                key: "privacy.patterns",
                message: e.to_string(),
            });
        }
        if self.server.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(ConfigError::Invalid {
                key: "server.listen",
                message: format!("{:?} is not an IP:port address", self.server.listen),
            });
        }
        if !(self.agent.url.starts_with("ws://") || self.agent.url.starts_with("wss://")) {
            return Err(ConfigError::Invalid {
                key: "agent.url",
                message: format!("{:?} must start with ws:// or wss://", self.agent.url),
            });
        }
        if let Err(message) = self.webrtc.media_ip() {
            return Err(ConfigError::Invalid {
                key: "webrtc.media_ip",
                message,
            });
        }
        if self.media.playout_lead_ms > 500 {
            return Err(ConfigError::Invalid {
                key: "media.playout_lead_ms",
                message: "must be at most 500 ms".into(),
            });
        }
        if self.server.max_message_bytes < 1024 {
            return Err(ConfigError::Invalid {
                key: "server.max_message_bytes",
                message: "must be at least 1024".into(),
            });
        }
        if !(0.0..=1.0).contains(&self.monitor.low_confidence) {
            return Err(ConfigError::Invalid {
                key: "monitor.low_confidence",
                message: "must be between 0 and 1".into(),
            });
        }
        if !(-1.0..=1.0).contains(&self.monitor.sentiment_threshold) {
            return Err(ConfigError::Invalid {
                key: "monitor.sentiment_threshold",
                message: "must be between -1 and 1".into(),
            });
        }
        let url = &self.summary.llm_url;
        if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
            return Err(ConfigError::Invalid {
                key: "summary.llm_url",
                message: format!("{:?} must be empty or an http(s) URL", self.summary.llm_url),
            });
        }
        if !(self.webhook.url.is_empty() || self.webhook.url.starts_with("http")) {
            return Err(ConfigError::Invalid {
                key: "webhook.url",
                message: format!("{:?} must be empty or an http(s) URL", self.webhook.url),
            });
        }
        if !self.webhook.url.is_empty() && self.webhook.secret.len() < 16 {
            return Err(ConfigError::Invalid {
                key: "webhook.secret",
                message: "must be at least 16 characters when webhook.url is set".into(),
            });
        }
        if let Err(e) = self.schedule() {
            return Err(ConfigError::Invalid {
                key: if e.0.contains("time zone") {
                    "routing.time_zone"
                } else {
                    "routing.open_hours"
                },
                message: e.to_string(),
            });
        }
        if self.tts.engine == TtsEngine::Http && !self.tts.http_url.starts_with("http") {
            return Err(ConfigError::Invalid {
                key: "tts.http_url",
                message: "must be an http(s) URL when tts.engine = \"http\"".into(),
            });
        }
        if !(self.whisper.min_seconds > 0.0
            && self.whisper.min_seconds + 2.0 <= self.whisper.max_seconds)
        {
            return Err(ConfigError::Invalid {
                key: "whisper.min_seconds",
                message: "must be positive and at least 2 s below whisper.max_seconds".into(),
            });
        }
        if !(self.realtime.url.starts_with("ws://") || self.realtime.url.starts_with("wss://")) {
            return Err(ConfigError::Invalid {
                key: "realtime.url",
                message: format!("{:?} must be a ws:// or wss:// URL", self.realtime.url),
            });
        }
        if !self.sip.auth_user.is_empty() && self.sip.auth_password.is_empty() {
            return Err(ConfigError::Invalid {
                key: "sip.auth_password",
                message: "must be set when sip.auth_user is".into(),
            });
        }
        if self.cluster.enabled {
            let c = &self.cluster;
            let missing = if self.store.postgres_url.is_empty() {
                Some((
                    "store.postgres_url",
                    "must be set when cluster.enabled (nodes share PostgreSQL)",
                ))
            } else if !c.nats_url.starts_with("nats://") && !c.nats_url.starts_with("tls://") {
                Some((
                    "cluster.nats_url",
                    "must be a nats:// URL when cluster.enabled",
                ))
            } else if !c.advertise_url.starts_with("http://")
                && !c.advertise_url.starts_with("https://")
            {
                Some((
                    "cluster.advertise_url",
                    "must be this node's http(s) base URL when cluster.enabled",
                ))
            } else if c.secret.len() < 16 {
                Some((
                    "cluster.secret",
                    "must be at least 16 characters when cluster.enabled",
                ))
            } else if c.heartbeat_ms == 0 || c.lease_ms < 2 * c.heartbeat_ms {
                Some((
                    "cluster.lease_ms",
                    "must be at least twice cluster.heartbeat_ms (and that above 0)",
                ))
            } else {
                None
            };
            if let Some((key, message)) = missing {
                return Err(ConfigError::Invalid {
                    key,
                    message: message.into(),
                });
            }
        }
        if self.media.max_playout_seconds == 0 {
            return Err(ConfigError::Invalid {
                key: "media.max_playout_seconds",
                message: "must be at least 1".into(),
            });
        }
        Ok(())
    }

    /// The configuration as TOML (for `check-config`), secrets masked.
    pub fn to_toml(&self) -> String {
        let mut shown = self.clone();
        // Destinations are shown as written, not as the agents made of them.
        let written = shown.routing.agents.len() - shown.routing.destination_agents;
        shown.routing.agents.truncate(written);
        for agent in &mut shown.routing.agents {
            agent.token = "********".into();
        }
        for secret in [
            &mut shown.summary.llm_api_key,
            &mut shown.api.token,
            &mut shown.tts.http_api_key,
            &mut shown.webhook.secret,
            &mut shown.sip.auth_password,
            &mut shown.realtime.api_key,
            &mut shown.server.twilio_auth_token,
            &mut shown.cluster.secret,
            &mut shown.routing.context_url_secret,
            &mut shown.sip.outbound_password,
        ] {
            if !secret.is_empty() {
                *secret = "********".into();
            }
        }
        shown.store.postgres_url = crate::util::redact_url(&shown.store.postgres_url);
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render: {e}"))
    }

    /// Business hours (validated at load).
    pub fn schedule(
        &self,
    ) -> Result<crate::domain::hours::Schedule, crate::domain::hours::ScheduleError> {
        let fixed = crate::domain::hours::Schedule::parse(
            &self.routing.open_days,
            &self.routing.open_hours,
            &self.routing.utc_offset,
        )?;
        if self.routing.time_zone.trim().is_empty() {
            Ok(fixed)
        } else {
            fixed.in_zone(&self.routing.time_zone)
        }
    }

    /// Dial timeout for the agent.
    pub fn agent_connect_timeout(&self) -> Duration {
        Duration::from_millis(self.agent.connect_timeout_ms)
    }
}

fn parse_table(origin: &str, text: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>()
        .map_err(|e| ConfigError::Syntax {
            origin: origin.to_string(),
            message: e.message().to_string(),
        })
}

fn merge(base: &mut toml::Table, overlay: toml::Table) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(key, v);
            }
        }
    }
}

fn apply_env(table: &mut toml::Table, name: &str, value: &str) -> Result<(), ConfigError> {
    let env_err = |message: String| ConfigError::Env {
        name: name.to_string(),
        message,
    };
    // Only names of real keys are applied: the platform sets others with the
    // same prefix (Kubernetes injects WARMLINE_SERVICE_HOST, WARMLINE_PORT… for
    // a Service named warmline), and they must not stop the gateway.
    let rest = name.trim_start_matches("WARMLINE_").to_ascii_lowercase();
    let ignore = |why: String| {
        tracing::debug!(variable = name, "environment variable ignored: {why}");
        Ok(())
    };
    let Some((section, key)) = rest.split_once('_') else {
        return ignore("not WARMLINE_<SECTION>_<KEY>".into());
    };
    let Some(toml::Value::Table(section_table)) = table.get_mut(section) else {
        return ignore(format!("no config section [{section}]"));
    };
    let Some(current) = section_table.get(key) else {
        return ignore(format!("no key {key:?} in [{section}]"));
    };
    let parsed = match current {
        toml::Value::Boolean(_) => value
            .parse::<bool>()
            .map(toml::Value::Boolean)
            .map_err(|_| env_err(format!("{value:?} is not true or false")))?,
        toml::Value::Integer(_) => value
            .parse::<i64>()
            .map(toml::Value::Integer)
            .map_err(|_| env_err(format!("{value:?} is not an integer")))?,
        toml::Value::Float(_) => value
            .parse::<f64>()
            .map(toml::Value::Float)
            .map_err(|_| env_err(format!("{value:?} is not a number")))?,
        toml::Value::Array(_) => toml::Value::Array(
            value
                .split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(|v| toml::Value::String(v.to_string()))
                .collect(),
        ),
        _ => toml::Value::String(value.to_string()),
    };
    section_table.insert(key.to_string(), parsed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diversion_must_be_a_clean_tel_or_sip_uri() {
        let load = |text: &str| Config::from_layers(Some(("t.toml", text)), std::iter::empty());
        for ok in ["", "tel:+15550199", "sip:sales@pbx.example.com"] {
            let c = load(&format!("[routing]\ndiversion = {ok:?}\n")).expect(ok);
            assert_eq!(c.routing.diversion, ok);
        }
        for bad in [
            "+15550199",
            "tel:+1555 0199",
            "sip:a@b>;x",
            "tel:+1\r\nX-Evil: 1",
            "http://example.com",
        ] {
            let e = load(&format!("[routing]\ndiversion = {bad:?}\n")).expect_err(bad);
            assert!(e.to_string().contains("routing.diversion"), "{e}");
        }
    }

    #[test]
    fn destinations_become_phone_agents_per_channel_and_bad_ones_are_refused() {
        let load = |text: &str| Config::from_layers(Some(("t.toml", text)), std::iter::empty());
        let ok = load(
            "[sip]\noutbound_proxy = \"sip:10.0.0.1:5060\"\n[routing]\ndestinations = [\
             { id = \"desk\", uri = \"sip:queue@10.0.0.9\", skills = [\"billing\"], channels = 2 },\
             { id = \"oncall\", uri = \"tel:+15550123\" }]\n",
        )
        .expect("valid destinations");
        let agents: Vec<(&str, &str, &str)> = ok
            .routing
            .agents
            .iter()
            .map(|a| (a.id.as_str(), a.sip_uri.as_str(), a.token.as_str()))
            .collect();
        assert_eq!(
            agents,
            [
                ("desk", "sip:queue@10.0.0.9", ""),
                ("desk-2", "sip:queue@10.0.0.9", ""),
                ("oncall", "sip:+15550123@10.0.0.1:5060;user=phone", ""),
            ]
        );
        // check-config shows the destinations as written, not the agents made of them.
        let shown = ok.to_toml();
        assert!(!shown.contains("desk-2"), "{shown}");
        let again = load(&shown).expect("check-config's output loads again");
        assert_eq!(again.routing.agents.len(), 3);
        for (text, why) in [
            (
                "[routing]\ndestinations = [{ id = \"x\", uri = \"tel:+15550123\" }]\n",
                "outbound_proxy",
            ),
            (
                "[routing]\ndestinations = [{ id = \"x\", uri = \"tel:555-0123\" }]\n",
                "E.164",
            ),
            (
                "[routing]\ndestinations = [{ id = \"x\", uri = \"http://desk\" }]\n",
                "sip:user@host",
            ),
            (
                "[routing]\ndestinations = [{ id = \"x\", uri = \"sip:a@b\", channels = 0 }]\n",
                "channels",
            ),
            (
                "[routing]\nagents = [{ id = \"x\", name = \"X\", token = \"t\" }]\n\
                 destinations = [{ id = \"x\", uri = \"sip:a@b\" }]\n",
                "already",
            ),
        ] {
            let err = load(text).expect_err(text).to_string();
            assert!(err.contains(why), "{text}: {err}");
        }
    }

    #[test]
    fn a_desk_keeps_its_own_hours_in_its_zone_and_bad_hours_are_refused() {
        let load = |text: &str| Config::from_layers(Some(("t.toml", text)), std::iter::empty());
        let c = load(
            "[routing]\ntime_zone = \"America/New_York\"\ndestinations = [\
             { id = \"night\", uri = \"sip:oncall@10.0.0.9\", hours = { open = \"18:00-08:00\" } },\
             { id = \"uk\", uri = \"sip:desk@10.0.0.8\", hours = { days = \"Mon-Fri\", open = \"09:00-17:00\", time_zone = \"Europe/London\" } },\
             { id = \"any\", uri = \"sip:desk@10.0.0.7\" }]\n",
        )
        .expect("valid hours");
        let hours = |id: &str| {
            let seed = c.routing.agents.iter().find(|a| a.id == id).expect(id);
            c.desk_hours(&seed.hours).expect("hours")
        };
        assert_eq!(hours("any"), None, "no hours of its own: the team's");
        // Wednesday 2026-11-25 12:00 UTC = 07:00 in New York (the team's zone).
        const WED_NOON_UTC: i64 = 1_795_608_000;
        let night = hours("night").expect("night hours");
        assert!(
            night.is_open(WED_NOON_UTC),
            "07:00 New York, still the night shift"
        );
        assert!(!night.is_open(WED_NOON_UTC + 3 * 3600), "10:00 New York");
        let uk = hours("uk").expect("uk hours");
        assert!(uk.is_open(WED_NOON_UTC), "12:00 London, a weekday");
        assert!(!uk.is_open(WED_NOON_UTC + 6 * 3600), "18:00 London");
        for (text, why) in [
            (
                "[routing]\ndestinations = [{ id = \"x\", uri = \"sip:a@b\", hours = { open = \"9-5\" } }]\n",
                "routing.destinations",
            ),
            (
                "[routing]\ndestinations = [{ id = \"x\", uri = \"sip:a@b\", hours = { days = \"Funday\" } }]\n",
                "unknown day",
            ),
            (
                "[routing]\nagents = [{ id = \"ann\", name = \"Ann\", token = \"t\", hours = { open = \"09:00-17:00\", time_zone = \"Mars/Base\" } }]\n",
                "routing.agents",
            ),
        ] {
            let err = load(text).expect_err(text).to_string();
            assert!(err.contains(why), "{text}: {err}");
        }
    }

    #[test]
    fn a_skill_may_have_its_own_fallback_when_nobody_can_take_the_call() {
        let c = Config::from_layers(
            Some((
                "t.toml",
                "[routing]\nwhen_no_agent = \"callback\"\n[routing.when_no_agent_by_skill]\nbilling = \"ai\"\n",
            )),
            std::iter::empty(),
        )
        .expect("valid");
        assert_eq!(c.routing.when_no_agent_for("billing"), NoAgentFallback::Ai);
        assert_eq!(
            c.routing.when_no_agent_for("technical"),
            NoAgentFallback::Callback
        );
        assert_eq!(c.routing.when_no_agent_for(""), NoAgentFallback::Callback);
        let bad = Config::from_layers(
            Some((
                "t.toml",
                "[routing.when_no_agent_by_skill]\nbilling = \"voicemail\"\n",
            )),
            std::iter::empty(),
        )
        .expect_err("unknown fallback");
        assert!(bad.to_string().contains("callback"), "{bad}");
    }

    #[test]
    fn the_agent_adapter_and_tts_engine_are_one_of_their_names_or_a_clear_error() {
        let load = |text: &str| Config::from_layers(Some(("t.toml", text)), std::iter::empty());
        let c =
            load("[agent]\nadapter = \"realtime\"\n[tts]\nengine = \"espeak\"\n").expect("valid");
        assert_eq!(c.agent.adapter, AgentAdapter::Realtime);
        assert_eq!(c.tts.engine, TtsEngine::Espeak);
        for (text, names) in [
            ("[agent]\nadapter = \"openai\"\n", ["native", "realtime"]),
            ("[tts]\nengine = \"polly\"\n", ["espeak", "http"]),
        ] {
            let err = load(text).expect_err(text).to_string();
            assert!(
                names.iter().all(|n| err.contains(n)),
                "the error names the choices: {err}"
            );
        }
    }

    #[test]
    fn the_embedded_defaults_are_valid() {
        let c = Config::from_layers(None, std::iter::empty()).unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:8080");
        assert_eq!(c.media.playout_lead_ms, 40);
        assert!(!c.recording.enabled);
    }

    #[test]
    fn a_file_overrides_some_keys_and_env_overrides_the_file() {
        let file = "[agent]\nurl = \"ws://10.1.1.1:7000/x\"\n[media]\nbarge_in = false\n";
        let env = vec![
            (
                "WARMLINE_MEDIA_PLAYOUT_LEAD_MS".to_string(),
                "20".to_string(),
            ),
            ("WARMLINE_RECORDING_ENABLED".to_string(), "true".to_string()),
        ];
        let c = Config::from_layers(Some(("my.toml", file)), env.into_iter()).unwrap();
        assert_eq!(c.agent.url, "ws://10.1.1.1:7000/x");
        assert!(!c.media.barge_in);
        assert_eq!(c.media.playout_lead_ms, 20);
        assert!(c.recording.enabled);
        assert_eq!(c.server.max_message_bytes, 65536);
    }

    #[test]
    fn bad_configs_get_clear_errors() {
        let err = |file: &str| {
            Config::from_layers(Some(("bad.toml", file)), std::iter::empty())
                .unwrap_err()
                .to_string()
        };
        assert!(err("[server\n").contains("invalid TOML"));
        assert!(err("[server]\nlisen = \"x\"\n").contains("lisen"));
        assert!(err("[media]\nplayout_lead_ms = \"fast\"\n").contains("bad.toml"));
        assert!(err("[agent]\nurl = \"http://x\"\n").contains("agent.url"));
        assert!(err("[server]\nlisten = \"nowhere\"\n").contains("server.listen"));
        let env = |k: &str, v: &str| {
            Config::from_layers(None, vec![(k.to_string(), v.to_string())].into_iter())
                .unwrap_err()
                .to_string()
        };
        assert!(env("WARMLINE_MEDIA_BARGE_IN", "maybe").contains("true or false"));
        // Variables that name no key are the platform's, not ours: ignored.
        let kubernetes = [
            ("WARMLINE_SERVICE_HOST", "10.0.0.7"),
            ("WARMLINE_SERVICE_PORT", "8080"),
            ("WARMLINE_PORT", "tcp://10.0.0.7:8080"),
            ("WARMLINE_PORT_8080_TCP_PROTO", "tcp"),
            ("WARMLINE_MEDIA_NOPE", "1"),
        ];
        let config = Config::from_layers(
            None,
            kubernetes
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        )
        .expect("a Kubernetes Service's variables do not stop the gateway");
        assert_eq!(config.server.listen, Config::default().server.listen);
        let lists = Config::from_layers(
            None,
            vec![(
                "WARMLINE_MONITOR_POLICY_KEYWORDS".to_string(),
                "refund, chargeback".to_string(),
            )]
            .into_iter(),
        )
        .unwrap();
        assert_eq!(lists.monitor.policy_keywords, vec!["refund", "chargeback"]);
    }

    #[test]
    fn a_cluster_needs_its_database_bus_address_and_secret() {
        let err = |file: &str| {
            Config::from_layers(Some(("c.toml", file)), std::iter::empty())
                .unwrap_err()
                .to_string()
        };
        let ok = "[store]\npostgres_url = \"postgres://wl:pw@db/wl\"\n[cluster]\nenabled = true\n\
                  nats_url = \"nats://n:4222\"\nadvertise_url = \"http://10.0.0.5:8080\"\n\
                  secret = \"0123456789abcdef\"\n";
        let c = Config::from_layers(Some(("c.toml", ok)), std::iter::empty()).unwrap();
        assert!(c.cluster.enabled);
        assert!(
            c.to_toml().contains("postgres://wl:***@db/wl"),
            "password hidden"
        );
        assert!(!c.to_toml().contains("0123456789abcdef"), "secret hidden");
        assert!(err("[cluster]\nenabled = true\n").contains("store.postgres_url"));
        assert!(err(&ok.replace("nats://n:4222", "n:4222")).contains("cluster.nats_url"));
        assert!(err(&ok.replace("http://10.0.0.5:8080", "")).contains("cluster.advertise_url"));
        assert!(err(&ok.replace("0123456789abcdef", "short")).contains("cluster.secret"));
        assert!(err(&format!("{ok}lease_ms = 1500\n")).contains("cluster.lease_ms"));
    }
}
