//! A local stand-in for the OpenAI Realtime API: a real WebSocket server that
//! speaks its event shapes, scripted as a sequence of steps (send an event,
//! wait for caller audio or for a client event, drop the socket), and that
//! records everything the gateway sent.

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

/// One step of the server's script.
#[derive(Debug, Clone)]
pub enum Step {
    /// Send this event.
    Send(Value),
    /// Send this text as is (e.g. malformed JSON).
    SendRaw(String),
    /// Wait until this much caller audio (ms of μ-law) was appended.
    WaitAudioMs(u64),
    /// Wait for a client event of this type.
    WaitFor(&'static str),
    /// Wait until this many client events of this type have arrived.
    WaitForCount(&'static str, usize),
    /// Pause.
    Sleep(u64),
    /// Drop the TCP connection without a close frame.
    Drop,
}

/// What the gateway sent.
#[derive(Debug, Default, Clone)]
pub struct RealtimeLog {
    /// The request line's path and query.
    pub path: String,
    /// Its Authorization header.
    pub authorization: Option<String>,
    /// Every client event except the audio appends, in order.
    pub events: Vec<Value>,
    /// The caller audio appended (decoded μ-law).
    pub appended: Vec<u8>,
}

impl RealtimeLog {
    /// The first client event of this type.
    pub fn first(&self, kind: &str) -> Option<&Value> {
        self.events.iter().find(|e| e["type"] == kind)
    }
}

/// The running fake.
pub struct FakeRealtime {
    addr: std::net::SocketAddr,
    log: Arc<Mutex<RealtimeLog>>,
}

impl FakeRealtime {
    /// Serves one connection at a time, each running `script`.
    pub async fn start(script: Vec<Step>) -> FakeRealtime {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let log = Arc::new(Mutex::new(RealtimeLog::default()));
        let shared = Arc::clone(&log);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let log = Arc::clone(&shared);
                let script = script.clone();
                tokio::spawn(serve(tcp, script, log));
            }
        });
        FakeRealtime { addr, log }
    }

    /// The URL to configure as `realtime.url`.
    pub fn url(&self) -> String {
        format!("ws://{}/v1/realtime", self.addr)
    }

    /// A copy of what was received so far.
    pub fn log(&self) -> RealtimeLog {
        self.log.lock().expect("log").clone()
    }
}

// The handshake callback's error type is tungstenite's (large) response.
#[allow(clippy::result_large_err)]
async fn serve(tcp: tokio::net::TcpStream, script: Vec<Step>, log: Arc<Mutex<RealtimeLog>>) {
    let header_log = Arc::clone(&log);
    let callback = move |req: &tokio_tungstenite::tungstenite::handshake::server::Request, resp| {
        let mut l = header_log.lock().expect("log");
        l.path = req.uri().to_string();
        l.authorization = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Ok(resp)
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async(tcp, callback).await else {
        return;
    };
    let (mut sink, mut stream) = ws.split();
    let reader_log = Arc::clone(&log);
    let reader = tokio::spawn(async move {
        while let Some(Ok(Message::Text(text))) = stream.next().await {
            let Ok(v) = serde_json::from_str::<Value>(&text) else {
                continue;
            };
            let mut l = reader_log.lock().expect("log");
            if v["type"] == "input_audio_buffer.append" {
                if let Some(bytes) = v["audio"]
                    .as_str()
                    .and_then(|a| warmline::legs::media_streams::decode_base64(a).ok())
                {
                    l.appended.extend(bytes);
                }
            } else {
                l.events.push(v);
            }
        }
    });
    for step in script {
        match step {
            Step::Send(v) => {
                if sink
                    .send(Message::Text(v.to_string().into()))
                    .await
                    .is_err()
                {
                    break;
                }
            }
            Step::SendRaw(t) => {
                if sink.send(Message::Text(t.into())).await.is_err() {
                    break;
                }
            }
            Step::WaitAudioMs(ms) => {
                wait(&log, |l| l.appended.len() as u64 >= ms * 8).await;
            }
            Step::WaitFor(kind) => {
                wait(&log, |l| l.first(kind).is_some()).await;
            }
            Step::WaitForCount(kind, n) => {
                wait(&log, |l| {
                    l.events.iter().filter(|e| e["type"] == kind).count() >= n
                })
                .await;
            }
            Step::Sleep(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
            Step::Drop => {
                reader.abort();
                return; // sink and stream dropped: the TCP connection closes
            }
        }
    }
    // Script done: stay connected until the gateway hangs up.
    let _ = reader.await;
}

async fn wait(log: &Mutex<RealtimeLog>, done: impl Fn(&RealtimeLog) -> bool) {
    for _ in 0..3000 {
        if done(&log.lock().expect("log")) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `response.audio.delta` events carrying `audio` (μ-law) for `item`, in 100 ms pieces.
pub fn audio_deltas(item: &str, audio: &[u8]) -> Vec<Step> {
    audio
        .chunks(800)
        .map(|c| {
            Step::Send(serde_json::json!({
                "type": "response.audio.delta",
                "response_id": "resp_1",
                "item_id": item,
                "output_index": 0,
                "content_index": 0,
                "delta": warmline::legs::media_streams::encode_payload(c),
            }))
        })
        .collect()
}
