//! Sample-rate conversion between the media core's rates (rubato FFT resampler).
//!
//! Rates are all multiples of 50 Hz, so 20 ms in is always exactly 20 ms out:
//! the resampler runs with both sides fixed and never buffers partial frames.

use crate::media::{Frame, SampleRate};
use audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler as _};
use thiserror::Error;

/// Errors from the resampler.
#[derive(Debug, Error)]
pub enum ResampleError {
    /// rubato refused the configuration.
    #[error("cannot build a {from} Hz → {to} Hz resampler: {reason}")]
    Construction {
        /// Input rate in Hz.
        from: u32,
        /// Output rate in Hz.
        to: u32,
        /// rubato's explanation.
        reason: String,
    },
    /// The frame's rate is not the resampler's input rate.
    #[error("resampler expects {expected} Hz frames, got {got} Hz")]
    WrongInputRate {
        /// Configured input rate in Hz.
        expected: u32,
        /// The frame's rate in Hz.
        got: u32,
    },
    /// rubato failed while processing.
    #[error("resampling failed: {0}")]
    Process(String),
}

/// Converts 20 ms frames from one rate to another, keeping filter state across frames.
pub struct Resampler {
    inner: Fft<f32>,
    from: SampleRate,
    to: SampleRate,
    input: Vec<f32>,
    output: Vec<f32>,
}

impl std::fmt::Debug for Resampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resampler")
            .field("from", &self.from)
            .field("to", &self.to)
            .finish()
    }
}

impl Resampler {
    /// A resampler for 20 ms frames from `from` to `to`.
    pub fn new(from: SampleRate, to: SampleRate) -> Result<Self, ResampleError> {
        let inner = Fft::<f32>::new(
            from.hz() as usize,
            to.hz() as usize,
            from.samples_per_frame(),
            1,
            FixedSync::Both,
        )
        .map_err(|e| ResampleError::Construction {
            from: from.hz(),
            to: to.hz(),
            reason: e.to_string(),
        })?;
        let out_len = inner.output_frames_max().max(to.samples_per_frame());
        Ok(Resampler {
            inner,
            from,
            to,
            input: vec![0.0; from.samples_per_frame()],
            output: vec![0.0; out_len],
        })
    }

    /// Resamples one frame.
    pub fn process(&mut self, frame: &Frame) -> Result<Frame, ResampleError> {
        if frame.rate() != self.from {
            return Err(ResampleError::WrongInputRate {
                expected: self.from.hz(),
                got: frame.rate().hz(),
            });
        }
        for (dst, &src) in self.input.iter_mut().zip(frame.samples()) {
            *dst = f32::from(src) / 32768.0;
        }
        let in_frames = self.input.len();
        let out_frames = self.output.len();
        let input = InterleavedSlice::new(&self.input[..], 1, in_frames)
            .map_err(|e| ResampleError::Process(e.to_string()))?;
        let mut output = InterleavedSlice::new_mut(&mut self.output[..], 1, out_frames)
            .map_err(|e| ResampleError::Process(e.to_string()))?;
        let (_, written) = self
            .inner
            .process_into_buffer(&input, &mut output, None)
            .map_err(|e| ResampleError::Process(e.to_string()))?;
        let mut out = Frame::silence(self.to);
        for (dst, &src) in out.samples_mut().iter_mut().zip(&self.output[..written]) {
            *dst = (src * 32768.0).clamp(-32768.0, 32767.0) as i16;
        }
        Ok(out)
    }
}

/// Resamples a whole clip between any two rates (e.g. 22 050 Hz TTS output to
/// 8 kHz telephony), trimming the filter delay so the clip starts on time.
pub fn resample_clip(samples: &[i16], from_hz: u32, to_hz: u32) -> Result<Vec<i16>, ResampleError> {
    if from_hz == to_hz || samples.is_empty() {
        return Ok(samples.to_vec());
    }
    let construction = |reason: String| ResampleError::Construction {
        from: from_hz,
        to: to_hz,
        reason,
    };
    let mut inner = Fft::<f32>::new(from_hz as usize, to_hz as usize, 1024, 1, FixedSync::Both)
        .map_err(|e| construction(e.to_string()))?;
    let input: Vec<f32> = samples.iter().map(|&s| f32::from(s) / 32768.0).collect();
    let adapter = InterleavedSlice::new(&input[..], 1, input.len())
        .map_err(|e| ResampleError::Process(e.to_string()))?;
    let out = inner
        .process_all(&adapter, input.len(), None)
        .map_err(|e| ResampleError::Process(e.to_string()))?;
    Ok(out
        .take_data()
        .into_iter()
        .map(|v| (v * 32768.0).clamp(-32768.0, 32767.0) as i16)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::analysis::rms_dbfs;

    fn tone(rate: SampleRate, hz: f64, frames: usize) -> Vec<Frame> {
        let n = rate.samples_per_frame();
        (0..frames)
            .map(|f| {
                let s = (0..n)
                    .map(|i| {
                        let t = (f * n + i) as f64 / f64::from(rate.hz());
                        (10_000.0 * (2.0 * std::f64::consts::PI * hz * t).sin()) as i16
                    })
                    .collect();
                Frame::new(rate, s).unwrap()
            })
            .collect()
    }

    fn run(from: SampleRate, to: SampleRate, hz: f64) -> (f64, f64) {
        let mut r = Resampler::new(from, to).unwrap();
        let input = tone(from, hz, 50);
        let mut out = Vec::new();
        for f in &input {
            let o = r.process(f).unwrap();
            assert_eq!(o.samples().len(), to.samples_per_frame());
            out.extend_from_slice(o.samples());
        }
        let in_all: Vec<i16> = input.iter().flat_map(|f| f.samples().to_vec()).collect();
        let steady = &out[out.len() / 2..];
        (rms_dbfs(&in_all[in_all.len() / 2..]), rms_dbfs(steady))
    }

    #[test]
    fn passband_tones_keep_their_level_when_upsampling() {
        for hz in [300.0, 1000.0, 3000.0] {
            let (i, o) = run(SampleRate::Hz8000, SampleRate::Hz48000, hz);
            assert!(
                (i - o).abs() < 0.5,
                "{hz} Hz: in {i:.2} dBFS, out {o:.2} dBFS"
            );
        }
    }

    #[test]
    fn tones_above_the_new_nyquist_are_removed_when_downsampling() {
        let (i, o) = run(SampleRate::Hz48000, SampleRate::Hz8000, 1000.0);
        assert!((i - o).abs() < 0.5, "1 kHz passband: {i:.2} → {o:.2}");
        let (i, o) = run(SampleRate::Hz48000, SampleRate::Hz8000, 6000.0);
        assert!(i - o > 40.0, "6 kHz must be rejected: {i:.2} → {o:.2}");
    }

    #[test]
    fn a_tts_clip_at_22050_hz_becomes_8_khz_with_the_same_duration_and_level() {
        let tone: Vec<i16> = (0..22_050)
            .map(|i| {
                (8000.0 * (2.0 * std::f64::consts::PI * 500.0 * i as f64 / 22_050.0).sin()) as i16
            })
            .collect();
        let out = resample_clip(&tone, 22_050, 8000).unwrap();
        assert!(
            (out.len() as i64 - 8000).abs() <= 2,
            "{} samples",
            out.len()
        );
        let (i, o) = (rms_dbfs(&tone[5000..15000]), rms_dbfs(&out[2000..6000]));
        assert!((i - o).abs() < 0.5, "{i} vs {o}");
        assert_eq!(resample_clip(&[], 22_050, 8000).unwrap(), Vec::<i16>::new());
    }

    #[test]
    fn a_frame_at_the_wrong_rate_is_refused() {
        let mut r = Resampler::new(SampleRate::Hz8000, SampleRate::Hz24000).unwrap();
        assert!(matches!(
            r.process(&Frame::silence(SampleRate::Hz16000)),
            Err(ResampleError::WrongInputRate { .. })
        ));
    }
}
