//! Two gateway nodes on loopback sharing a real PostgreSQL and a real NATS:
//! a caller on node A escalates and is offered to, accepted by and merged with
//! an agent whose console is on node B. The whisper reaches only the agent
//! (through node B), the caller hears the agent, and the context, decision and
//! handoff are in PostgreSQL.

mod support;

use std::time::Duration;
use support::cluster::*;
use support::*;
use warmline::sim::agent::ScriptedAgent;
use warmline::sim::caller::{self, CallerOptions};
use warmline::sim::human::{self, HumanOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_on_node_a_is_handed_to_an_agent_on_node_b() {
    let pg = fresh_database("handoff").await;
    let nats = Nats::start();
    let ai = ScriptedAgent::start(ai_script_requesting_person())
        .await
        .unwrap();
    let (node_a, node_b) = two_nodes(&ai.url(), (&pg, &nats.url), (&pg, &nats.url), &["ann"]).await;

    // Ann signs in on node B; node A learns she is there.
    let agent_voice = noise(8000 * 2, 4242);
    let human = tokio::spawn(human::run(HumanOptions {
        say: agent_voice.clone(),
        hang_up_after: Some(Duration::from_millis(500)),
        max_duration: Duration::from_secs(60),
        ..console(
            &format!("ws://{}", node_b.addr),
            "ann",
            Duration::from_millis(500),
        )
    }));
    wait_agent_on(&node_a.shared.routing, "ann", "node-b").await;

    // The caller is on node A.
    let sent = caller_requesting_person(40);
    let mut options = CallerOptions::new(node_a.media_url(), sent.clone(), 77);
    options
        .custom_parameters
        .insert("name".into(), "Sarah Chen".into());
    options
        .custom_parameters
        .insert("from".into(), "+15550100".into());
    let caller_report = caller::run(options).await.expect("caller");
    let human_report = human.await.expect("console task").expect("console");

    let done = wait_handed_over(&node_a, 1).await;
    let timeline = &done[0];
    assert_eq!(
        handoff_steps(timeline)
            .into_iter()
            .find(|(s, _)| s == "answered")
            .and_then(|(_, a)| a),
        Some("ann".into())
    );
    assert_eq!(
        node_b.shared.registry.counts().total,
        0,
        "the call itself never moved to node B"
    );

    // The screen-pop on node B carried the context built on node A.
    assert_eq!(human_report.offers.len(), 1, "{:?}", human_report.offers);
    assert_eq!(human_report.offers[0]["customer"]["name"], "Sarah Chen");

    // The agent heard the whole whisper through node B; the caller not one frame of it.
    let whisper = &human_report.whisper;
    let seconds = whisper.len() as f64 / 8000.0;
    assert!((10.0..=15.1).contains(&seconds), "whisper {seconds:.2} s");
    let whisper_frames: std::collections::HashSet<&[u8]> = whisper
        .chunks_exact(160)
        .filter(|f| is_audible(f))
        .collect();
    assert!(whisper_frames.len() > 300);
    let leaked = caller_report
        .received_audio
        .chunks_exact(160)
        .filter(|f| whisper_frames.contains(f))
        .count();
    assert_eq!(leaked, 0, "{leaked} whisper frames reached the caller");

    // Then they talked: the agent hears the caller, the caller hears the agent, byte for byte.
    let after = &human_report.after_whisper;
    assert!(
        after.len() >= 8000,
        "agent heard the caller ({} bytes)",
        after.len()
    );
    assert!(
        sent.windows(1600).any(|w| w == &after[..1600]),
        "after the whisper the agent hears the caller's own audio"
    );
    assert!(
        caller_report
            .received_audio
            .windows(1600)
            .any(|w| w == &agent_voice[3200..4800]),
        "the caller hears the agent on node B"
    );
    let (start, gap) = whisper_start_and_merge_gap(&human_report);
    println!(
        "across nodes: whisper start after accept {:.1} ms, merge gap {:.1} ms",
        start.as_secs_f64() * 1e3,
        gap.as_secs_f64() * 1e3
    );

    // Everything is in PostgreSQL.
    assert_eq!(node_a.shared.store.flush().await.unwrap(), 0);
    let call_id = timeline.call_id.clone();
    let context = query(
        &pg,
        "SELECT json FROM contexts WHERE call_id = $1",
        &[&call_id],
    )
    .await;
    let context: serde_json::Value =
        serde_json::from_str(context[0].get::<_, &str>(0)).expect("context JSON");
    assert_eq!(context["customer"]["name"], "Sarah Chen");
    let handoff = query(
        &pg,
        "SELECT agent_id FROM handoffs WHERE call_id = $1",
        &[&call_id],
    )
    .await;
    assert_eq!(handoff[0].get::<_, &str>(0), "ann");
    let decision = query(
        &pg,
        "SELECT trigger FROM decisions WHERE call_id = $1",
        &[&call_id],
    )
    .await;
    assert_eq!(decision[0].get::<_, &str>(0), "customer_request");
    let queue = query(&pg, "SELECT count(*) FROM wl_queue", &[]).await;
    assert_eq!(
        queue[0].get::<_, i64>(0),
        0,
        "the shared queue is empty again"
    );

    // Ann is free again, as both nodes see it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let status = query(
            &pg,
            "SELECT status FROM wl_presence WHERE agent_id = 'ann'",
            &[],
        )
        .await;
        let status: String = status.first().map(|r| r.get(0)).unwrap_or_default();
        if status == "offline" || status == "available" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "ann still {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_registered_on_one_node_signs_in_on_another() {
    let pg = fresh_database("register").await;
    let nats = Nats::start();
    let ai = ScriptedAgent::start(ai_script_requesting_person())
        .await
        .unwrap();
    let node_a = gateway(&ai.url(), |c| {
        cluster_node_config(c, "node-a", free_port(), &pg, &nats.url)
    })
    .await;
    let node_b = gateway(&ai.url(), |c| {
        cluster_node_config(c, "node-b", free_port(), &pg, &nats.url)
    })
    .await;
    let body = r#"{"id":"zoe","name":"Zoe","token":"zoe-secret-token","skills":["billing"]}"#;
    let (status, reply) = http(node_a.addr, "POST", "/v1/agents", None, Some(body)).await;
    assert_eq!(status, 201, "{reply}");
    assert_eq!(node_a.shared.store.flush().await.unwrap(), 0);
    // Zoe signs in on node B, which had never heard of her; a wrong token is still refused.
    let wrong = tokio_tungstenite::connect_async(format!(
        "ws://{}/v1/agents/zoe/ws?token=not-her-token",
        node_b.addr
    ))
    .await;
    assert!(wrong.is_err(), "a wrong token is refused");
    let (mut zoe, _) = tokio_tungstenite::connect_async(format!(
        "ws://{}/v1/agents/zoe/ws?token=zoe-secret-token",
        node_b.addr
    ))
    .await
    .expect("Zoe signs in on node B");
    use futures_util::StreamExt;
    let first = tokio::time::timeout(SOON, zoe.next())
        .await
        .expect("a first message")
        .expect("open")
        .expect("ok");
    assert!(
        first.to_text().unwrap_or("").contains("connected"),
        "{first:?}"
    );
    // Node A sees her, with her skill, on node B.
    wait_agent_on(&node_a.shared.routing, "zoe", "node-b").await;
    let zoe_on_a = node_a
        .shared
        .routing
        .agents()
        .into_iter()
        .find(|a| a.id == "zoe")
        .expect("listed on A");
    assert_eq!(zoe_on_a.skills, vec!["billing".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_to_a_named_agent_in_a_cluster_rings_only_that_agent() {
    use std::sync::Arc;
    use tokio::sync::mpsc;
    use warmline::routing::HumanCommand;
    let pg = fresh_database("named").await;
    let nats = Nats::start();
    let ai = ScriptedAgent::start(ai_script_requesting_person())
        .await
        .unwrap();
    let (node_a, node_b) = two_nodes(&ai.url(), (&pg, &nats.url), (&pg, &nats.url), &[]).await;
    // Two agents on node B: "first" has been idle longer, so any other call goes to them.
    let mut offers = Vec::new();
    for id in ["first", "named"] {
        node_b
            .shared
            .routing
            .register(id, id, "t", vec!["sales".into()]);
        let (tx, rx) = mpsc::channel(16);
        node_b
            .shared
            .routing
            .console_connected(id, tx)
            .expect("console");
        offers.push((id, rx));
        wait_agent_on(&node_a.shared.routing, id, "node-b").await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A call on node A transferred to "named" (a transfer re-queues it for them only).
    let (notify, _events) = mpsc::channel(8);
    node_a.shared.routing.enqueue_for(
        "CAnamed",
        "sales",
        warmline::domain::Urgency::Standard,
        Arc::default(),
        notify,
        Default::default(),
        Some("named".into()),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut offered_to = None;
    while offered_to.is_none() && tokio::time::Instant::now() < deadline {
        for (id, rx) in offers.iter_mut() {
            while let Ok(cmd) = rx.try_recv() {
                if matches!(cmd, HumanCommand::Offer { ref call_id, .. } if call_id == "CAnamed") {
                    offered_to = Some(id.to_string());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        offered_to.as_deref(),
        Some("named"),
        "the transfer rang the agent it named"
    );
    node_a.shutdown().await;
    node_b.shutdown().await;
}
