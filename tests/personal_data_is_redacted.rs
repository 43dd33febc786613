//! Personal data the conversation carries (a card number read out, an e-mail, a
//! social security number in a tool's arguments, an operator's own pattern) is
//! replaced before anything is stored: the timeline, the handoff context served
//! by the API and the database files on disk hold the labels, never the raw
//! text. Real sockets, a real SQLite file.

mod support;

use std::time::Duration;
use support::*;

const CARD: &str = "4111 1111 1111 1111";
const CARD_DIGITS: &str = "4111111111111111";
const EMAIL: &str = "sarah.chen@example.com";
const SSN: &str = "078-05-1120";
const POLICY: &str = "POL-55512345";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn card_numbers_emails_ids_and_operator_patterns_never_reach_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("warmline.db");
    let mut ai = RawAgent::start().await;
    let gw = gateway(&ai.url, |c| {
        c.store.path = db.clone();
        c.privacy.patterns.push(warmline::util::pii::PatternConfig {
            name: "policy_number".into(),
            regex: r"POL-\d{8}".into(),
        });
    })
    .await;
    let (mut caller, mut writer) = started_caller(&gw.media_url(), "CApii").await;
    let (mut agent, _, sid) = ai.accept().await;
    let said =
        format!("My card is {CARD}, email {EMAIL}, policy {POLICY}. I want to speak to a person.");
    let messages = [
        serde_json::json!({"event": "turn", "streamSid": sid,
            "turn": {"role": "agent", "content": "Hello, how can I help?", "confidence": 0.9}}),
        serde_json::json!({"event": "turn", "streamSid": sid,
            "turn": {"role": "user", "content": said}}),
        serde_json::json!({"event": "tool", "streamSid": sid,
            "tool": {"name": "verify_identity", "ok": false, "detail": format!("no match for {SSN}"),
                     "args": {"ssn": SSN, "card": CARD_DIGITS}, "result": {"email": EMAIL}}}),
        serde_json::json!({"event": "escalate", "streamSid": sid,
            "escalate": {"trigger": "customer_request", "description": format!("wants a person about card {CARD}"),
                         "urgency": "standard"}}),
    ];
    for m in messages {
        agent.send(m.to_string()).await;
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    caller.send(writer.stop("ACtest", "CApii")).await;
    let done = gw.shared.registry.wait_finished(1, SOON).await;
    assert_eq!(done.len(), 1);
    let timeline = serde_json::to_string(&*done[0]).expect("json");
    let call_id = done[0].call_id.clone();
    // Read what a desk would read, then stop so every write is on disk.
    let (status, context) = http(
        gw.addr,
        "GET",
        &format!("/v1/calls/{call_id}/context"),
        None,
        None,
    )
    .await;
    gw.shutdown().await;
    drop(agent);

    assert!(timeline.contains("[card ending 1111]"), "{timeline}");
    assert!(
        timeline.contains("[email]") && timeline.contains("[ssn]"),
        "{timeline}"
    );
    assert!(timeline.contains("[policy_number]"), "{timeline}");
    assert_eq!(status, 200, "{context}");
    assert!(context.contains("[card ending 1111]"), "{context}");
    let mut on_disk = Vec::new();
    for entry in std::fs::read_dir(dir.path()).expect("dir").flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with("warmline.db")
        {
            on_disk.extend(std::fs::read(entry.path()).expect("read db file"));
        }
    }
    assert!(on_disk.len() > 1000, "the database was written");
    let disk = String::from_utf8_lossy(&on_disk);
    assert!(disk.contains("[card ending 1111]"), "the labels are stored");
    for raw in [CARD, CARD_DIGITS, EMAIL, SSN, POLICY] {
        assert!(!timeline.contains(raw), "timeline holds {raw}");
        assert!(!context.contains(raw), "context holds {raw}");
        assert!(!disk.contains(raw), "the database file holds {raw}");
    }
}
