//! Human agents' SIP phones for the RTP relay mode: one UDP SIP socket answers
//! every INVITE the gateway sends with 200 OK (PCMU) on an RTP socket of its
//! own. A phone listens through the whisper until the first numbered caller
//! frame (the merge), then talks numbered frames back until the harness says
//! stop, and hangs up with a BYE — so the gateway ends the caller's dialog.

use crate::rtp_peer::{self, Outgoing, micros};
use crate::stats::{Stamps, number_of};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use warmline::legs::sip::message::{SipMessage, request, uri_of};

/// What one phone heard and said after the merge.
pub struct PhoneLog {
    /// Numbered caller frames heard (the first one is the merge).
    pub heard: Stamps,
    /// Frames it said, numbered from 0.
    pub said: Stamps,
}

/// The phones of one run.
pub struct Phones {
    /// Where their SIP socket listens (every agent's `sip_uri` points here).
    pub addr: SocketAddr,
    /// How many phones have heard the caller (merged).
    pub merged: Arc<AtomicUsize>,
    stop: watch::Sender<bool>,
    logs: mpsc::UnboundedReceiver<PhoneLog>,
    task: tokio::task::JoinHandle<()>,
}

impl Phones {
    /// Binds the SIP socket and answers INVITEs until dropped.
    pub async fn start(origin: Instant) -> Result<Phones, String> {
        let sip = Arc::new(
            UdpSocket::bind("127.0.0.1:0")
                .await
                .map_err(|e| e.to_string())?,
        );
        let addr = sip.local_addr().map_err(|e| e.to_string())?;
        let merged = Arc::new(AtomicUsize::new(0));
        let (stop, stop_rx) = watch::channel(false);
        let (log_tx, logs) = mpsc::unbounded_channel();
        let task = tokio::spawn(answer(sip, Arc::clone(&merged), stop_rx, log_tx, origin));
        Ok(Phones {
            addr,
            merged,
            stop,
            logs,
            task,
        })
    }

    /// Tells every phone to stop talking and hang up; collects what `calls`
    /// phones logged (fewer if some never merged within `wait`).
    pub async fn hang_up(mut self, calls: usize, wait: Duration) -> Vec<PhoneLog> {
        let _ = self.stop.send(true);
        let mut logs = Vec::new();
        while logs.len() < calls {
            match tokio::time::timeout(wait, self.logs.recv()).await {
                Ok(Some(log)) => logs.push(log),
                _ => break,
            }
        }
        self.task.abort();
        logs
    }
}

/// The SIP side: 200 OK to each new INVITE (the same 200 again for a
/// retransmission), 200 to BYE and CANCEL, ACKs and responses ignored.
async fn answer(
    sip: Arc<UdpSocket>,
    merged: Arc<AtomicUsize>,
    stop: watch::Receiver<bool>,
    logs: mpsc::UnboundedSender<PhoneLog>,
    origin: Instant,
) {
    let mut answered: HashMap<String, Vec<u8>> = HashMap::new();
    let mut buf = vec![0u8; 8192];
    while let Ok((len, from)) = sip.recv_from(&mut buf).await {
        let Ok(msg) = SipMessage::parse(&buf[..len]) else {
            continue;
        };
        if msg.code().is_some() {
            continue; // the answer to one of our BYEs
        }
        let reply = match msg.method() {
            "INVITE" => {
                if let Some(ok) = answered.get(msg.call_id()) {
                    let _ = sip.send_to(ok, from).await;
                    continue;
                }
                let n = answered.len();
                match pick_up(&sip, &msg, from, n, &merged, &stop, &logs, origin).await {
                    Ok(ok) => {
                        answered.insert(msg.call_id().to_string(), ok.clone());
                        ok
                    }
                    Err(e) => {
                        eprintln!("bench phone {n}: {e}");
                        msg.response(488, "Not Acceptable Here", Some("phone"))
                            .to_bytes()
                    }
                }
            }
            "BYE" | "CANCEL" => msg.response(200, "OK", None).to_bytes(),
            _ => continue,
        };
        let _ = sip.send_to(&reply, from).await;
    }
}

/// Answers one INVITE: binds the phone's RTP socket and starts its media.
/// Returns the 200 OK.
#[allow(clippy::too_many_arguments)]
async fn pick_up(
    sip: &Arc<UdpSocket>,
    invite: &SipMessage,
    gateway: SocketAddr,
    n: usize,
    merged: &Arc<AtomicUsize>,
    stop: &watch::Receiver<bool>,
    logs: &mpsc::UnboundedSender<PhoneLog>,
    origin: Instant,
) -> Result<Vec<u8>, String> {
    let remote = warmline::legs::sip::sdp::negotiate(&invite.body)
        .map_err(|e| format!("bad offer: {e}"))?
        .remote;
    let rtp = Arc::new(
        UdpSocket::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?,
    );
    let port = rtp.local_addr().map_err(|e| e.to_string())?.port();
    let local = sip.local_addr().map_err(|e| e.to_string())?;
    let tag = format!("phone{n}");
    let ok = invite
        .response(200, "OK", Some(&tag))
        .with("Contact", format!("<sip:phone{n}@{local}>"))
        .with_body(
            "application/sdp",
            Outgoing::NumberedPcmu.sdp(port, n as u64).into_bytes(),
        );
    // Our BYE later: From is the 200's To (with our tag), To is the INVITE's From.
    let bye = request(
        "BYE",
        uri_of(invite.header("Contact").unwrap_or("")),
        "UDP",
        local,
        &format!("phonebye{n}"),
        ok.header("To").unwrap_or(""),
        invite.header("From").unwrap_or(""),
        invite.call_id(),
        1,
    )
    .to_bytes();
    let (sip, merged, stop, logs) = (
        Arc::clone(sip),
        Arc::clone(merged),
        stop.clone(),
        logs.clone(),
    );
    tokio::spawn(async move {
        let log = talk(rtp, remote, &merged, stop, origin).await;
        let _ = sip.send_to(&bye, gateway).await;
        let _ = logs.send(log);
    });
    Ok(ok.to_bytes())
}

/// The phone's media: listens until the first numbered (caller) frame, then
/// says numbered frames every 20 ms while hearing the caller, until `stop`.
async fn talk(
    rtp: Arc<UdpSocket>,
    remote: SocketAddr,
    merged: &AtomicUsize,
    stop: watch::Receiver<bool>,
    origin: Instant,
) -> PhoneLog {
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|&b| b).await;
    };
    // The whisper until the merge (at most two minutes). A whisper frame can
    // look numbered (speech fading into digital silence), so the merge is two
    // consecutive numbers in a row.
    let mut buf = vec![0u8; 2048];
    let mut previous: Option<(u32, f64)> = None;
    let first = loop {
        let got = tokio::select! {
            r = tokio::time::timeout(Duration::from_secs(120), rtp.recv_from(&mut buf)) => r,
            () = stopped(stop.clone()) => return PhoneLog { heard: Vec::new(), said: Vec::new() },
        };
        let Ok(Ok((len, _))) = got else {
            return PhoneLog {
                heard: Vec::new(),
                said: Vec::new(),
            };
        };
        let at = micros(origin);
        let number = warmline::media::rtp::RtpPacket::parse(&buf[..len])
            .ok()
            .and_then(|p| number_of(&p.payload));
        match (previous, number) {
            (Some((p, t)), Some(n)) if n == p.wrapping_add(1) => break [(p, t), (n, at)],
            (_, n) => previous = n.map(|n| (n, at)),
        }
    };
    // Only this caller's numbers count from now on.
    let base = first[0].0 / crate::NUMBERS_PER_CALLER * crate::NUMBERS_PER_CALLER;
    let callers_numbers = base..base + crate::NUMBERS_PER_CALLER;
    merged.fetch_add(1, Ordering::Relaxed);
    let start = tokio::time::Instant::now();
    let (said, heard) = tokio::join!(
        rtp_peer::send_until(
            Arc::clone(&rtp),
            remote,
            // A person talking: once their first words are heard the call is
            // steady and goes to the relay plane, as a real call would.
            Outgoing::SpokenPcmu,
            0..u32::MAX,
            start,
            origin,
            stopped(stop.clone()),
        ),
        rtp_peer::receive_until(
            Arc::clone(&rtp),
            stopped(stop.clone()),
            callers_numbers,
            origin
        ),
    );
    let heard = first
        .into_iter()
        .chain(heard.into_iter().filter_map(|(n, t)| Some((n?, t))))
        .collect();
    PhoneLog { heard, said }
}
