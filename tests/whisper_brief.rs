//! The whisper brief is 10–15 s of real speech for every context in the corpus
//! (tests/data/contexts), names the caller, the intent and the reason, and
//! survives a failing, slow or garbage-spewing HTTP TTS by falling back to the
//! embedded espeak-ng engine.

use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use std::time::Duration;
use warmline::brief::context::HandoffContext;
use warmline::brief::tts::{EspeakTts, HttpTts, Tts};
use warmline::brief::whisper::{WhisperWindow, render_fitted};

fn corpus() -> Vec<(String, HandoffContext)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/contexts");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                HandoffContext::from_json(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_whisper_in_the_corpus_is_ten_to_fifteen_seconds_and_says_who_what_and_why() {
    let espeak = EspeakTts::new("en-us");
    let contexts = corpus();
    assert!(contexts.len() >= 30);
    let mut durations = Vec::new();
    for (file, ctx) in &contexts {
        let w = render_fitted(ctx, &espeak, None, WhisperWindow::default())
            .await
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let s = w.seconds();
        assert!((10.0..=15.0).contains(&s), "{file}: {s:.2} s: {}", w.text);
        let name = ctx.customer.name.trim();
        if !name.is_empty() {
            assert!(w.text.contains(name), "{file}: name missing: {}", w.text);
        }
        let intent = ctx.intent.primary.replace('_', " ");
        if !intent.is_empty() {
            assert!(
                w.text.contains(&intent),
                "{file}: intent missing: {}",
                w.text
            );
        } else {
            assert!(
                w.text.contains("Calling about") || w.text.contains("reason for the call"),
                "{file}: {}",
                w.text
            );
        }
        if let Some(reason) = &ctx.escalation_reason {
            let trigger = reason.trigger.as_str().replace('_', " ");
            assert!(
                w.text.contains(&format!("Escalated for {trigger}")),
                "{file}: reason missing: {}",
                w.text
            );
        }
        // Real speech, not padding: loud enough throughout its length.
        assert!(
            warmline::media::analysis::rms_dbfs(&w.speech.samples) > -35.0,
            "{file}"
        );
        durations.push((file.clone(), s, w.renders, w.render_ms));
    }
    for (file, s, renders, ms) in &durations {
        println!("{file}: {s:.2} s in {renders} renders, {ms:.1} ms");
    }
}

/// A local server with the OpenAI `/v1/audio/speech` shape: fast (real speech
/// as 24 kHz WAV), slow, failing and garbage variants.
async fn speech_server() -> String {
    async fn fast(axum::Json(body): axum::Json<serde_json::Value>) -> impl IntoResponse {
        assert_eq!(body["response_format"], "wav");
        let input = body["input"].as_str().unwrap_or_default().to_string();
        let speed = body["speed"].as_f64().unwrap_or(1.0);
        let speech = EspeakTts::new("en")
            .synthesize_blocking(&input, (175.0 * speed) as u32)
            .unwrap();
        let samples =
            warmline::media::resample::resample_clip(&speech.samples, speech.rate, 24_000).unwrap();
        let mut wav = std::io::Cursor::new(Vec::new());
        {
            let spec = hound::WavSpec {
                channels: 1,
                sample_rate: 24_000,
                bits_per_sample: 16,
                sample_format: hound::SampleFormat::Int,
            };
            let mut w = hound::WavWriter::new(&mut wav, spec).unwrap();
            for s in samples {
                w.write_sample(s).unwrap();
            }
            w.finalize().unwrap();
        }
        ([("content-type", "audio/wav")], wav.into_inner())
    }
    async fn slow() -> &'static str {
        tokio::time::sleep(Duration::from_secs(10)).await;
        ""
    }
    async fn failing() -> (StatusCode, &'static str) {
        (StatusCode::SERVICE_UNAVAILABLE, "busy")
    }
    async fn garbage() -> Vec<u8> {
        (0..5000u32).map(|i| (i * 7919 % 251) as u8).collect()
    }
    let app = Router::new()
        .route("/fast/v1/audio/speech", post(fast))
        .route("/slow/v1/audio/speech", post(slow))
        .route("/failing/v1/audio/speech", post(failing))
        .route("/garbage/v1/audio/speech", post(garbage));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn http(base: &str, variant: &str) -> HttpTts {
    HttpTts::new(
        &format!("{base}/{variant}/v1/audio/speech"),
        "tts-1",
        "alloy",
        "sk-test",
        Duration::from_millis(800),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_engine_is_used_when_it_works_and_espeak_takes_over_when_it_does_not() {
    let base = speech_server().await;
    let espeak = EspeakTts::new("en-us");
    let ctx = &corpus()[0].1;

    let ok = http(&base, "fast");
    let w = render_fitted(
        ctx,
        &ok,
        Some(&espeak as &dyn Tts),
        WhisperWindow::default(),
    )
    .await
    .unwrap();
    assert_eq!(w.engine, "http");
    assert_eq!(w.speech.rate, 24_000);
    assert!(w.tts_failure.is_none());
    assert!((10.0..=15.0).contains(&w.seconds()));

    for (variant, why) in [
        ("slow", "no audio within 800 ms"),
        ("failing", "503"),
        ("garbage", "not a WAV"),
    ] {
        let engine = http(&base, variant);
        let w = render_fitted(
            ctx,
            &engine,
            Some(&espeak as &dyn Tts),
            WhisperWindow::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("{variant}: {e}"));
        assert_eq!(w.engine, "espeak-ng", "{variant}");
        let failure = w.tts_failure.clone().unwrap_or_default();
        assert!(failure.contains(why), "{variant}: {failure}");
        assert!(
            (10.0..=15.0).contains(&w.seconds()),
            "{variant}: {:.2}",
            w.seconds()
        );
    }
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
    let (_, ctx) = corpus().remove(0);
    let config = warmline::config::Config::default();
    let window = WhisperWindow::from_config(&config);
    // A busy gateway: its engine has spoken other things first (prompts in
    // another voice, other whispers), which leaves espeak-ng in another state.
    let engines = warmline::brief::tts::TtsSet::from_config(&config.tts)
        .expect("engines")
        .with_whisper_workers(env!("CARGO_BIN_EXE_warmline").into(), 2, &config.tts);
    let _ = engines
        .prompt_ulaw("Please hold while I connect you.", 170)
        .await;
    let (_, other) = corpus().remove(3);
    let _ = engines.render_whisper_here(&other, window).await;
    let in_process = engines
        .render_whisper_here(&ctx, window)
        .await
        .expect("in-process render");
    let gateway = engines
        .render_whisper(&ctx, window)
        .await
        .expect("worker render");

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
