//! A simulated human agent console: signs in over the console WebSocket, takes
//! (or declines) offers, records what it hears (the whisper, then the caller),
//! and talks once connected — the way a browser console or softphone would.

use crate::legs::media_streams::{self, MediaChunk};
use futures_util::{SinkExt, StreamExt};
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio_tungstenite::tungstenite::Message;

/// What the simulated agent does.
#[derive(Debug, Clone)]
pub struct HumanOptions {
    /// The gateway's base URL, e.g. `ws://127.0.0.1:8080`.
    pub base_url: String,
    /// Agent id.
    pub agent_id: String,
    /// Agent token.
    pub token: String,
    /// How long to "read" the screen-pop before answering.
    pub answer_after: Duration,
    /// Decline offers instead of accepting them.
    pub decline: bool,
    /// Skip the whisper this long after it starts.
    pub skip_after: Option<Duration>,
    /// Drop the connection this long after the whisper starts.
    pub drop_after: Option<Duration>,
    /// What to say once connected to the caller (μ-law 8 kHz, sent in real time).
    pub say: Vec<u8>,
    /// Hang up this long after finishing speaking (None: wait for the caller).
    pub hang_up_after: Option<Duration>,
    /// Instead of hanging up then, give the caller back to the AI agent with
    /// this note ("Back to assistant").
    pub return_to_ai: Option<String>,
    /// Give up after this long.
    pub max_duration: Duration,
    /// After the call: a wrap-up to send (`resolved`, `callerRepeated`,
    /// `contextAccurate`, `notes`); the `callId` is filled in.
    pub wrapup: Option<serde_json::Value>,
}

impl HumanOptions {
    /// An agent that answers at once, says nothing, waits for the caller to hang
    /// up, and gives up after 60 s.
    pub fn new(base_url: &str, agent_id: &str, token: &str) -> Self {
        HumanOptions {
            base_url: base_url.to_string(),
            agent_id: agent_id.to_string(),
            token: token.to_string(),
            answer_after: Duration::ZERO,
            decline: false,
            skip_after: None,
            drop_after: None,
            say: Vec::new(),
            hang_up_after: None,
            return_to_ai: None,
            max_duration: Duration::from_secs(60),
            wrapup: None,
        }
    }
}

/// What the agent experienced.
#[derive(Debug, Clone, Default)]
pub struct HumanReport {
    /// Screen-pops received (the `context` objects).
    pub offers: Vec<serde_json::Value>,
    /// Audio received before the `whisper-end` mark (the whisper), back to back.
    pub whisper: Vec<u8>,
    /// Audio received after it (the caller), back to back.
    pub after_whisper: Vec<u8>,
    /// When each 160-byte frame of `after_whisper` arrived (for latency figures).
    pub caller_frame_arrivals: Vec<Instant>,
    /// When each frame of `say` was sent.
    pub said_at: Vec<Instant>,
    /// When the agent accepted.
    pub accepted_at: Option<Instant>,
    /// When the first audio frame arrived.
    pub first_audio_at: Option<Instant>,
    /// When the last whisper frame arrived.
    pub last_whisper_frame_at: Option<Instant>,
    /// When the first frame after the whisper arrived.
    pub first_caller_frame_at: Option<Instant>,
    /// Whether the gateway sent `stop`.
    pub got_stop: bool,
    /// Whether the gateway confirmed the wrap-up.
    pub wrapup_saved: bool,
    /// Error messages the gateway sent.
    pub errors: Vec<String>,
}

/// The simulated console failed.
#[derive(Debug, Error)]
pub enum HumanError {
    /// No connection.
    #[error("console cannot connect: {0}")]
    Connect(tokio_tungstenite::tungstenite::Error),
    /// The socket failed.
    #[error("console socket failed: {0}")]
    Socket(#[from] tokio_tungstenite::tungstenite::Error),
}

/// Runs the console until the call ends (or `max_duration`).
pub async fn run(options: HumanOptions) -> Result<HumanReport, HumanError> {
    let url = format!(
        "{}/v1/agents/{}/ws?token={}",
        options.base_url, options.agent_id, options.token
    );
    let (ws, _) = tokio_tungstenite::connect_async_with_config(
        url.as_str(),
        Some(crate::legs::ws_config()),
        true,
    )
    .await
    .map_err(HumanError::Connect)?;
    let (mut sink, mut stream) = ws.split();
    let mut report = HumanReport::default();
    let deadline = tokio::time::Instant::now() + options.max_duration;
    let mut answer_at: Option<(tokio::time::Instant, String)> = None;
    let mut whisper_started: Option<tokio::time::Instant> = None;
    let mut merged = false;
    let mut said = options
        .say
        .chunks(160)
        .map(<[u8]>::to_vec)
        .collect::<Vec<_>>()
        .into_iter();
    let mut done_speaking_at: Option<tokio::time::Instant> = None;
    let mut ticker = tokio::time::interval(Duration::from_millis(20));
    let mut call_id = String::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => break,
            _ = ticker.tick() => {
                let now = tokio::time::Instant::now();
                if let Some((at, id)) = answer_at.clone()
                    && now >= at
                {
                    answer_at = None;
                    let verb = if options.decline { "decline" } else { "accept" };
                    let msg = serde_json::json!({"event": verb, "callId": id}).to_string();
                    sink.send(Message::Text(msg.into())).await?;
                    if !options.decline {
                        report.accepted_at = Some(Instant::now());
                    }
                }
                if let Some(started) = whisper_started
                    && !merged
                {
                    if options.drop_after.is_some_and(|d| now >= started + d) {
                        return Ok(report); // the console vanishes mid-whisper
                    }
                    if options.skip_after.is_some_and(|d| now >= started + d) {
                        sink.send(Message::Text(r#"{"event":"skip"}"#.into())).await?;
                        whisper_started = None;
                    }
                }
                if merged {
                    match said.next() {
                        Some(chunk) => {
                            let media = MediaChunk { track: None, chunk: None, timestamp: None, payload: media_streams::encode_payload(&chunk) };
                            let msg = serde_json::json!({"event": "media", "media": media}).to_string();
                            report.said_at.push(Instant::now());
                            sink.send(Message::Text(msg.into())).await?;
                        }
                        None => {
                            let finished = *done_speaking_at.get_or_insert(now);
                            if options.hang_up_after.is_some_and(|d| now >= finished + d) {
                                let leave = match &options.return_to_ai {
                                    Some(note) => serde_json::json!({"event": "return_to_ai", "note": note}).to_string(),
                                    None => r#"{"event":"hangup"}"#.to_string(),
                                };
                                sink.send(Message::Text(leave.into())).await?;
                                done_speaking_at = Some(now + Duration::from_secs(3600));
                            }
                        }
                    }
                }
            }
            msg = stream.next() => {
                let Some(Ok(msg)) = msg else { break };
                let Message::Text(text) = msg else { continue };
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else { continue };
                match v["event"].as_str().unwrap_or("") {
                    "offer" => {
                        call_id = v["callId"].as_str().unwrap_or("").to_string();
                        report.offers.push(v["context"].clone());
                        answer_at = Some((tokio::time::Instant::now() + options.answer_after, call_id.clone()));
                    }
                    "media" => {
                        let now = Instant::now();
                        let Ok(bytes) = serde_json::from_value::<MediaChunk>(v["media"].clone())
                            .map_err(|_| ())
                            .and_then(|m| media_streams::decode_payload(&m).map_err(|_| ()))
                        else { continue };
                        report.first_audio_at.get_or_insert(now);
                        if whisper_started.is_none() && !merged {
                            whisper_started = Some(tokio::time::Instant::now());
                        }
                        if merged {
                            report.first_caller_frame_at.get_or_insert(now);
                            report.caller_frame_arrivals.push(now);
                            report.after_whisper.extend(bytes);
                        } else {
                            report.last_whisper_frame_at = Some(now);
                            report.whisper.extend(bytes);
                        }
                    }
                    "mark" if v["mark"]["name"] == crate::domain::GatewayMark::WhisperEnd.as_str() => merged = true,
                    "stop" => {
                        report.got_stop = true;
                        let Some(mut wrapup) = options.wrapup.clone() else { break };
                        wrapup["event"] = "wrapup".into();
                        wrapup["callId"] = call_id.clone().into();
                        sink.send(Message::Text(wrapup.to_string().into())).await?;
                    }
                    "wrapup_saved" => {
                        report.wrapup_saved = true;
                        break;
                    }
                    "error" => report.errors.push(v["message"].as_str().unwrap_or("").to_string()),
                    _ => {}
                }
                let _ = &call_id;
            }
        }
    }
    let _ = sink.close().await;
    Ok(report)
}
