//! Signal measurements used by tests, the demo summary and benchmarks: level and
//! presence of a known sound in a recording (normalised cross-correlation).

/// Root-mean-square level in dBFS (−∞ for digital silence is reported as −120).
pub fn rms_dbfs(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return -120.0;
    }
    let energy: f64 = samples.iter().map(|&s| f64::from(s).powi(2)).sum();
    let rms = (energy / samples.len() as f64).sqrt();
    if rms < 1e-6 {
        -120.0
    } else {
        20.0 * (rms / 32768.0).log10()
    }
}

/// Finds where `reference` best matches inside `recording`.
///
/// Returns `(lag, ncc)`: the sample offset in `recording` and the normalised
/// cross-correlation there (1.0 = identical shape, ≈0 = unrelated). The
/// recording is zero-padded at the end, so a reference cut short by the end of
/// the recording is still found (scoring by the share it overlaps). With `decimation > 1` a coarse search
/// runs on block averages first and the best candidates are refined at full rate,
/// which makes minute-long recordings cheap to search.
pub fn best_lag_correlation(
    reference: &[i16],
    recording: &[i16],
    decimation: usize,
) -> (usize, f64) {
    if reference.is_empty() {
        return (0, 0.0);
    }
    let mut padded = recording.to_vec();
    padded.resize(recording.len() + reference.len(), 0);
    let recording = &padded[..];
    let reference: Vec<f64> = reference.iter().map(|&s| f64::from(s)).collect();
    let recording: Vec<f64> = recording.iter().map(|&s| f64::from(s)).collect();
    let max_lag = recording.len() - reference.len();
    let decimation = decimation.max(1);
    let candidates: Vec<usize> = if decimation == 1 {
        (0..=max_lag).collect()
    } else {
        let r = decimate(&reference, decimation);
        let x = decimate(&recording, decimation);
        let mut scored: Vec<(usize, f64)> = if x.len() >= r.len() {
            ncc_all_lags(&r, &x)
        } else {
            vec![(0, 0.0)]
        };
        scored.sort_by(|a, b| b.1.total_cmp(&a.1));
        let mut out = Vec::new();
        for &(coarse, _) in scored.iter().take(4) {
            let centre = coarse * decimation;
            let lo = centre.saturating_sub(decimation);
            let hi = (centre + decimation).min(max_lag);
            out.extend(lo..=hi);
        }
        out
    };
    let energy_ref: f64 = reference.iter().map(|v| v * v).sum();
    let mut best = (0, 0.0);
    for lag in candidates {
        let window = &recording[lag..lag + reference.len()];
        let c = ncc(&reference, energy_ref, window);
        if c > best.1 {
            best = (lag, c);
        }
    }
    best
}

fn ncc(reference: &[f64], energy_ref: f64, window: &[f64]) -> f64 {
    let mut dot = 0.0;
    let mut energy = 0.0;
    for (a, b) in reference.iter().zip(window) {
        dot += a * b;
        energy += b * b;
    }
    if energy_ref <= 0.0 || energy <= 0.0 {
        0.0
    } else {
        dot / (energy_ref * energy).sqrt()
    }
}

fn ncc_all_lags(reference: &[f64], recording: &[f64]) -> Vec<(usize, f64)> {
    let energy_ref: f64 = reference.iter().map(|v| v * v).sum();
    (0..=recording.len() - reference.len())
        .map(|lag| {
            (
                lag,
                ncc(
                    reference,
                    energy_ref,
                    &recording[lag..lag + reference.len()],
                ),
            )
        })
        .collect()
}

fn decimate(signal: &[f64], factor: usize) -> Vec<f64> {
    signal
        .chunks(factor)
        .map(|c| c.iter().sum::<f64>() / c.len() as f64)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chirp(len: usize, seed: u32) -> Vec<i16> {
        let mut state = seed;
        (0..len)
            .map(|_| {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                ((state >> 16) as i16) / 4
            })
            .collect()
    }

    #[test]
    fn finds_a_reference_hidden_in_a_recording() {
        let reference = chirp(4000, 1);
        let mut recording = vec![0i16; 20_000];
        recording[7_321..7_321 + 4000].copy_from_slice(&reference);
        let (lag, c) = best_lag_correlation(&reference, &recording, 8);
        assert_eq!(lag, 7_321);
        assert!(c > 0.999);
        let (_, unrelated) = best_lag_correlation(&chirp(4000, 2), &recording, 1);
        assert!(unrelated < 0.1, "unrelated noise scored {unrelated}");
        // Cut short by the end of the recording: found, scored by the overlap.
        let (lag, c) = best_lag_correlation(&reference, &recording[..7_321 + 3_900], 8);
        assert_eq!(lag, 7_321);
        assert!(c > 0.95, "{c}");
    }

    #[test]
    fn levels_are_in_dbfs() {
        assert_eq!(rms_dbfs(&[0; 160]), -120.0);
        let full: Vec<i16> = (0..160)
            .map(|i| if i % 2 == 0 { 32767 } else { -32767 })
            .collect();
        assert!(rms_dbfs(&full).abs() < 0.01);
    }
}
