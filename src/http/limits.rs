//! Admission control at the edge: a per-IP token bucket for new connections,
//! the `server.max_calls` ceiling and the drain after SIGTERM. Refusals are
//! immediate and explicit (429 / 503 with `Retry-After`), so calls already up
//! never slow down.

use crate::gateway::Shared;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

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
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    let admitted = shared
        .ip_limiter
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .admit(peer.ip(), Instant::now());
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
    if starts_call && let Some(why) = shared.call_refusal() {
        tracing::warn!(ip = %peer.ip(), path = %request.uri().path(), reason = %why, "call refused");
        return refuse(StatusCode::SERVICE_UNAVAILABLE, 5, why);
    }
    next.run(request).await
}
