//! Opus (RFC 6716) encode/decode for 20 ms mono frames at 48 kHz, over libopus.

use crate::media::{Frame, SampleRate};
use thiserror::Error;

/// The largest Opus packet we produce or accept for one 20 ms frame.
pub const MAX_PACKET_BYTES: usize = 1275;

/// Errors from libopus.
#[derive(Debug, Error)]
pub enum OpusError {
    /// libopus refused to create an encoder or decoder.
    #[error("cannot create the Opus {what}: {source}")]
    Create {
        /// "encoder" or "decoder".
        what: &'static str,
        /// The libopus error.
        source: ::opus::Error,
    },
    /// A frame failed to encode.
    #[error("Opus encode failed: {0}")]
    Encode(::opus::Error),
    /// A packet failed to decode (corrupt or truncated).
    #[error("Opus decode failed: {0}")]
    Decode(::opus::Error),
    /// The frame was not 20 ms at 48 kHz.
    #[error("Opus frames must be 20 ms at 48 kHz, got {0:?}")]
    WrongRate(SampleRate),
}

/// An Opus voice encoder for 48 kHz mono, 20 ms frames.
pub struct OpusEncoder {
    inner: ::opus::Encoder,
    packet: Vec<u8>,
}

impl OpusEncoder {
    /// A VoIP-tuned encoder at `bitrate_bps` (e.g. 32 000).
    pub fn new(bitrate_bps: i32) -> Result<Self, OpusError> {
        let mut inner =
            ::opus::Encoder::new(48_000, ::opus::Channels::Mono, ::opus::Application::Voip)
                .map_err(|source| OpusError::Create {
                    what: "encoder",
                    source,
                })?;
        inner
            .set_bitrate(::opus::Bitrate::Bits(bitrate_bps))
            .map_err(|source| OpusError::Create {
                what: "encoder",
                source,
            })?;
        Ok(OpusEncoder {
            inner,
            packet: vec![0; MAX_PACKET_BYTES],
        })
    }

    /// Encodes one frame, returning the packet bytes.
    pub fn encode(&mut self, frame: &Frame) -> Result<&[u8], OpusError> {
        if frame.rate() != SampleRate::Hz48000 {
            return Err(OpusError::WrongRate(frame.rate()));
        }
        let n = self
            .inner
            .encode(frame.samples(), &mut self.packet)
            .map_err(OpusError::Encode)?;
        Ok(&self.packet[..n])
    }
}

/// An Opus decoder for 48 kHz mono.
pub struct OpusDecoder {
    inner: ::opus::Decoder,
}

impl OpusDecoder {
    /// A new decoder.
    pub fn new() -> Result<Self, OpusError> {
        let inner = ::opus::Decoder::new(48_000, ::opus::Channels::Mono).map_err(|source| {
            OpusError::Create {
                what: "decoder",
                source,
            }
        })?;
        Ok(OpusDecoder { inner })
    }

    /// Decodes one packet into a 20 ms frame. `None` asks for packet-loss concealment.
    pub fn decode(&mut self, packet: Option<&[u8]>) -> Result<Frame, OpusError> {
        let mut frame = Frame::silence(SampleRate::Hz48000);
        let input = packet.unwrap_or(&[]);
        self.inner
            .decode(input, frame.samples_mut(), false)
            .map_err(OpusError::Decode)?;
        Ok(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::analysis::best_lag_correlation;

    #[test]
    fn a_sine_survives_an_opus_round_trip_with_good_snr() {
        let mut enc = OpusEncoder::new(32_000).unwrap();
        let mut dec = OpusDecoder::new().unwrap();
        let mut input = Vec::new();
        let mut output = Vec::new();
        for f in 0..50 {
            let samples: Vec<i16> = (0..960)
                .map(|i| {
                    let t = (f * 960 + i) as f64 / 48_000.0;
                    (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16
                })
                .collect();
            let frame = Frame::new(SampleRate::Hz48000, samples).unwrap();
            input.extend_from_slice(frame.samples());
            let packet = enc.encode(&frame).unwrap().to_vec();
            assert!(
                packet.len() < 200,
                "32 kbit/s is 80 bytes a frame, got {}",
                packet.len()
            );
            output.extend(dec.decode(Some(&packet)).unwrap().into_samples());
        }
        // Compare the steady-state second half after aligning for the codec delay.
        let reference = &input[24_000..40_000];
        let (lag, corr) = best_lag_correlation(reference, &output, 1);
        assert!(corr > 0.95, "correlation {corr}");
        let aligned = &output[lag..lag + reference.len()];
        let signal: f64 = reference.iter().map(|&s| f64::from(s).powi(2)).sum();
        let noise: f64 = reference
            .iter()
            .zip(aligned)
            .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
            .sum();
        let snr_db = 10.0 * (signal / noise).log10();
        assert!(snr_db > 15.0, "SNR {snr_db:.1} dB");
    }

    #[test]
    fn a_lost_packet_is_concealed_and_a_corrupt_one_is_an_error() {
        let mut dec = OpusDecoder::new().unwrap();
        assert_eq!(dec.decode(None).unwrap().samples().len(), 960);
        assert!(matches!(
            dec.decode(Some(&[0xFF; 3])),
            Err(OpusError::Decode(_))
        ));
        let mut enc = OpusEncoder::new(32_000).unwrap();
        assert!(matches!(
            enc.encode(&Frame::silence(SampleRate::Hz8000)),
            Err(OpusError::WrongRate(SampleRate::Hz8000))
        ));
    }
}
