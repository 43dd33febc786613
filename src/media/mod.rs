//! Sans-IO media core: codecs, resampling, playout, mixing, VAD and WAV I/O.
//!
//! Nothing in this module touches sockets, tasks or the clock: time comes in as
//! an argument, so every piece is testable to the sample and benchmarkable per frame.

pub mod analysis;
pub mod frame;
pub mod g711;
pub mod hold;
pub mod jitter;
pub mod latch;
pub mod mixer;
pub mod opus;
pub mod playout;
pub mod resample;
pub mod rtp;
pub mod vad;
pub mod wav;

pub use frame::{FRAME_MS, Frame, SampleRate};
