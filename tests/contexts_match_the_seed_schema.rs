//! Every handoff context warmline writes validates against the seed-typed schema
//! (docs/handoff-context.schema.json): the whisper test corpus read and written
//! back, and contexts built turn by turn with tools, contact objects and a decision.

mod support;

use std::time::SystemTime;
use warmline::brief::context::{ContextBuilder, HandoffContext};
use warmline::domain::Role;

#[test]
fn the_context_corpus_round_trips_into_the_seed_schema() {
    let mut n = 0;
    for entry in std::fs::read_dir("tests/data/contexts").unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let ctx = HandoffContext::from_json(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        support::assert_matches_context_schema(&serde_json::to_value(&ctx).unwrap());
        n += 1;
    }
    assert!(n >= 10, "{n} contexts");
}

#[test]
fn a_built_context_keeps_contact_info_a_string_and_tool_calls_as_sent() {
    let mut b = ContextBuilder::new("CA1", SystemTime::now(), "test");
    let customer = serde_json::json!({"id": "C-1", "name": "Sarah Chen", "verified": true,
        "contactInfo": {"phone": "+15550100", "email": "s@example.com"}});
    b.on_customer(customer.as_object().unwrap());
    b.on_turn(
        Role::User,
        "Where is my order?",
        SystemTime::now(),
        Some(-0.2),
        None,
    );
    let args = serde_json::json!({"orderId": "8821", "include": ["tracking"]});
    let result = serde_json::json!({"status": "lost", "lastScan": "2026-11-20"});
    b.on_tool(
        "order_lookup",
        true,
        Some("lost in transit"),
        Some(&args),
        Some(&result),
        SystemTime::now(),
    );
    b.on_tool(
        "get_account_balance",
        false,
        Some("timeout"),
        None,
        None,
        SystemTime::now(),
    );
    let json = serde_json::to_value(b.context()).unwrap();
    support::assert_matches_context_schema(&json);
    assert_eq!(json["customer"]["contactInfo"], "+15550100");
    assert_eq!(json["customer"]["contactDetails"]["email"], "s@example.com");
    assert_eq!(json["toolsUsed"][0]["args"], args);
    assert_eq!(json["toolsUsed"][0]["result"], result);
    assert_eq!(json["toolsUsed"][1]["ok"], false);
    // A context written by an older warmline (contactInfo an object) still reads.
    let old = r#"{"customer":{"contactInfo":{"phone":"+15550199"}},"intent":{},"summary":"","transcript":[],"conversationId":"c","startedAt":"2026-11-25T10:00:00Z"}"#;
    let ctx = HandoffContext::from_json(old).unwrap();
    assert_eq!(ctx.caller_number().as_deref(), Some("+15550199"));
}
