//! Human agents registered over REST survive a restart (SQLite, token kept only
//! as its SHA-256) with the availability they chose, and a console signs in
//! with the token afterwards.

mod support;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_agent_is_still_there_after_a_restart() {
    let db = tempfile::tempdir().unwrap().keep().join("warmline.db");
    let first = gateway("ws://127.0.0.1:9/none", |c| c.store.path = db.clone()).await;
    let addr = first.addr;
    let body = r#"{"id":"zoe","name":"Zoe Park","token":"zoe-console-token","skills":["billing"]}"#;
    let (status, reply) = http(addr, "POST", "/v1/agents", None, Some(body)).await;
    assert_eq!(status, 201, "{reply}");
    let bad = r#"{"id":"bad id!","name":"x","token":"short"}"#;
    let (status, _) = http(addr, "POST", "/v1/agents", None, Some(bad)).await;
    assert_eq!(status, 400);
    // Zoe goes offline (end of shift) before the restart.
    let (status, reply) = http(
        addr,
        "POST",
        "/v1/agents/zoe/status",
        None,
        Some(r#"{"status":"offline"}"#),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(first.shared.store.flush().await.unwrap(), 0);
    first.shutdown().await;

    // The raw token is nowhere in the database.
    let raw = std::fs::read(&db).unwrap();
    assert!(!raw.windows(17).any(|w| w == b"zoe-console-token"));

    let second = gateway("ws://127.0.0.1:9/none", |c| c.store.path = db.clone()).await;
    let agents = second.shared.routing.agents();
    assert_eq!(agents.len(), 1);
    assert_eq!(
        (agents[0].id.as_str(), agents[0].skills.clone()),
        ("zoe", vec!["billing".to_string()])
    );
    assert!(
        second
            .shared
            .routing
            .authenticate("zoe", "zoe-console-token")
            .is_ok()
    );
    assert!(second.shared.routing.authenticate("zoe", "wrong").is_err());
    let url = format!(
        "ws://{}/v1/agents/zoe/ws?token=zoe-console-token",
        second.addr
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("console signs in");
    use futures_util::StreamExt;
    let hello = ws.next().await.unwrap().unwrap();
    assert!(hello.to_text().unwrap().contains("\"connected\""));
    let zoe = &second.shared.routing.agents()[0];
    assert!(zoe.connected);
    assert_eq!(
        zoe.status,
        warmline::routing::AgentStatus::Offline,
        "her console reconnects, but she chose to be offline"
    );
    let refused = tokio_tungstenite::connect_async(format!(
        "ws://{}/v1/agents/zoe/ws?token=nope",
        second.addr
    ))
    .await;
    assert!(refused.is_err(), "a wrong token is refused at the upgrade");
}
