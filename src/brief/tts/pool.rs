//! Whisper rendering in worker processes.
//!
//! espeak-ng keeps process-wide state that one synthesis leaves for the next
//! (the pitch-flutter phase, gain control, the roughness cycle), so a whisper
//! rendered in a busy gateway did not sound like the same context rendered by
//! `warmline whisper` (an audit could not reproduce it), and every render
//! queued on one lock. Each whisper is therefore rendered by a fresh
//! `warmline tts-worker` process: the same engine state as the CLI (identical
//! samples, tested), up to `tts.whisper_workers` at once, and a bounded queue
//! that serves `critical` escalations first, then `elevated`, then the rest in
//! arrival order.
//!
//! Starting a process per whisper cost more than the render itself (≈ 20 ms
//! of exec, runtime and engine start against ≈ 15 ms of speech), so each slot
//! keeps one `warmline tts-worker` process: it loads the engine and
//! voice once, then **forks** for every request; the child renders from that
//! pristine state (the state a fresh CLI has when it first speaks), answers
//! and exits. A slot whose worker fails is started afresh on its next use.
//!
//! Protocol (private to warmline): a request is one JSON line on the
//! worker's stdin; the answer on stdout is one JSON line, then the samples as
//! 16-bit little-endian PCM. The worker takes requests one after another.

use super::{Speech, TtsError};
use crate::brief::context::HandoffContext;
use crate::brief::whisper::{Whisper, WhisperError, WhisperWindow};
use serde::{Deserialize, Serialize};
use std::collections::BinaryHeap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::oneshot;

/// Longest a worker may take for one whisper (160 sentence renders at most).
const WORKER_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer read from a worker (a 15 s whisper at 48 kHz is 1.4 MB).
const MAX_ANSWER: usize = 8 << 20;

/// What a worker is asked.
#[derive(Debug, Serialize, Deserialize)]
pub struct WorkerRequest {
    /// The context to brief (as JSON).
    pub context: serde_json::Value,
    /// The fitting window.
    pub window: WhisperWindow,
    /// The engines.
    pub tts: crate::config::TtsConfig,
}

/// The answer's header line.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct WorkerAnswer {
    /// Why it failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What it says.
    #[serde(default)]
    pub text: String,
    /// What was sent to the engine.
    #[serde(default)]
    pub spoken: String,
    /// Sample rate of the samples that follow.
    #[serde(default)]
    pub rate: u32,
    /// How many samples follow.
    #[serde(default)]
    pub samples: usize,
    /// Speaking rate that fitted.
    #[serde(default)]
    pub words_per_minute: u32,
    /// Renders it took.
    #[serde(default)]
    pub renders: usize,
    /// Engine name.
    #[serde(default)]
    pub engine: String,
    /// The primary engine's failure, when the fallback spoke.
    #[serde(default)]
    pub tts_failure: Option<String>,
    /// Render wall time, ms.
    #[serde(default)]
    pub render_ms: f64,
}

/// Runs one worker request (the `warmline tts-worker` side): renders in this
/// process and writes the answer to `out`.
pub async fn serve_request(request: &[u8], out: &mut Vec<u8>) {
    let (header, samples) = match render_request(request).await {
        Ok(answer) => answer,
        Err(error) => (
            WorkerAnswer {
                error: Some(error),
                ..WorkerAnswer::default()
            },
            Vec::new(),
        ),
    };
    out.extend(serde_json::to_vec(&header).unwrap_or_default());
    out.push(b'\n');
    for s in samples {
        out.extend(s.to_le_bytes());
    }
}

async fn render_request(request: &[u8]) -> Result<(WorkerAnswer, Vec<i16>), String> {
    let req: WorkerRequest =
        serde_json::from_slice(request).map_err(|e| format!("bad worker request: {e}"))?;
    let ctx = HandoffContext::from_json(&req.context.to_string())
        .map_err(|e| format!("bad context: {e}"))?;
    let engines = super::TtsSet::from_config(&req.tts).map_err(|e| e.to_string())?;
    let w = engines
        .render_whisper_here(&ctx, req.window)
        .await
        .map_err(|e| e.to_string())?;
    let header = WorkerAnswer {
        error: None,
        text: w.text.clone(),
        spoken: w.spoken.clone(),
        rate: w.speech.rate,
        samples: w.speech.samples.len(),
        words_per_minute: w.words_per_minute,
        renders: w.renders,
        engine: w.engine.to_string(),
        tts_failure: w.tts_failure.clone(),
        render_ms: w.render_ms,
    };
    Ok((header, w.speech.samples))
}

/// The `warmline tts-worker` side: prepares the whisper voice once (`voice`,
/// or the first request's),
/// then for each request line on stdin forks a child that renders it from that
/// prepared state, writes the answer to stdout and exits. Must be called
/// before any thread is started (no runtime): the children are forked.
/// Returns when stdin closes; fails when a child does not exit cleanly (its
/// answer may be cut short, so the gateway must see the stream end).
pub fn serve_forever(voice: Option<String>) -> Result<(), String> {
    use std::io::{BufRead, Read};
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut prepared: Option<String> = None;
    if let Some(voice) = voice {
        prepare(&voice);
        prepared = Some(voice);
    }
    loop {
        let mut line = Vec::new();
        let n = (&mut input)
            .take(4 << 20)
            .read_until(b'\n', &mut line)
            .map_err(|e| format!("cannot read a request: {e}"))?;
        if n == 0 {
            return Ok(());
        }
        // A last request may end at the end of input instead of a newline.
        let last = line.last() != Some(&b'\n');
        if last && n >= 4 << 20 {
            return Err("request longer than 4 MiB".into());
        }
        // The whisper voice, loaded before the fork so every render starts from
        // the same state as a fresh process's first render.
        if prepared.is_none()
            && let Ok(req) = serde_json::from_slice::<WorkerRequest>(&line)
        {
            prepare(&req.tts.voice);
            prepared = Some(req.tts.voice);
        }
        let worker = crate::util::os::pid();
        match crate::util::os::fork().map_err(|e| format!("cannot fork: {e}"))? {
            crate::util::os::Forked::Child => {
                crate::util::os::die_with_parent(worker);
                crate::util::os::exit_now(render_in_child(&line))
            }
            crate::util::os::Forked::Parent(pid) => {
                if !crate::util::os::wait_succeeded(pid).map_err(|e| format!("wait: {e}"))? {
                    return Err("a render process failed".into());
                }
            }
        }
        if last {
            return Ok(());
        }
    }
}

/// Loads the engine with `voice` (a failure is the first render's to report).
fn prepare(voice: &str) {
    if let Err(e) = super::EspeakTts::new(voice).prepare() {
        tracing::warn!(error = %e, "cannot prepare the whisper voice");
    }
}

/// In the forked child: renders one request and writes the answer; the exit code.
fn render_in_child(request: &[u8]) -> i32 {
    use std::io::Write;
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return 2;
    };
    let mut answer = Vec::new();
    rt.block_on(serve_request(request, &mut answer));
    let mut out = std::io::stdout().lock();
    match out.write_all(&answer).and_then(|_| out.flush()) {
        Ok(()) => 0,
        Err(_) => 3,
    }
}

/// A waiting render: higher `rank` first, then earlier `seq`.
#[derive(Debug)]
struct Waiter {
    rank: u8,
    seq: u64,
    wake: oneshot::Sender<Option<Worker>>,
}

impl PartialEq for Waiter {
    fn eq(&self, other: &Self) -> bool {
        (self.rank, self.seq) == (other.rank, other.seq)
    }
}
impl Eq for Waiter {}
impl PartialOrd for Waiter {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Waiter {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.rank
            .cmp(&other.rank)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

/// A running `tts-worker` process and its pipes.
#[derive(Debug)]
struct Worker {
    _child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

#[derive(Debug)]
struct Slots {
    /// Free slots, each with its worker if one is running.
    free: Vec<Option<Worker>>,
    waiting: BinaryHeap<Waiter>,
    seq: u64,
}

/// Worker processes rendering whispers, `size` at a time, most urgent first.
#[derive(Debug)]
pub struct WhisperPool {
    exe: PathBuf,
    tts: crate::config::TtsConfig,
    slots: Mutex<Slots>,
}

/// Renders waiting at most; beyond, a whisper is rendered in the gateway's
/// own process instead (see [`super::TtsSet::render_whisper`]).
const MAX_WAITING: usize = 4096;

/// A slot held by one render (with its worker, when it has a healthy one);
/// given to the next waiter when dropped.
struct Held<'a> {
    pool: &'a WhisperPool,
    worker: Option<Worker>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let mut worker = self.worker.take();
        let mut slots = self.pool.lock();
        while let Some(next) = slots.waiting.pop() {
            match next.wake.send(worker) {
                Ok(()) => return, // the slot passes straight to it
                Err(back) => worker = back,
            }
        }
        slots.free.push(worker);
    }
}

impl WhisperPool {
    /// A pool of `size` workers running `exe tts-worker`, started now when
    /// called inside a runtime (so the first escalation does not wait for a
    /// process to start), else at their first whisper.
    pub fn new(exe: PathBuf, size: usize, tts: crate::config::TtsConfig) -> Self {
        let now = tokio::runtime::Handle::try_current().is_ok();
        let free = (0..size.max(1))
            .map(|_| {
                now.then(|| start_worker(&exe, &tts.voice)).and_then(|w| {
                    w.map_err(|e| tracing::warn!(error = %e, "whisper worker"))
                        .ok()
                })
            })
            .collect();
        WhisperPool {
            exe,
            tts,
            slots: Mutex::new(Slots {
                free,
                waiting: BinaryHeap::new(),
                seq: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn acquire(&self, rank: u8) -> Result<Held<'_>, WhisperError> {
        let wait = {
            let mut slots = self.lock();
            if let Some(worker) = slots.free.pop() {
                return Ok(Held { pool: self, worker });
            } else if slots.waiting.len() >= MAX_WAITING {
                return Err(WhisperError::Tts(TtsError::Synthesis {
                    engine: "whisper pool",
                    reason: format!("{} whispers already waiting", slots.waiting.len()),
                }));
            } else {
                let (wake, woken) = oneshot::channel();
                slots.seq += 1;
                let seq = slots.seq;
                slots.waiting.push(Waiter { rank, seq, wake });
                woken
            }
        };
        let worker = wait.await.map_err(|_| {
            WhisperError::Tts(TtsError::Synthesis {
                engine: "whisper pool",
                reason: "the pool stopped".into(),
            })
        })?;
        Ok(Held { pool: self, worker })
    }

    /// Renders the whisper for `ctx` in a worker process (a fresh fork of a
    /// prepared engine), after the more urgent ones waiting.
    pub async fn render(
        &self,
        ctx: &HandoffContext,
        window: WhisperWindow,
    ) -> Result<Whisper, WhisperError> {
        let rank = match ctx.escalation_reason.as_ref().map(|r| r.urgency) {
            Some(crate::domain::Urgency::Critical) => 2,
            Some(crate::domain::Urgency::Elevated) => 1,
            _ => 0,
        };
        let mut slot = self.acquire(rank).await?;
        let request = WorkerRequest {
            context: serde_json::from_str(&ctx.to_json_pretty()).unwrap_or_default(),
            window,
            tts: self.tts.clone(),
        };
        let mut line = serde_json::to_vec(&request).map_err(|e| worker_error(e.to_string()))?;
        line.push(b'\n');
        let mut worker = match slot.worker.take() {
            Some(w) => w,
            None => start_worker(&self.exe, &self.tts.voice)?,
        };
        let answer = tokio::time::timeout(WORKER_TIMEOUT, ask(&mut worker, &line))
            .await
            .map_err(|_| worker_error(format!("no answer within {} s", WORKER_TIMEOUT.as_secs())))
            .and_then(|a| a);
        // A worker that answered goes back with the slot; one that failed or
        // timed out is dropped (killed) and the slot starts a new one next time.
        if answer.is_ok() {
            slot.worker = Some(worker);
        }
        answer
    }
}

/// Starts `exe tts-worker`, loading `voice` at once.
fn start_worker(exe: &std::path::Path, voice: &str) -> Result<Worker, WhisperError> {
    let mut child = tokio::process::Command::new(exe)
        .arg("tts-worker")
        .arg(format!("--voice={voice}"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| worker_error(format!("cannot start {}: {e}", exe.display())))?;
    let stdin = child
        .stdin
        .take()
        .ok_or_else(|| worker_error("no stdin".into()))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| worker_error("no stdout".into()))?;
    Ok(Worker {
        _child: child,
        stdin,
        stdout: BufReader::new(stdout),
    })
}

/// Sends one request to `worker` and reads its answer.
async fn ask(worker: &mut Worker, line: &[u8]) -> Result<Whisper, WhisperError> {
    worker
        .stdin
        .write_all(line)
        .await
        .map_err(|e| worker_error(format!("cannot send the request: {e}")))?;
    worker
        .stdin
        .flush()
        .await
        .map_err(|e| worker_error(format!("cannot send the request: {e}")))?;
    read_answer(&mut worker.stdout).await
}

fn worker_error(reason: String) -> WhisperError {
    WhisperError::Tts(TtsError::Synthesis {
        engine: "tts worker",
        reason,
    })
}

/// Reads a worker's answer: the header line, then exactly the samples it
/// announces, into one buffer of their size (a whisper is ≈ 0.6 MB; growing a
/// buffer by doubling for each one fragmented the gateway's heap).
async fn read_answer<R: AsyncBufRead + Unpin>(reader: &mut R) -> Result<Whisper, WhisperError> {
    use tokio::io::AsyncBufReadExt;
    let mut line = Vec::new();
    (&mut *reader)
        .take(64 * 1024)
        .read_until(b'\n', &mut line)
        .await
        .map_err(|e| worker_error(format!("cannot read the answer: {e}")))?;
    let header: WorkerAnswer = serde_json::from_slice(&line)
        .map_err(|e| worker_error(format!("unreadable answer: {e}")))?;
    if let Some(error) = header.error {
        return Err(worker_error(error));
    }
    if header.samples * 2 > MAX_ANSWER {
        return Err(worker_error(format!(
            "{} samples is too many",
            header.samples
        )));
    }
    let mut samples: Vec<i16> = Vec::with_capacity(header.samples);
    let mut chunk = [0u8; 16 * 1024];
    while samples.len() < header.samples {
        let want = ((header.samples - samples.len()) * 2).min(chunk.len());
        reader
            .read_exact(&mut chunk[..want])
            .await
            .map_err(|e| worker_error(format!("audio cut short: {e}")))?;
        samples.extend(
            chunk[..want]
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]])),
        );
    }
    Ok(whisper_of(header, samples))
}

fn whisper_of(header: WorkerAnswer, samples: Vec<i16>) -> Whisper {
    Whisper {
        text: header.text,
        spoken: header.spoken,
        speech: Speech {
            samples,
            rate: header.rate,
        },
        words_per_minute: header.words_per_minute,
        renders: header.renders,
        engine: engine_name(&header.engine),
        tts_failure: header.tts_failure,
        render_ms: header.render_ms,
    }
}

#[cfg(test)]
fn parse_answer(answer: &[u8]) -> Result<Whisper, WhisperError> {
    let end = answer
        .iter()
        .position(|b| *b == b'\n')
        .ok_or_else(|| worker_error("answer without a header line".into()))?;
    let header: WorkerAnswer = serde_json::from_slice(&answer[..end])
        .map_err(|e| worker_error(format!("unreadable answer: {e}")))?;
    if let Some(error) = header.error {
        return Err(worker_error(error));
    }
    let pcm = &answer[end + 1..];
    if pcm.len() != header.samples * 2 {
        return Err(worker_error(format!(
            "{} bytes of audio for {} samples",
            pcm.len(),
            header.samples
        )));
    }
    let samples = pcm
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    Ok(whisper_of(header, samples))
}

/// The engine names a worker can report, as the static names `Whisper` carries.
fn engine_name(name: &str) -> &'static str {
    match name {
        "espeak-ng" => "espeak-ng",
        "http" => "http",
        _ => "tts worker",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_urgent_waiter_goes_first_then_arrival_order() {
        let mut heap = BinaryHeap::new();
        for (rank, seq) in [(0, 1), (2, 2), (1, 3), (2, 4), (0, 5)] {
            let (wake, _) = oneshot::channel();
            heap.push(Waiter { rank, seq, wake });
        }
        let order: Vec<(u8, u64)> =
            std::iter::from_fn(|| heap.pop().map(|w| (w.rank, w.seq))).collect();
        assert_eq!(order, [(2, 2), (2, 4), (1, 3), (0, 1), (0, 5)]);
    }

    #[test]
    fn a_broken_answer_is_an_error_not_a_panic() {
        for bad in [
            &b""[..],
            b"not json\n",
            b"{\"samples\": 4, \"rate\": 22050}\n\x01\x02",
            b"{\"error\": \"espeak-ng: no voice\"}\n",
        ] {
            assert!(parse_answer(bad).is_err(), "{bad:?}");
        }
        let ok =
            parse_answer(b"{\"samples\": 1, \"rate\": 8000, \"engine\": \"espeak-ng\"}\n\x01\x00")
                .expect("one sample");
        assert_eq!(ok.speech.samples, vec![1]);
        assert_eq!(ok.engine, "espeak-ng");
    }
}
