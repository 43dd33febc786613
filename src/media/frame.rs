//! The 20 ms PCM frame that the media core works in.

use thiserror::Error;

/// Every frame in warmline carries 20 ms of audio (the telephony packet time).
pub const FRAME_MS: u32 = 20;

/// Sample rates the media core supports. All are multiples of 50 Hz, so a
/// 20 ms frame is always a whole number of samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum SampleRate {
    /// 8 kHz: G.711 telephony.
    Hz8000,
    /// 16 kHz: wideband speech.
    Hz16000,
    /// 24 kHz: speech-to-speech AI APIs (pcm16).
    Hz24000,
    /// 48 kHz: Opus and WebRTC.
    Hz48000,
}

/// A sample rate that the media core cannot handle.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("unsupported sample rate {0} Hz (supported: 8000, 16000, 24000, 48000)")]
pub struct UnsupportedRate(pub u32);

impl SampleRate {
    /// The rate in Hz.
    pub const fn hz(self) -> u32 {
        match self {
            SampleRate::Hz8000 => 8000,
            SampleRate::Hz16000 => 16000,
            SampleRate::Hz24000 => 24000,
            SampleRate::Hz48000 => 48000,
        }
    }

    /// Samples (per channel) in one 20 ms frame at this rate.
    pub const fn samples_per_frame(self) -> usize {
        (self.hz() * FRAME_MS / 1000) as usize
    }

    /// Parses a rate in Hz.
    pub fn from_hz(hz: u32) -> Result<Self, UnsupportedRate> {
        match hz {
            8000 => Ok(SampleRate::Hz8000),
            16000 => Ok(SampleRate::Hz16000),
            24000 => Ok(SampleRate::Hz24000),
            48000 => Ok(SampleRate::Hz48000),
            other => Err(UnsupportedRate(other)),
        }
    }
}

/// A frame whose sample count does not match its rate.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("a 20 ms frame at {rate} Hz has {expected} samples, got {got}")]
pub struct WrongFrameLength {
    /// The frame's rate in Hz.
    pub rate: u32,
    /// Samples a 20 ms frame must have.
    pub expected: usize,
    /// Samples supplied.
    pub got: usize,
}

/// 20 ms of mono linear PCM at one sample rate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    rate: SampleRate,
    samples: Vec<i16>,
}

impl Frame {
    /// A frame of silence.
    pub fn silence(rate: SampleRate) -> Self {
        Frame {
            rate,
            samples: vec![0; rate.samples_per_frame()],
        }
    }

    /// Wraps samples that must be exactly one 20 ms frame long.
    pub fn new(rate: SampleRate, samples: Vec<i16>) -> Result<Self, WrongFrameLength> {
        let expected = rate.samples_per_frame();
        if samples.len() != expected {
            return Err(WrongFrameLength {
                rate: rate.hz(),
                expected,
                got: samples.len(),
            });
        }
        Ok(Frame { rate, samples })
    }

    /// The frame's sample rate.
    pub fn rate(&self) -> SampleRate {
        self.rate
    }

    /// The samples.
    pub fn samples(&self) -> &[i16] {
        &self.samples
    }

    /// The samples, mutably.
    pub fn samples_mut(&mut self) -> &mut [i16] {
        &mut self.samples
    }

    /// Consumes the frame, returning its samples.
    pub fn into_samples(self) -> Vec<i16> {
        self.samples
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_sizes_follow_the_rate() {
        assert_eq!(SampleRate::Hz8000.samples_per_frame(), 160);
        assert_eq!(SampleRate::Hz16000.samples_per_frame(), 320);
        assert_eq!(SampleRate::Hz24000.samples_per_frame(), 480);
        assert_eq!(SampleRate::Hz48000.samples_per_frame(), 960);
    }

    #[test]
    fn a_frame_of_the_wrong_length_is_refused() {
        let err = Frame::new(SampleRate::Hz8000, vec![0; 159]).unwrap_err();
        assert_eq!(err.expected, 160);
        assert_eq!(err.got, 159);
        assert!(Frame::new(SampleRate::Hz8000, vec![0; 160]).is_ok());
        assert_eq!(SampleRate::from_hz(44100), Err(UnsupportedRate(44100)));
    }
}
