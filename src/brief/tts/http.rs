//! An OpenAI-compatible `/v1/audio/speech` engine (hosted APIs or local servers
//! of that shape), asking for WAV and reading whatever rate it returns.

use super::{Speech, SpeechFuture, Tts, TtsError};
use std::time::Duration;

/// The HTTP speech engine.
#[derive(Debug, Clone)]
pub struct HttpTts {
    client: reqwest::Client,
    url: String,
    model: String,
    voice: String,
    api_key: String,
    timeout: Duration,
}

impl HttpTts {
    /// An engine posting to `url` (the full `/v1/audio/speech` URL).
    pub fn new(
        url: &str,
        model: &str,
        voice: &str,
        api_key: &str,
        timeout: Duration,
    ) -> Result<Self, TtsError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| TtsError::Init {
                engine: "http",
                reason: e.to_string(),
            })?;
        Ok(HttpTts {
            client,
            url: url.to_string(),
            model: model.to_string(),
            voice: voice.to_string(),
            api_key: api_key.to_string(),
            timeout,
        })
    }

    async fn fetch(&self, text: &str, words_per_minute: u32) -> Result<Speech, TtsError> {
        let err = |reason: String| TtsError::Synthesis {
            engine: "http",
            reason,
        };
        let body = serde_json::json!({
            "model": self.model,
            "voice": self.voice,
            "input": text,
            "response_format": "wav",
            "speed": (f64::from(words_per_minute) / 175.0).clamp(0.25, 4.0),
        });
        let mut request = self.client.post(&self.url).json(&body);
        if !self.api_key.is_empty() {
            request = request.bearer_auth(&self.api_key);
        }
        let response = request.send().await.map_err(|e| {
            if e.is_timeout() {
                TtsError::Timeout {
                    engine: "http",
                    ms: self.timeout.as_millis() as u64,
                }
            } else {
                err(e.to_string())
            }
        })?;
        let status = response.status();
        if !status.is_success() {
            return Err(err(format!("server answered {status}")));
        }
        let bytes = response.bytes().await.map_err(|e| err(e.to_string()))?;
        decode_wav(&bytes)
    }
}

/// Reads a WAV (16-bit or float, any rate, mono or multi-channel → mono).
pub fn decode_wav(bytes: &[u8]) -> Result<Speech, TtsError> {
    let bad = |reason: String| TtsError::BadAudio {
        engine: "http",
        reason,
    };
    let reader = hound::WavReader::new(bytes).map_err(|e| bad(format!("not a WAV: {e}")))?;
    let spec = reader.spec();
    let channels = usize::from(spec.channels.max(1));
    let interleaved: Vec<i16> = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Int, 16) => reader
            .into_samples::<i16>()
            .collect::<Result<_, _>>()
            .map_err(|e| bad(e.to_string()))?,
        (hound::SampleFormat::Float, 32) => reader
            .into_samples::<f32>()
            .map(|s| s.map(|v| (v * 32767.0).clamp(-32768.0, 32767.0) as i16))
            .collect::<Result<_, _>>()
            .map_err(|e| bad(e.to_string()))?,
        (format, bits) => return Err(bad(format!("unsupported {bits}-bit {format:?} samples"))),
    };
    let samples = interleaved
        .chunks(channels)
        .map(|frame| (frame.iter().map(|&s| i32::from(s)).sum::<i32>() / frame.len() as i32) as i16)
        .collect();
    Ok(Speech {
        samples,
        rate: spec.sample_rate,
    })
}

impl Tts for HttpTts {
    fn name(&self) -> &'static str {
        "http"
    }

    fn synthesize<'a>(&'a self, text: &'a str, words_per_minute: u32) -> SpeechFuture<'a> {
        Box::pin(async move {
            match tokio::time::timeout(self.timeout, self.fetch(text, words_per_minute)).await {
                Ok(result) => result,
                Err(_) => Err(TtsError::Timeout {
                    engine: "http",
                    ms: self.timeout.as_millis() as u64,
                }),
            }
        })
    }
}
