//! One RTP endpoint of the load generator: sends paced 20 ms packets and stamps
//! what it sends and receives. Used as the SIP caller's media (warmline) and as
//! both sides of a relayed call (rtpengine).

use crate::stats::{Stamps, number_of, numbered_frame, spoken_frame};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use warmline::media::frame::{Frame, SampleRate};
use warmline::media::opus::OpusEncoder;
use warmline::media::rtp::{RtpPacket, RtpSender, is_rtcp};

/// What a peer sends.
#[derive(Clone)]
pub enum Outgoing {
    /// PCMU frames carrying their frame number (they pass a relay untouched).
    NumberedPcmu,
    /// The same, loud: a person talking (the relay mode's phones).
    SpokenPcmu,
    /// Pre-encoded Opus packets of noise, cycled (PT 111).
    Opus(Arc<Vec<Vec<u8>>>),
}

impl Outgoing {
    /// Encodes one second of a fullband signal (a warbling tone over noise) at
    /// 48 kHz, as a WebRTC or Opus phone sends it, once for every call to reuse.
    pub fn opus() -> Outgoing {
        let mut encoder = OpusEncoder::new(SampleRate::Hz48000, 32_000).expect("libopus");
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let packets = (0..50)
            .map(|f| {
                let pcm: Vec<i16> = (0..960)
                    .map(|i| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        let t = (f * 960 + i) as f64 / 48_000.0;
                        let tone = 6000.0
                            * (2.0 * std::f64::consts::PI * (300.0 + 200.0 * (3.0 * t).sin()) * t)
                                .sin();
                        (tone + ((state >> 53) as f64 - 1024.0)) as i16
                    })
                    .collect();
                let frame = Frame::new(SampleRate::Hz48000, pcm).expect("960 samples");
                encoder.encode(&frame).expect("opus encode").to_vec()
            })
            .collect();
        Outgoing::Opus(Arc::new(packets))
    }

    fn payload_type(&self) -> u8 {
        match self {
            Outgoing::NumberedPcmu | Outgoing::SpokenPcmu => 0,
            Outgoing::Opus(_) => 111,
        }
    }

    fn samples(&self) -> u32 {
        match self {
            Outgoing::NumberedPcmu | Outgoing::SpokenPcmu => 160,
            Outgoing::Opus(_) => 960,
        }
    }

    fn payload(&self, n: u32) -> Vec<u8> {
        match self {
            Outgoing::NumberedPcmu => numbered_frame(n),
            Outgoing::SpokenPcmu => spoken_frame(n),
            Outgoing::Opus(p) => p[n as usize % p.len()].clone(),
        }
    }

    /// The SDP media description for this codec on `port`.
    pub fn sdp(&self, port: u16, session: u64) -> String {
        let media = match self {
            Outgoing::NumberedPcmu | Outgoing::SpokenPcmu => {
                "m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
            }
            Outgoing::Opus(_) => "m=audio {port} RTP/AVP 111\r\na=rtpmap:111 opus/48000/2\r\n",
        }
        .replace("{port}", &port.to_string());
        format!(
            "v=0\r\no=bench {session} {session} IN IP4 127.0.0.1\r\ns=bench\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n{media}a=ptime:20\r\na=sendrecv\r\n"
        )
    }
}

/// µs since `origin`.
pub fn micros(origin: Instant) -> f64 {
    origin.elapsed().as_secs_f64() * 1e6
}

/// Sends `frames` packets to `target` every 20 ms from `start`; returns the send stamps.
pub async fn send(
    sock: Arc<UdpSocket>,
    target: SocketAddr,
    out: Outgoing,
    frames: u32,
    start: tokio::time::Instant,
    origin: Instant,
) -> Stamps {
    send_until(
        sock,
        target,
        out,
        0..frames,
        start,
        origin,
        std::future::pending(),
    )
    .await
}

/// Sends the frames numbered `numbers` to `target` every 20 ms from `start`,
/// until they run out or `stop` completes; returns the send stamps.
pub async fn send_until(
    sock: Arc<UdpSocket>,
    target: SocketAddr,
    out: Outgoing,
    numbers: std::ops::Range<u32>,
    start: tokio::time::Instant,
    origin: Instant,
    stop: impl std::future::Future<Output = ()>,
) -> Stamps {
    let mut sender = RtpSender::new(0x5eed_0000 ^ u32::from(target.port()), 1, 0);
    let mut tick = tokio::time::interval_at(start, Duration::from_millis(20));
    let mut stamps = Vec::with_capacity(numbers.len().min(1 << 16));
    tokio::pin!(stop);
    for n in numbers {
        tokio::select! {
            _ = tick.tick() => {}
            () = &mut stop => break,
        }
        let bytes = sender
            .packet(out.payload_type(), out.payload(n), out.samples())
            .to_bytes();
        stamps.push((n, micros(origin)));
        if sock.send_to(&bytes, target).await.is_err() {
            break;
        }
    }
    stamps
}

/// A received packet: the frame number its payload carries (if it is a numbered
/// PCMU frame below `frames`), and when it came.
pub type Arrivals = Vec<(Option<u32>, f64)>;

/// Receives RTP until `until`; RTCP is skipped.
pub async fn receive(
    sock: Arc<UdpSocket>,
    until: tokio::time::Instant,
    frames: u32,
    origin: Instant,
) -> Arrivals {
    receive_until(sock, tokio::time::sleep_until(until), 0..frames, origin).await
}

/// Receives RTP until `stop` completes or the socket fails; RTCP is skipped.
/// Numbered PCMU frames count when their number is in `numbers`.
pub async fn receive_until(
    sock: Arc<UdpSocket>,
    stop: impl std::future::Future<Output = ()>,
    numbers: std::ops::Range<u32>,
    origin: Instant,
) -> Arrivals {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 2048];
    tokio::pin!(stop);
    loop {
        let len = tokio::select! {
            r = sock.recv_from(&mut buf) => match r {
                Ok((len, _)) => len,
                Err(_) => break,
            },
            () = &mut stop => break,
        };
        let at = micros(origin);
        let bytes = &buf[..len];
        if is_rtcp(bytes) {
            continue;
        }
        let Ok(packet) = RtpPacket::parse(bytes) else {
            continue;
        };
        let number = (packet.payload.len() == 160)
            .then(|| number_of(&packet.payload))
            .flatten()
            .filter(|n| numbers.contains(n));
        got.push((number, at));
    }
    got
}
