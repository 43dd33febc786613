//! Calls: the sans-IO bridge that decides, the per-call task that drives it, and the timeline.

pub mod bridge;
pub mod guard;
pub mod handoff;
pub mod insight;
pub mod judge;
pub mod recorder;
pub mod registry;
pub mod services;
pub mod session;
pub mod timeline;
