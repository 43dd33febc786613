//! The RTP leg's codec adapter (sans-IO): the call core speaks μ-law 8 kHz in
//! 20 ms frames; the wire may be PCMU (passed through untouched), PCMA
//! (transcoded sample by sample) or Opus (coded at 8 kHz: libopus decodes any
//! packet straight to 8 kHz and encodes narrowband, so no resampler is needed;
//! the RTP clock stays 48 kHz as RFC 7587 requires).

use super::sdp::Codec;
use crate::media::frame::{Frame, SampleRate};
use crate::media::g711;
use crate::media::opus::{OpusDecoder, OpusEncoder};
use thiserror::Error;

/// μ-law bytes per 20 ms frame.
pub const ULAW_FRAME: usize = 160;

/// Opus encoder complexity on the telephony path. The audio is already
/// narrowband μ-law: on espeak speech at 8 kHz, 24 kbit/s, complexity 1 costs
/// 24 µs a frame against 69 µs at libopus's default 10, with the same waveform
/// SNR (12.2–12.3 dB) and correlation (0.968) after a round trip
/// (docs/PERFORMANCE.md).
pub const OPUS_COMPLEXITY: i32 = 1;

/// A codec step failed.
#[derive(Debug, Error)]
pub enum CodecError {
    /// Opus refused a packet or a frame.
    #[error("opus: {0}")]
    Opus(String),
}

enum Wire {
    Pcmu,
    Pcma,
    Opus {
        decoder: Box<OpusDecoder>,
        encoder: Box<OpusEncoder>,
    },
}

/// Turns wire payloads into μ-law frames and back.
pub struct CodecAdapter {
    wire: Wire,
    /// μ-law bytes not yet a whole frame (G.711 with ptime other than 20).
    pending: Vec<u8>,
    pcm: Vec<i16>,
}

impl std::fmt::Debug for CodecAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodecAdapter").finish_non_exhaustive()
    }
}

impl CodecAdapter {
    /// An adapter for `codec`.
    pub fn new(codec: Codec) -> Result<Self, CodecError> {
        let wire = match codec {
            Codec::Pcmu => Wire::Pcmu,
            Codec::Pcma => Wire::Pcma,
            Codec::Opus => Wire::Opus {
                decoder: Box::new(
                    OpusDecoder::new(SampleRate::Hz8000)
                        .map_err(|e| CodecError::Opus(e.to_string()))?,
                ),
                encoder: Box::new({
                    let mut e = OpusEncoder::new(SampleRate::Hz8000, 24_000)
                        .map_err(|e| CodecError::Opus(e.to_string()))?;
                    e.set_complexity(OPUS_COMPLEXITY)
                        .map_err(|e| CodecError::Opus(e.to_string()))?;
                    e
                }),
            },
        };
        Ok(CodecAdapter {
            wire,
            pending: Vec::new(),
            pcm: Vec::with_capacity(ULAW_FRAME),
        })
    }

    /// RTP timestamp units per 20 ms frame.
    pub fn samples_per_frame(&self) -> u32 {
        match self.wire {
            Wire::Pcmu | Wire::Pcma => 160,
            Wire::Opus { .. } => 960,
        }
    }

    /// A received payload (`None` = a lost packet to conceal) → whole μ-law frames.
    pub fn decode(&mut self, payload: Option<&[u8]>) -> Result<Vec<Vec<u8>>, CodecError> {
        match &mut self.wire {
            Wire::Pcmu => match payload {
                Some(p) => self.pending.extend_from_slice(p),
                None => self
                    .pending
                    .extend(std::iter::repeat_n(g711::ULAW_SILENCE, ULAW_FRAME)),
            },
            Wire::Pcma => match payload {
                Some(p) => {
                    g711::decode_alaw(p, &mut self.pcm);
                    self.pending
                        .extend(self.pcm.iter().map(|&x| g711::linear_to_ulaw(x)));
                }
                None => self
                    .pending
                    .extend(std::iter::repeat_n(g711::ULAW_SILENCE, ULAW_FRAME)),
            },
            Wire::Opus { decoder, .. } => {
                let narrow = decoder
                    .decode(payload)
                    .map_err(|e| CodecError::Opus(e.to_string()))?;
                self.pending
                    .extend(narrow.samples().iter().map(|&x| g711::linear_to_ulaw(x)));
            }
        }
        let whole = self.pending.len() / ULAW_FRAME * ULAW_FRAME;
        let frames = self.pending[..whole]
            .chunks_exact(ULAW_FRAME)
            .map(<[u8]>::to_vec)
            .collect();
        self.pending.drain(..whole);
        if self.pending.len() > 8 * ULAW_FRAME {
            self.pending.clear(); // never let a broken stream grow memory
        }
        Ok(frames)
    }

    /// One μ-law frame from the call → the wire payload.
    pub fn encode(&mut self, ulaw: &[u8]) -> Result<Vec<u8>, CodecError> {
        match &mut self.wire {
            Wire::Pcmu => Ok(ulaw.to_vec()),
            Wire::Pcma => {
                g711::decode_ulaw(ulaw, &mut self.pcm);
                let mut out = Vec::with_capacity(ulaw.len());
                g711::encode_alaw(&self.pcm, &mut out);
                Ok(out)
            }
            Wire::Opus { encoder, .. } => {
                g711::decode_ulaw(ulaw, &mut self.pcm);
                self.pcm.resize(ULAW_FRAME, 0);
                let narrow = Frame::new(SampleRate::Hz8000, std::mem::take(&mut self.pcm))
                    .map_err(|e| CodecError::Opus(e.to_string()))?;
                let packet = encoder
                    .encode(&narrow)
                    .map(<[u8]>::to_vec)
                    .map_err(|e| CodecError::Opus(e.to_string()));
                self.pcm = narrow.into_samples();
                packet
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::analysis::best_lag_correlation;

    fn tone(frames: usize) -> Vec<u8> {
        let pcm: Vec<i16> = (0..frames * 160)
            .map(|i| ((i as f64 * 0.11).sin() * 8000.0) as i16)
            .collect();
        let mut out = Vec::new();
        g711::encode_ulaw(&pcm, &mut out);
        out
    }

    #[test]
    fn pcmu_passes_through_and_rechunks_other_ptimes() {
        let mut c = CodecAdapter::new(Codec::Pcmu).unwrap();
        let audio = tone(3);
        assert_eq!(c.encode(&audio[..160]).unwrap(), &audio[..160]);
        let frames = c.decode(Some(&audio[..240])).unwrap(); // 30 ms packet
        assert_eq!(frames, vec![audio[..160].to_vec()]);
        let frames = c.decode(Some(&audio[240..480])).unwrap();
        assert_eq!(frames.concat(), audio[160..480].to_vec());
        assert_eq!(c.decode(None).unwrap(), vec![vec![g711::ULAW_SILENCE; 160]]);
    }

    #[test]
    fn pcma_and_opus_round_trip_the_audio() {
        for codec in [Codec::Pcma, Codec::Opus] {
            let mut tx = CodecAdapter::new(codec).unwrap();
            let mut rx = CodecAdapter::new(codec).unwrap();
            let audio = tone(50);
            let mut back = Vec::new();
            for f in audio.chunks(160) {
                let wire = tx.encode(f).unwrap();
                back.extend(rx.decode(Some(&wire)).unwrap().concat());
            }
            assert!(
                !rx.decode(None).unwrap().is_empty(),
                "{codec:?} conceals a loss"
            );
            let mut a = Vec::new();
            let mut b = Vec::new();
            g711::decode_ulaw(&audio, &mut a);
            g711::decode_ulaw(&back, &mut b);
            let (_, score) = best_lag_correlation(&a[..4000], &b, 4);
            assert!(score > 0.9, "{codec:?}: {score}");
        }
    }
}
