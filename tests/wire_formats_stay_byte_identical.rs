//! Golden files for every format warmline writes for others to read: the
//! Media Streams / agent-protocol messages (both directions) and the call
//! timeline (`timeline.json`). A refactor that changes one byte of them fails
//! here. To accept an intended change, run with `WARMLINE_BLESS=1` and review
//! the diff of tests/data/golden/.

use std::path::PathBuf;
use std::time::{Duration, Instant, UNIX_EPOCH};
use warmline::call::timeline::{ClearedBy, EndReason, Timeline, TimelineKind};
use warmline::domain::{HandoffStep, Party};
use warmline::domain::{Role, Trigger, Turn, Urgency};
use warmline::legs::media_streams::{self, AppWriter, ProviderWriter, StartMeta};

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/golden")
        .join(name)
}

/// Compares `actual` with the golden file, or writes it when blessing.
fn check(name: &str, actual: &str) {
    let path = golden(name);
    if std::env::var_os("WARMLINE_BLESS").is_some() {
        std::fs::write(&path, actual).expect("write golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with WARMLINE_BLESS=1 once)", path.display()));
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "{name} changed at line {}:\n  golden: {:?}\n  now:    {:?}",
            first + 1,
            expected.lines().nth(first),
            actual.lines().nth(first)
        );
    }
}

#[test]
fn every_message_warmline_writes_to_a_provider_or_an_ai_agent_is_unchanged() {
    let mut out = Vec::new();
    // What warmline sends an AI agent (it plays the provider).
    let mut provider = ProviderWriter::new("MZ-golden");
    out.push(provider.connected());
    let mut meta = StartMeta {
        account_sid: "AC-golden".into(),
        call_sid: "CA-golden".into(),
        ..StartMeta::default()
    };
    meta.custom_parameters
        .insert("transport".into(), "sip".into());
    meta.custom_parameters.insert("name".into(), "Ada".into());
    out.push(provider.start(meta));
    out.push(provider.media(&[0xff, 0x7f, 0x00, 0x80]));
    out.push(provider.mark("greeting-done"));
    out.push(provider.dtmf('5'));
    out.push(provider.stop("AC-golden", "CA-golden"));
    // What warmline sends a provider (it is the application).
    let app = AppWriter::new("MZ-golden");
    out.push(app.media(&[1, 2, 3, 4, 5]));
    out.push(app.mark("warmline-end"));
    out.push(app.clear());
    out.push(app.turn(Turn {
        role: Role::Agent,
        content: "One moment.".into(),
        confidence: Some(0.75),
    }));
    // Extensions warmline sends an AI agent (added after the lines above).
    let mut provider = ProviderWriter::new("MZ-golden");
    out.push(provider.handoff_result(&warmline::domain::HandoffResult {
        outcome: warmline::domain::HandoffOutcome::Completed,
        agent: Some("alex".into()),
        note: Some("Run the survey.".into()),
        conversation: vec![Turn {
            role: Role::User,
            content: "Where is my order?".into(),
            confidence: None,
        }],
    }));
    out.push(provider.supervisor_hint(&warmline::domain::SupervisorHint {
        from: "sam".into(),
        text: "Offer the credit.".into(),
    }));
    let mut text = out.join("\n");
    text.push('\n');
    check("media_streams_out.jsonl", &text);
}

#[test]
fn every_agent_protocol_event_reads_and_writes_back_byte_identical() {
    // Inbound messages an AI agent or a provider sends, as warmline parses them;
    // written back by warmline's serialiser they must be byte-identical.
    let inbound = std::fs::read_to_string(golden("agent_protocol_in.jsonl"))
        .expect("tests/data/golden/agent_protocol_in.jsonl");
    let mut written = String::new();
    for (n, line) in inbound.lines().enumerate() {
        let msg =
            media_streams::parse(line, 1 << 20).unwrap_or_else(|e| panic!("line {}: {e}", n + 1));
        written.push_str(&media_streams::to_json(&msg));
        written.push('\n');
    }
    check("agent_protocol_in.jsonl", &written);
}

#[test]
fn every_timeline_event_serialises_as_before() {
    let start = Instant::now();
    let mut timeline = Timeline::new(
        "call-golden",
        start,
        UNIX_EPOCH + Duration::from_secs(1_800_000_000),
    );
    let mut at = 0u64;
    let mut push = |kind: TimelineKind| {
        at += 20;
        timeline.push(start + Duration::from_millis(at), kind);
    };
    push(TimelineKind::CallStarted {
        call_sid: "CA-golden".into(),
        stream_sid: "MZ-golden".into(),
    });
    push(TimelineKind::AgentConnected);
    push(TimelineKind::AgentUnreachable {
        error: "connection refused".into(),
    });
    push(TimelineKind::AgentLost {
        error: "reset".into(),
    });
    push(TimelineKind::Turn {
        role: Role::User,
        content: "I want a person".into(),
        confidence: None,
    });
    push(TimelineKind::Turn {
        role: Role::Agent,
        content: "Sure.".into(),
        confidence: Some(0.5),
    });
    push(TimelineKind::EscalationRequested {
        trigger: Trigger::CustomerRequest,
        description: "asked".into(),
        urgency: Urgency::Elevated,
    });
    push(TimelineKind::ToolUsed {
        name: "order_lookup".into(),
        ok: true,
        detail: Some("shipped".into()),
        args: Some(Box::new(serde_json::json!({"order": "A1"}))),
        result: Some(Box::new(serde_json::json!({"status": "shipped"}))),
    });
    let customer = serde_json::json!({"id": "C-1", "name": "Ada"});
    push(TimelineKind::Customer {
        data: customer.as_object().cloned().unwrap_or_default(),
    });
    let intent = serde_json::json!({"primary": "refund", "amount": 600});
    push(TimelineKind::Intent {
        data: intent.as_object().cloned().unwrap_or_default(),
    });
    push(TimelineKind::MarkPlayed { name: "m1".into() });
    push(TimelineKind::Cleared {
        by: ClearedBy::Agent,
        frames_dropped: 3,
    });
    push(TimelineKind::Cleared {
        by: ClearedBy::CallerSpeech,
        frames_dropped: 0,
    });
    push(TimelineKind::EscalationDecided {
        trigger: Trigger::AuthorityLimit,
        urgency: Urgency::Critical,
        description: "refund over limit".into(),
        rule: "R4".into(),
        evidence: vec![1, 2],
        why: Box::new(serde_json::json!({"monitor": "classifier"})),
        decision_latency_us: 42,
        summary: serde_json::json!({"source": "template"}),
    });
    push(TimelineKind::WhisperRendered {
        text: "Refund over limit.".into(),
        seconds: 12.5,
        renders: 2,
        render_ms: 80.25,
        engine: "espeak-ng".into(),
        tts_failure: Some("cloud down".into()),
    });
    push(TimelineKind::WhisperFailed {
        error: "no engine".into(),
    });
    push(TimelineKind::AgentFirstWords {
        agent: "alice".into(),
        after_merge_ms: 900,
    });
    for step in [
        HandoffStep::Escalating,
        HandoffStep::Ringing,
        HandoffStep::Merged,
        HandoffStep::CallbackSaved,
    ] {
        push(TimelineKind::HandoffStep {
            step,
            agent: Some("alice".into()),
            detail: Some("d".into()),
        });
    }
    push(TimelineKind::HandoffStep {
        step: HandoffStep::NoAgent,
        agent: None,
        detail: None,
    });
    push(TimelineKind::Dtmf { digit: '#' });
    push(TimelineKind::PromptStarted {
        name: "apology".into(),
    });
    push(TimelineKind::AudioDropped {
        leg: Party::Caller,
        reason: "queue full".into(),
    });
    push(TimelineKind::ProtocolError {
        leg: Party::AiAgent,
        error: "bad json".into(),
    });
    push(TimelineKind::ProtocolError {
        leg: Party::HumanAgent,
        error: "bad json".into(),
    });
    for reason in [
        EndReason::CallerHangup,
        EndReason::CallerLost("reset".into()),
        EndReason::AgentHangup,
        EndReason::AgentUnavailable("refused".into()),
        EndReason::ProtocolErrors("50 in a row".into()),
        EndReason::Shutdown,
        EndReason::HumanAgentHangup,
        EndReason::CallbackScheduled("after hours".into()),
        EndReason::TimeLimit,
        EndReason::MediaTimeout("60 s".into()),
    ] {
        push(TimelineKind::CallEnded { reason });
    }
    let text = serde_json::to_string_pretty(&timeline).expect("timeline serialises");
    check("timeline.json", &(text + "\n"));
}
