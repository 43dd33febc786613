//! Node failure: node A (a real `warmline serve` process) is killed with
//! SIGKILL while its caller is queued and ringing an agent on node B. Node B
//! notices A's lease expire, withdraws the offer, saves the caller as a
//! callback with the context A had put in PostgreSQL, and offers that
//! callback to the agent, who takes it.

mod support;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::time::{Duration, Instant};
use support::cluster::*;
use support::*;
use tokio_tungstenite::tungstenite::Message;
use warmline::sim::agent::ScriptedAgent;
use warmline::sim::caller::{self, CallerOptions};

type Console =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next console event named `event`, skipping others.
async fn next_event(console: &mut Console, event: &str, within: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let msg = tokio::time::timeout(left, console.next())
            .await
            .unwrap_or_else(|_| panic!("no {event} within {within:?}"));
        if let Some(Ok(Message::Text(t))) = msg {
            let v: Value = serde_json::from_str(&t).expect("console JSON");
            if v["event"] == event {
                return v;
            }
        } else if msg.is_none() {
            panic!("console closed while waiting for {event}");
        }
    }
}

async fn accept(console: &mut Console, call_id: &str) {
    let accept = serde_json::json!({"event": "accept", "callId": call_id});
    console
        .send(Message::Text(accept.to_string().into()))
        .await
        .expect("accept sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nodes_queued_caller_becomes_a_callback_offered_on_another_node() {
    let pg = fresh_database("failover").await;
    let nats = Nats::start();
    let ai = ScriptedAgent::start(ai_script_requesting_person())
        .await
        .unwrap();
    let agent_table =
        "[[routing.agents]]\nid = \"ann\"\nname = \"Ann\"\ntoken = \"ann-secret-token\"\n";
    // Node A: a real process, so it can really die. Ann is rung for a minute.
    let dir_a = tempfile::tempdir().unwrap();
    let port_a = free_port();
    let (mut node_a, addr_a) = serve_process_on(
        dir_a.path(),
        port_a,
        &ai.url(),
        "per_ip_rate = 0.0",
        &format!("postgres_url = \"{pg}\""),
        &format!(
            "{}[routing]\nring_timeout_ms = 60000\n{agent_table}",
            cluster_node_toml("node-a", port_a, &nats.url)
        ),
    )
    .await;
    let node_b = gateway(&ai.url(), |c| {
        cluster_node_config(c, "node-b", free_port(), &pg, &nats.url);
        c.routing.ring_timeout_ms = 60_000;
        c.routing.agents.push(agent_seed("ann"));
    })
    .await;

    // Ann's console on node B.
    let (mut ann, _) = tokio_tungstenite::connect_async(format!(
        "ws://{}/v1/agents/ann/ws?token=ann-secret-token",
        node_b.addr
    ))
    .await
    .expect("console connects");
    next_event(&mut ann, "connected", SOON).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = http(addr_a, "GET", "/v1/agents", None, None).await;
        let agents: Value = serde_json::from_str(&body).expect("agents JSON");
        if agents["agents"].as_array().is_some_and(|a| {
            a.iter()
                .any(|a| a["id"] == "ann" && a["node"] == "node-b" && a["status"] == "available")
        }) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node A sees Ann: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A caller on node A asks for a person; Ann's screen pops on node B.
    let mut options = CallerOptions::new(
        format!("ws://{addr_a}/media"),
        caller_requesting_person(60),
        5,
    );
    options
        .custom_parameters
        .insert("name".into(), "Sarah Chen".into());
    options
        .custom_parameters
        .insert("from".into(), "+15550100".into());
    let caller = tokio::spawn(caller::run(options));
    let offer = next_event(&mut ann, "offer", Duration::from_secs(30)).await;
    assert_eq!(offer["kind"], "call");
    let call_id = offer["callId"].as_str().expect("callId").to_string();
    assert_eq!(offer["context"]["customer"]["name"], "Sarah Chen");

    // Node A dies without a word.
    node_a.kill().expect("kill node A");
    let killed = Instant::now();
    let _ = node_a.wait();
    let caller_result = caller.await.expect("caller task");
    assert!(
        caller_result.map_or(true, |r| !r.closed_by_gateway || r.close_code.is_none()),
        "the caller's connection just broke"
    );

    // Node B takes over: the offer is withdrawn, the caller saved as a callback and offered.
    let withdrawn = next_event(&mut ann, "offer_withdrawn", Duration::from_secs(10)).await;
    assert_eq!(withdrawn["callId"], call_id.as_str());
    let callback = next_event(&mut ann, "offer", Duration::from_secs(10)).await;
    let took = killed.elapsed();
    assert_eq!(callback["kind"], "callback");
    assert_eq!(callback["callId"], call_id.as_str());
    assert_eq!(
        callback["context"]["customer"]["name"], "Sarah Chen",
        "the context survived"
    );
    println!(
        "node A killed → callback offered on node B in {:.0} ms (lease 1000 ms, heartbeat 200 ms)",
        took.as_secs_f64() * 1e3
    );
    accept(&mut ann, &call_id).await;
    let assigned = next_event(&mut ann, "callback_assigned", SOON).await;
    assert_eq!(assigned["number"], "+15550100");

    // In PostgreSQL: the callback, assigned to Ann, with the reason and the context.
    let rows = query(
        &pg,
        "SELECT status, agent_id, reason, context FROM callbacks WHERE call_id = $1",
        &[&call_id],
    )
    .await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, &str>(0), "assigned");
    assert_eq!(rows[0].get::<_, Option<&str>>(1), Some("ann"));
    assert!(
        rows[0].get::<_, &str>(2).contains("node-a"),
        "{}",
        rows[0].get::<_, &str>(2)
    );
    assert!(rows[0].get::<_, &str>(3).contains("Sarah Chen"));
    let queue = query(&pg, "SELECT count(*) FROM wl_queue", &[]).await;
    assert_eq!(queue[0].get::<_, i64>(0), 0);
    let nodes = query(&pg, "SELECT node_id FROM wl_nodes ORDER BY 1", &[]).await;
    let nodes: Vec<&str> = nodes.iter().map(|r| r.get(0)).collect();
    assert_eq!(nodes, vec!["node-b"], "node A's lease is gone");
    // A second accept of the same callback loses.
    accept(&mut ann, &call_id).await;
    let refused = next_event(&mut ann, "error", SOON).await;
    assert!(
        refused["message"]
            .as_str()
            .unwrap_or("")
            .contains("not offered"),
        "{refused}"
    );
    drop(node_b);
}
