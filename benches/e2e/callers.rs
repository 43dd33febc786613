//! The caller side of the load: a Media Streams caller over WebSocket, and a
//! SIP caller (a minimal UAC over UDP: INVITE, ACK, BYE) with RTP media.

use crate::rtp_peer::{self, Arrivals, Outgoing, micros};
use crate::stats::{Stamps, number_of, numbered_frame};
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio_tungstenite::tungstenite::Message;
use warmline::legs::media_streams::{self, MediaFormat, ProviderWriter, StartMeta, StreamMessage};
use warmline::legs::sip::message::{SipMessage, request};

/// What one caller sent and received.
pub struct CallerLog {
    /// The call's `callSid` (SIP Call-ID for SIP calls).
    pub call: String,
    /// Frames sent.
    pub sent: Stamps,
    /// Frames received.
    pub received: Arrivals,
    /// INVITE → 200 OK, µs (SIP only).
    pub setup_us: Option<f64>,
}

/// A Media Streams caller: connects, starts at `start`, sends `frames` frames
/// numbered from `base` (fewer if the gateway ends the call first). `call` is
/// its `callSid`.
pub async fn media_streams(
    url: String,
    call: String,
    base: u32,
    frames: u32,
    start: tokio::time::Instant,
    origin: Instant,
) -> Result<CallerLog, String> {
    let n = &call;
    let (ws, _) = tokio_tungstenite::connect_async_with_config(
        url.as_str(),
        Some(warmline::legs::ws_config()),
        true,
    )
    .await
    .map_err(|e| format!("caller {n} cannot connect: {e}"))?;
    let (mut sink, mut stream) = ws.split();
    let receiver = tokio::spawn(async move {
        let mut got = Vec::new();
        while let Some(Ok(Message::Text(text))) = stream.next().await {
            if let Ok(StreamMessage::Media { media, .. }) = media_streams::parse(&text, 1 << 20) {
                let at = micros(origin);
                let payload = media_streams::decode_payload(&media).unwrap_or_default();
                got.push((number_of(&payload).filter(|&x| x < frames), at));
            }
        }
        got
    });
    let mut writer = ProviderWriter::new(format!("MZbench{n}"));
    let meta = StartMeta {
        account_sid: "ACbench".into(),
        stream_sid: String::new(),
        call_sid: call.clone(),
        tracks: vec!["inbound".into()],
        custom_parameters: Default::default(),
        media_format: MediaFormat::default(),
    };
    for text in [writer.connected(), writer.start(meta)] {
        sink.send(Message::Text(text.into()))
            .await
            .map_err(|e| e.to_string())?;
    }
    let mut sent = Vec::with_capacity(frames as usize);
    let mut tick = tokio::time::interval_at(start, Duration::from_millis(20));
    for seq in base..base + frames {
        tick.tick().await;
        sent.push((seq, micros(origin)));
        let msg = Message::Text(writer.media(&numbered_frame(seq)).into());
        if sink.send(msg).await.is_err() {
            break; // the call ended (e.g. the human agent hung up)
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = sink
        .send(Message::Text(writer.stop("ACbench", &call).into()))
        .await;
    let _ = sink.close().await;
    let received = tokio::time::timeout(Duration::from_secs(3), receiver)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    Ok(CallerLog {
        call,
        sent,
        received,
        setup_us: None,
    })
}

/// An established SIP call, ready to send media.
pub struct SipCall {
    /// The Call-ID.
    pub call: String,
    sip: UdpSocket,
    gateway: SocketAddr,
    rtp: Arc<UdpSocket>,
    remote_rtp: SocketAddr,
    from: String,
    to: String,
    /// INVITE → 200 OK, µs.
    pub setup_us: f64,
}

/// Calls the gateway at `gateway` offering `codec`; returns once the 200 is ACKed.
/// The Call-ID (the AI agent's `callSid`) starts with `call_prefix`.
pub async fn sip_invite(
    gateway: SocketAddr,
    n: usize,
    codec: &Outgoing,
    call_prefix: &str,
) -> Result<SipCall, String> {
    let sip = UdpSocket::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let rtp = UdpSocket::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let local = sip.local_addr().map_err(|e| e.to_string())?;
    let rtp_port = rtp.local_addr().map_err(|e| e.to_string())?.port();
    let call = format!("{call_prefix}bench-{n}-{}@127.0.0.1", local.port());
    let from = format!("<sip:bench{n}@127.0.0.1>;tag=b{n}");
    let uri = format!("sip:ai@{gateway}");
    let invite = request(
        "INVITE",
        &uri,
        "UDP",
        local,
        &format!("inv{n}"),
        &from,
        &format!("<{uri}>"),
        &call,
        1,
    )
    .with("Contact", format!("<sip:bench{n}@{local}>"))
    .with_body(
        "application/sdp",
        codec.sdp(rtp_port, n as u64).into_bytes(),
    );
    let t0 = Instant::now();
    sip.send_to(&invite.to_bytes(), gateway)
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 8192];
    let ok = loop {
        let (len, _) = tokio::time::timeout(Duration::from_secs(5), sip.recv_from(&mut buf))
            .await
            .map_err(|_| format!("call {n}: no final answer to the INVITE"))?
            .map_err(|e| e.to_string())?;
        let Ok(msg) = SipMessage::parse(&buf[..len]) else {
            continue;
        };
        match msg.code() {
            Some(200) => break msg,
            Some(c) if c >= 300 => return Err(format!("call {n}: INVITE answered {c}")),
            _ => continue,
        }
    };
    let setup_us = t0.elapsed().as_secs_f64() * 1e6;
    let to = ok.header("To").unwrap_or("").to_string();
    let remote_rtp = warmline::legs::sip::sdp::negotiate(&ok.body)
        .map_err(|e| format!("call {n}: bad SDP answer: {e}"))?
        .remote;
    let ack = request(
        "ACK",
        &uri,
        "UDP",
        local,
        &format!("ack{n}"),
        &from,
        &to,
        &call,
        1,
    );
    sip.send_to(&ack.to_bytes(), gateway)
        .await
        .map_err(|e| e.to_string())?;
    Ok(SipCall {
        call,
        sip,
        gateway,
        rtp: Arc::new(rtp),
        remote_rtp,
        from,
        to,
        setup_us,
    })
}

impl SipCall {
    /// Sends numbered PCMU frames `base..base + frames` from `start` until the
    /// gateway hangs up with a BYE (answered 200), receiving meanwhile the
    /// numbered frames `0..frames` of the other side.
    pub async fn run_until_bye(
        self,
        base: u32,
        frames: u32,
        start: tokio::time::Instant,
        origin: Instant,
    ) -> CallerLog {
        let (hung_up_tx, hung_up) = tokio::sync::watch::channel(false);
        let after_hangup = |mut rx: tokio::sync::watch::Receiver<bool>, linger: Duration| async move {
            let _ = rx.wait_for(|&b| b).await;
            tokio::time::sleep(linger).await;
        };
        let last = start + Duration::from_millis(20 * u64::from(frames) + 1000);
        let watcher = async {
            let _ = tokio::time::timeout_at(last, answer_bye(&self.sip)).await;
            let _ = hung_up_tx.send(true);
        };
        let receiver = rtp_peer::receive_until(
            Arc::clone(&self.rtp),
            after_hangup(hung_up.clone(), Duration::from_millis(300)),
            0..frames,
            origin,
        );
        let sender = rtp_peer::send_until(
            Arc::clone(&self.rtp),
            self.remote_rtp,
            Outgoing::NumberedPcmu,
            base..base + frames,
            start,
            origin,
            after_hangup(hung_up.clone(), Duration::ZERO),
        );
        let ((), sent, received) = tokio::join!(watcher, sender, receiver);
        CallerLog {
            call: self.call,
            sent,
            received,
            setup_us: Some(self.setup_us),
        }
    }

    /// Sends `frames` of `out` from `start` while receiving; then BYE.
    pub async fn run(
        self,
        out: Outgoing,
        frames: u32,
        start: tokio::time::Instant,
        origin: Instant,
    ) -> CallerLog {
        let until = start + Duration::from_millis(20 * u64::from(frames) + 400);
        let receiver = tokio::spawn(rtp_peer::receive(
            Arc::clone(&self.rtp),
            until,
            frames,
            origin,
        ));
        let sent = rtp_peer::send(
            Arc::clone(&self.rtp),
            self.remote_rtp,
            out,
            frames,
            start,
            origin,
        )
        .await;
        let received = receiver.await.unwrap_or_default();
        let uri = format!("sip:ai@{}", self.gateway);
        if let Ok(local) = self.sip.local_addr() {
            let bye = request(
                "BYE", &uri, "UDP", local, "bye", &self.from, &self.to, &self.call, 2,
            );
            let _ = self.sip.send_to(&bye.to_bytes(), self.gateway).await;
            let mut buf = vec![0u8; 4096];
            let _ =
                tokio::time::timeout(Duration::from_secs(2), self.sip.recv_from(&mut buf)).await;
        }
        CallerLog {
            call: self.call,
            sent,
            received,
            setup_us: Some(self.setup_us),
        }
    }
}

/// Waits for a BYE on `sip` and answers it 200.
async fn answer_bye(sip: &UdpSocket) {
    let mut buf = vec![0u8; 8192];
    while let Ok((len, from)) = sip.recv_from(&mut buf).await {
        let Ok(msg) = SipMessage::parse(&buf[..len]) else {
            continue;
        };
        if msg.code().is_none() && msg.method() == "BYE" {
            let _ = sip
                .send_to(&msg.response(200, "OK", None).to_bytes(), from)
                .await;
            return;
        }
    }
}
