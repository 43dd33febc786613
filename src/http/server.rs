//! The HTTP/WebSocket accept loop: hyper's HTTP/1 connection with a header
//! timeout (which is also the idle keep-alive limit), and a connection table
//! that bounds open connections per IP address and in all, so a peer that opens
//! connections and sends nothing, or sends one header byte a minute, can never
//! hold the file descriptors that calls, SIP, RTP and the health check need.
//!
//! A connection over a limit is closed at once and counted
//! (`warmline_peer_drops_total{peer="http"}`); one that stays silent past the
//! header timeout is closed by hyper. An upgraded WebSocket keeps its slot until
//! its socket closes (the slot travels inside the stream).

use crate::util::conn_table::{Refusal, SharedTable, Slot, lock};
use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// The server's connection limits and timeouts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServeLimits {
    /// Whole request head within this long (and idle keep-alive limit).
    pub header_timeout: Duration,
    /// Open connections per IP address (0 = no limit).
    pub per_ip: usize,
    /// Open connections in all.
    pub total: usize,
}

/// A TCP stream holding its connection slot until it is dropped.
struct Counted {
    tcp: TcpStream,
    _slot: Slot,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }
}

/// Serves `app` on `listener` until `stop` resolves, then lets connections in
/// progress finish their current request. `refused` counts each refusal.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServeLimits,
    refused: Arc<dyn Fn(Refusal) + Send + Sync>,
    stop: impl std::future::Future<Output = ()>,
) {
    let table = SharedTable::default();
    // Stop: every connection finishes the request in flight and closes; the
    // loop then waits until every connection task has dropped its `_alive`.
    let (stopping_tx, stopping_rx) = tokio::sync::watch::channel(false);
    let (alive_tx, mut alive_rx) = tokio::sync::mpsc::channel::<()>(1);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    tokio::pin!(stop);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors or a transient error: back off a
                    // moment instead of spinning (as axum::serve does).
                    tracing::warn!(error = %e, open = lock(&table).open(), "accept failed; retrying shortly");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let slot = match Slot::take(&table, peer.ip(), limits.per_ip, limits.total) {
            Ok(slot) => slot,
            Err(why) => {
                refused(why);
                tracing::debug!(ip = %peer.ip(), reason = why.as_str(), "connection refused");
                drop(tcp);
                continue;
            }
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let io = TokioIo::new(Counted { tcp, _slot: slot });
        let app = app.clone();
        let service = hyper::service::service_fn(
            move |mut request: hyper::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                let app = app.clone();
                async move {
                    use tower::ServiceExt;
                    app.oneshot(request.map(axum::body::Body::new)).await
                }
            },
        );
        let connection = http.serve_connection(io, service).with_upgrades();
        let mut stopping = stopping_rx.clone();
        let alive = alive_tx.clone();
        tokio::spawn(async move {
            let _alive = alive;
            tokio::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                _ = stopping.changed() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(%peer, error = %e, "HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    let _ = stopping_tx.send(true);
    drop(alive_tx);
    let _ = alive_rx.recv().await;
}

/// How many connections the process can hold: its file descriptor limit,
/// raised to the hard maximum first, less `headroom` for everything else.
pub(crate) fn connection_ceiling(configured: usize, headroom: usize) -> usize {
    if configured > 0 {
        return configured;
    }
    match crate::util::os::raise_to_hard() {
        Some(limit) => (limit as usize).saturating_sub(headroom).max(16),
        None => 4096,
    }
}
