//! The relay plane: a few OS threads, each with its own poll loop, that forward
//! RTP between the two legs of a merged SIP call (the caller's trunk and the
//! agent's phone) without the async runtime on the per-packet path.
//!
//! Once a call is merged and steady (the person has spoken, nobody supervises,
//! nobody is on hold, nothing is recorded), the call asks both RTP legs to
//! *park*: each hands its RTP socket, the peer it latched and the state of its
//! outgoing stream to a [`Pairing`]; the second to arrive attaches the pair to a
//! plane thread. From then on a datagram read from one socket is checked
//! (latched source, RTP, a negotiated payload type), its header rewritten in
//! place into the other leg's outgoing stream ([`Direction`]: SSRC, sequence and
//! timestamp continue where the leg's own sender stopped) and sent from the
//! other socket: one `recvfrom` and one `sendto`, no task, channel or
//! allocation per packet.
//!
//! Anything that needs the call again (a supervisor, hold, a re-INVITE, a
//! hang-up, media the call sends) detaches the pair: the plane deregisters
//! both sockets and gives each leg back its socket, where its stream stands and
//! what the plane counted ([`Resumed`]), and the legs carry on as before. A
//! side silent for its media timeout detaches the pair too, so the leg's own
//! timeout ends the call. The plane forwards only what the peers send: no frame
//! the gateway makes (a whisper above all) can take this path.
//!
//! Why threads with mio and not the runtime: docs/PERFORMANCE.md measured the
//! runtime's per-wake machinery (readiness, wakers, channels, timers) at ≈ 3 µs
//! per packet across the three tasks a relayed packet crossed; a poll loop
//! that owns its sockets pays one `epoll_wait` per batch of ready sockets.
//! io_uring would save the remaining syscalls but needs a newer kernel than
//! many SBC hosts run and another unsafe dependency; see docs/ARCHITECTURE.md.

use crate::legs::sip::sdp::Codec;
use mio::net::UdpSocket as MioSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, mpsc as std_mpsc};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// The waker's token (pairs use `slot * 2 + side`).
const WAKER: Token = Token(usize::MAX);
/// Datagrams read from one socket per readiness before the others get a turn.
const BURST: usize = 64;
/// How often a thread looks for silent sides when no packet wakes it.
const SWEEP: Duration = Duration::from_millis(500);

/// Packets forwarded by every plane thread (for `/metrics`).
static FORWARDED: AtomicU64 = AtomicU64::new(0);
/// Datagrams the plane dropped: a stranger's, not RTP, an unnegotiated type.
static DROPPED: AtomicU64 = AtomicU64::new(0);
/// Pairs the plane is forwarding now.
static ACTIVE: AtomicU64 = AtomicU64::new(0);

/// Where one leg's outgoing stream stands: what its next packet would carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamState {
    /// The leg's SSRC toward its peer.
    pub ssrc: u32,
    /// The next sequence number.
    pub seq: u16,
    /// The next timestamp.
    pub timestamp: u32,
    /// Packets sent so far (RTCP's sender count).
    pub packets: u32,
    /// Payload octets sent so far.
    pub octets: u32,
}

impl StreamState {
    /// Where `sender`'s stream stands.
    pub fn of(sender: &crate::media::rtp::RtpSender) -> StreamState {
        let (ssrc, seq, timestamp, packets, octets) = sender.state();
        StreamState {
            ssrc,
            seq,
            timestamp,
            packets,
            octets,
        }
    }
}

/// What a leg hands the plane when it parks.
#[derive(Debug)]
pub struct ParkedEnd {
    /// The leg's RTP socket (deregistered from the runtime).
    pub socket: std::net::UdpSocket,
    /// The latched peer: the only source accepted, and where packets go.
    pub peer: SocketAddr,
    /// The negotiated codec (both ends must agree to be paired).
    pub codec: Codec,
    /// Its payload type on this leg.
    pub audio_pt: u8,
    /// telephone-event's payload type on this leg, if negotiated.
    pub dtmf_pt: Option<u8>,
    /// Samples per 20 ms frame at the codec's clock.
    pub samples: u32,
    /// The leg's outgoing stream.
    pub stream: StreamState,
    /// No packet from the peer for this long detaches the pair (zero = never).
    pub media_timeout: Duration,
    /// Where the plane gives everything back.
    pub resume: oneshot::Sender<Resumed>,
}

impl ParkedEnd {
    /// Gives the leg back what it parked, untouched (the pair never formed).
    fn resume_unchanged(self) {
        let stream = self.stream;
        let _ = self.resume.send(Resumed {
            socket: self.socket,
            stream,
            counters: RelayCounters::default(),
            last_rx: None,
        });
    }
}

/// What the plane counted on one leg while it was parked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayCounters {
    /// Packets accepted from this leg's peer (and forwarded or dropped by type).
    pub received: u64,
    /// Packets sent to this leg's peer.
    pub sent: u64,
    /// Datagrams from an address other than the latched peer.
    pub foreign: u64,
    /// Datagrams that were not RTP, or of a payload type the other leg lacks.
    pub malformed: u64,
}

/// What a leg gets back when its pair is detached.
#[derive(Debug)]
pub struct Resumed {
    /// Its socket.
    pub socket: std::net::UdpSocket,
    /// Where its outgoing stream stands now (the plane's packets included).
    pub stream: StreamState,
    /// What the plane counted.
    pub counters: RelayCounters,
    /// When the peer's last packet arrived, if one did while parked.
    pub last_rx: Option<Instant>,
}

/// Why a datagram was not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Shorter than an RTP header, not version 2, or RTCP.
    NotRtp,
    /// A payload type the receiving leg did not negotiate.
    PayloadType(u8),
}

/// Rewrites packets from one leg's peer into the other leg's outgoing stream:
/// the payload type mapped, SSRC replaced, sequence and timestamp offset so they
/// continue where that stream stood. A new incoming SSRC rebases the offsets at
/// the stream's next values, so the receiver sees one continuous stream.
#[derive(Debug, Clone)]
pub(crate) struct Direction {
    audio: (u8, u8),
    dtmf: Option<(u8, u8)>,
    samples: u32,
    out: StreamState,
    base: Option<Base>,
}

#[derive(Debug, Clone, Copy)]
struct Base {
    ssrc: u32,
    seq_offset: u16,
    ts_offset: u32,
}

impl Direction {
    /// From a leg with `audio_in`/`dtmf_in` into a stream now at `out`.
    pub fn new(
        (audio_in, dtmf_in): (u8, Option<u8>),
        (audio_out, dtmf_out): (u8, Option<u8>),
        samples: u32,
        out: StreamState,
    ) -> Direction {
        Direction {
            audio: (audio_in, audio_out),
            dtmf: dtmf_in.zip(dtmf_out),
            samples,
            out,
            base: None,
        }
    }

    /// Rewrites `packet` in place; `Err` = drop it.
    pub fn rewrite(&mut self, packet: &mut [u8]) -> Result<(), Refused> {
        if packet.len() < 12 || packet[0] >> 6 != 2 || (200..=204).contains(&packet[1]) {
            return Err(Refused::NotRtp);
        }
        let pt = packet[1] & 0x7f;
        let (out_pt, is_audio) = if pt == self.audio.0 {
            (self.audio.1, true)
        } else if let Some((_, out)) = self.dtmf.filter(|(dtmf_in, _)| *dtmf_in == pt) {
            (out, false)
        } else {
            return Err(Refused::PayloadType(pt));
        };
        let seq = u16::from_be_bytes([packet[2], packet[3]]);
        let ts = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
        let ssrc = u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]);
        let base = match self.base {
            Some(b) if b.ssrc == ssrc => b,
            _ => {
                let b = Base {
                    ssrc,
                    seq_offset: self.out.seq.wrapping_sub(seq),
                    ts_offset: self.out.timestamp.wrapping_sub(ts),
                };
                self.base = Some(b);
                b
            }
        };
        let out_seq = seq.wrapping_add(base.seq_offset);
        let out_ts = ts.wrapping_add(base.ts_offset);
        // The stream's next values move past the newest packet (a late one
        // keeps its place and moves nothing).
        if (out_seq.wrapping_sub(self.out.seq) as i16) >= 0 {
            self.out.seq = out_seq.wrapping_add(1);
            let after = if is_audio {
                out_ts.wrapping_add(self.samples)
            } else {
                out_ts
            };
            if (after.wrapping_sub(self.out.timestamp) as i32) > 0 {
                self.out.timestamp = after;
            }
        }
        self.out.packets = self.out.packets.wrapping_add(1);
        self.out.octets = self
            .out
            .octets
            .wrapping_add(packet.len().saturating_sub(12) as u32);
        packet[1] = (packet[1] & 0x80) | out_pt;
        packet[2..4].copy_from_slice(&out_seq.to_be_bytes());
        packet[4..8].copy_from_slice(&out_ts.to_be_bytes());
        packet[8..12].copy_from_slice(&self.out.ssrc.to_be_bytes());
        Ok(())
    }

    /// The outgoing stream as it stands.
    pub fn stream(&self) -> StreamState {
        self.out
    }
}

/// Where a pair lives once attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PairHandle {
    thread: usize,
    slot: usize,
    generation: u64,
}

/// The meeting point of a call's two legs: the first to park waits in it, the
/// second attaches the pair to the plane. Dropped with one leg waiting (the
/// other leg could not park), it gives that leg back its socket.
#[derive(Debug, Default)]
pub struct Pairing {
    state: Mutex<PairingState>,
}

#[derive(Debug, Default)]
enum PairingState {
    #[default]
    Empty,
    One(Box<ParkedEnd>),
    Attached(PairHandle),
    Done,
}

impl Pairing {
    /// A leg parks here; the second one attaches the pair.
    pub fn deposit(&self, end: ParkedEnd) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        *state = match std::mem::take(&mut *state) {
            PairingState::Empty => PairingState::One(Box::new(end)),
            PairingState::One(first) => {
                let pair = Box::new((*first, end));
                let attached = match plane() {
                    Some(p) => p.attach(pair),
                    None => Err(pair),
                };
                match attached {
                    Ok(handle) => PairingState::Attached(handle),
                    Err(pair) => {
                        let (a, b) = *pair;
                        a.resume_unchanged();
                        b.resume_unchanged();
                        PairingState::Done
                    }
                }
            }
            other => {
                end.resume_unchanged();
                other
            }
        };
    }

    /// Ends the relaying (either leg, or the call): both legs get their
    /// sockets back. Idempotent.
    pub fn detach(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match std::mem::replace(&mut *state, PairingState::Done) {
            PairingState::One(end) => end.resume_unchanged(),
            PairingState::Attached(handle) => {
                if let Some(p) = plane() {
                    p.detach(handle);
                }
            }
            PairingState::Empty | PairingState::Done => {}
        }
    }
}

impl Drop for Pairing {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        if let PairingState::One(end) = std::mem::take(state) {
            end.resume_unchanged();
        }
    }
}

/// A pair for a thread: both ends, its slot and generation.
type Attachment = (Box<(ParkedEnd, ParkedEnd)>, usize, u64);

struct Worker {
    attach: std_mpsc::Sender<Attachment>,
    detach: std_mpsc::Sender<PairHandle>,
    waker: Waker,
    /// Free slots handed out by `attach` (the thread fills them).
    next_slot: Mutex<(Vec<usize>, usize)>,
}

/// The plane's threads.
pub(crate) struct Plane {
    workers: Vec<Worker>,
    next: AtomicUsize,
    generation: AtomicU64,
}

static PLANE: OnceLock<Option<Plane>> = OnceLock::new();

/// Starts the plane with `threads` poll threads (0 = no plane: merged calls are
/// relayed by their call task). Only the first call counts.
pub fn start(threads: usize) {
    PLANE.get_or_init(|| {
        if threads == 0 {
            return None;
        }
        match Plane::spawn(threads) {
            Ok(p) => {
                tracing::info!(threads, "RTP relay plane started");
                Some(p)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the RTP relay plane; merged calls are relayed by their call task");
                None
            }
        }
    });
}

/// The plane, if started.
fn plane() -> Option<&'static Plane> {
    PLANE.get().and_then(Option::as_ref)
}

/// Pairs relayed now, packets forwarded and datagrams dropped since start;
/// `None` without a plane.
pub fn figures() -> Option<(u64, u64, u64)> {
    plane().map(|_| {
        (
            ACTIVE.load(Ordering::Relaxed),
            FORWARDED.load(Ordering::Relaxed),
            DROPPED.load(Ordering::Relaxed),
        )
    })
}

/// Whether merged calls can be handed to the plane.
pub fn running() -> bool {
    plane().is_some()
}

impl Plane {
    fn spawn(threads: usize) -> std::io::Result<Plane> {
        let mut workers = Vec::with_capacity(threads);
        for i in 0..threads {
            let poll = Poll::new()?;
            let waker = Waker::new(poll.registry(), WAKER)?;
            let (attach, attachments) = std_mpsc::channel();
            let (detach, detachments) = std_mpsc::channel();
            std::thread::Builder::new()
                .name(format!("rtp-relay-{i}"))
                .spawn(move || run(i, poll, attachments, detachments))?;
            workers.push(Worker {
                attach,
                detach,
                waker,
                next_slot: Mutex::new((Vec::new(), 0)),
            });
        }
        Ok(Plane {
            workers,
            next: AtomicUsize::new(0),
            generation: AtomicU64::new(1),
        })
    }

    /// Hands a pair to a thread, or gives both ends back when they cannot be
    /// paired (different codecs, the thread gone).
    fn attach(
        &self,
        pair: Box<(ParkedEnd, ParkedEnd)>,
    ) -> Result<PairHandle, Box<(ParkedEnd, ParkedEnd)>> {
        let (a, b) = (&pair.0, &pair.1);
        if a.codec != b.codec || a.samples != b.samples {
            tracing::debug!(a = ?a.codec, b = ?b.codec, "legs with different codecs stay with the call");
            return Err(pair);
        }
        let thread = self.next.fetch_add(1, Ordering::Relaxed) % self.workers.len();
        let worker = &self.workers[thread];
        let slot = {
            let mut slots = worker.next_slot.lock().unwrap_or_else(|e| e.into_inner());
            match slots.0.pop() {
                Some(s) => s,
                None => {
                    slots.1 += 1;
                    slots.1 - 1
                }
            }
        };
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        match worker.attach.send((pair, slot, generation)) {
            Ok(()) => {
                let _ = worker.waker.wake();
                Ok(PairHandle {
                    thread,
                    slot,
                    generation,
                })
            }
            Err(std_mpsc::SendError((pair, ..))) => Err(pair),
        }
    }

    fn detach(&self, handle: PairHandle) {
        let Some(worker) = self.workers.get(handle.thread) else {
            return;
        };
        if worker.detach.send(handle).is_ok() {
            let _ = worker.waker.wake();
        }
    }

    fn free_slot(&self, thread: usize, slot: usize) {
        if let Some(w) = self.workers.get(thread) {
            w.next_slot
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .0
                .push(slot);
        }
    }
}

/// One side of an attached pair.
struct End {
    socket: MioSocket,
    peer: SocketAddr,
    /// Rewrites what this side's peer sends into the *other* side's stream.
    into_other: Direction,
    counters: RelayCounters,
    last_rx: Option<Instant>,
    media_timeout: Duration,
    resume: oneshot::Sender<Resumed>,
}

struct Pair {
    generation: u64,
    ends: [End; 2],
    attached: Instant,
}

/// One plane thread: its poll loop until the plane is dropped.
fn run(
    thread: usize,
    mut poll: Poll,
    attachments: std_mpsc::Receiver<Attachment>,
    detachments: std_mpsc::Receiver<PairHandle>,
) {
    let mut events = Events::with_capacity(256);
    let mut pairs: Vec<Option<Pair>> = Vec::new();
    let mut buf = [0u8; 2048];
    let mut tally = Tally::default();
    // Sockets left with datagrams after a burst: readiness is edge-triggered,
    // so they are read again at the next turn without waiting for an event.
    let mut unfinished: Vec<usize> = Vec::new();
    let mut again: Vec<usize> = Vec::new();
    let mut next_sweep = Instant::now() + SWEEP;
    loop {
        let timeout = if unfinished.is_empty() {
            next_sweep.saturating_duration_since(Instant::now())
        } else {
            Duration::ZERO
        };
        if let Err(e) = poll.poll(&mut events, Some(timeout)) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            tracing::error!(error = %e, "RTP relay plane: poll failed; its pairs go back to their calls");
            for slot in 0..pairs.len() {
                detach_slot(&poll, &mut pairs, slot, thread);
            }
            return;
        }
        again.clear();
        let ready = events
            .iter()
            .map(|e| e.token())
            .filter(|t| *t != WAKER)
            .map(|t| t.0);
        for token in unfinished.drain(..).chain(ready) {
            let (slot, side) = (token / 2, token % 2);
            if let Some(Some(pair)) = pairs.get_mut(slot)
                && forward(pair, side, &mut buf, &mut tally)
            {
                again.push(token);
            }
        }
        tally.flush();
        std::mem::swap(&mut unfinished, &mut again);
        unfinished.dedup();
        while let Ok((pair, slot, generation)) = attachments.try_recv() {
            attach_slot(&poll, &mut pairs, *pair, (slot, thread), generation);
        }
        loop {
            match detachments.try_recv() {
                Ok(handle) => {
                    let current = pairs
                        .get(handle.slot)
                        .and_then(Option::as_ref)
                        .is_some_and(|p| p.generation == handle.generation);
                    if current {
                        detach_slot(&poll, &mut pairs, handle.slot, thread);
                    }
                }
                Err(std_mpsc::TryRecvError::Empty) => break,
                Err(std_mpsc::TryRecvError::Disconnected) => {
                    for slot in 0..pairs.len() {
                        detach_slot(&poll, &mut pairs, slot, thread);
                    }
                    return;
                }
            }
        }
        let now = Instant::now();
        if now >= next_sweep {
            next_sweep = now + SWEEP;
            // A side silent past its media timeout: back to the legs, whose
            // own timeout ends the call.
            for slot in 0..pairs.len() {
                let silent = pairs[slot].as_ref().is_some_and(|p| {
                    p.ends.iter().any(|e| {
                        !e.media_timeout.is_zero()
                            && now.saturating_duration_since(e.last_rx.unwrap_or(p.attached))
                                >= e.media_timeout
                    })
                });
                if silent {
                    tracing::info!(
                        slot,
                        "a relayed side went silent; the pair goes back to its call"
                    );
                    detach_slot(&poll, &mut pairs, slot, thread);
                }
            }
        }
    }
}

/// Packets forwarded and dropped in one poll turn, added to the process-wide
/// counters once per turn (not per packet: the counters' cache line would
/// bounce between the plane's threads).
#[derive(Default)]
struct Tally {
    forwarded: u64,
    dropped: u64,
}

impl Tally {
    fn flush(&mut self) {
        if self.forwarded > 0 {
            FORWARDED.fetch_add(std::mem::take(&mut self.forwarded), Ordering::Relaxed);
        }
        if self.dropped > 0 {
            DROPPED.fetch_add(std::mem::take(&mut self.dropped), Ordering::Relaxed);
        }
    }
}

/// Reads what `side`'s socket has (up to [`BURST`]) and forwards it; true when
/// the burst ran out before the socket did.
fn forward(pair: &mut Pair, side: usize, buf: &mut [u8], tally: &mut Tally) -> bool {
    let (this, other) = match &mut pair.ends {
        [a, b] if side == 0 => (a, b),
        [a, b] => (b, a),
    };
    for _ in 0..BURST {
        let (len, from) = match this.socket.recv_from(buf) {
            Ok(r) => r,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            // ICMP errors (the peer's port closed) and EINTR surface here.
            Err(_) => continue,
        };
        if from != this.peer && from.ip() != this.peer.ip() {
            this.counters.foreign += 1;
            tally.dropped += 1;
            continue;
        }
        let packet = &mut buf[..len];
        if crate::media::rtp::is_rtcp(packet) {
            continue; // rtcp-mux: the legs report on their own RTCP ports
        }
        this.counters.received += 1;
        this.last_rx = Some(Instant::now());
        if this.into_other.rewrite(packet).is_err() {
            this.counters.malformed += 1;
            tally.dropped += 1;
            continue;
        }
        if other.socket.send_to(packet, other.peer).is_ok() {
            other.counters.sent += 1;
            tally.forwarded += 1;
        }
    }
    true
}

fn token_of(slot: usize, side: usize) -> usize {
    slot * 2 + side
}

/// Puts a pair in `slot` of `thread` and watches its sockets (or gives it
/// straight back when they cannot be watched).
fn attach_slot(
    poll: &Poll,
    pairs: &mut Vec<Option<Pair>>,
    (a, b): (ParkedEnd, ParkedEnd),
    (slot, thread): (usize, usize),
    generation: u64,
) {
    if pairs.len() <= slot {
        pairs.resize_with(slot + 1, || None);
    }
    let into_b = Direction::new(
        (a.audio_pt, a.dtmf_pt),
        (b.audio_pt, b.dtmf_pt),
        b.samples,
        b.stream,
    );
    let into_a = Direction::new(
        (b.audio_pt, b.dtmf_pt),
        (a.audio_pt, a.dtmf_pt),
        a.samples,
        a.stream,
    );
    let end = |p: ParkedEnd, into_other: Direction| End {
        socket: MioSocket::from_std(p.socket),
        peer: p.peer,
        into_other,
        counters: RelayCounters::default(),
        last_rx: None,
        media_timeout: p.media_timeout,
        resume: p.resume,
    };
    let mut pair = Pair {
        generation,
        ends: [end(a, into_b), end(b, into_a)],
        attached: Instant::now(),
    };
    // Counted now: a failed registration below detaches (and uncounts) it.
    ACTIVE.fetch_add(1, Ordering::Relaxed);
    for (side, e) in pair.ends.iter_mut().enumerate() {
        if let Err(err) = poll.registry().register(
            &mut e.socket,
            Token(token_of(slot, side)),
            Interest::READABLE,
        ) {
            tracing::warn!(error = %err, "RTP relay plane: cannot watch a socket; the pair stays with its call");
            pairs[slot] = Some(pair);
            detach_slot(poll, pairs, slot, thread);
            return;
        }
    }
    // What queued while the legs were parking is reported as readable at
    // registration, and read at the next turn.
    pairs[slot] = Some(pair);
}

/// Gives both legs of the pair in `slot` their sockets back, and the slot to
/// `thread`'s free list (a later detach of the old pair carries the old
/// generation and is ignored).
fn detach_slot(poll: &Poll, pairs: &mut [Option<Pair>], slot: usize, thread: usize) {
    let Some(pair) = pairs.get_mut(slot).and_then(Option::take) else {
        return;
    };
    ACTIVE.fetch_sub(1, Ordering::Relaxed);
    if let Some(p) = plane() {
        p.free_slot(thread, slot);
    }
    let [a, b] = pair.ends;
    // a's stream is what b's direction wrote, and the other way round.
    let (a_stream, b_stream) = (b.into_other.stream(), a.into_other.stream());
    for (mut e, stream) in [(a, a_stream), (b, b_stream)] {
        let _ = poll.registry().deregister(&mut e.socket);
        let socket = std::net::UdpSocket::from(std::os::fd::OwnedFd::from(e.socket));
        let _ = e.resume.send(Resumed {
            socket,
            stream,
            counters: e.counters,
            last_rx: e.last_rx,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::rtp::{RtpPacket, RtpSender};

    fn stream(ssrc: u32, seq: u16, timestamp: u32) -> StreamState {
        StreamState {
            ssrc,
            seq,
            timestamp,
            packets: 7,
            octets: 7 * 160,
        }
    }

    fn packet(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
        RtpPacket {
            marker: false,
            payload_type: pt,
            seq,
            timestamp: ts,
            ssrc,
            payload: payload.to_vec(),
        }
        .to_bytes()
    }

    #[test]
    fn a_forwarded_stream_continues_the_receiving_legs_own_numbering() {
        // The leg toward B had sent up to seq 65534, ts 1000 under SSRC 0xB; the
        // caller's peer numbers its packets from 300 / 50_000 under SSRC 0xA.
        let mut d = Direction::new(
            (0, Some(101)),
            (0, Some(96)),
            160,
            stream(0xB, 65_534, 1000),
        );
        let mut out = Vec::new();
        for i in 0..4u16 {
            let mut p = packet(0, 300 + i, 50_000 + 160 * u32::from(i), 0xA, &[0x55; 160]);
            d.rewrite(&mut p).expect("forwarded");
            out.push(RtpPacket::parse(&p).expect("still RTP"));
        }
        let seqs: Vec<u16> = out.iter().map(|p| p.seq).collect();
        assert_eq!(seqs, [65_534, 65_535, 0, 1], "sequence continues and wraps");
        let ts: Vec<u32> = out.iter().map(|p| p.timestamp).collect();
        assert_eq!(ts, [1000, 1160, 1320, 1480]);
        assert!(
            out.iter()
                .all(|p| p.ssrc == 0xB && p.payload == [0x55; 160])
        );
        let s = d.stream();
        assert_eq!(
            (s.seq, s.timestamp, s.packets, s.octets),
            (2, 1640, 11, 11 * 160)
        );
    }

    #[test]
    fn a_new_source_ssrc_rebases_so_the_receiver_sees_one_stream() {
        let mut d = Direction::new((0, None), (0, None), 160, stream(9, 10, 0));
        let mut p = packet(0, 500, 8000, 1, &[1; 160]);
        d.rewrite(&mut p).expect("forwarded");
        // The caller's side restarts with another SSRC and numbers far away.
        let mut p = packet(0, 7, 123_456, 2, &[1; 160]);
        d.rewrite(&mut p).expect("forwarded");
        let p = RtpPacket::parse(&p).expect("RTP");
        assert_eq!((p.seq, p.timestamp, p.ssrc), (11, 160, 9));
    }

    #[test]
    fn a_late_packet_keeps_its_place_and_moves_nothing() {
        let mut d = Direction::new((0, None), (0, None), 160, stream(9, 100, 0));
        for seq in [1u16, 2, 3] {
            d.rewrite(&mut packet(0, seq, u32::from(seq) * 160, 1, &[0; 160]))
                .expect("forwarded");
        }
        let before = d.stream();
        let mut late = packet(0, 2, 320, 1, &[0; 160]);
        d.rewrite(&mut late).expect("forwarded");
        assert_eq!(RtpPacket::parse(&late).expect("RTP").seq, 101);
        assert_eq!(
            (d.stream().seq, d.stream().timestamp),
            (before.seq, before.timestamp)
        );
    }

    #[test]
    fn payload_types_are_mapped_and_anything_else_is_refused() {
        let mut d = Direction::new((8, Some(101)), (0, Some(96)), 160, stream(9, 0, 0));
        let mut audio = packet(8, 1, 0, 1, &[0; 160]);
        d.rewrite(&mut audio).expect("audio");
        assert_eq!(RtpPacket::parse(&audio).expect("RTP").payload_type, 0);
        let mut digit = packet(101, 2, 160, 1, &[5, 10, 0, 160]);
        d.rewrite(&mut digit).expect("digit");
        assert_eq!(RtpPacket::parse(&digit).expect("RTP").payload_type, 96);
        assert_eq!(
            d.rewrite(&mut packet(13, 3, 320, 1, &[0; 2])),
            Err(Refused::PayloadType(13)),
            "comfort noise the other leg never negotiated"
        );
        assert_eq!(d.rewrite(&mut [0x80, 0]), Err(Refused::NotRtp));
        let mut rtcp = vec![0x80, 200, 0, 6, 0, 0, 0, 1, 0, 0, 0, 0];
        assert_eq!(d.rewrite(&mut rtcp), Err(Refused::NotRtp));
        let mut v1 = packet(8, 4, 0, 1, &[0; 10]);
        v1[0] = 0x40;
        assert_eq!(d.rewrite(&mut v1), Err(Refused::NotRtp));
    }

    fn end(
        socket: std::net::UdpSocket,
        peer: SocketAddr,
        ssrc: u32,
    ) -> (ParkedEnd, oneshot::Receiver<Resumed>) {
        let (resume, rx) = oneshot::channel();
        socket.set_nonblocking(true).expect("nonblocking");
        let sender = RtpSender::new(ssrc, 1000, 20_000);
        (
            ParkedEnd {
                socket,
                peer,
                codec: Codec::Pcmu,
                audio_pt: 0,
                dtmf_pt: Some(101),
                samples: 160,
                stream: StreamState::of(&sender),
                media_timeout: Duration::from_secs(60),
                resume,
            },
            rx,
        )
    }

    fn udp() -> std::net::UdpSocket {
        std::net::UdpSocket::bind("127.0.0.1:0").expect("bind")
    }

    #[test]
    fn the_plane_forwards_between_real_sockets_drops_strangers_and_gives_everything_back() {
        start(1);
        assert!(running());
        // caller peer ⇄ [leg A socket | plane | leg B socket] ⇄ phone peer
        // The latch takes any port of the latched address (a NAT may move
        // it), so the stranger sends from another address.
        let stranger = std::net::UdpSocket::bind("127.0.0.2:0").expect("bind 127.0.0.2");
        let (caller, phone) = (udp(), udp());
        let (leg_a, leg_b) = (udp(), udp());
        let (a_addr, b_addr) = (
            leg_a.local_addr().expect("addr"),
            leg_b.local_addr().expect("addr"),
        );
        let (a, mut a_rx) = end(leg_a, caller.local_addr().expect("addr"), 0xA);
        let (b, mut b_rx) = end(leg_b, phone.local_addr().expect("addr"), 0xB);
        // Sent before the pair forms: waits in the socket, forwarded after.
        caller
            .send_to(&packet(0, 1, 0, 77, &[1; 160]), a_addr)
            .expect("send");
        let pairing = Pairing::default();
        pairing.deposit(a);
        assert!(
            a_rx.try_recv().is_err(),
            "the first leg waits for the second"
        );
        pairing.deposit(b);
        phone
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        caller
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let mut buf = [0u8; 2048];
        for i in 2..=5u16 {
            caller
                .send_to(
                    &packet(0, i, u32::from(i - 1) * 160, 77, &[i as u8; 160]),
                    a_addr,
                )
                .expect("send");
        }
        stranger
            .send_to(&packet(0, 9, 0, 66, &[0xEE; 160]), a_addr)
            .expect("send");
        let mut got = Vec::new();
        for _ in 0..5 {
            let (n, from) = phone.recv_from(&mut buf).expect("forwarded to the phone");
            assert_eq!(from, b_addr, "sent from leg B's own socket");
            got.push(RtpPacket::parse(&buf[..n]).expect("RTP"));
        }
        let seqs: Vec<u16> = got.iter().map(|p| p.seq).collect();
        assert_eq!(seqs, [1000, 1001, 1002, 1003, 1004]);
        assert!(got.iter().all(|p| p.ssrc == 0xB && p.payload[0] != 0xEE));
        // And back: the phone speaks, the caller hears it from leg A's socket.
        phone
            .send_to(&packet(0, 40, 0, 88, &[7; 160]), b_addr)
            .expect("send");
        let (n, from) = caller.recv_from(&mut buf).expect("forwarded to the caller");
        assert_eq!(from, a_addr);
        let back = RtpPacket::parse(&buf[..n]).expect("RTP");
        assert_eq!((back.ssrc, back.seq), (0xA, 1000));
        // Detach: both legs get their sockets and where their streams stand.
        pairing.detach();
        let wait = |rx: &mut oneshot::Receiver<Resumed>| {
            let until = Instant::now() + Duration::from_secs(2);
            loop {
                if let Ok(r) = rx.try_recv() {
                    return r;
                }
                assert!(Instant::now() < until, "the plane gave the socket back");
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        let (ra, rb) = (wait(&mut a_rx), wait(&mut b_rx));
        assert_eq!(ra.counters.received, 5);
        assert_eq!(ra.counters.foreign, 1, "the stranger's packet");
        assert_eq!(ra.counters.sent, 1);
        assert_eq!(rb.counters.sent, 5);
        assert_eq!((rb.stream.seq, rb.stream.packets), (1005, 5));
        assert_eq!((ra.stream.seq, ra.stream.packets), (1001, 1));
        assert_eq!(ra.socket.local_addr().expect("addr"), a_addr);
        assert!(ra.last_rx.is_some());
        // After the detach nothing is forwarded any more.
        caller
            .send_to(&packet(0, 6, 800, 77, &[6; 160]), a_addr)
            .expect("send");
        phone
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        assert!(phone.recv_from(&mut buf).is_err(), "forwarded after detach");
    }

    #[test]
    fn legs_with_different_codecs_or_a_missing_partner_get_their_sockets_back() {
        start(1);
        let (mut a, mut a_rx) = end(udp(), "127.0.0.1:9".parse().expect("addr"), 1);
        let (b, mut b_rx) = end(udp(), "127.0.0.1:9".parse().expect("addr"), 2);
        a.codec = Codec::Opus;
        a.samples = 960;
        let pairing = Pairing::default();
        pairing.deposit(a);
        pairing.deposit(b);
        assert!(a_rx.try_recv().is_ok() && b_rx.try_recv().is_ok());
        // One leg parks, the other never does: dropping the offer returns it.
        let (c, mut c_rx) = end(udp(), "127.0.0.1:9".parse().expect("addr"), 3);
        let pairing = Pairing::default();
        pairing.deposit(c);
        assert!(c_rx.try_recv().is_err());
        drop(pairing);
        let r = c_rx.try_recv().expect("given back");
        assert_eq!(r.counters, RelayCounters::default());
    }
}
