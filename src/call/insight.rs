//! The per-call insight task: off the audio path, it feeds what the call task
//! observes (turns, tools, digits, agent events) to the [`Monitor`], builds the
//! [`HandoffContext`] turn by turn, persists both, and reports the escalation
//! decision back to the call task.

use crate::brief::context::{ContextBuilder, HandoffContext, rfc3339};
use crate::brief::summary::{self, SummarySource};
use crate::brief::whisper::Whisper;
use crate::call::services::CallServices;
use crate::call::timeline::TimelineKind;
use crate::legs::media_streams::StartMeta;
use crate::monitor::{Decision, Monitor, MonitorInput};
use crate::store::Write;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc;

/// Events queued towards the insight task.
const QUEUE: usize = 256;

/// The gateway's version string, recorded in every context.
pub const AGENT_VERSION: &str = concat!("warmline/", env!("CARGO_PKG_VERSION"));

/// What the insight task tells the call task.
#[derive(Debug, Clone)]
pub enum InsightEvent {
    /// A human must take over.
    Escalated(Box<Escalation>),
    /// The whisper was rendered (again, when the context changed before answer),
    /// with its μ-law 8 kHz audio for a phone leg.
    WhisperReady(Arc<Whisper>, Arc<[u8]>),
    /// The whisper could not be rendered.
    WhisperFailed(String),
    /// The LLM summary arrived (or fell back).
    Summary(SummarySource),
}

impl InsightEvent {
    /// When it happened: a decision when it was made (before the caller's
    /// prompts were rendered), anything else now, as it arrives.
    pub fn happened_at(&self) -> Instant {
        match self {
            InsightEvent::Escalated(e) => e.decided_at,
            _ => Instant::now(),
        }
    }
}

/// What the insight task leaves behind when the call ends.
#[derive(Debug, Clone)]
pub struct InsightOutcome {
    /// The final context.
    pub context: HandoffContext,
    /// The last whisper and the context it was rendered from.
    pub whisper: Option<(Arc<Whisper>, HandoffContext)>,
}

/// A decision, with the context as it stood when it was made.
#[derive(Debug, Clone)]
pub struct Escalation {
    /// The decision.
    pub decision: Decision,
    /// The context (summary included).
    pub context: Arc<HandoffContext>,
    /// Where the summary came from.
    pub summary_source: SummarySource,
    /// From the triggering event to the decision.
    pub latency: Duration,
    /// When the decision was made (before the caller's prompts were rendered).
    pub decided_at: Instant,
    /// What the caller hears now and, if nobody can take the call, later.
    pub prompts: Option<crate::call::bridge::HandoffPrompts>,
    /// The disclosure's words.
    pub disclosure_text: String,
    /// The caller's number, for a callback.
    pub callback_number: Option<String>,
    /// The queue (skill) the call joins; "" = any agent.
    pub skill: String,
}

struct Observed {
    at: Instant,
    wall: SystemTime,
    kind: TimelineKind,
}

/// The call task's handle on its insight task.
pub struct Insight {
    tx: mpsc::Sender<Observed>,
    task: tokio::task::JoinHandle<InsightOutcome>,
}

impl Insight {
    /// Starts the task for a call.
    pub fn spawn(
        shared: Arc<dyn CallServices>,
        call_id: &str,
        start: &StartMeta,
        started_wall: SystemTime,
    ) -> (Insight, mpsc::Receiver<InsightEvent>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (esc_tx, esc_rx) = mpsc::channel(16);
        let mut builder = ContextBuilder::new(call_id, started_wall, AGENT_VERSION);
        builder.on_call_parameters(&start.custom_parameters);
        shared.store().write(Write::CallStarted {
            id: call_id.to_string(),
            call_sid: start.call_sid.clone(),
            started_at: rfc3339(started_wall),
            caller_number: caller_number(builder.context()),
        });
        let worker = Worker {
            monitor: Monitor::new(shared.config().monitor.clone(), shared.classifier().clone()),
            shared,
            call_id: call_id.to_string(),
            builder,
            esc_tx,
            started_wall,
            summary_source: SummarySource::Extractive {
                fallback_reason: None,
            },
            whisper: None,
            requested_skill: start.custom_parameters.get("skill").cloned(),
            web_caller: start
                .custom_parameters
                .get("transport")
                .is_some_and(|t| t == "webrtc"),
            judge_tx: None,
            judging: 0,
        };
        let task = tokio::spawn(tracing::Instrument::in_current_span(worker.run(rx)));
        (Insight { tx, task }, esc_rx)
    }

    /// Passes on an event the call task recorded (only those that matter are sent).
    pub fn observe(&self, at: Instant, kind: &TimelineKind) {
        let relevant = matches!(
            kind,
            TimelineKind::Turn { .. }
                | TimelineKind::ToolUsed { .. }
                | TimelineKind::Customer { .. }
                | TimelineKind::Intent { .. }
                | TimelineKind::EscalationRequested { .. }
                | TimelineKind::Dtmf { .. }
                | TimelineKind::AgentLost { .. }
                | TimelineKind::AgentUnreachable { .. }
                | TimelineKind::CallEnded { .. }
                | TimelineKind::HandoffStep {
                    step: crate::domain::HandoffStep::ReturnedToAi,
                    ..
                }
        );
        if relevant
            && self
                .tx
                .try_send(Observed {
                    at,
                    wall: SystemTime::now(),
                    kind: kind.clone(),
                })
                .is_err()
        {
            tracing::warn!("insight queue full; event not monitored");
        }
    }

    /// Waits (up to `limit`) for the task to save the final context; returns what it built.
    pub async fn finish(self, limit: Duration) -> Option<InsightOutcome> {
        drop(self.tx);
        match tokio::time::timeout(limit, self.task).await {
            Ok(Ok(outcome)) => Some(outcome),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "insight task failed");
                None
            }
            Err(_) => {
                tracing::warn!("insight task did not finish in time");
                None
            }
        }
    }
}

struct Worker {
    shared: Arc<dyn CallServices>,
    call_id: String,
    monitor: Monitor,
    builder: ContextBuilder,
    esc_tx: mpsc::Sender<InsightEvent>,
    started_wall: SystemTime,
    summary_source: SummarySource,
    whisper: Option<(Arc<Whisper>, HandoffContext)>,
    /// The skill the provider asked for (`customParameters.skill`), if any.
    requested_skill: Option<String>,
    /// A browser (WebRTC) caller: no caller ID to call back unless they gave a number.
    web_caller: bool,
    /// Where spawned judge requests answer (set while the task runs).
    judge_tx: Option<mpsc::Sender<Judged>>,
    /// Judge requests in flight.
    judging: usize,
}

/// A judge's answer about one turn.
struct Judged {
    turn: usize,
    asked_at: Instant,
    verdicts: Result<Vec<(crate::monitor::heads::Label, bool)>, String>,
}

/// Judge requests one call may have in flight; further unsure turns are read by the heads alone.
const JUDGE_IN_FLIGHT: usize = 2;

impl Worker {
    async fn run(mut self, mut rx: mpsc::Receiver<Observed>) -> InsightOutcome {
        let (judge_tx, mut judge_rx) = mpsc::channel::<Judged>(JUDGE_IN_FLIGHT);
        self.judge_tx = Some(judge_tx);
        loop {
            let obs = tokio::select! {
                obs = rx.recv() => match obs {
                    Some(obs) => obs,
                    None => break,
                },
                Some(judged) = judge_rx.recv() => {
                    self.on_judged(judged).await;
                    continue;
                }
            };
            let ended = matches!(obs.kind, TimelineKind::CallEnded { .. });
            let turn = matches!(obs.kind, TimelineKind::Turn { .. });
            let escalated_before = self.monitor.decision().is_some();
            self.handle(obs).await;
            if ended {
                break;
            }
            // The context changed after escalation: keep the whisper current.
            if escalated_before && turn {
                self.render_whisper().await;
            }
        }
        self.save_context();
        InsightOutcome {
            context: self.builder.context().clone(),
            whisper: self.whisper.take(),
        }
    }

    async fn render_whisper(&mut self) {
        let ctx = self.builder.context().clone();
        match self
            .shared
            .tts()
            .render_whisper(
                &ctx,
                crate::brief::whisper::WhisperWindow::from_config(self.shared.config()),
            )
            .await
        {
            Ok(w) => {
                let w = Arc::new(w);
                let ulaw: Arc<[u8]> = match w.samples_at(8000) {
                    Ok(pcm) => {
                        let mut out = Vec::new();
                        crate::media::g711::encode_ulaw(&pcm, &mut out);
                        Arc::from(out)
                    }
                    Err(e) => {
                        let _ = self
                            .esc_tx
                            .send(InsightEvent::WhisperFailed(e.to_string()))
                            .await;
                        return;
                    }
                };
                tracing::info!(
                    seconds = w.seconds(),
                    renders = w.renders,
                    render_ms = w.render_ms,
                    engine = w.engine,
                    "whisper ready: {}",
                    w.text
                );
                self.whisper = Some((Arc::clone(&w), ctx));
                let _ = self.esc_tx.send(InsightEvent::WhisperReady(w, ulaw)).await;
            }
            Err(e) => {
                tracing::error!(error = %e, "whisper could not be rendered");
                let _ = self
                    .esc_tx
                    .send(InsightEvent::WhisperFailed(e.to_string()))
                    .await;
            }
        }
    }

    async fn handle(&mut self, obs: Observed) {
        let since_start = obs
            .wall
            .duration_since(self.started_wall)
            .unwrap_or_default();
        let observation = match &obs.kind {
            TimelineKind::Turn {
                role,
                content,
                confidence,
            } => {
                let o = self.monitor.observe(
                    MonitorInput::Turn {
                        role: *role,
                        content,
                        confidence: *confidence,
                    },
                    since_start,
                );
                self.builder
                    .on_turn(*role, content, obs.wall, o.sentiment, o.assessment.as_ref());
                self.shared.registry().observe_turn(
                    &self.call_id,
                    *role,
                    content,
                    o.assessment.as_ref().map(|a| a.confidence),
                    o.assessment.as_ref().map(|a| a.helpful),
                    o.sentiment,
                );
                if let Some(idx) = o.turn_index {
                    self.shared.store().write(Write::Turn {
                        call_id: self.call_id.clone(),
                        idx,
                        role: role.as_str().to_string(),
                        content: content.clone(),
                        at: rfc3339(obs.wall),
                        confidence: o.assessment.as_ref().map(|a| a.confidence),
                        helpful: o.assessment.as_ref().map(|a| a.helpful),
                        sentiment: o.sentiment,
                    });
                }
                o
            }
            TimelineKind::ToolUsed {
                name,
                ok,
                detail,
                args,
                result,
            } => {
                self.builder.on_tool(
                    name,
                    *ok,
                    detail.as_deref(),
                    args.as_deref(),
                    result.as_deref(),
                    obs.wall,
                );
                self.monitor
                    .observe(MonitorInput::Tool { name, ok: *ok }, since_start)
            }
            TimelineKind::Customer { data } => {
                self.builder.on_customer(data);
                self.monitor
                    .observe(MonitorInput::Customer(data), since_start)
            }
            TimelineKind::Intent { data } => {
                self.builder.on_intent(data);
                self.monitor
                    .observe(MonitorInput::Intent(data), since_start)
            }
            TimelineKind::EscalationRequested {
                trigger,
                description,
                urgency,
            } => {
                let body = crate::domain::EscalationRequest {
                    trigger: *trigger,
                    description: description.clone(),
                    urgency: *urgency,
                };
                self.monitor
                    .observe(MonitorInput::AgentEscalate(&body), since_start)
            }
            TimelineKind::Dtmf { digit } => self
                .monitor
                .observe(MonitorInput::Dtmf(*digit), since_start),
            TimelineKind::AgentUnreachable { error } | TimelineKind::AgentLost { error } => self
                .monitor
                .observe(MonitorInput::AgentFailed(error), since_start),
            TimelineKind::HandoffStep { .. } => {
                // Only `returned_to_ai` is passed on: the caller is back with
                // the AI, and a later escalation starts afresh.
                self.monitor.resume_after_handoff();
                Default::default()
            }
            TimelineKind::CallEnded { reason } => {
                self.shared.store().write(Write::CallEnded {
                    id: self.call_id.clone(),
                    ended_at: rfc3339(obs.wall),
                    reason: serde_json::to_string(reason).unwrap_or_default(),
                });
                Default::default()
            }
            _ => Default::default(),
        };
        if let Some(req) = observation.judge {
            self.ask_judge(req, obs.at);
        }
        let Some(decision) = observation.decision else {
            self.save_context();
            return;
        };
        self.on_decision(decision, obs.at).await;
    }

    /// Sends an unsure turn to the judge, if one is configured and not busy.
    fn ask_judge(&mut self, req: crate::monitor::judge::JudgeRequest, at: Instant) {
        let (Some(judge), Some(tx)) = (self.shared.judge().cloned(), self.judge_tx.clone()) else {
            return;
        };
        if self.judging >= JUDGE_IN_FLIGHT {
            tracing::debug!(turn = req.turn, "judge busy; the heads' reading stands");
            return;
        }
        self.judging += 1;
        tokio::spawn(async move {
            let verdicts = judge.ask(&req).await;
            let _ = tx
                .send(Judged {
                    turn: req.turn,
                    asked_at: at,
                    verdicts,
                })
                .await;
        });
    }

    async fn on_judged(&mut self, judged: Judged) {
        self.judging = self.judging.saturating_sub(1);
        match judged.verdicts {
            Ok(verdicts) => {
                tracing::debug!(turn = judged.turn, ?verdicts, "judge answered");
                if let Some(decision) = self.monitor.judged(judged.turn, &verdicts) {
                    self.on_decision(decision, judged.asked_at).await;
                }
            }
            Err(e) => {
                tracing::warn!(turn = judged.turn, error = %e, "judge unavailable; the heads' reading stands")
            }
        }
    }

    async fn on_decision(&mut self, decision: Decision, triggered_at: Instant) {
        let decided_at = Instant::now();
        let latency = decided_at.saturating_duration_since(triggered_at);
        self.builder.on_decision(&decision, SystemTime::now());
        tracing::info!(
            trigger = ?decision.trigger,
            urgency = ?decision.urgency,
            rule = decision.rule,
            event = decision.event.index,
            event_kind = decision.event.kind,
            monitor = decision.mode,
            latency_us = latency.as_micros() as u64,
            "escalation decided: {}",
            decision.description
        );
        self.shared.store().write(Write::Decision {
            call_id: self.call_id.clone(),
            trigger: decision.trigger.as_str().to_string(),
            urgency: decision.urgency.as_str().to_string(),
            description: decision.description.clone(),
            rule: decision.rule.to_string(),
            evidence: {
                let mut why = decision.why();
                why["turns"] = serde_json::json!(decision.evidence);
                why.to_string()
            },
            decided_at: rfc3339(SystemTime::now()),
            latency_us: latency.as_micros() as u64,
        });
        // The caller must hear something at once: the prompts and the escalation go
        // out before the (optional, slower) LLM summary.
        let skill = self.shared.routing().skill_for(
            self.requested_skill.as_deref(),
            &self.builder.context().intent.primary,
        );
        let (prompts, disclosure_text) = self.render_prompts(&decision, &skill).await;
        let extractive = summary::extractive(self.builder.context());
        self.builder.set_summary(extractive);
        self.save_context();
        let escalation = Escalation {
            decision,
            context: Arc::new(self.builder.context().clone()),
            summary_source: self.summary_source.clone(),
            latency,
            decided_at,
            prompts,
            disclosure_text,
            callback_number: caller_number(self.builder.context()),
            skill,
        };
        if self
            .esc_tx
            .send(InsightEvent::Escalated(Box::new(escalation)))
            .await
            .is_err()
        {
            tracing::debug!("call ended before the escalation was delivered");
        }
        if self.shared.llm().is_some() {
            let (text, source) =
                summary::best_summary(self.shared.llm(), self.builder.context()).await;
            self.builder.set_summary(text);
            self.summary_source = source.clone();
            self.save_context();
            let _ = self.esc_tx.send(InsightEvent::Summary(source)).await;
        }
        // Pre-render the whisper now, while the caller waits: it must start the
        // moment a human answers.
        self.render_whisper().await;
    }

    async fn render_prompts(
        &self,
        decision: &Decision,
        skill: &str,
    ) -> (Option<crate::call::bridge::HandoffPrompts>, String) {
        let config = self.shared.config();
        let wait = self.shared.routing().estimate_wait(skill);
        let number = caller_number(self.builder.context());
        let why = if self.shared.routing().is_open_now() {
            "none of our team can take your call right now"
        } else {
            "our team is closed at this hour"
        };
        let p = &config.prompts;
        let (disclosure, callback) = crate::brief::prompts::caller_lines(
            crate::brief::prompts::Templates {
                disclosure: &p.disclosure,
                disclosure_offer: &p.disclosure_offer,
                callback: &p.callback,
                no_callback: &p.no_callback,
            },
            crate::brief::prompts::CallerFacts {
                trigger: decision.trigger,
                wait,
                number: number.as_deref(),
                web_caller: self.web_caller,
                why,
            },
        );
        let wpm = config.tts.words_per_minute;
        // The question to a person who must accept after the whisper, only
        // when someone is configured to be asked.
        let consult = if config.routing.agents.iter().any(|a| a.consult_seconds > 0) {
            match self.shared.tts().prompt_ulaw(&p.consult, wpm).await {
                Ok(audio) => Some(audio),
                Err(e) => {
                    tracing::warn!(error = %e, "the consult prompt could not be rendered; the person is asked in silence");
                    None
                }
            }
        } else {
            None
        };
        let prompts = match (
            self.shared.tts().prompt_ulaw(&disclosure, wpm).await,
            self.shared.tts().prompt_ulaw(&callback, wpm).await,
        ) {
            (Ok(disclosure), Ok(callback)) => Some(crate::call::bridge::HandoffPrompts {
                disclosure,
                callback,
                consult,
            }),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %e, "caller prompts could not be rendered; the apology prompt stands in");
                let apology = Arc::clone(&self.shared.apology().goodbye);
                Some(crate::call::bridge::HandoffPrompts {
                    disclosure: Arc::clone(&apology),
                    callback: apology,
                    consult,
                })
            }
        };
        (prompts, disclosure)
    }

    fn save_context(&mut self) {
        if self.builder.context().escalation_reason.is_none()
            || self.builder.context().summary.is_empty()
        {
            let text = summary::extractive(self.builder.context());
            self.builder.set_summary(text);
        }
        self.shared.store().write(Write::Context {
            call_id: self.call_id.clone(),
            json: serde_json::to_string(self.builder.context()).unwrap_or_default(),
            summary_source: serde_json::to_string(&self.summary_source).unwrap_or_default(),
            updated_at: rfc3339(SystemTime::now()),
        });
    }
}

/// The caller's phone number, if the context has one.
fn caller_number(ctx: &HandoffContext) -> Option<String> {
    ctx.caller_number()
}
