//! Energy voice-activity detector with onset and hangover, for barge-in and turn ends.

/// Tuning of the energy VAD.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VadConfig {
    /// Frames louder than this (RMS, dBFS) count as speech.
    pub threshold_dbfs: f64,
    /// Consecutive speech frames before speech is declared (debounces clicks).
    pub onset_frames: u32,
    /// Consecutive quiet frames before speech is declared over.
    pub hangover_frames: u32,
}

impl Default for VadConfig {
    fn default() -> Self {
        VadConfig {
            threshold_dbfs: -35.0,
            onset_frames: 3,
            hangover_frames: 25,
        }
    }
}

/// A change of speech state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VadEvent {
    /// Speech began (after the onset frames).
    SpeechStarted,
    /// Speech ended (after the hangover frames).
    SpeechEnded,
}

/// Per-stream VAD state.
#[derive(Debug, Clone)]
pub struct EnergyVad {
    config: VadConfig,
    loud_run: u32,
    quiet_run: u32,
    speaking: bool,
}

impl EnergyVad {
    /// A detector in the silent state.
    pub fn new(config: VadConfig) -> Self {
        EnergyVad {
            config,
            loud_run: 0,
            quiet_run: 0,
            speaking: false,
        }
    }

    /// Whether speech is in progress.
    pub fn is_speaking(&self) -> bool {
        self.speaking
    }

    /// Feeds one frame of samples; returns a state change, if any.
    pub fn process(&mut self, samples: &[i16]) -> Option<VadEvent> {
        let loud = crate::media::analysis::rms_dbfs(samples) >= self.config.threshold_dbfs;
        if loud {
            self.loud_run += 1;
            self.quiet_run = 0;
        } else {
            self.quiet_run += 1;
            self.loud_run = 0;
        }
        if !self.speaking && self.loud_run >= self.config.onset_frames {
            self.speaking = true;
            return Some(VadEvent::SpeechStarted);
        }
        if self.speaking && self.quiet_run >= self.config.hangover_frames {
            self.speaking = false;
            return Some(VadEvent::SpeechEnded);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speech_needs_onset_and_ends_after_hangover() {
        let loud = vec![8000i16; 160];
        let quiet = vec![10i16; 160];
        let mut vad = EnergyVad::new(VadConfig {
            threshold_dbfs: -35.0,
            onset_frames: 3,
            hangover_frames: 5,
        });
        assert_eq!(vad.process(&loud), None);
        assert_eq!(vad.process(&quiet), None); // a click does not start speech
        assert_eq!(vad.process(&loud), None);
        assert_eq!(vad.process(&loud), None);
        assert_eq!(vad.process(&loud), Some(VadEvent::SpeechStarted));
        for _ in 0..4 {
            assert_eq!(vad.process(&quiet), None);
        }
        assert_eq!(vad.process(&quiet), Some(VadEvent::SpeechEnded));
        assert!(!vad.is_speaking());
    }
}
