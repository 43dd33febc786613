//! Whisper brief costs (criterion): one espeak-ng render of a ~13 s brief
//! in-process, the whole fit-to-window loop for a rich context, and resampling
//! the result to 8 kHz for a phone leg. Then a burst: `WHISPER_BURST` (200)
//! escalations at once, decision → whisper ready for each, rendered in this
//! process (one espeak-ng engine, the baseline) and by the worker pool (one
//! `warmline tts-worker` process per core, a fork of its prepared engine per
//! whisper, critical first), reported as p50/p95/max and as ratios.

use criterion::{Criterion, criterion_group};
use std::hint::black_box;
use warmline::brief::context::HandoffContext;
use warmline::brief::tts::EspeakTts;
use warmline::brief::whisper::{WhisperWindow, render_fitted};

const BRIEF: &str = "Incoming from Sarah Chen, already verified. Calling about billing dispute, order eighty-eight twenty-one. \
The assistant tried refund request, which failed. Escalated for authority limit, elevated priority. The caller sounds frustrated.";

/// The corpus's first (rich) context.
fn rich_context() -> HandoffContext {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/contexts/context_00.json");
    HandoffContext::from_json(&std::fs::read_to_string(path).expect("corpus file"))
        .expect("context")
}

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
    let ctx = rich_context();
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

/// Decision → ready (s) of `n` whispers started at once, sorted.
fn burst(
    rt: &tokio::runtime::Runtime,
    set: std::sync::Arc<warmline::brief::tts::TtsSet>,
    ctx: &HandoffContext,
    n: usize,
) -> Vec<f64> {
    rt.block_on(async {
        let started = std::time::Instant::now();
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let set = std::sync::Arc::clone(&set);
                let mut ctx = ctx.clone();
                // Every tenth is critical: it must not wait behind the others.
                if let Some(r) = ctx.escalation_reason.as_mut() {
                    r.urgency = if i % 10 == 9 {
                        warmline::domain::Urgency::Critical
                    } else {
                        warmline::domain::Urgency::Standard
                    };
                }
                tokio::spawn(async move {
                    let w = set.render_whisper(&ctx, WhisperWindow::default()).await;
                    (w.is_ok(), started.elapsed().as_secs_f64(), i % 10 == 9)
                })
            })
            .collect();
        let mut all = Vec::new();
        let mut critical = Vec::new();
        for t in tasks {
            let (ok, s, is_critical) = t.await.expect("task");
            assert!(ok, "a whisper failed");
            all.push(s);
            if is_critical {
                critical.push(s);
            }
        }
        all.sort_by(f64::total_cmp);
        critical.sort_by(f64::total_cmp);
        let p = |v: &[f64], q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
        if !critical.is_empty() {
            println!(
                "    critical ones: p50 {:.2} s, p95 {:.2} s",
                p(&critical, 0.5),
                p(&critical, 0.95)
            );
        }
        all
    })
}

fn burst_report() {
    let n: usize = std::env::var("WHISPER_BURST")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let ctx = rich_context();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let config = warmline::config::Config::default();
    let p = |v: &[f64], q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    println!("burst of {n} escalations, decision -> whisper ready:");
    println!("  in process (one engine, baseline):");
    let here = std::sync::Arc::new(
        warmline::brief::tts::TtsSet::from_config(&config.tts).expect("engines"),
    );
    let base = burst(&rt, here, &ctx, n);
    let cores = std::thread::available_parallelism().map_or(2, |c| c.get());
    println!("  worker processes ({cores} at a time):");
    // Made inside the runtime, as the gateway does: the workers start now.
    let pooled = {
        let _inside = rt.enter();
        std::sync::Arc::new(
            warmline::brief::tts::TtsSet::from_config(&config.tts)
                .expect("engines")
                .with_whisper_workers(env!("CARGO_BIN_EXE_warmline").into(), cores, &config.tts),
        )
    };
    // A gateway starts its workers long before the first escalation.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let pool = burst(&rt, pooled, &ctx, n);
    for (name, q) in [("p50", 0.5), ("p95", 0.95), ("max", 1.0)] {
        let (b, w) = (p(&base, q), p(&pool, q));
        println!(
            "  {name}: in process {b:.2} s, workers {w:.2} s, ratio {:.2}x",
            w / b
        );
    }
}

criterion_group!(whisper, benches);

fn main() {
    whisper();
    burst_report();
    Criterion::default().configure_from_args().final_summary();
}
