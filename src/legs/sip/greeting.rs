//! What a destination that just answered is doing (sans-IO): a person's
//! "hello?" that ends, silence, or a greeting that runs on — a voicemail box.
//! The whisper waits for the greeting to end, so it is not spoken over it, and
//! a voicemail box is not briefed and merged with the caller.

use crate::media::vad::{EnergyVad, VadConfig, VadEvent};
use std::time::{Duration, Instant};

/// How a greeting is judged.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct GreetingConfig {
    /// No speech this long after the answer: a person waiting in silence.
    pub quiet_start: Duration,
    /// Speech running this long without a pause: a recorded greeting.
    pub voicemail_after: Duration,
}

/// The verdict on a greeting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Greeting {
    /// The greeting ended (or never came): the whisper can start.
    Over,
    /// A greeting that ran on: a voicemail box.
    Voicemail,
}

/// Watches the first audio of an answered destination.
#[derive(Debug)]
pub(crate) struct GreetingWatch {
    config: GreetingConfig,
    vad: EnergyVad,
    started: Instant,
    speech_since: Option<Instant>,
    verdict: Option<Greeting>,
}

impl GreetingWatch {
    /// Starts watching at `now` (the answer).
    pub(crate) fn new(config: GreetingConfig, now: Instant) -> Self {
        GreetingWatch {
            config,
            // A short hangover: the whisper follows a greeting's end closely.
            vad: EnergyVad::new(VadConfig {
                hangover_frames: 10,
                ..VadConfig::default()
            }),
            started: now,
            speech_since: None,
            verdict: None,
        }
    }

    /// One 20 ms frame of what the destination says, at `now`.
    pub(crate) fn frame(&mut self, pcm: &[i16], now: Instant) {
        if self.verdict.is_some() {
            return;
        }
        match self.vad.process(pcm) {
            Some(VadEvent::SpeechStarted) => self.speech_since = Some(now),
            Some(VadEvent::SpeechEnded) => {
                self.verdict = Some(match self.speech_since {
                    Some(since) if now - since >= self.config.voicemail_after => {
                        Greeting::Voicemail
                    }
                    _ => Greeting::Over,
                });
            }
            None => {}
        }
    }

    /// The verdict at `now`, once there is one.
    pub(crate) fn verdict(&self, now: Instant) -> Option<Greeting> {
        if self.verdict.is_some() {
            return self.verdict;
        }
        match self.speech_since {
            None if now >= self.started + self.config.quiet_start => Some(Greeting::Over),
            Some(since) if now >= since + self.config.voicemail_after => Some(Greeting::Voicemail),
            _ => None,
        }
    }

    /// When the verdict may change with no more audio.
    pub(crate) fn deadline(&self) -> Instant {
        match self.speech_since {
            None => self.started + self.config.quiet_start,
            Some(since) => since + self.config.voicemail_after,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: Duration = Duration::from_millis(20);

    fn watch(t: Instant) -> GreetingWatch {
        GreetingWatch::new(
            GreetingConfig {
                quiet_start: Duration::from_millis(1500),
                voicemail_after: Duration::from_secs(4),
            },
            t,
        )
    }

    /// Feeds `loud` seconds of speech then `quiet` seconds of silence; the
    /// first verdict and when it came.
    fn judge(loud: f64, quiet: f64) -> Option<(Greeting, Duration)> {
        let t = Instant::now();
        let mut w = watch(t);
        let (speech, silence) = (vec![8000i16; 160], vec![0i16; 160]);
        let frames = ((loud + quiet) / 0.02) as u32;
        for i in 0..frames {
            let now = t + FRAME * i;
            let pcm = if f64::from(i) * 0.02 < loud {
                &speech
            } else {
                &silence
            };
            w.frame(pcm, now);
            if let Some(v) = w.verdict(now) {
                return Some((v, now - t));
            }
        }
        None
    }

    #[test]
    fn a_person_s_hello_ends_and_the_whisper_follows_within_a_quarter_second() {
        let (verdict, at) = judge(1.0, 2.0).expect("a verdict");
        assert_eq!(verdict, Greeting::Over);
        assert!(
            at >= Duration::from_secs(1) && at <= Duration::from_millis(1250),
            "{at:?}"
        );
    }

    #[test]
    fn a_greeting_that_runs_on_is_a_voicemail_box() {
        let (verdict, at) = judge(8.0, 1.0).expect("a verdict");
        assert_eq!(verdict, Greeting::Voicemail);
        assert!(
            at <= Duration::from_millis(4200),
            "decided while it still plays: {at:?}"
        );
    }

    #[test]
    fn a_person_who_answers_in_silence_gets_the_whisper_after_the_quiet_start() {
        let (verdict, at) = judge(0.0, 3.0).expect("a verdict");
        assert_eq!(verdict, Greeting::Over);
        assert_eq!(at, Duration::from_millis(1500));
        let w = watch(Instant::now());
        assert_eq!(w.deadline() - w.started, Duration::from_millis(1500));
    }
}
