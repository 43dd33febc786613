//! The SIP endpoint: owns the UDP socket and the TCP listener, parses what
//! arrives, answers what needs no dialog (OPTIONS, stray BYE/CANCEL, bad
//! requests) and routes the rest by Call-ID to dialog tasks — new INVITEs start
//! a [`uas`](super::uas) dialog.

use super::digest::{DigestAuth, DigestError};
use super::message::{SipError, SipMessage, StartLine};
use super::rtp_leg::PortRange;
use crate::config::Config;
use crate::legs::desk::AgentDesk;
use crate::util::conn_table::{SharedTable, Slot};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;

/// Methods warmline handles.
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS";

/// How a message came in (and how its answer goes out).
#[derive(Debug, Clone)]
pub enum Transport {
    /// UDP from this address.
    Udp(SocketAddr),
    /// A TCP connection from this address, written through this channel.
    Tcp(SocketAddr, mpsc::Sender<Vec<u8>>),
}

impl Transport {
    /// The peer's address.
    pub fn peer(&self) -> SocketAddr {
        match self {
            Transport::Udp(a) | Transport::Tcp(a, _) => *a,
        }
    }

    /// "UDP" or "TCP", for Via headers.
    pub fn name(&self) -> &'static str {
        match self {
            Transport::Udp(_) => "UDP",
            Transport::Tcp(..) => "TCP",
        }
    }
}

/// A message for a dialog task.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// The message.
    pub msg: SipMessage,
    /// Where it came from.
    pub transport: Transport,
}

/// The SIP user agent's shared half.
#[derive(Debug)]
pub struct SipEndpoint {
    udp: UdpSocket,
    /// The bound address (UDP and TCP).
    pub local: SocketAddr,
    /// The address written in SDP and Contact.
    pub media_ip: std::net::IpAddr,
    /// RTP port pairs.
    pub ports: PortRange,
    dialogs: Mutex<HashMap<String, mpsc::Sender<Incoming>>>,
    /// Calls answered (200 sent) and not yet over: what `sip.max_calls` counts.
    established: std::sync::atomic::AtomicUsize,
    /// New INVITEs per source address (`sip.invite_rate`, `sip.invite_burst`).
    invites: Mutex<crate::util::RateLimiter>,
    /// Trunk credentials new INVITEs are challenged for (`sip.auth_user`).
    auth: Option<DigestAuth>,
    /// What the SIP user agent needs of the gateway.
    pub services: Arc<dyn SipServices>,
}

/// What the SIP user agent needs of the gateway (the composition root,
/// `gateway.rs`, implements it): the settings, persistence and metrics, the
/// gateway's admission of new calls, the [`CallStarter`](crate::legs::CallStarter)
/// a trunk call starts through, and the [`AgentDesk`] agents' phones sign in to.
pub trait SipServices: crate::legs::CallStarter + AgentDesk {
    /// The settings in force.
    fn config(&self) -> &Config;
    /// Persistence (media figures; the context a phone's INVITE carries).
    fn store(&self) -> &crate::store::Store;
    /// Live metrics.
    fn metrics(&self) -> &crate::metrics::Metrics;
    /// Why a new call is refused now, if it is (draining, `server.max_calls`).
    fn call_refusal(&self) -> Option<String>;
}

/// The SIP/TCP listener's connection limits (`[sip]`).
#[derive(Debug, Clone, Copy)]
struct TcpLimits {
    idle: std::time::Duration,
    message: std::time::Duration,
    per_ip: usize,
    total: usize,
}

/// One answered SIP call, counted toward `sip.max_calls` while it lives.
#[derive(Debug)]
pub(crate) struct EstablishedSlot(Arc<SipEndpoint>);

impl Drop for EstablishedSlot {
    fn drop(&mut self) {
        self.0
            .established
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The SIP endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum SipStartError {
    /// `sip.listen` or `sip.media_ip` is not an address.
    #[error("sip.{key} = {value:?} is not an address")]
    BadAddress {
        /// The key.
        key: &'static str,
        /// Its value.
        value: String,
    },
    /// The port is taken.
    #[error("cannot listen for SIP on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

impl SipEndpoint {
    /// Binds UDP and TCP on `sip.listen` and starts serving.
    pub async fn start(services: Arc<dyn SipServices>) -> Result<Arc<SipEndpoint>, SipStartError> {
        let config = &services.config().sip;
        let listen: SocketAddr = config
            .listen
            .parse()
            .map_err(|_| SipStartError::BadAddress {
                key: "listen",
                value: config.listen.clone(),
            })?;
        let udp = UdpSocket::bind(listen)
            .await
            .map_err(|source| SipStartError::Bind {
                addr: listen,
                source,
            })?;
        let local = udp.local_addr().map_err(|source| SipStartError::Bind {
            addr: listen,
            source,
        })?;
        let tcp = TcpListener::bind(local)
            .await
            .map_err(|source| SipStartError::Bind {
                addr: local,
                source,
            })?;
        let media_ip = if config.media_ip.is_empty() {
            local.ip()
        } else {
            config
                .media_ip
                .parse()
                .map_err(|_| SipStartError::BadAddress {
                    key: "media_ip",
                    value: config.media_ip.clone(),
                })?
        };
        let ports = PortRange::new(media_ip, config.rtp_port_min, config.rtp_port_max);
        let mut nonce_key = [0u8; 16];
        nonce_key[..8].copy_from_slice(&super::random_u64().to_le_bytes());
        nonce_key[8..].copy_from_slice(&super::random_u64().to_le_bytes());
        let auth = super::digest::DigestAuth::for_trunk(config, nonce_key);
        let endpoint = Arc::new(SipEndpoint {
            auth,
            udp,
            local,
            media_ip,
            ports,
            dialogs: Mutex::new(HashMap::new()),
            established: std::sync::atomic::AtomicUsize::new(0),
            invites: Mutex::new(crate::util::RateLimiter::new(
                config.invite_rate,
                config.invite_burst,
            )),
            services,
        });
        tokio::spawn(Arc::clone(&endpoint).serve_udp());
        tokio::spawn(Arc::clone(&endpoint).serve_tcp(tcp));
        super::agent_phone::spawn_all(&endpoint);
        tracing::info!(%local, "SIP listening on UDP and TCP");
        Ok(endpoint)
    }

    /// Sends a message the way `transport` says.
    pub async fn send(&self, msg: &SipMessage, transport: &Transport) {
        let bytes = msg.to_bytes();
        match transport {
            Transport::Udp(to) => {
                if let Err(e) = self.udp.send_to(&bytes, to).await {
                    tracing::warn!(%to, error = %e, "SIP send failed");
                }
            }
            Transport::Tcp(to, tx) => {
                if tx.send(bytes).await.is_err() {
                    tracing::warn!(%to, "SIP TCP connection is gone; message not sent");
                }
            }
        }
    }

    /// Routes messages with `call_id` to `tx` until [`unregister`](Self::unregister).
    pub fn register(&self, call_id: &str, tx: mpsc::Sender<Incoming>) {
        self.lock().insert(call_id.to_string(), tx);
    }

    /// Stops routing `call_id`.
    pub fn unregister(&self, call_id: &str) {
        self.lock().remove(call_id);
    }

    /// Stores an RTP leg's figures with its call.
    pub fn record_media(&self, call_id: &str, row: crate::store::MediaLegRow) {
        let leg = if row.leg == "caller" {
            "caller"
        } else {
            "agent"
        };
        self.services.metrics().rtp_leg(
            leg,
            u64::try_from(row.received).unwrap_or(0),
            u64::try_from(row.lost).unwrap_or(0),
            row.jitter_ms as f64 / 1000.0,
        );
        self.services.store().write(crate::store::Write::MediaLeg {
            call_id: call_id.to_string(),
            row,
        });
    }

    /// Dialogs in progress.
    pub fn dialogs(&self) -> usize {
        self.lock().len()
    }

    /// SIP calls answered and in progress.
    pub fn established(&self) -> usize {
        self.established.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Counts one answered call until the returned slot is dropped.
    pub(crate) fn establish(self: &Arc<Self>) -> EstablishedSlot {
        self.established
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        EstablishedSlot(Arc::clone(self))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, mpsc::Sender<Incoming>>> {
        self.dialogs.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn serve_udp(self: Arc<Self>) {
        let mut buf = vec![0u8; 65_536];
        loop {
            let (len, from) = match self.udp.recv_from(&mut buf).await {
                Ok(r) => r,
                Err(e) => {
                    // ICMP port unreachable surfaces here on some systems: not fatal.
                    tracing::debug!(error = %e, "SIP UDP receive error");
                    continue;
                }
            };
            let bytes = &buf[..len];
            if bytes.iter().all(|b| b.is_ascii_whitespace()) {
                continue; // keep-alive
            }
            self.handle(bytes, Transport::Udp(from)).await;
        }
    }

    async fn serve_tcp(self: Arc<Self>, listener: TcpListener) {
        let sip = &self.services.config().sip;
        let limits = TcpLimits {
            idle: std::time::Duration::from_secs(sip.tcp_idle_s),
            message: std::time::Duration::from_millis(sip.tcp_message_timeout_ms.max(1)),
            per_ip: sip.tcp_max_connections_per_ip,
            total: sip.tcp_max_connections.max(1),
        };
        let table = SharedTable::default();
        loop {
            let (stream, from) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "SIP/TCP accept failed; retrying shortly");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let slot = match Slot::take(&table, from.ip(), limits.per_ip, limits.total) {
                Ok(slot) => slot,
                Err(why) => {
                    self.services.metrics().peer_drops("sip", why.as_str(), 1);
                    tracing::debug!(%from, reason = why.as_str(), "SIP/TCP connection refused");
                    continue;
                }
            };
            let endpoint = Arc::clone(&self);
            tokio::spawn(async move {
                let _slot = slot;
                endpoint.serve_tcp_connection(stream, from, limits).await;
            });
        }
    }

    /// One SIP/TCP connection: messages framed by Content-Length; closed when
    /// idle for `sip.tcp_idle_s`, or when a message has not arrived whole within
    /// `sip.tcp_message_timeout_ms` of its first byte (a slow sender).
    async fn serve_tcp_connection(
        self: Arc<Self>,
        stream: tokio::net::TcpStream,
        from: SocketAddr,
        limits: TcpLimits,
    ) {
        let (mut read, mut write) = stream.into_split();
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(64);
        let writer = tokio::spawn(async move {
            while let Some(bytes) = rx.recv().await {
                if write.write_all(&bytes).await.is_err() {
                    break;
                }
            }
        });
        let mut pending = Vec::new();
        let mut buf = vec![0u8; 8192];
        // When the message now in `pending` started arriving.
        let mut message_started: Option<tokio::time::Instant> = None;
        'conn: loop {
            let deadline = match message_started {
                Some(at) => Some(at + limits.message),
                None if limits.idle.is_zero() => None,
                None => Some(tokio::time::Instant::now() + limits.idle),
            };
            let got = match deadline {
                Some(at) => match tokio::time::timeout_at(at, read.read(&mut buf)).await {
                    Ok(got) => got,
                    Err(_) => {
                        let why = if message_started.is_some() {
                            "a message did not arrive whole in time"
                        } else {
                            "idle"
                        };
                        tracing::debug!(%from, why, "closing SIP/TCP connection");
                        self.services.metrics().peer_drops("sip", "tcp_timeout", 1);
                        break;
                    }
                },
                None => read.read(&mut buf).await,
            };
            match got {
                Ok(0) | Err(_) => break,
                Ok(n) => pending.extend_from_slice(&buf[..n]),
            }
            loop {
                // CRLF keep-alives (RFC 5626 §3.5.1) between messages are not a message.
                let blank = pending
                    .iter()
                    .take_while(|b| **b == b'\r' || **b == b'\n')
                    .count();
                pending.drain(..blank);
                if pending.is_empty() {
                    message_started = None;
                    break;
                }
                message_started.get_or_insert_with(tokio::time::Instant::now);
                match SipMessage::parse_stream(&pending) {
                    Ok((_, used)) => {
                        let frame: Vec<u8> = pending.drain(..used).collect();
                        message_started = None;
                        self.handle(&frame, Transport::Tcp(from, tx.clone())).await;
                    }
                    Err(SipError::Incomplete) => break,
                    Err(e @ SipError::Oversized(_)) => {
                        tracing::warn!(%from, error = %e, "oversized SIP on TCP; answering 513 and closing the connection");
                        self.too_large(&pending, &Transport::Tcp(from, tx.clone()))
                            .await;
                        break 'conn;
                    }
                    Err(e) => {
                        tracing::warn!(%from, error = %e, "unreadable SIP on TCP; closing the connection");
                        break 'conn;
                    }
                }
            }
        }
        drop(tx);
        let _ = writer.await;
    }

    /// The 401 for a new INVITE without valid trunk credentials (`None`: let it in).
    /// Stateless: the nonce carries its own time and MAC, so a retransmitted
    /// INVITE just gets another 401 and the ACK for it is dropped like any stray ACK.
    fn challenge(&self, invite: &Incoming) -> Option<SipMessage> {
        let auth = self.auth.as_ref()?;
        let now = crate::util::unix_seconds(std::time::SystemTime::now()) as u64;
        let header = invite.msg.header("Authorization");
        let err = auth.verify(header, "INVITE", now).err()?;
        if err != DigestError::Missing {
            tracing::warn!(from = %invite.transport.peer(), error = %err, "SIP INVITE refused: trunk authentication failed");
        }
        let reply = invite
            .msg
            .response(401, "Unauthorized", Some("warmline"))
            .with(
                "WWW-Authenticate",
                auth.challenge(now, err == DigestError::Stale),
            );
        Some(reply)
    }

    /// `513 Message Too Large` (RFC 3261 §21.5.13) for a request over
    /// [`MAX_MESSAGE`](super::message::MAX_MESSAGE) whose headers can still be read.
    async fn too_large(&self, bytes: &[u8], transport: &Transport) {
        let Ok(head) = SipMessage::parse_head(bytes) else {
            return;
        };
        let answerable = matches!(head.start, StartLine::Request { .. })
            && head.method() != "ACK"
            && head.validate().is_ok();
        if answerable {
            let reply = head.response(513, "Message Too Large", None);
            self.send(&reply, transport).await;
        }
    }

    /// One message from the network.
    pub async fn handle(self: &Arc<Self>, bytes: &[u8], transport: Transport) {
        let msg = match SipMessage::parse_unchecked(bytes) {
            Ok(m) => m,
            Err(e @ SipError::Oversized(_)) => {
                tracing::warn!(from = %transport.peer(), error = %e, "oversized SIP refused");
                self.too_large(bytes, &transport).await;
                return;
            }
            Err(e) => {
                tracing::warn!(from = %transport.peer(), error = %e, "unreadable SIP dropped");
                return;
            }
        };
        if let Err(e) = msg.validate() {
            tracing::warn!(from = %transport.peer(), error = %e, "bad SIP message");
            if matches!(msg.start, StartLine::Request { .. })
                && msg.method() != "ACK"
                && msg.header("Via").is_some()
            {
                let reply = msg.response(400, &format!("Bad Request ({e})"), None);
                self.send(&reply, &transport).await;
            }
            return;
        }
        let call_id = msg.call_id().to_string();
        let dialog = self.lock().get(&call_id).cloned();
        if let Some(tx) = dialog {
            let incoming = Incoming { msg, transport };
            if tx.send(incoming).await.is_err() {
                self.unregister(&call_id);
            }
            return;
        }
        let StartLine::Request { method, .. } = &msg.start else {
            tracing::debug!(call_id = %call_id, code = ?msg.code(), "response for no dialog dropped");
            return;
        };
        let reply = match method.as_str() {
            "INVITE" if msg.tag("To").is_none() => {
                let incoming = Incoming { msg, transport };
                let max = self.services.config().sip.max_calls;
                let refusal = self.services.call_refusal().or_else(|| {
                    // Answered calls count toward the limit; attempts that never
                    // become calls (refused offers, unanswered, never ACKed) only
                    // toward a wider bound on pending dialogs.
                    if self.established() >= max {
                        Some("at sip.max_calls".to_string())
                    } else if self.dialogs() >= max.saturating_mul(4) + 64 {
                        Some("too many SIP dialogs pending".to_string())
                    } else {
                        None
                    }
                });
                if let Some(why) = refusal {
                    tracing::warn!(call_id = %call_id, reason = %why, "SIP call refused");
                    let reply = incoming
                        .msg
                        .response(503, "Service Unavailable", None)
                        .with("Retry-After", "5");
                    self.send(&reply, &incoming.transport).await;
                    return;
                }
                if let Some(reply) = self.challenge(&incoming) {
                    self.send(&reply, &incoming.transport).await;
                    return;
                }
                // Rate per source, spent only by INVITEs that passed authentication.
                let source = incoming.transport.peer().ip();
                let admitted = self
                    .invites
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .admit(source, std::time::Instant::now());
                if !admitted {
                    tracing::warn!(%source, call_id = %call_id, "SIP INVITE refused: over sip.invite_rate from this source");
                    let reply = incoming
                        .msg
                        .response(503, "Service Unavailable", None)
                        .with("Retry-After", "2");
                    self.send(&reply, &incoming.transport).await;
                    return;
                }
                super::uas::spawn(self, incoming);
                return;
            }
            "ACK" => return,
            "OPTIONS" => msg
                .response(200, "OK", Some("warmline"))
                .with("Allow", ALLOW)
                .with("Accept", "application/sdp"),
            "INVITE" | "BYE" | "CANCEL" => {
                msg.response(481, "Call/Transaction Does Not Exist", None)
            }
            _ => msg
                .response(405, "Method Not Allowed", None)
                .with("Allow", ALLOW),
        };
        self.send(&reply, &transport).await;
    }
}
