//! Hostile SIP and RTP peers against a real gateway over real UDP sockets:
//! in-dialog requests from strangers, RTP from strangers, an SDP aimed at a
//! third party, a peer that goes silent, and offers warmline must not take.

mod support;

use std::net::SocketAddr;
use std::time::Duration;
use support::*;
use tokio::net::UdpSocket;
use warmline::call::timeline::EndReason;
use warmline::legs::media_streams::ProviderWriter;

/// A caller's SIP user agent, hand-written so it can misbehave.
struct Uac {
    sip: UdpSocket,
    rtp: UdpSocket,
    gateway: SocketAddr,
    call_id: String,
    to_tag: String,
    /// Where the gateway wants our RTP (its SDP answer).
    gateway_rtp: SocketAddr,
}

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

async fn recv(sock: &UdpSocket, within: Duration) -> Option<String> {
    let mut buf = vec![0u8; 65_536];
    match tokio::time::timeout(within, sock.recv_from(&mut buf)).await {
        Ok(Ok((n, _))) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        _ => None,
    }
}

/// The first final response (≥ 200) on `sock`.
async fn final_response(sock: &UdpSocket) -> String {
    loop {
        let reply = recv(sock, SOON).await.expect("an answer");
        let code: u16 = reply[8..11].parse().expect("status code");
        if code >= 200 {
            return reply;
        }
    }
}

fn sdp(media: SocketAddr) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n",
        ip = media.ip(),
        port = media.port()
    )
}

fn invite(
    from: SocketAddr,
    call_id: &str,
    from_tag: &str,
    cseq: u32,
    to: &str,
    body: &str,
) -> String {
    format!(
        "INVITE sip:ai@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK{cseq}{from_tag}\r\nFrom: <sip:caller@127.0.0.1>;tag={from_tag}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} INVITE\r\nContact: <sip:caller@{from}>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn request(
    method: &str,
    from: SocketAddr,
    call_id: &str,
    from_tag: &str,
    to_tag: &str,
    cseq: u32,
) -> String {
    format!(
        "{method} sip:warmline@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bK{method}{cseq}\r\nFrom: <sip:caller@127.0.0.1>;tag={from_tag}\r\nTo: <sip:ai@127.0.0.1>;tag={to_tag}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
}

impl Uac {
    /// Places a call whose SDP names `media_at` (our RTP socket when `None`).
    async fn call(gateway: SocketAddr, media_at: Option<SocketAddr>) -> Uac {
        let sip = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let rtp = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let me = sip.local_addr().expect("addr");
        let call_id = format!("hostile-{}@127.0.0.1", me.port());
        let body = sdp(media_at.unwrap_or(rtp.local_addr().expect("addr")));
        let msg = invite(me, &call_id, "callertag", 1, "<sip:ai@127.0.0.1>", &body);
        sip.send_to(msg.as_bytes(), gateway).await.expect("send");
        let ok = final_response(&sip).await;
        assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
        let to = header(&ok, "To").expect("To");
        let to_tag = to.split("tag=").nth(1).expect("to tag").to_string();
        let port: u16 = ok
            .lines()
            .find_map(|l| l.strip_prefix("m=audio "))
            .and_then(|m| m.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .expect("answer port");
        let uac = Uac {
            sip,
            rtp,
            gateway,
            call_id,
            to_tag,
            gateway_rtp: SocketAddr::new(gateway.ip(), port),
        };
        let ack = request("ACK", me, &uac.call_id, "callertag", &uac.to_tag, 1);
        uac.sip.send_to(ack.as_bytes(), gateway).await.expect("ack");
        uac
    }

    /// Sends `count` RTP packets (PCMU, 20 ms apart) from `from`.
    async fn send_rtp(&self, from: &UdpSocket, count: u16, seq0: u16) {
        for i in 0..count {
            let mut p = vec![0x80, 0x00];
            p.extend_from_slice(&(seq0 + i).to_be_bytes());
            p.extend_from_slice(&(u32::from(seq0 + i) * 160).to_be_bytes());
            p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
            p.extend_from_slice(&[0x55; 160]);
            from.send_to(&p, self.gateway_rtp).await.expect("rtp");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// RTP packets arriving on `sock` within `within`.
async fn count_rtp(sock: &UdpSocket, within: Duration) -> usize {
    let mut buf = vec![0u8; 2048];
    let deadline = tokio::time::Instant::now() + within;
    let mut n = 0;
    while let Ok(Ok(_)) = tokio::time::timeout_at(deadline, sock.recv_from(&mut buf)).await {
        n += 1;
    }
    n
}

/// The AI agent talks without pause: one 20 ms frame every 20 ms for `frames`.
fn agent_talks(
    mut agent: AgentPeer,
    stream_sid: String,
    frames: usize,
) -> tokio::task::JoinHandle<AgentPeer> {
    tokio::spawn(async move {
        let mut writer = ProviderWriter::new(stream_sid);
        for _ in 0..frames {
            agent.send(writer.media(&[0x20; 160])).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        agent
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_dialog_requests_with_the_wrong_tags_get_481_and_cannot_move_or_end_the_call() {
    let mut ai = RawAgent::start().await;
    let gw = gateway(&ai.url, |c| sip_gateway_config(c, 22_100)).await;
    let sip = gw.sip.as_ref().expect("sip").local;
    let uac = Uac::call(sip, None).await;
    let (agent, _start, stream_sid) = ai.accept().await;
    uac.send_rtp(&uac.rtp, 10, 1).await;

    let attacker = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let attacker_rtp = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let at = attacker.local_addr().expect("addr");
    // BYE: right Call-ID, guessed tags / no To tag.
    for (from_tag, to_tag) in [("guess", uac.to_tag.as_str()), ("callertag", "guess")] {
        let bye = request("BYE", at, &uac.call_id, from_tag, to_tag, 7);
        attacker.send_to(bye.as_bytes(), sip).await.expect("send");
        let reply = recv(&attacker, SOON).await.expect("answer");
        assert!(reply.starts_with("SIP/2.0 481"), "{reply}");
    }
    // re-INVITE moving the caller's media to the attacker.
    let to = format!("<sip:ai@127.0.0.1>;tag={}", uac.to_tag);
    let body = sdp(attacker_rtp.local_addr().expect("addr"));
    let reinvite = invite(at, &uac.call_id, "guess", 8, &to, &body);
    attacker
        .send_to(reinvite.as_bytes(), sip)
        .await
        .expect("send");
    let reply = final_response(&attacker).await;
    assert!(reply.starts_with("SIP/2.0 481"), "{reply}");

    // The call is still up, and its audio still goes to the caller only.
    let talking = agent_talks(agent, stream_sid, 50);
    let heard = count_rtp(&uac.rtp, Duration::from_millis(800)).await;
    assert!(heard >= 20, "the caller hears the agent ({heard} packets)");
    assert_eq!(
        count_rtp(&attacker_rtp, Duration::from_millis(300)).await,
        0
    );
    let _agent = talking.await.expect("agent");
    assert_eq!(gw.shared.registry.counts().active, 1, "the call survived");

    // The caller's own BYE still works.
    let me = uac.sip.local_addr().expect("addr");
    let bye = request("BYE", me, &uac.call_id, "callertag", &uac.to_tag, 9);
    uac.sip
        .send_to(bye.as_bytes(), uac.gateway)
        .await
        .expect("send");
    assert!(final_response(&uac.sip).await.starts_with("SIP/2.0 200"));
    let done = gw.shared.registry.wait_finished(1, SOON).await;
    assert_eq!(done[0].end_reason(), Some(&EndReason::CallerHangup));
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtp_from_a_stranger_who_sends_first_does_not_take_the_callers_audio() {
    let mut ai = RawAgent::start().await;
    let gw = gateway(&ai.url, |c| sip_gateway_config(c, 22_300)).await;
    let sip = gw.sip.as_ref().expect("sip").local;
    let uac = Uac::call(sip, None).await;
    let (agent, _start, stream_sid) = ai.accept().await;
    // A stranger floods the caller's RTP port before the caller says anything.
    let stranger = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    uac.send_rtp(&stranger, 20, 100).await;
    // Then the real caller (the SDP address) speaks.
    uac.send_rtp(&uac.rtp, 5, 1).await;
    let talking = agent_talks(agent, stream_sid, 40);
    let to_caller = count_rtp(&uac.rtp, Duration::from_millis(700)).await;
    let to_stranger = count_rtp(&stranger, Duration::from_millis(100)).await;
    assert!(
        to_caller >= 15,
        "the caller hears the agent ({to_caller} packets)"
    );
    assert_eq!(to_stranger, 0, "the stranger got the call's audio");
    drop(talking.await);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sdp_aimed_at_a_silent_third_party_gets_media_only_for_the_learning_window_then_the_call_times_out()
 {
    let mut ai = RawAgent::start().await;
    let gw = gateway(&ai.url, |c| {
        sip_gateway_config(c, 22_500);
        c.sip.rtp_learning_ms = 600;
        c.sip.media_timeout_ms = 2500;
    })
    .await;
    let sip = gw.sip.as_ref().expect("sip").local;
    let victim = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let uac = Uac::call(sip, Some(victim.local_addr().expect("addr"))).await;
    let (agent, _start, stream_sid) = ai.accept().await;
    let talking = agent_talks(agent, stream_sid, 100); // 2 s of agent speech
    let reflected = count_rtp(&victim, Duration::from_millis(2000)).await;
    // 600 ms of 20 ms frames is 30 packets, plus RTCP and scheduling slack.
    assert!(reflected <= 40, "the third party got {reflected} packets");
    drop(talking.await);
    // Nothing ever came from the caller's side: the call ends with a BYE.
    let bye = recv(&uac.sip, Duration::from_secs(4)).await.expect("a BYE");
    assert!(bye.starts_with("BYE "), "{bye}");
    let done = gw.shared.registry.wait_finished(1, SOON).await;
    assert!(
        matches!(done[0].end_reason(), Some(EndReason::MediaTimeout(_))),
        "{:?}",
        done[0].end_reason()
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_warmline_must_not_serve_get_488_and_oversized_messages_513() {
    let gw = gateway("ws://127.0.0.1:9/none", |c| sip_gateway_config(c, 22_700)).await;
    let sip = gw.sip.as_ref().expect("sip").local;
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let me = sock.local_addr().expect("addr");
    let offer = |c: &str, port: u16| {
        format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc={c}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
        )
    };
    for (n, (body, what)) in [
        (offer("IN IP4 127.0.0.1", 0), "port 0"),
        (offer("IN IP4 239.0.0.1", 4000), "multicast"),
        (offer("IN IP6 ff02::1", 4000), "IPv6 multicast"),
    ]
    .into_iter()
    .enumerate()
    {
        let msg = invite(me, &format!("bad-offer-{n}"), "t", 1, "<sip:ai@x>", &body);
        sock.send_to(msg.as_bytes(), sip).await.expect("send");
        let reply = final_response(&sock).await;
        assert!(reply.starts_with("SIP/2.0 488"), "{what}: {reply}");
        let tag = header(&reply, "To")
            .and_then(|t| t.split("tag=").nth(1))
            .unwrap_or("");
        let ack = request("ACK", me, &format!("bad-offer-{n}"), "t", tag, 1);
        sock.send_to(ack.as_bytes(), sip).await.expect("ack");
    }
    // A 20 KB SDP and a 60 KB datagram: 513 Message Too Large, not silence.
    for size in [20_000, 60_000] {
        let mut body = offer("IN IP4 127.0.0.1", 4000);
        while body.len() < size {
            body.push_str("a=x-padding:0123456789abcdef0123456789abcdef\r\n");
        }
        let msg = invite(me, &format!("big-{size}"), "t", 1, "<sip:ai@x>", &body);
        sock.send_to(msg.as_bytes(), sip).await.expect("send");
        let reply = recv(&sock, SOON).await.expect("an answer");
        assert!(reply.starts_with("SIP/2.0 513"), "{size}: {reply}");
    }
    assert_eq!(
        gw.shared.registry.counts().total,
        0,
        "none of them became a call"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_slow_and_too_many_sip_tcp_connections_are_closed() {
    let gw = gateway("ws://127.0.0.1:9/none", |c| {
        sip_gateway_config(c, 22_900);
        c.sip.tcp_idle_s = 1;
        c.sip.tcp_message_timeout_ms = 500;
        c.sip.tcp_max_connections_per_ip = 4;
    })
    .await;
    let sip = gw.sip.as_ref().expect("sip").local;
    let (idle_closed, keepalive_kept, slow_closed, over_closed) =
        tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let connect = || std::net::TcpStream::connect(sip).expect("connect");
            let mut idle = connect();
            // A connection sending CRLF keep-alives (RFC 5626) stays open.
            let mut alive = connect();
            let mut alive_writer = alive.try_clone().expect("clone");
            let keepalives = std::thread::spawn(move || {
                for _ in 0..10 {
                    std::thread::sleep(Duration::from_millis(300));
                    if alive_writer.write_all(b"\r\n\r\n").is_err() {
                        return false;
                    }
                }
                true
            });
            // A slow sender: one byte of an OPTIONS every 100 ms.
            let mut slow = connect();
            let started = std::time::Instant::now();
            let mut slow_closed = false;
            for b in b"OPTIONS sip:warmline@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP x\r\n".iter() {
                if slow.write_all(&[*b]).is_err() {
                    slow_closed = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
                if started.elapsed() > Duration::from_secs(2) {
                    break;
                }
            }
            let slow_closed =
                slow_closed || closed_by_peer_within(&mut slow, Duration::from_millis(300));
            // Four open from this address (idle, alive and these two; the slow
            // one is gone): a fifth is closed at once.
            let _third = connect();
            let _fourth = connect();
            let mut fifth = connect();
            let over_closed = closed_by_peer_within(&mut fifth, Duration::from_millis(300));
            std::thread::sleep(Duration::from_millis(1000).saturating_sub(started.elapsed()));
            let idle_closed = closed_by_peer_within(&mut idle, Duration::from_millis(800));
            let keepalive_kept = keepalives.join().expect("keep-alive thread")
                && !closed_by_peer_within(&mut alive, Duration::from_millis(200));
            (idle_closed, keepalive_kept, slow_closed, over_closed)
        })
        .await
        .expect("client thread");
    assert!(slow_closed, "a slow sender keeps its connection");
    assert!(over_closed, "a fifth connection from one address is kept");
    assert!(idle_closed, "an idle connection is kept");
    assert!(
        keepalive_kept,
        "a connection sending keep-alives was closed"
    );
    gw.shutdown().await;
}
