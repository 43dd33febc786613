//! WAV reading and writing (hound) and time alignment for call recordings.

use std::io::{Read, Seek};
use std::path::Path;
use std::time::Duration;
use thiserror::Error;

/// Errors reading or writing WAV files.
#[derive(Debug, Error)]
pub enum WavError {
    /// hound could not parse or write the file.
    #[error("WAV error for {what}: {source}")]
    Hound {
        /// File path or asset name.
        what: String,
        /// The underlying error.
        source: hound::Error,
    },
    /// The file is not 16-bit mono PCM at the required rate.
    #[error(
        "{what}: expected 16-bit mono PCM at {want} Hz, got {bits}-bit {channels}-channel at {rate} Hz"
    )]
    Format {
        /// File path or asset name.
        what: String,
        /// Required rate in Hz.
        want: u32,
        /// The file's rate in Hz.
        rate: u32,
        /// The file's channels.
        channels: u16,
        /// The file's bits per sample.
        bits: u16,
    },
}

/// Reads 16-bit mono PCM at `rate` Hz from any reader (`what` names it in errors).
pub fn read_mono<R: Read>(reader: R, rate: u32, what: &str) -> Result<Vec<i16>, WavError> {
    let hound_err = |source| WavError::Hound {
        what: what.to_string(),
        source,
    };
    let reader = hound::WavReader::new(reader).map_err(hound_err)?;
    let spec = reader.spec();
    if spec.channels != 1
        || spec.sample_rate != rate
        || spec.bits_per_sample != 16
        || spec.sample_format != hound::SampleFormat::Int
    {
        return Err(WavError::Format {
            what: what.to_string(),
            want: rate,
            rate: spec.sample_rate,
            channels: spec.channels,
            bits: spec.bits_per_sample,
        });
    }
    reader
        .into_samples::<i16>()
        .collect::<Result<Vec<_>, _>>()
        .map_err(hound_err)
}

/// Reads a 16-bit mono WAV file at `rate` Hz.
pub fn read_mono_file(path: &Path, rate: u32) -> Result<Vec<i16>, WavError> {
    let file = std::fs::File::open(path).map_err(|e| WavError::Hound {
        what: path.display().to_string(),
        source: hound::Error::IoError(e),
    })?;
    read_mono(
        std::io::BufReader::new(file),
        rate,
        &path.display().to_string(),
    )
}

/// Writes a 16-bit mono WAV file.
pub struct WavSink<W: std::io::Write + Seek> {
    writer: hound::WavWriter<W>,
    what: String,
}

impl WavSink<std::io::BufWriter<std::fs::File>> {
    /// Creates (or truncates) a WAV file at `rate` Hz.
    pub fn create(path: &Path, rate: u32) -> Result<Self, WavError> {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let what = path.display().to_string();
        let writer = hound::WavWriter::create(path, spec).map_err(|source| WavError::Hound {
            what: what.clone(),
            source,
        })?;
        Ok(WavSink { writer, what })
    }
}

impl<W: std::io::Write + Seek> WavSink<W> {
    /// Appends samples.
    pub fn write(&mut self, samples: &[i16]) -> Result<(), WavError> {
        for &s in samples {
            self.writer
                .write_sample(s)
                .map_err(|source| WavError::Hound {
                    what: self.what.clone(),
                    source,
                })?;
        }
        Ok(())
    }

    /// Writes the header and closes the file.
    pub fn finalize(self) -> Result<(), WavError> {
        let what = self.what;
        self.writer
            .finalize()
            .map_err(|source| WavError::Hound { what, source })
    }
}

/// Keeps a recording aligned with wall time: audio that arrives after a real
/// gap is preceded by the matching silence, so the file's timeline is the
/// call's. Lateness up to [`JITTER_TOLERANCE_MS`] is network jitter, not a gap:
/// such audio is appended directly, so speech is never cut by tiny silences.
#[derive(Debug, Clone)]
pub struct TimedTrack {
    rate: u32,
    written: u64,
}

/// Lateness below this is treated as jitter (no silence inserted).
pub const JITTER_TOLERANCE_MS: u64 = 80;

impl TimedTrack {
    /// A track at `rate` Hz starting at elapsed time zero.
    pub fn new(rate: u32) -> Self {
        TimedTrack { rate, written: 0 }
    }

    /// Returns the silence to write before `samples` that arrive at `elapsed`.
    pub fn gap_before(&mut self, elapsed: Duration, samples: usize) -> usize {
        let position = (elapsed.as_secs_f64() * f64::from(self.rate)) as u64;
        let tolerance = u64::from(self.rate) * JITTER_TOLERANCE_MS / 1000;
        let late = position.saturating_sub(self.written);
        let gap = if late > tolerance { late } else { 0 };
        self.written += gap + samples as u64;
        gap as usize
    }

    /// Samples placed so far (including silence).
    pub fn len(&self) -> u64 {
        self.written
    }

    /// True before anything was placed.
    pub fn is_empty(&self) -> bool {
        self.written == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_file_reads_back_and_a_wrong_rate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.wav");
        let mut sink = WavSink::create(&path, 8000).unwrap();
        sink.write(&[1, -2, 3, i16::MIN, i16::MAX]).unwrap();
        sink.finalize().unwrap();
        assert_eq!(
            read_mono_file(&path, 8000).unwrap(),
            vec![1, -2, 3, i16::MIN, i16::MAX]
        );
        assert!(matches!(
            read_mono_file(&path, 16000),
            Err(WavError::Format { rate: 8000, .. })
        ));
        assert!(matches!(
            read_mono(&b"not a wav"[..], 8000, "junk"),
            Err(WavError::Hound { .. })
        ));
    }

    #[test]
    fn late_audio_is_preceded_by_silence_and_bursts_are_appended() {
        let mut t = TimedTrack::new(8000);
        assert_eq!(t.gap_before(Duration::ZERO, 160), 0);
        assert_eq!(t.gap_before(Duration::from_millis(200), 160), 1600 - 160);
        assert_eq!(t.gap_before(Duration::from_millis(200), 160), 0);
        assert_eq!(t.len(), 1920);
        // 50 ms late is jitter: appended without a gap.
        assert_eq!(t.gap_before(Duration::from_millis(290), 160), 0);
    }
}
