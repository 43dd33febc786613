//! The `/v1` REST API: calls, their decisions and their handoff contexts,
//! behind a bearer token (`api.token`).

use crate::gateway::Shared;
use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

/// Constant-time comparison of two byte strings.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Rejects requests without the configured bearer token (open when none is configured).
pub async fn require_token(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let expected = shared.config.api.token.as_bytes();
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
        Some(token) if constant_time_eq(token.as_bytes(), expected) => next.run(request).await,
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
