//! Per-call recordings of what the caller heard and said, written off the call
//! task on a blocking thread. Audio is placed at the time it happened, so the
//! files line up with the timeline.

use crate::media::g711;
use crate::media::wav::{TimedTrack, WavError, WavSink};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Frames queued for the writer before recording drops audio (≈ 20 s).
const QUEUE_FRAMES: usize = 1000;

enum Record {
    Heard(Duration, Vec<u8>),
    Said(Duration, Vec<u8>),
    AgentHeard(Duration, Vec<u8>),
}

/// Handle used by the call task; dropping it (or `finish`) closes the files.
pub struct Recorder {
    tx: mpsc::Sender<Record>,
    started: Instant,
    task: tokio::task::JoinHandle<()>,
    dropped: u64,
}

impl Recorder {
    /// Starts recording into `dir` (created if needed); time zero is `started`.
    pub fn spawn(dir: PathBuf, started: Instant) -> Recorder {
        let (tx, mut rx) = mpsc::channel::<Record>(QUEUE_FRAMES);
        let task = tokio::task::spawn_blocking(move || {
            if let Err(e) = write_loop(&dir, &mut rx) {
                tracing::warn!(dir = %dir.display(), error = %e, "recording failed");
            }
        });
        Recorder {
            tx,
            started,
            task,
            dropped: 0,
        }
    }

    /// μ-law sent to the caller at `now`.
    pub fn heard(&mut self, now: Instant, ulaw: &[u8]) {
        let at = now.saturating_duration_since(self.started);
        self.push(Record::Heard(at, ulaw.to_vec()));
    }

    /// μ-law received from the caller at `now`.
    pub fn said(&mut self, now: Instant, ulaw: &[u8]) {
        let at = now.saturating_duration_since(self.started);
        self.push(Record::Said(at, ulaw.to_vec()));
    }

    /// μ-law sent to the human agent at `now` (whisper, then the caller).
    pub fn agent_heard(&mut self, now: Instant, ulaw: &[u8]) {
        let at = now.saturating_duration_since(self.started);
        self.push(Record::AgentHeard(at, ulaw.to_vec()));
    }

    fn push(&mut self, record: Record) {
        if self.tx.try_send(record).is_err() {
            self.dropped += 1;
            if self.dropped == 1 || self.dropped.is_multiple_of(500) {
                tracing::warn!(
                    dropped = self.dropped,
                    "recording cannot keep up; frames dropped"
                );
            }
        }
    }

    /// Closes the files and waits until they are complete on disk.
    pub async fn finish(self) {
        drop(self.tx);
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "recording task failed");
        }
    }
}

fn write_loop(dir: &Path, rx: &mut mpsc::Receiver<Record>) -> Result<(), WavError> {
    std::fs::create_dir_all(dir).map_err(|e| WavError::Hound {
        what: dir.display().to_string(),
        source: hound::Error::IoError(e),
    })?;
    let mut heard = WavSink::create(&dir.join("caller_heard.wav"), 8000)?;
    let mut said = WavSink::create(&dir.join("caller_said.wav"), 8000)?;
    let mut heard_track = TimedTrack::new(8000);
    let mut said_track = TimedTrack::new(8000);
    let mut agent: Option<(WavSink<_>, TimedTrack)> = None;
    let mut pcm = Vec::with_capacity(160);
    while let Some(record) = rx.blocking_recv() {
        let (sink, track, at, ulaw) = match record {
            Record::Heard(at, b) => (&mut heard, &mut heard_track, at, b),
            Record::Said(at, b) => (&mut said, &mut said_track, at, b),
            Record::AgentHeard(at, b) => {
                if agent.is_none() {
                    agent = Some((
                        WavSink::create(&dir.join("agent_heard.wav"), 8000)?,
                        TimedTrack::new(8000),
                    ));
                }
                let Some((sink, track)) = agent.as_mut() else {
                    continue;
                };
                (sink, track, at, b)
            }
        };
        let gap = track.gap_before(at, ulaw.len());
        sink.write(&vec![0; gap])?;
        g711::decode_ulaw(&ulaw, &mut pcm);
        sink.write(&pcm)?;
    }
    heard.finalize()?;
    if let Some((sink, _)) = agent {
        sink.finalize()?;
    }
    said.finalize()
}
