//! Simulators over real sockets: a caller that speaks exact Twilio Media
//! Streams messages, and a scripted AI agent server. They power `warmline demo`,
//! the integration tests and the benchmarks.

pub mod agent;
pub mod caller;
pub mod human;
