//! Soak: concurrent simulated calls through the real `warmline serve` process
//! on loopback (`SOAK_CALLS` per wave: 50 by default, which a debug build on 2
//! cores carries; the 200-call figure comes from
//! `SOAK_CALLS=200 cargo test --release --test soak_concurrent_calls`), each
//! asking for a person at a random moment and handed to its own human agent
//! console, in three waves. Checked for every call: handed over, no frame the
//! gateway meant for the caller dropped, not one whisper frame in what any
//! caller heard (checked byte for byte against every whisper of the wave:
//! prompts speak in another voice, so no prompt frame can equal a whisper one). Checked for the gateway process: tasks (from `/metrics`) and
//! open file descriptors back to their baseline after each wave, and no
//! memory growth once the first waves have sized the allocator (wave 2 → 3).

mod support;

use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use support::*;
use warmline::sim::agent::ScriptedAgent;
use warmline::sim::caller::{self, CallerOptions};

/// (RSS MiB, open fds) of process `pid`.
fn process_figures(pid: u32) -> (f64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    (rss_kib / 1024.0, fds)
}

async fn tasks_alive(addr: SocketAddr) -> u64 {
    let (_, text) = http(addr, "GET", "/metrics", None, None).await;
    text.lines()
        .find_map(|l| l.strip_prefix("warmline_tasks_alive "))
        .and_then(|v| v.trim().parse().ok())
        .expect("warmline_tasks_alive in /metrics")
}

async fn json(addr: SocketAddr, path: &str) -> Value {
    let (status, body) = http(addr, "GET", path, None, None).await;
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).expect("JSON")
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

async fn wave(addr: SocketAddr, calls: usize, first: usize, seed: u64) -> Wave {
    let started = std::time::Instant::now();
    let base = format!("ws://{addr}");
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
        let n = seed * 10_000 + i as u64;
        let mut options =
            CallerOptions::new(format!("ws://{addr}/media"), caller_audio(wait_s, n), n);
        options.tail = Duration::from_secs(5);
        // A name per caller: every whisper differs, so a mix-up between calls would show.
        options
            .custom_parameters
            .insert("name".into(), format!("Caller {}", first + i));
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
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let finished = loop {
        let calls_now = json(addr, "/calls").await;
        if calls_now["counts"]["active"] == 0 {
            break calls_now["finished"]
                .as_array()
                .cloned()
                .unwrap_or_default();
        }
        assert!(tokio::time::Instant::now() < deadline, "every call ended");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        finished.len() >= calls,
        "SOAK_CALLS ≤ {}",
        warmline::call::registry::FINISHED_KEPT
    );
    let this_wave = &finished[finished.len() - calls..];
    let handed_over = this_wave
        .iter()
        .filter(|c| c["end"]["code"] == "human_agent_hangup")
        .count();
    let mut caller_drops = 0;
    for c in this_wave {
        let id = c["call_id"].as_str().expect("call id");
        let t = json(addr, &format!("/calls/{id}")).await;
        caller_drops += t["events"].as_array().map_or(0, |events| {
            events
                .iter()
                .filter(|e| e["kind"]["type"] == "audio_dropped" && e["kind"]["leg"] == "caller")
                .count()
        });
    }
    // Every caller against every whisper any human received, exactly as the
    // gateway framed it (so a mix-up between calls would show too), frame by
    // frame: every audible caller frame equal to a whisper frame counts, and
    // leaked runs are printed. Caller prompts speak in another voice
    // (`tts.prompt_voice`), so an equal frame can only be a whisper frame.
    let whisper_frames: Vec<Vec<&[u8]>> = whispers
        .iter()
        .map(|w| w.chunks_exact(160).collect())
        .collect();
    let mut index: std::collections::HashMap<&[u8], Vec<(usize, usize)>> = Default::default();
    for (wi, frames) in whisper_frames.iter().enumerate() {
        for (pos, f) in frames.iter().enumerate() {
            if is_audible(f) {
                index.entry(*f).or_default().push((wi, pos));
            }
        }
    }
    let briefed = whispers.iter().filter(|w| w.len() >= 8000 * 5).count();
    assert_eq!(briefed, calls, "every human received a whisper of ≥ 5 s");
    let mut leaked = 0;
    for r in &reports {
        let heard: Vec<&[u8]> = r.heard.chunks_exact(160).collect();
        let mut i = 0;
        while i < heard.len() {
            let (longest, wi, pos) = index.get(heard[i]).map_or((0, 0, 0), |starts| {
                starts
                    .iter()
                    .map(|&(wi, pos)| {
                        let w = &whisper_frames[wi];
                        let run = (0..)
                            .take_while(|&k| {
                                i + k < heard.len()
                                    && pos + k < w.len()
                                    && heard[i + k] == w[pos + k]
                            })
                            .count();
                        (run, wi, pos)
                    })
                    .max()
                    .unwrap_or((0, 0, 0))
            });
            if longest >= 1 {
                println!(
                    "run of {longest} whisper frames: a caller's frames {i}..{} of {} = human {}'s whisper frames {pos}.. of {}",
                    i + longest,
                    heard.len(),
                    first + wi,
                    whisper_frames[wi].len()
                );
                leaked += longest;
                i += longest;
            } else {
                i += 1;
            }
        }
    }
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
        .unwrap_or(50);
    let ai = ScriptedAgent::start(ai_script_requesting_person())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut agents = String::new();
    for i in 0..calls * 3 {
        agents.push_str(&format!(
            "[[routing.agents]]\nid = \"agent-{i}\"\nname = \"Agent {i}\"\ntoken = \"agent-{i}-secret-token\"\n"
        ));
    }
    // Every simulated peer is 127.0.0.1: no per-IP limit.
    let (mut gateway, addr) =
        serve_process(dir.path(), &ai.url(), "per_ip_rate = 0.0", &agents).await;
    let pid = gateway.id();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let tasks0 = tasks_alive(addr).await;
    let (rss0, fds0) = process_figures(pid);

    let mut rss = Vec::new();
    for (n, seed) in [(0usize, 1u64), (1, 2), (2, 3)] {
        let w = wave(addr, calls, n * calls, seed).await;
        ai.take_sessions(); // the simulated AI agent's memory, not the gateway's
        tokio::time::sleep(Duration::from_secs(2)).await;
        let tasks = tasks_alive(addr).await;
        let (mib, fds) = process_figures(pid);
        rss.push(mib);
        println!(
            "soak wave {}: {calls} calls in {:.1} s, {} handed over, {} caller frames dropped, \
             {} whisper frames leaked; gateway tasks {tasks0}→{tasks}, fds {fds0}→{fds}, \
             RSS {rss0:.1}→{mib:.1} MiB",
            n + 1,
            w.seconds,
            w.handed_over,
            w.caller_drops,
            w.leaked_whisper_frames,
        );
        assert_eq!(w.handed_over, calls, "every call reached its human agent");
        assert_eq!(w.caller_drops, 0, "no frame dropped on the way to a caller");
        assert_eq!(w.leaked_whisper_frames, 0, "no caller heard whisper frames");
        assert!(
            tasks <= tasks0 + 2,
            "tasks back to the baseline: {tasks0} → {tasks}"
        );
        assert!(
            fds <= fds0 + 2,
            "descriptors back to the baseline: {fds0} → {fds}"
        );
    }
    // The first waves size the allocator's arenas (one per thread that
    // allocated: workers, TTS and SQLite threads) and fill the registry of
    // recent timelines; the third must live in what is there.
    assert!(
        rss[2] < rss[1] * 1.05 + 8.0,
        "gateway memory grew from wave 2 to wave 3: {:.1} → {:.1} MiB",
        rss[1],
        rss[2]
    );
    let _ = gateway.kill();
    let _ = gateway.wait();
}
