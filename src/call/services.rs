//! What a call needs of the gateway: the services the per-call task
//! ([`super::session`]) and its insight task ([`super::insight`]) use, as a
//! port the composition root (`gateway.rs`) implements. The call layer takes
//! `Arc<dyn CallServices>` and so names nothing above itself.

use crate::brief::summary::LlmSummarizer;
use crate::brief::tts::TtsSet;
use crate::call::bridge::Apologies;
use crate::call::judge::LlmJudge;
use crate::call::registry::CallRegistry;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::monitor::TurnClassifier;
use crate::routing::Routing;
use crate::routing::webhook::Webhook;
use crate::store::Store;
use crate::util::pii::Redactor;
use std::sync::Arc;

/// The services a call uses.
pub trait CallServices: Send + Sync {
    /// The configuration in force.
    fn config(&self) -> &Config;
    /// Calls in progress and recently finished.
    fn registry(&self) -> &CallRegistry;
    /// The prompts played when the AI agent fails or the gateway closes.
    fn apology(&self) -> &Apologies;
    /// Persistence.
    fn store(&self) -> &Store;
    /// The LLM summariser, when configured.
    fn llm(&self) -> Option<&LlmSummarizer>;
    /// Text-to-speech engines for the whisper and prompts.
    fn tts(&self) -> &TtsSet;
    /// Human agents and the queue.
    fn routing(&self) -> &Routing;
    /// Live metrics.
    fn metrics(&self) -> &Metrics;
    /// The screen-pop webhook, when configured.
    fn webhook(&self) -> Option<&Webhook>;
    /// Set when every call must say goodbye and hang up (a drain that timed out).
    fn closing(&self) -> &tokio::sync::watch::Sender<bool>;
    /// `[privacy]`: personal data replaced in free text as it enters a call.
    fn redactor(&self) -> &Arc<Redactor>;
    /// How the monitor reads turns.
    fn classifier(&self) -> &TurnClassifier;
    /// The optional LLM judge for turns the heads are unsure about.
    fn judge(&self) -> Option<&Arc<LlmJudge>>;
}
