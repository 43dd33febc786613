//! Real-socket test peers: a raw AI agent server and a raw Twilio-like caller
//! whose every message the test controls and observes.
#![allow(dead_code)]

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use warmline::config::Config;
use warmline::gateway::RunningGateway;
use warmline::legs::media_streams::{self, MediaFormat, ProviderWriter, StartMeta, StreamMessage};

/// Generous bound for anything that should happen "now" on loopback.
pub const SOON: Duration = Duration::from_secs(5);

/// Starts a gateway on a free loopback port talking to `agent_url`.
pub async fn gateway(agent_url: &str, tweak: impl FnOnce(&mut Config)) -> RunningGateway {
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".into();
    config.agent.url = agent_url.into();
    config.agent.connect_timeout_ms = 2000;
    let dir = tempfile::tempdir().expect("tempdir").keep();
    config.store.path = dir.join("warmline.db");
    tweak(&mut config);
    RunningGateway::start(config).await.expect("gateway starts")
}

/// One side of a WebSocket, raw.
pub struct Peer<S> {
    pub sink: SplitSink<WebSocketStream<S>, Message>,
    pub stream: SplitStream<WebSocketStream<S>>,
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> Peer<S> {
    pub async fn send(&mut self, text: impl Into<String>) {
        self.sink
            .send(Message::Text(text.into().into()))
            .await
            .expect("send");
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.sink
            .send(Message::Binary(bytes.into()))
            .await
            .expect("send binary");
    }

    /// Next raw message, or `None` on timeout/close.
    pub async fn next_raw(&mut self, within: Duration) -> Option<Message> {
        match tokio::time::timeout(within, self.stream.next()).await {
            Ok(Some(Ok(m))) => Some(m),
            _ => None,
        }
    }

    /// Next parsed Media Streams message, skipping pings; `None` on timeout or close.
    pub async fn next_msg(&mut self, within: Duration) -> Option<StreamMessage> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_raw(left).await? {
                Message::Text(t) => {
                    return Some(media_streams::parse(&t, 1 << 20).expect("valid message"));
                }
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    /// Reads until the socket closes; returns the close code and what came before.
    pub async fn until_closed(&mut self, within: Duration) -> (Option<u16>, Vec<StreamMessage>) {
        let deadline = tokio::time::Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.stream.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    if let Ok(m) = media_streams::parse(&t, 1 << 20) {
                        seen.push(m);
                    }
                }
                Ok(Some(Ok(Message::Close(frame)))) => {
                    return (frame.map(|f| u16::from(f.code)), seen);
                }
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(_))) | Ok(None) => return (None, seen),
                Err(_) => panic!(
                    "socket still open after {within:?}; saw {} messages",
                    seen.len()
                ),
            }
        }
    }

    /// Collects audio bytes from `media` messages until `bytes` arrived.
    pub async fn audio(&mut self, bytes: usize, within: Duration) -> Vec<u8> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + within;
        while out.len() < bytes {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_msg(left).await {
                Some(StreamMessage::Media { media, .. }) => {
                    out.extend(media_streams::decode_payload(&media).expect("base64"))
                }
                Some(_) => {}
                None => break,
            }
        }
        out
    }
}

pub type AgentPeer = Peer<TcpStream>;
pub type CallerPeer = Peer<MaybeTlsStream<TcpStream>>;

/// A WebSocket server standing in for an AI agent; each connection is handed to the test.
pub struct RawAgent {
    pub url: String,
    rx: mpsc::Receiver<AgentPeer>,
}

impl RawAgent {
    pub async fn start() -> RawAgent {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("ws://{}/agent", listener.local_addr().expect("addr"));
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let _ = tcp.set_nodelay(true);
                let tx = tx.clone();
                tokio::spawn(async move {
                    if let Ok(ws) = tokio_tungstenite::accept_async(tcp).await {
                        let (sink, stream) = ws.split();
                        let _ = tx.send(Peer { sink, stream }).await;
                    }
                });
            }
        });
        RawAgent { url, rx }
    }

    /// The next call's agent connection, after its `connected` and `start`.
    pub async fn accept(&mut self) -> (AgentPeer, StartMeta, String) {
        let mut peer = tokio::time::timeout(SOON, self.rx.recv())
            .await
            .expect("gateway dials the agent")
            .expect("agent server alive");
        let first = peer.next_msg(SOON).await.expect("connected");
        assert!(
            matches!(first, StreamMessage::Connected { .. }),
            "first message is connected"
        );
        match peer.next_msg(SOON).await.expect("start") {
            StreamMessage::Start {
                start, stream_sid, ..
            } => (peer, start, stream_sid),
            other => panic!("expected start, got {other:?}"),
        }
    }
}

/// A raw caller: connected to the gateway, nothing sent yet.
pub async fn raw_caller(url: &str) -> CallerPeer {
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect to gateway");
    let (sink, stream) = ws.split();
    Peer { sink, stream }
}

/// A caller that has sent `connected` and a valid `start`; returns its writer too.
pub async fn started_caller(url: &str, call_sid: &str) -> (CallerPeer, ProviderWriter) {
    let mut caller = raw_caller(url).await;
    let mut writer = ProviderWriter::new(format!("MZ{call_sid}"));
    caller.send(writer.connected()).await;
    caller.send(writer.start(start_meta(call_sid))).await;
    (caller, writer)
}

/// Valid `start` metadata for a call.
pub fn start_meta(call_sid: &str) -> StartMeta {
    let mut custom_parameters = std::collections::BTreeMap::new();
    custom_parameters.insert("customerId".to_string(), "C-1042".to_string());
    StartMeta {
        account_sid: "ACtest".into(),
        stream_sid: String::new(),
        call_sid: call_sid.into(),
        tracks: vec!["inbound".into()],
        custom_parameters,
        media_format: MediaFormat::default(),
    }
}

/// Deterministic pseudo-random bytes (distinct per seed).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 56) as u8
        })
        .collect()
}

/// μ-law frames of loud speech-like audio (a 440 Hz tone at -10 dBFS).
pub fn loud_frames(frames: usize) -> Vec<u8> {
    (0..frames * 160)
        .map(|i| {
            let t = i as f64 / 8000.0;
            warmline::media::g711::linear_to_ulaw(
                (10_000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16,
            )
        })
        .collect()
}

/// An AI agent that greets, then answers the caller's request for a person.
pub fn ai_script_requesting_person() -> warmline::sim::agent::AgentScript {
    use std::sync::Arc;
    use warmline::sim::agent::{ScriptLine, ScriptReply};
    let audio =
        warmline::assets::ulaw(warmline::assets::DEMO_REPLY_WAVS[0], "reply").expect("asset");
    let line = |text: &str| ScriptLine {
        text: text.into(),
        audio: Arc::from(&audio[..8000]),
        confidence: 0.9,
    };
    let mut s = warmline::demo::demo_script().expect("script");
    s.greeting = line("Thanks for calling Acme. How can I help?");
    s.replies = vec![ScriptReply {
        caller_said: "I want a real person.".into(),
        line: line("Of course."),
        events: vec![],
    }];
    s.clear_on_barge_in = false;
    s
}

/// 2 s quiet, 1 s of "speech" (the request for a person), 1.5 s quiet, then the
/// caller keeps talking (distinct noise) for `seconds`.
pub fn caller_requesting_person(seconds: usize) -> Vec<u8> {
    let silence = warmline::media::g711::ULAW_SILENCE;
    let mut out = vec![silence; 16_000];
    out.extend(loud_frames(50));
    out.extend(vec![silence; 12_000]);
    out.extend(noise(8000 * seconds, 4242));
    out
}

/// A human agent known to the gateway.
pub fn agent_seed(id: &str) -> warmline::config::AgentSeed {
    warmline::config::AgentSeed {
        id: id.into(),
        name: format!("Agent {id}"),
        token: format!("{id}-secret-token"),
        skills: vec![],
        sip_uri: String::new(),
        supervisor: false,
        consult_seconds: 0,
        dtmf_after_answer: String::new(),
        voicemail_after_ms: 0,
        hours: Default::default(),
    }
}

/// A simulated console for `id` that answers after `answer_after`.
pub fn console(base: &str, id: &str, answer_after: Duration) -> warmline::sim::human::HumanOptions {
    warmline::sim::human::HumanOptions {
        answer_after,
        ..warmline::sim::human::HumanOptions::new(base, id, &format!("{id}-secret-token"))
    }
}

/// The handoff steps recorded on a timeline, in order.
pub fn handoff_steps(t: &warmline::call::timeline::Timeline) -> Vec<(String, Option<String>)> {
    t.events
        .iter()
        .filter_map(|e| match &e.kind {
            warmline::call::timeline::TimelineKind::HandoffStep { step, agent, .. } => {
                Some((step.as_str().to_string(), agent.clone()))
            }
            _ => None,
        })
        .collect()
}

/// The detail of the first handoff step named `step`.
pub fn step_detail(t: &warmline::call::timeline::Timeline, step: &str) -> Option<String> {
    t.events.iter().find_map(|e| match &e.kind {
        warmline::call::timeline::TimelineKind::HandoffStep {
            step: s, detail, ..
        } if s.as_str() == step => detail.clone(),
        _ => None,
    })
}

/// One plain HTTP/1.1 request over a real socket; returns the status and body.
pub async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    json: Option<&str>,
) -> (u16, String) {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let body = json.unwrap_or_default();
    let content = match json {
        Some(b) => format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ),
        None => String::new(),
    };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}{content}Connection: close\r\n\r\n{body}"
    );
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        s.write_all(request.as_bytes()).expect("write");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read");
        let status = out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = out
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    })
    .await
    .expect("request task")
}

/// The refused messages a call's timeline kept (`ProtocolError` events), in order.
pub fn refused_messages(t: &warmline::call::timeline::Timeline) -> Vec<String> {
    t.events
        .iter()
        .filter_map(|e| match &e.kind {
            warmline::call::timeline::TimelineKind::ProtocolError { error, .. } => {
                Some(error.clone())
            }
            _ => None,
        })
        .collect()
}

/// μ-law bytes as PCM.
pub fn pcm(ulaw: &[u8]) -> Vec<i16> {
    let mut out = Vec::new();
    warmline::media::g711::decode_ulaw(ulaw, &mut out);
    out
}

/// A real SIP phone: baresip with PCMU, auto-answer, `mic` (8 kHz PCM) as its
/// microphone, and a recording of what it hears in `dir/recordings`.
/// `dial`: a SIP URI to call at once (else it waits for calls); `extra`: more
/// baresip arguments (e.g. `-t 40` to hang up and quit after 40 s).
pub fn baresip_phone(
    dir: &std::path::Path,
    user: &str,
    sip_port: u16,
    mic: &[i16],
    dial: Option<&str>,
    extra: &[&str],
) -> std::process::Child {
    use warmline::media::wav::WavSink;
    let mic_path = dir.join("mic.wav");
    let mut sink = WavSink::create(&mic_path, 8000).expect("mic wav");
    sink.write(mic).expect("mic wav");
    sink.finalize().expect("mic wav");
    let recordings = dir.join("recordings");
    std::fs::create_dir_all(&recordings).expect("recordings dir");
    std::fs::write(
        dir.join("config"),
        format!(
            "sip_listen 127.0.0.1:{sip_port}\nnet_interface 127.0.0.1\naudio_player aufile,{rec}/ignored.wav\n\
audio_source aufile,{mic}\nmodule_path /usr/lib/baresip/modules\nmodule g711.so\nmodule aufile.so\n\
module sndfile.so\nmodule_tmp uuid.so\nmodule_tmp account.so\nmodule_app menu.so\nsnd_path {rec}\n",
            rec = recordings.display(),
            mic = mic_path.display()
        ),
    )
    .expect("baresip config");
    std::fs::write(
        dir.join("accounts"),
        format!("<sip:{user}@127.0.0.1:{sip_port}>;regint=0;answermode=auto;audio_codecs=pcmu\n"),
    )
    .expect("baresip accounts");
    let mut cmd = std::process::Command::new("baresip");
    cmd.args(["-f", &dir.to_string_lossy()]);
    if let Some(uri) = dial {
        cmd.args(["-e", &format!("/dial {uri}")]);
    }
    cmd.args(extra);
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("baresip is installed (apt-get install baresip-core)")
}

/// What a [`baresip_phone`] heard (its `-dec.wav` dump), 8 kHz.
pub fn baresip_heard(dir: &std::path::Path) -> Vec<i16> {
    let path = std::fs::read_dir(dir.join("recordings"))
        .expect("recordings dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.to_string_lossy().ends_with("-dec.wav"))
        .expect("the phone recorded what it heard");
    warmline::media::wav::read_mono_file(&path, 8000).expect("readable recording")
}

/// SIP on a free loopback port, RTP from the 100 ports at `ports`.
pub fn sip_gateway_config(c: &mut Config, ports: u16) {
    c.sip.listen = "127.0.0.1:0".into();
    c.sip.rtp_port_min = ports;
    c.sip.rtp_port_max = ports + 99;
}

/// Waits for `count` calls to finish on `gw` and asserts every one ended with
/// the human agent hanging up after ringing, answer, whisper and merge.
pub async fn wait_handed_over(
    gw: &RunningGateway,
    count: usize,
) -> Vec<std::sync::Arc<warmline::call::timeline::Timeline>> {
    let done = gw
        .shared
        .registry
        .wait_finished(count, Duration::from_secs(10))
        .await;
    assert!(
        done.len() >= count,
        "{} of {count} calls finished",
        done.len()
    );
    for t in &done {
        assert_eq!(
            t.end_reason(),
            Some(&warmline::call::timeline::EndReason::HumanAgentHangup),
            "{:#?}",
            handoff_steps(t)
        );
        assert_handed_over(t);
    }
    done
}

/// Asserts the call went through ringing, answered, whisper and merge.
pub fn assert_handed_over(t: &warmline::call::timeline::Timeline) {
    let steps: Vec<String> = handoff_steps(t).into_iter().map(|(s, _)| s).collect();
    for step in ["ringing", "answered", "whisper_started", "merged"] {
        assert!(steps.iter().any(|s| s == step), "missing {step}: {steps:?}");
    }
}

/// `seconds` of the whisper exactly as sent toward the agent, from its first
/// loud sample in the call's agent_heard.wav (whisper.wav is the last render,
/// which may differ slightly). The start is not on a frame boundary: see
/// [`leaked_whisper_frames`] for exact-frame checks.
pub fn whisper_sent_to_agent(rec_dir: &std::path::Path, call_id: &str, seconds: usize) -> Vec<i16> {
    let sent =
        warmline::media::wav::read_mono_file(&rec_dir.join(call_id).join("agent_heard.wav"), 8000)
            .expect("agent_heard.wav");
    let start = sent
        .iter()
        .position(|&x| x.unsigned_abs() > 500)
        .unwrap_or(0);
    sent[start..start + 8000 * seconds].to_vec()
}

/// (whisper start after the accept, gap between the whisper's last frame and
/// the caller's first) as the agent's console saw them.
pub fn whisper_start_and_merge_gap(h: &warmline::sim::human::HumanReport) -> (Duration, Duration) {
    let start = h
        .first_audio_at
        .zip(h.accepted_at)
        .map(|(a, b)| a.saturating_duration_since(b))
        .expect("accepted and heard audio");
    let gap = h
        .first_caller_frame_at
        .zip(h.last_whisper_frame_at)
        .map(|(c, w)| c.saturating_duration_since(w))
        .expect("heard the whisper and then the caller");
    (start, gap)
}

/// Whether a μ-law frame carries sound (RMS above -50 dBFS). Digital silence
/// comes in many byte patterns (0xFF and 0x7F are both zero, ±1 steps): such
/// frames are identical in any two recordings and prove nothing.
pub fn is_audible(frame: &[u8]) -> bool {
    let pcm = pcm(frame);
    let energy: f64 =
        pcm.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / pcm.len().max(1) as f64;
    energy.sqrt() > 100.0
}

/// How many 20 ms frames of `received` (μ-law, frame-aligned) are exact frames
/// of `whisper` (PCM from a recording, so its frame boundaries are unknown):
/// every one of the 160 alignments is tried and the worst count returned.
/// μ-law decode → encode is exact, so a leaked frame is found byte for byte.
pub fn leaked_whisper_frames(whisper: &[i16], received: &[u8]) -> usize {
    let mut ulaw = Vec::new();
    warmline::media::g711::encode_ulaw(whisper, &mut ulaw);
    (0..160)
        .map(|offset| {
            let frames: std::collections::HashSet<&[u8]> = ulaw[offset..]
                .chunks_exact(160)
                .filter(|f| is_audible(f))
                .collect();
            received
                .chunks_exact(160)
                .filter(|f| frames.contains(f))
                .count()
        })
        .max()
        .unwrap_or(0)
}

pub mod browser;

/// Cluster nodes "node-a" and "node-b" in this process, each on its own
/// (PostgreSQL URL, NATS URL), both dialing `ai_url` and knowing `agents`.
pub async fn two_nodes(
    ai_url: &str,
    (pg_a, nats_a): (&str, &str),
    (pg_b, nats_b): (&str, &str),
    agents: &[&str],
) -> (RunningGateway, RunningGateway) {
    let node = |name: &'static str, pg: String, nats: String| {
        let seeds: Vec<_> = agents.iter().map(|a| agent_seed(a)).collect();
        gateway(ai_url, move |c| {
            cluster::cluster_node_config(c, name, cluster::free_port(), &pg, &nats);
            c.routing.agents.extend(seeds);
        })
    };
    let a = node("node-a", pg_a.to_string(), nats_a.to_string()).await;
    let b = node("node-b", pg_b.to_string(), nats_b.to_string()).await;
    (a, b)
}

/// `warmline serve` (the binary built with these tests) on a free loopback
/// port, dialing `agent_url`, with its database in `dir`, `server_keys` added
/// to `[server]` and `tables` (more TOML tables) appended; returns once
/// `/healthz` answers 200.
pub async fn serve_process(
    dir: &std::path::Path,
    agent_url: &str,
    server_keys: &str,
    tables: &str,
) -> (std::process::Child, std::net::SocketAddr) {
    let port = cluster::free_port();
    serve_process_on(dir, port, agent_url, server_keys, "", tables).await
}

/// [`serve_process`] on `port`, with `store_keys` added to `[store]`; its
/// log goes to `dir/warmline.log`.
pub async fn serve_process_on(
    dir: &std::path::Path,
    port: u16,
    agent_url: &str,
    server_keys: &str,
    store_keys: &str,
    tables: &str,
) -> (std::process::Child, std::net::SocketAddr) {
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let config = dir.join("warmline.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"{addr}\"\ndrain_timeout_s = 30\n{server_keys}\n[agent]\nurl = \"{agent_url}\"\n\
             [store]\npath = \"{}\"\n{store_keys}\n[log]\nlevel = \"warn\"\n{tables}",
            dir.join("warmline.db").display()
        ),
    )
    .expect("config written");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_warmline"))
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(
            std::fs::File::create(dir.join("warmline.log"))
                .map_or_else(|_| std::process::Stdio::null(), std::process::Stdio::from),
        )
        .spawn()
        .expect("warmline serve starts");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if std::net::TcpStream::connect(addr).is_ok()
            && http(addr, "GET", "/healthz", None, None).await.0 == 200
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the gateway came up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (child, addr)
}
pub mod cluster;
pub mod realtime;

/// Fails unless `ctx` validates against docs/handoff-context.schema.json (the
/// seed-typed schema: `contactInfo` a string, `toolsUsed` records, enums…).
#[allow(dead_code)]
pub fn assert_matches_context_schema(ctx: &serde_json::Value) {
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../../docs/handoff-context.schema.json"))
            .expect("the schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(ctx)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "context breaks the schema: {errors:#?}\n{ctx:#}"
    );
}

/// Whether the far end closed `s` within `within` (a read returns 0 or an
/// error; anything it sends first, such as a 408, is read past).
pub fn closed_by_peer_within(s: &mut std::net::TcpStream, within: Duration) -> bool {
    use std::io::Read;
    s.set_read_timeout(Some(within)).expect("read timeout");
    let mut buf = [0u8; 2048];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// The id of the (first) call in progress on the gateway.
pub fn live_call_id(gw: &RunningGateway) -> String {
    gw.shared
        .registry
        .active()
        .first()
        .map(|c| c.call_id.clone())
        .expect("a live call")
}

/// Waits (up to `within`) until the call's caller stage satisfies `wanted`.
pub async fn wait_stage(
    gw: &RunningGateway,
    call_id: &str,
    within: Duration,
    wanted: impl Fn(Option<warmline::call::registry::CallerStage>) -> bool,
) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if wanted(gw.shared.registry.stage(call_id)) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}
