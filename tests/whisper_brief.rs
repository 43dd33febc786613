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

/// The fit renders each sentence alone and joins them with the pause running
/// speech has after a sentence; the whisper must last as long as the same
/// words spoken at once, or the 10–15 s window would be measured on audio the
/// agent never hears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whisper_joined_from_its_sentences_lasts_as_long_as_the_words_spoken_at_once() {
    let espeak = EspeakTts::new("en-us");
    let mut worst: (f64, String) = (0.0, String::new());
    for (file, ctx) in &corpus() {
        let w = render_fitted(ctx, &espeak, None, WhisperWindow::default())
            .await
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let at_once = espeak
            .synthesize_blocking(&w.spoken, w.words_per_minute)
            .unwrap();
        let gap = (w.seconds() - at_once.seconds()).abs();
        if gap > worst.0 {
            worst = (gap, file.clone());
        }
    }
    println!("largest difference: {:.3} s ({})", worst.0, worst.1);
    assert!(worst.0 <= 0.25, "{:.3} s in {}", worst.0, worst.1);
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
