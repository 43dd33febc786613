//! A supervisor coaches the AI agent of a live call over the REST API: the
//! hint reaches the AI agent as `supervisor_hint` (the caller hears nothing of
//! it), lands on the timeline with the supervisor's id, and is refused with a
//! clear status when it could reach nobody.

mod support;

use std::time::Duration;
use support::*;
use warmline::legs::media_streams::{AppWriter, StreamMessage};
use warmline::media::g711;
use warmline::sim::caller::{CallerOptions, run as run_caller};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hint_reaches_the_ai_agent_only_while_the_caller_is_with_it() {
    let mut ai = RawAgent::start().await;
    let gw = gateway(&ai.url, |c| c.api.token = "admin-token".into()).await;
    let caller = tokio::spawn(run_caller(CallerOptions::new(
        gw.media_url(),
        vec![g711::ULAW_SILENCE; 8000 * 8],
        0x417,
    )));
    let (mut agent, _start, sid) = ai.accept().await;
    let call_id = gw
        .shared
        .registry
        .active()
        .first()
        .map(|c| c.call_id.clone())
        .expect("a live call");
    let path = format!("/v1/calls/{call_id}/hint");
    let post = |body: &'static str| http(gw.addr, "POST", &path, Some("admin-token"), Some(body));

    let (status, body) = post(r#"{"text":"  ","supervisor":"sam"}"#).await;
    assert_eq!(status, 400, "an empty hint: {body}");
    let (status, body) = post(r#"{"text":"Offer the goodwill credit.","supervisor":"sam"}"#).await;
    assert_eq!(status, 202, "{body}");
    let mut got = None;
    for _ in 0..20 {
        if let Some(StreamMessage::SupervisorHint {
            supervisor_hint, ..
        }) = agent.next_msg(Duration::from_millis(250)).await
        {
            got = Some(supervisor_hint);
            break;
        }
    }
    assert_eq!(
        got,
        Some(warmline::domain::SupervisorHint {
            from: "sam".into(),
            text: "Offer the goodwill credit.".into()
        })
    );
    let (status, _) = http(
        gw.addr,
        "POST",
        "/v1/calls/nope/hint",
        Some("admin-token"),
        Some(r#"{"text":"x"}"#),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = http(gw.addr, "POST", &path, None, Some(r#"{"text":"x"}"#)).await;
    assert_eq!(status, 401, "the API token is needed");

    // Once the caller waits for a person, a hint would reach nobody.
    let w = AppWriter::new(sid);
    agent
        .send(w.turn(warmline::domain::Turn {
            role: warmline::domain::Role::User,
            content: "Put me through to a human.".into(),
            confidence: None,
        }))
        .await;
    let mut left_ai = false;
    for _ in 0..50 {
        if gw.shared.registry.stage(&call_id)
            != Some(warmline::call::registry::CallerStage::Assistant)
        {
            left_ai = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(left_ai, "the call was escalated");
    let (status, body) = post(r#"{"text":"too late"}"#).await;
    assert_eq!(status, 409, "not with the AI any more: {body}");
    let _ = caller.await;
    let done = gw.shared.registry.wait_finished(1, SOON * 4).await;
    let hints: Vec<(String, String)> = done[0]
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            warmline::call::timeline::TimelineKind::SupervisorHint { supervisor, text } => {
                Some((supervisor.clone(), text.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        hints,
        vec![("sam".to_string(), "Offer the goodwill credit.".to_string())]
    );
    gw.shutdown().await;
}
