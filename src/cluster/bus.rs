//! What nodes tell each other over NATS, and on which subjects.
//!
//! NATS is the doorbell, PostgreSQL the ledger: every message here announces a
//! change already committed in the database ([`super::db`]), so a lost or
//! repeated message costs at most a delay (the next heartbeat's dispatch round
//! and sweep redo the work from the database), never a wrong decision.
//! Messages are JSON; unknown or malformed ones are logged and dropped.

use crate::domain::OfferKind;
use crate::domain::Urgency;
use serde::{Deserialize, Serialize};

/// Every node listens here: "the queue or the agents changed, run a dispatch round".
pub const DISPATCH: &str = "warmline.dispatch";
/// Every node listens here: agents' availability, for wait estimates and listings.
pub const PRESENCE: &str = "warmline.presence";

/// One node's own subject.
pub fn node_subject(node_id: &str) -> String {
    format!("warmline.node.{}", subject_token(node_id))
}

/// A node id made safe as one NATS subject token (no dots, spaces or wildcards).
fn subject_token(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A message to one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NodeMessage {
    /// Screen-pop this offer on your agent's console.
    Offer {
        /// The agent.
        agent_id: String,
        /// The call (or callback).
        call_id: String,
        /// Call or callback.
        kind: OfferKind,
        /// Urgency.
        urgency: Urgency,
        /// The handoff context, JSON.
        context: String,
        /// The node holding the call (empty for a callback).
        owner_node: String,
    },
    /// The offer to your agent is gone (caller left, ring lease expired).
    Withdraw {
        /// The agent.
        agent_id: String,
        /// The call.
        call_id: String,
        /// Why.
        reason: String,
    },
    /// News about a call you hold.
    Call {
        /// The call.
        call_id: String,
        /// What happened.
        event: CallNews,
    },
}

impl From<super::db::Match> for NodeMessage {
    /// The offer a dispatch round made, for the agent's node.
    fn from(m: super::db::Match) -> Self {
        NodeMessage::Offer {
            agent_id: m.agent_id,
            call_id: m.call_id,
            kind: m.kind,
            urgency: m.urgency,
            context: m.context,
            owner_node: m.owner_node,
        }
    }
}

/// What routing tells the node holding a call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum CallNews {
    /// An agent got the screen-pop and is being rung.
    Offered {
        /// The agent.
        agent_id: String,
    },
    /// The agent declined, or the ring lease expired.
    Declined {
        /// The agent.
        agent_id: String,
    },
    /// Nobody can take it.
    NoAgent {
        /// Why.
        reason: String,
    },
}

/// One node's agents, as announced on [`PRESENCE`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Presence {
    /// The node.
    pub node_id: String,
    /// Its agents with a console connected.
    pub agents: Vec<PresentAgent>,
}

/// An agent in a [`Presence`] announcement (routing's own type).
pub use crate::routing::PresentAgent;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_become_single_subject_tokens() {
        assert_eq!(node_subject("gw-a"), "warmline.node.gw-a");
        assert_eq!(
            node_subject("host.example:8080"),
            "warmline.node.host_example_8080"
        );
        assert_eq!(node_subject("a*b >c"), "warmline.node.a_b__c");
    }

    #[test]
    fn messages_round_trip_as_json() {
        let m = NodeMessage::Call {
            call_id: "CA1".into(),
            event: CallNews::Declined {
                agent_id: "ana".into(),
            },
        };
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(
            text,
            r#"{"type":"call","call_id":"CA1","event":{"event":"declined","agent_id":"ana"}}"#
        );
        assert_eq!(serde_json::from_str::<NodeMessage>(&text).unwrap(), m);
        assert!(serde_json::from_str::<NodeMessage>(r#"{"type":"nope"}"#).is_err());
    }
}
