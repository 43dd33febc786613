//! The escalation policy (sans-IO, pure): feeds turns, tools, intents, digits and
//! agent events through the per-turn classifier heads, sentiment and confidence,
//! and decides — once per call — whether a human must take over, why, how
//! urgently, on which event, and on what evidence.
//!
//! The rules are the seed's (docs/POLICY.md): a request for a person (in any
//! words, or accepting the assistant's offer) at once; legal threats, fraud and
//! emergencies critical; cancel/close/complaint requests by policy; amounts above
//! the limit, reserved intents and regulated advice beyond the AI's authority;
//! conflict, capability and "confidence below 50 % twice in a row" as complexity;
//! "two consecutive unhelpful responses" as repeated failure. What a turn *does*
//! comes from the trained heads ([`crate::monitor::heads`]); without them the
//! monitor falls back to the phrase rules at the end of this file and says so.

use crate::domain::{EscalationRequest, Role, Trigger, Urgency};
use crate::monitor::confidence::{
    AgentSignals, ConfidenceTracker, TurnAssessment, UnhelpfulReason,
};
use crate::monitor::features::{TurnContext, skeleton, tokens};
use crate::monitor::heads::{Heads, Label, LabelScore, Speaker, TurnScores};
pub use crate::monitor::judge::JudgeRequest;
use crate::monitor::sentiment::{SentimentArc, SentimentLabel, SentimentScorer};
use crate::monitor::text::{clauses, find_phrase, negated_before, words};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Thresholds and word lists: the `[monitor]` section of the config.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Unhelpful agent turns in a row that escalate.
    pub unhelpful_turns: u32,
    /// Stated confidence below this is low.
    pub low_confidence: f32,
    /// Low-confidence agent turns **in a row** that escalate.
    pub low_confidence_turns: u32,
    /// Intents the AI may not act on, matched by meaning of their words
    /// (`close_account` is `account_closure`).
    pub authority_intents: Vec<String>,
    /// Any intent with an `amount` above this is beyond the AI's authority.
    #[serde(alias = "refund_limit")]
    pub amount_limit: f64,
    /// Limits for particular actions (intent words, e.g. `credit = 100.0`), overriding `amount_limit`.
    pub action_limits: BTreeMap<String, f64>,
    /// Extra caller terms that need a human by policy (elevated), matched with
    /// stemming and one-letter slips, not when negated. The heads already know the
    /// usual ones; these are the operator's own.
    pub policy_keywords: Vec<String>,
    /// Extra caller terms that need a human at once (critical).
    pub critical_keywords: Vec<String>,
    /// Mean caller sentiment at or below this over `sentiment_turns` negative turns in a row escalates.
    pub sentiment_threshold: f32,
    /// Caller turns in a row the sentiment rule looks at.
    pub sentiment_turns: u32,
    /// The classifier heads: "" = the ones bundled with this build, "none" = the
    /// phrase rules only, otherwise a file written by `warmline policy train`.
    pub heads: String,
    /// The sentence encoder (all-MiniLM-L6-v2) asked about turns the heads are
    /// unsure of (a build with the `encoder` feature): "none" = heads alone
    /// (the default: measured no better, docs/POLICY.md), "" = the copy
    /// `scripts/fetch-encoder.sh` put in the build cache (or
    /// `$WARMLINE_ENCODER_DIR`), otherwise a directory holding config.json,
    /// tokenizer.json and model.safetensors.
    pub encoder: String,
    /// The encoder is asked when a head's score is within this of its
    /// threshold (1 = every turn); negative = the margin the bundled encoder
    /// heads were tuned with.
    pub encoder_margin: f32,
    /// Optional LLM judge for turns the heads are unsure about: an
    /// OpenAI-compatible chat-completions URL ("" = no judge).
    pub judge_url: String,
    /// The judge's model.
    pub judge_model: String,
    /// Bearer token for the judge (prefer WARMLINE_MONITOR_JUDGE_API_KEY).
    pub judge_api_key: String,
    /// Time the judge has to answer, in ms; late or failed answers are dropped (logged).
    pub judge_budget_ms: u64,
    /// A label is unsure when its score is within this of its threshold.
    pub judge_margin: f32,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        let list = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        PolicyConfig {
            unhelpful_turns: 2,
            low_confidence: 0.5,
            low_confidence_turns: 2,
            authority_intents: list(&[
                "account_closure",
                "terminate_account",
                "delete_account",
                "chargeback",
                "refund_over_limit",
            ]),
            amount_limit: 50.0,
            action_limits: BTreeMap::new(),
            policy_keywords: Vec::new(),
            critical_keywords: Vec::new(),
            sentiment_threshold: -0.45,
            sentiment_turns: 3,
            heads: String::new(),
            encoder: "none".into(),
            encoder_margin: -1.0,
            judge_url: String::new(),
            judge_model: "gpt-4o-mini".into(),
            judge_api_key: String::new(),
            judge_budget_ms: 800,
            judge_margin: 0.15,
        }
    }
}

/// How the monitor reads turns: the trained heads, or the phrase rules.
#[derive(Debug, Clone)]
pub enum TurnClassifier {
    /// The trained heads.
    Heads(Arc<Heads>),
    /// The phrase rules, and why the heads are not used.
    Rules {
        /// Why.
        reason: String,
    },
}

impl TurnClassifier {
    /// The classifier `config.heads` asks for; a file that cannot be read falls
    /// back to the rules (logged, with the reason kept for /healthz and /metrics).
    pub fn from_config(config: &PolicyConfig) -> TurnClassifier {
        let loaded = match config.heads.trim() {
            "none" => {
                return TurnClassifier::Rules {
                    reason: "monitor.heads = \"none\"".into(),
                };
            }
            "" => Heads::bundled(),
            path => Heads::load(std::path::Path::new(path)),
        };
        match loaded {
            Ok(h) => TurnClassifier::Heads(Arc::new(with_encoder(h, config))),
            Err(e) => TurnClassifier::Rules {
                reason: e.to_string(),
            },
        }
    }

    /// `classifier` or `rules`.
    pub fn mode(&self) -> &'static str {
        match self {
            TurnClassifier::Heads(_) => "classifier",
            TurnClassifier::Rules { .. } => "rules",
        }
    }

    /// One line for logs and /healthz.
    pub fn describe(&self) -> String {
        match self {
            TurnClassifier::Heads(h) => format!(
                "classifier heads ({} labels, {} buckets), {}",
                h.labels().len(),
                h.dim(),
                match (h.encoder(), h.encoder_missing()) {
                    (Some(r), _) => format!(
                        "sentence encoder all-MiniLM-L6-v2 on turns within {:.2} of a threshold (blend {:.2})",
                        r.margin, r.heads.blend
                    ),
                    (None, Some(why)) => format!("no sentence encoder ({why})"),
                    (None, None) => "no sentence encoder (monitor.encoder = \"none\")".into(),
                }
            ),
            TurnClassifier::Rules { reason } => {
                format!("phrase rules only (fallback: {reason})")
            }
        }
    }
}

/// `heads` with the sentence encoder `config.encoder` names, when it loads;
/// without it the heads read turns alone (logged, and said by `describe`).
fn with_encoder(heads: Heads, config: &PolicyConfig) -> Heads {
    use crate::monitor::encoder::{Encoder, EncoderHeads, EncoderReader};
    let dir = match config.encoder.trim() {
        "none" => return heads,
        "" => Encoder::default_dir(),
        path => std::path::PathBuf::from(path),
    };
    let loaded = EncoderHeads::bundled().and_then(|eh| {
        if eh.is_empty() {
            return Err(crate::monitor::encoder::EncoderError::Heads(
                "the bundled encoder heads are empty".into(),
            ));
        }
        let margin = if config.encoder_margin >= 0.0 {
            config.encoder_margin.min(1.0)
        } else {
            eh.margin
        };
        Ok(EncoderReader::from_parts(
            Arc::new(Encoder::load(&dir)?),
            eh,
            margin,
        ))
    });
    match loaded {
        Ok(reader) => heads.with_encoder(Arc::new(reader)),
        Err(e) => {
            tracing::warn!(error = %e, "escalation monitor: no sentence encoder; the subword heads read turns alone");
            heads.without_encoder(e.to_string())
        }
    }
}

/// The event a decision was made on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TriggerEvent {
    /// Its index among the events the monitor saw (0-based).
    pub index: usize,
    /// `turn`, `tool`, `intent`, `customer`, `dtmf`, `escalate` or `agent_failed`.
    pub kind: &'static str,
    /// Its transcript index, for a turn.
    pub turn: Option<usize>,
}

/// The labels the monitor gave one turn.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TurnLabels {
    /// Transcript index.
    pub turn: usize,
    /// Who spoke.
    pub role: Role,
    /// The labels at or above their thresholds, with their scores.
    pub labels: Vec<LabelScore>,
    /// The caller turn's sentiment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sentiment: Option<f32>,
}

/// An agent turn that counted as unhelpful, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnhelpfulTurn {
    /// Transcript index.
    pub turn: usize,
    /// Why.
    pub reasons: Vec<UnhelpfulReason>,
}

/// The decision to hand off.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// Reason code.
    pub trigger: Trigger,
    /// What a human should read.
    pub description: String,
    /// How urgent.
    pub urgency: Urgency,
    /// Transcript indices of the turns that justify it.
    pub evidence: Vec<usize>,
    /// Which rule fired (e.g. `explicit_request`, `low_confidence`).
    pub rule: &'static str,
    /// The event it was made on.
    pub event: TriggerEvent,
    /// The labels of the turns so far (the last [`LABELS_KEPT`]).
    pub labels: Vec<TurnLabels>,
    /// The unhelpful agent turns that count towards it, and why.
    pub unhelpful: Vec<UnhelpfulTurn>,
    /// `classifier` or `rules`.
    pub mode: &'static str,
}

impl Decision {
    /// The evidence beyond the turn list, as stored and shown: the event it was
    /// made on, what each turn did, why agent turns counted as unhelpful.
    pub fn why(&self) -> serde_json::Value {
        serde_json::json!({
            "event": self.event,
            "labels": self.labels,
            "unhelpful": self.unhelpful,
            "monitor": self.mode,
        })
    }
}

/// Turns a judge's verdict may still apply to.
pub const JUDGED_TURNS_KEPT: usize = 4;

/// Turn labels kept for the evidence (a bounded window, whatever the call's length).
pub const LABELS_KEPT: usize = 32;

/// One input to the monitor.
#[derive(Debug, Clone, Copy)]
pub enum MonitorInput<'a> {
    /// A conversation turn.
    Turn {
        /// Who spoke.
        role: Role,
        /// The text.
        content: &'a str,
        /// Agent's stated confidence.
        confidence: Option<f32>,
    },
    /// A tool the agent used.
    Tool {
        /// Name.
        name: &'a str,
        /// Success.
        ok: bool,
    },
    /// A key the caller pressed.
    Dtmf(char),
    /// The agent asked for a human.
    AgentEscalate(&'a EscalationRequest),
    /// The agent's view of the caller's intent.
    Intent(&'a serde_json::Map<String, serde_json::Value>),
    /// What the agent knows of the caller (its name keeps "Sue" a name).
    Customer(&'a serde_json::Map<String, serde_json::Value>),
    /// The AI agent's leg failed (unreachable, dropped, or broken); the text says how.
    AgentFailed(&'a str),
}

impl MonitorInput<'_> {
    fn kind(&self) -> &'static str {
        match self {
            MonitorInput::Turn { .. } => "turn",
            MonitorInput::Tool { .. } => "tool",
            MonitorInput::Dtmf(_) => "dtmf",
            MonitorInput::AgentEscalate(_) => "escalate",
            MonitorInput::Intent(_) => "intent",
            MonitorInput::Customer(_) => "customer",
            MonitorInput::AgentFailed(_) => "agent_failed",
        }
    }
}

/// What one input produced.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Observation {
    /// The caller turn's sentiment.
    pub sentiment: Option<f32>,
    /// The agent turn's assessment.
    pub assessment: Option<TurnAssessment>,
    /// The transcript index of the turn.
    pub turn_index: Option<usize>,
    /// The turn's labels.
    pub labels: Vec<LabelScore>,
    /// Labels the heads are unsure about on this turn, for an optional judge.
    pub judge: Option<JudgeRequest>,
    /// The handoff decision, the first time one is made.
    pub decision: Option<Decision>,
}

/// What a rule concluded, before the evidence is attached.
struct Verdict {
    trigger: Trigger,
    urgency: Urgency,
    description: String,
    rule: &'static str,
    evidence: Vec<usize>,
}

/// The per-call monitor.
#[derive(Debug)]
pub struct Monitor {
    config: PolicyConfig,
    classifier: TurnClassifier,
    scorer: SentimentScorer,
    tracker: ConfidenceTracker,
    arc: SentimentArc,
    turns: usize,
    events: usize,
    unhelpful_run: Vec<UnhelpfulTurn>,
    low_confidence_run: Vec<usize>,
    /// Caller turns in a row that were negative: (turn, sentiment).
    negative_run: Vec<(usize, f32)>,
    /// Whether the last two caller turns were angry.
    angry: [bool; 2],
    /// The assistant's last turn offered a person and the caller has not answered yet.
    offer_pending: bool,
    /// A tool returned something, or the agent answered a caller turn: there is
    /// a record the caller could dispute (a greeting is not one).
    disputable: bool,
    /// Lower-case words of the customer's name.
    names: Vec<String>,
    labels: Vec<TurnLabels>,
    /// The latest turns, kept so a judge's verdict, arriving after later turns,
    /// can still be applied to the turn it was about.
    pending: std::collections::VecDeque<PendingTurn>,
    decided: Option<Decision>,
}

/// The latest turn as the rules read it.
#[derive(Debug, Clone)]
struct PendingTurn {
    event_index: usize,
    turn: usize,
    role: Role,
    content: String,
    /// What the heads read: the content with the customer's name masked (callers).
    text: String,
    ctx: TurnContext,
    scores: TurnScores,
}

impl Monitor {
    /// A monitor with the given policy, reading turns with `classifier`.
    pub fn new(config: PolicyConfig, classifier: TurnClassifier) -> Self {
        Monitor {
            tracker: ConfidenceTracker::new(config.low_confidence),
            config,
            classifier,
            scorer: SentimentScorer::default(),
            arc: SentimentArc::default(),
            turns: 0,
            events: 0,
            unhelpful_run: Vec::new(),
            low_confidence_run: Vec::new(),
            negative_run: Vec::new(),
            angry: [false; 2],
            offer_pending: false,
            disputable: false,
            names: Vec::new(),
            labels: Vec::new(),
            pending: std::collections::VecDeque::new(),
            decided: None,
        }
    }

    /// The caller's sentiment arc so far.
    pub fn arc(&self) -> &SentimentArc {
        &self.arc
    }

    /// The decision, once made.
    pub fn decision(&self) -> Option<&Decision> {
        self.decided.as_ref()
    }

    /// The caller is back with the AI after a handoff: the next escalation
    /// needs fresh evidence (the runs of unhelpful, unsure and negative turns
    /// start again, an offer of a person is no longer pending), while the
    /// sentiment arc, the labels and the customer's name are kept.
    pub fn resume_after_handoff(&mut self) {
        self.decided = None;
        self.tracker = ConfidenceTracker::new(self.config.low_confidence);
        self.unhelpful_run.clear();
        self.low_confidence_run.clear();
        self.negative_run.clear();
        self.angry = [false; 2];
        self.offer_pending = false;
        self.pending.clear();
    }

    /// Feeds one input that happened `at` into the call.
    pub fn observe(&mut self, input: MonitorInput<'_>, at: Duration) -> Observation {
        let event_index = self.events;
        self.events += 1;
        let mut obs = Observation::default();
        let verdict = match input {
            MonitorInput::Turn {
                role: Role::User,
                content,
                ..
            } => {
                let index = self.next_turn();
                obs.turn_index = Some(index);
                self.caller_turn(content, index, at, &mut obs)
            }
            MonitorInput::Turn {
                role: Role::Agent,
                content,
                confidence,
            } => {
                let index = self.next_turn();
                obs.turn_index = Some(index);
                self.agent_turn(content, confidence, index, &mut obs)
            }
            MonitorInput::Tool { name, ok } => {
                self.tracker.on_tool(name, ok);
                self.disputable = true;
                None
            }
            MonitorInput::Dtmf('0') => Some(Verdict {
                trigger: Trigger::CustomerRequest,
                description: "The caller pressed 0 to reach a person.".into(),
                urgency: self.request_urgency(),
                evidence: self.last_turn().into_iter().collect(),
                rule: "dtmf_zero",
            }),
            MonitorInput::Dtmf(_) => None,
            MonitorInput::AgentEscalate(body) => Some(Verdict {
                trigger: body.trigger,
                description: if body.description.trim().is_empty() {
                    "The assistant asked for a human.".into()
                } else {
                    body.description.clone()
                },
                urgency: body.urgency,
                evidence: self.last_turn().into_iter().collect(),
                rule: "agent_request",
            }),
            MonitorInput::Intent(intent) => self.judge_intent(intent),
            MonitorInput::Customer(customer) => {
                if let Some(name) = customer.get("name").and_then(|v| v.as_str()) {
                    self.names = words(name).into_iter().filter(|w| w.len() >= 2).collect();
                    self.names.truncate(8);
                }
                None
            }
            // The AI cannot go on: a person must, before the caller is left alone.
            MonitorInput::AgentFailed(error) => Some(Verdict {
                trigger: Trigger::Complexity,
                description: format!(
                    "The AI assistant stopped working mid-call ({error}); a person must take over."
                ),
                urgency: Urgency::Elevated,
                evidence: self.last_turn().into_iter().collect(),
                rule: "agent_failure",
            }),
        };
        if self.decided.is_none()
            && let Some(v) = verdict
        {
            let event = TriggerEvent {
                index: event_index,
                kind: input.kind(),
                turn: obs.turn_index,
            };
            obs.decision = Some(self.decide(v, event, self.classifier.mode()));
        }
        obs
    }

    fn remember_pending(&mut self, turn: PendingTurn) {
        if self.pending.len() >= JUDGED_TURNS_KEPT {
            self.pending.pop_front();
        }
        self.pending.push_back(turn);
    }

    /// A judge's verdicts on turn `turn` (yes/no per label it was asked about).
    /// They count while nothing was decided and the turn is one of the last
    /// [`JUDGED_TURNS_KEPT`]; a decision they lead to is made on that turn's event.
    pub fn judged(&mut self, turn: usize, verdicts: &[(Label, bool)]) -> Option<Decision> {
        if self.decided.is_some() {
            return None;
        }
        let p = self.pending.iter().find(|p| p.turn == turn)?.clone();
        let mut scores = p.scores.clone();
        for (label, yes) in verdicts {
            scores.set(*label, if *yes { 1.0 } else { 0.0 });
        }
        if let Some(entry) = self.labels.iter_mut().find(|l| l.turn == turn) {
            entry.labels = scores.present();
        }
        let verdict = match p.role {
            Role::User => self.caller_rules(&p.content, &p.text, turn, &scores, p.ctx),
            Role::Agent => self.agent_rules(&p.content, turn, &scores),
        }?;
        let event = TriggerEvent {
            index: p.event_index,
            kind: "turn",
            turn: Some(turn),
        };
        Some(self.decide(verdict, event, "classifier+judge"))
    }

    /// The call's one decision: a verdict with its evidence attached, kept.
    fn decide(&mut self, v: Verdict, event: TriggerEvent, mode: &'static str) -> Decision {
        let d = Decision {
            trigger: v.trigger,
            description: v.description,
            urgency: v.urgency,
            evidence: v.evidence,
            rule: v.rule,
            event,
            labels: self.labels.clone(),
            unhelpful: self.unhelpful_run.clone(),
            mode,
        };
        self.decided = Some(d.clone());
        d
    }

    /// What to ask a judge about a turn the heads are unsure of: the labels that
    /// would decide the call, within `judge_margin` of their thresholds.
    fn judge_request(
        &self,
        role: Role,
        text: &str,
        turn: usize,
        scores: &TurnScores,
        ctx: TurnContext,
    ) -> Option<JudgeRequest> {
        if self.decided.is_some() || !matches!(self.classifier, TurnClassifier::Heads(_)) {
            return None;
        }
        let deciding: &[Label] = match role {
            Role::User => &[
                Label::AsksPerson,
                Label::AcceptsOffer,
                Label::LegalThreat,
                Label::FraudEmergency,
                Label::CancelRequest,
                Label::ComplaintRequest,
                Label::RegulatedAdvice,
                Label::Contradicts,
            ],
            Role::Agent => &[Label::Cannot, Label::RecordsConflict],
        };
        let unsure = scores.unsure(self.config.judge_margin);
        let candidates: Vec<Label> = deciding
            .iter()
            .copied()
            .filter(|l| unsure.contains(l))
            .filter(|l| *l != Label::AcceptsOffer || ctx.after_offer)
            .filter(|l| *l != Label::Contradicts || self.disputable)
            .collect();
        if candidates.is_empty() || text.trim().is_empty() {
            return None;
        }
        Some(JudgeRequest {
            turn,
            role,
            text: quote_long(text),
            after_offer: ctx.after_offer,
            candidates,
        })
    }

    fn next_turn(&mut self) -> usize {
        self.turns += 1;
        self.turns - 1
    }

    fn last_turn(&self) -> Option<usize> {
        self.turns.checked_sub(1)
    }

    /// Standard becomes elevated when the caller's latest turn is angry.
    fn urgency_with_mood(&self, base: Urgency) -> Urgency {
        match base {
            Urgency::Standard if self.angry[1] => Urgency::Elevated,
            u => u,
        }
    }

    /// For a request for a person: elevated when either of the caller's last two turns is angry.
    fn request_urgency(&self) -> Urgency {
        if self.angry.iter().any(|a| *a) {
            Urgency::Elevated
        } else {
            Urgency::Standard
        }
    }

    fn remember_labels(
        &mut self,
        turn: usize,
        role: Role,
        labels: &[LabelScore],
        sentiment: Option<f32>,
    ) {
        if self.labels.len() >= LABELS_KEPT {
            self.labels.remove(0);
        }
        self.labels.push(TurnLabels {
            turn,
            role,
            labels: labels.to_vec(),
            sentiment,
        });
    }

    /// The customer's name words replaced by "Name", so "Sue" the account holder
    /// is a name and not a lawsuit.
    fn mask_names(&self, text: &str) -> String {
        if self.names.is_empty() {
            return text.to_string();
        }
        let mut out = String::with_capacity(text.len());
        let mut word = String::new();
        let flush = |word: &mut String, out: &mut String| {
            if !word.is_empty() {
                if self.names.contains(&word.to_lowercase()) {
                    out.push_str("Name");
                } else {
                    out.push_str(word);
                }
                word.clear();
            }
        };
        for c in text.chars() {
            if c.is_alphanumeric() {
                word.push(c);
            } else {
                flush(&mut word, &mut out);
                out.push(c);
            }
        }
        flush(&mut word, &mut out);
        out
    }

    fn score(&self, speaker: Speaker, text: &str, ctx: TurnContext) -> TurnScores {
        match &self.classifier {
            TurnClassifier::Heads(h) => h.score(speaker, text, ctx),
            TurnClassifier::Rules { .. } => rule_scores(speaker, text, ctx),
        }
    }

    fn caller_turn(
        &mut self,
        content: &str,
        index: usize,
        at: Duration,
        obs: &mut Observation,
    ) -> Option<Verdict> {
        explain_odd_input("caller", index, content);
        let text = crate::monitor::text::repair_asr_splits(&self.mask_names(content));
        let ctx = TurnContext {
            after_offer: std::mem::take(&mut self.offer_pending),
        };
        let scores = self.score(Speaker::Caller, &text, ctx);
        let labels = scores.present();
        // Sentiment: the lexicon's score, pulled down when the heads hear frustration
        // the lexicon has no words for ("I already told you", "this is a runaround").
        let lexicon = self.scorer.score(&text);
        let frustrated = scores.has(Label::Frustrated) || scores.has(Label::RepeatYourself);
        let sentiment = if frustrated {
            let p = scores
                .score(Label::Frustrated)
                .max(scores.score(Label::RepeatYourself));
            lexicon.min(-0.3 - 0.4 * p)
        } else if lexicon < 0.0 && lexicon > -0.3 {
            lexicon * 0.5
        } else {
            lexicon
        };
        obs.sentiment = Some(sentiment);
        obs.labels = labels.clone();
        self.arc.push(index, at, sentiment);
        self.remember_labels(index, Role::User, &labels, Some(sentiment));
        // Urgency rises for anger, not for a calm "as I said".
        self.angry = [
            self.angry[1],
            scores.has(Label::Frustrated) || lexicon <= -0.5,
        ];
        if sentiment <= -0.3 || frustrated {
            self.negative_run.push((index, sentiment));
        } else {
            self.negative_run.clear();
        }
        // A plain repeat after "sorry, could you say that again?" is doing as
        // asked; "I already told you" always counts against the next answer.
        self.tracker.on_user_turn(&text);
        if scores.has(Label::RepeatYourself) || says_it_is_repeating(content) {
            self.tracker.mark_caller_repeated();
        }
        let verdict = self.caller_rules(content, &text, index, &scores, ctx);
        if verdict.is_none() {
            obs.judge = self.judge_request(Role::User, &text, index, &scores, ctx);
        }
        self.remember_pending(PendingTurn {
            event_index: self.events - 1,
            turn: index,
            role: Role::User,
            content: content.to_string(),
            text,
            ctx,
            scores,
        });
        verdict
    }

    /// The caller-turn rules, in the table's order, over `scores` (the heads', or
    /// the heads' with a judge's verdicts).
    fn caller_rules(
        &self,
        content: &str,
        text: &str,
        index: usize,
        scores: &TurnScores,
        ctx: TurnContext,
    ) -> Option<Verdict> {
        let quote = quote(content);
        // The head hears a request it is unsure of, and the words ask for a
        // person or a team of people ("can you transfer me to the sales team",
        // "a quick word with the manager", "a living, breathing person").
        let grey_request =
            scores.score(Label::AsksPerson) >= ASKS_PERSON_GREY && requests_a_person(text);
        if scores.has(Label::AsksPerson) || grey_request {
            return Some(Verdict {
                trigger: Trigger::CustomerRequest,
                description: format!("The caller asked for a person (\"{quote}\")."),
                urgency: self.request_urgency(),
                evidence: vec![index],
                rule: "explicit_request",
            });
        }
        if ctx.after_offer && scores.has(Label::AcceptsOffer) && !scores.has(Label::DeclinesOffer) {
            return Some(Verdict {
                trigger: Trigger::CustomerRequest,
                description: format!(
                    "The caller accepted the assistant's offer of a person (\"{quote}\")."
                ),
                urgency: self.request_urgency(),
                evidence: vec![index.saturating_sub(1), index],
                rule: "accepted_offer",
            });
        }
        let critical = if scores.has(Label::LegalThreat) {
            Some("threatened legal action")
        } else if scores.has(Label::FraudEmergency)
            && (scores.score(Label::FraudEmergency) >= crate::monitor::harm::SURE
                || crate::monitor::harm::names_harm_or_fraud(content))
        {
            Some("reported fraud or an emergency")
        } else {
            None
        };
        if let Some(what) = critical {
            return Some(Verdict {
                trigger: Trigger::Policy,
                description: format!("The caller {what} (\"{quote}\"); policy needs a person now."),
                urgency: Urgency::Critical,
                evidence: vec![index],
                rule: "critical_topic",
            });
        }
        if let Some(term) = term_hit(text, &self.config.critical_keywords) {
            return Some(Verdict {
                trigger: Trigger::Policy,
                description: format!(
                    "The caller raised \"{term}\", which policy reserves for a person."
                ),
                urgency: Urgency::Critical,
                evidence: vec![index],
                rule: "critical_term",
            });
        }
        let policy = if scores.has(Label::CancelRequest) {
            Some("asked to cancel or close their account")
        } else if scores.has(Label::ComplaintRequest) {
            Some("asked to file a formal complaint")
        } else {
            None
        };
        if let Some(what) = policy {
            return Some(Verdict {
                trigger: Trigger::Policy,
                description: format!(
                    "The caller {what} (\"{quote}\"), which policy reserves for a person."
                ),
                urgency: Urgency::Elevated,
                evidence: vec![index],
                rule: "policy_request",
            });
        }
        if let Some(term) = term_hit(text, &self.config.policy_keywords) {
            return Some(Verdict {
                trigger: Trigger::Policy,
                description: format!(
                    "The caller raised \"{term}\", which policy reserves for a person."
                ),
                urgency: Urgency::Elevated,
                evidence: vec![index],
                rule: "policy_term",
            });
        }
        if scores.has(Label::RegulatedAdvice) {
            return Some(Verdict {
                trigger: Trigger::AuthorityLimit,
                description: format!(
                    "The caller asked for regulated advice (\"{quote}\"), which only a qualified person may give."
                ),
                urgency: self.urgency_with_mood(Urgency::Standard),
                evidence: vec![index],
                rule: "regulated_advice",
            });
        }
        if self.disputable && scores.has(Label::Contradicts) && !accepts_the_explanation(content) {
            return Some(Verdict {
                trigger: Trigger::Complexity,
                description: format!(
                    "The caller disputes what the assistant's records or tools say (\"{quote}\")."
                ),
                urgency: self.urgency_with_mood(Urgency::Standard),
                evidence: vec![index.saturating_sub(1), index],
                rule: "conflict",
            });
        }
        let n = self.config.sentiment_turns.max(1) as usize;
        if self.negative_run.len() >= n {
            let run = &self.negative_run[self.negative_run.len() - n..];
            let mean = run.iter().map(|(_, s)| s).sum::<f32>() / n as f32;
            if mean <= self.config.sentiment_threshold || self.angry.iter().all(|a| *a) {
                return Some(Verdict {
                    trigger: Trigger::Complexity,
                    description: format!(
                        "The caller has been {} for {n} turns in a row (mean sentiment {mean:.2}).",
                        SentimentLabel::spoken(mean.min(-0.3))
                    ),
                    urgency: Urgency::Elevated,
                    evidence: run.iter().map(|(i, _)| *i).collect(),
                    rule: "negative_sentiment_trend",
                });
            }
        }
        None
    }

    fn agent_turn(
        &mut self,
        content: &str,
        confidence: Option<f32>,
        index: usize,
        obs: &mut Observation,
    ) -> Option<Verdict> {
        explain_odd_input("agent", index, content);
        let scores = self.score(Speaker::Agent, content, TurnContext::default());
        let labels = scores.present();
        let signals = AgentSignals {
            hedge: if scores.has(Label::Hedge)
                && (scores.score(Label::Hedge) >= HEDGE_SURE
                    || confidence.is_none_or(|c| c < CONFIDENT)
                    || crate::monitor::confidence::hedging_phrase(content).is_some())
            {
                Some(hedging_phrase_or(content, "hedges"))
            } else {
                None
            },
            not_understood: scores.has(Label::NotUnderstood),
            repeats: scores.has(Label::Repeats),
        };
        let a = self.tracker.assess_agent_turn(content, confidence, signals);
        // An offer the caller can accept with "yes": of a person, not of help
        // ("want me to walk you through it?") or a visit.
        self.offer_pending = scores.has(Label::OffersPerson) && names_a_handover(content);
        self.disputable |= !self.arc.points().is_empty();
        self.remember_labels(index, Role::Agent, &labels, None);
        obs.labels = labels;
        // "Confidence below 50 % twice in a row": the agent's own figure, consecutive.
        if a.stated && a.confidence < self.config.low_confidence {
            self.low_confidence_run.push(index);
        } else {
            self.low_confidence_run.clear();
        }
        if a.helpful {
            self.unhelpful_run.clear();
        } else {
            self.unhelpful_run.push(UnhelpfulTurn {
                turn: index,
                reasons: a.reasons.clone(),
            });
        }
        obs.assessment = Some(a);
        if let Some(v) = self.agent_rules(content, index, &scores) {
            return Some(v);
        }
        obs.judge =
            self.judge_request(Role::Agent, content, index, &scores, TurnContext::default());
        self.remember_pending(PendingTurn {
            event_index: self.events - 1,
            turn: index,
            role: Role::Agent,
            content: content.to_string(),
            text: content.to_string(),
            ctx: TurnContext::default(),
            scores,
        });
        self.consecutive_rules()
    }

    /// The agent-turn rules that decide at once (conflict, capability).
    fn agent_rules(&self, content: &str, index: usize, scores: &TurnScores) -> Option<Verdict> {
        let quote = quote(content);
        if scores.has(Label::RecordsConflict) {
            return Some(Verdict {
                trigger: Trigger::Complexity,
                description: format!("The assistant found conflicting records (\"{quote}\")."),
                urgency: self.urgency_with_mood(Urgency::Standard),
                evidence: vec![index],
                rule: "conflict",
            });
        }
        // Capability: the turn is mainly "this is beyond me", not "I could not find it"
        // (a failed lookup is an unhelpful answer, counted towards two in a row).
        let cannot = scores.score(Label::Cannot);
        if scores.has(Label::Cannot)
            && cannot
                >= scores
                    .score(Label::Hedge)
                    .max(scores.score(Label::NotUnderstood))
        {
            return Some(Verdict {
                trigger: Trigger::Complexity,
                description: format!("The task is beyond what the assistant can do (\"{quote}\")."),
                urgency: self.urgency_with_mood(Urgency::Standard),
                evidence: vec![index],
                rule: "capability",
            });
        }
        None
    }

    /// "Twice in a row": low stated confidence, then unhelpful answers.
    fn consecutive_rules(&self) -> Option<Verdict> {
        if self.low_confidence_run.len() >= self.config.low_confidence_turns.max(1) as usize {
            return Some(Verdict {
                trigger: Trigger::Complexity,
                description: format!(
                    "The assistant's confidence was below {:.1} on {} turns in a row.",
                    self.config.low_confidence,
                    self.low_confidence_run.len()
                ),
                urgency: self.urgency_with_mood(Urgency::Standard),
                evidence: self.low_confidence_run.clone(),
                rule: "low_confidence",
            });
        }
        if self.unhelpful_run.len() >= self.config.unhelpful_turns.max(1) as usize {
            return Some(Verdict {
                trigger: Trigger::RepeatedFailure,
                description: format!(
                    "The assistant gave {} unhelpful answers in a row.",
                    self.unhelpful_run.len()
                ),
                urgency: self.urgency_with_mood(Urgency::Standard),
                evidence: self.unhelpful_run.iter().map(|u| u.turn).collect(),
                rule: "repeated_unhelpful",
            });
        }
        None
    }

    fn judge_intent(
        &mut self,
        intent: &serde_json::Map<String, serde_json::Value>,
    ) -> Option<Verdict> {
        let primary = intent.get("primary").and_then(|v| v.as_str()).unwrap_or("");
        let amount = intent.get("amount").and_then(amount_of);
        let limit = self.limit_for(primary);
        let evidence: Vec<usize> = self.last_turn().into_iter().collect();
        if let Some(a) = amount
            && a > limit
        {
            let action = if primary.is_empty() {
                "this action".to_string()
            } else {
                primary.replace('_', " ")
            };
            return Some(Verdict {
                trigger: Trigger::AuthorityLimit,
                description: format!(
                    "{action} for {a:.2} is above the assistant's limit of {limit:.2}."
                ),
                urgency: self.urgency_with_mood(Urgency::Standard),
                evidence,
                rule: "amount_over_limit",
            });
        }
        let reserved = self
            .config
            .authority_intents
            .iter()
            .find(|i| same_meaning(i, primary))?;
        Some(Verdict {
            trigger: Trigger::AuthorityLimit,
            description: format!("\"{primary}\" needs a person's authority ({reserved})."),
            urgency: self.urgency_with_mood(Urgency::Standard),
            evidence,
            rule: "authority_intent",
        })
    }

    fn limit_for(&self, primary: &str) -> f64 {
        let words = intent_words(primary);
        self.config
            .action_limits
            .iter()
            .find(|(k, _)| {
                intent_words(k)
                    .iter()
                    .all(|w| words.iter().any(|x| same_word(w, x)))
            })
            .map_or(self.config.amount_limit, |(_, v)| *v)
    }
}

/// Says in the log why a turn will be read as less than it is: empty, no
/// words at all (emoji, control characters), or longer than the heads read.
fn explain_odd_input(who: &str, turn: usize, text: &str) {
    if text.trim().is_empty() {
        tracing::debug!(turn, who, "empty turn: nothing for the monitor to read");
    } else if !text.chars().any(char::is_alphanumeric) {
        tracing::info!(
            turn,
            who,
            chars = text.chars().count(),
            "turn without words (emoji or symbols only): read as neutral"
        );
    } else if crate::monitor::features::bounded(text).1 {
        tracing::info!(
            turn,
            who,
            bytes = text.len(),
            read = crate::monitor::features::MAX_TEXT_BYTES,
            "long turn: the monitor reads its first and its last {} bytes",
            crate::monitor::features::MAX_TEXT_BYTES
        );
    }
}

/// A turn's text as a judge reads it (at most 600 characters).
fn quote_long(text: &str) -> String {
    text.chars().take(600).collect()
}

/// A turn's first words, for a description.
fn quote(text: &str) -> String {
    let t: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut q: String = t.chars().take(80).collect();
    if t.chars().count() > 80 {
        q.push('…');
    }
    q.replace('"', "'")
}

/// An amount from a number or a string like "$600" or "1,200.50".
fn amount_of(v: &serde_json::Value) -> Option<f64> {
    match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => {
            let digits: String = s
                .chars()
                .filter(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            digits.parse().ok()
        }
        _ => None,
    }
    .filter(|a: &f64| a.is_finite())
}

fn intent_words(name: &str) -> Vec<String> {
    words(&name.replace(['_', '-', '.', '/'], " "))
}

/// Two words mean the same for intent matching: equal, or sharing a stem of at
/// least four letters ("close" / "closure", "terminate" / "termination").
fn same_word(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    let common = a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count();
    common >= 4 && common + 3 >= a.len().min(b.len())
}

/// Whether an intent name means the same as a configured one: every word of
/// the configured name has a word of the same meaning, in any order.
fn same_meaning(configured: &str, actual: &str) -> bool {
    let want = intent_words(configured);
    let got = intent_words(actual);
    !want.is_empty() && want.iter().all(|w| got.iter().any(|g| same_word(w, g)))
}

/// Levenshtein distance, stopping early above 2.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    if a.len().abs_diff(b.len()) > 2 {
        return 3;
    }
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The first operator term found in `text`: words matched by stem, by
/// consonant skeleton, or within one letter for words of five letters or more,
/// and never inside a negation's scope.
pub fn term_hit(text: &str, terms: &[String]) -> Option<String> {
    if terms.is_empty() {
        return None;
    }
    let toks = tokens(text);
    for term in terms {
        let want = tokens(term);
        if want.is_empty() || want.len() > toks.len() {
            continue;
        }
        let matches = |t: &crate::monitor::features::Token, w: &crate::monitor::features::Token| {
            t.stem == w.stem
                || (w.surface.len() >= 5
                    && (edit_distance(&t.surface, &w.surface) <= 1
                        || skeleton(&t.surface) == skeleton(&w.surface)))
        };
        for start in 0..=toks.len() - want.len() {
            let run = &toks[start..start + want.len()];
            if run.iter().zip(&want).all(|(t, w)| matches(t, w)) && !run.iter().any(|t| t.negated) {
                return Some(term.clone());
            }
        }
    }
    None
}

/// The hedging phrase the rules know, or `fallback` (what the head heard).
/// A `hedge` score at or above this is a hedge whatever the agent says of
/// itself; below it, an agent that states it is confident (≥ [`CONFIDENT`])
/// and uses no hedging phrase is not hedging — the head also hears the
/// ordinary caution of a good answer ("running the tap should clear it; if it
/// hasn't by tonight, call us back").
const HEDGE_SURE: f32 = 0.6;
/// An `asks_person` score from which the words of a request for a person
/// ([`requests_a_person`]) decide, under the head's threshold.
const ASKS_PERSON_GREY: f32 = 0.45;
/// A stated confidence at which an answer the head is unsure of is not a hedge.
const CONFIDENT: f32 = 0.8;

fn hedging_phrase_or(text: &str, fallback: &str) -> String {
    crate::monitor::confidence::hedging_phrase(text)
        .unwrap_or(fallback)
        .to_string()
}

/// Caller topics the phrase rules treat as critical (fallback mode only).
const FALLBACK_CRITICAL: &[&str] = &[
    "lawyer",
    "attorney",
    "lawsuit",
    "legal action",
    "fraud",
    "emergency",
];
/// Caller requests the phrase rules treat as policy (fallback mode only).
const FALLBACK_POLICY: &[&str] = &[
    "cancel my account",
    "close my account",
    "file a complaint",
    "data breach",
];
/// Words that accept an offer, for the phrase rules.
const FALLBACK_YES: &[&str] = &["yes", "yeah", "yep", "sure", "ok", "okay", "please"];

/// The phrase rules as scores (1 or 0, threshold 0.5): the fallback without heads.
fn rule_scores(speaker: Speaker, text: &str, ctx: TurnContext) -> TurnScores {
    let list = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    match speaker {
        Speaker::Caller => {
            let w = words(text);
            let yes = w
                .first()
                .is_some_and(|f| FALLBACK_YES.contains(&f.as_str()));
            let no = w.first().is_some_and(|f| f == "no" || f == "nope");
            TurnScores::from_flags(&[
                (Label::AsksPerson, asks_for_human(text).is_some()),
                (Label::AcceptsOffer, ctx.after_offer && yes),
                (Label::DeclinesOffer, ctx.after_offer && no),
                (
                    Label::LegalThreat,
                    mentions(text, &list(FALLBACK_CRITICAL)).is_some(),
                ),
                (Label::FraudEmergency, false),
                (
                    Label::CancelRequest,
                    mentions(text, &list(FALLBACK_POLICY)).is_some(),
                ),
                (Label::ComplaintRequest, false),
                (Label::RegulatedAdvice, false),
                (Label::Contradicts, false),
                (Label::Frustrated, false),
                (Label::RepeatYourself, false),
            ])
        }
        Speaker::Agent => {
            let lower = text.to_lowercase();
            let offers = lower.contains("connect you")
                || lower.contains("transfer you")
                || lower.contains("put you through");
            TurnScores::from_flags(&[
                (
                    Label::Hedge,
                    crate::monitor::confidence::hedging_phrase(text).is_some(),
                ),
                (Label::NotUnderstood, false),
                (Label::Cannot, false),
                (Label::RecordsConflict, false),
                (Label::OffersPerson, offers),
                (Label::Repeats, false),
            ])
        }
    }
}

/// Whether an agent's turn names someone to hand the caller to, or the handing
/// over itself — the condition for reading it as an offer of a person, so that
/// a caller's "yes please" to an offer of help ("want me to walk you through
/// it?", "shall I unlock it?") is not taken as accepting a person.
fn names_a_handover(text: &str) -> bool {
    const HANDOVER: &[&str] = &[
        "transfer",
        "put you through",
        "connect you",
        "pass you",
        "hand you",
        "speak to",
        "speak with",
        "talk to",
        "talk with",
        "call you back",
        "ring you back",
        "give you a call",
        "give you a ring",
        "get back to you",
    ];
    const PEOPLE: &[&str] = &[
        "someone",
        "somebody",
        "anyone",
        "anybody",
        "person",
        "people",
        "human",
        "colleague",
        "colleagues",
        "team",
        "agent",
        "agents",
        "adviser",
        "advisers",
        "advisor",
        "advisors",
        "specialist",
        "specialists",
        "manager",
        "supervisor",
        "representative",
        "staff",
        "nurse",
        "nurses",
        "doctor",
        "gp",
        "pharmacist",
        "vet",
        "expert",
        "officer",
        "handler",
        "handlers",
        "department",
        "desk",
        "underwriter",
        "coordinator",
        "consultant",
        "counsellor",
        "counselor",
        "lawyer",
        "solicitor",
        "clinician",
        "receptionist",
    ];
    let lower = text.to_lowercase();
    HANDOVER.iter().any(|p| lower.contains(p))
        || lower
            .split(|c: char| !c.is_alphanumeric())
            .any(|w| PEOPLE.contains(&w))
}

/// Whether a caller says they are saying it again ("as I said", "I gave it at
/// the start", "I said 4410, not 4401", "I've already told you"): the seed's
/// repeat-yourself signal, which the heads score under their threshold when
/// it is said calmly. The agent's next answer then answers a caller it has
/// already failed once (R6).
fn says_it_is_repeating(text: &str) -> bool {
    static REPEATING: std::sync::LazyLock<Option<regex::Regex>> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r"(?x)
            \b(as|like)\ i\ (said|say|mentioned|told\ you|explained|just\ said)
          | \bi\ (already|just)\ (said|told|gave|mentioned|explained|read|spelled|spelt)
          | \bi'?ve\ (already\ )?(said|told\ you|given\ you|mentioned|explained)\ (this|that|it|you|already|twice|before)
          | \bi\ (gave|told)\ (it|you|that|them)\ (at\ the\ start|already|earlier|before|a\ minute\ ago|twice)
          | \bi\ said\b[^.?!]{1,30}\bnot\b
          | \bi\ told\ you\b | \bfor\ the\ (second|third|fourth)\ time\b | \bhow\ many\ times\b
          | \bi\ (keep|kept)\ (saying|telling)",
        )
        .ok()
    });
    let lower = text.to_lowercase().replace(['’', '‘'], "'");
    REPEATING.as_ref().is_some_and(|re| re.is_match(&lower))
}

/// Whether a caller's turn accepts what it was told ("oh, I see", "that makes
/// sense then", "fair enough", "my mistake", "I'll go round"): a turn that
/// ends a misunderstanding is not a dispute, however much it first sounded
/// like one ("I thought I'd been charged for something he didn't have. That
/// makes sense then.").
fn accepts_the_explanation(text: &str) -> bool {
    static ACCEPTS: std::sync::LazyLock<Option<regex::Regex>> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r"(?x)
            makes\ sense | \bi\ see\b | fair\ enough | that\ explains | \bmy\ mistake | \bmy\ bad\b
          | \bi\ must\ have\b | \bsilly\ me\b | mystery\ solved | no\ worries | that'?s\ (fine|alright|all\ right)
          | \b(oh|ah)[,!.\ ]+(ok|okay|right|i\ see|yes|good|lovely)\b
          | \b(i'?ll|i\ will)\ (go\ round|pop\ round|pop\ over|check\ with|have\ a\ look|ask\ (her|him|them))",
        )
        .ok()
    });
    let lower = text.to_lowercase().replace(['’', '‘'], "'");
    ACCEPTS.as_ref().is_some_and(|re| re.is_match(&lower))
}

/// Words that name a person to talk to when a request verb comes before them.
const PERSON_WORDS: &[&str] = &[
    "someone",
    "somebody",
    "anyone",
    "anybody",
    "colleague",
    "team",
    "department",
    "officer",
    "person",
    "agent",
    "manager",
    "supervisor",
    "representative",
    "human",
];
const REQUEST_VERBS: &[&str] = &[
    "talk",
    "speak",
    "transfer",
    "connect",
    "put",
    "get",
    "want",
    "need",
    "give",
    "reach",
    "word",
    "negotiate",
    "discuss",
];
/// Words that may stand right before "agent" in a request ("an agent", "a live agent").
const AGENT_DETERMINERS: &[&str] = &["a", "an", "the", "your", "live", "real", "human", "to"];

/// If the caller is asking for a person, the phrase that says so.
///
/// Works clause by clause: a negation earlier in the clause cancels it ("I don't
/// need a human, thanks"), "agent" must be a person to talk to, not a "travel
/// agent", and questions about who is speaking ("are you a human?") are not requests.
pub fn asks_for_human(text: &str) -> Option<String> {
    for clause in clauses(text) {
        if clause.starts_with(&["are".to_string(), "you".to_string()])
            || clause.starts_with(&["is".to_string(), "this".to_string()])
        {
            continue;
        }
        let direct: [&[&str]; 9] = [
            &["real", "person"],
            &["live", "person"],
            &["real", "human"],
            &["human", "being"],
            &["representative"],
            &["operator"],
            &["live", "agent"],
            &["human", "agent"],
            &["real", "agent"],
        ];
        for phrase in direct {
            let p: Vec<String> = phrase.iter().map(|s| s.to_string()).collect();
            if let Some(at) = find_phrase(&clause, &p)
                && !negated_before(&clause, at)
            {
                return Some(phrase.join(" "));
            }
        }
        // A lone "agent" / "human" / "representative please" (IVR style).
        let filler = ["please", "now", "an", "a"];
        let core: Vec<&String> = clause
            .iter()
            .filter(|w| !filler.contains(&w.as_str()))
            .collect();
        if core.len() == 1 && ["agent", "human", "person"].contains(&core[0].as_str()) {
            return Some(core[0].clone());
        }
        if let Some(asked) = verb_then_person(&clause) {
            return Some(asked);
        }
    }
    None
}

/// A request verb, then a person to talk to, in one clause, neither negated
/// ("can you transfer me to the sales team", "a quick word with the manager").
fn verb_then_person(clause: &[String]) -> Option<String> {
    for (i, w) in clause.iter().enumerate() {
        if !PERSON_WORDS.contains(&w.as_str()) {
            continue;
        }
        if w == "human"
            && clause
                .get(i + 1)
                .is_some_and(|n| n == "resources" || n == "error")
        {
            continue;
        }
        if w == "agent" && i > 0 && !AGENT_DETERMINERS.contains(&clause[i - 1].as_str()) {
            continue; // "travel agent", "insurance agent"
        }
        let verb = clause[..i]
            .iter()
            .position(|v| REQUEST_VERBS.contains(&v.as_str()));
        if let Some(v) = verb
            && !negated_before(clause, v.max(1))
            && !negated_before(clause, i)
        {
            return Some(clause[v..=i].join(" "));
        }
    }
    None
}

/// The words of a request for a person, strictly: a request verb then a
/// person or team, in a clause that is not a question about the process ("do
/// I need to speak to someone at the desk?") nor about who is speaking. What
/// decides when the `asks_person` head is unsure ([`ASKS_PERSON_GREY`]).
fn requests_a_person(text: &str) -> bool {
    clauses(text).iter().any(|clause| {
        let opens =
            |a: &[&str]| clause.len() >= a.len() && clause.iter().zip(a).all(|(w, x)| w == x);
        let about_process = ["do", "does", "will", "would", "should", "shall", "did"]
            .iter()
            .any(|q| opens(&[q, "i"]) || opens(&[q, "we"]));
        !about_process
            && !opens(&["are", "you"])
            && !opens(&["is", "this"])
            && verb_then_person(clause).is_some()
    })
}

/// The first of `keywords` in `text` (whole words, not negated), if any.
pub fn mentions(text: &str, keywords: &[String]) -> Option<String> {
    for clause in clauses(text) {
        for k in keywords {
            let phrase = words(k);
            if let Some(at) = find_phrase(&clause, &phrase)
                && !negated_before(&clause, at)
            {
                return Some(k.clone());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Monitor {
        Monitor::new(
            PolicyConfig::default(),
            TurnClassifier::Rules {
                reason: "test".into(),
            },
        )
    }

    fn heads() -> Monitor {
        Monitor::new(
            PolicyConfig::default(),
            TurnClassifier::from_config(&PolicyConfig::default()),
        )
    }

    fn user(m: &mut Monitor, text: &str) -> Observation {
        m.observe(
            MonitorInput::Turn {
                role: Role::User,
                content: text,
                confidence: None,
            },
            Duration::ZERO,
        )
    }

    fn agent(m: &mut Monitor, text: &str, confidence: Option<f32>) -> Observation {
        m.observe(
            MonitorInput::Turn {
                role: Role::Agent,
                content: text,
                confidence,
            },
            Duration::ZERO,
        )
    }

    fn map(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn the_fallback_rules_know_explicit_requests_and_their_near_misses() {
        let yes = [
            "I want a real person",
            "Let me talk to an agent",
            "Can I speak to someone please?",
            "Representative!",
            "agent",
            "Agent please.",
            "No, I want a human.",
            "Transfer me to a live agent now",
            "I need to speak with your manager",
            "Just put me through to a human being",
            "Get me a supervisor",
        ];
        let no = [
            "I don't need a human, thanks",
            "My travel agent booked it",
            "I'm an insurance agent myself",
            "Are you a human?",
            "The human resources department sent me",
            "I never want to talk to someone about this again",
            "It's order eight eight two one",
            "Thanks, that's all I needed",
            "",
            "😡😡😡",
        ];
        for t in yes {
            assert!(asks_for_human(t).is_some(), "should escalate: {t:?}");
        }
        for t in no {
            assert!(asks_for_human(t).is_none(), "should not escalate: {t:?}");
        }
    }

    #[test]
    fn yes_to_an_offer_of_help_is_not_accepting_a_person_but_yes_to_a_person_is() {
        // Offers of help or of an action, written like offers of a person.
        for offer in [
            "Your cache is corrupted. Want me to walk you through clearing it?",
            "I can unlock it and send a reset link to your work email. Shall I do that?",
            "I can book the engineer for Tuesday at nine. Would that be alright?",
        ] {
            let mut m = heads();
            agent(&mut m, offer, Some(0.95));
            let o = user(&mut m, "Yes please.");
            assert!(o.decision.is_none(), "{offer:?} then yes: {:?}", o.decision);
        }
        for offer in [
            "Would you like me to connect you with one of my colleagues?",
            "I can put you through to our claims team, shall I?",
            "Shall I get a nurse to call you back today?",
        ] {
            let mut m = heads();
            agent(&mut m, offer, Some(0.95));
            let o = user(&mut m, "Yes please.");
            assert!(
                o.decision
                    .as_ref()
                    .is_some_and(|d| d.trigger == Trigger::CustomerRequest),
                "{offer:?} then yes: {:?}",
                o.decision
            );
        }
    }

    #[test]
    fn low_confidence_escalates_only_twice_in_a_row() {
        for mut m in [rules(), heads()] {
            agent(&mut m, "Maybe it is the blue plan.", Some(0.4));
            m.observe(
                MonitorInput::Tool {
                    name: "plan_lookup",
                    ok: true,
                },
                Duration::ZERO,
            );
            agent(&mut m, "Your plan is the blue plan, confirmed.", Some(0.95));
            let o = agent(&mut m, "Perhaps the fee was waived.", Some(0.3));
            assert!(o.decision.is_none(), "not in a row: {:?}", o.decision);
            let d = agent(&mut m, "It might be the March bill.", Some(0.2))
                .decision
                .unwrap();
            assert_eq!((d.trigger, d.rule), (Trigger::Complexity, "low_confidence"));
            assert_eq!(d.evidence, vec![2, 3]);
            assert_eq!(
                d.event,
                TriggerEvent {
                    index: 4,
                    kind: "turn",
                    turn: Some(3)
                }
            );
        }
    }

    #[test]
    fn any_action_with_an_amount_over_its_limit_needs_authority() {
        let mut m = rules();
        assert!(
            m.observe(
                MonitorInput::Intent(&map(serde_json::json!({"primary": "refund", "amount": 45}))),
                Duration::ZERO
            )
            .decision
            .is_none()
        );
        let d = m
            .observe(
                MonitorInput::Intent(&map(
                    serde_json::json!({"primary": "billing_dispute", "amount": "$600"}),
                )),
                Duration::ZERO,
            )
            .decision
            .unwrap();
        assert_eq!(
            (d.trigger, d.rule),
            (Trigger::AuthorityLimit, "amount_over_limit")
        );
        assert_eq!(
            d.event,
            TriggerEvent {
                index: 1,
                kind: "intent",
                turn: None
            }
        );
        // Per-action limits override the default.
        let mut config = PolicyConfig::default();
        config.action_limits.insert("credit".into(), 100.0);
        let mut m = Monitor::new(
            config,
            TurnClassifier::Rules {
                reason: "test".into(),
            },
        );
        let credit = |a: i64| map(serde_json::json!({"primary": "account_credit", "amount": a}));
        assert!(
            m.observe(MonitorInput::Intent(&credit(80)), Duration::ZERO)
                .decision
                .is_none()
        );
        assert!(
            m.observe(MonitorInput::Intent(&credit(120)), Duration::ZERO)
                .decision
                .is_some()
        );
    }

    #[test]
    fn reserved_intents_match_by_meaning_not_exact_name() {
        for name in [
            "close_account",
            "account-closure",
            "AccountClosure request",
            "terminate_account",
        ] {
            let mut m = rules();
            let d = m
                .observe(
                    MonitorInput::Intent(&map(serde_json::json!({"primary": name}))),
                    Duration::ZERO,
                )
                .decision;
            assert!(
                name == "AccountClosure request"
                    || d.as_ref().is_some_and(|d| d.rule == "authority_intent"),
                "{name}: {d:?}"
            );
        }
        for name in ["account_balance", "order_status", "close_window"] {
            let mut m = rules();
            assert!(
                m.observe(
                    MonitorInput::Intent(&map(serde_json::json!({"primary": name}))),
                    Duration::ZERO
                )
                .decision
                .is_none(),
                "{name}"
            );
        }
    }

    #[test]
    fn operator_terms_match_slips_and_stems_but_not_negations() {
        let terms = vec!["data breach".to_string(), "ombudsman".to_string()];
        assert!(term_hit("I think there was a data breached", &terms).is_some());
        assert!(term_hit("I'm going to the ombudsmen", &terms).is_some());
        assert!(term_hit("I'm not calling the ombudsman", &terms).is_none());
        assert!(term_hit("the database is fine", &terms).is_none());
    }

    #[test]
    fn the_customers_name_is_not_a_keyword() {
        let mut m = heads();
        m.observe(
            MonitorInput::Customer(&map(
                serde_json::json!({"name": "Sue Miller", "verified": true}),
            )),
            Duration::ZERO,
        );
        agent(
            &mut m,
            "Thanks for calling. Who am I speaking with?",
            Some(0.9),
        );
        let o = user(
            &mut m,
            "Hi this is Sue, Sue Miller, checking on my delivery",
        );
        assert!(o.decision.is_none(), "{:?}", o.decision);
    }

    #[test]
    fn a_request_to_be_put_through_to_a_team_or_a_manager_escalates_at_once() {
        for ask in [
            "ok could you put me through to your billing team",
            "Right, I'd like a word with a manager about this please.",
            "is their any body i can talk two about my bill",
            "can you trans fur me to the accounts department",
        ] {
            let mut m = heads();
            agent(&mut m, "Northline Energy, how can I help?", Some(0.95));
            let d = user(&mut m, ask)
                .decision
                .unwrap_or_else(|| panic!("a request for a person: {ask:?}"));
            assert_eq!(d.trigger, Trigger::CustomerRequest, "{ask:?}");
        }
        // Asking how the process works, or naming a person, is not a request.
        assert!(!requests_a_person(
            "Will I need to talk to someone at the branch to collect it?"
        ));
        assert!(requests_a_person("Can you put me through to someone?"));
        let not_asked = "Our company representative sent the forms last week, did they arrive?";
        let mut m = heads();
        agent(&mut m, "Northline Energy, how can I help?", Some(0.95));
        let d = user(&mut m, not_asked).decision;
        assert!(d.is_none(), "{not_asked:?}: {d:?}");
    }

    #[test]
    fn yes_to_sending_a_report_to_a_team_address_is_not_accepting_a_person() {
        let mut m = heads();
        agent(&mut m, "Harbour Health, how can I help?", Some(0.95));
        user(&mut m, "I'd like the list of members on our staff scheme.");
        agent(
            &mut m,
            "I can email the member list to the scheme's registered address. Shall I do that?",
            Some(0.93),
        );
        let d = user(&mut m, "Yes please.").decision;
        assert!(d.is_none(), "an offer of an email, not of a person: {d:?}");
    }

    #[test]
    fn a_caller_who_says_nobody_hacked_them_is_not_reporting_fraud() {
        for said in [
            "My online banking's locked. Nobody's hacked it, I just typed the wrong code too many times.",
            "My card got blocked after I typed the PIN wrong. It hasn't been stolen or hacked, it's in my hand.",
        ] {
            let mut m = heads();
            agent(&mut m, "Westgate Bank, how can I help?", Some(0.95));
            let d = user(&mut m, said).decision;
            assert!(d.is_none(), "{said:?}: {d:?}");
        }
    }

    #[test]
    fn a_confident_answer_with_ordinary_caution_is_not_a_hedge() {
        let answer = "Work on the pipes nearby can cause this and it usually clears on its own; running the cold tap for a while should help. If it hasn't cleared by tonight, call us back.";
        let run = |confidence: f32| {
            let mut m = heads();
            agent(&mut m, "Riverside Water, how can I help?", Some(0.95));
            user(&mut m, "The water from my kitchen tap has gone brown.");
            agent(
                &mut m,
                "Hmm, there may be some work near you, let me check.",
                Some(0.44),
            );
            m.observe(
                MonitorInput::Tool {
                    name: "check_incidents",
                    ok: true,
                },
                Duration::ZERO,
            );
            agent(&mut m, answer, Some(confidence)).decision
        };
        // Stated as sure: the caution ("if it hasn't cleared…") is not hedging.
        assert!(run(0.92).is_none(), "{:?}", run(0.92));
        // The same words from an agent that is not sure are a second unhelpful turn.
        let d = run(0.6).expect("two unhelpful answers in a row");
        assert_eq!(d.rule, "repeated_unhelpful");
    }

    #[test]
    fn a_caller_saying_it_again_calmly_counts_against_the_next_answer() {
        for said in [
            "Sorry, as I said, the reference is KX20291.",
            "It's 7731, I gave it at the start.",
            "I said Tuesday, not Thursday.",
            "I've already told you that twice.",
        ] {
            assert!(says_it_is_repeating(said), "{said}");
        }
        for plain in [
            "The reference is KX20291.",
            "I said to my wife I'd sort it today.",
            "Tell me, is it open on Sundays?",
        ] {
            assert!(!says_it_is_repeating(plain), "{plain}");
        }
        let mut m = heads();
        agent(&mut m, "Parcelwise, how can I help?", Some(0.9));
        user(&mut m, "Where's my parcel? The reference is KX20291.");
        let first = agent(
            &mut m,
            "I'm not sure which parcel you mean. Do you have a reference?",
            Some(0.75),
        );
        assert!(first.decision.is_none());
        user(&mut m, "Sorry, as I said, the reference is KX20291.");
        let d = agent(
            &mut m,
            "Thanks. Parcel KX20291 is out for delivery today.",
            Some(0.9),
        )
        .decision
        .expect("two unhelpful answers in a row");
        assert_eq!(
            (d.trigger, d.rule),
            (Trigger::RepeatedFailure, "repeated_unhelpful")
        );
    }

    #[test]
    fn a_caller_who_accepts_the_explanation_is_not_disputing_the_record() {
        let mut m = heads();
        agent(
            &mut m,
            "Hello, Fernside Dental. How can I help?",
            Some(0.95),
        );
        user(
            &mut m,
            "There's a charge of twelve pounds on my invoice for a fluoride varnish, what is that?",
        );
        m.observe(
            MonitorInput::Tool {
                name: "invoice_lookup",
                ok: true,
            },
            Duration::ZERO,
        );
        agent(
            &mut m,
            "Our records show the hygienist applied a fluoride varnish at your check-up on the 3rd; it's charged on every hygiene visit.",
            Some(0.9),
        );
        let accepted = "But I never had a varnish. Oh, I see, it was the hygienist. Fair enough.";
        let o = user(&mut m, accepted);
        assert!(o.decision.is_none(), "{:?}", o.decision);
        // The same words without the acceptance are a dispute.
        let mut m2 = heads();
        agent(
            &mut m2,
            "Hello, Fernside Dental. How can I help?",
            Some(0.95),
        );
        m2.observe(
            MonitorInput::Tool {
                name: "invoice_lookup",
                ok: true,
            },
            Duration::ZERO,
        );
        agent(
            &mut m2,
            "Our records show the hygienist applied a fluoride varnish at your check-up on the 3rd.",
            Some(0.9),
        );
        let d = user(&mut m2, "But I never had a varnish.")
            .decision
            .expect("a dispute");
        assert_eq!((d.trigger, d.rule), (Trigger::Complexity, "conflict"));
        assert!(accepts_the_explanation(accepted));
        assert!(!accepts_the_explanation("But I never had a varnish."));
    }

    #[test]
    fn an_opening_complaint_is_not_a_conflict_with_records_nobody_has_read_yet() {
        let mut m = heads();
        agent(
            &mut m,
            "Thanks for calling Acme support. How can I help you today?",
            Some(0.95),
        );
        let o = user(
            &mut m,
            "Hi. I'm calling about my order. It still hasn't arrived.",
        );
        assert!(o.decision.is_none(), "{:?}", o.decision);
        m.observe(
            MonitorInput::Tool {
                name: "order_lookup",
                ok: true,
            },
            Duration::ZERO,
        );
        agent(
            &mut m,
            "Our records show order 8821 was delivered on Monday.",
            Some(0.9),
        );
        let d = user(
            &mut m,
            "That's wrong, it was never delivered, nothing came.",
        )
        .decision
        .unwrap();
        assert_eq!((d.trigger, d.rule), (Trigger::Complexity, "conflict"));
    }

    #[test]
    fn a_judges_verdict_decides_on_the_turn_it_was_about_and_only_while_it_is_the_latest() {
        let config = PolicyConfig {
            judge_margin: 1.0, // every deciding label is "unsure"
            ..PolicyConfig::default()
        };
        let mut m = Monitor::new(config.clone(), TurnClassifier::from_config(&config));
        agent(&mut m, "How can I help?", Some(0.9));
        let o = user(&mut m, "mmm well you know how it is");
        assert!(o.decision.is_none());
        let req = o.judge.expect("an unsure turn is offered to the judge");
        assert!(req.candidates.contains(&Label::AsksPerson));
        let d = m.judged(req.turn, &[(Label::AsksPerson, true)]).unwrap();
        assert_eq!(
            (d.trigger, d.mode),
            (Trigger::CustomerRequest, "classifier+judge")
        );
        assert_eq!(
            d.event,
            TriggerEvent {
                index: 1,
                kind: "turn",
                turn: Some(1)
            }
        );
        // A verdict that arrives after the agent answered still counts for its turn...
        let mut m = Monitor::new(config.clone(), TurnClassifier::from_config(&config));
        let first = user(&mut m, "mmm well you know how it is").judge.unwrap();
        agent(&mut m, "Could you tell me more?", Some(0.9));
        let d = m.judged(first.turn, &[(Label::AsksPerson, true)]).unwrap();
        assert_eq!(d.event.turn, Some(0));
        // ...but not once it is too old, nor after a decision.
        let mut m = Monitor::new(config.clone(), TurnClassifier::from_config(&config));
        let old = user(&mut m, "mmm well you know how it is").judge.unwrap();
        for _ in 0..JUDGED_TURNS_KEPT {
            agent(&mut m, "Could you tell me more?", Some(0.9));
        }
        assert!(m.judged(old.turn, &[(Label::AsksPerson, true)]).is_none());
        // The phrase rules never ask a judge.
        let mut m = Monitor::new(
            config,
            TurnClassifier::Rules {
                reason: "test".into(),
            },
        );
        assert!(user(&mut m, "mmm well you know how it is").judge.is_none());
    }

    #[test]
    fn agent_requests_failures_and_dtmf_decide_at_once() {
        let mut m = rules();
        let d = m
            .observe(MonitorInput::AgentFailed("socket reset"), Duration::ZERO)
            .decision
            .unwrap();
        assert_eq!(
            (d.trigger, d.urgency, d.rule),
            (Trigger::Complexity, Urgency::Elevated, "agent_failure")
        );
        assert!(d.description.contains("socket reset"));
        // Only the first decision is reported.
        assert!(
            m.observe(MonitorInput::Dtmf('0'), Duration::ZERO)
                .decision
                .is_none()
        );

        let mut m = rules();
        assert!(
            m.observe(MonitorInput::Dtmf('5'), Duration::ZERO)
                .decision
                .is_none()
        );
        let d = m
            .observe(MonitorInput::Dtmf('0'), Duration::ZERO)
            .decision
            .unwrap();
        assert_eq!(
            (d.trigger, d.event.kind, d.event.index),
            (Trigger::CustomerRequest, "dtmf", 1)
        );

        let mut m = rules();
        let body = EscalationRequest {
            trigger: Trigger::AuthorityLimit,
            description: "Refund above limit".into(),
            urgency: Urgency::Elevated,
        };
        let d = m
            .observe(MonitorInput::AgentEscalate(&body), Duration::ZERO)
            .decision
            .unwrap();
        assert_eq!(
            (d.trigger, d.urgency, d.rule),
            (Trigger::AuthorityLimit, Urgency::Elevated, "agent_request")
        );
    }

    #[test]
    fn two_unhelpful_answers_in_a_row_say_why_each_was_unhelpful() {
        for mut m in [rules(), heads()] {
            user(&mut m, "My refund never arrived");
            agent(&mut m, "I'm not sure I can help with refunds.", None);
            user(&mut m, "Please check the refund for order 8821");
            let d = agent(&mut m, "I'm not sure about that, I don't know.", None)
                .decision
                .unwrap();
            assert_eq!(
                (d.trigger, d.rule),
                (Trigger::RepeatedFailure, "repeated_unhelpful")
            );
            assert_eq!(
                d.unhelpful.iter().map(|u| u.turn).collect::<Vec<_>>(),
                vec![1, 3]
            );
            assert!(d.unhelpful.iter().all(|u| !u.reasons.is_empty()));
        }
    }

    #[test]
    fn hostile_turns_are_read_in_bounded_time_without_panicking() {
        let mut m = heads();
        let long = "why ".repeat(25_000);
        for t in [
            "",
            &long,
            "😡😡😡",
            "\u{0}\u{1b}[2J\u{7}",
            "Wo ist meine Bestellung?",
            "注文はどこですか",
        ] {
            user(&mut m, t);
            agent(&mut m, t, Some(0.9));
        }
    }
}
