//! Scale-out benchmark: how long an escalation takes to reach an agent's
//! screen across nodes, against the same step on one node, measured in the
//! same run, and how long a contested accept takes.
//!
//! Three ways of offering a queued call to an agent, 500 times each:
//! - **single node** (baseline): in-memory routing, no cluster;
//! - **cluster, agent on the same node**: a PostgreSQL dispatch round, no NATS hop;
//! - **cluster, agent on another node**: dispatch round on node A, then NATS to node B.
//!
//! Each sample runs from `Routing::enqueue` on the call's node to the offer
//! arriving on the agent's console channel. Then 1000 accept races: two nodes
//! accept the same offer at once; exactly one must win every time.
//!
//! Needs PostgreSQL (`WARMLINE_TEST_POSTGRES`, as the tests) and `nats-server`.
//! `cargo bench --bench cluster` writes target/bench-report/cluster.{json,md};
//! under `cargo test` it runs 5 samples and 20 races as a smoke check.

#[path = "../tests/support/cluster.rs"]
#[allow(dead_code)]
mod cluster_support;

use cluster_support::*;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use warmline::cluster::db::OfferKind;
use warmline::config::Config;
use warmline::domain::Urgency;
use warmline::gateway::RunningGateway;
use warmline::routing::HumanCommand;

struct Opts {
    samples: usize,
    races: usize,
}

fn options() -> Opts {
    if std::env::args().any(|a| a == "--bench") {
        Opts {
            samples: 500,
            races: 1000,
        }
    } else {
        Opts {
            samples: 5,
            races: 20,
        }
    }
}

async fn start(tweak: impl FnOnce(&mut Config)) -> RunningGateway {
    let mut config = Config::default();
    config.server.listen = format!("127.0.0.1:{}", free_port());
    let dir = tempfile::tempdir().expect("tempdir").keep();
    config.store.path = dir.join("warmline.db");
    config.log.level = "warn".into();
    tweak(&mut config);
    RunningGateway::start(config).await.expect("gateway starts")
}

/// Signs in `n` agents with `skill` on `gw`; offers to any of them arrive on the receiver.
fn consoles(
    gw: &RunningGateway,
    prefix: &str,
    skill: &str,
    n: usize,
) -> mpsc::UnboundedReceiver<(String, Instant)> {
    let (all_tx, all_rx) = mpsc::unbounded_channel();
    for i in 0..n {
        let id = format!("{prefix}{i}");
        gw.shared
            .routing
            .register(&id, &id, "bench-token", vec![skill.into()]);
        let (tx, mut rx) = mpsc::channel(16);
        gw.shared
            .routing
            .console_connected(&id, tx)
            .expect("console");
        let all = all_tx.clone();
        tokio::spawn(async move {
            while let Some(cmd) = rx.recv().await {
                if let HumanCommand::Offer { call_id, .. } = cmd {
                    let _ = all.send((call_id, Instant::now()));
                }
            }
        });
    }
    all_rx
}

/// Enqueue on `caller_node` → offer on a console: `samples` latencies in µs.
async fn offer_latency(
    caller_node: &RunningGateway,
    offers: &mut mpsc::UnboundedReceiver<(String, Instant)>,
    skill: &str,
    tag: &str,
    samples: usize,
) -> Vec<f64> {
    let mut out = Vec::with_capacity(samples);
    for i in 0..samples {
        let call = format!("{tag}{i}");
        let (notify, _events) = mpsc::channel(8);
        let started = Instant::now();
        caller_node
            .shared
            .routing
            .enqueue(&call, skill, Urgency::Standard, Arc::default(), notify);
        let (offered, at) = tokio::time::timeout(Duration::from_secs(10), offers.recv())
            .await
            .expect("an offer within 10 s")
            .expect("consoles alive");
        assert_eq!(offered, call);
        out.push(at.duration_since(started).as_secs_f64() * 1e6);
        caller_node
            .shared
            .routing
            .leave(&call, warmline::routing::WithdrawReason::CallerHangup);
        // Let the release land before the next call, as between real calls.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    out
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn summary(mut v: Vec<f64>) -> serde_json::Value {
    v.sort_by(f64::total_cmp);
    serde_json::json!({
        "samples": v.len(),
        "p50_us": percentile(&v, 0.5),
        "p99_us": percentile(&v, 0.99),
        "max_us": v.last().copied().unwrap_or(f64::NAN),
    })
}

async fn run(opts: &Opts) -> serde_json::Value {
    let pg = fresh_database("bench").await;
    let nats = Nats::start();

    // Baseline: one node, in-memory routing.
    let single = start(|_| {}).await;
    let mut single_offers = consoles(&single, "s", "", 20);
    let baseline = offer_latency(&single, &mut single_offers, "", "S", opts.samples).await;

    // Two cluster nodes; agents with skill "local" on A, "remote" on B.
    let (port_a, port_b) = (free_port(), free_port());
    let a = start(|c| cluster_node_config(c, "bench-a", port_a, &pg, &nats.url)).await;
    let b = start(|c| cluster_node_config(c, "bench-b", port_b, &pg, &nats.url)).await;
    let mut local_offers = consoles(&a, "l", "local", 20);
    let mut remote_offers = consoles(&b, "r", "remote", 20);
    wait_agent_on(&a.shared.routing, "r19", "bench-b").await;
    tokio::time::sleep(Duration::from_millis(500)).await; // presence rows written
    let same_node = offer_latency(&a, &mut local_offers, "local", "L", opts.samples).await;
    let cross_node = offer_latency(&a, &mut remote_offers, "remote", "R", opts.samples).await;

    // Accept races, on a database of their own (the nodes above run dispatch rounds).
    let (da, db) = two_cluster_dbs("races").await;
    let (mut winners, mut race_us) = (Vec::new(), Vec::new());
    for i in 0..opts.races {
        let call = format!("X{i}");
        db.set_presence("racer", "available", &["race".into()], Duration::ZERO)
            .await
            .expect("presence");
        da.enqueue(&queue_entry(&call, "race"))
            .await
            .expect("enqueue");
        let round = da.dispatch_round().await.expect("round");
        assert!(round.matches.iter().any(|m| m.call_id == call), "{round:?}");
        let started = Instant::now();
        let (ra, rb) = tokio::join!(
            da.accept("racer", OfferKind::Call, &call),
            db.accept("racer", OfferKind::Call, &call)
        );
        race_us.push(started.elapsed().as_secs_f64() * 1e6);
        winners.push(usize::from(ra.is_ok()) + usize::from(rb.is_ok()));
    }
    let exactly_one = winners.iter().filter(|&&w| w == 1).count();
    assert_eq!(exactly_one, opts.races, "every race has exactly one winner");

    let base = summary(baseline);
    let same = summary(same_node);
    let cross = summary(cross_node);
    let ratio = |s: &serde_json::Value, key: &str| {
        s[key].as_f64().unwrap_or(f64::NAN) / base[key].as_f64().unwrap_or(f64::NAN)
    };
    serde_json::json!({
        "single_node": base,
        "cluster_same_node": same,
        "cluster_cross_node": cross,
        "ratio_cross_node_vs_single_p50": ratio(&cross, "p50_us"),
        "ratio_cross_node_vs_single_p99": ratio(&cross, "p99_us"),
        "ratio_same_node_vs_single_p50": ratio(&same, "p50_us"),
        "accept_races": {
            "races": opts.races,
            "exactly_one_winner": exactly_one,
            "race": summary(race_us),
        },
    })
}

fn markdown(r: &serde_json::Value) -> String {
    let row = |name: &str, s: &serde_json::Value| {
        format!(
            "| {name} | {} | {:.0} | {:.0} | {:.0} |\n",
            s["samples"],
            s["p50_us"].as_f64().unwrap_or(f64::NAN),
            s["p99_us"].as_f64().unwrap_or(f64::NAN),
            s["max_us"].as_f64().unwrap_or(f64::NAN)
        )
    };
    let mut md = String::from(
        "| escalation → offer on the agent's console | samples | p50 µs | p99 µs | max µs |\n|---|---|---|---|---|\n",
    );
    md.push_str(&row("single node (baseline)", &r["single_node"]));
    md.push_str(&row(
        "cluster, agent on the same node",
        &r["cluster_same_node"],
    ));
    md.push_str(&row(
        "cluster, agent on another node",
        &r["cluster_cross_node"],
    ));
    md.push_str(&format!(
        "\ncross-node / single-node: p50 ×{:.1}, p99 ×{:.1}\n\n",
        r["ratio_cross_node_vs_single_p50"]
            .as_f64()
            .unwrap_or(f64::NAN),
        r["ratio_cross_node_vs_single_p99"]
            .as_f64()
            .unwrap_or(f64::NAN)
    ));
    let races = &r["accept_races"];
    md.push_str(&format!(
        "accept races: {} of {} with exactly one winner; contested accept p50 {:.0} µs, p99 {:.0} µs\n",
        races["exactly_one_winner"],
        races["races"],
        races["race"]["p50_us"].as_f64().unwrap_or(f64::NAN),
        races["race"]["p99_us"].as_f64().unwrap_or(f64::NAN)
    ));
    md
}

fn main() {
    let opts = options();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let report = rt.block_on(run(&opts));
    let md = markdown(&report);
    println!("{md}");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-report");
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(
            dir.join("cluster.json"),
            serde_json::to_string_pretty(&report).unwrap_or_default(),
        );
        let _ = std::fs::write(dir.join("cluster.md"), md);
    }
}
