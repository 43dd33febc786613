//! A caller goes back to the AI agent after a handoff, over real sockets: a
//! person done with the call presses "Back to assistant" (the AI agent is
//! dialled again and told `handoff_result` with the note and the conversation
//! so far, and the caller hears it next), and with `routing.when_no_agent =
//! "ai"` a caller nobody can take goes back to the AI on its open socket —
//! once; a second "nobody" ends in a callback, not a loop.

mod support;

use std::time::Duration;
use support::*;
use warmline::legs::media_streams::{AppWriter, StreamMessage};
use warmline::media::g711;
use warmline::sim::caller::{CallerOptions, run as run_caller};

/// Reads agent-side messages until a `handoff_result` (or `within` passes).
async fn handoff_result(
    agent: &mut AgentPeer,
    within: Duration,
) -> Option<warmline::domain::HandoffResult> {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if let Some(StreamMessage::HandoffResult { handoff_result, .. }) =
            agent.next_msg(Duration::from_millis(500)).await
        {
            return Some(handoff_result);
        }
    }
    None
}

/// Reads agent-side messages until `stop` (the gateway closing the AI leg).
async fn until_stop(agent: &mut AgentPeer, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if let Some(StreamMessage::Stop { .. }) = agent.next_msg(Duration::from_millis(500)).await {
            return true;
        }
    }
    false
}

fn contains_frame(haystack: &[u8], frame: &[u8]) -> bool {
    haystack.windows(frame.len()).any(|w| w == frame)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_hands_the_caller_back_and_the_ai_is_told_the_note_and_the_conversation() {
    let mut ai = RawAgent::start().await;
    let gw = gateway(&ai.url, |c| c.routing.agents.push(agent_seed("alex"))).await;
    let base = format!("ws://{}", gw.addr);
    let note = "Refund issued; please run the satisfaction survey.";
    let human = tokio::spawn(warmline::sim::human::run(
        warmline::sim::human::HumanOptions {
            skip_after: Some(Duration::from_millis(300)),
            say: loud_frames(25),
            hang_up_after: Some(Duration::from_millis(300)),
            return_to_ai: Some(note.into()),
            max_duration: Duration::from_secs(40),
            ..console(&base, "alex", Duration::from_millis(200))
        },
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let caller = tokio::spawn(run_caller(CallerOptions {
        tail: Duration::from_millis(200),
        ..CallerOptions::new(gw.media_url(), vec![g711::ULAW_SILENCE; 8000 * 14], 0xbac)
    }));

    // The first AI leg: the caller asks for a person at once.
    let (mut first, start, sid) = ai.accept().await;
    let w = AppWriter::new(sid.clone());
    first
        .send(w.turn(warmline::domain::Turn {
            role: warmline::domain::Role::Agent,
            content: "Thanks for calling Acme, how can I help?".into(),
            confidence: Some(0.9),
        }))
        .await;
    first
        .send(w.turn(warmline::domain::Turn {
            role: warmline::domain::Role::User,
            content: "I want to talk to a real person please.".into(),
            confidence: None,
        }))
        .await;
    assert!(
        until_stop(&mut first, Duration::from_secs(15)).await,
        "the AI leg is closed at the merge"
    );

    // The person hands the caller back: the AI is dialled again for the same call.
    let (mut second, again, sid2) = ai.accept().await;
    assert_eq!(again.call_sid, start.call_sid, "the same call");
    let result = handoff_result(&mut second, Duration::from_secs(5))
        .await
        .expect("the new AI leg is told how the handoff ended");
    assert_eq!(result.outcome, warmline::domain::HandoffOutcome::Completed);
    assert_eq!(result.agent.as_deref(), Some("alex"));
    assert_eq!(result.note.as_deref(), Some(note));
    let said: Vec<&str> = result
        .conversation
        .iter()
        .map(|t| t.content.as_str())
        .collect();
    assert!(
        said.contains(&"I want to talk to a real person please."),
        "the conversation so far travels: {said:?}"
    );

    // What the AI says now reaches the caller.
    let line = noise(160 * 50, 77);
    let w2 = AppWriter::new(sid2);
    for chunk in line.chunks(160) {
        second.send(w2.media(chunk)).await;
    }
    let heard = caller.await.expect("caller task").expect("caller ran");
    assert!(
        contains_frame(&heard.received_audio, &line[160 * 10..160 * 11]),
        "the caller hears the AI again after the person"
    );
    let report = human.await.expect("human task").expect("console ran");
    assert!(
        report.got_stop,
        "the person's console gets stop (wrap-up follows)"
    );

    let done = gw.shared.registry.wait_finished(1, SOON * 4).await;
    let steps: Vec<String> = handoff_steps(&done[0])
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    let merged = steps.iter().position(|s| s == "merged");
    let back = steps.iter().position(|s| s == "returned_to_ai");
    assert!(
        merged.is_some() && back > merged,
        "merged, then returned: {steps:?}"
    );
    assert_eq!(
        step_detail(&done[0], "returned_to_ai").as_deref(),
        Some(format!("completed: {note}").as_str())
    );
    // The outcomes are counted in the stats.
    let (status, body) = http(gw.addr, "GET", "/v1/stats", None, None).await;
    assert_eq!(status, 200, "{body}");
    let stats: serde_json::Value = serde_json::from_str(&body).expect("stats JSON");
    assert_eq!(stats["returns_to_ai"], 1, "{stats}");
    assert_eq!(stats["handoff_outcomes"]["merged"], 1, "{stats}");
    assert_eq!(stats["handoff_outcomes"]["returned_to_ai"], 1, "{stats}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nobody_to_take_the_call_the_ai_gets_the_caller_back_once_then_a_callback() {
    let mut ai = RawAgent::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("warmline.db");
    let gw = gateway(&ai.url, |c| {
        c.store.path = db.clone();
        c.routing.when_no_agent = warmline::config::NoAgentFallback::Ai;
    })
    .await;
    let mut options =
        CallerOptions::new(gw.media_url(), vec![g711::ULAW_SILENCE; 8000 * 12], 0xace);
    options
        .custom_parameters
        .insert("from".into(), "+15550100".into());
    let caller = tokio::spawn(run_caller(options));
    let (mut agent, _start, sid) = ai.accept().await;
    let w = AppWriter::new(sid);
    let ask = |w: &AppWriter| {
        w.turn(warmline::domain::Turn {
            role: warmline::domain::Role::User,
            content: "Let me speak to a human, please.".into(),
            confidence: None,
        })
    };
    agent.send(ask(&w)).await;
    let result = handoff_result(&mut agent, Duration::from_secs(10))
        .await
        .expect("the AI, still on the line, is told nobody could take the call");
    assert_eq!(result.outcome, warmline::domain::HandoffOutcome::NoAgent);
    assert_eq!(result.agent, None);
    assert!(result.note.is_some_and(|n| !n.is_empty()), "the reason");

    // The caller asks again: nobody still, and this time a callback.
    tokio::time::sleep(Duration::from_millis(300)).await;
    agent.send(ask(&w)).await;
    assert!(
        handoff_result(&mut agent, Duration::from_secs(4))
            .await
            .is_none(),
        "no second return to the AI"
    );
    let _ = caller.await;
    let done = gw.shared.registry.wait_finished(1, SOON * 4).await;
    let steps: Vec<String> = handoff_steps(&done[0])
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(
        steps.iter().filter(|s| *s == "returned_to_ai").count(),
        1,
        "{steps:?}"
    );
    assert!(steps.iter().any(|s| s == "callback_saved"), "{steps:?}");
    gw.shutdown().await;
    let store = warmline::store::Store::open(&db).expect("store");
    let callbacks = store.callbacks().await.expect("callbacks");
    assert_eq!(callbacks.len(), 1, "one callback, after the second ask");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_returns_a_waiting_caller_to_the_ai_and_a_caller_with_the_ai_is_refused() {
    let mut ai = RawAgent::start().await;
    // An agent who never answers: the caller waits in the queue.
    let gw = gateway(&ai.url, |c| {
        c.api.token = "admin-token".into();
        c.routing.agents.push(agent_seed("slow"));
    })
    .await;
    let slow = tokio::spawn(warmline::sim::human::run(
        warmline::sim::human::HumanOptions {
            max_duration: Duration::from_secs(15),
            ..console(
                &format!("ws://{}", gw.addr),
                "slow",
                Duration::from_secs(3600),
            )
        },
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let caller = tokio::spawn(run_caller(CallerOptions::new(
        gw.media_url(),
        vec![g711::ULAW_SILENCE; 8000 * 10],
        0xfee,
    )));
    let (mut agent, _start, sid) = ai.accept().await;
    let call_id = live_call_id(&gw);
    let path = format!("/v1/calls/{call_id}/return-to-ai");
    let (status, body) = http(
        gw.addr,
        "POST",
        &path,
        Some("admin-token"),
        Some(r#"{"note":"x"}"#),
    )
    .await;
    assert_eq!(status, 409, "with the AI already: {body}");
    let w = AppWriter::new(sid);
    agent
        .send(w.turn(warmline::domain::Turn {
            role: warmline::domain::Role::User,
            content: "Get me a person.".into(),
            confidence: None,
        }))
        .await;
    // Waiting (ringing the slow agent): the operator takes the caller back.
    let waiting = wait_stage(&gw, &call_id, Duration::from_secs(5), |s| {
        s == Some(warmline::call::registry::CallerStage::Waiting)
    })
    .await;
    assert!(waiting, "the caller waits for a person");
    let (status, body) = http(
        gw.addr,
        "POST",
        &path,
        Some("admin-token"),
        Some(r#"{"note":"Our team is in a meeting; please help them yourself."}"#),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let result = handoff_result(&mut agent, Duration::from_secs(5))
        .await
        .expect("the AI is told");
    assert_eq!(result.outcome, warmline::domain::HandoffOutcome::NoAgent);
    assert_eq!(
        result.note.as_deref(),
        Some("Our team is in a meeting; please help them yourself.")
    );
    let (status, _) = http(
        gw.addr,
        "POST",
        "/v1/calls/nope/return-to-ai",
        Some("admin-token"),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = http(gw.addr, "POST", &path, None, None).await;
    assert_eq!(status, 401, "the API token is needed");
    let _ = caller.await;
    slow.abort();
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skill_with_its_own_fallback_goes_back_to_the_ai_while_other_calls_get_a_callback() {
    let mut ai = RawAgent::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("warmline.db");
    let gw = gateway(&ai.url, |c| {
        c.store.path = db.clone();
        c.routing.when_no_agent = warmline::config::NoAgentFallback::Callback;
        c.routing
            .when_no_agent_by_skill
            .insert("billing".into(), warmline::config::NoAgentFallback::Ai);
    })
    .await;
    // Two calls, nobody online: one about billing, one about an order.
    for (intent, to_ai) in [("billing_dispute", true), ("order_status", false)] {
        let mut options =
            CallerOptions::new(gw.media_url(), vec![g711::ULAW_SILENCE; 8000 * 8], 0xb11);
        options
            .custom_parameters
            .insert("from".into(), "+15550100".into());
        let caller = tokio::spawn(run_caller(options));
        let (mut agent, _start, sid) = ai.accept().await;
        agent
            .send(format!(
                r#"{{"event":"intent","streamSid":"{sid}","intent":{{"primary":"{intent}"}}}}"#
            ))
            .await;
        let w = AppWriter::new(sid);
        agent
            .send(w.turn(warmline::domain::Turn {
                role: warmline::domain::Role::User,
                content: "Let me speak to a human, please.".into(),
                confidence: None,
            }))
            .await;
        let result = handoff_result(&mut agent, Duration::from_secs(5)).await;
        if to_ai {
            let result = result.expect("a billing caller goes back to the AI");
            assert_eq!(result.outcome, warmline::domain::HandoffOutcome::NoAgent);
        } else {
            assert!(
                result.is_none(),
                "an order caller gets the default: a callback"
            );
        }
        drop(agent);
        let _ = caller.await;
    }
    let done = gw.shared.registry.wait_finished(2, SOON * 4).await;
    let returned: usize = done
        .iter()
        .map(|c| {
            handoff_steps(c)
                .into_iter()
                .filter(|(s, _)| s == "returned_to_ai")
                .count()
        })
        .sum();
    assert_eq!(returned, 1, "only the billing call went back to the AI");
    gw.shutdown().await;
    let store = warmline::store::Store::open(&db).expect("store");
    let callbacks = store.callbacks().await.expect("callbacks");
    assert_eq!(callbacks.len(), 1, "the order call's callback");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_outside_their_own_hours_is_not_rung_and_the_caller_gets_the_fallback() {
    let mut ai = RawAgent::start().await;
    // Their only working day is three days from today (UTC): off duty now.
    let days_since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        / 86_400;
    let names = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let other_day = names[((days_since_epoch + 3 + 3) % 7) as usize];
    let gw = gateway(&ai.url, |c| {
        let mut ann = agent_seed("ann");
        ann.hours.days = other_day.into();
        c.routing.agents.push(ann);
        c.routing.when_no_agent = warmline::config::NoAgentFallback::Ai;
    })
    .await;
    let ann = tokio::spawn(warmline::sim::human::run(
        warmline::sim::human::HumanOptions {
            max_duration: Duration::from_secs(6),
            ..console(
                &format!("ws://{}", gw.addr),
                "ann",
                Duration::from_millis(100),
            )
        },
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let caller = tokio::spawn(run_caller(CallerOptions::new(
        gw.media_url(),
        vec![g711::ULAW_SILENCE; 8000 * 6],
        0xda7,
    )));
    let (mut agent, _start, sid) = ai.accept().await;
    agent
        .send(AppWriter::new(sid).turn(warmline::domain::Turn {
            role: warmline::domain::Role::User,
            content: "Can I talk to someone real?".into(),
            confidence: None,
        }))
        .await;
    let result = handoff_result(&mut agent, Duration::from_secs(5))
        .await
        .expect("nobody on duty: the AI gets the caller back");
    assert_eq!(result.outcome, warmline::domain::HandoffOutcome::NoAgent);
    assert!(
        result
            .note
            .as_deref()
            .is_some_and(|n| n.contains("on duty")),
        "the AI is told why: {:?}",
        result.note
    );
    drop(agent);
    let _ = caller.await;
    let report = ann.await.expect("console task").expect("console ran");
    assert!(
        report.offers.is_empty(),
        "an agent off duty is never offered the call: {:?}",
        report.offers
    );
    gw.shutdown().await;
}
