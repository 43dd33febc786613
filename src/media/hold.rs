//! Hold audio: a soft, slowly breathing two-note chord, generated frame by frame
//! (no asset, no clock: the frame counter is the time).

use crate::media::g711;

/// Generates μ-law 8 kHz hold audio, 20 ms at a time.
#[derive(Debug, Clone, Default)]
pub struct HoldTone {
    sample: u64,
}

impl HoldTone {
    /// The next 160-byte μ-law frame.
    pub fn next_frame(&mut self) -> Vec<u8> {
        let mut out = Vec::with_capacity(160);
        for _ in 0..160 {
            let t = self.sample as f64 / 8000.0;
            // A major third (C5, E5) with a 4-second swell; about −26 dBFS RMS.
            let swell = 0.55 + 0.45 * (2.0 * std::f64::consts::PI * t / 4.0).sin();
            let v = 1400.0
                * swell
                * ((2.0 * std::f64::consts::PI * 523.25 * t).sin()
                    + 0.8 * (2.0 * std::f64::consts::PI * 659.25 * t).sin());
            out.push(g711::linear_to_ulaw(v as i16));
            self.sample += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hold_audio_is_audible_but_soft_and_continuous() {
        let mut h = HoldTone::default();
        let mut pcm = Vec::new();
        for _ in 0..200 {
            let frame = h.next_frame();
            assert_eq!(frame.len(), 160);
            let mut p = Vec::new();
            g711::decode_ulaw(&frame, &mut p);
            pcm.extend(p);
        }
        let level = crate::media::analysis::rms_dbfs(&pcm);
        assert!((-35.0..-18.0).contains(&level), "{level}");
    }
}
