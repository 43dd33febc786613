//! WebRTC legs: a browser caller (`POST /v1/webrtc/calls`) and the audio of a
//! human agent's browser console (offer/answer over the console WebSocket).
//!
//! Built on `str0m`, a sans-IO WebRTC stack: [`WebRtcPeer`] takes datagrams and
//! `now` and hands back datagrams to send, [`LegEvent`]s and the next deadline,
//! so it is tested without sockets or clocks. [`spawn`] is the thin tokio loop
//! around it (one UDP socket per peer, an ICE host candidate on
//! `[webrtc] media_ip`). The browser gathers its candidates before it posts the
//! offer and the gateway's one candidate is in the answer, so no trickle
//! messages are needed; the gateway learns the browser's address from its STUN
//! checks (peer-reflexive candidates), which also covers NAT on the browser side.
//!
//! Audio is Opus 48 kHz on the wire (RFC 7587) and μ-law 8 kHz in the call
//! core: libopus decodes straight to 8 kHz and encodes from 8 kHz, so no
//! resampler runs ([`CodecAdapter`], shared with the SIP legs). DTMF arrives as
//! RFC 4733 telephone events (a browser's `RTCDTMFSender`) and is sent the same way.

use crate::legs::sip::codec::{CodecAdapter, CodecError};
use crate::legs::sip::sdp::Codec;
use crate::legs::{HangupCause, LegCommand, LegEvent};
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use str0m::change::SdpOffer;
use str0m::format::{Codec as RtcCodec, CodecExtra, FormatParams};
use str0m::media::{Frequency, MediaTime, Mid, Pt, TelephoneEvent};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};
use thiserror::Error;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::Instrument;

/// How long ICE and DTLS may take before the leg is given up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest SDP offer accepted (a browser's audio offer is ~3–5 KiB).
pub const MAX_OFFER_BYTES: usize = 64 * 1024;
/// Opus RTP clock ticks per 20 ms frame.
const OPUS_TICKS_PER_FRAME: u64 = 960;
/// Payload type offered for telephone events at 48 kHz (the answer follows the offer's).
const TELEPHONE_EVENT_PT: u8 = 110;

/// A WebRTC leg could not be set up.
#[derive(Debug, Error)]
pub enum WebRtcError {
    /// The offer is not SDP, or str0m refused it.
    #[error("bad SDP offer: {0}")]
    BadOffer(String),
    /// The offer has no audio the gateway can speak.
    #[error("the offer has no Opus audio (warmline's WebRTC legs speak Opus 48 kHz)")]
    NoOpus,
    /// The offer is larger than [`MAX_OFFER_BYTES`].
    #[error("SDP offer of {0} bytes is larger than {MAX_OFFER_BYTES}")]
    OversizedOffer(usize),
    /// The media socket could not be bound.
    #[error("cannot bind a WebRTC media socket on {ip}: {source}")]
    Bind {
        /// The configured `[webrtc] media_ip`.
        ip: IpAddr,
        /// Why.
        source: std::io::Error,
    },
    /// `[webrtc] media_ip` is not usable.
    #[error("webrtc config: {0}")]
    Config(String),
    /// The Opus codec could not be created.
    #[error(transparent)]
    Codec(#[from] CodecError),
}

/// What the peer wants done next.
#[derive(Debug)]
pub enum PeerOutput {
    /// Send this datagram.
    Transmit {
        /// Where to.
        to: SocketAddr,
        /// The datagram.
        bytes: Vec<u8>,
    },
    /// Something happened on the leg (connected, audio, a digit, hangup).
    Event(LegEvent),
    /// Nothing to do before this instant (or before input arrives).
    Wait(Instant),
}

/// One WebRTC audio peer, sans-IO.
pub struct WebRtcPeer {
    rtc: Rtc,
    local: SocketAddr,
    codec: CodecAdapter,
    /// The audio m-line and the Opus payload type negotiated on it.
    audio: Option<(Mid, Pt)>,
    /// Telephone-event payload type, when negotiated.
    dtmf_pt: Option<Pt>,
    rtp_time: u64,
    connected: bool,
    created: Instant,
    /// RTP time of the last telephone event reported (end packets repeat).
    last_dtmf: Option<u64>,
    pending: VecDeque<LegEvent>,
    ended: bool,
}

impl std::fmt::Debug for WebRtcPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebRtcPeer")
            .field("local", &self.local)
            .field("connected", &self.connected)
            .finish_non_exhaustive()
    }
}

impl WebRtcPeer {
    /// Accepts a browser's offer for a peer whose socket is bound at `local`;
    /// returns the peer and the SDP answer.
    pub fn answer(
        offer_sdp: &str,
        local: SocketAddr,
        now: Instant,
    ) -> Result<(Self, String), WebRtcError> {
        if offer_sdp.len() > MAX_OFFER_BYTES {
            return Err(WebRtcError::OversizedOffer(offer_sdp.len()));
        }
        let offer = SdpOffer::from_sdp_string(offer_sdp)
            .map_err(|e| WebRtcError::BadOffer(e.to_string()))?;
        if !offer_sdp.to_ascii_lowercase().contains("opus/48000") {
            return Err(WebRtcError::NoOpus);
        }
        let mut config = RtcConfig::new()
            .clear_codecs()
            .enable_opus(true, false)
            .set_ice_lite(true);
        config.codec_config().add_config(
            Pt::from(TELEPHONE_EVENT_PT),
            None,
            RtcCodec::Tele,
            Frequency::FORTY_EIGHT_KHZ,
            None,
            FormatParams::default(),
        );
        let mut rtc = config.build(now);
        let candidate =
            Candidate::host(local, "udp").map_err(|e| WebRtcError::BadOffer(e.to_string()))?;
        rtc.add_local_candidate(candidate);
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| WebRtcError::BadOffer(e.to_string()))?;
        let peer = WebRtcPeer {
            rtc,
            local,
            codec: CodecAdapter::new(Codec::Opus)?,
            audio: None,
            dtmf_pt: None,
            rtp_time: 0,
            connected: false,
            created: now,
            last_dtmf: None,
            pending: VecDeque::new(),
            ended: false,
        };
        Ok((peer, answer.to_sdp_string()))
    }

    /// The address of the peer's ICE host candidate.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Whether ICE and DTLS are up.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// A datagram arrived from `source`. Datagrams str0m does not recognise are dropped.
    pub fn receive(&mut self, now: Instant, source: SocketAddr, datagram: &[u8]) {
        let Ok(contents) = datagram.try_into() else {
            tracing::debug!(%source, len = datagram.len(), "unrecognised datagram dropped");
            return;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination: self.local,
                contents,
            },
        );
        if !self.rtc.accepts(&input) {
            tracing::debug!(%source, "datagram for no session dropped");
            return;
        }
        if let Err(e) = self.rtc.handle_input(input) {
            tracing::debug!(%source, error = %e, "datagram refused");
        }
    }

    /// Time passed (a deadline from [`PeerOutput::Wait`] was reached).
    pub fn tick(&mut self, now: Instant) {
        if let Err(e) = self.rtc.handle_input(Input::Timeout(now)) {
            self.end(HangupCause::Lost(format!("webrtc: {e}")));
        }
    }

    /// Sends one 20 ms μ-law frame as Opus. Dropped (returns false) before the
    /// peer is connected: a browser cannot hear audio before DTLS is up anyway.
    pub fn send_audio(&mut self, now: Instant, ulaw: &[u8]) -> bool {
        let Some((mid, pt)) = self.audio.filter(|_| self.connected) else {
            return false;
        };
        let payload = match self.codec.encode(ulaw) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "cannot encode a frame for the browser");
                return false;
            }
        };
        let time = MediaTime::new(self.rtp_time, Frequency::FORTY_EIGHT_KHZ);
        self.rtp_time += OPUS_TICKS_PER_FRAME;
        let Some(writer) = self.rtc.writer(mid) else {
            return false;
        };
        match writer.write(pt, now, time, payload) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(error = %e, "frame not written");
                false
            }
        }
    }

    /// Sends a keypad digit as an RFC 4733 telephone event (when negotiated).
    pub fn send_dtmf(&mut self, now: Instant, digit: char) -> bool {
        let (Some((mid, _)), Some(pt), Some(event)) = (
            self.audio,
            self.dtmf_pt,
            crate::media::rtp::dtmf_event_code(digit),
        ) else {
            return false;
        };
        if !self.connected {
            return false;
        }
        let time = MediaTime::new(self.rtp_time, Frequency::FORTY_EIGHT_KHZ);
        let Some(writer) = self.rtc.writer(mid) else {
            return false;
        };
        let tele = TelephoneEvent {
            event,
            end: true,
            volume: 10,
            duration: Duration::from_millis(100),
        };
        writer
            .telephone_event(tele)
            .write(pt, now, time, Vec::new())
            .is_ok()
    }

    /// Ends the peer (the other side learns by DTLS close or ICE timeout).
    pub fn close(&mut self) {
        self.rtc.disconnect();
        self.ended = true;
    }

    /// The next thing to do. Call until it returns [`PeerOutput::Wait`].
    pub fn poll(&mut self, now: Instant) -> PeerOutput {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return PeerOutput::Event(event);
            }
            if self.ended {
                // Only the close output (DTLS close_notify, RTCP BYE) is left to send.
                loop {
                    match self.rtc.poll_output() {
                        Ok(Output::Transmit(t)) => {
                            return PeerOutput::Transmit {
                                to: t.destination,
                                bytes: t.contents.to_vec(),
                            };
                        }
                        Ok(Output::Event(_)) => continue,
                        _ => return PeerOutput::Wait(now + Duration::from_secs(3600)),
                    }
                }
            }
            if !self.connected && now.duration_since(self.created) >= CONNECT_TIMEOUT {
                self.end(HangupCause::Unreachable(format!(
                    "ICE/DTLS did not complete within {} s",
                    CONNECT_TIMEOUT.as_secs()
                )));
                continue;
            }
            let output = match self.rtc.poll_output() {
                Ok(o) => o,
                Err(e) => {
                    self.end(HangupCause::Lost(format!("webrtc: {e}")));
                    continue;
                }
            };
            match output {
                Output::Timeout(t) => {
                    let deadline = if self.connected {
                        t
                    } else {
                        t.min(self.created + CONNECT_TIMEOUT)
                    };
                    return PeerOutput::Wait(deadline);
                }
                Output::Transmit(t) => {
                    return PeerOutput::Transmit {
                        to: t.destination,
                        bytes: t.contents.to_vec(),
                    };
                }
                Output::Event(e) => self.on_event(e),
            }
        }
    }

    fn end(&mut self, cause: HangupCause) {
        if !self.ended {
            tracing::info!(cause = ?cause, "webrtc leg ended");
            self.pending.push_back(LegEvent::Hangup(cause));
            self.rtc.disconnect();
            self.ended = true;
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Connected => {
                self.connected = true;
                tracing::info!(local = %self.local, "webrtc connected (ICE + DTLS)");
                self.pending.push_back(LegEvent::Connected);
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                self.end(HangupCause::Lost("ICE disconnected".into()));
            }
            Event::MediaAdded(added) => {
                let Some(writer) = self.rtc.writer(added.mid) else {
                    return;
                };
                let opus = writer
                    .payload_params()
                    .find(|p| p.spec().codec == RtcCodec::Opus)
                    .map(|p| p.pt());
                self.dtmf_pt = writer
                    .payload_params()
                    .find(|p| {
                        p.spec().codec == RtcCodec::Tele
                            && p.spec().clock_rate == Frequency::FORTY_EIGHT_KHZ
                    })
                    .map(|p| p.pt());
                if let Some(pt) = opus
                    && self.audio.is_none()
                {
                    self.audio = Some((added.mid, pt));
                }
            }
            Event::MediaData(data) => {
                if let CodecExtra::Tele(tele) = data.codec_extra {
                    self.on_telephone_event(data.time.numer(), tele);
                    return;
                }
                if data.params.spec().codec != RtcCodec::Opus {
                    return;
                }
                match self.codec.decode(Some(&data.data)) {
                    Ok(frames) => self.pending.extend(frames.into_iter().map(LegEvent::Audio)),
                    Err(e) => tracing::debug!(error = %e, "undecodable Opus packet dropped"),
                }
            }
            Event::Closed => self.end(HangupCause::Normal),
            _ => {}
        }
    }

    fn on_telephone_event(&mut self, time: u64, tele: TelephoneEvent) {
        if !tele.end || self.last_dtmf == Some(time) {
            return;
        }
        self.last_dtmf = Some(time);
        if let Some(digit) = crate::media::rtp::dtmf_digit(tele.event) {
            self.pending.push_back(LegEvent::Dtmf(digit));
        }
    }
}

/// Binds a media socket on `[webrtc] media_ip` and answers `offer` there.
pub async fn bind_and_answer(
    config: &crate::config::WebRtcSection,
    offer_sdp: &str,
) -> Result<(WebRtcPeer, UdpSocket, String), WebRtcError> {
    let ip = config.media_ip().map_err(WebRtcError::Config)?;
    let socket = UdpSocket::bind(SocketAddr::new(ip, 0))
        .await
        .map_err(|source| WebRtcError::Bind { ip, source })?;
    let local = socket
        .local_addr()
        .map_err(|source| WebRtcError::Bind { ip, source })?;
    let (peer, answer) = WebRtcPeer::answer(offer_sdp, local, Instant::now())?;
    Ok((peer, socket, answer))
}

/// The leg's channels: events to the call (or console), commands from it.
#[derive(Debug)]
pub struct WebRtcLinks {
    /// Where [`LegEvent`]s go.
    pub events: mpsc::Sender<LegEvent>,
    /// Where [`LegCommand`]s come from; closing it ends the leg.
    pub commands: mpsc::Receiver<LegCommand>,
}

/// Runs `peer` on `socket` until it ends; `leg` and `id` name it in logs.
pub fn spawn(
    peer: WebRtcPeer,
    socket: UdpSocket,
    links: WebRtcLinks,
    id: &str,
    leg: &'static str,
) -> tokio::task::JoinHandle<()> {
    let span = tracing::info_span!("webrtc", id = %id, leg);
    tokio::spawn(run(peer, Arc::new(socket), links).instrument(span))
}

async fn run(mut peer: WebRtcPeer, socket: Arc<UdpSocket>, links: WebRtcLinks) {
    let WebRtcLinks {
        events,
        mut commands,
    } = links;
    let mut buf = vec![0u8; 2048];
    loop {
        // Drain the peer until it only waits.
        let deadline = loop {
            match peer.poll(Instant::now()) {
                PeerOutput::Transmit { to, bytes } => {
                    if let Err(e) = socket.send_to(&bytes, to).await {
                        tracing::debug!(%to, error = %e, "datagram not sent");
                    }
                }
                PeerOutput::Event(LegEvent::Audio(frame)) => {
                    // Never wait on the call: a full queue drops the frame.
                    let _ = events.try_send(LegEvent::Audio(frame));
                }
                PeerOutput::Event(event) => {
                    let gone = matches!(event, LegEvent::Hangup(_));
                    if events.send(event).await.is_err() || gone {
                        peer.close();
                        flush_close(&mut peer, &socket).await;
                        return;
                    }
                }
                PeerOutput::Wait(deadline) => break deadline,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep_until(deadline.into()) => peer.tick(Instant::now()),
            received = socket.recv_from(&mut buf) => match received {
                Ok((n, source)) => peer.receive(Instant::now(), source, &buf[..n]),
                Err(e) => tracing::debug!(error = %e, "media socket read failed"),
            },
            // Until ICE and DTLS are up, commands wait in the channel: the
            // start of the AI agent's greeting is delayed, not cut.
            command = commands.recv(), if peer.is_connected() => match command {
                Some(LegCommand::Audio(frame)) => {
                    peer.send_audio(Instant::now(), &frame);
                }
                Some(LegCommand::Mark(name)) => {
                    // Frames before the mark are on the wire now (as for RTP).
                    let _ = events.try_send(LegEvent::Mark(name));
                }
                Some(LegCommand::Dtmf(digit)) => {
                    peer.send_dtmf(Instant::now(), digit);
                }
                Some(LegCommand::Clear) | Some(LegCommand::HandoffResult(_)) | Some(LegCommand::Hint(_)) | Some(LegCommand::Park(_)) | Some(LegCommand::Unpark) => {}
                Some(LegCommand::Hangup) | None => {
                    peer.close();
                    flush_close(&mut peer, &socket).await;
                    return;
                }
            },
        }
    }
}

/// Why a browser call was refused.
#[derive(Debug, Error)]
pub enum BrowserCallError {
    /// The offer or the media socket failed.
    #[error(transparent)]
    Setup(#[from] WebRtcError),
    /// `webrtc.max_calls` browser calls are in progress.
    #[error("too many browser calls in progress ({0}); try again later")]
    Busy(usize),
}

/// A phone number as typed by a person (`+1 (555) 010-0100`) in its plain
/// form (`+15550100100`): an optional leading `+` and 7 to 15 digits; spaces,
/// dashes, dots and brackets are dropped. `None` for anything else.
pub fn phone_number(typed: &str) -> Option<String> {
    let typed = typed.trim();
    let (plus, rest) = match typed.strip_prefix('+') {
        Some(rest) => ("+", rest),
        None => ("", typed),
    };
    let mut digits = String::new();
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => return None,
        }
    }
    (7..=15)
        .contains(&digits.len())
        .then(|| format!("{plus}{digits}"))
}

/// What the browser-caller endpoint works with.
pub struct BrowserCalls<'a> {
    /// The `[webrtc]` settings.
    pub config: &'a crate::config::WebRtcSection,
    /// Browser calls up now (one of `config.max_calls` each).
    pub active: Arc<std::sync::atomic::AtomicUsize>,
    /// Where the call starts.
    pub calls: Arc<dyn crate::legs::CallStarter>,
}

/// Answers a browser caller's offer and starts the call: the browser is the
/// caller leg, bridged to the AI agent like any other caller. `parameters`
/// become the call's `customParameters` (e.g. `from`, `agent`).
/// Returns the call id and the SDP answer.
pub async fn start_browser_call(
    leg: BrowserCalls<'_>,
    offer_sdp: &str,
    parameters: std::collections::BTreeMap<String, String>,
    callback_number: Option<String>,
) -> Result<(String, String), BrowserCallError> {
    use std::sync::atomic::Ordering;
    let max = leg.config.max_calls;
    let active = leg.active.fetch_add(1, Ordering::SeqCst);
    let slot = CallSlot(Arc::clone(&leg.active));
    if active >= max {
        return Err(BrowserCallError::Busy(active));
    }
    let allowed = &leg.config.caller_parameters;
    let mut parameters = parameters;
    let dropped: Vec<String> = parameters
        .keys()
        .filter(|k| !allowed.contains(k))
        .cloned()
        .collect();
    if !dropped.is_empty() {
        parameters.retain(|k, _| allowed.contains(k));
        tracing::info!(
            ?dropped,
            "browser caller parameters not in webrtc.caller_parameters ignored"
        );
    }
    // The number the caller typed for a callback (checked by the caller of
    // this function) is the call's `from`, which the page's query may not set.
    if let Some(number) = callback_number {
        parameters.insert("from".into(), number);
        parameters.insert("from_source".into(), "typed_by_caller".into());
    }
    let (peer, socket, answer) = bind_and_answer(leg.config, offer_sdp).await?;
    let started = Instant::now();
    let started_wall = std::time::SystemTime::now();
    let random = crate::util::random_u64;
    let call_sid = format!("WR{:016x}{:016x}", random(), random());
    let stream_sid = format!("MZ{:016x}{:016x}", random(), random());
    let mut start = crate::legs::media_streams::StartMeta {
        call_sid: call_sid.clone(),
        stream_sid: stream_sid.clone(),
        tracks: vec!["inbound".into(), "outbound".into()],
        custom_parameters: parameters,
        ..Default::default()
    };
    start
        .custom_parameters
        .insert("transport".into(), "webrtc".into());
    let crate::legs::CallerEnds {
        call_id,
        events: ev_tx,
        commands: cmd_rx,
    } = crate::legs::start_caller(leg.calls, start, stream_sid, (started, started_wall));
    tracing::info!(call = %call_id, local = %peer.local_addr(), "browser call answered");
    let media = spawn(
        peer,
        socket,
        WebRtcLinks {
            events: ev_tx,
            commands: cmd_rx,
        },
        &call_id,
        "caller",
    );
    tokio::spawn(async move {
        // The slot is given back when the media task ends.
        let _slot = slot;
        let _ = media.await;
    });
    Ok((call_id, answer))
}

/// One of `webrtc.max_calls`, given back on drop.
struct CallSlot(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for CallSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Sends what a closed peer still has to say (DTLS close_notify, RTCP BYE).
async fn flush_close(peer: &mut WebRtcPeer, socket: &UdpSocket) {
    while let PeerOutput::Transmit { to, bytes } = peer.poll(Instant::now()) {
        let _ = socket.send_to(&bytes, to).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typed_phone_number_is_kept_plain_and_anything_else_refused() {
        assert_eq!(
            phone_number("+1 (555) 010-0100").as_deref(),
            Some("+15550100100")
        );
        assert_eq!(
            phone_number("020 7946 0958").as_deref(),
            Some("02079460958")
        );
        for bad in [
            "",
            "12345",
            "+1 555 0100 ext 2",
            "call me",
            "+1234567890123456",
            "1;DROP",
        ] {
            assert_eq!(phone_number(bad), None, "{bad:?}");
        }
    }
    use crate::media::g711;
    use str0m::change::SdpAnswer;
    use str0m::media::{Direction, MediaKind};

    /// A browser stand-in: a full (non-lite) str0m peer that offers Opus audio.
    struct Browser {
        rtc: Rtc,
        addr: SocketAddr,
        mid: Mid,
        received: Vec<MediaTime>,
        connected: bool,
    }

    fn browser_offer(now: Instant) -> (Browser, String, str0m::change::SdpPendingOffer) {
        let mut rtc = RtcConfig::new().build(now);
        let addr: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
        let mut change = rtc.sdp_api();
        let mid = change.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        let (offer, pending) = change.apply().unwrap();
        let browser = Browser {
            rtc,
            addr,
            mid,
            received: Vec::new(),
            connected: false,
        };
        (browser, offer.to_sdp_string(), pending)
    }

    /// Runs both peers in virtual time for `ms`, delivering datagrams in
    /// memory; returns the gateway peer's leg events.
    fn run(
        gw: &mut WebRtcPeer,
        browser: &mut Browser,
        now: &mut Instant,
        ms: u64,
        mut each_20ms: impl FnMut(&mut WebRtcPeer, &mut Browser, Instant),
    ) -> Vec<LegEvent> {
        let mut events = Vec::new();
        let end = *now + Duration::from_millis(ms);
        let mut next_frame = *now;
        while *now < end {
            if *now >= next_frame {
                each_20ms(gw, browser, *now);
                next_frame += Duration::from_millis(20);
            }
            // Gateway → browser.
            loop {
                match gw.poll(*now) {
                    PeerOutput::Transmit { to, bytes } => {
                        assert_eq!(to, browser.addr);
                        let input = Input::Receive(
                            *now,
                            Receive {
                                proto: Protocol::Udp,
                                source: gw.local_addr(),
                                destination: browser.addr,
                                contents: bytes.as_slice().try_into().unwrap(),
                            },
                        );
                        browser.rtc.handle_input(input).unwrap();
                    }
                    PeerOutput::Event(e) => events.push(e),
                    PeerOutput::Wait(_) => break,
                }
            }
            // Browser → gateway.
            loop {
                match browser.rtc.poll_output().unwrap() {
                    Output::Transmit(t) => gw.receive(*now, browser.addr, &t.contents),
                    Output::Event(Event::Connected) => browser.connected = true,
                    Output::Event(Event::MediaData(d)) => browser.received.push(d.time),
                    Output::Event(_) => {}
                    Output::Timeout(_) => break,
                }
            }
            *now += Duration::from_millis(5);
            gw.tick(*now);
            browser.rtc.handle_input(Input::Timeout(*now)).unwrap();
        }
        events
    }

    fn opus_frame(encoder: &mut CodecAdapter, level: i16) -> Vec<u8> {
        let pcm: Vec<i16> = (0..160)
            .map(|i| if (i / 10) % 2 == 0 { level } else { -level })
            .collect();
        let mut ulaw = Vec::new();
        g711::encode_ulaw(&pcm, &mut ulaw);
        encoder.encode(&ulaw).unwrap()
    }

    #[test]
    fn a_browser_offer_is_answered_and_audio_flows_both_ways_in_virtual_time() {
        let mut now = Instant::now();
        let (mut browser, offer, pending) = browser_offer(now);
        let local: SocketAddr = "127.0.0.1:50000".parse().unwrap();
        let (mut gw, answer) = WebRtcPeer::answer(&offer, local, now).unwrap();
        assert!(answer.contains("a=ice-lite"), "{answer}");
        assert!(answer.contains("opus/48000"), "{answer}");
        assert!(
            answer.contains("127.0.0.1 50000"),
            "the host candidate: {answer}"
        );
        browser
            .rtc
            .sdp_api()
            .accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap())
            .unwrap();

        let events = run(&mut gw, &mut browser, &mut now, 2000, |_, _, _| {});
        assert!(gw.is_connected() && browser.connected);
        assert_eq!(
            events.iter().filter(|e| **e == LegEvent::Connected).count(),
            1
        );

        // One second of audio each way.
        let mut enc = CodecAdapter::new(Codec::Opus).unwrap();
        let mut browser_pt = None;
        let mut browser_time = 0u64;
        let events = run(&mut gw, &mut browser, &mut now, 1000, |gw, b, t| {
            assert!(gw.send_audio(t, &[g711::ULAW_SILENCE ^ 0x10; 160]));
            let writer = b.rtc.writer(b.mid).unwrap();
            let pt = *browser_pt.get_or_insert_with(|| {
                writer
                    .payload_params()
                    .find(|p| p.spec().codec == RtcCodec::Opus)
                    .unwrap()
                    .pt()
            });
            let frame = opus_frame(&mut enc, 8000);
            writer
                .write(
                    pt,
                    t,
                    MediaTime::new(browser_time, Frequency::FORTY_EIGHT_KHZ),
                    frame,
                )
                .unwrap();
            browser_time += 960;
        });
        let frames: Vec<&Vec<u8>> = events
            .iter()
            .filter_map(|e| match e {
                LegEvent::Audio(f) => Some(f),
                _ => None,
            })
            .collect();
        assert!(
            frames.len() >= 45,
            "{} frames from the browser",
            frames.len()
        );
        assert!(frames.iter().all(|f| f.len() == 160), "20 ms μ-law frames");
        let loud = frames
            .iter()
            .filter(|f| f.iter().any(|&b| b != g711::ULAW_SILENCE))
            .count();
        assert!(loud >= 40, "the browser's audio came through ({loud})");
        assert!(
            browser.received.len() >= 45,
            "{} Opus packets reached the browser",
            browser.received.len()
        );
        let steps: Vec<u64> = browser
            .received
            .windows(2)
            .map(|w| w[1].numer() - w[0].numer())
            .collect();
        assert!(steps.iter().all(|&s| s == 960), "48 kHz clock, 20 ms apart");
    }

    #[test]
    fn bad_offers_are_refused_with_the_reason() {
        let now = Instant::now();
        let local: SocketAddr = "127.0.0.1:50000".parse().unwrap();
        assert!(matches!(
            WebRtcPeer::answer("not sdp", local, now),
            Err(WebRtcError::BadOffer(_))
        ));
        let (_, offer, _) = browser_offer(now);
        let pcmu_only = offer
            .lines()
            .filter(|l| !l.to_ascii_lowercase().contains("opus"))
            .collect::<Vec<_>>()
            .join("\r\n");
        assert!(WebRtcPeer::answer(&pcmu_only, local, now).is_err());
        let huge = "a".repeat(MAX_OFFER_BYTES + 1);
        assert!(matches!(
            WebRtcPeer::answer(&huge, local, now),
            Err(WebRtcError::OversizedOffer(_))
        ));
    }

    #[test]
    fn a_peer_that_never_connects_gives_up_after_the_timeout() {
        let mut now = Instant::now();
        let (_browser, offer, _) = browser_offer(now);
        let local: SocketAddr = "127.0.0.1:50000".parse().unwrap();
        let (mut gw, _) = WebRtcPeer::answer(&offer, local, now).unwrap();
        let mut hangup = None;
        let limit = now + CONNECT_TIMEOUT * 2;
        while hangup.is_none() && now < limit {
            match gw.poll(now) {
                PeerOutput::Event(LegEvent::Hangup(cause)) => hangup = Some(cause),
                PeerOutput::Event(_) | PeerOutput::Transmit { .. } => {}
                PeerOutput::Wait(t) => {
                    now = t.max(now + Duration::from_millis(1));
                    gw.tick(now);
                }
            }
        }
        assert!(
            matches!(hangup, Some(HangupCause::Unreachable(ref why)) if why.contains("ICE/DTLS")),
            "{hangup:?}"
        );
        // Audio before connecting is dropped, not queued in the peer.
        assert!(!gw.send_audio(now, &[0xFF; 160]));
    }
}
