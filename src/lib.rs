//! warmline: a real-time voice gateway that bridges callers (Twilio Media
//! Streams today; SIP and WebRTC next) to an AI voice agent, watches the
//! conversation, and hands the caller warmly to a human when needed.
//!
//! Layout (see docs/ARCHITECTURE.md):
//! - [`media`]: sans-IO media core (codecs, resampling, playout, mixing, VAD, WAV).
//! - [`legs`]: transports turned into leg events (Twilio caller leg, AI agent leg).
//! - [`call`]: the sans-IO call bridge, the per-call task, timelines and the registry.
//! - [`gateway`], [`http`]: the server.
//! - [`store`]: persistence (SQLite, or PostgreSQL); [`cluster`]: several nodes on PostgreSQL + NATS.
//! - [`sim`]: real-socket simulators of a caller and an AI agent.
// Unsafe code is denied everywhere except the one FFI wrapper
// (brief/tts/espeak_ffi.rs), which allows it with SAFETY notes.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod assets;
pub mod brief;
pub mod call;
pub mod cluster;
pub mod config;
pub mod demo;
pub mod domain;
pub mod gateway;
pub mod http;
pub mod legs;
pub mod media;
pub mod metrics;
pub mod monitor;
pub mod routing;
pub mod sim;
pub mod store;
pub mod util;
