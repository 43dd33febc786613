//! Cluster faults: PostgreSQL or NATS unreachable at start (a clear error, or
//! a single node when configured so); NATS down while a caller escalates (the
//! offer goes out once NATS is back); PostgreSQL cut off from a node mid-call
//! (the call in progress keeps its audio, a new escalation waits and goes
//! through once the database is back, nothing written is lost).

mod support;

use std::time::Duration;
use support::cluster::*;
use support::*;
use warmline::config::Config;
use warmline::gateway::RunningGateway;
use warmline::sim::agent::ScriptedAgent;
use warmline::sim::caller::{self, CallerOptions};
use warmline::sim::human;

fn node_config(postgres: &str, nats: &str) -> Config {
    let mut c = Config::default();
    cluster_node_config(&mut c, "lonely", free_port(), postgres, nats);
    c.store.path = tempfile::tempdir()
        .expect("tempdir")
        .keep()
        .join("warmline.db");
    c
}

/// Agent `id`'s console on `base`: answers 300 ms into a ring, says `say`
/// after the whisper and hangs up 300 ms after that (at most 90 s in all).
fn agent_console(
    base: &str,
    id: &str,
    say: Vec<u8>,
) -> tokio::task::JoinHandle<Result<human::HumanReport, human::HumanError>> {
    tokio::spawn(human::run(human::HumanOptions {
        say,
        hang_up_after: Some(Duration::from_millis(300)),
        max_duration: Duration::from_secs(90),
        ..console(base, id, Duration::from_millis(300))
    }))
}

#[tokio::test]
async fn unreachable_postgres_or_nats_at_start_is_a_clear_error() {
    let dead = free_port();
    let pg = fresh_database("faults").await;
    let nats = Nats::start();
    let err = RunningGateway::start(node_config(
        &format!("postgres://wl:hunter2@127.0.0.1:{dead}/wl"),
        &nats.url,
    ))
    .await
    .err()
    .expect("no PostgreSQL, no start");
    let text = err.to_string();
    assert!(
        text.contains("cannot use PostgreSQL at postgres://wl:***@127.0.0.1"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");

    let err = RunningGateway::start(node_config(&pg, &format!("nats://127.0.0.1:{dead}")))
        .await
        .err()
        .expect("no NATS, no start");
    let text = err.to_string();
    assert!(text.contains("cannot join the cluster"), "{text}");
    assert!(text.contains("NATS"), "{text}");
    assert!(
        text.contains("fallback_single_node"),
        "says how to run alone: {text}"
    );

    // Configured to fall back: it runs as one node.
    let mut c = node_config(&pg, &format!("nats://127.0.0.1:{dead}"));
    c.cluster.fallback_single_node = true;
    let gw = RunningGateway::start(c).await.expect("runs alone");
    assert!(gw.shared.cluster.is_none());
    assert!(!gw.shared.routing.in_cluster());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_escalation_while_nats_is_down_reaches_the_agent_once_it_is_back() {
    let pg = fresh_database("natsdown").await;
    let mut nats = Nats::start();
    let ai = ScriptedAgent::start(ai_script_requesting_person())
        .await
        .unwrap();
    let (node_a, node_b) = two_nodes(&ai.url(), (&pg, &nats.url), (&pg, &nats.url), &["ann"]).await;
    let human = agent_console(&format!("ws://{}", node_b.addr), "ann", Vec::new());
    wait_agent_on(&node_a.shared.routing, "ann", "node-b").await;

    // NATS goes away; the caller on node A asks for a person.
    nats.stop();
    let caller = tokio::spawn(caller::run(CallerOptions::new(
        node_a.media_url(),
        caller_requesting_person(60),
        11,
    )));
    // The escalation is queued in PostgreSQL and the offer to node B waits.
    wait_for_row(
        &pg,
        "SELECT 1 FROM wl_queue",
        Duration::from_secs(30),
        "the call was queued",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        node_a.shared.registry.counts().active,
        1,
        "the caller is still on"
    );
    let _nats = Nats::start_on(nats.port);

    let report = caller.await.expect("caller task").expect("caller");
    let agent = human.await.expect("console task").expect("console");
    wait_handed_over(&node_a, 1).await;
    assert!(agent.whisper.len() >= 8000 * 10, "the agent was briefed");
    assert!(report.closed_by_gateway);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_postgres_mid_call_keeps_calls_up_and_queues_new_escalations() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            "warmline::cluster=debug,warmline::routing=debug,warmline::legs::human=info",
        )
        .with_test_writer()
        .try_init();
    let pg = fresh_database("pgdown").await;
    let server_port: u16 = pg
        .rsplit_once(':')
        .and_then(|(_, rest)| rest.split('/').next())
        .and_then(|p| p.parse().ok())
        .expect("port in the test database URL");
    let proxy = Proxy::start(server_port).await;
    let nats = Nats::start();
    let ai = ScriptedAgent::start(ai_script_requesting_person())
        .await
        .unwrap();
    // Node A reaches PostgreSQL only through the proxy.
    let a_via_proxy = with_port(&pg, proxy.port);
    let (node_a, node_b) = two_nodes(
        &ai.url(),
        (&a_via_proxy, &nats.url),
        (&pg, &nats.url),
        &["ann", "bob"],
    )
    .await;
    let base_b = format!("ws://{}", node_b.addr);
    // Ann talks for 6 s once connected; Bob is there for the second caller.
    let ann_voice = noise(8000 * 6, 61);
    let ann = agent_console(&base_b, "ann", ann_voice.clone());
    wait_agent_on(&node_a.shared.routing, "ann", "node-b").await;

    let first = tokio::spawn(caller::run(CallerOptions::new(
        node_a.media_url(),
        caller_requesting_person(60),
        21,
    )));
    // Once the first caller is merged with Ann, node A loses PostgreSQL.
    wait_for_row(
        &pg,
        "SELECT 1 FROM handoffs WHERE merged_at IS NOT NULL",
        Duration::from_secs(40),
        "the first call merged",
    )
    .await;
    proxy.cut();
    let bob = agent_console(&base_b, "bob", Vec::new());
    let second = tokio::spawn(caller::run(CallerOptions::new(
        node_a.media_url(),
        caller_requesting_person(60),
        22,
    )));
    // The second caller escalates (≈ 3.5 s in) while the database is away.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(
        query(&pg, "SELECT 1 FROM wl_queue", &[]).await.is_empty(),
        "node A could not queue anything while cut off"
    );
    assert_eq!(
        node_a.shared.registry.counts().active,
        2,
        "both callers are still on"
    );
    proxy.restore();

    // The first call kept its audio through the outage: the caller heard all of Ann.
    let first = first.await.expect("caller task").expect("first caller");
    assert!(
        first
            .received_audio
            .windows(1600)
            .any(|w| w == &ann_voice[8000 * 5..8000 * 5 + 1600]),
        "the caller heard Ann's last second, spoken while node A had no database"
    );
    ann.await.expect("ann task").expect("ann");
    // The second escalation went through once PostgreSQL was back.
    let second = second.await.expect("caller task").expect("second caller");
    let bob = bob.await.expect("bob task").expect("bob");
    wait_handed_over(&node_a, 2).await;
    assert!(
        bob.whisper.len() >= 8000 * 10,
        "Bob was briefed ({} bytes, offers {:?})",
        bob.whisper.len(),
        bob.offers
    );
    assert!(second.closed_by_gateway);
    // Everything node A wrote during the outage reached PostgreSQL afterwards.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let handoffs = query(&pg, "SELECT count(*) FROM handoffs", &[]).await[0].get::<_, i64>(0);
        let contexts = query(&pg, "SELECT count(*) FROM contexts", &[]).await[0].get::<_, i64>(0);
        let ended = query(
            &pg,
            "SELECT count(*) FROM calls WHERE ended_at IS NOT NULL",
            &[],
        )
        .await[0]
            .get::<_, i64>(0);
        if (handoffs, contexts, ended) == (2, 2, 2) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "handoffs {handoffs}, contexts {contexts}, ended {ended}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Nobody was left with a callback for a caller who was served.
    let callbacks = query(
        &pg,
        "SELECT call_id FROM callbacks WHERE status = 'pending'",
        &[],
    )
    .await;
    assert!(callbacks.is_empty(), "{} stray callbacks", callbacks.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_message_crossing_between_nodes_the_database_still_hands_the_call_over() {
    // Each node on its own nats-server: not one NATS message crosses. Offers
    // reach the agent's node from PostgreSQL alone (heartbeat reconciliation).
    let pg = fresh_database("partition").await;
    let (nats_a, nats_b) = (Nats::start(), Nats::start());
    let ai = ScriptedAgent::start(ai_script_requesting_person())
        .await
        .unwrap();
    let (node_a, node_b) =
        two_nodes(&ai.url(), (&pg, &nats_a.url), (&pg, &nats_b.url), &["ann"]).await;
    let human = agent_console(&format!("ws://{}", node_b.addr), "ann", Vec::new());
    wait_for_row(
        &pg,
        "SELECT 1 FROM wl_presence WHERE agent_id = 'ann' AND status = 'available'",
        Duration::from_secs(10),
        "Ann present in the database",
    )
    .await;
    assert!(
        !node_a
            .shared
            .routing
            .agents()
            .iter()
            .any(|a| a.node.is_some()),
        "node A has heard nothing from node B"
    );

    let report = caller::run(CallerOptions::new(
        node_a.media_url(),
        caller_requesting_person(60),
        31,
    ))
    .await
    .expect("caller");
    let agent = human.await.expect("console task").expect("console");
    wait_handed_over(&node_a, 1).await;
    assert_eq!(agent.offers.len(), 1, "one screen-pop, from the database");
    assert!(agent.whisper.len() >= 8000 * 10, "Ann was briefed");
    assert!(report.closed_by_gateway);
    drop(node_b);
}
