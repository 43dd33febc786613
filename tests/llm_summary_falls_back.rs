//! The LLM summary uses a real OpenAI-compatible chat-completions server (a small
//! local one here) when it answers in time, and falls back to the extractive
//! summary — recording why — when it is slow, failing or answers garbage.

use axum::Json;
use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use std::time::Duration;
use warmline::brief::context::HandoffContext;
use warmline::brief::summary::{LlmSummarizer, SummarySource, best_summary, extractive};

async fn server() -> String {
    async fn fast(Json(body): Json<serde_json::Value>) -> Json<serde_json::Value> {
        // Echo proof that the request had the chat-completions shape.
        let model = body["model"].as_str().unwrap_or("?").to_string();
        let has_transcript = body["messages"][1]["content"]
            .as_str()
            .is_some_and(|c| c.contains("Caller: my refund"));
        Json(serde_json::json!({
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "choices": [{"index": 0, "finish_reason": "stop",
                "message": {"role": "assistant", "content": format!("LLM summary by {model}; transcript seen: {has_transcript}.")}}]
        }))
    }
    async fn slow() -> Json<serde_json::Value> {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Json(serde_json::json!({}))
    }
    async fn failing() -> (StatusCode, &'static str) {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            "{\"error\":{\"message\":\"overloaded\"}}",
        )
    }
    async fn garbage() -> &'static str {
        "{\"choices\": []}"
    }
    let app = Router::new()
        .route("/fast/v1/chat/completions", post(fast))
        .route("/slow/v1/chat/completions", post(slow))
        .route("/failing/v1/chat/completions", post(failing))
        .route("/garbage/v1/chat/completions", post(garbage));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn context() -> HandoffContext {
    HandoffContext::from_json(
        r#"{"customer":{"name":"Sarah Chen"},"transcript":[{"role":"user","content":"my refund is late"}]}"#,
    )
    .unwrap()
}

fn summarizer(base: &str, path: &str, budget_ms: u64) -> LlmSummarizer {
    LlmSummarizer::new(
        &format!("{base}/{path}/v1/chat/completions"),
        "test-model",
        "sk-test",
        Duration::from_millis(budget_ms),
    )
    .unwrap()
}

#[tokio::test]
async fn the_llm_summary_is_used_when_it_answers_in_time() {
    let base = server().await;
    let (text, source) = best_summary(Some(&summarizer(&base, "fast", 1500)), &context()).await;
    assert_eq!(text, "LLM summary by test-model; transcript seen: true.");
    assert!(matches!(source, SummarySource::Llm { .. }));
}

#[tokio::test]
async fn slow_failing_and_garbage_answers_fall_back_to_the_extractive_summary() {
    let base = server().await;
    let ctx = context();
    for (path, reason) in [
        ("slow", "no answer within 300 ms"),
        ("failing", "server answered 500"),
        ("garbage", "unexpected answer"),
    ] {
        let started = std::time::Instant::now();
        let (text, source) = best_summary(Some(&summarizer(&base, path, 300)), &ctx).await;
        assert_eq!(text, extractive(&ctx), "{path}");
        match source {
            SummarySource::Extractive {
                fallback_reason: Some(r),
            } => assert!(r.contains(reason), "{path}: {r}"),
            other => panic!("{path}: {other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{path}: the budget bounds the wait"
        );
    }
    let (text, source) = best_summary(None, &ctx).await;
    assert_eq!(text, extractive(&ctx));
    assert_eq!(
        source,
        SummarySource::Extractive {
            fallback_reason: None
        }
    );
}

#[tokio::test]
async fn an_unreachable_server_falls_back_too() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let (_, source) = best_summary(Some(&summarizer(&base, "x", 500)), &context()).await;
    assert!(matches!(
        source,
        SummarySource::Extractive {
            fallback_reason: Some(_)
        }
    ));
}
