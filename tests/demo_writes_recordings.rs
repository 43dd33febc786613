//! `warmline demo` end to end: the AI fails twice, the call is escalated, a
//! human agent answers. The caller's recording has every AI line and the human
//! agent, never the whisper; the agent's recording has the whole whisper; the
//! context and whisper files reproduce the whisper exactly.

mod support;

use std::path::Path;
use warmline::call::timeline::EndReason;
use warmline::domain::Role;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_call_escalates_and_records_what_everyone_heard() {
    let out = tempfile::tempdir().unwrap();
    let report = warmline::demo::run(warmline::config::Config::default(), out.path())
        .await
        .expect("demo runs");
    for name in [
        "caller_heard.wav",
        "caller_said.wav",
        "agent_heard.wav",
        "timeline.json",
        "context.json",
        "whisper.txt",
        "whisper.wav",
    ] {
        assert!(
            Path::new(&report.call_dir.join(name)).is_file(),
            "{name} written"
        );
    }
    for (text, score) in &report.caller_heard_lines {
        assert!(
            *score > 0.95,
            "{text:?} not found in caller_heard.wav ({score:.3})"
        );
    }
    let in_agent = report.whisper_in_agent_audio.expect("whisper rendered");
    let in_caller = report.whisper_in_caller_audio.expect("whisper rendered");
    assert!(
        in_agent > 0.95,
        "the agent heard the whisper ({in_agent:.3})"
    );
    assert!(
        in_caller < 0.3,
        "the caller must not hear the whisper ({in_caller:.3})"
    );
    assert_eq!(
        report.timeline.end_reason(),
        Some(&EndReason::HumanAgentHangup)
    );
    let roles: Vec<Role> = report.timeline.turns().map(|(r, _)| r).collect();
    assert_eq!(
        roles,
        vec![
            Role::Agent,
            Role::User,
            Role::Agent,
            Role::User,
            Role::Agent
        ]
    );
    let seconds = report.timings.whisper_seconds.unwrap();
    assert!((10.0..=15.0).contains(&seconds), "{seconds}");

    // The caller's own words are in caller_said.wav, aligned with the call.
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

    let ctx: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(report.call_dir.join("context.json")).unwrap(),
    )
    .unwrap();
    support::assert_matches_context_schema(&ctx);
    assert!(
        ctx["customer"]["contactInfo"].is_string(),
        "the seed's contactInfo: string"
    );
    assert!(
        ctx["toolsUsed"][0]["args"].is_object() && !ctx["toolsUsed"][0]["result"].is_null(),
        "the demo's tool call keeps its arguments and result: {}",
        ctx["toolsUsed"]
    );

    // `warmline whisper --context context.json` reproduces the same whisper audio.
    let again = out.path().join("again.wav");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_warmline"))
        .args(["whisper", "--context"])
        .arg(report.call_dir.join("context.json"))
        .arg("--out")
        .arg(&again)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let a =
        warmline::media::wav::read_mono_file(&report.call_dir.join("whisper.wav"), 8000).unwrap();
    let b = warmline::media::wav::read_mono_file(&again, 8000).unwrap();
    // espeak-ng adds tiny random variation (voice flutter), so "the same whisper"
    // is the same words at the same length and shape, not identical samples.
    let (len_a, len_b) = (a.len() as f64 / 8000.0, b.len() as f64 / 8000.0);
    assert!((len_a - len_b).abs() < 0.1, "{len_a:.3} s vs {len_b:.3} s");
    let envelope = |x: &[i16]| -> Vec<f64> {
        x.chunks(160)
            .map(|f| (f.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / f.len() as f64).sqrt())
            .collect()
    };
    let (ea, eb) = (envelope(&a), envelope(&b));
    let n = ea.len().min(eb.len());
    let mean = |e: &[f64]| e.iter().sum::<f64>() / e.len() as f64;
    let (ma, mb) = (mean(&ea[..n]), mean(&eb[..n]));
    let cov: f64 = (0..n).map(|i| (ea[i] - ma) * (eb[i] - mb)).sum();
    let var = |e: &[f64], m: f64| (0..n).map(|i| (e[i] - m).powi(2)).sum::<f64>().sqrt();
    let shape = cov / (var(&ea, ma) * var(&eb, mb));
    assert!(
        shape > 0.75,
        "same whisper, word for word (envelope correlation {shape:.3})"
    );
    let text = std::fs::read_to_string(report.call_dir.join("whisper.txt")).unwrap();
    // "I already told you": the arc is negative, and the agent hears how the caller feels.
    assert!(
        text.contains("The caller sounds"),
        "the whisper says the mood: {text}"
    );
    assert!(text.contains("order lookup, which failed"), "{text}");
    assert!(String::from_utf8_lossy(&status.stdout).starts_with(text.trim()));
}
