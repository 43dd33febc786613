//! A scripted AI voice agent: a WebSocket server that speaks the application
//! side of Media Streams plus `turn` events, answering each caller utterance
//! (detected with the energy VAD) with its next scripted line.

use crate::domain::{Role, Turn};
use crate::legs::media_streams::{self, AppWriter, StartMeta, StreamMessage};
use crate::media::g711;
use crate::media::vad::{EnergyVad, VadConfig, VadEvent};
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;

/// One line the agent says.
#[derive(Debug, Clone)]
pub struct ScriptLine {
    /// What it says (sent as a `turn`).
    pub text: String,
    /// The speech, μ-law 8 kHz.
    pub audio: Arc<[u8]>,
    /// The confidence reported with the turn.
    pub confidence: f32,
}

/// A reply: what the caller is taken to have said, and the agent's answer.
#[derive(Debug, Clone)]
pub struct ScriptReply {
    /// Transcript of the caller's utterance (sent as a user `turn`).
    pub caller_said: String,
    /// The agent's line.
    pub line: ScriptLine,
    /// Extension events sent before the answer (`tool`, `customer`, `intent`, …).
    pub events: Vec<serde_json::Value>,
}

/// The whole script.
#[derive(Debug, Clone)]
pub struct AgentScript {
    /// Said as soon as the stream starts.
    pub greeting: ScriptLine,
    /// Said one per caller utterance, in order.
    pub replies: Vec<ScriptReply>,
    /// Utterance detection.
    pub vad: VadConfig,
    /// Send `clear` when the caller talks over the agent (agent-side barge-in).
    pub clear_on_barge_in: bool,
}

/// What one connection saw.
#[derive(Debug, Clone, Default)]
pub struct AgentSession {
    /// The `start` received.
    pub start: Option<StartMeta>,
    /// Every inbound audio byte, in order.
    pub received_audio: Vec<u8>,
    /// Inbound `media` messages.
    pub media_messages: usize,
    /// Marks that came back, in order.
    pub marks_returned: Vec<String>,
    /// DTMF digits received.
    pub dtmf: Vec<char>,
    /// Lines spoken (greeting included).
    pub lines_spoken: usize,
    /// Whether `stop` arrived before the socket closed.
    pub got_stop: bool,
    /// Supervisors' hints received (`supervisor_hint`).
    pub hints: Vec<crate::domain::SupervisorHint>,
    /// Handoff results received (`handoff_result`).
    pub handoff_results: Vec<crate::domain::HandoffResult>,
}

/// A running scripted agent.
pub struct ScriptedAgent {
    /// Where it listens.
    pub addr: SocketAddr,
    sessions: Arc<(Mutex<Vec<AgentSession>>, Notify)>,
    task: tokio::task::JoinHandle<()>,
}

impl ScriptedAgent {
    /// Starts listening on 127.0.0.1 (a free port).
    pub async fn start(script: AgentScript) -> std::io::Result<ScriptedAgent> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let sessions: Arc<(Mutex<Vec<AgentSession>>, Notify)> = Arc::default();
        let script = Arc::new(script);
        let shared = Arc::clone(&sessions);
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let script = Arc::clone(&script);
                let shared = Arc::clone(&shared);
                tokio::spawn(async move {
                    let session = serve(tcp, &script).await;
                    shared
                        .0
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(session);
                    shared.1.notify_waiters();
                });
            }
        });
        Ok(ScriptedAgent {
            addr,
            sessions,
            task,
        })
    }

    /// The agent's WebSocket URL.
    pub fn url(&self) -> String {
        format!("ws://{}/agent", self.addr)
    }

    /// Finished sessions so far.
    pub fn sessions(&self) -> Vec<AgentSession> {
        self.sessions
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Finished sessions so far, forgotten by the agent (a long soak keeps its memory flat).
    pub fn take_sessions(&self) -> Vec<AgentSession> {
        std::mem::take(&mut *self.sessions.0.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Waits until `count` sessions have finished (or `timeout`).
    pub async fn wait_sessions(&self, count: usize, timeout: Duration) -> Vec<AgentSession> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.sessions.1.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let done = self.sessions();
            if done.len() >= count {
                return done;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.sessions();
            }
        }
    }
}

impl Drop for ScriptedAgent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(tcp: tokio::net::TcpStream, script: &AgentScript) -> AgentSession {
    let mut session = AgentSession::default();
    let Ok(ws) =
        tokio_tungstenite::accept_async_with_config(tcp, Some(crate::legs::ws_config())).await
    else {
        return session;
    };
    let (mut sink, mut stream) = ws.split();
    let mut writer = AppWriter::new("");
    let mut vad = EnergyVad::new(script.vad);
    let mut pcm = Vec::new();
    let mut next_reply = 0;
    let mut pending_mark: Option<String> = None;
    while let Some(Ok(msg)) = stream.next().await {
        let Message::Text(text) = msg else {
            if matches!(msg, Message::Close(_)) {
                break;
            }
            continue;
        };
        let Ok(parsed) = media_streams::parse(&text, 1 << 20) else {
            continue;
        };
        let mut to_say: Option<(Option<&str>, &ScriptLine)> = None;
        let mut extra: &[serde_json::Value] = &[];
        match parsed {
            StreamMessage::Start {
                start, stream_sid, ..
            } => {
                writer = AppWriter::new(stream_sid);
                session.start = Some(start);
                to_say = Some((None, &script.greeting));
            }
            StreamMessage::Media { media, .. } => {
                let Ok(bytes) = media_streams::decode_payload(&media) else {
                    continue;
                };
                session.media_messages += 1;
                g711::decode_ulaw(&bytes, &mut pcm);
                session.received_audio.extend_from_slice(&bytes);
                let event = vad.process(&pcm);
                let barge_in = event == Some(VadEvent::SpeechStarted)
                    && pending_mark.is_some()
                    && script.clear_on_barge_in;
                if barge_in
                    && sink
                        .send(Message::Text(writer.clear().into()))
                        .await
                        .is_err()
                {
                    break;
                }
                if event == Some(VadEvent::SpeechEnded)
                    && let Some(reply) = script.replies.get(next_reply)
                {
                    next_reply += 1;
                    to_say = Some((Some(reply.caller_said.as_str()), &reply.line));
                    extra = &reply.events;
                }
            }
            StreamMessage::Mark { mark, .. } => {
                if pending_mark.as_deref() == Some(mark.name.as_str()) {
                    pending_mark = None;
                }
                session.marks_returned.push(mark.name);
            }
            StreamMessage::Dtmf { dtmf, .. } => {
                if let Ok(d) = media_streams::parse_digit(&dtmf.digit) {
                    session.dtmf.push(d);
                }
            }
            StreamMessage::Stop { .. } => {
                session.got_stop = true;
                break;
            }
            StreamMessage::SupervisorHint {
                supervisor_hint, ..
            } => session.hints.push(supervisor_hint),
            StreamMessage::HandoffResult { handoff_result, .. } => {
                session.handoff_results.push(handoff_result)
            }
            _ => {}
        }
        let mut failed = false;
        for event in extra {
            if sink
                .send(Message::Text(event.to_string().into()))
                .await
                .is_err()
            {
                failed = true;
            }
        }
        if failed {
            break;
        }
        if let Some((caller_said, line)) = to_say {
            let mark = format!("line-{}", session.lines_spoken);
            if speak(&mut sink, &writer, caller_said, line, &mark)
                .await
                .is_err()
            {
                break;
            }
            session.lines_spoken += 1;
            pending_mark = Some(mark);
        }
    }
    let _ = sink.close().await;
    session
}

async fn speak<S>(
    sink: &mut S,
    writer: &AppWriter,
    caller_said: Option<&str>,
    line: &ScriptLine,
    mark: &str,
) -> Result<(), S::Error>
where
    S: futures_util::Sink<Message> + Unpin,
{
    if let Some(said) = caller_said {
        let turn = Turn {
            role: Role::User,
            content: said.to_string(),
            confidence: None,
        };
        sink.send(Message::Text(writer.turn(turn).into())).await?;
    }
    let turn = Turn {
        role: Role::Agent,
        content: line.text.clone(),
        confidence: Some(line.confidence),
    };
    sink.send(Message::Text(writer.turn(turn).into())).await?;
    // Like a streaming TTS agent: the whole line in a burst, the gateway paces it.
    for chunk in line.audio.chunks(160) {
        sink.feed(Message::Text(writer.media(chunk).into())).await?;
    }
    sink.send(Message::Text(writer.mark(mark).into())).await
}
