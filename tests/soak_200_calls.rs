//! Soak: 200 concurrent simulated calls (`SOAK_CALLS` to change) on loopback,
//! each asking for a person at a random moment, each handed to its own human
//! agent console, in two waves. Checked for every call: handed over, no frame
//! the gateway sent to the caller dropped, not one whisper frame in what the
//! caller heard. Checked for the process: tasks and sockets back to where they
//! were after each wave, and no memory growth from the first wave to the second.

mod support;

use std::time::Duration;
use support::*;
use warmline::call::timeline::{EndReason, LegName, TimelineKind};
use warmline::sim::agent::ScriptedAgent;
use warmline::sim::caller::{self, CallerOptions};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

fn rss_mib() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0.0);
    pages * 4096.0 / (1024.0 * 1024.0)
}

/// A caller who waits `wait_s` seconds, asks for a person, then keeps talking.
fn caller_audio(wait_s: usize, seed: u64) -> Vec<u8> {
    let silence = warmline::media::g711::ULAW_SILENCE;
    let mut out = vec![silence; 8000 * wait_s];
    out.extend(loud_frames(50));
    out.extend(vec![silence; 12_000]);
    out.extend(noise(8000 * 30, seed));
    out
}

struct Wave {
    handed_over: usize,
    caller_drops: usize,
    leaked_whisper_frames: usize,
    seconds: f64,
}

async fn wave(
    gw: &warmline::gateway::RunningGateway,
    calls: usize,
    first: usize,
    seed: u64,
) -> Wave {
    let started = std::time::Instant::now();
    let base = format!("ws://{}", gw.addr);
    let mut humans = Vec::new();
    for i in first..first + calls {
        let mut h = console(&base, &format!("agent-{i}"), Duration::from_millis(300));
        h.say = noise(8000, i as u64);
        h.hang_up_after = Some(Duration::from_millis(300));
        h.max_duration = Duration::from_secs(120);
        humans.push(tokio::spawn(warmline::sim::human::run(h)));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut callers = Vec::new();
    for i in 0..calls {
        // "A random turn": the request for a person comes 1–8 s into the call.
        let wait_s = 1 + ((seed.wrapping_mul(31).wrapping_add(i as u64 * 7919)) % 8) as usize;
        let mut options = CallerOptions::new(
            gw.media_url(),
            caller_audio(wait_s, seed + i as u64),
            seed * 10_000 + i as u64,
        );
        options.tail = Duration::from_secs(5);
        callers.push(tokio::spawn(caller::run(options)));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut reports = Vec::new();
    for c in callers {
        reports.push(c.await.expect("caller task").expect("caller"));
    }
    let mut whispers = Vec::new();
    for h in humans {
        if let Ok(Ok(report)) = h.await {
            whispers.push(report.whisper);
        }
    }
    let done = gw
        .shared
        .registry
        .wait_finished(first + calls, Duration::from_secs(60))
        .await;
    let this_wave = &done[done.len().saturating_sub(calls)..];
    let handed_over = this_wave
        .iter()
        .filter(|t| t.end_reason() == Some(&EndReason::HumanAgentHangup))
        .count();
    let caller_drops = this_wave
        .iter()
        .flat_map(|t| t.events.iter())
        .filter(|e| {
            matches!(
                e.kind,
                TimelineKind::AudioDropped {
                    leg: LegName::Caller,
                    ..
                }
            )
        })
        .count();
    // Every caller against every whisper frame any human received, exactly as
    // the gateway framed it (a leak would carry the same frames, so a mix-up
    // between calls would show too).
    let silence = warmline::media::g711::ULAW_SILENCE;
    let whisper_frames: std::collections::HashSet<&[u8]> = whispers
        .iter()
        .flat_map(|w| w.chunks_exact(160))
        .filter(|f| f.iter().any(|&b| b != silence))
        .collect();
    assert!(
        whisper_frames.len() > calls * 100,
        "the humans received their whispers ({} distinct frames)",
        whisper_frames.len()
    );
    let leaked = reports
        .iter()
        .flat_map(|r| r.heard.chunks_exact(160))
        .filter(|f| whisper_frames.contains(f))
        .count();
    Wave {
        handed_over,
        caller_drops,
        leaked_whisper_frames: leaked,
        seconds: started.elapsed().as_secs_f64(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_waves_of_concurrent_escalating_calls_lose_nothing_and_leak_nothing() {
    let calls: usize = std::env::var("SOAK_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let ai = ScriptedAgent::start(ai_script_requesting_person())
        .await
        .unwrap();
    let gw = gateway(&ai.url(), |c| {
        c.server.per_ip_rate = 0.0; // every simulated peer is 127.0.0.1
        for i in 0..calls * 2 {
            c.routing.agents.push(agent_seed(&format!("agent-{i}")));
        }
    })
    .await;
    let metrics = tokio::runtime::Handle::current().metrics();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (tasks0, fds0) = (metrics.num_alive_tasks(), open_fds());

    let mut rss = Vec::new();
    for (n, seed) in [(0usize, 1u64), (1, 2)] {
        let w = wave(&gw, calls, n * calls, seed).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (tasks, fds) = (metrics.num_alive_tasks(), open_fds());
        rss.push(rss_mib());
        println!(
            "soak wave {}: {calls} calls in {:.1} s, {} handed over, {} caller frames dropped, \
             {} whisper frames leaked; tasks {tasks0}→{tasks}, fds {fds0}→{fds}, RSS {:.1} MiB",
            n + 1,
            w.seconds,
            w.handed_over,
            w.caller_drops,
            w.leaked_whisper_frames,
            rss[n]
        );
        assert_eq!(w.handed_over, calls, "every call reached its human agent");
        assert_eq!(w.caller_drops, 0, "no frame dropped on the way to a caller");
        assert_eq!(
            w.leaked_whisper_frames, 0,
            "no caller heard a whisper frame"
        );
        assert!(
            tasks <= tasks0 + 4,
            "tasks back to the baseline: {tasks0} → {tasks}"
        );
        assert!(
            fds <= fds0 + 4,
            "sockets back to the baseline: {fds0} → {fds}"
        );
    }
    // Allocator noise is fine; growing with the number of calls served is not.
    assert!(
        rss[1] < rss[0] * 1.15 + 8.0,
        "memory grew from wave 1 to wave 2: {:.1} → {:.1} MiB",
        rss[0],
        rss[1]
    );
    gw.shutdown().await;
}
