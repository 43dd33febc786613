//! Human agents registered over REST survive a restart (SQLite, token kept only
//! as its SHA-256), and a console signs in with the token afterwards.

mod support;

use std::time::Duration;
use support::*;

fn http(addr: std::net::SocketAddr, request: String) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    (
        out[9..12].parse().unwrap(),
        out.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_agent_is_still_there_after_a_restart() {
    let db = tempfile::tempdir().unwrap().keep().join("warmline.db");
    let first = gateway("ws://127.0.0.1:9/none", |c| c.store.path = db.clone()).await;
    let addr = first.addr;
    let body = r#"{"id":"zoe","name":"Zoe Park","token":"zoe-console-token","skills":["billing"]}"#;
    let (status, reply) = tokio::task::spawn_blocking(move || {
        http(
            addr,
            format!(
                "POST /v1/agents HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ),
        )
    })
    .await
    .unwrap();
    assert_eq!(status, 201, "{reply}");
    let bad = r#"{"id":"bad id!","name":"x","token":"short"}"#;
    let (status, _) = tokio::task::spawn_blocking(move || {
        http(
            addr,
            format!(
                "POST /v1/agents HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{bad}",
                bad.len()
            ),
        )
    })
    .await
    .unwrap();
    assert_eq!(status, 400);
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
    let refused = tokio_tungstenite::connect_async(format!(
        "ws://{}/v1/agents/zoe/ws?token=nope",
        second.addr
    ))
    .await;
    assert!(refused.is_err(), "a wrong token is refused at the upgrade");
}
