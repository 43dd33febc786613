//! warmline: a real-time voice gateway that bridges callers (Twilio Media
//! Streams, SIP trunks and WebRTC browsers) to an AI voice agent, watches the
//! conversation, and hands the caller warmly to a human when needed.
//!
//! Layout, lowest layer first (docs/ARCHITECTURE.md has the map). A module may
//! use only modules of a lower layer; `tests/architecture.rs` checks it, and the
//! module declarations below are grouped by layer in the same order.
//! - 0 [`domain`]: the call's vocabulary (parties, turns and tools, escalation,
//!   handoff steps, the gateway's marks, business hours); [`util`]: small helpers.
//! - 1 [`media`]: sans-IO media core (codecs, RTP, jitter buffer, playout, mixing, VAD, WAV).
//! - 2 [`monitor`]: sans-IO per-turn monitoring and the escalation policy.
//! - 3 [`config`], [`assets`], [`metrics`]: plain settings, bundled speech, live metrics.
//! - 4 [`brief`]: the handoff context, summaries, the whisper and text-to-speech.
//! - 5 [`store`]: persistence (SQLite, or PostgreSQL).
//! - 6 [`legs`]: transports turned into leg events (Media Streams, AI agents,
//!   consoles, SIP, WebRTC).
//! - 7 [`call`]: the sans-IO call bridge and handoff machine, the per-call task,
//!   timelines and the registry.
//! - 8 [`routing`]: human agents, the queue and offers.
//! - 9 [`cluster`]: several nodes on PostgreSQL + NATS.
//! - 10 [`http`]: routes and admission.
//! - 11 [`gateway`]: the running server; [`sim`]: real-socket simulators of a
//!   caller, an AI agent and a console.
//! - 12 [`demo`]: `warmline demo`.
// Unsafe code is denied everywhere except the espeak-ng FFI wrapper
// (brief/tts/espeak_ffi.rs) and the open-file limit (util/os.rs), which
// allow it with SAFETY notes.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod domain;
pub mod util;

pub mod media;

pub mod monitor;

pub mod assets;
pub mod config;
pub mod metrics;

pub mod brief;

pub mod store;

pub mod legs;

pub mod routing;

pub mod call;

pub mod cluster;

pub mod http;

pub mod gateway;
pub mod sim;

pub mod demo;
