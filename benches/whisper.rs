//! Whisper brief costs (criterion): one espeak-ng render of a ~13 s brief
//! in-process, the whole fit-to-window loop for a rich context, and resampling
//! the result to 8 kHz for a phone leg.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use warmline::brief::context::HandoffContext;
use warmline::brief::tts::EspeakTts;
use warmline::brief::whisper::{WhisperWindow, render_fitted};

const BRIEF: &str = "Incoming from Sarah Chen, already verified. Calling about billing dispute, order eighty-eight twenty-one. \
The assistant tried refund request, which failed. Escalated for authority limit, elevated priority. The caller sounds frustrated.";

fn benches(c: &mut Criterion) {
    let tts = EspeakTts::new("en-us");
    let speech = tts
        .synthesize_blocking(BRIEF, 175)
        .expect("espeak-ng renders");
    println!("one render: {:.2} s of audio", speech.seconds());
    c.bench_function("whisper_espeak_single_render_13s", |b| {
        b.iter(|| {
            tts.synthesize_blocking(black_box(BRIEF), 175)
                .map(|s| s.samples.len())
        })
    });
    c.bench_function("whisper_resample_to_8k", |b| {
        b.iter(|| {
            warmline::media::resample::resample_clip(black_box(&speech.samples), speech.rate, 8000)
        })
    });
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/contexts/context_00.json");
    let ctx = HandoffContext::from_json(&std::fs::read_to_string(path).expect("corpus file"))
        .expect("context");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    c.bench_function("whisper_fit_to_window_rich_context", |b| {
        b.iter(|| {
            rt.block_on(render_fitted(
                black_box(&ctx),
                &tts,
                None,
                WhisperWindow::default(),
            ))
            .map(|w| w.renders)
        })
    });
}

criterion_group!(whisper, benches);
criterion_main!(whisper);
