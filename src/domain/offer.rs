//! What a human agent is offered (formerly `cluster::db::OfferKind`): the
//! console, an agent's phone, routing and the cluster's ledger all speak it.

/// What an agent is offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OfferKind {
    /// A live call waiting in the queue: accepting connects its audio.
    Call,
    /// A saved callback: accepting assigns it to the agent, who calls back.
    Callback,
}
