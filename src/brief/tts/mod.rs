//! Text-to-speech engines behind one trait: the embedded espeak-ng engine
//! (default; offline, no keys), an OpenAI-compatible `/v1/audio/speech` HTTP
//! engine, and a wrapper that falls back from one to the other.

mod espeak;
mod espeak_ffi;
mod http;
pub mod pool;

pub use espeak::EspeakTts;
pub use http::HttpTts;

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use thiserror::Error;

/// Rendered speech: mono 16-bit PCM at `rate` Hz.
#[derive(Debug, Clone, PartialEq)]
pub struct Speech {
    /// Samples.
    pub samples: Vec<i16>,
    /// Sample rate in Hz.
    pub rate: u32,
}

impl Speech {
    /// Duration in seconds.
    pub fn seconds(&self) -> f64 {
        if self.rate == 0 {
            0.0
        } else {
            self.samples.len() as f64 / f64::from(self.rate)
        }
    }
}

/// Why an engine could not speak.
#[derive(Debug, Clone, Error, PartialEq)]
pub enum TtsError {
    /// The engine could not start.
    #[error("{engine}: cannot initialise: {reason}")]
    Init {
        /// Engine name.
        engine: &'static str,
        /// Why.
        reason: String,
    },
    /// Synthesis failed.
    #[error("{engine}: synthesis failed: {reason}")]
    Synthesis {
        /// Engine name.
        engine: &'static str,
        /// Why.
        reason: String,
    },
    /// No answer in time.
    #[error("{engine}: no audio within {ms} ms")]
    Timeout {
        /// Engine name.
        engine: &'static str,
        /// The timeout.
        ms: u64,
    },
    /// The audio returned is unusable (not WAV, empty, silent).
    #[error("{engine}: unusable audio: {reason}")]
    BadAudio {
        /// Engine name.
        engine: &'static str,
        /// Why.
        reason: String,
    },
}

/// The future an engine returns.
pub type SpeechFuture<'a> = Pin<Box<dyn Future<Output = Result<Speech, TtsError>> + Send + 'a>>;

/// A text-to-speech engine.
pub trait Tts: Send + Sync {
    /// Short name for logs and the timeline.
    fn name(&self) -> &'static str;
    /// Speaks `text` at about `words_per_minute`.
    fn synthesize<'a>(&'a self, text: &'a str, words_per_minute: u32) -> SpeechFuture<'a>;
}

/// Checks that engine output is usable speech (not empty, not silent, finite length).
pub fn check_audio(engine: &'static str, speech: &Speech) -> Result<(), TtsError> {
    let bad = |reason: String| Err(TtsError::BadAudio { engine, reason });
    if speech.rate < 8000 || speech.rate > 192_000 {
        return bad(format!("sample rate {} Hz", speech.rate));
    }
    if speech.seconds() < 0.2 {
        return bad(format!("{:.2} s of audio", speech.seconds()));
    }
    if speech.seconds() > 120.0 {
        return bad(format!("{:.0} s of audio", speech.seconds()));
    }
    if crate::media::analysis::rms_dbfs(&speech.samples) < -60.0 {
        return bad("silent".into());
    }
    Ok(())
}

/// The configured engines: the primary, and the embedded fallback when the
/// primary is a network engine.
pub struct TtsSet {
    /// The engine tried first (whisper).
    pub primary: Box<dyn Tts>,
    /// The engine used when the primary fails (whisper).
    pub fallback: Option<Box<dyn Tts>>,
    /// The engines of caller prompts: another voice than the whisper's.
    prompt_engines: (Box<dyn Tts>, Option<Box<dyn Tts>>),
    /// Caller prompts already spoken, by (text, words per minute): the
    /// disclosure's words repeat from call to call, and a burst of escalations
    /// must not queue behind the same render.
    prompts: Mutex<PromptCache>,
    /// Worker processes for whispers; `None` renders them in this process.
    whisper_pool: Option<pool::WhisperPool>,
}

/// Rendered caller prompts (μ-law) by (text, words per minute).
type PromptCache = std::collections::HashMap<(String, u32), std::sync::Arc<[u8]>>;

/// Prompts kept in [`TtsSet`]'s cache (a few KiB of μ-law each).
const PROMPT_CACHE: usize = 64;

impl std::fmt::Debug for TtsSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TtsSet")
            .field("primary", &self.primary.name())
            .field("fallback", &self.fallback.as_ref().map(|t| t.name()))
            .finish()
    }
}

impl TtsSet {
    /// Engines from `[tts]`.
    pub fn from_config(config: &crate::config::TtsConfig) -> Result<TtsSet, TtsError> {
        let espeak = Box::new(EspeakTts::new(&config.voice));
        let prompt_espeak = Box::new(EspeakTts::new(&config.prompt_voice));
        if config.engine == crate::config::TtsEngine::Http {
            let http = || {
                HttpTts::new(
                    &config.http_url,
                    &config.http_model,
                    &config.http_voice,
                    &config.http_api_key,
                    std::time::Duration::from_millis(config.http_timeout_ms),
                )
            };
            Ok(TtsSet {
                primary: Box::new(http()?),
                fallback: Some(espeak),
                prompt_engines: (Box::new(http()?), Some(prompt_espeak)),
                prompts: Mutex::default(),
                whisper_pool: None,
            })
        } else {
            Ok(TtsSet {
                primary: espeak,
                fallback: None,
                prompt_engines: (prompt_espeak, None),
                prompts: Mutex::default(),
                whisper_pool: None,
            })
        }
    }

    /// Speaks a caller prompt and returns it as μ-law 8 kHz (falling back like
    /// the whisper). The same text is rendered once and then served from a cache.
    pub async fn prompt_ulaw(
        &self,
        text: &str,
        words_per_minute: u32,
    ) -> Result<std::sync::Arc<[u8]>, TtsError> {
        let key = (text.to_string(), words_per_minute);
        if let Some(hit) = self.lock_prompts().get(&key) {
            return Ok(std::sync::Arc::clone(hit));
        }
        let ulaw: std::sync::Arc<[u8]> = self.render_prompt(text, words_per_minute).await?.into();
        let mut cache = self.lock_prompts();
        if cache.len() >= PROMPT_CACHE {
            cache.clear();
        }
        cache.insert(key, std::sync::Arc::clone(&ulaw));
        Ok(ulaw)
    }

    fn lock_prompts(&self) -> std::sync::MutexGuard<'_, PromptCache> {
        self.prompts.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn render_prompt(&self, text: &str, words_per_minute: u32) -> Result<Vec<u8>, TtsError> {
        let tts = FallbackTts::new(
            self.prompt_engines.0.as_ref(),
            self.prompt_engines.1.as_deref(),
        );
        let speech = tts
            .speak(&crate::brief::speech_text::spoken(text), words_per_minute)
            .await?;
        let pcm = crate::media::resample::resample_clip(&speech.samples, speech.rate, 8000)
            .map_err(|e| TtsError::BadAudio {
                engine: tts.engine_used(),
                reason: e.to_string(),
            })?;
        let mut ulaw = Vec::new();
        crate::media::g711::encode_ulaw(&pcm, &mut ulaw);
        Ok(ulaw)
    }

    /// Renders whispers in `workers` `exe tts-worker` processes at a time (a
    /// fresh fork of a prepared engine for each whisper, see [`pool`]) instead
    /// of in this process.
    pub fn with_whisper_workers(
        mut self,
        exe: std::path::PathBuf,
        workers: usize,
        config: &crate::config::TtsConfig,
    ) -> Self {
        self.whisper_pool = Some(pool::WhisperPool::new(exe, workers, config.clone()));
        self
    }

    /// Renders the whisper for `ctx`: in a worker process when there is a
    /// pool, falling back to this process if the worker cannot be used.
    pub async fn render_whisper(
        &self,
        ctx: &crate::brief::context::HandoffContext,
        window: crate::brief::whisper::WhisperWindow,
    ) -> Result<crate::brief::whisper::Whisper, crate::brief::whisper::WhisperError> {
        if let Some(pool) = &self.whisper_pool {
            match pool.render(ctx, window).await {
                Ok(w) => return Ok(w),
                Err(e) => {
                    tracing::warn!(error = %e, "whisper worker failed; rendering in this process");
                }
            }
        }
        self.render_whisper_here(ctx, window).await
    }

    /// Renders the whisper for `ctx` in this process.
    pub async fn render_whisper_here(
        &self,
        ctx: &crate::brief::context::HandoffContext,
        window: crate::brief::whisper::WhisperWindow,
    ) -> Result<crate::brief::whisper::Whisper, crate::brief::whisper::WhisperError> {
        crate::brief::whisper::render_fitted(
            ctx,
            self.primary.as_ref(),
            self.fallback.as_deref(),
            window,
        )
        .await
    }
}

/// Tries `primary`, and on any failure uses `fallback` for this and every later
/// request made through this value (so one whisper is never split across voices).
pub struct FallbackTts<'e> {
    primary: &'e dyn Tts,
    fallback: Option<&'e dyn Tts>,
    failure: Mutex<Option<TtsError>>,
}

impl<'e> FallbackTts<'e> {
    /// `primary`, falling back to `fallback` (if any).
    pub fn new(primary: &'e dyn Tts, fallback: Option<&'e dyn Tts>) -> Self {
        FallbackTts {
            primary,
            fallback,
            failure: Mutex::new(None),
        }
    }

    /// The primary engine's failure, if it failed.
    pub fn failure(&self) -> Option<TtsError> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The engine that produced the audio.
    pub fn engine_used(&self) -> &'static str {
        match (self.failure(), self.fallback) {
            (Some(_), Some(f)) => f.name(),
            _ => self.primary.name(),
        }
    }

    /// Speaks `text`, falling back when the primary engine fails.
    pub async fn speak(&self, text: &str, words_per_minute: u32) -> Result<Speech, TtsError> {
        if self.failure().is_none() {
            let attempt = self
                .primary
                .synthesize(text, words_per_minute)
                .await
                .and_then(|s| check_audio(self.primary.name(), &s).map(|_| s));
            match attempt {
                Ok(speech) => return Ok(speech),
                Err(e) => {
                    tracing::warn!(error = %e, "TTS engine failed; using the fallback engine");
                    *self.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.clone());
                    if self.fallback.is_none() {
                        return Err(e);
                    }
                }
            }
        }
        match self.fallback {
            Some(f) => {
                let speech = f.synthesize(text, words_per_minute).await?;
                check_audio(f.name(), &speech)?;
                Ok(speech)
            }
            None => Err(self.failure().unwrap_or(TtsError::Synthesis {
                engine: "none",
                reason: "no engine".into(),
            })),
        }
    }
}
