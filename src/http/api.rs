//! The `/v1` REST API: calls, their decisions and their handoff contexts,
//! behind a bearer token (`api.token`).

use crate::gateway::Shared;
use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

use crate::util::constant_time_eq;

/// Whether `given` is the configured API token. `configured` is the token
/// itself or, so that it need not be kept in clear at rest, `sha256:<hex>` of it.
/// Constant-time either way.
pub fn token_matches(configured: &str, given: &str) -> bool {
    match configured.strip_prefix("sha256:") {
        Some(hash) => {
            use sha2::Digest;
            let digest = hex::encode(sha2::Sha256::digest(given.as_bytes()));
            constant_time_eq(
                digest.as_bytes(),
                hash.trim().to_ascii_lowercase().as_bytes(),
            )
        }
        None => constant_time_eq(given.as_bytes(), configured.as_bytes()),
    }
}

/// Rejects requests without the configured bearer token (open when none is configured).
pub async fn require_token(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let expected = shared.config.api.token.as_str();
    if expected.is_empty() {
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(token) if token_matches(expected, token) => next.run(request).await,
        Some(_) => error(StatusCode::UNAUTHORIZED, "invalid bearer token"),
        None => error(
            StatusCode::UNAUTHORIZED,
            "missing bearer token: send Authorization: Bearer <api.token>",
        ),
    }
}

/// `GET /v1/calls`: recent calls, newest first.
pub async fn list_calls(State(shared): State<Arc<Shared>>) -> Response {
    match shared.store.list_calls(100).await {
        Ok(calls) => Json(serde_json::json!({
            "active": shared.registry.counts().active,
            "calls": calls,
        }))
        .into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// `GET /v1/calls/{id}`: one call with its decision and (once ended) its timeline.
pub async fn get_call(Path(id): Path<String>, State(shared): State<Arc<Shared>>) -> Response {
    match shared.store.call(&id).await {
        Ok(Some(call)) => {
            let timeline = shared.registry.timeline(&id);
            Json(serde_json::json!({ "call": call, "timeline": timeline.as_deref() }))
                .into_response()
        }
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no call with id {id:?}")),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// `GET /v1/calls/{id}/context`: the latest handoff context (camelCase JSON).
pub async fn get_context(Path(id): Path<String>, State(shared): State<Arc<Shared>>) -> Response {
    match shared.store.context(&id).await {
        Ok(Some(json)) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no context for call {id:?}")),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// Body of `POST /v1/calls/{id}/return-to-ai`.
#[derive(serde::Deserialize, Default)]
pub struct ReturnToAiBody {
    /// What the AI agent is told.
    #[serde(default)]
    note: Option<String>,
}

/// `POST /v1/calls/{id}/return-to-ai` `{"note": "…"}`: the caller goes back to
/// the AI agent, from a person (who is let go) or from the queue; the AI agent
/// is told in a `handoff_result`. 202 when asked of the call, 409 when the
/// caller is with the AI already or being called back, 404 for no live call.
pub async fn return_to_ai(
    Path(id): Path<String>,
    State(shared): State<Arc<Shared>>,
    body: Option<Json<ReturnToAiBody>>,
) -> Response {
    use crate::call::registry::CallerStage;
    let note = body.and_then(|Json(b)| b.note);
    match shared.registry.stage(&id) {
        None => return error(StatusCode::NOT_FOUND, format!("no live call {id:?}")),
        Some(stage @ (CallerStage::Assistant | CallerStage::Callback)) => {
            return error(
                StatusCode::CONFLICT,
                format!(
                    "call {id:?} is not with a person or waiting for one (stage {})",
                    stage.wire()
                ),
            );
        }
        Some(_) => {}
    }
    let request = crate::domain::CallControl::ReturnToAi {
        by: "api".into(),
        note,
    };
    match shared.registry.control(&id, request) {
        Ok(()) => (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({"callId": id, "returning": true})),
        )
            .into_response(),
        Err(message) => error(StatusCode::NOT_FOUND, message),
    }
}

/// Body of `POST /v1/calls/{id}/hint`.
#[derive(serde::Deserialize)]
pub struct HintBody {
    /// The hint.
    text: String,
    /// Who sends it (a supervisor's id; default `api`).
    #[serde(default)]
    supervisor: Option<String>,
}

/// `POST /v1/calls/{id}/hint` `{"text": "…", "supervisor": "sam"}`: coach the
/// AI agent of a call still with it; it gets a `supervisor_hint`, the caller
/// hears nothing. 202; 400 empty, 404 no live call, 409 not with the AI.
pub async fn send_hint(
    Path(id): Path<String>,
    State(shared): State<Arc<Shared>>,
    body: Result<Json<HintBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    use crate::call::registry::HintError;
    let body = match body {
        Ok(Json(b)) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let from = body
        .supervisor
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "api".into());
    match shared.registry.hint(&id, &from, &body.text) {
        Ok(()) => (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({"callId": id, "hint": "sent"})),
        )
            .into_response(),
        Err(e @ HintError::Empty) => error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e @ HintError::NoCall(_)) => error(StatusCode::NOT_FOUND, e.to_string()),
        Err(e @ HintError::NotWithAi { .. }) => error(StatusCode::CONFLICT, e.to_string()),
        Err(e @ HintError::Busy(_)) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// Query of a signed context URL.
#[derive(serde::Deserialize)]
pub struct SignedContextQuery {
    exp: Option<u64>,
    sig: Option<String>,
}

/// `GET /v1/handoff/{id}/context?exp=…&sig=…`: the handoff context for a desk
/// that got the link in the call's signalling (`X-Warmline-Context-Url`). No
/// API token: the HMAC over the call id and expiry is the permission; a bad
/// signature or an expired link is 403. The same bytes as `GET /v1/calls/{id}/context`.
pub async fn get_signed_context(
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<SignedContextQuery>,
    State(shared): State<Arc<Shared>>,
) -> Response {
    let (Some(exp), Some(sig)) = (q.exp, q.sig) else {
        return error(StatusCode::FORBIDDEN, "this link needs its exp and sig");
    };
    let now = crate::util::unix_seconds(std::time::SystemTime::now()) as u64;
    if let Err(e) = shared.context_urls.verify(&id, exp, &sig, now) {
        tracing::warn!(call = %id, reason = %e, "context link refused");
        return error(StatusCode::FORBIDDEN, format!("context link refused: {e}"));
    }
    get_context(Path(id), State(shared)).await
}

/// `GET /v1/agents`: the human agents and their availability.
pub async fn list_agents(State(shared): State<Arc<Shared>>) -> Response {
    Json(serde_json::json!({ "agents": shared.routing.agents() })).into_response()
}

/// Body of `POST /v1/agents`.
#[derive(Debug, serde::Deserialize)]
pub struct RegisterAgent {
    id: String,
    name: String,
    token: String,
    #[serde(default)]
    skills: Vec<String>,
}

/// `POST /v1/agents`: registers (or updates) a human agent.
pub async fn register_agent(
    State(shared): State<Arc<Shared>>,
    body: Result<Json<RegisterAgent>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(agent) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let valid_id = !agent.id.is_empty()
        && agent.id.len() <= 64
        && agent
            .id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid_id {
        return error(
            StatusCode::BAD_REQUEST,
            "id must be 1-64 letters, digits, - or _",
        );
    }
    if agent.token.len() < 8 {
        return error(
            StatusCode::BAD_REQUEST,
            "token must be at least 8 characters",
        );
    }
    shared
        .routing
        .register(&agent.id, &agent.name, &agent.token, agent.skills.clone());
    shared.store.write(crate::store::Write::Agent {
        id: agent.id.clone(),
        name: agent.name.clone(),
        token_sha256: crate::routing::token_sha256(&agent.token),
        skills: agent.skills,
    });
    (
        StatusCode::CREATED,
        Json(serde_json::json!({ "id": agent.id })),
    )
        .into_response()
}

/// Body of `POST /v1/agents/{id}/status`.
#[derive(Debug, serde::Deserialize)]
pub struct SetStatus {
    status: crate::routing::AgentStatus,
}

/// `POST /v1/agents/{id}/status`: available, busy or offline.
pub async fn set_agent_status(
    Path(id): Path<String>,
    State(shared): State<Arc<Shared>>,
    body: Result<Json<SetStatus>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    match shared.set_agent_status(&id, body.status) {
        Ok(()) if body.status == crate::routing::AgentStatus::Offline => {
            // An administrator taking an agent offline ends their session now.
            shared
                .routing
                .sign_out(&id, "set offline by an administrator");
            Json(serde_json::json!({ "id": id, "status": body.status })).into_response()
        }
        Ok(()) => Json(serde_json::json!({ "id": id, "status": body.status })).into_response(),
        Err(e) => error(StatusCode::NOT_FOUND, e.to_string()),
    }
}

/// `GET /v1/callbacks`: saved callbacks with their contexts.
pub async fn list_callbacks(State(shared): State<Arc<Shared>>) -> Response {
    match shared.store.callbacks().await {
        Ok(rows) => Json(serde_json::json!({ "callbacks": rows })).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// Query of the console socket.
#[derive(Debug, serde::Deserialize)]
pub struct ConsoleQuery {
    /// A one-time ticket from `POST /v1/agents/{id}/ticket` (what browsers use).
    ticket: Option<String>,
    /// The agent token itself (older clients; prefer the header or a ticket).
    token: Option<String>,
}

/// How a console proves who it is.
enum Credential {
    Token(String),
    Ticket(String),
}

/// Checks a console's credential with the sign-in backoff (per agent and
/// address): `Err` is the response to send.
async fn sign_in(
    shared: &Arc<Shared>,
    id: &str,
    peer: std::net::SocketAddr,
    credential: Option<Credential>,
) -> Result<(), Response> {
    let now = std::time::Instant::now();
    let waiting = shared
        .sign_ins
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .check(id, peer.ip(), now);
    if let Err(wait) = waiting {
        shared.metrics.peer_drops("console", "sign_in_backoff", 1);
        let secs = wait.as_secs().max(1);
        return Err(super::limits::refuse(
            StatusCode::TOO_MANY_REQUESTS,
            secs,
            format!("too many failed sign-ins for {id:?} from this address; try again in {secs} s"),
        ));
    }
    let Some(credential) = credential else {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "missing agent credential (Authorization: Bearer <agent token>, or ?ticket= from POST /v1/agents/{id}/ticket)",
        ));
    };
    let mut signed_in = match &credential {
        Credential::Token(token) => shared.routing.authenticate(id, token),
        Credential::Ticket(ticket) => shared.routing.redeem_ticket(id, ticket),
    };
    if let (Err(_), Credential::Token(token), Some(_)) = (&signed_in, &credential, &shared.cluster)
    {
        // Registered (or given a new token) through another node: read the shared table.
        shared.reload_agents().await;
        signed_in = shared.routing.authenticate(id, token);
    }
    let mut guard = shared.sign_ins.lock().unwrap_or_else(|p| p.into_inner());
    if let Err(e) = signed_in {
        let wait = guard.failed(id, peer.ip(), now);
        drop(guard);
        tracing::warn!(agent = %id, ip = %peer.ip(), error = %e, backoff_s = wait.map(|w| w.as_secs()), "console refused");
        return Err(error(StatusCode::UNAUTHORIZED, e.to_string()));
    }
    guard.succeeded(id, peer.ip());
    Ok(())
}

fn bearer(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string)
}

/// `POST /v1/agents/{id}/ticket` with `Authorization: Bearer <agent token>`:
/// a one-time ticket (30 s) for the console's WebSocket URL, so no token is
/// ever in a URL.
pub async fn agent_ticket(
    Path(id): Path<String>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    headers: axum::http::HeaderMap,
    State(shared): State<Arc<Shared>>,
) -> Response {
    if let Err(refused) = sign_in(&shared, &id, peer, bearer(&headers).map(Credential::Token)).await
    {
        return refused;
    }
    match shared.routing.issue_ticket(&id) {
        Ok(ticket) => Json(serde_json::json!({
            "ticket": ticket,
            "expiresInSeconds": crate::routing::TICKET_TTL.as_secs(),
        }))
        .into_response(),
        Err(e) => error(StatusCode::NOT_FOUND, e.to_string()),
    }
}

/// `GET /v1/agents/{id}/ws?ticket=…` (or `Authorization: Bearer <agent
/// token>`): an agent's console.
pub async fn agent_console(
    ws: axum::extract::WebSocketUpgrade,
    Path(id): Path<String>,
    axum::extract::Query(query): axum::extract::Query<ConsoleQuery>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    headers: axum::http::HeaderMap,
    State(shared): State<Arc<Shared>>,
) -> Response {
    let credential = match (query.ticket, bearer(&headers), query.token) {
        (Some(ticket), _, _) => Some(Credential::Ticket(ticket)),
        (None, Some(token), _) => Some(Credential::Token(token)),
        (None, None, Some(token)) => {
            tracing::warn!(agent = %id, "console signed in with ?token= in the URL (logged by proxies); use a ticket or the Authorization header");
            Some(Credential::Token(token))
        }
        (None, None, None) => None,
    };
    if let Err(refused) = sign_in(&shared, &id, peer, credential).await {
        return refused;
    }
    let cap = shared.config.server.max_message_bytes * 4;
    ws.max_message_size(cap)
        .max_frame_size(cap)
        .read_buffer_size(crate::legs::WS_READ_BUFFER)
        .on_upgrade(move |socket| crate::legs::human::serve_console(socket, shared, id))
}

/// `GET /v1/supervision/calls`: every live call as a supervisor sees it
/// (state, duration, last turn, sentiment and confidence per turn, risk).
pub async fn supervision_calls(State(shared): State<Arc<Shared>>) -> Response {
    Json(serde_json::json!({ "calls": shared.registry.board() })).into_response()
}

/// `GET /v1/stats`: escalation rate and reasons, handoffs, callbacks, averages.
pub async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    match shared.store.stats().await {
        Ok(v) => Json(v).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::token_matches;

    #[test]
    fn the_api_token_may_be_kept_hashed() {
        assert!(token_matches("s3cret-token", "s3cret-token"));
        assert!(!token_matches("s3cret-token", "s3cret-tokem"));
        // printf %s s3cret-token | sha256sum
        let real = "sha256:a81e611a041b13f078bf8ebe5dab4d4fd63fcc5594661c918bec093a2f416a7e";
        assert!(token_matches(real, "s3cret-token"));
        assert!(token_matches(
            &real.to_uppercase().replace("SHA256:", "sha256:"),
            "s3cret-token"
        ));
        assert!(!token_matches(real, "sha256:s3cret-token"));
        assert!(!token_matches(real, ""));
    }
}
