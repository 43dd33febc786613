//! The relay plane's steady state allocates nothing: a counting global
//! allocator (this test binary's own) sees no allocation while thousands of
//! RTP packets cross a pair of real sockets through the plane, both ways.
//! One test in this binary, so nothing else allocates meanwhile.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::UdpSocket;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use warmline::legs::sip::relay_plane::{self, Pairing, ParkedEnd, StreamState};
use warmline::legs::sip::sdp::Codec;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

struct Counting;

// SAFETY: every call is passed to the system allocator unchanged; the counter
// is an atomic that never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract is forwarded as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

fn end(
    socket: UdpSocket,
    peer: std::net::SocketAddr,
    ssrc: u32,
) -> (
    ParkedEnd,
    tokio::sync::oneshot::Receiver<relay_plane::Resumed>,
) {
    socket.set_nonblocking(true).expect("nonblocking");
    let (resume, rx) = tokio::sync::oneshot::channel();
    (
        ParkedEnd {
            socket,
            peer,
            codec: Codec::Pcmu,
            audio_pt: 0,
            dtmf_pt: Some(101),
            samples: 160,
            stream: StreamState {
                ssrc,
                seq: 1,
                timestamp: 0,
                packets: 0,
                octets: 0,
            },
            media_timeout: Duration::from_secs(60),
            resume,
        },
        rx,
    )
}

/// A PCMU packet numbered `n`, written into `packet` in place.
fn number(packet: &mut [u8; 172], n: u16) {
    packet[0] = 0x80;
    packet[1] = 0;
    packet[2..4].copy_from_slice(&n.to_be_bytes());
    packet[4..8].copy_from_slice(&(u32::from(n) * 160).to_be_bytes());
    packet[8..12].copy_from_slice(&0x1234_5678u32.to_be_bytes());
}

#[test]
fn the_relay_plane_forwards_packets_without_allocating() {
    relay_plane::start(1);
    let bind = || UdpSocket::bind("127.0.0.1:0").expect("bind");
    let (caller, phone, leg_a, leg_b) = (bind(), bind(), bind(), bind());
    let (a_addr, b_addr) = (
        leg_a.local_addr().expect("addr"),
        leg_b.local_addr().expect("addr"),
    );
    for s in [&caller, &phone] {
        s.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
    }
    let (a, _a_rx) = end(leg_a, caller.local_addr().expect("addr"), 0xA);
    let (b, _b_rx) = end(leg_b, phone.local_addr().expect("addr"), 0xB);
    let pairing = Pairing::default();
    pairing.deposit(a);
    pairing.deposit(b);

    let mut packet = [0x55u8; 172];
    let mut buf = [0u8; 2048];
    let mut exchange = |n: u16| {
        number(&mut packet, n);
        caller.send_to(&packet, a_addr).expect("send");
        let (len, _) = phone.recv_from(&mut buf).expect("the phone got it");
        assert_eq!(len, 172);
        phone.send_to(&packet, b_addr).expect("send");
        let (len, _) = caller.recv_from(&mut buf).expect("the caller got it");
        assert_eq!(len, 172);
    };
    // Warm up: the plane's first turns size its event and work lists.
    for n in 0..200 {
        exchange(n);
    }
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    const PACKETS: u16 = 5000;
    for n in 200..200 + PACKETS {
        exchange(n);
    }
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    println!(
        "{allocations} allocations for {} packets relayed ({:.4} per packet)",
        2 * u32::from(PACKETS),
        allocations as f64 / (2.0 * f64::from(PACKETS))
    );
    assert_eq!(allocations, 0, "the steady state allocated");
    pairing.detach();
}
