//! Opus (RFC 6716) encode/decode for 20 ms mono frames, over libopus, at any
//! rate Opus takes (8, 16, 24 or 48 kHz). The telephony path runs it at 8 kHz:
//! libopus then encodes narrowband SILK directly and decodes any packet straight
//! to 8 kHz, with no resampler on either side (RTP timestamps stay at 48 kHz).

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
    /// The frame was not at the codec's rate.
    #[error("this Opus codec runs at {expected:?}, got a frame at {got:?}")]
    WrongRate {
        /// The codec's rate.
        expected: SampleRate,
        /// The frame's.
        got: SampleRate,
    },
}

/// An Opus voice encoder for mono 20 ms frames.
pub struct OpusEncoder {
    inner: ::opus::Encoder,
    rate: SampleRate,
    packet: Vec<u8>,
}

impl OpusEncoder {
    /// A VoIP-tuned voice encoder taking frames at `rate`, at `bitrate_bps` (e.g. 32 000).
    pub fn new(rate: SampleRate, bitrate_bps: i32) -> Result<Self, OpusError> {
        let create = |source| OpusError::Create {
            what: "encoder",
            source,
        };
        let mut inner =
            ::opus::Encoder::new(rate.hz(), ::opus::Channels::Mono, ::opus::Application::Voip)
                .map_err(create)?;
        inner
            .set_bitrate(::opus::Bitrate::Bits(bitrate_bps))
            .map_err(create)?;
        inner.set_signal(::opus::Signal::Voice).map_err(create)?;
        Ok(OpusEncoder {
            inner,
            rate,
            packet: vec![0; MAX_PACKET_BYTES],
        })
    }

    /// Sets the encoder's complexity, 0–10 (libopus's default is 10). Lower
    /// values trade a little quality for much less CPU (SILK drops the
    /// delayed-decision states and warped noise shaping below 6).
    pub fn set_complexity(&mut self, complexity: i32) -> Result<(), OpusError> {
        self.inner
            .set_complexity(complexity.clamp(0, 10))
            .map_err(|source| OpusError::Create {
                what: "encoder",
                source,
            })
    }

    /// Encodes one frame, returning the packet bytes.
    pub fn encode(&mut self, frame: &Frame) -> Result<&[u8], OpusError> {
        if frame.rate() != self.rate {
            return Err(OpusError::WrongRate {
                expected: self.rate,
                got: frame.rate(),
            });
        }
        let n = self
            .inner
            .encode(frame.samples(), &mut self.packet)
            .map_err(OpusError::Encode)?;
        Ok(&self.packet[..n])
    }
}

/// An Opus decoder to mono frames at its rate.
pub struct OpusDecoder {
    inner: ::opus::Decoder,
    rate: SampleRate,
}

impl OpusDecoder {
    /// A decoder producing frames at `rate` (whatever rate the packets were coded at).
    pub fn new(rate: SampleRate) -> Result<Self, OpusError> {
        let inner = ::opus::Decoder::new(rate.hz(), ::opus::Channels::Mono).map_err(|source| {
            OpusError::Create {
                what: "decoder",
                source,
            }
        })?;
        Ok(OpusDecoder { inner, rate })
    }

    /// Decodes one packet into a 20 ms frame. `None` asks for packet-loss concealment.
    pub fn decode(&mut self, packet: Option<&[u8]>) -> Result<Frame, OpusError> {
        let mut frame = Frame::silence(self.rate);
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

    fn sine(rate: SampleRate, frames: usize) -> Vec<Frame> {
        let n = rate.samples_per_frame();
        (0..frames)
            .map(|f| {
                let samples = (0..n)
                    .map(|i| {
                        let t = (f * n + i) as f64 / f64::from(rate.hz());
                        (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16
                    })
                    .collect();
                Frame::new(rate, samples).unwrap()
            })
            .collect()
    }

    /// SNR of `output` against `input`'s steady-state second half, after
    /// aligning for the codec delay.
    fn snr_db(input: &[i16], output: &[i16]) -> f64 {
        let reference = &input[input.len() / 2..input.len() * 5 / 6];
        let (lag, corr) = best_lag_correlation(reference, output, 1);
        assert!(corr > 0.95, "correlation {corr}");
        let aligned = &output[lag..lag + reference.len()];
        let signal: f64 = reference.iter().map(|&s| f64::from(s).powi(2)).sum();
        let noise: f64 = reference
            .iter()
            .zip(aligned)
            .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
            .sum();
        10.0 * (signal / noise).log10()
    }

    #[test]
    fn a_sine_survives_an_opus_round_trip_with_good_snr_at_48_and_8_khz() {
        for rate in [SampleRate::Hz48000, SampleRate::Hz8000] {
            let mut enc = OpusEncoder::new(rate, 32_000).unwrap();
            let mut dec = OpusDecoder::new(rate).unwrap();
            let mut input = Vec::new();
            let mut output = Vec::new();
            for frame in sine(rate, 50) {
                input.extend_from_slice(frame.samples());
                let packet = enc.encode(&frame).unwrap().to_vec();
                assert!(packet.len() < 200, "{rate:?}: {} bytes", packet.len());
                output.extend(dec.decode(Some(&packet)).unwrap().into_samples());
            }
            let snr = snr_db(&input, &output);
            assert!(snr > 15.0, "{rate:?}: SNR {snr:.1} dB");
        }
    }

    #[test]
    fn a_fullband_stream_decodes_straight_to_8_khz() {
        let mut enc = OpusEncoder::new(SampleRate::Hz48000, 32_000).unwrap();
        let mut dec = OpusDecoder::new(SampleRate::Hz8000).unwrap();
        let mut output = Vec::new();
        for frame in sine(SampleRate::Hz48000, 50) {
            let packet = enc.encode(&frame).unwrap().to_vec();
            let narrow = dec.decode(Some(&packet)).unwrap();
            assert_eq!(narrow.rate(), SampleRate::Hz8000);
            output.extend(narrow.into_samples());
        }
        let input: Vec<i16> = sine(SampleRate::Hz8000, 50)
            .into_iter()
            .flat_map(Frame::into_samples)
            .collect();
        let snr = snr_db(&input, &output);
        assert!(snr > 12.0, "SNR {snr:.1} dB");
    }

    #[test]
    fn a_frame_at_another_rate_is_refused() {
        let mut enc = OpusEncoder::new(SampleRate::Hz8000, 32_000).unwrap();
        let err = enc
            .encode(&Frame::silence(SampleRate::Hz48000))
            .unwrap_err();
        assert!(err.to_string().contains("Hz8000"), "{err}");
    }

    #[test]
    fn a_lost_packet_is_concealed_and_a_corrupt_one_is_an_error() {
        let mut dec = OpusDecoder::new(SampleRate::Hz48000).unwrap();
        assert_eq!(dec.decode(None).unwrap().samples().len(), 960);
        assert!(matches!(
            dec.decode(Some(&[0xFF; 3])),
            Err(OpusError::Decode(_))
        ));
    }
}
