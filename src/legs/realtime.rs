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

use crate::domain::{EscalationRequest, Role, Trigger, Turn, Urgency};
use crate::legs::media_streams::{self, ProtocolError};
use crate::legs::{HangupCause, LegCommand, LegEvent};
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
}

impl RealtimeConfig {
    /// From the gateway configuration.
    pub fn from_config(config: &crate::config::Config) -> Self {
        RealtimeConfig {
            api: config.realtime.clone(),
            connect_timeout: config.agent_connect_timeout(),
            max_message_bytes: config.server.max_message_bytes * 16,
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
}

impl RealtimeTranslator {
    /// The `session.update` sent first.
    pub fn session_update(config: &RealtimeConfig) -> Value {
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
            LegCommand::Dtmf(_) | LegCommand::Clear | LegCommand::Hangup => Vec::new(),
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
    if let Err(e) = sink.send(Message::Text(hello.into())).await {
        let why = format!("Realtime socket failed during setup: {e}");
        let _ = ev_tx.send(LegEvent::Hangup(HangupCause::Lost(why))).await;
        return;
    }
    if ev_tx.send(LegEvent::Connected).await.is_err() {
        return;
    }
    let mut translator = RealtimeTranslator::default();
    loop {
        let outputs = tokio::select! {
            cmd = cmd_rx.recv() => match cmd {
                Some(LegCommand::Hangup) | None => {
                    let _ = sink.close().await;
                    return;
                }
                Some(cmd) => translator.on_command(&cmd),
            },
            msg = stream.next() => match msg {
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
            },
        };
        for out in outputs {
            match out {
                RealtimeOutput::Send(v) => {
                    if let Err(e) = sink.send(Message::Text(v.to_string().into())).await {
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
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(out: &[RealtimeOutput]) -> Vec<&LegEvent> {
        out.iter()
            .filter_map(|o| match o {
                RealtimeOutput::Event(e) => Some(e),
                RealtimeOutput::Send(_) => None,
            })
            .collect()
    }

    fn sent(out: &[RealtimeOutput]) -> Vec<&Value> {
        out.iter()
            .filter_map(|o| match o {
                RealtimeOutput::Send(v) => Some(v),
                RealtimeOutput::Event(_) => None,
            })
            .collect()
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
