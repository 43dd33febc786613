//! Cost of the per-turn monitoring path (criterion): sentiment, confidence,
//! the policy decision, the extractive summary and the context JSON.
//!
//! "decision_latency_*" is the in-process cost from a turn arriving at the
//! monitor to its decision; the end-to-end figure (bridge → insight task →
//! decision) is recorded per call in the timeline as `decision_latency_us`.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::{Duration, SystemTime};
use warmline::brief::context::ContextBuilder;
use warmline::brief::summary::extractive;
use warmline::domain::Role;
use warmline::monitor::features::TurnContext;
use warmline::monitor::heads::{Heads, Speaker};
use warmline::monitor::sentiment::SentimentScorer;
use warmline::monitor::{Monitor, MonitorInput, PolicyConfig, TurnClassifier};

const CALLER: &str =
    "I'm so frustrated, this is the third time I've called about order 8821 and nothing works.";

fn classifier() -> TurnClassifier {
    TurnClassifier::from_config(&PolicyConfig::default())
}

/// Reads every turn of the labelled test conversations through a fresh monitor
/// per conversation: the average cost of a turn on real-looking calls.
fn corpus_turns(c: &mut Criterion) {
    let convs = warmline::monitor::corpus::load_conversations(std::path::Path::new(
        "tests/data/policy/test",
    ))
    .expect("tests/data/policy/test");
    let config = PolicyConfig::default();
    for (name, classifier) in [
        (
            "corpus_all_events_rules_baseline",
            TurnClassifier::Rules {
                reason: "bench".into(),
            },
        ),
        ("corpus_all_events_classifier", classifier()),
    ] {
        c.bench_function(name, |b| {
            b.iter(|| warmline::monitor::corpus::evaluate(black_box(&convs), &config, &classifier))
        });
    }
    let events: usize = convs.iter().map(|c| c.events.len()).sum();
    eprintln!(
        "(the corpus benches play {events} events in {} conversations)",
        convs.len()
    );
}

/// 200 calls talking at once, as their insight tasks would see them: every
/// call's events interleaved round by round through the monitor; per-event
/// latency percentiles and the mean, classifier against the phrase rules.
fn concurrent_calls() {
    let convs = warmline::monitor::corpus::load_conversations(std::path::Path::new(
        "tests/data/policy/test",
    ))
    .expect("tests/data/policy/test");
    let events: Vec<Vec<warmline::monitor::corpus::CorpusEvent>> = convs
        .iter()
        .map(|c| {
            c.events
                .iter()
                .filter_map(|e| warmline::monitor::corpus::CorpusEvent::parse(e).ok())
                .collect()
        })
        .collect();
    let mut baseline_mean = None;
    for (name, classifier) in [
        (
            "rules (baseline)",
            TurnClassifier::Rules {
                reason: "bench".into(),
            },
        ),
        ("classifier", classifier()),
    ] {
        let mut took: Vec<u128> = Vec::new();
        for _pass in 0..5 {
            let mut calls: Vec<(Monitor, &Vec<_>)> = (0..200)
                .map(|i| {
                    (
                        Monitor::new(PolicyConfig::default(), classifier.clone()),
                        &events[i % events.len()],
                    )
                })
                .collect();
            let rounds = events.iter().map(Vec::len).max().unwrap_or(0);
            for r in 0..rounds {
                for (m, evs) in calls.iter_mut() {
                    if let Some(e) = evs.get(r) {
                        let t = std::time::Instant::now();
                        black_box(e.feed(m));
                        took.push(t.elapsed().as_nanos());
                    }
                }
            }
        }
        took.sort_unstable();
        let pct =
            |p: f64| took[((took.len() as f64 * p) as usize).min(took.len() - 1)] as f64 / 1000.0;
        let mean = took.iter().sum::<u128>() as f64 / took.len() as f64 / 1000.0;
        let ratio = baseline_mean
            .map(|b: f64| format!(" ({:.1}× the rules)", mean / b))
            .unwrap_or_default();
        eprintln!(
            "200 concurrent calls, {name}: {} events, per event mean {mean:.1} µs{ratio}, p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
            took.len(),
            pct(0.5),
            pct(0.99),
            pct(1.0)
        );
        baseline_mean.get_or_insert(mean);
    }
}

fn benches(c: &mut Criterion) {
    concurrent_calls();
    corpus_turns(c);
    // One loaded classifier shared by every monitor (as the gateway does): a
    // monitor's drop must not free the heads inside the timed routine.
    let shared = classifier();
    let heads = Heads::bundled().expect("bundled heads");
    c.bench_function("classifier_heads_one_caller_turn", |b| {
        b.iter(|| heads.score(Speaker::Caller, black_box(CALLER), TurnContext::default()))
    });
    let scorer = SentimentScorer::default();
    c.bench_function("sentiment_vader_one_turn", |b| {
        b.iter(|| scorer.score(black_box(CALLER)))
    });

    c.bench_function("decision_latency_explicit_request", |b| {
        b.iter_batched(
            || Monitor::new(PolicyConfig::default(), shared.clone()),
            |mut m| {
                let o = m.observe(
                    MonitorInput::Turn {
                        role: Role::User,
                        content: "No. I want a real person, now.",
                        confidence: None,
                    },
                    Duration::ZERO,
                );
                assert!(o.decision.is_some());
            },
            criterion::BatchSize::SmallInput,
        )
    });

    c.bench_function("decision_latency_second_unhelpful_turn", |b| {
        b.iter_batched(
            || {
                let mut m = Monitor::new(PolicyConfig::default(), shared.clone());
                m.observe(
                    MonitorInput::Turn {
                        role: Role::Agent,
                        content: "I'm not sure I can help with refunds.",
                        confidence: None,
                    },
                    Duration::ZERO,
                );
                m
            },
            |mut m| {
                let o = m.observe(
                    MonitorInput::Turn {
                        role: Role::Agent,
                        content: "Unfortunately I don't have access to refunds.",
                        confidence: None,
                    },
                    Duration::ZERO,
                );
                assert!(o.decision.is_some());
            },
            criterion::BatchSize::SmallInput,
        )
    });

    let mut builder = ContextBuilder::new("CA1", SystemTime::now(), "bench");
    let mut m = Monitor::new(PolicyConfig::default(), shared.clone());
    for i in 0..10 {
        let (role, text) = if i % 2 == 0 {
            (Role::User, CALLER)
        } else {
            (
                Role::Agent,
                "Let me check the status of order 8821 for you.",
            )
        };
        let o = m.observe(
            MonitorInput::Turn {
                role,
                content: text,
                confidence: Some(0.8),
            },
            Duration::ZERO,
        );
        builder.on_turn(
            role,
            text,
            SystemTime::now(),
            o.sentiment,
            o.assessment.as_ref(),
        );
    }
    c.bench_function("extractive_summary_10_turns", |b| {
        b.iter(|| extractive(black_box(builder.context())))
    });
    c.bench_function("context_json_10_turns", |b| {
        b.iter(|| serde_json::to_string(black_box(builder.context())).map(|s| s.len()))
    });
}

criterion_group!(monitor, benches);
criterion_main!(monitor);
