//! HTTP routes: the Media Streams WebSocket, health, call inspection and the /v1 API.

pub mod api;
pub mod console;
pub mod limits;
pub(crate) mod server;
pub mod twilio_auth;

use crate::gateway::Shared;
use axum::Json;
use axum::Router;
use axum::extract::{Path, State, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::Arc;

/// The gateway's routes.
pub fn router(shared: Arc<Shared>) -> Router {
    let v1 = Router::new()
        .route("/v1/calls", get(api::list_calls))
        .route("/v1/calls/{id}", get(api::get_call))
        .route("/v1/calls/{id}/context", get(api::get_context))
        .route("/v1/calls/{id}/hint", axum::routing::post(api::send_hint))
        .route(
            "/v1/calls/{id}/return-to-ai",
            axum::routing::post(api::return_to_ai),
        )
        .route(
            "/v1/agents",
            get(api::list_agents).post(api::register_agent),
        )
        .route(
            "/v1/agents/{id}/status",
            axum::routing::post(api::set_agent_status),
        )
        .route("/v1/callbacks", get(api::list_callbacks))
        .route("/v1/supervision/calls", get(api::supervision_calls))
        .route("/v1/stats", get(api::stats))
        .route("/metrics", get(metrics))
        .route("/calls", get(list_calls))
        .route("/calls/{id}", get(call_timeline))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&shared),
            api::require_token,
        ));
    // Endpoints that open connections or calls: per-IP rate, call ceiling, drain.
    let admitted = Router::new()
        .route("/v1/agents/{id}/ws", get(api::agent_console))
        .route(
            "/v1/agents/{id}/ticket",
            axum::routing::post(api::agent_ticket),
        )
        .route("/media", get(media_stream))
        .route(
            "/v1/webrtc/calls",
            axum::routing::post(webrtc_call).layer(axum::extract::DefaultBodyLimit::max(
                crate::legs::webrtc::MAX_OFFER_BYTES + 4096,
            )),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&shared) as Arc<dyn limits::Admission>,
            limits::admit_connection,
        ));
    Router::new()
        .merge(v1)
        .merge(admitted)
        .route("/healthz", get(healthz))
        .route("/v1/webrtc/calls/{id}", get(webrtc_call_status))
        .route("/v1/handoff/{id}/context", get(api::get_signed_context))
        .route("/console", get(console::index))
        .route("/console/{file}", get(console::asset))
        .route(
            "/cluster/v1/calls/{call}/agents/{agent}",
            get(cluster_relay),
        )
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&shared),
            request_deadline,
        ))
        .with_state(shared)
}

/// A plain request (not a WebSocket upgrade) must be read and answered within
/// `server.http_request_timeout_ms`: a body sent a byte at a time gets 408
/// instead of holding its connection and handler.
async fn request_deadline(
    State(shared): State<Arc<Shared>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let upgrade = request.headers().contains_key(axum::http::header::UPGRADE);
    let limit = std::time::Duration::from_millis(shared.config.server.http_request_timeout_ms);
    if upgrade || limit.is_zero() {
        return next.run(request).await;
    }
    let path = request.uri().path().to_string();
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            tracing::warn!(%path, timeout_ms = limit.as_millis() as u64, "request not completed in time; 408");
            shared.metrics.peer_drops("http", "request_timeout", 1);
            api::error(
                StatusCode::REQUEST_TIMEOUT,
                "the request was not completed in time (server.http_request_timeout_ms)",
            )
        }
    }
}

/// `GET /cluster/v1/calls/{call}/agents/{agent}`: another node's agent won the
/// accept of a call held here and connects to its audio (cluster secret required).
async fn cluster_relay(
    ws: WebSocketUpgrade,
    Path((call, agent)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
    State(shared): State<Arc<Shared>>,
) -> Response {
    let Some(cluster) = shared.cluster.clone() else {
        return api::error(StatusCode::NOT_FOUND, "this node is not in a cluster");
    };
    let presented = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !cluster.secret_matches(presented) {
        tracing::warn!(%call, %agent, "cluster relay refused: wrong or missing cluster secret");
        return api::error(StatusCode::UNAUTHORIZED, "wrong or missing cluster secret");
    }
    ws.max_message_size(64 * 1024)
        .on_upgrade(move |socket| crate::cluster::relay::serve(socket, shared, call, agent))
}

/// `ok`, or 503 `draining` once SIGTERM was received (load balancers move away).
/// A degraded part is said after `ok` (`ok; monitor: phrase rules only (…)`).
async fn healthz(State(shared): State<Arc<Shared>>) -> Response {
    if shared.draining.load(std::sync::atomic::Ordering::SeqCst) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining").into_response()
    } else if let crate::monitor::TurnClassifier::Rules { .. } = shared.classifier {
        format!("ok; monitor: {}", shared.classifier.describe()).into_response()
    } else {
        "ok".into_response()
    }
}

/// Prometheus text format, version 0.0.4.
async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        shared.render_metrics(),
    )
        .into_response()
}

async fn media_stream(
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
    State(shared): State<Arc<Shared>>,
    headers: axum::http::HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    if let Err(why) = twilio_auth::check_upgrade(&shared.config.server, &headers, &uri) {
        return (
            StatusCode::FORBIDDEN,
            Json(serde_json::json!({ "error": why })),
        )
            .into_response();
    }
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    // The hard cap protects memory; messages between the configured limit and
    // this cap are refused one by one with a logged error and the call stays up.
    let hard_cap = shared.config.server.max_message_bytes * 4;
    ws.max_message_size(hard_cap)
        .max_frame_size(hard_cap)
        .read_buffer_size(crate::legs::WS_READ_BUFFER)
        .on_upgrade(move |socket| async move {
            let calls: Arc<dyn crate::legs::CallStarter> = Arc::clone(&shared) as _;
            crate::legs::twilio::serve_stream(socket, &shared.config.server, calls).await
        })
}

/// `POST /v1/webrtc/calls` body: a browser caller's offer.
#[derive(Debug, serde::Deserialize)]
struct BrowserOffer {
    /// The SDP offer (with its ICE candidates gathered).
    sdp: String,
    /// Becomes the call's `customParameters`.
    #[serde(default)]
    parameters: std::collections::BTreeMap<String, String>,
    /// A number the caller typed to be called back on (the page asks for it).
    #[serde(default, rename = "callbackNumber")]
    callback_number: Option<String>,
}

/// The header a browser caller's page sends its `statusToken` in.
const CALLER_TOKEN_HEADER: &str = "x-call-token";

/// `GET /v1/webrtc/calls/{id}`: where a browser caller is, for their page:
/// `{stage, waitedSeconds?, estimatedWaitSeconds?}`; a call that is over is
/// `{"stage": "ended"}`. Only with the call's `statusToken` (from the answer
/// to `POST /v1/webrtc/calls`) in `X-Call-Token`: without it, or with another
/// call's, the answer is the same 404 as for a call that never existed, so
/// guessing ids tells nothing about anyone's calls.
async fn webrtc_call_status(
    Path(id): Path<String>,
    State(shared): State<Arc<Shared>>,
    headers: axum::http::HeaderMap,
) -> Response {
    let token = headers
        .get(CALLER_TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let known =
        shared.registry.active_call(&id).is_some() || shared.registry.timeline(&id).is_some();
    if !known || !shared.context_urls.caller_token_matches(&id, token) {
        tracing::debug!(call_id = %id, token = !token.is_empty(), "caller status refused");
        return (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({"error": "no such call for this X-Call-Token"})),
        )
            .into_response();
    }
    let Some(call) = shared.registry.active_call(&id) else {
        return Json(serde_json::json!({ "stage": "ended" })).into_response();
    };
    let now = crate::util::unix_seconds(std::time::SystemTime::now());
    let mut body = serde_json::json!({ "stage": call.stage });
    if let Some(since) = call.waiting_since_unix {
        body["waitedSeconds"] = serde_json::json!((now - since).max(0.0).round() as u64);
    }
    if let Some(wait) = call.estimated_wait_seconds {
        body["estimatedWaitSeconds"] = serde_json::json!(wait);
    }
    Json(body).into_response()
}

/// `POST /v1/webrtc/calls`: a browser calls in; answers `{callId, sdp}`.
async fn webrtc_call(State(shared): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    use crate::legs::webrtc::{BrowserCallError, start_browser_call};
    let offer: BrowserOffer = match serde_json::from_slice(&body) {
        Ok(o) => o,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(
                    serde_json::json!({"error": format!("expected {{\"sdp\": \"<offer>\"}}: {e}")}),
                ),
            )
                .into_response();
        }
    };
    let mut parameters = offer.parameters;
    let typed = offer
        .callback_number
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty());
    let callback_number = match typed.map(crate::legs::webrtc::phone_number) {
        None => None,
        Some(Some(number)) => Some(number),
        Some(None) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(serde_json::json!({"error": "callbackNumber is not a phone number (7 to 15 digits, an optional leading +)"})),
            )
                .into_response();
        }
    };
    parameters.retain(|k, _| k != "from");
    let shared_for_token = Arc::clone(&shared);
    let leg = crate::legs::webrtc::BrowserCalls {
        config: &shared.config.webrtc,
        active: Arc::clone(&shared.webrtc_calls),
        calls: Arc::clone(&shared) as _,
    };
    match start_browser_call(leg, &offer.sdp, parameters, callback_number).await {
        Ok((call_id, sdp)) => {
            let token = shared_for_token.context_urls.caller_token(&call_id);
            Json(serde_json::json!({"callId": call_id, "type": "answer", "sdp": sdp, "statusToken": token}))
                .into_response()
        }
        Err(e) => {
            let status = match e {
                BrowserCallError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
                BrowserCallError::Setup(
                    crate::legs::webrtc::WebRtcError::Bind { .. }
                    | crate::legs::webrtc::WebRtcError::Config(_),
                ) => StatusCode::INTERNAL_SERVER_ERROR,
                BrowserCallError::Setup(_) => StatusCode::BAD_REQUEST,
            };
            tracing::warn!(error = %e, "browser call refused");
            (status, Json(serde_json::json!({"error": e.to_string()}))).into_response()
        }
    }
}

async fn list_calls(State(shared): State<Arc<Shared>>) -> Response {
    let finished: Vec<serde_json::Value> = shared
        .registry
        .finished()
        .iter()
        .map(|t| {
            serde_json::json!({
                "call_id": t.call_id,
                "started_unix": t.started_unix,
                "events": t.events.len(),
                "end": t.end_reason(),
            })
        })
        .collect();
    Json(serde_json::json!({
        "counts": shared.registry.counts(),
        "active": shared.registry.active(),
        "finished": finished,
    }))
    .into_response()
}

async fn call_timeline(Path(id): Path<String>, State(shared): State<Arc<Shared>>) -> Response {
    match shared.registry.timeline(&id) {
        Some(t) => Json(t.as_ref().clone()).into_response(),
        None if shared.registry.active().iter().any(|c| c.call_id == id) => (
            StatusCode::CONFLICT,
            Json(serde_json::json!({"error": "call in progress; timeline is available when it ends"})),
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({"error": format!("no call with id {id:?}")})),
        )
            .into_response(),
    }
}
