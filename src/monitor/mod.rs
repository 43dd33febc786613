//! Per-turn monitoring (sans-IO): caller sentiment, agent confidence and
//! helpfulness, and the escalation policy that turns them into a decision.

pub mod confidence;
pub mod policy;
pub mod sentiment;
pub mod text;
pub mod wait_choice;

pub use policy::{Decision, Monitor, MonitorInput, Observation, PolicyConfig};
