//! Admission control at the edge: a per-IP token bucket for new connections,
//! the `server.max_calls` ceiling and the drain after SIGTERM. Refusals are
//! immediate and explicit (429 / 503 with `Retry-After`), so calls already up
//! never slow down.

use crate::gateway::Shared;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Buckets kept at most; the fullest (idle) ones are dropped first.
const MAX_TRACKED_IPS: usize = 10_000;

/// Per-IP token buckets (sans-IO: time comes in as `now`).
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: HashMap<IpAddr, (f64, Instant)>,
}

impl RateLimiter {
    /// `rate` new connections per second sustained, `burst` at once.
    pub fn new(rate: f64, burst: u32) -> Self {
        RateLimiter {
            rate: rate.max(0.0),
            burst: f64::from(burst.max(1)),
            buckets: HashMap::new(),
        }
    }

    /// Whether `ip` may open one more connection at `now` (and counts it if so).
    /// A rate of 0 switches the limit off.
    pub fn admit(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        if self.buckets.len() >= MAX_TRACKED_IPS && !self.buckets.contains_key(&ip) {
            self.forget_full(now);
        }
        let (rate, burst) = (self.rate, self.burst);
        let (tokens, last) = self.buckets.entry(ip).or_insert((burst, now));
        *tokens = (*tokens + now.saturating_duration_since(*last).as_secs_f64() * rate).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Drops buckets that have refilled completely (they behave like new ones).
    fn forget_full(&mut self, now: Instant) {
        let (rate, burst) = (self.rate, self.burst);
        self.buckets.retain(|_, (tokens, last)| {
            *tokens + now.saturating_duration_since(*last).as_secs_f64() * rate < burst
        });
        if self.buckets.len() >= MAX_TRACKED_IPS {
            self.buckets.clear();
        }
    }
}

fn refuse(status: StatusCode, retry_after: &'static str, message: String) -> Response {
    (
        status,
        [(header::RETRY_AFTER, retry_after)],
        axum::Json(serde_json::json!({ "error": message })),
    )
        .into_response()
}

/// Why a new call is refused now, if it is.
pub fn call_refusal(shared: &Shared) -> Option<String> {
    if shared.draining.load(Ordering::SeqCst) {
        return Some("the gateway is draining for a restart; try another node".into());
    }
    let active = shared.registry.counts().active;
    let max = shared.config.server.max_calls;
    (active >= max).then(|| format!("{active} calls in progress (server.max_calls = {max})"))
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
            "1",
            format!(
                "too many new connections from {} (server.per_ip_rate)",
                peer.ip()
            ),
        );
    }
    let starts_call = matches!(request.uri().path(), "/media" | "/v1/webrtc/calls");
    if starts_call && let Some(why) = call_refusal(&shared) {
        tracing::warn!(ip = %peer.ip(), path = %request.uri().path(), reason = %why, "call refused");
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "5", why);
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_is_admitted_then_the_rate_refills() {
        let t = Instant::now();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let mut l = RateLimiter::new(2.0, 3);
        assert_eq!((0..5).filter(|_| l.admit(ip, t)).count(), 3);
        assert!(l.admit(other, t), "another address has its own bucket");
        assert!(!l.admit(ip, t + Duration::from_millis(400)));
        assert!(
            l.admit(ip, t + Duration::from_millis(600)),
            "one token after 0.5 s"
        );
        assert!(!l.admit(ip, t + Duration::from_millis(600)));
        // Idle long enough: the full burst again, never more.
        let later = t + Duration::from_secs(60);
        assert_eq!((0..5).filter(|_| l.admit(ip, later)).count(), 3);
    }

    #[test]
    fn tracking_is_bounded() {
        let t = Instant::now();
        let mut l = RateLimiter::new(1.0, 1);
        for i in 0..(MAX_TRACKED_IPS as u32 + 50) {
            l.admit(IpAddr::from(i.to_be_bytes()), t);
        }
        assert!(l.buckets.len() <= MAX_TRACKED_IPS);
    }
}
