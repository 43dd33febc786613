//! Bundled speech (8 kHz mono WAV, made with espeak-ng by scripts/make-prompts.sh),
//! so that the gateway, the demo and the tests need no TTS or network at run time.

use crate::media::g711;
use crate::media::wav::{self, WavError};
use std::sync::Arc;

/// "I'm sorry, our assistant is not available right now…"
pub const AGENT_UNAVAILABLE_WAV: &[u8] = include_bytes!("../assets/prompts/agent_unavailable.wav");
/// "I'm sorry, we have to end this call now… Goodbye." (drain timeout)
pub const SHUTTING_DOWN_WAV: &[u8] = include_bytes!("../assets/prompts/shutting_down.wav");
/// Demo: the simulated caller's side (three utterances with pauses).
pub const DEMO_CALLER_WAV: &[u8] = include_bytes!("../assets/demo/caller.wav");
/// Demo: the scripted agent's greeting.
pub const DEMO_GREETING_WAV: &[u8] = include_bytes!("../assets/demo/agent_greeting.wav");
/// Demo: the scripted agent's replies, in order.
pub const DEMO_REPLY_WAVS: [&[u8]; 3] = [
    include_bytes!("../assets/demo/agent_reply_1.wav"),
    include_bytes!("../assets/demo/agent_reply_2.wav"),
    include_bytes!("../assets/demo/agent_reply_3.wav"),
];

/// Demo: the AI agent's two failed answers.
pub const DEMO_FAIL_WAVS: [&[u8]; 2] = [
    include_bytes!("../assets/demo/agent_fail_1.wav"),
    include_bytes!("../assets/demo/agent_fail_2.wav"),
];
/// Demo: the human agent's first words after the merge.
pub const DEMO_HUMAN_AGENT_WAV: &[u8] = include_bytes!("../assets/demo/human_agent.wav");

/// Reads a bundled 8 kHz WAV as linear PCM.
pub fn pcm(wav_bytes: &[u8], name: &str) -> Result<Vec<i16>, WavError> {
    wav::read_mono(wav_bytes, 8000, name)
}

/// Reads a bundled 8 kHz WAV as μ-law bytes.
pub fn ulaw(wav_bytes: &[u8], name: &str) -> Result<Vec<u8>, WavError> {
    let mut out = Vec::new();
    g711::encode_ulaw(&pcm(wav_bytes, name)?, &mut out);
    Ok(out)
}

/// "Our assistant has stopped responding; I'm getting a person" (8 kHz WAV).
pub const AGENT_FAILED_WAV: &[u8] = include_bytes!("../assets/prompts/agent_failed.wav");

/// The apology played when the AI agent fails mid-call and a person is fetched, as μ-law.
pub fn agent_failed() -> Result<Arc<[u8]>, WavError> {
    Ok(Arc::from(ulaw(AGENT_FAILED_WAV, "agent_failed.wav")?))
}

/// The agent-unavailable apology as μ-law.
pub fn agent_unavailable() -> Result<Arc<[u8]>, WavError> {
    Ok(Arc::from(ulaw(
        AGENT_UNAVAILABLE_WAV,
        "agent_unavailable.wav",
    )?))
}

/// The goodbye said to every caller still on the line when a drain times out, as μ-law.
pub fn shutting_down() -> Result<Arc<[u8]>, WavError> {
    Ok(Arc::from(ulaw(SHUTTING_DOWN_WAV, "shutting_down.wav")?))
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_bundled_wav_loads_and_has_speech() {
        let mut all = vec![
            super::AGENT_UNAVAILABLE_WAV,
            super::AGENT_FAILED_WAV,
            super::SHUTTING_DOWN_WAV,
            super::DEMO_CALLER_WAV,
            super::DEMO_GREETING_WAV,
        ];
        all.extend(super::DEMO_REPLY_WAVS);
        all.extend(super::DEMO_FAIL_WAVS);
        all.push(super::DEMO_HUMAN_AGENT_WAV);
        for wav in all {
            let pcm = super::pcm(wav, "asset").unwrap();
            assert!(pcm.len() > 8000, "at least a second of audio");
            assert!(crate::media::analysis::rms_dbfs(&pcm) > -40.0);
        }
    }
}
