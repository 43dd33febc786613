//! The handoff brief: the context package a human receives, and its summary.

pub mod context;
pub mod prompts;
pub mod speech_text;
pub mod summary;
pub mod tts;
pub mod whisper;
