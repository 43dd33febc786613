//! Per-20 ms-frame cost of the media core (criterion).
//!
//! Run: `cargo bench --bench frame`. Each figure is the cost of processing one
//! 20 ms frame; compare against the 20 000 µs real-time budget of that frame.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};
use warmline::call::bridge::{BridgeConfig, CallBridge};
use warmline::legs::LegEvent;
use warmline::media::mixer::{Listener, Mixer, RoutingMatrix, Source, SourceFrames};
use warmline::media::opus::{OpusDecoder, OpusEncoder};
use warmline::media::resample::Resampler;
use warmline::media::{Frame, SampleRate, g711};

fn speech(rate: SampleRate) -> Frame {
    let n = rate.samples_per_frame();
    let samples = (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(rate.hz());
            (6000.0 * (2.0 * std::f64::consts::PI * 220.0 * t).sin()
                + 3000.0 * (2.0 * std::f64::consts::PI * 1370.0 * t).sin()) as i16
        })
        .collect();
    Frame::new(rate, samples).expect("one frame")
}

fn g711_benches(c: &mut Criterion) {
    let frame = speech(SampleRate::Hz8000);
    let mut ulaw = Vec::with_capacity(160);
    g711::encode_ulaw(frame.samples(), &mut ulaw);
    let mut pcm = Vec::with_capacity(160);
    c.bench_function("g711_ulaw_encode_20ms", |b| {
        b.iter(|| g711::encode_ulaw(black_box(frame.samples()), &mut ulaw))
    });
    c.bench_function("g711_ulaw_decode_20ms", |b| {
        b.iter(|| g711::decode_ulaw(black_box(&ulaw), &mut pcm))
    });
    let mut alaw = Vec::with_capacity(160);
    c.bench_function("g711_alaw_encode_20ms", |b| {
        b.iter(|| g711::encode_alaw(black_box(frame.samples()), &mut alaw))
    });
}

fn resample_benches(c: &mut Criterion) {
    let frame = speech(SampleRate::Hz8000);
    let mut up = Resampler::new(SampleRate::Hz8000, SampleRate::Hz48000).expect("resampler");
    c.bench_function("resample_8k_to_48k_20ms", |b| {
        b.iter(|| up.process(black_box(&frame)).expect("resample"))
    });
    let wide = speech(SampleRate::Hz48000);
    let mut down = Resampler::new(SampleRate::Hz48000, SampleRate::Hz8000).expect("resampler");
    c.bench_function("resample_48k_to_8k_20ms", |b| {
        b.iter(|| down.process(black_box(&wide)).expect("resample"))
    });
}

fn opus_benches(c: &mut Criterion) {
    // 48 kHz (browsers' WebRTC) and 8 kHz (the telephony path: SIP Opus legs).
    for (rate, bitrate, name) in [
        (SampleRate::Hz48000, 32_000, "48k"),
        (SampleRate::Hz8000, 24_000, "8k"),
    ] {
        let frame = speech(rate);
        let mut enc = OpusEncoder::new(rate, bitrate).expect("encoder");
        let packet = enc.encode(&frame).expect("encode").to_vec();
        c.bench_function(&format!("opus_encode_{name}_20ms"), |b| {
            b.iter(|| {
                enc.encode(black_box(&frame))
                    .map(|p| p.len())
                    .expect("encode")
            })
        });
        let mut dec = OpusDecoder::new(rate).expect("decoder");
        c.bench_function(&format!("opus_decode_{name}_20ms"), |b| {
            b.iter(|| dec.decode(Some(black_box(&packet))).expect("decode"))
        });
    }
}

fn mixer_benches(c: &mut Criterion) {
    let matrix = RoutingMatrix::silent()
        .with(Listener::HumanAgent, Source::Caller)
        .and_then(|m| m.with(Listener::HumanAgent, Source::Whisper))
        .and_then(|m| m.with(Listener::HumanAgent, Source::Hold))
        .expect("matrix");
    let (a, b2, h) = (
        speech(SampleRate::Hz8000),
        speech(SampleRate::Hz8000),
        speech(SampleRate::Hz8000),
    );
    let mut inputs = SourceFrames::default();
    inputs.set(Source::Caller, &a);
    inputs.set(Source::Whisper, &b2);
    inputs.set(Source::Hold, &h);
    let mut mixer = Mixer::default();
    let mut out = Frame::silence(SampleRate::Hz8000);
    c.bench_function("mixer_3_sources_8k_20ms", |b| {
        b.iter(|| mixer.mix_for(&matrix, Listener::HumanAgent, black_box(&inputs), &mut out))
    });
}

fn bridge_benches(c: &mut Criterion) {
    // The sans-IO call core: one caller frame in (with VAD) and one agent frame out.
    let mut bridge = CallBridge::new(
        BridgeConfig::default(),
        warmline::call::bridge::Apologies {
            handing_over: Arc::from(vec![0xFFu8; 160]),
            goodbye: Arc::from(vec![0xFFu8; 160]),
            closing: Arc::from(vec![0xFFu8; 160]),
        },
    );
    let t0 = Instant::now();
    bridge.handle_agent(LegEvent::Connected, t0);
    let mut ulaw = Vec::new();
    g711::encode_ulaw(speech(SampleRate::Hz8000).samples(), &mut ulaw);
    let mut tick = 0u32;
    c.bench_function("bridge_passthrough_both_ways_20ms", |b| {
        b.iter(|| {
            tick += 1;
            let now = t0 + Duration::from_millis(20) * tick;
            bridge.handle_caller(LegEvent::Audio(ulaw.clone()), now);
            bridge.handle_agent(LegEvent::Audio(ulaw.clone()), now);
            while let Some(out) = bridge.poll_output(now) {
                black_box(out);
            }
        })
    });
}

criterion_group!(
    benches,
    g711_benches,
    resample_benches,
    opus_benches,
    mixer_benches,
    bridge_benches
);
criterion_main!(benches);
