//! The call's vocabulary, in one home: who takes part in a call, what they
//! say, why a call escalates, how a handoff proceeds and the gateway's own
//! marks. Pure data: no tokio, no I/O, no clock, and nothing else of the crate
//! (every other layer may use it; `tests/architecture.rs` checks both).
//!
//! Wire names are fixed by serde attributes here, so every transport and
//! `timeline.json` spell them the same way.

pub mod agents;
pub mod conversation;
pub mod escalation;
pub mod handoff;
pub mod hours;
pub mod marks;
pub mod party;
pub mod supervision;

pub use agents::{AgentStatus, OfferKind, WithdrawReason};
pub use conversation::{Role, ToolUse, Turn};
pub use escalation::{EscalationRequest, Trigger, Urgency};
pub use handoff::{HandoffOutcome, HandoffResult, HandoffStep, TransferTarget};
pub use marks::GatewayMark;
pub use party::Party;
pub use supervision::{CallControl, LiveCallView, SupervisorHint, SupervisorMode};
