//! `warmline demo` end to end: the caller's recording contains every agent line
//! and the timeline holds the whole conversation.

use std::path::Path;
use warmline::legs::media_streams::Role;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_call_records_what_the_caller_heard_and_said() {
    let out = tempfile::tempdir().unwrap();
    let report = warmline::demo::run(warmline::config::Config::default(), out.path())
        .await
        .expect("demo runs");
    for name in ["caller_heard.wav", "caller_said.wav", "timeline.json"] {
        assert!(
            Path::new(&report.call_dir.join(name)).is_file(),
            "{name} written"
        );
    }
    for (text, score) in &report.agent_lines_heard {
        assert!(
            *score > 0.95,
            "agent line {text:?} not found in caller_heard.wav ({score:.3})"
        );
    }
    let roles: Vec<Role> = report.timeline.turns().map(|(r, _)| r).collect();
    assert_eq!(
        roles,
        vec![
            Role::Agent,
            Role::User,
            Role::Agent,
            Role::User,
            Role::Agent,
            Role::User,
            Role::Agent
        ]
    );
    // The caller's own words are in caller_said.wav, in time order with the call.
    let said = warmline::media::wav::read_mono_file(&report.call_dir.join("caller_said.wav"), 8000)
        .unwrap();
    let original = warmline::assets::pcm(warmline::assets::DEMO_CALLER_WAV, "caller").unwrap();
    let (lag, score) =
        warmline::media::analysis::best_lag_correlation(&original[..8000 * 12], &said, 8);
    assert!(
        score > 0.95,
        "caller_said.wav matches what the caller sent ({score:.3})"
    );
    assert!(
        lag < 8000,
        "and starts within a second of the call ({lag} samples)"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report.call_dir.join("timeline.json")).unwrap())
            .unwrap();
    assert_eq!(
        json["events"].as_array().unwrap().last().unwrap()["type"],
        "call_ended"
    );
}
