//! Outbound playout queue for one leg: paces encoded 20 ms frames in real time
//! with a small lead, carries marks in order, and can be flushed instantly.
//!
//! Payload bytes pass through unchanged (μ-law in, μ-law out); the queue only
//! re-chunks them into whole frames. Time is passed in, never read.

use std::collections::VecDeque;
use std::time::{Duration, Instant};
use thiserror::Error;

/// Duration of one frame.
pub const FRAME: Duration = Duration::from_millis(crate::media::FRAME_MS as u64);

/// What the playout queue releases towards the leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlayoutOutput {
    /// One frame of encoded audio, to be sent now.
    Audio(Vec<u8>),
    /// Every frame queued before this mark has been released.
    Mark(String),
}

/// The queue refused audio.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PlayoutError {
    /// More than `max_frames` frames are waiting; the new audio was dropped.
    #[error("playout queue full ({max_frames} frames waiting); audio dropped")]
    Full {
        /// Configured capacity in frames.
        max_frames: usize,
    },
}

#[derive(Debug, Clone)]
enum Item {
    Audio(Vec<u8>),
    Mark(String),
}

/// A paced, flushable queue of encoded frames and marks.
#[derive(Debug, Clone)]
pub struct Playout {
    frame_bytes: usize,
    silence: u8,
    lead: Duration,
    max_frames: usize,
    items: VecDeque<Item>,
    partial: Vec<u8>,
    queued_frames: usize,
    queued_marks: usize,
    next_due: Option<Instant>,
}

impl Playout {
    /// A queue of frames `frame_bytes` long (160 for μ-law at 8 kHz), padding
    /// partial frames with `silence`, releasing audio up to `lead` ahead of real
    /// time and holding at most `max_frames` frames.
    pub fn new(frame_bytes: usize, silence: u8, lead: Duration, max_frames: usize) -> Self {
        Playout {
            frame_bytes: frame_bytes.max(1),
            silence,
            lead,
            max_frames,
            items: VecDeque::new(),
            partial: Vec::new(),
            queued_frames: 0,
            queued_marks: 0,
            next_due: None,
        }
    }

    /// Queues encoded audio of any length; it is cut into whole frames.
    pub fn push_audio(&mut self, bytes: &[u8]) -> Result<(), PlayoutError> {
        let incoming = (self.partial.len() + bytes.len()) / self.frame_bytes;
        if self.queued_frames + incoming > self.max_frames {
            return Err(PlayoutError::Full {
                max_frames: self.max_frames,
            });
        }
        // Each frame is its own exact-size allocation: splitting one long
        // buffer (a whole whisper or sentence) frame by frame would leave every
        // frame holding the capacity of everything after it — 39 MB for one
        // 14 s whisper, found by the e2e bench's memory figures.
        let mut input = bytes;
        if !self.partial.is_empty() {
            let take = (self.frame_bytes - self.partial.len()).min(input.len());
            self.partial.extend_from_slice(&input[..take]);
            input = &input[take..];
            if self.partial.len() == self.frame_bytes {
                let frame = std::mem::take(&mut self.partial);
                self.items.push_back(Item::Audio(frame));
                self.queued_frames += 1;
            }
        }
        for chunk in input.chunks(self.frame_bytes) {
            if chunk.len() == self.frame_bytes {
                self.items.push_back(Item::Audio(chunk.to_vec()));
                self.queued_frames += 1;
            } else {
                self.partial.extend_from_slice(chunk);
            }
        }
        Ok(())
    }

    /// Queues a mark after the audio queued so far (a partial frame is padded with silence).
    pub fn push_mark(&mut self, name: impl Into<String>) {
        if !self.partial.is_empty() {
            let mut frame = std::mem::take(&mut self.partial);
            frame.resize(self.frame_bytes, self.silence);
            self.items.push_back(Item::Audio(frame));
            self.queued_frames += 1;
        }
        self.items.push_back(Item::Mark(name.into()));
        self.queued_marks += 1;
    }

    /// Marks waiting in the queue.
    pub fn marks_queued(&self) -> usize {
        self.queued_marks
    }

    /// Drops all queued audio at once; returns the names of the marks that were
    /// pending, in order (they must be reported back as if played, like Twilio does).
    pub fn clear(&mut self) -> Vec<String> {
        let marks = self
            .items
            .drain(..)
            .filter_map(|item| match item {
                Item::Mark(name) => Some(name),
                Item::Audio(_) => None,
            })
            .collect();
        self.partial.clear();
        self.queued_frames = 0;
        self.queued_marks = 0;
        marks
    }

    /// Forgets the pacing clock: the next frame is due on arrival. For a live
    /// two-way stream taking over from a pre-rendered one (the merge after the
    /// whisper or hold audio): otherwise the new frames keep the old stream's
    /// phase and wait up to one frame for it on every frame.
    pub fn restart_clock(&mut self) {
        self.next_due = None;
    }

    /// Releases the next output that is due at `now`, if any.
    pub fn poll(&mut self, now: Instant) -> Option<PlayoutOutput> {
        match self.items.front()? {
            Item::Mark(_) => match self.items.pop_front() {
                Some(Item::Mark(name)) => {
                    self.queued_marks = self.queued_marks.saturating_sub(1);
                    Some(PlayoutOutput::Mark(name))
                }
                _ => None,
            },
            Item::Audio(_) => {
                let due = match self.next_due {
                    // Fell behind by more than a frame (the queue ran dry): restart the clock.
                    Some(due) if due + FRAME >= now => due,
                    _ => now,
                };
                if due > now + self.lead {
                    self.next_due = Some(due);
                    return None;
                }
                self.next_due = Some(due + FRAME);
                self.queued_frames = self.queued_frames.saturating_sub(1);
                match self.items.pop_front() {
                    Some(Item::Audio(bytes)) => Some(PlayoutOutput::Audio(bytes)),
                    _ => None,
                }
            }
        }
    }

    /// When `poll` should next be called; `None` while nothing is queued.
    pub fn poll_at(&self, now: Instant) -> Option<Instant> {
        match self.items.front()? {
            Item::Mark(_) => Some(now),
            Item::Audio(_) => Some(match self.next_due {
                Some(due) if due > now + self.lead => due - self.lead,
                _ => now,
            }),
        }
    }

    /// True while audio is queued or the last released frame has not finished playing.
    pub fn is_playing(&self, now: Instant) -> bool {
        self.queued_frames > 0 || self.next_due.is_some_and(|due| due > now)
    }

    /// Frames waiting to be released.
    pub fn queued_frames(&self) -> usize {
        self.queued_frames
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(p: &mut Playout, now: Instant) -> Vec<PlayoutOutput> {
        std::iter::from_fn(|| p.poll(now)).collect()
    }

    #[test]
    fn frames_are_paced_in_real_time_with_the_lead() {
        let t0 = Instant::now();
        let mut p = Playout::new(160, 0xFF, Duration::from_millis(40), 100);
        p.push_audio(&[1u8; 160 * 10]).unwrap();
        // At t0: frames due at 0, 20 and 40 ms are released.
        assert_eq!(drain(&mut p, t0).len(), 3);
        assert_eq!(p.poll_at(t0), Some(t0 + Duration::from_millis(20)));
        assert_eq!(drain(&mut p, t0 + Duration::from_millis(19)).len(), 0);
        assert_eq!(drain(&mut p, t0 + Duration::from_millis(20)).len(), 1);
        assert_eq!(drain(&mut p, t0 + Duration::from_millis(100)).len(), 4);
        assert_eq!(p.queued_frames(), 2);
        assert!(p.is_playing(t0 + Duration::from_millis(100)));
    }

    #[test]
    fn a_restarted_clock_releases_live_frames_on_arrival() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut p = Playout::new(160, 0xFF, ms(40), 100);
        // A pre-rendered stream sets the clock 40 ms ahead; its phase is t0.
        p.push_audio(&[1u8; 160 * 3]).unwrap();
        assert_eq!(drain(&mut p, t0).len(), 3);
        // Live frames arriving 13 ms into each frame period: without a restart
        // each waits 7 ms for the old stream's phase...
        let mut kept = p.clone();
        for k in 0..3u32 {
            kept.push_audio(&[2u8; 160]).unwrap();
            let arrival = t0 + ms(13) + ms(20) * k;
            assert_eq!(drain(&mut kept, arrival).len(), 0, "frame {k} waits");
            assert_eq!(kept.poll_at(arrival), Some(arrival + ms(7)));
            assert_eq!(drain(&mut kept, arrival + ms(7)).len(), 1);
        }
        // ...with one it is released at once, and so are the next ones, as they come.
        p.restart_clock();
        for k in 0..5u32 {
            p.push_audio(&[3u8; 160]).unwrap();
            let arrival = t0 + ms(13) + ms(20) * k;
            assert_eq!(p.poll_at(arrival), Some(arrival), "frame {k}");
            assert_eq!(drain(&mut p, arrival).len(), 1, "frame {k}");
        }
    }

    #[test]
    fn a_long_buffer_becomes_frames_of_their_own_size() {
        let mut p = Playout::new(160, 0xFF, Duration::from_millis(40), 1000);
        let whisper: Vec<u8> = (0..160 * 700 + 50).map(|i| i as u8).collect();
        p.push_audio(&whisper[..1000]).unwrap();
        p.push_audio(&whisper[1000..]).unwrap();
        let held: usize = p
            .items
            .iter()
            .map(|i| match i {
                Item::Audio(f) => f.capacity(),
                Item::Mark(_) => 0,
            })
            .sum();
        assert_eq!(p.queued_frames(), 700);
        assert!(
            held <= 2 * whisper.len(),
            "{held} bytes held for {} of audio",
            whisper.len()
        );
        let bytes: Vec<u8> = p
            .items
            .iter()
            .flat_map(|i| match i {
                Item::Audio(f) => f.clone(),
                Item::Mark(_) => Vec::new(),
            })
            .collect();
        assert!(bytes == whisper[..160 * 700], "same bytes, same order");
        assert_eq!(p.partial, whisper[160 * 700..], "the rest waits for more");
    }

    #[test]
    fn bytes_pass_through_unchanged_and_marks_keep_their_place() {
        let t0 = Instant::now();
        let mut p = Playout::new(4, 0xFF, Duration::from_secs(1), 100);
        p.push_audio(&[1, 2, 3, 4, 5, 6]).unwrap();
        p.push_mark("line-1");
        p.push_audio(&[7, 8, 9, 10]).unwrap();
        let out = drain(&mut p, t0 + Duration::from_secs(1));
        assert_eq!(
            out,
            vec![
                PlayoutOutput::Audio(vec![1, 2, 3, 4]),
                PlayoutOutput::Audio(vec![5, 6, 0xFF, 0xFF]),
                PlayoutOutput::Mark("line-1".into()),
                PlayoutOutput::Audio(vec![7, 8, 9, 10]),
            ]
        );
    }

    #[test]
    fn clear_drops_audio_at_once_and_returns_pending_marks() {
        let t0 = Instant::now();
        let mut p = Playout::new(160, 0xFF, Duration::ZERO, 100);
        p.push_audio(&[1u8; 1600]).unwrap();
        p.push_mark("a");
        p.push_audio(&[1u8; 1600]).unwrap();
        p.push_mark("b");
        assert_eq!(drain(&mut p, t0).len(), 1);
        assert_eq!(p.clear(), vec!["a".to_string(), "b".to_string()]);
        assert_eq!(drain(&mut p, t0 + Duration::from_secs(5)), vec![]);
        assert_eq!(p.poll_at(t0), None);
        assert!(!p.is_playing(t0 + FRAME));
    }

    #[test]
    fn an_overfull_queue_refuses_audio() {
        let mut p = Playout::new(160, 0xFF, Duration::ZERO, 2);
        p.push_audio(&[0u8; 320]).unwrap();
        assert_eq!(
            p.push_audio(&[0u8; 160]),
            Err(PlayoutError::Full { max_frames: 2 })
        );
    }

    #[test]
    fn after_a_gap_the_clock_restarts_instead_of_bursting() {
        let t0 = Instant::now();
        let mut p = Playout::new(160, 0xFF, Duration::ZERO, 100);
        p.push_audio(&[0u8; 160]).unwrap();
        assert_eq!(drain(&mut p, t0).len(), 1);
        p.push_audio(&[0u8; 160 * 5]).unwrap();
        // Five seconds later only one frame is due, not the whole backlog.
        assert_eq!(drain(&mut p, t0 + Duration::from_secs(5)).len(), 1);
    }
}
