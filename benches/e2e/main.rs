//! End-to-end audio-path benchmark: N concurrent two-way calls over loopback
//! through a running warmline gateway (its own process), side by side with
//! rtpengine (userspace) relaying the same RTP streams, in the same run.
//!
//! Modes: Media Streams μ-law passthrough (WebSocket caller ⇄ AI agent), RTP
//! PCMU passthrough (SIP caller ⇄ AI agent), RTP Opus ⇄ PCMU transcode, RTP
//! relay (SIP caller ⇄ a human agent's SIP phone after the merge), mixed
//! (hold, whisper, then caller ⇄ human through the console). For each:
//! one-way latency per frame (p50/p99/p99.9, frames matched by the number they
//! carry, or by order when transcoded), egress jitter, lost frames, CPU time of
//! the system under test per call-second (→ calls per core), SIP call setup
//! time. Then the warm-handoff timings of one demo call.
//!
//! `cargo bench --bench e2e` runs the full comparison (levels from
//! `WARMLINE_BENCH_CALLS`, default 1,50,200,500; seconds per run from
//! `WARMLINE_BENCH_SECONDS`, default 5) and writes target/bench-report/e2e.{json,md}.
//! Under `cargo test` (no `--bench` flag) it runs a tiny smoke version: 2 calls,
//! 1 s, no handoff demo — CI checks the harness works, never a timing.

mod agent;
mod callers;
mod phones;
mod process;
mod rtp_peer;
mod rtpengine;
mod stats;

use rtp_peer::{Arrivals, Outgoing};
use serde::Serialize;
use stats::{Pairing, Stamps, Stream, Summary, summarize};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

/// Frames at the start of each stream left out of the figures.
const WARMUP: u32 = 25;

/// The p99 one-way latency under which a level counts as "keeping up".
const P99_TARGET_US: f64 = 5_000.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Mode {
    /// Media Streams caller (WebSocket, μ-law) ⇄ AI agent (WebSocket).
    WsUlaw,
    /// SIP/RTP PCMU caller ⇄ AI agent; rtpengine: PCMU ⇄ PCMU.
    RtpPcmu,
    /// SIP/RTP Opus caller ⇄ AI agent (μ-law); rtpengine: Opus ⇄ PCMU.
    RtpOpus,
    /// Media Streams caller escalated at once: hold audio and disclosure while a
    /// human agent hears the whisper, then caller ⇄ human through the mixer.
    Mixed,
    /// SIP/RTP PCMU caller escalated at once and merged with a human agent's
    /// SIP phone: RTP in, RTP out, as a media relay; rtpengine: PCMU ⇄ PCMU.
    RtpRelay,
}

impl Mode {
    /// The name in `WARMLINE_BENCH_MODES`.
    fn key(self) -> &'static str {
        match self {
            Mode::WsUlaw => "ws-ulaw",
            Mode::RtpPcmu => "rtp-pcmu",
            Mode::RtpOpus => "rtp-opus",
            Mode::Mixed => "mixed",
            Mode::RtpRelay => "rtp-relay",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Mode::WsUlaw => "Media Streams μ-law passthrough",
            Mode::RtpPcmu => "RTP PCMU passthrough",
            Mode::RtpOpus => "RTP Opus ⇄ PCMU transcode",
            Mode::Mixed => "Mixed: hold + whisper + bridge to a human",
            Mode::RtpRelay => "RTP relay: SIP caller ⇄ agent's SIP phone",
        }
    }

    /// Whether rtpengine relays the same streams in the same run.
    fn has_baseline(self) -> bool {
        matches!(self, Mode::RtpPcmu | Mode::RtpOpus | Mode::RtpRelay)
    }

    /// How caller→agent frames are matched.
    fn up_pairing(self) -> Pairing {
        match self {
            Mode::RtpOpus => Pairing::Order,
            _ => Pairing::Number,
        }
    }

    fn outgoing(self, opus: &Outgoing) -> Outgoing {
        match self {
            Mode::RtpOpus => opus.clone(),
            _ => Outgoing::NumberedPcmu,
        }
    }
}

/// One run: one system, one mode, one level of concurrency.
#[derive(Debug, Clone, Serialize)]
struct Row {
    mode: Mode,
    system: &'static str,
    calls: usize,
    seconds: f64,
    /// Caller → agent (rtpengine: A → B).
    up: Summary,
    /// Agent → caller (rtpengine: B → A); not measured when that side is Opus.
    down: Option<Summary>,
    /// SIP INVITE → 200 OK, µs (p50, p99).
    setup_us: Option<(f64, f64)>,
    /// The gateway's own per-frame processing time, p99 bucket bound (µs).
    frame_processing_p99_us: Option<f64>,
    cpu_seconds: f64,
    cpu_ms_per_call_second: f64,
    calls_per_core: f64,
    /// Packets the system takes in and sends out per second of one core's CPU
    /// (a two-way call is 50 packets/s each way, in and out: 200 per second).
    packets_per_core_second: f64,
    rss_mib: f64,
}

impl Row {
    fn keeps_up(&self) -> bool {
        let ok = |s: &Summary| s.lost == 0 && s.p99_us < P99_TARGET_US;
        ok(&self.up) && self.down.as_ref().is_none_or(ok)
    }
}

struct Options {
    levels: Vec<usize>,
    seconds: u32,
    modes: Vec<Mode>,
    handoff: bool,
    /// Smoke mode: every run must finish and move its frames.
    strict: bool,
}

const ALL_MODES: [Mode; 5] = [
    Mode::WsUlaw,
    Mode::RtpPcmu,
    Mode::RtpOpus,
    Mode::RtpRelay,
    Mode::Mixed,
];

/// How long a mixed-mode human agent talks after the merge (frames).
const MIXED_TALK_FRAMES: u32 = 275;

/// Mixed- and relay-mode caller `i` numbers its frames from `i ×` this, so the
/// frames a human agent hears say which caller they came from.
pub const NUMBERS_PER_CALLER: u32 = 10_000;

fn options() -> Options {
    let full = std::env::args().any(|a| a == "--bench");
    if !full {
        return Options {
            levels: vec![2],
            seconds: 1,
            modes: ALL_MODES.to_vec(),
            handoff: false,
            strict: true,
        };
    }
    let levels = std::env::var("WARMLINE_BENCH_CALLS")
        .unwrap_or_else(|_| "1,50,100,200".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let seconds = std::env::var("WARMLINE_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let modes = match std::env::var("WARMLINE_BENCH_MODES") {
        Ok(list) => ALL_MODES
            .into_iter()
            .filter(|m| list.split(',').any(|x| x.trim() == m.key()))
            .collect(),
        Err(_) => ALL_MODES.to_vec(),
    };
    Options {
        levels,
        seconds,
        modes,
        handoff: std::env::var("WARMLINE_BENCH_HANDOFF").map_or(true, |v| v != "0"),
        strict: false,
    }
}

fn main() {
    let opts = options();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match rt.block_on(run(&opts)) {
        Ok(()) => {}
        Err(e) => {
            eprintln!("e2e bench failed: {e}");
            std::process::exit(1);
        }
    }
}

async fn run(opts: &Options) -> Result<(), String> {
    let origin = Instant::now();
    let frames = WARMUP + opts.seconds * 50;
    let (agent_url, mut agent_rx) = agent::start(origin, frames).await;
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_warmline"));
    let humans = if opts.modes.contains(&Mode::Mixed) {
        opts.levels.iter().copied().max().unwrap_or(0)
    } else {
        0
    };
    let gateway = process::Gateway::start(exe, &agent_url, humans, None).await?;
    let ng: SocketAddr = ([127, 0, 0, 1], process::free_port()).into();
    let rtpengine = process::start_rtpengine(ng).await?;
    let opus = Outgoing::opus();
    let mut rows = Vec::new();
    for &calls in &opts.levels {
        for &mode in &opts.modes {
            // A level a system cannot carry is reported and the run goes on.
            while agent_rx.try_recv().is_ok() {}
            let run = if mode == Mode::Mixed {
                through_warmline_mixed(calls, &gateway, origin).await
            } else if mode == Mode::RtpRelay {
                through_warmline_relay(calls, opts.seconds, exe, &agent_url, origin).await
            } else {
                through_warmline(mode, calls, frames, &gateway, &mut agent_rx, &opus, origin).await
            };
            match run {
                Ok(row) => {
                    print_row(&row);
                    rows.push(row);
                }
                Err(e) => eprintln!("{} via warmline, {calls} calls: {e}", mode.name()),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            if mode.has_baseline() {
                match through_rtpengine(mode, calls, frames, ng, &rtpengine, &opus, origin).await {
                    Ok(row) => {
                        print_row(&row);
                        rows.push(row);
                    }
                    Err(e) => eprintln!("{} via rtpengine, {calls} calls: {e}", mode.name()),
                }
            }
        }
    }
    let handoff = if opts.handoff {
        Some(handoff_timings().await?)
    } else {
        None
    };
    let machine = machine();
    let markdown = report_markdown(&rows, handoff.as_ref(), &machine);
    println!("\n{markdown}");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-report");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let json = serde_json::json!({ "machine": machine, "rows": rows, "handoff": handoff });
    std::fs::write(
        dir.join("e2e.json"),
        serde_json::to_vec_pretty(&json).unwrap_or_default(),
    )
    .map_err(|e| e.to_string())?;
    std::fs::write(dir.join("e2e.md"), &markdown).map_err(|e| e.to_string())?;
    println!("written {}", dir.join("e2e.md").display());
    let expected = opts.levels.len()
        * opts
            .modes
            .iter()
            .map(|&m| if m.has_baseline() { 2 } else { 1 })
            .sum::<usize>();
    if opts.strict {
        check_sane(&rows, expected)
    } else {
        Ok(())
    }
}

/// The smoke check CI relies on: every run finished and moved its frames.
fn check_sane(rows: &[Row], expected: usize) -> Result<(), String> {
    if rows.len() < expected {
        return Err(format!("only {} of {expected} runs finished", rows.len()));
    }
    for r in rows {
        if r.up.frames == 0 || r.up.lost * 10 > r.up.frames {
            return Err(format!(
                "{} via {}: {} of {} frames lost",
                r.mode.name(),
                r.system,
                r.up.lost,
                r.up.frames
            ));
        }
    }
    Ok(())
}

/// When the calls start sending: far enough ahead for every call to be set up.
fn start_after(setup: Duration) -> tokio::time::Instant {
    tokio::time::Instant::now() + setup
}

/// Spreads call `i` of `n` over one 20 ms frame period.
fn phase(start: tokio::time::Instant, i: usize, n: usize) -> tokio::time::Instant {
    start + Duration::from_micros((20_000 * i / n.max(1)) as u64)
}

fn to_stamps(arrivals: &Arrivals, pairing: Pairing) -> Stamps {
    match pairing {
        Pairing::Number => arrivals
            .iter()
            .filter_map(|&(n, t)| Some((n?, t)))
            .collect(),
        Pairing::Order => arrivals.iter().map(|&(_, t)| (0, t)).collect(),
    }
}

async fn through_warmline(
    mode: Mode,
    calls: usize,
    frames: u32,
    gateway: &process::Gateway,
    agent_rx: &mut tokio::sync::mpsc::Receiver<agent::AgentLog>,
    opus: &Outgoing,
    origin: Instant,
) -> Result<Row, String> {
    let out = mode.outgoing(opus);
    let mut tasks = Vec::new();
    let start;
    if mode == Mode::WsUlaw {
        start = start_after(Duration::from_millis(500 + 4 * calls as u64));
        for i in 0..calls {
            let url = gateway.media_url();
            tasks.push(tokio::spawn(callers::media_streams(
                url,
                format!("CAbench{i}"),
                0,
                frames,
                phase(start, i, calls),
                origin,
            )));
        }
    } else {
        let mut established = Vec::new();
        for i in 0..calls {
            established.push(callers::sip_invite(gateway.sip, i, &out, "").await?);
        }
        start = start_after(Duration::from_millis(300));
        for (i, call) in established.into_iter().enumerate() {
            let out = out.clone();
            let at = phase(start, i, calls);
            tasks.push(tokio::spawn(async move {
                Ok(call.run(out, frames, at, origin).await)
            }));
        }
    }
    let buckets_before = process::frame_processing_buckets(gateway.http).await;
    tokio::time::sleep_until(start).await;
    let cpu0 = gateway.process.cpu_seconds();
    let t0 = Instant::now();
    let mut callers = HashMap::new();
    let mut setups = Vec::new();
    let mut cpu_window = None;
    for t in tasks {
        let log = t.await.map_err(|e| e.to_string())??;
        cpu_window.get_or_insert_with(|| (gateway.process.cpu_seconds() - cpu0, t0.elapsed()));
        setups.extend(log.setup_us);
        callers.insert(log.call.clone(), log);
    }
    let rss_mib = gateway.process.rss_kib() as f64 / 1024.0;
    let mut up = Vec::new();
    let mut down = Vec::new();
    let mut seen = 0;
    while seen < calls {
        let Ok(Some(log)) = tokio::time::timeout(Duration::from_secs(10), agent_rx.recv()).await
        else {
            // Calls the agent never saw end count as lost, frame by frame, below.
            eprintln!("{}: the agent saw {seen} of {calls} calls end", mode.name());
            break;
        };
        seen += 1;
        let Some(caller) = callers.remove(&log.call) else {
            continue;
        };
        up.push(Stream {
            sent: caller.sent,
            received: to_stamps(&log.received, mode.up_pairing()),
        });
        down.push(Stream {
            sent: log.sent,
            received: to_stamps(&caller.received, Pairing::Number),
        });
    }
    for (_, caller) in callers {
        up.push(Stream {
            sent: caller.sent,
            received: Vec::new(),
        });
    }
    let (cpu, wall) = cpu_window.unwrap_or((f64::NAN, Duration::ZERO));
    let down = (mode != Mode::RtpOpus).then(|| summarize(&down, Pairing::Number, WARMUP));
    let mut row = row(
        mode,
        "warmline",
        calls,
        frames,
        summarize(&up, mode.up_pairing(), WARMUP),
        down,
        setups,
        cpu,
        wall,
        rss_mib,
    );
    let buckets_after = process::frame_processing_buckets(gateway.http).await;
    row.frame_processing_p99_us =
        process::bucket_quantile_us(&buckets_before, &buckets_after, 0.99);
    Ok(row)
}

/// The mixed mode: every call is escalated by the AI agent on its first
/// message; the caller hears the disclosure and hold audio while a human agent
/// (the real-socket console simulator) hears the whisper; after the merge the
/// two talk for [`MIXED_TALK_FRAMES`] frames and the agent hangs up. Latency is
/// measured on the merged bridge (caller ⇄ human); CPU over the whole call.
async fn through_warmline_mixed(
    calls: usize,
    gateway: &process::Gateway,
    origin: Instant,
) -> Result<Row, String> {
    use warmline::sim::human::{self, HumanOptions};
    let base = format!("ws://{}", gateway.http);
    let talk: Vec<u8> = (0..MIXED_TALK_FRAMES)
        .flat_map(stats::numbered_frame)
        .collect();
    let mut humans = Vec::new();
    for i in 0..calls {
        let options = HumanOptions {
            say: talk.clone(),
            hang_up_after: Some(Duration::from_millis(400)),
            max_duration: Duration::from_secs(120),
            ..HumanOptions::new(
                &base,
                &format!("bench-agent-{i}"),
                &format!("bench-token-{i}"),
            )
        };
        humans.push(tokio::spawn(human::run(options)));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The caller streams numbered frames until the agent hangs up (at most 90 s).
    let frames = 90 * 50;
    let start = start_after(Duration::from_millis(500 + 4 * calls as u64));
    let mut tasks = Vec::new();
    for i in 0..calls {
        let call = format!("{}{i}", agent::ESCALATE_PREFIX);
        let at = phase(start, i, calls);
        tasks.push(tokio::spawn(callers::media_streams(
            gateway.media_url(),
            call,
            i as u32 * NUMBERS_PER_CALLER,
            frames,
            at,
            origin,
        )));
    }
    tokio::time::sleep_until(start).await;
    let cpu0 = gateway.process.cpu_seconds();
    let t0 = Instant::now();
    let mut callers = Vec::new();
    for t in tasks {
        callers.push(t.await.map_err(|e| e.to_string())??);
    }
    let (cpu, wall) = (gateway.process.cpu_seconds() - cpu0, t0.elapsed());
    // Callers were spawned in order, so `callers[i]` numbered from i × NUMBERS_PER_CALLER.
    let rss_mib = gateway.process.rss_kib() as f64 / 1024.0;
    let mut reports = Vec::new();
    for h in humans {
        reports.push(
            h.await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?,
        );
    }
    let us = |t: Instant| t.saturating_duration_since(origin).as_secs_f64() * 1e6;
    let mut up = Vec::new();
    let mut down = Vec::new();
    for report in &reports {
        // What the human heard after the whisper: numbered caller frames.
        let heard: Stamps = report
            .after_whisper
            .chunks(160)
            .zip(&report.caller_frame_arrivals)
            .filter_map(|(f, &at)| Some((stats::number_of(f)?, us(at))))
            .filter(|&(n, _)| n % NUMBERS_PER_CALLER < frames)
            .collect();
        let said: Stamps = (0..).zip(report.said_at.iter().map(|&t| us(t))).collect();
        if let Some((u, d)) = merged_streams(&heard, said, &callers) {
            up.push(u);
            down.push(d);
        }
    }
    if up.len() < calls {
        eprintln!("mixed: {} of {calls} calls reached the merge", up.len());
    }
    let usage = (cpu, wall, rss_mib);
    Ok(merged_row(
        Mode::Mixed,
        calls,
        MIXED_TALK_FRAMES,
        &up,
        &down,
        usage,
    ))
}

/// The row of a mode measured on merged calls (caller ⇄ human agent): a call
/// that never merged lost all `frames` of its window. `usage` is the CPU
/// seconds and wall time of the window and the RSS after it.
fn merged_row(
    mode: Mode,
    calls: usize,
    frames: u32,
    up: &[Stream],
    down: &[Stream],
    (cpu, wall, rss_mib): (f64, Duration, f64),
) -> Row {
    let mut row = row(
        mode,
        "warmline",
        calls,
        frames,
        summarize(up, Pairing::Number, 0),
        Some(summarize(down, Pairing::Number, WARMUP)),
        Vec::new(),
        cpu,
        wall,
        rss_mib,
    );
    row.up.lost += calls.saturating_sub(up.len()) * frames as usize;
    row
}

/// A merged call's two directions, from what the human agent heard (numbered
/// caller frames; the caller is told by the numbers) and said (numbered from
/// 0): caller → agent from the merge on, after a warm-up, up to the last frame
/// heard; agent → caller, every frame said.
fn merged_streams(
    heard: &Stamps,
    said: Stamps,
    callers: &[callers::CallerLog],
) -> Option<(Stream, Stream)> {
    let first = heard.iter().map(|&(n, _)| n).min()?;
    let last = heard.iter().map(|&(n, _)| n).max()?;
    // Callers are numbered in order: caller i from i × NUMBERS_PER_CALLER.
    let caller = callers.get((first / NUMBERS_PER_CALLER) as usize)?;
    let up = Stream {
        sent: caller
            .sent
            .iter()
            .copied()
            .filter(|&(n, _)| n >= first + WARMUP && n <= last)
            .map(|(n, t)| (n - first - WARMUP, t))
            .collect(),
        received: heard
            .iter()
            .filter(|&&(n, _)| n >= first + WARMUP)
            .map(|&(n, t)| (n - first - WARMUP, t))
            .collect(),
    };
    // Before the agent spoke the caller heard prompts and hold audio, which
    // may carry something that reads as a number.
    let spoken = said.len() as u32;
    let began = said.first().map_or(f64::INFINITY, |&(_, t)| t);
    let down = Stream {
        sent: said,
        received: caller
            .received
            .iter()
            .filter_map(|&(n, t)| Some((n?, t)))
            .filter(|&(n, t)| n < spoken && t >= began)
            .collect(),
    };
    Some((up, down))
}

/// The RTP relay mode, on a gateway of its own whose `calls` human agents are
/// SIP phones ([`phones`]): every SIP caller is escalated by the AI agent at
/// once, its phone hears the whisper, and after the merge caller and phone
/// talk RTP ⇄ RTP through the gateway. CPU is measured over `seconds` once
/// every call is merged (pure relaying); then the phones hang up.
async fn through_warmline_relay(
    calls: usize,
    seconds: u32,
    exe: &std::path::Path,
    agent_url: &str,
    origin: Instant,
) -> Result<Row, String> {
    let phones = phones::Phones::start(origin).await?;
    let gateway = process::Gateway::start(exe, agent_url, 0, Some((phones.addr, calls))).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut established = Vec::new();
    for i in 0..calls {
        let out = Outgoing::NumberedPcmu;
        established.push(callers::sip_invite(gateway.sip, i, &out, agent::ESCALATE_PREFIX).await?);
    }
    // Every phone hears the whisper, then its caller (renders queue on the
    // whisper workers: allow 0.3 s per call on top of the whisper).
    let wait = Duration::from_secs(40) + Duration::from_millis(300 * calls as u64);
    // Callers talk until the gateway hangs up on them: through the wait, the
    // warm-up and the window, whatever the level.
    let frames = (wait.as_secs() as u32 + (WARMUP * 20).div_ceil(1000) + seconds + 30) * 50;
    let start = start_after(Duration::from_millis(300));
    let mut tasks = Vec::new();
    for (i, call) in established.into_iter().enumerate() {
        let at = phase(start, i, calls);
        let base = i as u32 * NUMBERS_PER_CALLER;
        tasks.push(tokio::spawn(call.run_until_bye(base, frames, at, origin)));
    }
    let deadline = Instant::now() + wait;
    while phones.merged.load(std::sync::atomic::Ordering::Relaxed) < calls
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let merged = phones.merged.load(std::sync::atomic::Ordering::Relaxed);
    if merged < calls {
        eprintln!("rtp relay: {merged} of {calls} calls reached the merge");
    }
    // The last merged pair warms up; then the window.
    tokio::time::sleep(Duration::from_millis(20 * u64::from(WARMUP))).await;
    let plane_before = process::relay_plane_lines(gateway.http).await;
    let cpu0 = gateway.process.cpu_seconds();
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(u64::from(seconds))).await;
    let (cpu, wall) = (gateway.process.cpu_seconds() - cpu0, t0.elapsed());
    let rss_mib = gateway.process.rss_kib() as f64 / 1024.0;
    eprintln!(
        "rtp relay, {calls} calls: relay plane before the window [{plane_before}], after [{}]",
        process::relay_plane_lines(gateway.http).await
    );
    let logs = phones.hang_up(merged, Duration::from_secs(10)).await;
    let mut callers = Vec::new();
    for t in tasks {
        callers.push(t.await.map_err(|e| e.to_string())?);
    }
    let mut up = Vec::new();
    let mut down = Vec::new();
    for log in logs {
        if let Some((u, d)) = merged_streams(&log.heard, log.said, &callers) {
            up.push(u);
            down.push(d);
        }
    }
    let usage = (cpu, wall, rss_mib);
    Ok(merged_row(
        Mode::RtpRelay,
        calls,
        seconds * 50,
        &up,
        &down,
        usage,
    ))
}

async fn through_rtpengine(
    mode: Mode,
    calls: usize,
    frames: u32,
    ng: SocketAddr,
    rtpengine: &process::Process,
    opus: &Outgoing,
    origin: Instant,
) -> Result<Row, String> {
    let a_out = mode.outgoing(opus);
    let codec = (mode == Mode::RtpOpus).then(|| {
        use rtpengine::Bencode;
        Bencode::Dict(vec![
            ("transcode".into(), Bencode::List(vec![Bencode::s("PCMU")])),
            ("mask".into(), Bencode::List(vec![Bencode::s("opus")])),
        ])
    });
    let mut legs = Vec::new();
    for i in 0..calls {
        let a = Arc::new(
            UdpSocket::bind("127.0.0.1:0")
                .await
                .map_err(|e| e.to_string())?,
        );
        let b = Arc::new(
            UdpSocket::bind("127.0.0.1:0")
                .await
                .map_err(|e| e.to_string())?,
        );
        let port = |s: &UdpSocket| s.local_addr().map(|a| a.port()).unwrap_or(0);
        let id = format!("bench-{}-{i}", port(&a));
        let relayed = rtpengine::setup(
            ng,
            &id,
            &a_out.sdp(port(&a), i as u64),
            &Outgoing::NumberedPcmu.sdp(port(&b), i as u64),
            codec.clone(),
        )
        .await?;
        legs.push((id, a, b, relayed));
    }
    let start = start_after(Duration::from_millis(300));
    let until = start + Duration::from_millis(20 * u64::from(frames) + 400);
    let mut tasks = Vec::new();
    for (i, (_, a, b, relayed)) in legs.iter().enumerate() {
        let at = phase(start, i, calls);
        let (a, b, relayed, a_out) = (Arc::clone(a), Arc::clone(b), *relayed, a_out.clone());
        tasks.push(tokio::spawn(async move {
            let a_rx = tokio::spawn(rtp_peer::receive(Arc::clone(&a), until, frames, origin));
            let b_rx = tokio::spawn(rtp_peer::receive(Arc::clone(&b), until, frames, origin));
            let (a_sent, b_sent) = tokio::join!(
                rtp_peer::send(a, relayed.a_sends_to, a_out, frames, at, origin),
                rtp_peer::send(
                    b,
                    relayed.b_sends_to,
                    Outgoing::NumberedPcmu,
                    frames,
                    at,
                    origin
                ),
            );
            let a_got = a_rx.await.unwrap_or_default();
            let b_got = b_rx.await.unwrap_or_default();
            (a_sent, b_got, b_sent, a_got)
        }));
    }
    tokio::time::sleep_until(start).await;
    let cpu0 = rtpengine.cpu_seconds();
    let t0 = Instant::now();
    let mut up = Vec::new();
    let mut down = Vec::new();
    let mut cpu_window = None;
    for t in tasks {
        let (a_sent, b_got, b_sent, a_got) = t.await.map_err(|e| e.to_string())?;
        cpu_window.get_or_insert_with(|| (rtpengine.cpu_seconds() - cpu0, t0.elapsed()));
        up.push(Stream {
            sent: a_sent,
            received: to_stamps(&b_got, mode.up_pairing()),
        });
        down.push(Stream {
            sent: b_sent,
            received: to_stamps(&a_got, Pairing::Number),
        });
    }
    let rss_mib = rtpengine.rss_kib() as f64 / 1024.0;
    for (id, ..) in &legs {
        rtpengine::delete(ng, id).await;
    }
    let (cpu, wall) = cpu_window.unwrap_or((f64::NAN, Duration::ZERO));
    let down = (mode != Mode::RtpOpus).then(|| summarize(&down, Pairing::Number, WARMUP));
    Ok(row(
        mode,
        "rtpengine",
        calls,
        frames,
        summarize(&up, mode.up_pairing(), WARMUP),
        down,
        Vec::new(),
        cpu,
        wall,
        rss_mib,
    ))
}

#[allow(clippy::too_many_arguments)]
fn row(
    mode: Mode,
    system: &'static str,
    calls: usize,
    frames: u32,
    up: Summary,
    down: Option<Summary>,
    mut setups: Vec<f64>,
    cpu: f64,
    wall: Duration,
    rss_mib: f64,
) -> Row {
    // The CPU window ends when the first call finishes sending: by then every
    // call has been sending for (nearly) the whole window.
    let call_seconds = calls as f64 * wall.as_secs_f64().max(f64::from(frames) * 0.02 * 0.5);
    setups.sort_by(f64::total_cmp);
    Row {
        mode,
        system,
        calls,
        seconds: f64::from(frames) * 0.02,
        up,
        down,
        setup_us: (!setups.is_empty()).then(|| {
            (
                stats::percentile(&setups, 0.5),
                stats::percentile(&setups, 0.99),
            )
        }),
        frame_processing_p99_us: None,
        cpu_seconds: cpu,
        cpu_ms_per_call_second: cpu * 1000.0 / call_seconds,
        calls_per_core: if cpu > 0.0 {
            call_seconds / cpu
        } else {
            f64::INFINITY
        },
        packets_per_core_second: if cpu > 0.0 {
            200.0 * call_seconds / cpu
        } else {
            f64::INFINITY
        },
        rss_mib,
    }
}

fn print_row(r: &Row) {
    println!(
        "{:<32} {:<9} calls {:>4}: up p50 {:>7.0} µs p99 {:>7.0} µs lost {}; cpu {:.3} ms/call-s ({:.0} calls/core)",
        r.mode.name(),
        r.system,
        r.calls,
        r.up.p50_us,
        r.up.p99_us,
        r.up.lost,
        r.cpu_ms_per_call_second,
        r.calls_per_core
    );
}

/// Handoff timings of one demo call, plus the whisper's TTS render time.
#[derive(Debug, Serialize)]
struct Handoff {
    decision_latency_us: Option<f64>,
    escalation_to_screen_pop_ms: Option<f64>,
    whisper_start_after_accept_ms: Option<f64>,
    merge_gap_ms: Option<f64>,
    whisper_seconds: Option<f64>,
    whisper_render_ms: Option<f64>,
}

async fn handoff_timings() -> Result<Handoff, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut config = warmline::config::Config::default();
    config.server.listen = "127.0.0.1:0".into();
    config.store.path = dir.path().join("demo.db");
    let report = warmline::demo::run(config.clone(), dir.path())
        .await
        .map_err(|e| format!("demo: {e}"))?;
    let context = std::fs::read_to_string(report.call_dir.join("context.json")).ok();
    let whisper_render_ms =
        match context.and_then(|t| warmline::brief::context::HandoffContext::from_json(&t).ok()) {
            Some(ctx) => {
                let tts = warmline::brief::tts::TtsSet::from_config(&config.tts)
                    .map_err(|e| e.to_string())?;
                tts.render_whisper(
                    &ctx,
                    warmline::brief::whisper::WhisperWindow::from_config(&config),
                )
                .await
                .ok()
                .map(|w| w.render_ms)
            }
            None => None,
        };
    let t = report.timings;
    Ok(Handoff {
        decision_latency_us: report
            .quality
            .as_ref()
            .and_then(|q| q["avg_decision_latency_us"].as_f64()),
        escalation_to_screen_pop_ms: t.escalation_to_screen_pop_ms,
        whisper_start_after_accept_ms: t.whisper_start_after_accept_ms,
        merge_gap_ms: t.merge_gap_ms,
        whisper_seconds: t.whisper_seconds,
        whisper_render_ms,
    })
}

fn machine() -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_default();
    serde_json::json!({
        "cpu": cpu,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
    })
}

fn fmt(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.0}")
    } else {
        "–".into()
    }
}

fn report_markdown(rows: &[Row], handoff: Option<&Handoff>, machine: &serde_json::Value) -> String {
    let mut md = format!(
        "## End-to-end audio path ({} cores, {}, {} build)\n\n\
         One-way latency per 20 ms frame through the system, over loopback, load generator on the same cores.\n\n\
         | mode | system | calls | up p50 µs | up p99 µs | up p99.9 µs | down p50 µs | down p99 µs | lost | egress jitter µs | CPU ms per call-s | calls/core | packets/s per core | SIP setup p50/p99 µs | frame processing p99 ≤ µs | RSS MiB |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
        machine["cores"],
        machine["cpu"].as_str().unwrap_or("?"),
        machine["profile"].as_str().unwrap_or("?")
    );
    for r in rows {
        let (d50, d99, dlost) = r
            .down
            .as_ref()
            .map(|d| (fmt(d.p50_us), fmt(d.p99_us), d.lost))
            .unwrap_or(("–".into(), "–".into(), 0));
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.3} | {} | {} | {} | {} | {:.0} |\n",
            r.mode.name(),
            r.system,
            r.calls,
            fmt(r.up.p50_us),
            fmt(r.up.p99_us),
            fmt(r.up.p999_us),
            d50,
            d99,
            r.up.lost + dlost,
            fmt(r.up.egress_jitter_us),
            r.cpu_ms_per_call_second,
            fmt(r.calls_per_core),
            fmt(r.packets_per_core_second),
            r.setup_us
                .map(|(a, b)| format!("{} / {}", fmt(a), fmt(b)))
                .unwrap_or("–".into()),
            r.frame_processing_p99_us.map(fmt).unwrap_or("–".into()),
            r.rss_mib,
        ));
    }
    md.push_str("\n### warmline ÷ rtpengine, same run\n\n| mode | calls | up p50 | up p99 | down p50 | down p99 | CPU per call-s | calls/core |\n|---|---|---|---|---|---|---|---|\n");
    for w in rows.iter().filter(|r| r.system == "warmline") {
        if let Some(b) = rows
            .iter()
            .find(|r| r.system == "rtpengine" && r.mode == w.mode && r.calls == w.calls)
        {
            let down = |f: fn(&Summary) -> f64| match (&w.down, &b.down) {
                (Some(x), Some(y)) => format!("{:.2}", f(x) / f(y)),
                _ => "–".into(),
            };
            md.push_str(&format!(
                "| {} | {} | {:.2} | {:.2} | {} | {} | {:.2} | {:.2} |\n",
                w.mode.name(),
                w.calls,
                w.up.p50_us / b.up.p50_us,
                w.up.p99_us / b.up.p99_us,
                down(|s| s.p50_us),
                down(|s| s.p99_us),
                w.cpu_ms_per_call_second / b.cpu_ms_per_call_second,
                w.calls_per_core / b.calls_per_core,
            ));
        }
    }
    md.push_str(&format!(
        "\n### Largest level with p99 < {} ms and no loss\n\n| mode | system | calls |\n|---|---|---|\n",
        P99_TARGET_US / 1000.0
    ));
    for mode in ALL_MODES {
        for system in ["warmline", "rtpengine"] {
            let best = rows
                .iter()
                .filter(|r| r.mode == mode && r.system == system && r.keeps_up())
                .map(|r| r.calls)
                .max();
            if rows.iter().any(|r| r.mode == mode && r.system == system) {
                md.push_str(&format!(
                    "| {} | {} | {} |\n",
                    mode.name(),
                    system,
                    best.map(|c| c.to_string()).unwrap_or("none".into())
                ));
            }
        }
    }
    if let Some(h) = handoff {
        let f =
            |v: Option<f64>, unit: &str| v.map(|v| format!("{v:.1} {unit}")).unwrap_or("–".into());
        md.push_str(&format!(
            "\n### Warm handoff (one demo call)\n\n| figure | value |\n|---|---|\n\
             | escalation decision latency (turn → decision) | {} |\n\
             | escalation → screen-pop | {} |\n\
             | accept → first whisper frame at the agent | {} |\n\
             | merge gap (last whisper frame → first caller frame) | {} |\n\
             | whisper length | {} |\n\
             | whisper TTS render | {} |\n",
            f(h.decision_latency_us, "µs"),
            f(h.escalation_to_screen_pop_ms, "ms"),
            f(h.whisper_start_after_accept_ms, "ms"),
            f(h.merge_gap_ms, "ms"),
            f(h.whisper_seconds, "s"),
            f(h.whisper_render_ms, "ms"),
        ));
    }
    md
}
