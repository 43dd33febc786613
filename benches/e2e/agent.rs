//! The AI agent side of the load: a WebSocket server speaking the provider
//! side of Media Streams (what warmline dials). Per call it stamps every frame
//! it receives and, from the caller's first frame on, talks back with paced
//! numbered frames — except on calls whose `callSid` starts with
//! [`ESCALATE_PREFIX`]: those it escalates to a human at once and stays silent.

use crate::rtp_peer::{Arrivals, micros};
use crate::stats::{Stamps, number_of, numbered_frame};
use futures_util::{SinkExt, StreamExt};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use warmline::legs::media_streams::{self, AppWriter, StreamMessage};

/// Calls the agent hands to a human straight away (the mixed mode).
pub const ESCALATE_PREFIX: &str = "CAmix";

/// What the agent saw on one call.
pub struct AgentLog {
    /// The call's `callSid` (the SIP Call-ID for SIP callers).
    pub call: String,
    /// Frames from the caller.
    pub received: Arrivals,
    /// Frames it sent.
    pub sent: Stamps,
}

/// Starts the agent; returns its URL and the per-call logs (sent at each call's end).
pub async fn start(origin: Instant, frames: u32) -> (String, mpsc::Receiver<AgentLog>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind agent");
    let url = format!("ws://{}/agent", listener.local_addr().expect("addr"));
    let (tx, rx) = mpsc::channel(8192);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let _ = tcp.set_nodelay(true);
            let tx = tx.clone();
            tokio::spawn(async move {
                let Ok(ws) = tokio_tungstenite::accept_async_with_config(
                    tcp,
                    Some(warmline::legs::ws_config()),
                )
                .await
                else {
                    return;
                };
                let (sink, mut stream) = ws.split();
                let mut sink = Some(sink);
                let mut app = None;
                let mut log = AgentLog {
                    call: String::new(),
                    received: Vec::new(),
                    sent: Vec::new(),
                };
                let mut talker = None;
                while let Some(Ok(msg)) = stream.next().await {
                    let Message::Text(text) = msg else { continue };
                    match media_streams::parse(&text, 1 << 20) {
                        Ok(StreamMessage::Start {
                            start, stream_sid, ..
                        }) => {
                            log.call = start.call_sid.clone();
                            if log.call.starts_with(ESCALATE_PREFIX) {
                                let escalate = serde_json::json!({
                                    "event": "escalate",
                                    "streamSid": stream_sid,
                                    "escalate": {"trigger": "customer_request", "description": "benchmark call", "urgency": "standard"}
                                });
                                if let Some(s) = sink.as_mut() {
                                    let _ =
                                        s.send(Message::Text(escalate.to_string().into())).await;
                                }
                                continue;
                            }
                            app = Some(AppWriter::new(stream_sid));
                        }
                        Ok(StreamMessage::Media { media, .. }) => {
                            let at = micros(origin);
                            let payload = media_streams::decode_payload(&media).unwrap_or_default();
                            let number = number_of(&payload).filter(|&n| n < frames);
                            log.received.push((number, at));
                            if let (Some(sink), Some(app)) = (sink.take(), app.clone()) {
                                talker = Some(tokio::spawn(talk(sink, app, frames, origin)));
                            }
                        }
                        Ok(StreamMessage::Stop { .. }) => break,
                        _ => {}
                    }
                }
                if let Some(t) = talker {
                    log.sent = t.await.unwrap_or_default();
                }
                let _ = tx.send(log).await;
            });
        }
    });
    (url, rx)
}

type Sink = futures_util::stream::SplitSink<
    tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    Message,
>;

async fn talk(mut sink: Sink, app: AppWriter, frames: u32, origin: Instant) -> Stamps {
    let mut sent = Vec::with_capacity(frames as usize);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for n in 0..frames {
        tick.tick().await;
        sent.push((n, micros(origin)));
        if sink
            .send(Message::Text(app.media(&numbered_frame(n)).into()))
            .await
            .is_err()
        {
            break;
        }
    }
    sent
}
