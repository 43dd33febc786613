//! Per-turn monitoring (sans-IO): what each turn does (the trained classifier
//! heads over hashed subword features, or the phrase rules), caller sentiment,
//! agent confidence and helpfulness, and the escalation policy that turns them
//! into a decision. `corpus` plays labelled conversations through it.

pub mod confidence;
pub mod corpus;
pub mod encoder;
pub mod features;
mod harm;
pub mod heads;
pub mod judge;
pub mod policy;
pub mod sentiment;
pub mod text;
pub mod wait_choice;

pub use policy::{Decision, Monitor, MonitorInput, Observation, PolicyConfig, TurnClassifier};
