//! A whisper rendered by a busy gateway is reproduced sample for sample by
//! `warmline whisper` from the saved context: each whisper is rendered by a
//! fresh fork of a worker that has loaded the engine and nothing else, the
//! engine state the CLI starts from, however many whispers that worker served. (Its own test
//! binary: it keeps both cores busy, which would slow the timing-bound TTS
//! fallback tests beside it.)

use warmline::brief::context::HandoffContext;
use warmline::brief::whisper::WhisperWindow;

/// The first context of tests/data/contexts and another one.
fn contexts() -> (HandoffContext, HandoffContext) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/contexts");
    let read = |name: &str| {
        HandoffContext::from_json(&std::fs::read_to_string(dir.join(name)).expect("corpus file"))
            .expect("context")
    };
    (read("context_00.json"), read("context_03.json"))
}

/// Normalised cross-correlation at lag 0 (1.0 = the same samples).
fn ncc(a: &[i16], b: &[i16]) -> f64 {
    let dot = |x: &[i16], y: &[i16]| -> f64 {
        x.iter()
            .zip(y)
            .map(|(&p, &q)| f64::from(p) * f64::from(q))
            .sum()
    };
    dot(a, b) / (dot(a, a) * dot(b, b)).sqrt()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_whisper_is_reproduced_sample_for_sample_by_the_cli() {
    let (ctx, other) = contexts();
    let config = warmline::config::Config::default();
    let window = WhisperWindow::from_config(&config);
    // A busy gateway: its engine has spoken other things first (prompts in
    // another voice, other whispers), which leaves espeak-ng in another state.
    let engines = warmline::brief::tts::TtsSet::from_config(&config.tts)
        .expect("engines")
        .with_whisper_workers(env!("CARGO_BIN_EXE_warmline").into(), 1, &config.tts);
    let _ = engines
        .prompt_ulaw("Please hold while I connect you.", 170)
        .await;
    let _ = engines.render_whisper_here(&other, window).await;
    let in_process = engines
        .render_whisper_here(&ctx, window)
        .await
        .expect("in-process render");
    // One worker (the pool has one slot): it serves another whisper first,
    // then this one twice.
    engines
        .render_whisper(&other, window)
        .await
        .expect("worker render");
    let gateway = engines
        .render_whisper(&ctx, window)
        .await
        .expect("worker render");
    let again = engines
        .render_whisper(&ctx, window)
        .await
        .expect("worker render");
    assert_eq!(
        gateway.speech.samples, again.speech.samples,
        "a worker renders the same context the same way every time"
    );

    // The CLI, from the context as saved.
    let dir = tempfile::tempdir().expect("tempdir");
    let saved = dir.path().join("context.json");
    std::fs::write(&saved, ctx.to_json_pretty()).expect("write context");
    let wav = dir.path().join("cli.wav");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_warmline"))
        .args(["whisper", "--rate", "0", "--context"])
        .arg(&saved)
        .arg("--out")
        .arg(&wav)
        .output()
        .expect("run warmline whisper");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli = warmline::media::wav::read_mono_file(&wav, gateway.speech.rate).expect("cli wav");

    assert_eq!(gateway.text, in_process.text, "the same words either way");
    assert_eq!(
        gateway.speech.samples.len(),
        cli.len(),
        "same length as the CLI"
    );
    let score = ncc(&gateway.speech.samples, &cli);
    assert!(
        score >= 0.99,
        "the CLI reproduces the gateway's whisper: NCC {score:.4}"
    );
    // What the fix is about: rendered after other speech in one process, the
    // same brief does not come out the same.
    let drift = if in_process.speech.samples.len() == cli.len() {
        ncc(&in_process.speech.samples, &cli)
    } else {
        0.0
    };
    eprintln!("NCC with the CLI: worker {score:.4}, busy in-process engine {drift:.4}");
    assert!(
        drift < 0.99,
        "a busy in-process engine was expected to drift ({drift:.4})"
    );
}
