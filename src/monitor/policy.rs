//! The escalation policy (sans-IO, pure): feeds turns, tools, digits and agent
//! events through sentiment and confidence, and decides — once per call —
//! whether a human must take over, why, how urgently, and on what evidence.

use crate::legs::media_streams::{EscalateBody, Role, Trigger, Urgency};
use crate::monitor::confidence::{ConfidenceTracker, TurnAssessment};
use crate::monitor::sentiment::{SentimentArc, SentimentLabel, SentimentScorer};
use crate::monitor::text::{clauses, find_phrase, negated_before, words};
use serde::Serialize;
use std::time::Duration;

/// Thresholds and word lists: the `[monitor]` section of the config.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Unhelpful agent turns in a row that escalate.
    pub unhelpful_turns: u32,
    /// Confidence below this is low.
    pub low_confidence: f32,
    /// Low-confidence agent turns (in total) that escalate.
    pub low_confidence_turns: u32,
    /// Intents the AI may not act on (e.g. `account_closure`).
    pub authority_intents: Vec<String>,
    /// Refunds above this amount are beyond the AI's authority.
    pub refund_limit: f64,
    /// Topics that need a human by policy (elevated urgency).
    pub policy_keywords: Vec<String>,
    /// Topics that need a human at once (critical urgency).
    pub critical_keywords: Vec<String>,
    /// Mean caller sentiment at or below this over `sentiment_turns` turns escalates.
    pub sentiment_threshold: f32,
    /// Turns the sentiment trend is measured over.
    pub sentiment_turns: u32,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        let list = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        PolicyConfig {
            unhelpful_turns: 2,
            low_confidence: 0.5,
            low_confidence_turns: 2,
            authority_intents: list(&["account_closure", "refund_over_limit", "chargeback"]),
            refund_limit: 50.0,
            policy_keywords: list(&[
                "cancel my account",
                "close my account",
                "cancellation",
                "complaint",
                "data breach",
            ]),
            critical_keywords: list(&[
                "lawyer",
                "attorney",
                "lawsuit",
                "sue",
                "legal action",
                "fraud",
                "emergency",
            ]),
            sentiment_threshold: -0.45,
            sentiment_turns: 3,
        }
    }
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
}

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
    AgentEscalate(&'a EscalateBody),
    /// The agent's view of the caller's intent.
    Intent(&'a serde_json::Map<String, serde_json::Value>),
    /// The AI agent's leg failed (unreachable, dropped, or broken); the text says how.
    AgentFailed(&'a str),
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
    /// The handoff decision, the first time one is made.
    pub decision: Option<Decision>,
}

/// The per-call monitor.
#[derive(Debug)]
pub struct Monitor {
    config: PolicyConfig,
    scorer: SentimentScorer,
    tracker: ConfidenceTracker,
    arc: SentimentArc,
    turns: usize,
    unhelpful_run: Vec<usize>,
    low_confidence: Vec<usize>,
    decided: Option<Decision>,
}

impl Monitor {
    /// A monitor with the given policy.
    pub fn new(config: PolicyConfig) -> Self {
        Monitor {
            tracker: ConfidenceTracker::new(config.low_confidence),
            config,
            scorer: SentimentScorer::default(),
            arc: SentimentArc::default(),
            turns: 0,
            unhelpful_run: Vec::new(),
            low_confidence: Vec::new(),
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

    /// Feeds one input that happened `at` into the call.
    pub fn observe(&mut self, input: MonitorInput<'_>, at: Duration) -> Observation {
        let mut obs = Observation::default();
        let decision = match input {
            MonitorInput::Turn {
                role: Role::User,
                content,
                ..
            } => {
                let index = self.next_turn();
                obs.turn_index = Some(index);
                let score = self.scorer.score(content);
                obs.sentiment = Some(score);
                self.arc.push(index, at, score);
                self.tracker.on_user_turn(content);
                self.judge_user_turn(content, index)
            }
            MonitorInput::Turn {
                role: Role::Agent,
                content,
                confidence,
            } => {
                let index = self.next_turn();
                obs.turn_index = Some(index);
                let assessment = self.tracker.assess_agent_turn(content, confidence);
                let decision = self.judge_agent_turn(&assessment, index);
                obs.assessment = Some(assessment);
                decision
            }
            MonitorInput::Tool { name, ok } => {
                self.tracker.on_tool(name, ok);
                None
            }
            MonitorInput::Dtmf('0') => Some(Decision {
                trigger: Trigger::CustomerRequest,
                description: "The caller pressed 0 to reach a person.".into(),
                urgency: self.urgency_with_mood(Urgency::Standard),
                evidence: self.last_turn().into_iter().collect(),
                rule: "dtmf_zero",
            }),
            MonitorInput::Dtmf(_) => None,
            MonitorInput::AgentEscalate(body) => Some(Decision {
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
            // The AI cannot go on: a person must, before the caller is left alone.
            MonitorInput::AgentFailed(error) => Some(Decision {
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
            && let Some(d) = decision
        {
            self.decided = Some(d.clone());
            obs.decision = Some(d);
        }
        obs
    }

    fn next_turn(&mut self) -> usize {
        self.turns += 1;
        self.turns - 1
    }

    fn last_turn(&self) -> Option<usize> {
        self.turns.checked_sub(1)
    }

    fn urgency_with_mood(&self, base: Urgency) -> Urgency {
        match (base, self.arc.latest()) {
            (Urgency::Standard, Some(s)) if s <= -0.5 => Urgency::Elevated,
            (u, _) => u,
        }
    }

    fn judge_user_turn(&mut self, content: &str, index: usize) -> Option<Decision> {
        if let Some(phrase) = asks_for_human(content) {
            return Some(Decision {
                trigger: Trigger::CustomerRequest,
                description: format!("The caller asked for a person (\"{phrase}\")."),
                urgency: self.urgency_with_mood(Urgency::Standard),
                evidence: vec![index],
                rule: "explicit_request",
            });
        }
        if let Some(topic) = mentions(content, &self.config.critical_keywords) {
            return Some(Decision {
                trigger: Trigger::Policy,
                description: format!(
                    "The caller raised \"{topic}\", which policy reserves for a human."
                ),
                urgency: Urgency::Critical,
                evidence: vec![index],
                rule: "critical_topic",
            });
        }
        if let Some(topic) = mentions(content, &self.config.policy_keywords) {
            return Some(Decision {
                trigger: Trigger::Policy,
                description: format!(
                    "The caller raised \"{topic}\", which policy reserves for a human."
                ),
                urgency: Urgency::Elevated,
                evidence: vec![index],
                rule: "policy_topic",
            });
        }
        let n = self.config.sentiment_turns as usize;
        if let Some(mean) = self.arc.trend(n)
            && mean <= self.config.sentiment_threshold
        {
            let evidence = self.arc.last(n).iter().map(|p| p.turn_index).collect();
            return Some(Decision {
                trigger: Trigger::Complexity,
                description: format!(
                    "The caller has been {} for {n} turns (mean sentiment {mean:.2}).",
                    SentimentLabel::spoken(mean)
                ),
                urgency: Urgency::Elevated,
                evidence,
                rule: "negative_sentiment_trend",
            });
        }
        None
    }

    fn judge_agent_turn(&mut self, a: &TurnAssessment, index: usize) -> Option<Decision> {
        // "Low confidence" is the agent's own word; derived confidence only feeds helpfulness.
        if a.stated && a.confidence < self.config.low_confidence {
            self.low_confidence.push(index);
        }
        if a.helpful {
            self.unhelpful_run.clear();
        } else {
            self.unhelpful_run.push(index);
        }
        if self.low_confidence.len() >= self.config.low_confidence_turns.max(1) as usize {
            return Some(Decision {
                trigger: Trigger::Complexity,
                description: format!(
                    "The assistant's confidence was below {:.1} on {} turns.",
                    self.config.low_confidence,
                    self.low_confidence.len()
                ),
                urgency: self.urgency_with_mood(Urgency::Standard),
                evidence: self.low_confidence.clone(),
                rule: "low_confidence",
            });
        }
        if self.unhelpful_run.len() >= self.config.unhelpful_turns.max(1) as usize {
            return Some(Decision {
                trigger: Trigger::RepeatedFailure,
                description: format!(
                    "The assistant gave {} unhelpful answers in a row.",
                    self.unhelpful_run.len()
                ),
                urgency: self.urgency_with_mood(Urgency::Standard),
                evidence: self.unhelpful_run.clone(),
                rule: "repeated_unhelpful",
            });
        }
        None
    }

    fn judge_intent(
        &mut self,
        intent: &serde_json::Map<String, serde_json::Value>,
    ) -> Option<Decision> {
        let primary = intent.get("primary").and_then(|v| v.as_str()).unwrap_or("");
        let bounded = self
            .config
            .authority_intents
            .iter()
            .any(|i| i.eq_ignore_ascii_case(primary));
        let amount = intent.get("amount").and_then(|v| v.as_f64());
        let refund_over = primary.to_ascii_lowercase().contains("refund")
            && amount.is_some_and(|a| a > self.config.refund_limit);
        if !(bounded || refund_over) {
            return None;
        }
        let description = match amount {
            Some(a) if refund_over => format!(
                "A refund of {a:.2} is above the assistant's limit of {:.2}.",
                self.config.refund_limit
            ),
            _ => format!("\"{primary}\" needs a person's authority."),
        };
        Some(Decision {
            trigger: Trigger::AuthorityLimit,
            description,
            urgency: self.urgency_with_mood(Urgency::Standard),
            evidence: self.last_turn().into_iter().collect(),
            rule: "authority_intent",
        })
    }
}

/// Words that name a person to talk to when a request verb comes before them.
const PERSON_WORDS: &[&str] = &[
    "someone",
    "somebody",
    "person",
    "agent",
    "manager",
    "supervisor",
    "representative",
    "human",
];
const REQUEST_VERBS: &[&str] = &[
    "talk", "speak", "transfer", "connect", "put", "get", "want", "need", "give", "reach",
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
                && !negated_before(&clause, v.max(1))
                && !negated_before(&clause, i)
            {
                return Some(clause[v..=i].join(" "));
            }
        }
    }
    None
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

    #[test]
    fn explicit_requests_for_a_person_and_their_near_misses() {
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
            assert!(
                asks_for_human(t).is_none(),
                "should not escalate: {t:?} ({:?})",
                asks_for_human(t)
            );
        }
    }

    struct Case {
        name: &'static str,
        steps: Vec<(Role, &'static str, Option<f32>)>,
        expect: Option<(Trigger, &'static str)>,
    }

    #[test]
    fn each_trigger_fires_on_its_own_transcript_and_not_on_near_misses() {
        use Role::{Agent as A, User as U};
        let cases = vec![
            Case {
                name: "customer request",
                steps: vec![
                    (A, "How can I help?", Some(0.9)),
                    (U, "I want a real person", None),
                ],
                expect: Some((Trigger::CustomerRequest, "explicit_request")),
            },
            Case {
                name: "two unhelpful answers in a row",
                steps: vec![
                    (U, "My refund never arrived", None),
                    (A, "I'm not sure I can help with refunds.", None),
                    (U, "Please check the refund for order 8821", None),
                    (A, "Unfortunately I don't have access to refunds.", None),
                ],
                expect: Some((Trigger::RepeatedFailure, "repeated_unhelpful")),
            },
            Case {
                name: "one unhelpful answer then a helpful one",
                steps: vec![
                    (A, "I'm not sure about that.", Some(0.7)),
                    (A, "Your order shipped yesterday.", Some(0.9)),
                    (A, "I'm not sure about the carrier.", Some(0.7)),
                ],
                expect: None,
            },
            Case {
                name: "low confidence twice",
                steps: vec![
                    (A, "Maybe it is the blue plan.", Some(0.4)),
                    (A, "Your balance is 40 dollars.", Some(0.9)),
                    (A, "Perhaps the fee was waived.", Some(0.3)),
                ],
                expect: Some((Trigger::Complexity, "low_confidence")),
            },
            Case {
                name: "low confidence once",
                steps: vec![
                    (A, "Maybe it is the blue plan.", Some(0.4)),
                    (A, "Done.", Some(0.8)),
                ],
                expect: None,
            },
            Case {
                name: "policy topic",
                steps: vec![(U, "I want to cancel my account today", None)],
                expect: Some((Trigger::Policy, "policy_topic")),
            },
            Case {
                name: "legal threat is critical",
                steps: vec![(U, "I'm calling my lawyer about this", None)],
                expect: Some((Trigger::Policy, "critical_topic")),
            },
            Case {
                name: "negated policy topic",
                steps: vec![(U, "I don't want to cancel my account, just update it", None)],
                expect: None,
            },
            Case {
                name: "sustained negative sentiment",
                steps: vec![
                    (U, "This is terrible, nothing works.", None),
                    (U, "I'm really angry, this is awful service.", None),
                    (U, "Horrible. I hate this stupid system.", None),
                ],
                expect: Some((Trigger::Complexity, "negative_sentiment_trend")),
            },
            Case {
                name: "one bad moment is not a trend",
                steps: vec![
                    (U, "This is terrible, nothing works.", None),
                    (U, "Oh, okay, that's great, thanks!", None),
                    (U, "Good, thank you.", None),
                ],
                expect: None,
            },
        ];
        for case in cases {
            let mut m = Monitor::new(PolicyConfig::default());
            let mut got = None;
            for (role, text, conf) in &case.steps {
                let obs = match role {
                    Role::User => user(&mut m, text),
                    Role::Agent => agent(&mut m, text, *conf),
                };
                if obs.decision.is_some() {
                    got = obs.decision;
                }
            }
            match (case.expect, got) {
                (None, None) => {}
                (Some((trigger, rule)), Some(d)) => {
                    assert_eq!((d.trigger, d.rule), (trigger, rule), "{}", case.name);
                    assert!(!d.evidence.is_empty(), "{}: evidence", case.name);
                }
                (e, g) => panic!("{}: expected {e:?}, got {g:?}", case.name),
            }
        }
    }

    #[test]
    fn authority_dtmf_and_agent_requests() {
        let mut m = Monitor::new(PolicyConfig::default());
        let mut intent = serde_json::Map::new();
        intent.insert("primary".into(), "refund".into());
        intent.insert("amount".into(), 45.into());
        assert!(
            m.observe(MonitorInput::Intent(&intent), Duration::ZERO)
                .decision
                .is_none()
        );
        intent.insert("amount".into(), 120.into());
        let d = m
            .observe(MonitorInput::Intent(&intent), Duration::ZERO)
            .decision
            .unwrap();
        assert_eq!(d.trigger, Trigger::AuthorityLimit);
        // Only the first decision is reported.
        assert!(
            m.observe(MonitorInput::Dtmf('0'), Duration::ZERO)
                .decision
                .is_none()
        );

        let mut m = Monitor::new(PolicyConfig::default());
        let d = m
            .observe(MonitorInput::AgentFailed("socket reset"), Duration::ZERO)
            .decision
            .unwrap();
        assert_eq!(
            (d.trigger, d.urgency, d.rule),
            (Trigger::Complexity, Urgency::Elevated, "agent_failure")
        );
        assert!(d.description.contains("socket reset"));

        let mut m = Monitor::new(PolicyConfig::default());
        assert!(
            m.observe(MonitorInput::Dtmf('5'), Duration::ZERO)
                .decision
                .is_none()
        );
        assert_eq!(
            m.observe(MonitorInput::Dtmf('0'), Duration::ZERO)
                .decision
                .unwrap()
                .trigger,
            Trigger::CustomerRequest
        );

        let mut m = Monitor::new(PolicyConfig::default());
        let body = EscalateBody {
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
    fn an_angry_request_is_elevated() {
        let mut m = Monitor::new(PolicyConfig::default());
        let d = user(
            &mut m,
            "This is absolutely terrible and I'm furious, get me a human now!",
        )
        .decision
        .unwrap();
        assert_eq!(d.trigger, Trigger::CustomerRequest);
        assert_eq!(d.urgency, Urgency::Elevated);
    }
}
