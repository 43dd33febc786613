//! Mix-minus mixer driven by a routing matrix.
//!
//! The matrix is data: for each listener it says which sources they hear. The
//! mixer only executes it. The matrix itself refuses the two routes that must
//! never exist: a listener hearing their own voice, and the whisper reaching
//! anyone but the human agent.

use crate::media::Frame;
use serde::Serialize;
use thiserror::Error;

/// An audio source inside a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The caller's voice.
    Caller,
    /// The AI voice agent.
    AiAgent,
    /// The human agent's voice.
    HumanAgent,
    /// Hold music / comfort audio.
    Hold,
    /// Gateway prompts to the caller (disclosure, apologies).
    Prompt,
    /// The whisper brief for the human agent.
    Whisper,
}

impl Source {
    /// Every source, in matrix column order.
    pub const ALL: [Source; 6] = [
        Source::Caller,
        Source::AiAgent,
        Source::HumanAgent,
        Source::Hold,
        Source::Prompt,
        Source::Whisper,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// A party that hears a mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Listener {
    /// The caller.
    Caller,
    /// The AI voice agent.
    AiAgent,
    /// The human agent.
    HumanAgent,
}

impl Listener {
    /// Every listener, in matrix row order.
    pub const ALL: [Listener; 3] = [Listener::Caller, Listener::AiAgent, Listener::HumanAgent];

    /// The source that is this listener's own voice (never in their mix).
    pub fn own_voice(self) -> Source {
        match self {
            Listener::Caller => Source::Caller,
            Listener::AiAgent => Source::AiAgent,
            Listener::HumanAgent => Source::HumanAgent,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A route the matrix refuses to hold.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RoutingError {
    /// Mix-minus: nobody hears their own voice.
    #[error("{0:?} cannot hear their own voice (mix-minus)")]
    OwnVoice(Listener),
    /// The whisper is for the human agent only.
    #[error("the whisper may only reach the human agent, not {0:?}")]
    WhisperBeyondAgent(Listener),
}

/// Which sources each listener hears.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RoutingMatrix {
    hears: [[bool; Source::ALL.len()]; Listener::ALL.len()],
}

impl RoutingMatrix {
    /// Nobody hears anything.
    pub const fn silent() -> Self {
        RoutingMatrix {
            hears: [[false; Source::ALL.len()]; Listener::ALL.len()],
        }
    }

    /// The AI phase: the caller hears the AI agent and gateway prompts; the AI agent hears the caller.
    pub fn ai_conversation() -> Self {
        let mut m = RoutingMatrix::silent();
        m.hears[Listener::Caller.index()][Source::AiAgent.index()] = true;
        m.hears[Listener::Caller.index()][Source::Prompt.index()] = true;
        m.hears[Listener::AiAgent.index()][Source::Caller.index()] = true;
        m
    }

    /// Adds a route, refusing the forbidden ones.
    pub fn with(mut self, listener: Listener, source: Source) -> Result<Self, RoutingError> {
        if listener.own_voice() == source {
            return Err(RoutingError::OwnVoice(listener));
        }
        if source == Source::Whisper && listener != Listener::HumanAgent {
            return Err(RoutingError::WhisperBeyondAgent(listener));
        }
        self.hears[listener.index()][source.index()] = true;
        Ok(self)
    }

    /// Whether `listener` hears `source`.
    pub fn hears(&self, listener: Listener, source: Source) -> bool {
        self.hears[listener.index()][source.index()]
    }

    /// The sources `listener` hears.
    pub fn sources_for(&self, listener: Listener) -> impl Iterator<Item = Source> + '_ {
        Source::ALL
            .into_iter()
            .filter(move |&s| self.hears(listener, s))
    }
}

/// The current frame of each source (`None` = silent this tick).
#[derive(Debug, Default)]
pub struct SourceFrames<'a> {
    frames: [Option<&'a Frame>; Source::ALL.len()],
}

impl<'a> SourceFrames<'a> {
    /// Sets the frame of one source for this tick.
    pub fn set(&mut self, source: Source, frame: &'a Frame) {
        self.frames[source.index()] = Some(frame);
    }

    fn get(&self, source: Source) -> Option<&'a Frame> {
        self.frames[source.index()]
    }
}

/// Sums the routed sources for one listener with saturation.
#[derive(Debug, Default)]
pub struct Mixer {
    acc: Vec<i32>,
}

impl Mixer {
    /// Writes into `out` the mix `listener` hears this tick. Sources at another
    /// rate than `out` are skipped (resample them first). Returns how many sources were mixed.
    pub fn mix_for(
        &mut self,
        matrix: &RoutingMatrix,
        listener: Listener,
        inputs: &SourceFrames<'_>,
        out: &mut Frame,
    ) -> usize {
        let n = out.samples().len();
        self.acc.clear();
        self.acc.resize(n, 0);
        let mut mixed = 0;
        for source in matrix.sources_for(listener) {
            let Some(frame) = inputs.get(source) else {
                continue;
            };
            if frame.rate() != out.rate() {
                continue;
            }
            for (a, &s) in self.acc.iter_mut().zip(frame.samples()) {
                *a += i32::from(s);
            }
            mixed += 1;
        }
        for (o, &a) in out.samples_mut().iter_mut().zip(&self.acc) {
            *o = a.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16;
        }
        mixed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::SampleRate;

    fn constant(v: i16) -> Frame {
        Frame::new(SampleRate::Hz8000, vec![v; 160]).unwrap()
    }

    #[test]
    fn the_matrix_refuses_own_voice_and_whisper_to_anyone_but_the_agent() {
        let m = RoutingMatrix::silent();
        assert_eq!(
            m.with(Listener::Caller, Source::Caller),
            Err(RoutingError::OwnVoice(Listener::Caller))
        );
        assert_eq!(
            m.with(Listener::Caller, Source::Whisper),
            Err(RoutingError::WhisperBeyondAgent(Listener::Caller))
        );
        assert_eq!(
            m.with(Listener::AiAgent, Source::Whisper),
            Err(RoutingError::WhisperBeyondAgent(Listener::AiAgent))
        );
        assert!(m.with(Listener::HumanAgent, Source::Whisper).is_ok());
        for l in Listener::ALL {
            assert!(!RoutingMatrix::ai_conversation().hears(l, Source::Whisper));
            assert!(!RoutingMatrix::ai_conversation().hears(l, l.own_voice()));
        }
    }

    #[test]
    fn each_listener_gets_the_sum_of_their_sources_and_never_their_own_voice() {
        let matrix = RoutingMatrix::silent()
            .with(Listener::Caller, Source::HumanAgent)
            .and_then(|m| m.with(Listener::HumanAgent, Source::Caller))
            .and_then(|m| m.with(Listener::HumanAgent, Source::Whisper))
            .unwrap();
        let (caller, agent, whisper) = (constant(100), constant(1000), constant(5));
        let mut inputs = SourceFrames::default();
        inputs.set(Source::Caller, &caller);
        inputs.set(Source::HumanAgent, &agent);
        inputs.set(Source::Whisper, &whisper);
        let mut mixer = Mixer::default();
        let mut out = Frame::silence(SampleRate::Hz8000);
        assert_eq!(
            mixer.mix_for(&matrix, Listener::Caller, &inputs, &mut out),
            1
        );
        assert!(out.samples().iter().all(|&s| s == 1000));
        assert_eq!(
            mixer.mix_for(&matrix, Listener::HumanAgent, &inputs, &mut out),
            2
        );
        assert!(out.samples().iter().all(|&s| s == 105));
    }

    #[test]
    fn the_sum_saturates_instead_of_wrapping() {
        let matrix = RoutingMatrix::silent()
            .with(Listener::HumanAgent, Source::Caller)
            .and_then(|m| m.with(Listener::HumanAgent, Source::Hold))
            .unwrap();
        let (a, b) = (constant(30_000), constant(30_000));
        let mut inputs = SourceFrames::default();
        inputs.set(Source::Caller, &a);
        inputs.set(Source::Hold, &b);
        let mut out = Frame::silence(SampleRate::Hz8000);
        Mixer::default().mix_for(&matrix, Listener::HumanAgent, &inputs, &mut out);
        assert!(out.samples().iter().all(|&s| s == i16::MAX));
    }
}
