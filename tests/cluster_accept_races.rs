//! Races between nodes, decided by PostgreSQL row locks on a real server:
//! two nodes accepting the same offer 1000 times (exactly one wins each), and
//! two nodes running dispatch rounds at once over the same calls and agents
//! (no agent offered two calls, no call offered to two agents).

mod support;

use std::collections::HashSet;
use std::time::Duration;
use support::cluster::{queue_entry, two_cluster_dbs};
use warmline::cluster::db::{ClusterDbError, OfferKind, QueueEntry};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_accepting_one_offer_1000_times_have_exactly_one_winner_each() {
    let (a, b) = two_cluster_dbs("accept").await;
    let (mut a_won, mut b_won) = (0, 0);
    for i in 0..1000 {
        let call = format!("CA{i}");
        b.set_presence("ann", "available", &[], Duration::ZERO)
            .await
            .expect("ann available");
        a.enqueue(&queue_entry(&call, "")).await.expect("queued");
        let round = a.dispatch_round().await.expect("round");
        assert_eq!(round.matches.len(), 1, "round {i}: {round:?}");
        assert_eq!(round.matches[0].agent_id, "ann");
        let (ra, rb) = tokio::join!(
            a.accept("ann", OfferKind::Call, &call),
            b.accept("ann", OfferKind::Call, &call)
        );
        match (&ra, &rb) {
            (Ok(_), Err(ClusterDbError::NotOffered { .. })) => a_won += 1,
            (Err(ClusterDbError::NotOffered { .. }), Ok(_)) => b_won += 1,
            _ => panic!("attempt {i}: exactly one accept must win: {ra:?} / {rb:?}"),
        }
    }
    println!("1000 accept races: node A won {a_won}, node B won {b_won}, never both or neither");
    assert_eq!(a_won + b_won, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_dispatch_rounds_never_double_book() {
    let (a, b) = two_cluster_dbs("dispatch").await;
    let agents = ["ann", "bob", "cid"];
    for round_no in 0..200 {
        for agent in agents {
            // Both nodes host agents; either node's round may pick any of them.
            let node = if agent == "bob" { &a } else { &b };
            node.set_presence(agent, "available", &[], Duration::ZERO)
                .await
                .expect("presence");
        }
        // Four callers (one more than agents), split over the two nodes.
        for k in 0..4 {
            let node = if k % 2 == 0 { &a } else { &b };
            node.enqueue(&queue_entry(&format!("R{round_no}-{k}"), ""))
                .await
                .expect("queued");
        }
        let (ra, rb) = tokio::join!(a.dispatch_round(), b.dispatch_round());
        let matches: Vec<_> = ra
            .expect("round a")
            .matches
            .into_iter()
            .chain(rb.expect("round b").matches)
            .collect();
        let booked: HashSet<&str> = matches.iter().map(|m| m.agent_id.as_str()).collect();
        let calls: HashSet<&str> = matches.iter().map(|m| m.call_id.as_str()).collect();
        assert_eq!(
            booked.len(),
            matches.len(),
            "an agent offered two calls: {matches:?}"
        );
        assert_eq!(
            calls.len(),
            matches.len(),
            "a call offered to two agents: {matches:?}"
        );
        assert!(matches.len() <= agents.len());
        // Clear the round: callers leave, agents are freed.
        for k in 0..4 {
            a.leave(&format!("R{round_no}-{k}")).await.expect("leave");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_call_goes_to_the_next_agent_and_a_stale_decline_changes_nothing() {
    let (a, b) = two_cluster_dbs("decline").await;
    b.set_presence("ann", "available", &[], Duration::from_secs(60))
        .await
        .unwrap();
    b.set_presence("bob", "available", &[], Duration::ZERO)
        .await
        .unwrap();
    // Node A cannot take Ann (on node B) offline, nor can a node make her ringing without an offer.
    a.set_presence("ann", "offline", &[], Duration::ZERO)
        .await
        .unwrap();
    b.set_presence("ann", "ringing", &[], Duration::from_secs(60))
        .await
        .unwrap();
    a.enqueue(&queue_entry("CA1", "")).await.unwrap();
    let first = a.dispatch_round().await.unwrap();
    assert_eq!(first.matches[0].agent_id, "ann", "longest idle first");
    let released = b.release("ann", "CA1").await.unwrap().expect("released");
    assert_eq!(released.owner_node.as_deref(), Some("node-a"));
    // The same decline again (a duplicated message) is a no-op.
    assert_eq!(b.release("ann", "CA1").await.unwrap(), None);
    let second = b.dispatch_round().await.unwrap();
    assert_eq!(second.matches.len(), 1);
    assert_eq!(
        second.matches[0].agent_id, "bob",
        "never back to who declined"
    );
    // Ann's late accept of the old offer loses; Bob's wins.
    assert!(a.accept("ann", OfferKind::Call, "CA1").await.is_err());
    assert!(a.accept("bob", OfferKind::Call, "CA1").await.is_ok());
    // Nobody else: a call that every agent tried is unroutable.
    a.enqueue(&QueueEntry {
        tried: vec!["ann".into(), "bob".into()],
        ..queue_entry("CA2", "")
    })
    .await
    .unwrap();
    let last = a.dispatch_round().await.unwrap();
    assert_eq!(last.unroutable.len(), 1, "{last:?}");
    assert_eq!(last.unroutable[0].reason, "no agent answered");
}
