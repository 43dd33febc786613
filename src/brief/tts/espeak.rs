//! The embedded engine: libespeak-ng in-process (through our FFI wrapper), on
//! a blocking thread. The library has global state, so calls are serialised.

use super::{Speech, SpeechFuture, Tts, TtsError};

/// espeak-ng with one voice.
#[derive(Debug, Clone)]
pub struct EspeakTts {
    voice: String,
}

impl EspeakTts {
    /// An engine speaking with `voice` (an espeak-ng voice name such as `en-us`).
    pub fn new(voice: &str) -> Self {
        EspeakTts {
            voice: voice.to_string(),
        }
    }

    /// Initialises the engine with this voice now rather than at the first
    /// render (the whisper worker prepares once, then forks per render).
    pub fn prepare(&self) -> Result<(), TtsError> {
        super::espeak_ffi::prepare(&self.voice).map_err(|reason| TtsError::Synthesis {
            engine: "espeak-ng",
            reason,
        })
    }

    /// Speaks `text` on the calling thread (blocks for a few milliseconds).
    pub fn synthesize_blocking(
        &self,
        text: &str,
        words_per_minute: u32,
    ) -> Result<Speech, TtsError> {
        let clean: String = text.chars().filter(|c| !c.is_control()).collect();
        let (samples, rate) = super::espeak_ffi::synthesize(&self.voice, words_per_minute, &clean)
            .map_err(|reason| TtsError::Synthesis {
                engine: "espeak-ng",
                reason,
            })?;
        Ok(Speech { samples, rate })
    }
}

impl Tts for EspeakTts {
    fn name(&self) -> &'static str {
        "espeak-ng"
    }

    fn synthesize<'a>(&'a self, text: &'a str, words_per_minute: u32) -> SpeechFuture<'a> {
        let engine = self.clone();
        let text = text.to_string();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || engine.synthesize_blocking(&text, words_per_minute))
                .await
                .map_err(|e| TtsError::Synthesis {
                    engine: "espeak-ng",
                    reason: e.to_string(),
                })?
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speaks_english_at_the_requested_rate() {
        let tts = EspeakTts::new("en-us");
        let text = "Incoming from Sarah Chen, verified, about a billing dispute on order eighty-eight twenty-one.";
        let normal = tts.synthesize_blocking(text, 175).unwrap();
        let fast = tts.synthesize_blocking(text, 230).unwrap();
        assert_eq!(normal.rate, 22_050);
        assert!(
            normal.seconds() > 3.0 && normal.seconds() < 8.0,
            "{}",
            normal.seconds()
        );
        assert!(fast.seconds() < normal.seconds() * 0.9);
        assert!(crate::media::analysis::rms_dbfs(&normal.samples) > -35.0);
        assert!(super::super::check_audio("espeak-ng", &normal).is_ok());
        assert!(
            tts.synthesize_blocking("unicode: 北京 😀 ünïcödé", 175)
                .is_ok()
        );
        assert!(
            EspeakTts::new("no-such-voice")
                .synthesize_blocking("x", 175)
                .is_err()
        );
    }
}
