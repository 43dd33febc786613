//! Admission control at the edge: a per-IP token bucket for new connections,
//! the `server.max_calls` ceiling and the drain after SIGTERM. Refusals are
//! immediate and explicit (429 / 503 with `Retry-After`), so calls already up
//! never slow down.

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// What admission asks of the gateway (the composition root implements it).
pub trait Admission: Send + Sync {
    /// Whether a new connection from `ip` fits its token bucket at `now`
    /// (`server.per_ip_rate`, `per_ip_burst`); a token is taken when it does.
    fn admit_ip(&self, ip: std::net::IpAddr, now: Instant) -> bool;
    /// Why a new call is refused now, if it is (draining, or `server.max_calls` reached).
    fn call_refusal(&self) -> Option<String>;
}

/// An immediate refusal with `Retry-After` (seconds) and a JSON error.
pub(crate) fn refuse(status: StatusCode, retry_after_s: u64, message: String) -> Response {
    (
        status,
        [(header::RETRY_AFTER, retry_after_s.to_string())],
        axum::Json(serde_json::json!({ "error": message })),
    )
        .into_response()
}

/// Middleware for endpoints that open connections: per-IP rate, then (for
/// endpoints that start calls) the call ceiling and the drain.
pub async fn admit_connection(
    State(admission): State<Arc<dyn Admission>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let admitted = admission.admit_ip(peer.ip(), Instant::now());
    if !admitted {
        tracing::warn!(ip = %peer.ip(), path = %request.uri().path(), "connection refused: per-IP rate");
        return refuse(
            StatusCode::TOO_MANY_REQUESTS,
            1,
            format!(
                "too many new connections from {} (server.per_ip_rate)",
                peer.ip()
            ),
        );
    }
    let starts_call = matches!(request.uri().path(), "/media" | "/v1/webrtc/calls");
    if starts_call && let Some(why) = admission.call_refusal() {
        tracing::warn!(ip = %peer.ip(), path = %request.uri().path(), reason = %why, "call refused");
        return refuse(StatusCode::SERVICE_UNAVAILABLE, 5, why);
    }
    next.run(request).await
}
