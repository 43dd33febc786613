//! One SIP leg's media: an RTP/RTCP socket pair from the configured port range,
//! driven through the sans-IO [`JitterBuffer`], [`CodecAdapter`] and
//! [`RtpSender`]. Toward the call it speaks [`LegEvent`]/[`LegCommand`] with μ-law
//! 20 ms frames, exactly like the Media Streams legs.

use super::codec::CodecAdapter;
use super::relay_plane::{ParkedEnd, Resumed, StreamState};
use super::sdp::Negotiated;
use crate::legs::alarm::Alarm;
use crate::legs::{HangupCause, LegCommand, LegEvent, RelayOffer};
use crate::media::jitter::{JitterBuffer, JitterConfig, JitterOutput};
use crate::media::latch::{LatchConfig, RtpLatch, Verdict};
use crate::media::rtp::{self, ReceiverStats, RtpPacket, RtpSender};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

/// How often an RTCP report goes out.
const RTCP_INTERVAL: Duration = Duration::from_secs(5);

/// An RTP/RTCP pair bound on consecutive ports (RTP even).
#[derive(Debug)]
pub struct RtpSockets {
    /// RTP.
    pub rtp: UdpSocket,
    /// RTCP (RTP port + 1).
    pub rtcp: UdpSocket,
    /// The RTP address (what goes in our SDP).
    pub local: SocketAddr,
}

/// Hands out RTP port pairs from `[min, max]` at random, so that a call's
/// ports cannot be guessed from another call's (RFC 3550 §8.2's advice for SSRC,
/// applied to where an attacker would aim).
#[derive(Debug)]
pub struct PortRange {
    ip: IpAddr,
    min: u16,
    max: u16,
}

impl PortRange {
    /// A range on `ip`.
    pub fn new(ip: IpAddr, min: u16, max: u16) -> Self {
        let min = min + min % 2;
        PortRange { ip, min, max }
    }

    /// Binds a free pair picked at random; `None` when the whole range is taken.
    pub async fn bind(&self) -> Option<RtpSockets> {
        let span = (self.max.saturating_sub(self.min) / 2).max(1);
        let first = (super::random_u64() % u64::from(span)) as u16;
        for step in 0..span {
            let pair = (first + step) % span;
            let port = self.min + pair * 2;
            let Ok(rtp) = UdpSocket::bind((self.ip, port)).await else {
                continue;
            };
            let Ok(rtcp) = UdpSocket::bind((self.ip, port + 1)).await else {
                continue;
            };
            let local = SocketAddr::new(self.ip, port);
            return Some(RtpSockets { rtp, rtcp, local });
        }
        None
    }
}

/// Media statistics of a leg, logged and stored at its end.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RtpLegStats {
    /// The codec in use at the end.
    pub codec: String,
    /// Packets received and accepted.
    pub received: u64,
    /// Packets sent.
    pub sent: u64,
    /// Declared lost by the jitter buffer.
    pub lost: u64,
    /// Arrived too late or twice.
    pub late_or_duplicate: u64,
    /// From an address other than the latched one.
    pub foreign: u64,
    /// Unreadable datagrams.
    pub malformed: u64,
    /// Interarrival jitter at the end, ms.
    pub jitter_ms: u32,
    /// Packets the relay plane forwarded to or from this leg while the call
    /// was merged (included in `received` and `sent`).
    pub relayed: u64,
    /// The peer's last RTCP report block about our stream: fraction lost (0..1).
    pub peer_fraction_lost: Option<f64>,
    /// ... and the jitter it measured, ms.
    pub peer_jitter_ms: Option<u32>,
}

impl RtpLegStats {
    /// The stored form, for leg `leg` (`caller` or `agent:<id>`).
    pub fn to_row(&self, leg: &str) -> crate::store::MediaLegRow {
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        crate::store::MediaLegRow {
            leg: leg.to_string(),
            codec: self.codec.clone(),
            received: n(self.received),
            sent: n(self.sent),
            lost: n(self.lost),
            late_or_duplicate: n(self.late_or_duplicate),
            foreign: n(self.foreign),
            malformed: n(self.malformed),
            jitter_ms: i64::from(self.jitter_ms),
            peer_fraction_lost: self.peer_fraction_lost,
            peer_jitter_ms: self.peer_jitter_ms.map(i64::from),
        }
    }
}

/// Controls a running leg.
#[derive(Debug)]
pub enum RtpControl {
    /// A re-INVITE changed where or how to send.
    Update(Negotiated),
    /// The dialog ended (BYE): stop quietly.
    Stop,
}

/// The channels between a leg and its call and dialog.
#[derive(Debug)]
pub struct RtpLegLinks {
    /// Events to the call.
    pub events: mpsc::Sender<LegEvent>,
    /// Commands from the call.
    pub commands: mpsc::Receiver<LegCommand>,
    /// Control from the SIP dialog.
    pub control: mpsc::Receiver<RtpControl>,
    /// Told when the call hangs up.
    pub hung_up: tokio::sync::oneshot::Sender<()>,
}

/// Spawns [`run`] in a span naming the call and the leg (`caller`, `agent:<id>`),
/// so its logs carry the call id.
pub fn spawn(
    sockets: RtpSockets,
    negotiated: Negotiated,
    (jitter, latch): (JitterConfig, LatchConfig),
    links: RtpLegLinks,
    call_id: &str,
    leg: &str,
) -> tokio::task::JoinHandle<RtpLegStats> {
    let span = tracing::info_span!("rtp", call_id = %call_id, leg = %leg);
    tokio::spawn(tracing::Instrument::instrument(
        run(sockets, negotiated, (jitter, latch), links),
        span,
    ))
}

/// Runs the leg until the call hangs up (a `Hangup` command; `hung_up` is told)
/// or the dialog stops it. `events` go to the call; `commands` come from it.
async fn run(
    sockets: RtpSockets,
    mut negotiated: Negotiated,
    (jitter, latch_config): (JitterConfig, LatchConfig),
    links: RtpLegLinks,
) -> RtpLegStats {
    let RtpSockets { rtp, rtcp, .. } = sockets;
    // `None` while the relay plane holds it (the leg is parked).
    let mut rtp = Some(rtp);
    let mut parked: Option<Parked> = None;
    let mut announced = false;
    let RtpLegLinks {
        events,
        mut commands,
        mut control,
        hung_up,
    } = links;
    let mut codec = match CodecAdapter::new(negotiated.codec) {
        Ok(c) => c,
        Err(e) => {
            let _ = events
                .send(LegEvent::Hangup(HangupCause::Lost(format!("codec: {e}"))))
                .await;
            return RtpLegStats::default();
        }
    };
    // RFC 3550 asks for random initial SSRC, sequence number and timestamp.
    let seed = super::random_u64();
    let mut sender = RtpSender::new(seed as u32, (seed >> 32) as u16, (seed >> 16) as u32);
    let mut buffer = JitterBuffer::new(jitter);
    let mut stats = ReceiverStats::default();
    let mut out = RtpLegStats::default();
    let mut latch = RtpLatch::new(negotiated.remote, latch_config, Instant::now());
    latch.update(negotiated.remote, negotiated.on_hold, Instant::now());
    let mut timed_out = false;
    let mut unsent = 0u64;
    let mut last_dtmf: Option<u32> = None;
    let started = Instant::now();
    let mut next_rtcp = tokio::time::Instant::now() + RTCP_INTERVAL;
    let (mut rtcp_alarm, mut gap_alarm, mut silence_alarm) =
        (Alarm::new(), Alarm::new(), Alarm::new());
    let mut buf = vec![0u8; 2048];
    let mut rtcp_buf = vec![0u8; 1500];
    let mut hung_up = Some(hung_up);
    loop {
        let now = Instant::now();
        // Release whatever the buffer has for the call.
        while let Some(item) = buffer.poll(now) {
            let frames = match item {
                JitterOutput::Packet(p) if Some(p.payload_type) == negotiated.dtmf_payload_type => {
                    if let Some((digit, _end)) = rtp::parse_dtmf(&p.payload)
                        && last_dtmf != Some(p.timestamp)
                    {
                        last_dtmf = Some(p.timestamp);
                        let _ = events.try_send(LegEvent::Dtmf(digit));
                    }
                    continue;
                }
                JitterOutput::Packet(p) if p.payload_type == negotiated.payload_type => {
                    codec.decode(Some(&p.payload))
                }
                JitterOutput::Packet(p) => {
                    tracing::debug!(
                        pt = p.payload_type,
                        "RTP with an unnegotiated payload type dropped"
                    );
                    continue;
                }
                JitterOutput::Lost(n) => {
                    let mut all = Vec::new();
                    for _ in 0..n.min(10) {
                        match codec.decode(None) {
                            Ok(f) => all.extend(f),
                            Err(e) => tracing::debug!(error = %e, "concealment failed"),
                        }
                    }
                    Ok(all)
                }
            };
            match frames {
                Ok(frames) => {
                    for f in frames {
                        if events.try_send(LegEvent::Audio(f)).is_err() {
                            tracing::warn!("call is not keeping up with RTP; frame dropped");
                        }
                    }
                }
                Err(e) => {
                    out.malformed += 1;
                    tracing::debug!(error = %e, "undecodable RTP payload dropped");
                }
            }
        }
        let gap_deadline = buffer.poll_at().map(tokio::time::Instant::from_std);
        tokio::select! {
            received = recv_rtp(rtp.as_ref(), &mut buf) => {
                let Ok((len, from)) = received else { continue };
                let datagram = &buf[..len];
                if rtp::is_rtcp(datagram) {
                    continue; // rtcp-mux from the peer: nothing we need from it
                }
                let packet = match RtpPacket::parse(datagram) {
                    Ok(p) => p,
                    Err(e) => {
                        out.malformed += 1;
                        if out.malformed == 1 || out.malformed % 100 == 0 {
                            tracing::warn!(%from, error = %e, count = out.malformed, "bad RTP dropped");
                        }
                        continue;
                    }
                };
                // Symmetric RTP behind NAT, but never to a stranger (media::latch).
                let was = latch.latched();
                match latch.on_packet(from, Instant::now()) {
                    Verdict::Accept => {
                        if was.is_none() && from != negotiated.remote {
                            tracing::info!(sdp = %negotiated.remote, actual = %from, "latched RTP to a NAT'd source after the learning window");
                        }
                    }
                    Verdict::Learning | Verdict::Foreign => {
                        out.foreign += 1;
                        if out.foreign == 1 || out.foreign % 100 == 0 {
                            tracing::warn!(%from, sdp = %negotiated.remote, latched = ?latch.latched(), count = out.foreign, "RTP from an address that is not the stream's dropped");
                        }
                        continue;
                    }
                }
                out.received += 1;
                let clock = codec.samples_per_frame() as f64 * 50.0;
                let arrival = (started.elapsed().as_secs_f64() * clock) as u32;
                stats.on_packet(packet.seq, packet.timestamp, arrival, packet.ssrc);
                buffer.set_jitter(Duration::from_secs_f64(f64::from(stats.jitter()) / clock));
                buffer.push(packet, Instant::now());
            }
            resumed = resumed(&mut parked) => {
                parked = None;
                if let Err(e) = take_back(resumed, &mut rtp, &mut sender, &mut out, &mut latch, (&mut buffer, &mut stats, jitter)) {
                    socket_lost(&events, "cannot take the RTP socket back from the relay plane", e).await;
                    break;
                }
            }
            received = rtcp.recv_from(&mut rtcp_buf) => {
                if let Ok((len, from)) = received
                    && let Some((fraction, lost, jitter)) = rtp::parse_rtcp_report(&rtcp_buf[..len])
                {
                    let clock = codec.samples_per_frame() * 50;
                    out.peer_fraction_lost = Some(f64::from(fraction) / 256.0);
                    out.peer_jitter_ms = Some(jitter.saturating_mul(1000) / clock.max(1));
                    tracing::debug!(%from, fraction_lost = f64::from(fraction) / 256.0, lost, jitter, "RTCP report from the peer");
                }
            }
            cmd = commands.recv() => {
                if !announced {
                    // The call talks to this leg: it may relay it directly once merged.
                    announced = true;
                    let _ = events.try_send(LegEvent::CanRelay);
                }
                let target = latch.target(Instant::now());
                // Media from the call, or the leg ending, needs the socket back.
                let needs_socket = !matches!(cmd, Some(LegCommand::Park(_)) | Some(LegCommand::Mark(_)) | Some(LegCommand::Clear) | Some(LegCommand::HandoffResult(_)) | Some(LegCommand::Hint(_)));
                if needs_socket && parked.is_some() {
                    let r = unpark(&mut parked).await;
                    if let Err(e) = take_back(r, &mut rtp, &mut sender, &mut out, &mut latch, (&mut buffer, &mut stats, jitter)) {
                        socket_lost(&events, "cannot take the RTP socket back from the relay plane", e).await;
                        break;
                    }
                }
                let Some(socket) = rtp.as_ref() else {
                    // Parked: only markers and offers reach here.
                    if let Some(LegCommand::Mark(name)) = cmd {
                        let _ = events.try_send(LegEvent::Mark(name));
                    }
                    continue;
                };
                match cmd {
                    Some(LegCommand::Audio(ulaw)) => {
                        if negotiated.on_hold {
                            continue;
                        }
                        let Some(target) = target else {
                            unsent += 1;
                            if unsent == 1 {
                                tracing::warn!(sdp = %negotiated.remote, "the SDP address sent no RTP within the learning window; media to it stopped");
                            }
                            continue;
                        };
                        match codec.encode(&ulaw) {
                            Ok(payload) => {
                                let p = sender.packet(negotiated.payload_type, payload, codec.samples_per_frame());
                                if socket.send_to(&p.to_bytes(), target).await.is_ok() {
                                    out.sent += 1;
                                }
                            }
                            Err(e) => tracing::warn!(error = %e, "cannot encode a frame for the wire"),
                        }
                    }
                    Some(LegCommand::Mark(name)) => {
                        // RTP has no mark echo: the frames before it are on the wire now.
                        let _ = events.try_send(LegEvent::Mark(name));
                    }
                    Some(LegCommand::Dtmf(digit)) => {
                        if let (Some(pt), Some(target)) = (negotiated.dtmf_payload_type, target) {
                            for p in sender.dtmf(pt, digit, 5) {
                                let _ = socket.send_to(&p.to_bytes(), target).await;
                            }
                        }
                    }
                    Some(LegCommand::Park(offer)) => {
                        let can = !negotiated.on_hold && latch.latched().is_some();
                        match target.filter(|_| can) {
                            Some(peer) => match park(offer, &mut rtp, peer, &negotiated, &codec, &sender, latch_config.media_timeout) {
                                Ok(p) => {
                                    tracing::debug!(%peer, "RTP handed to the relay plane");
                                    parked = Some(p);
                                }
                                Err(e) => {
                                    socket_lost(&events, "cannot hand the RTP socket to the relay plane", e).await;
                                    break;
                                }
                            },
                            // Not relayable now (no latched peer yet, on hold):
                            // dropping the offer gives the other leg back its socket.
                            None => drop(offer),
                        }
                    }
                    Some(LegCommand::Unpark) | Some(LegCommand::Clear) | Some(LegCommand::HandoffResult(_)) | Some(LegCommand::Hint(_)) => {}
                    Some(LegCommand::Hangup) | None => {
                        if let Some(tx) = hung_up.take() {
                            let _ = tx.send(());
                        }
                        break;
                    }
                }
            }
            ctl = control.recv() => {
                if parked.is_some() {
                    // A re-INVITE or the end of the dialog: the call's again.
                    let r = unpark(&mut parked).await;
                    if let Err(e) = take_back(r, &mut rtp, &mut sender, &mut out, &mut latch, (&mut buffer, &mut stats, jitter)) {
                        socket_lost(&events, "cannot take the RTP socket back from the relay plane", e).await;
                        break;
                    }
                }
                match ctl {
                    Some(RtpControl::Update(n)) => {
                        if n.codec != negotiated.codec {
                            match CodecAdapter::new(n.codec) {
                                Ok(c) => codec = c,
                                Err(e) => tracing::warn!(error = %e, "cannot switch codec; keeping the old one"),
                            }
                        }
                        latch.update(n.remote, n.on_hold, Instant::now());
                        negotiated = n;
                    }
                    Some(RtpControl::Stop) | None => break,
                }
            }
            () = rtcp_alarm.ring_at(Some(next_rtcp)) => {
                next_rtcp += RTCP_INTERVAL;
                let block = (stats.received > 0).then(|| stats.report_block());
                let report = if sender.packets > 0 {
                    let ntp = ntp_now();
                    rtp::rtcp_sender_report(&sender, ntp, sender.packets.wrapping_mul(codec.samples_per_frame()), block)
                } else {
                    rtp::rtcp_receiver_report(sender.ssrc, block)
                };
                if let Some(target) = latch.target(Instant::now()) {
                    let rtcp_target = SocketAddr::new(target.ip(), target.port().wrapping_add(1));
                    let _ = rtcp.send_to(&report, rtcp_target).await;
                }
            }
            () = gap_alarm.ring_at(gap_deadline) => {}
            // Parked, the relay plane watches the peer's silence (and gives the
            // socket back, with the last packet's time, when it lasts).
            () = silence_alarm.ring_at(latch.timeout_at().map(tokio::time::Instant::from_std)), if !timed_out && parked.is_none() => {
                if latch.timed_out(Instant::now()) {
                    timed_out = true;
                    tracing::warn!(timeout = ?latch_config.media_timeout, "no RTP from the peer; ending the call");
                    let _ = events.send(LegEvent::Hangup(HangupCause::MediaTimeout(latch_config.media_timeout))).await;
                }
            }
        }
    }
    if parked.is_some() {
        // Ending while relayed (the loop broke out of a parked state): stop the plane.
        let r = unpark(&mut parked).await;
        let _ = take_back(
            r,
            &mut rtp,
            &mut sender,
            &mut out,
            &mut latch,
            (&mut buffer, &mut stats, jitter),
        );
    }
    out.lost += buffer.stats.lost;
    out.late_or_duplicate += buffer.stats.late + buffer.stats.duplicates;
    out.jitter_ms = stats.jitter() * 1000 / (codec.samples_per_frame() * 50);
    out.codec = format!("{:?}", negotiated.codec);
    tracing::info!(?out, "RTP leg ended");
    out
}

/// A parked leg: the offer it joined and where the plane gives its socket back.
type Parked = (RelayOffer, oneshot::Receiver<Resumed>);

/// The next datagram on the RTP socket; never ready while it is parked.
async fn recv_rtp(rtp: Option<&UdpSocket>, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
    match rtp {
        Some(socket) => socket.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

/// The plane giving the socket back on its own (the other leg left the pair,
/// the peer went silent); never ready when not parked. `None`: the plane is gone.
async fn resumed(parked: &mut Option<Parked>) -> Option<Resumed> {
    match parked {
        Some((_, rx)) => rx.await.ok(),
        None => std::future::pending().await,
    }
}

/// Hands the RTP socket to the relay plane under `offer`.
fn park(
    offer: RelayOffer,
    rtp: &mut Option<UdpSocket>,
    peer: SocketAddr,
    negotiated: &Negotiated,
    codec: &CodecAdapter,
    sender: &RtpSender,
    media_timeout: Duration,
) -> std::io::Result<Parked> {
    let socket = rtp
        .take()
        .ok_or_else(|| std::io::Error::other("already parked"))?
        .into_std()?;
    let (resume, resumed) = oneshot::channel();
    offer.0.deposit(ParkedEnd {
        socket,
        peer,
        codec: negotiated.codec,
        audio_pt: negotiated.payload_type,
        dtmf_pt: negotiated.dtmf_payload_type,
        samples: codec.samples_per_frame(),
        stream: StreamState::of(sender),
        media_timeout,
        resume,
    });
    Ok((offer, resumed))
}

/// Asks the plane for the socket back and waits for it (the plane answers
/// within its poll turn). `None` if it does not.
async fn unpark(parked: &mut Option<Parked>) -> Option<Resumed> {
    let (offer, mut rx) = parked.take()?;
    offer.0.detach();
    tokio::time::timeout(Duration::from_secs(1), &mut rx)
        .await
        .ok()?
        .ok()
}

/// Takes the socket back from the plane (`None`: it never answered): the
/// outgoing stream continues where the plane left it, what the plane counted
/// joins the leg's figures, and the receive side starts afresh — the peer's
/// numbering moved on while the plane carried it (what the old jitter buffer
/// counted stays in `out`).
fn take_back(
    r: Option<Resumed>,
    rtp: &mut Option<UdpSocket>,
    sender: &mut RtpSender,
    out: &mut RtpLegStats,
    latch: &mut RtpLatch,
    (buffer, stats, jitter): (&mut JitterBuffer, &mut ReceiverStats, JitterConfig),
) -> std::io::Result<()> {
    out.lost += buffer.stats.lost;
    out.late_or_duplicate += buffer.stats.late + buffer.stats.duplicates;
    (*buffer, *stats) = (JitterBuffer::new(jitter), ReceiverStats::default());
    let r =
        r.ok_or_else(|| std::io::Error::other("the relay plane did not give the socket back"))?;
    *rtp = Some(UdpSocket::from_std(r.socket)?);
    let s = r.stream;
    sender.resume_at(s.seq, s.timestamp, s.packets, s.octets);
    let c = r.counters;
    out.received += c.received;
    out.sent += c.sent;
    out.relayed += c.received + c.sent;
    out.foreign += c.foreign;
    out.malformed += c.malformed;
    if let (Some(at), Some(peer)) = (r.last_rx, latch.latched()) {
        latch.on_packet(peer, at);
    }
    if c.received + c.sent > 0 {
        tracing::debug!(
            received = c.received,
            sent = c.sent,
            "RTP back from the relay plane"
        );
    }
    Ok(())
}

/// The leg cannot go on without its socket: the call is told, and the leg ends.
async fn socket_lost(events: &mpsc::Sender<LegEvent>, what: &str, e: std::io::Error) {
    tracing::error!(error = %e, "{what}; ending the leg");
    let _ = events
        .send(LegEvent::Hangup(HangupCause::Lost(format!(
            "RTP socket: {e}"
        ))))
        .await;
}

/// NTP timestamp (RFC 3550 §4) of the wall clock.
fn ntp_now() -> u64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs() + 2_208_988_800;
    let frac = (u64::from(since.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rtp_ports_are_handed_out_at_random_not_in_sequence() {
        let range = PortRange::new("127.0.0.1".parse().expect("ip"), 34_000, 34_399);
        let mut kept = Vec::new();
        for _ in 0..6 {
            kept.push(range.bind().await.expect("a free pair"));
        }
        let ports: Vec<u16> = kept.iter().map(|s| s.local.port()).collect();
        assert!(
            ports
                .iter()
                .all(|p| p % 2 == 0 && (34_000..34_400).contains(p))
        );
        let sequential = ports.windows(2).all(|w| w[1] == w[0] + 2);
        assert!(!sequential, "a guessable sequence: {ports:?}");
    }
}
