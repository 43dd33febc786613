//! The AI agent leg for speech-to-speech agents on the OpenAI Realtime
//! WebSocket API (or any server speaking its event shapes).
//!
//! [`RealtimeTranslator`] is the sans-IO half: it turns the call's
//! [`LegCommand`]s into Realtime client events and the server's events into
//! [`LegEvent`]s, so the bridge, the monitor and the handoff work as with the
//! native agent protocol:
//! - audio both ways as `g711_ulaw` (the call core is μ-law 8 kHz: no transcoding);
//! - `response.audio.delta` → caller audio, each followed by a mark carrying the
//!   item and its end offset, so the leg learns how much the caller has heard;
//! - `input_audio_buffer.speech_started` → barge-in: the caller's playout is
//!   flushed and the item truncated at the played position
//!   (`conversation.item.truncate`);
//! - both sides' transcripts → `turn` events for the monitor;
//! - the `escalate_to_human` function call → an escalation;
//! - server `error`s and failed responses → an escalation with the failure as
//!   its reason (the caller hears the disclosure, an apology, and is handed on);
//!   malformed events → logged protocol errors on the timeline.
//!
//! [`spawn`] is the socket half.

use crate::domain::{EscalationRequest, Role, ToolUse, Trigger, Turn, Urgency};
use crate::legs::liveness::Liveness;
use crate::legs::media_streams::{self, ProtocolError};
use crate::legs::{HangupCause, LegCommand, LegEvent, keep_alive, send_within};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// The function the model calls to hand the caller to a person.
pub const ESCALATE_TOOL: &str = "escalate_to_human";

/// μ-law bytes per millisecond.
const ULAW_BYTES_PER_MS: u64 = 8;

/// How to reach and instruct the Realtime agent: the `[realtime]` section plus
/// the gateway's dial timeout and message cap.
#[derive(Debug, Clone)]
pub struct RealtimeConfig {
    /// URL, model, key, voice, instructions, transcription model.
    pub api: crate::config::RealtimeSection,
    /// Dial timeout.
    pub connect_timeout: Duration,
    /// Largest accepted message.
    pub max_message_bytes: usize,
    /// When a quiet server is pinged and when a silent one is given up.
    pub(crate) liveness: crate::legs::liveness::LivenessConfig,
}

impl RealtimeConfig {
    /// From the gateway configuration.
    pub fn from_config(config: &crate::config::Config) -> Self {
        RealtimeConfig {
            api: config.realtime.clone(),
            connect_timeout: config.agent_connect_timeout(),
            max_message_bytes: config.server.max_message_bytes * 16,
            liveness: crate::legs::liveness::LivenessConfig::from_server(&config.server),
        }
    }

    /// The URL dialled, with the model.
    pub fn dial_url(&self) -> String {
        let (url, model) = (&self.api.url, &self.api.model);
        if model.is_empty() {
            return url.clone();
        }
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}model={model}")
    }
}

/// What the translator wants done.
#[derive(Debug, Clone, PartialEq)]
pub enum RealtimeOutput {
    /// A client event to send to the server.
    Send(Value),
    /// An event for the call.
    Event(LegEvent),
    /// Call a business function (`[realtime] tools`) and hand its outcome back
    /// with [`RealtimeTranslator::on_tool_done`].
    CallTool {
        /// The model's id of this call.
        call_id: String,
        /// The function.
        name: String,
        /// Its arguments, as the model gave them.
        args: Value,
    },
}

/// How a business function call went.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutcome {
    /// The model's id of the call.
    pub call_id: String,
    /// The function.
    pub name: String,
    /// Its arguments.
    pub args: Value,
    /// What it returned, or why it failed.
    pub result: Result<Value, String>,
    /// How long it took.
    pub took: Duration,
}

/// The sans-IO Realtime translator for one call.
#[derive(Debug, Default)]
pub struct RealtimeTranslator {
    /// Milliseconds of audio received per assistant item.
    received_ms: HashMap<String, u64>,
    /// Milliseconds the caller has heard per item (from echoed marks).
    played_ms: HashMap<String, u64>,
    /// The assistant item whose audio is being played.
    current_item: Option<String>,
    /// An escalation was already raised (the first one wins).
    escalated: bool,
    /// The business functions declared to the model.
    tools: Vec<String>,
}

impl RealtimeTranslator {
    /// A translator for a session that declares `config`'s business functions.
    pub fn new(config: &RealtimeConfig) -> Self {
        RealtimeTranslator {
            tools: config.api.tools.iter().map(|t| t.name.clone()).collect(),
            ..RealtimeTranslator::default()
        }
    }

    /// The `session.update` sent first.
    pub fn session_update(config: &RealtimeConfig) -> Value {
        let mut update = Self::base_session_update(config);
        if let Some(tools) = update["session"]["tools"].as_array_mut() {
            for t in &config.api.tools {
                tools.push(json!({
                    "type": "function",
                    "name": t.name,
                    "description": t.description,
                    "parameters": t.parameters,
                }));
            }
        }
        update
    }

    fn base_session_update(config: &RealtimeConfig) -> Value {
        json!({
            "type": "session.update",
            "session": {
                "modalities": ["audio", "text"],
                "instructions": config.api.instructions,
                "voice": config.api.voice,
                "input_audio_format": "g711_ulaw",
                "output_audio_format": "g711_ulaw",
                "input_audio_transcription": {"model": config.api.transcription_model},
                "turn_detection": {"type": "server_vad"},
                "tools": [{
                    "type": "function",
                    "name": ESCALATE_TOOL,
                    "description": "Hand the caller to a human agent, with the reason. Call it when the caller asks for a person, when you cannot help, or when the request is beyond what you may do.",
                    "parameters": {
                        "type": "object",
                        "properties": {
                            "trigger": {"type": "string", "enum": ["customer_request", "authority_limit", "complexity", "policy", "repeated_failure"]},
                            "description": {"type": "string", "description": "One sentence for the human agent: what the caller needs and why you are handing over."},
                            "urgency": {"type": "string", "enum": ["standard", "elevated", "critical"]}
                        },
                        "required": ["trigger", "description"]
                    }
                }],
                "tool_choice": "auto"
            }
        })
    }

    /// A command from the call.
    pub fn on_command(&mut self, cmd: &LegCommand) -> Vec<RealtimeOutput> {
        match cmd {
            LegCommand::Audio(bytes) => vec![RealtimeOutput::Send(json!({
                "type": "input_audio_buffer.append",
                "audio": media_streams::encode_payload(bytes),
            }))],
            LegCommand::Mark(name) => {
                // Our own marks come back as the caller hears the audio before them.
                if let Some((item, ms)) = parse_mark(name) {
                    let played = self.played_ms.entry(item.to_string()).or_default();
                    *played = (*played).max(ms);
                }
                Vec::new()
            }
            LegCommand::HandoffResult(result) => vec![
                // The model is told as a system item, then asked to speak.
                RealtimeOutput::Send(json!({
                    "type": "conversation.item.create",
                    "item": {
                        "type": "message",
                        "role": "system",
                        "content": [{"type": "input_text", "text": handoff_result_text(result)}],
                    },
                })),
                RealtimeOutput::Send(json!({"type": "response.create"})),
            ],
            // Taken into account from the model's next response on.
            LegCommand::Hint(hint) => vec![RealtimeOutput::Send(json!({
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "system",
                    "content": [{"type": "input_text", "text": format!(
                        "A supervisor ({}) suggests, for your next replies: {}",
                        hint.from, hint.text
                    )}],
                },
            }))],
            LegCommand::Dtmf(_)
            | LegCommand::Clear
            | LegCommand::Park(_)
            | LegCommand::Unpark
            | LegCommand::Hangup => Vec::new(),
        }
    }

    /// One text message from the server.
    pub fn on_server_text(&mut self, text: &str) -> Vec<RealtimeOutput> {
        let event: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                return vec![emit(LegEvent::Error(ProtocolError::MalformedJson(
                    e.to_string(),
                )))];
            }
        };
        let Some(kind) = event["type"].as_str() else {
            return vec![event_error("server event without a type")];
        };
        match kind {
            "response.audio.delta" | "response.output_audio.delta" => self.audio_delta(&event),
            "input_audio_buffer.speech_started" => self.barge_in(),
            "conversation.item.input_audio_transcription.completed" => {
                turn(Role::User, &event["transcript"])
            }
            "response.audio_transcript.done" | "response.output_audio_transcript.done" => {
                turn(Role::Agent, &event["transcript"])
            }
            "response.function_call_arguments.done" => self.function_call(&event),
            "error" => {
                let e = &event["error"];
                let what = format!(
                    "{} ({})",
                    e["message"].as_str().unwrap_or("no message"),
                    e["code"].as_str().or(e["type"].as_str()).unwrap_or("error")
                );
                // Errors about one of our requests (e.g. truncating an item the
                // server already dropped) are logged; the rest mean the agent
                // cannot carry on.
                if e["type"].as_str() == Some("invalid_request_error") {
                    vec![emit(LegEvent::Error(ProtocolError::InvalidMessage(
                        format!("Realtime server refused a request: {what}"),
                    )))]
                } else {
                    self.fail(&format!("the assistant failed: {what}"))
                }
            }
            "response.done" => {
                let status = event["response"]["status"].as_str().unwrap_or("");
                if status == "failed" {
                    let why = &event["response"]["status_details"]["error"];
                    let what = why["message"]
                        .as_str()
                        .or(why["code"].as_str())
                        .unwrap_or("no detail");
                    self.fail(&format!("the assistant's response failed: {what}"))
                } else {
                    Vec::new()
                }
            }
            _ => Vec::new(), // session.*, rate_limits.updated, *.delta we do not use, ...
        }
    }

    fn audio_delta(&mut self, event: &Value) -> Vec<RealtimeOutput> {
        let Some(delta) = event["delta"].as_str() else {
            return vec![event_error("audio delta without audio")];
        };
        let bytes = match media_streams::decode_base64(delta) {
            Ok(b) => b,
            Err(e) => return vec![emit(LegEvent::Error(e))],
        };
        let item = event["item_id"].as_str().unwrap_or("").to_string();
        let end = self.received_ms.entry(item.clone()).or_default();
        *end += bytes.len() as u64 / ULAW_BYTES_PER_MS;
        let mark = format!("rt:{}:{}", *end, item);
        self.current_item = Some(item);
        vec![emit(LegEvent::Audio(bytes)), emit(LegEvent::Mark(mark))]
    }

    /// The caller started speaking: flush what they have not heard yet and cut
    /// the assistant's item where they stopped hearing it.
    fn barge_in(&mut self) -> Vec<RealtimeOutput> {
        let Some(item) = self.current_item.take() else {
            return Vec::new();
        };
        let received = self.received_ms.get(&item).copied().unwrap_or(0);
        let played = self.played_ms.get(&item).copied().unwrap_or(0);
        if played >= received {
            return Vec::new(); // it had finished playing
        }
        vec![
            emit(LegEvent::Clear),
            RealtimeOutput::Send(json!({
                "type": "conversation.item.truncate",
                "item_id": item,
                "content_index": 0,
                "audio_end_ms": played,
            })),
        ]
    }

    fn function_call(&mut self, event: &Value) -> Vec<RealtimeOutput> {
        let name = event["name"].as_str().unwrap_or("");
        let call_id = event["call_id"].as_str().unwrap_or("").to_string();
        if name != ESCALATE_TOOL && self.tools.iter().any(|t| t == name) {
            let raw = event["arguments"].as_str().unwrap_or("{}");
            return match serde_json::from_str::<Value>(raw) {
                Ok(args) => vec![RealtimeOutput::CallTool {
                    call_id,
                    name: name.to_string(),
                    args,
                }],
                Err(e) => {
                    // Not called: the model hears why and the monitor sees a failed tool.
                    let why = format!("arguments are not JSON ({e})");
                    vec![
                        function_output(&call_id, json!({"error": why})),
                        RealtimeOutput::Send(json!({"type": "response.create"})),
                        emit(LegEvent::Tool(ToolUse {
                            name: name.to_string(),
                            ok: false,
                            detail: Some(why),
                            args: Some(Value::String(raw.chars().take(2000).collect())),
                            result: None,
                        })),
                    ]
                }
            };
        }
        if name != ESCALATE_TOOL {
            return vec![
                event_error(&format!("call of an unknown function {name:?}")),
                function_output(&call_id, json!({"error": "unknown function"})),
            ];
        }
        let args = event["arguments"].as_str().unwrap_or("");
        let mut out = Vec::new();
        let body = match serde_json::from_str::<EscalationRequest>(args) {
            Ok(body) => body,
            Err(e) => {
                out.push(event_error(&format!(
                    "{ESCALATE_TOOL} called with unreadable arguments ({e}): escalating anyway"
                )));
                EscalationRequest {
                    trigger: Trigger::CustomerRequest,
                    description: format!("the assistant asked for a person ({args})"),
                    urgency: Urgency::Standard,
                }
            }
        };
        out.push(function_output(&call_id, json!({"status": "transferring"})));
        if !self.escalated {
            self.escalated = true;
            out.push(emit(LegEvent::Escalate(body)));
        }
        out
    }

    /// A business function call finished: its output goes back to the model
    /// (which then goes on speaking) and the call records the tool use.
    pub fn on_tool_done(&mut self, done: ToolOutcome) -> Vec<RealtimeOutput> {
        let ms = done.took.as_millis();
        let (output, ok, detail, result) = match done.result {
            Ok(result) => (
                result.clone(),
                true,
                format!("answered in {ms} ms"),
                Some(result),
            ),
            Err(why) => (json!({"error": why}), false, why, None),
        };
        vec![
            function_output(&done.call_id, output),
            RealtimeOutput::Send(json!({"type": "response.create"})),
            emit(LegEvent::Tool(ToolUse {
                name: done.name,
                ok,
                detail: Some(detail),
                args: Some(done.args),
                result,
            })),
        ]
    }

    fn fail(&mut self, why: &str) -> Vec<RealtimeOutput> {
        let mut out = vec![event_error(why)];
        if !self.escalated {
            self.escalated = true;
            out.push(emit(LegEvent::Escalate(EscalationRequest {
                trigger: Trigger::Complexity,
                description: why.to_string(),
                urgency: Urgency::Elevated,
            })));
        }
        out
    }
}

fn emit(e: LegEvent) -> RealtimeOutput {
    RealtimeOutput::Event(e)
}

fn event_error(what: &str) -> RealtimeOutput {
    emit(LegEvent::Error(ProtocolError::InvalidMessage(
        what.to_string(),
    )))
}

fn turn(role: Role, transcript: &Value) -> Vec<RealtimeOutput> {
    match transcript.as_str().map(str::trim) {
        Some(t) if !t.is_empty() => vec![emit(LegEvent::Turn(Turn {
            role,
            content: t.to_string(),
            confidence: None,
        }))],
        _ => Vec::new(),
    }
}

fn function_output(call_id: &str, output: Value) -> RealtimeOutput {
    RealtimeOutput::Send(json!({
        "type": "conversation.item.create",
        "item": {"type": "function_call_output", "call_id": call_id, "output": output.to_string()},
    }))
}

/// `rt:<end ms>:<item id>` → (item, ms).
fn parse_mark(name: &str) -> Option<(&str, u64)> {
    let rest = name.strip_prefix("rt:")?;
    let (ms, item) = rest.split_once(':')?;
    Some((item, ms.parse().ok()?))
}

/// Starts the Realtime agent leg for one call; the first event is `Connected`
/// or `Hangup(Unreachable)`, as for the native agent leg.
pub fn spawn(config: RealtimeConfig) -> (mpsc::Sender<LegCommand>, mpsc::Receiver<LegEvent>) {
    let (cmd_tx, cmd_rx) = mpsc::channel(crate::legs::agent::COMMAND_QUEUE);
    let (ev_tx, ev_rx) = mpsc::channel(crate::legs::agent::EVENT_QUEUE);
    tokio::spawn(tracing::Instrument::in_current_span(run(
        config, cmd_rx, ev_tx,
    )));
    (cmd_tx, ev_rx)
}

async fn run(
    config: RealtimeConfig,
    mut cmd_rx: mpsc::Receiver<LegCommand>,
    ev_tx: mpsc::Sender<LegEvent>,
) {
    let url = config.dial_url();
    let unreachable = |why: String| LegEvent::Hangup(HangupCause::Unreachable(why));
    let mut request = match url.as_str().into_client_request() {
        Ok(r) => r,
        Err(e) => {
            let _ = ev_tx
                .send(unreachable(format!("bad Realtime URL {url}: {e}")))
                .await;
            return;
        }
    };
    if !config.api.api_key.is_empty() {
        match format!("Bearer {}", config.api.api_key).parse() {
            Ok(v) => {
                request.headers_mut().insert("Authorization", v);
            }
            Err(_) => {
                let _ = ev_tx
                    .send(unreachable(
                        "the Realtime API key is not a valid header".into(),
                    ))
                    .await;
                return;
            }
        }
    }
    if let Ok(v) = "realtime=v1".parse() {
        request.headers_mut().insert("OpenAI-Beta", v);
    }
    let ws_config = crate::legs::ws_config()
        .max_message_size(Some(config.max_message_bytes))
        .max_frame_size(Some(config.max_message_bytes));
    let ws = match crate::legs::agent::dial(request, &url, ws_config, config.connect_timeout).await
    {
        Ok(ws) => ws,
        Err(why) => {
            let _ = ev_tx.send(unreachable(why)).await;
            return;
        }
    };
    let (mut sink, mut stream) = ws.split();
    let hello = RealtimeTranslator::session_update(&config).to_string();
    let write_limit = config.liveness.dead_after;
    if let Err(e) = send_within(&mut sink, Message::Text(hello.into()), write_limit).await {
        let why = format!("Realtime socket failed during setup: {e}");
        let _ = ev_tx.send(LegEvent::Hangup(HangupCause::Lost(why))).await;
        return;
    }
    if ev_tx.send(LegEvent::Connected).await.is_err() {
        return;
    }
    let mut translator = RealtimeTranslator::new(&config);
    let mut live = Liveness::new(config.liveness, std::time::Instant::now());
    let tools = ToolCaller::new(&config);
    let (tool_tx, mut tool_rx) = mpsc::channel::<ToolOutcome>(8);
    loop {
        let outputs = tokio::select! {
            Some(done) = tool_rx.recv() => translator.on_tool_done(done),
            _ = tokio::time::sleep_until(live.deadline().into()) => {
                match keep_alive(
                    &mut live,
                    &mut sink,
                    Message::Ping(Default::default()),
                    write_limit,
                    "Realtime server",
                ).await {
                    None => continue,
                    Some(why) => {
                        let _ = ev_tx.send(LegEvent::Hangup(HangupCause::Lost(why))).await;
                        return;
                    }
                }
            }
            cmd = cmd_rx.recv() => match cmd {
                Some(LegCommand::Hangup) | None => {
                    let _ = sink.close().await;
                    return;
                }
                Some(cmd) => translator.on_command(&cmd),
            },
            msg = stream.next() => {
                live.heard(std::time::Instant::now());
                match msg {
                Some(Ok(Message::Text(text))) => translator.on_server_text(&text),
                Some(Ok(Message::Binary(b))) => vec![RealtimeOutput::Event(LegEvent::Error(ProtocolError::BinaryFrame(b.len())))],
                Some(Ok(Message::Close(_))) => {
                    let _ = ev_tx.send(LegEvent::Hangup(HangupCause::Normal)).await;
                    return;
                }
                Some(Ok(_)) => Vec::new(),
                Some(Err(e)) => {
                    let _ = ev_tx.send(LegEvent::Hangup(HangupCause::Lost(format!("Realtime socket error: {e}")))).await;
                    return;
                }
                None => {
                    let _ = ev_tx.send(LegEvent::Hangup(HangupCause::Lost("Realtime socket closed without a close frame".into()))).await;
                    return;
                }
            }
            },
        };
        for out in outputs {
            match out {
                RealtimeOutput::Send(v) => {
                    if let Err(e) =
                        send_within(&mut sink, Message::Text(v.to_string().into()), write_limit)
                            .await
                    {
                        let why = format!("Realtime socket write failed: {e}");
                        let _ = ev_tx.send(LegEvent::Hangup(HangupCause::Lost(why))).await;
                        return;
                    }
                }
                RealtimeOutput::Event(e) => {
                    if ev_tx.send(e).await.is_err() {
                        return;
                    }
                }
                RealtimeOutput::CallTool {
                    call_id,
                    name,
                    args,
                } => {
                    tools.spawn_call(call_id, name, args, tool_tx.clone());
                }
            }
        }
    }
}

/// Calls business functions over HTTP for the Realtime session
/// (`realtime.tools_url`, signed like the webhook, bounded in time).
struct ToolCaller {
    client: Option<reqwest::Client>,
    url: String,
    secret: String,
    timeout: Duration,
}

impl ToolCaller {
    fn new(config: &RealtimeConfig) -> Self {
        let timeout = Duration::from_millis(config.api.tools_timeout_ms.max(1));
        let client = if config.api.tools.is_empty() {
            None
        } else {
            reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .map_err(|e| tracing::error!(error = %e, "cannot build the tools HTTP client"))
                .ok()
        };
        ToolCaller {
            client,
            url: config.api.tools_url.clone(),
            secret: config.api.tools_secret.clone(),
            timeout,
        }
    }

    /// Calls `name` off the leg's loop; the outcome arrives on `done`.
    fn spawn_call(
        &self,
        call_id: String,
        name: String,
        args: Value,
        done: mpsc::Sender<ToolOutcome>,
    ) {
        let client = self.client.clone();
        let (url, secret, timeout) = (self.url.clone(), self.secret.clone(), self.timeout);
        tokio::spawn(tracing::Instrument::in_current_span(async move {
            let started = std::time::Instant::now();
            let result = match client {
                Some(client) => {
                    call_tool(&client, &url, &secret, timeout, &call_id, &name, &args).await
                }
                None => Err("no tools URL is configured".to_string()),
            };
            if let Err(why) = &result {
                tracing::warn!(tool = %name, error = %why, "Realtime tool call failed");
            }
            let _ = done
                .send(ToolOutcome {
                    call_id,
                    name,
                    args,
                    result,
                    took: started.elapsed(),
                })
                .await;
        }));
    }
}

/// Largest tool answer taken (the rest would only bloat the context).
const MAX_TOOL_ANSWER: usize = 64 * 1024;

async fn call_tool(
    client: &reqwest::Client,
    url: &str,
    secret: &str,
    timeout: Duration,
    call_id: &str,
    name: &str,
    args: &Value,
) -> Result<Value, String> {
    let body = json!({"callId": call_id, "tool": name, "arguments": args}).to_string();
    let timestamp = crate::util::unix_seconds(std::time::SystemTime::now()) as u64;
    let signature = crate::util::signature::sign(secret.as_bytes(), timestamp, body.as_bytes());
    let sent = client
        .post(url)
        .header("content-type", "application/json")
        .header(crate::util::signature::SIGNATURE_HEADER, signature)
        .header(
            crate::util::signature::TIMESTAMP_HEADER,
            timestamp.to_string(),
        )
        .body(body)
        .send();
    let response = match tokio::time::timeout(timeout, sent).await {
        Err(_) => return Err(format!("no answer within {} ms", timeout.as_millis())),
        Ok(Err(e)) if e.is_timeout() => {
            return Err(format!("no answer within {} ms", timeout.as_millis()));
        }
        Ok(Err(e)) => {
            return Err(format!(
                "cannot reach the tools URL: {}",
                crate::util::redact_url(&e.to_string())
            ));
        }
        Ok(Ok(r)) => r,
    };
    let status = response.status();
    let bytes = match tokio::time::timeout(timeout, response.bytes()).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => return Err(format!("answer unreadable: {e}")),
        Err(_) => {
            return Err(format!(
                "answer not complete within {} ms",
                timeout.as_millis()
            ));
        }
    };
    if !status.is_success() {
        let text: String = String::from_utf8_lossy(&bytes).chars().take(200).collect();
        return Err(format!("the tool answered {status}: {text}"));
    }
    if bytes.len() > MAX_TOOL_ANSWER {
        return Err(format!(
            "the answer is {} bytes (at most {MAX_TOOL_ANSWER})",
            bytes.len()
        ));
    }
    // JSON is kept as JSON; any other answer as text.
    Ok(serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned())))
}

/// What a Realtime model is told when the caller comes back to it: the
/// outcome, the person's note, and (for a fresh session) the conversation so far.
pub(crate) fn handoff_result_text(result: &crate::domain::HandoffResult) -> String {
    use crate::domain::HandoffOutcome;
    let mut text = match result.outcome {
        HandoffOutcome::Completed => format!(
            "The caller was with {} and is back with you now.",
            result.agent.as_deref().unwrap_or("a colleague")
        ),
        HandoffOutcome::NoAgent => {
            "Nobody could take the call, so the caller is back with you; do not promise a person is coming.".to_string()
        }
    };
    if let Some(note) = &result.note {
        text.push_str(&format!(" Their note: {note}"));
    }
    if !result.conversation.is_empty() {
        text.push_str(" The conversation so far:");
        for turn in &result.conversation {
            let who = match turn.role {
                crate::domain::Role::User => "caller",
                crate::domain::Role::Agent => "assistant",
            };
            text.push_str(&format!("\n{who}: {}", turn.content));
        }
    }
    text.push_str(" Greet the caller and carry on from here.");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(out: &[RealtimeOutput]) -> Vec<&LegEvent> {
        out.iter()
            .filter_map(|o| match o {
                RealtimeOutput::Event(e) => Some(e),
                _ => None,
            })
            .collect()
    }

    fn sent(out: &[RealtimeOutput]) -> Vec<&Value> {
        out.iter()
            .filter_map(|o| match o {
                RealtimeOutput::Send(v) => Some(v),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_model_the_caller_returns_to_is_told_why_and_speaks_while_a_hint_only_informs_it() {
        let config = RealtimeConfig::from_config(&crate::config::Config::default());
        let mut t = RealtimeTranslator::new(&config);
        let result = crate::domain::HandoffResult {
            outcome: crate::domain::HandoffOutcome::Completed,
            agent: Some("alex".into()),
            note: Some("run the survey".into()),
            conversation: vec![crate::domain::Turn {
                role: crate::domain::Role::User,
                content: "where is my order".into(),
                confidence: None,
            }],
        };
        let out = t.on_command(&LegCommand::HandoffResult(Box::new(result)));
        let msgs = sent(&out);
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        assert_eq!(msgs[0]["item"]["role"], "system");
        let text = msgs[0]["item"]["content"][0]["text"].as_str().unwrap_or("");
        assert!(
            text.contains("alex")
                && text.contains("run the survey")
                && text.contains("where is my order"),
            "{text}"
        );
        assert_eq!(msgs[1]["type"], "response.create", "the model speaks next");
        let hint = crate::domain::SupervisorHint {
            from: "sam".into(),
            text: "offer the credit".into(),
        };
        let out = t.on_command(&LegCommand::Hint(hint));
        let msgs = sent(&out);
        assert_eq!(
            msgs.len(),
            1,
            "a hint does not make the model speak: {msgs:?}"
        );
        let text = msgs[0]["item"]["content"][0]["text"].as_str().unwrap_or("");
        assert!(
            text.contains("sam") && text.contains("offer the credit"),
            "{text}"
        );
    }

    #[test]
    fn a_declared_business_function_is_called_and_its_answer_goes_back_to_the_model() {
        let mut config = RealtimeConfig::from_config(&crate::config::Config::default());
        config.api.tools.push(crate::config::RealtimeTool {
            name: "order_lookup".into(),
            description: String::new(),
            parameters: json!({"type": "object"}),
        });
        let mut t = RealtimeTranslator::new(&config);
        let call = json!({"type": "response.function_call_arguments.done", "call_id": "c1",
            "name": "order_lookup", "arguments": "{\"order_id\":\"8821\"}"});
        let out = t.on_server_text(&call.to_string());
        assert_eq!(
            out,
            vec![RealtimeOutput::CallTool {
                call_id: "c1".into(),
                name: "order_lookup".into(),
                args: json!({"order_id": "8821"}),
            }]
        );
        let done = t.on_tool_done(ToolOutcome {
            call_id: "c1".into(),
            name: "order_lookup".into(),
            args: json!({"order_id": "8821"}),
            result: Ok(json!({"status": "shipped"})),
            took: Duration::from_millis(12),
        });
        let sent = sent(&done);
        assert_eq!(sent[0]["item"]["type"], "function_call_output");
        assert_eq!(sent[0]["item"]["output"], "{\"status\":\"shipped\"}");
        assert_eq!(sent[1]["type"], "response.create");
        assert!(matches!(
            events(&done)[..],
            [LegEvent::Tool(ToolUse { ok: true, .. })]
        ));
        // A function nobody declared is still refused.
        let unknown = json!({"type": "response.function_call_arguments.done", "call_id": "c2",
            "name": "delete_everything", "arguments": "{}"});
        let out = t.on_server_text(&unknown.to_string());
        assert!(
            !out.iter()
                .any(|o| matches!(o, RealtimeOutput::CallTool { .. }))
        );
    }

    fn delta(item: &str, bytes: usize) -> String {
        json!({"type": "response.audio.delta", "item_id": item, "delta": media_streams::encode_payload(&vec![0x7f; bytes])}).to_string()
    }

    #[test]
    fn caller_audio_is_appended_as_mulaw_base64() {
        let mut t = RealtimeTranslator::default();
        let out = t.on_command(&LegCommand::Audio(vec![1, 2, 3]));
        assert_eq!(sent(&out)[0]["type"], "input_audio_buffer.append");
        assert_eq!(sent(&out)[0]["audio"], "AQID");
    }

    #[test]
    fn barge_in_flushes_and_truncates_at_what_the_caller_heard() {
        let mut t = RealtimeTranslator::default();
        let mut marks = Vec::new();
        for _ in 0..10 {
            // 100 ms of audio per delta: 1 s in all.
            for e in events(&t.on_server_text(&delta("item_a", 800))) {
                if let LegEvent::Mark(m) = e {
                    marks.push(m.clone());
                }
            }
        }
        assert_eq!(marks.last().map(String::as_str), Some("rt:1000:item_a"));
        // The caller heard 300 ms before speaking up.
        for m in &marks[..3] {
            t.on_command(&LegCommand::Mark(m.clone()));
        }
        let out = t.on_server_text(
            r#"{"type":"input_audio_buffer.speech_started","audio_start_ms":1200}"#,
        );
        assert_eq!(events(&out), vec![&LegEvent::Clear]);
        let truncate = sent(&out)[0];
        assert_eq!(truncate["type"], "conversation.item.truncate");
        assert_eq!(truncate["item_id"], "item_a");
        assert_eq!(truncate["audio_end_ms"], 300);
        // Once fully played, speech is not a barge-in.
        for _ in 0..2 {
            t.on_server_text(&delta("item_b", 800));
        }
        t.on_command(&LegCommand::Mark("rt:200:item_b".into()));
        assert!(
            t.on_server_text(r#"{"type":"input_audio_buffer.speech_started"}"#)
                .is_empty()
        );
    }

    #[test]
    fn transcripts_become_turns_and_the_function_call_escalates_once() {
        let mut t = RealtimeTranslator::default();
        let out = t.on_server_text(r#"{"type":"conversation.item.input_audio_transcription.completed","item_id":"i1","transcript":" I want a real person. "}"#);
        assert!(
            matches!(events(&out)[0], LegEvent::Turn(Turn { role: Role::User, content, .. }) if content == "I want a real person.")
        );
        let out = t.on_server_text(
            r#"{"type":"response.audio_transcript.done","transcript":"Let me get someone."}"#,
        );
        assert!(matches!(
            events(&out)[0],
            LegEvent::Turn(Turn {
                role: Role::Agent,
                ..
            })
        ));
        let call = json!({"type": "response.function_call_arguments.done", "name": ESCALATE_TOOL, "call_id": "c1",
            "arguments": "{\"trigger\":\"customer_request\",\"description\":\"asked for a person\",\"urgency\":\"elevated\"}"}).to_string();
        let out = t.on_server_text(&call);
        assert!(matches!(
            events(&out)[0],
            LegEvent::Escalate(EscalationRequest {
                trigger: Trigger::CustomerRequest,
                urgency: Urgency::Elevated,
                ..
            })
        ));
        assert_eq!(sent(&out)[0]["item"]["type"], "function_call_output");
        assert_eq!(sent(&out)[0]["item"]["call_id"], "c1");
        assert!(
            events(&t.on_server_text(&call)).is_empty(),
            "only the first escalation counts"
        );
    }

    #[test]
    fn bad_arguments_errors_and_malformed_events_never_panic() {
        let mut t = RealtimeTranslator::default();
        let call = json!({"type": "response.function_call_arguments.done", "name": ESCALATE_TOOL, "call_id": "c1", "arguments": "{not json"}).to_string();
        let out = t.on_server_text(&call);
        assert!(matches!(events(&out)[0], LegEvent::Error(_)));
        assert!(
            matches!(events(&out)[1], LegEvent::Escalate(_)),
            "escalates anyway"
        );
        let mut t = RealtimeTranslator::default();
        let out = t
            .on_server_text(r#"{"type":"error","error":{"type":"server_error","message":"boom"}}"#);
        assert!(matches!(
            events(&out)[1],
            LegEvent::Escalate(EscalationRequest {
                trigger: Trigger::Complexity,
                ..
            })
        ));
        let out = t.on_server_text(
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"no such item"}}"#,
        );
        assert_eq!(events(&out).len(), 1, "a refused request is only logged");
        for bad in [
            "",
            "{",
            "[]",
            "{}",
            r#"{"type":"response.audio.delta"}"#,
            r#"{"type":"response.audio.delta","delta":"%%%"}"#,
            r#"{"type":"response.done","response":{"status":"failed"}}"#,
        ] {
            let _ = t.on_server_text(bad);
        }
    }
}
