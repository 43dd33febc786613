//! The handoff brief: the context package a human receives, and its summary.

pub mod context;
pub mod summary;
