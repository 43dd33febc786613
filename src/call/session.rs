//! The per-call task: drives one [`CallBridge`] with the caller's and the AI
//! agent's leg events and a timer, and carries out its outputs.

use crate::call::bridge::{BridgeOutput, CallBridge, RoutingRequest};
use crate::call::guard::Dropped;
use crate::call::insight::{Escalation, Insight, InsightEvent, InsightOutcome};
use crate::call::recorder::Recorder;
use crate::call::services::CallServices;
use crate::call::timeline::{Timeline, TimelineKind};
use crate::domain::{HandoffStep, Party};
use crate::legs::agent::{self, AgentLegConfig};
use crate::legs::alarm::Alarm;
use crate::legs::media_streams::StartMeta;
use crate::legs::{HangupCause, LegCommand, LegEvent, recv_or_pending};
use crate::routing::RoutingEvent;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc;
use tracing::Instrument;

/// What a call starts with.
#[derive(Debug, Clone)]
pub struct CallSetup {
    /// Gateway call id (unique).
    pub call_id: String,
    /// The caller's `start` metadata.
    pub start: StartMeta,
    /// The caller's stream id.
    pub stream_sid: String,
    /// When the call started (monotonic).
    pub started: Instant,
    /// When the call started (wall clock, for display).
    pub started_wall: SystemTime,
}

/// Registers an arriving call and starts its task (the gateway's
/// [`CallStarter`](crate::legs::CallStarter) does this); returns the call id.
pub fn start_call(services: Arc<dyn CallServices>, arrival: crate::legs::CallArrival) -> String {
    let call_id = services.registry().begin(
        &arrival.start.call_sid,
        &arrival.stream_sid,
        crate::util::unix_seconds(arrival.started_wall),
    );
    let setup = CallSetup {
        call_id: call_id.clone(),
        start: arrival.start,
        stream_sid: arrival.stream_sid,
        started: arrival.started,
        started_wall: arrival.started_wall,
    };
    tokio::spawn(run_call(services, setup, arrival.events, arrival.commands));
    call_id
}

/// Runs one call to its end, then files its timeline in the registry.
pub async fn run_call(
    shared: Arc<dyn CallServices>,
    setup: CallSetup,
    caller_rx: mpsc::Receiver<LegEvent>,
    caller_tx: mpsc::Sender<LegCommand>,
) {
    let span = tracing::info_span!("call", call_id = %setup.call_id);
    drive(shared, setup, caller_rx, caller_tx)
        .instrument(span)
        .await;
}

async fn drive(
    shared: Arc<dyn CallServices>,
    setup: CallSetup,
    mut caller_rx: mpsc::Receiver<LegEvent>,
    caller_tx: mpsc::Sender<LegCommand>,
) {
    let config = shared.config();
    let mut timeline = Timeline::new(&setup.call_id, setup.started, setup.started_wall)
        .with_max_events(config.server.max_timeline_events);
    timeline.push(
        setup.started,
        TimelineKind::CallStarted {
            call_sid: setup.start.call_sid.clone(),
            stream_sid: setup.stream_sid.clone(),
        },
    );
    let (mut agent_tx, mut agent_rx) = dial_agent(config, &setup);
    let record_dir = config.recording.dir.join(&setup.call_id);
    let mut recorder = config
        .recording
        .enabled
        .then(|| Recorder::spawn(record_dir.clone(), setup.started));
    let mut bridge = CallBridge::new(
        bridge_config(config, Arc::clone(shared.redactor())),
        shared.apology().clone(),
    );
    let (insight, mut escalations) = Insight::spawn(
        Arc::clone(&shared),
        &setup.call_id,
        &setup.start,
        setup.started_wall,
    );
    let mut agent_open = true;
    let mut caller_drops = 0u64;
    let (routing_tx, mut routing_rx) = mpsc::channel::<RoutingEvent>(16);
    let mut handoff = HandoffLinks::default();
    // A caller frame being processed: from its arrival until its outputs are handed on.
    let mut frame_started: Option<Instant> = None;
    let time_limit = setup.started + Duration::from_secs(config.server.max_call_seconds);
    let mut alarm = Alarm::new();
    // A peer flooding refused messages must not flood the log as well.
    let mut refused_logs = LogBudget::new(20);
    // The gateway's "say goodbye and hang up" at the end of a drain.
    let mut closing = shared.closing().subscribe();
    let mut closing_heard = false;
    // A supervisor's requests (take over).
    let (control_tx, mut control_rx) = mpsc::channel::<crate::call::registry::ControlRequest>(4);
    // A supervisor on the call's audio: who, their feed, their voice.
    let mut monitor: Option<crate::legs::MonitorLink> = None;
    shared.registry().attach_control(&setup.call_id, control_tx);

    loop {
        let now = Instant::now();
        while let Some(out) = bridge.poll_output(now) {
            match out {
                BridgeOutput::ToCaller(cmd) => {
                    if let (Some(r), LegCommand::Audio(bytes)) = (recorder.as_mut(), &cmd) {
                        r.heard(now, bytes);
                    }
                    if let Err(mpsc::error::TrySendError::Full(_)) = caller_tx.try_send(cmd) {
                        caller_drops += 1;
                        if caller_drops == 1 {
                            timeline.push(
                                now,
                                TimelineKind::AudioDropped {
                                    leg: Party::Caller,
                                    reason: "caller socket is not keeping up".into(),
                                },
                            );
                        }
                    }
                }
                BridgeOutput::ToSupervisor(frame) => {
                    if let Some(m) = &monitor
                        && let Err(mpsc::error::TrySendError::Closed(_)) =
                            m.to_supervisor.try_send(frame)
                    {
                        let who = m.supervisor.clone();
                        monitor = None;
                        bridge.supervise(who, None);
                    }
                }
                BridgeOutput::ReturnedToAi { redial, outcome } => {
                    tracing::info!(
                        redial,
                        outcome = outcome.as_str(),
                        "the caller is back with the AI agent"
                    );
                    shared
                        .routing()
                        .leave(&setup.call_id, crate::routing::WithdrawReason::ReturnedToAi);
                    shared.registry().set_human_agent(&setup.call_id, None);
                    shared.metrics().returned_to_ai(outcome.as_str());
                    handoff.back_to_ai();
                    if redial {
                        (agent_tx, agent_rx) = dial_agent(config, &setup);
                        agent_open = true;
                    }
                }
                BridgeOutput::ToAgent(LegCommand::HandoffResult(mut result)) => {
                    result.conversation = conversation(&timeline);
                    if agent_tx
                        .try_send(LegCommand::HandoffResult(result))
                        .is_err()
                    {
                        tracing::warn!("the AI agent could not be told the handoff result");
                    }
                }
                BridgeOutput::ToAgent(cmd) => {
                    if let Err(mpsc::error::TrySendError::Full(_)) = agent_tx.try_send(cmd) {
                        timeline.push(
                            now,
                            TimelineKind::AudioDropped {
                                leg: Party::AiAgent,
                                reason: "agent socket is not keeping up".into(),
                            },
                        );
                    }
                }
                BridgeOutput::ToHuman(cmd) => {
                    if let (Some(r), LegCommand::Audio(bytes)) = (recorder.as_mut(), &cmd) {
                        r.agent_heard(now, bytes);
                    }
                    if let Some((_, tx)) = &handoff.human_tx
                        && let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send(cmd)
                    {
                        tracing::warn!("human agent socket is not keeping up; audio dropped");
                    }
                }
                BridgeOutput::Routing(request) => {
                    handoff.execute(
                        shared.as_ref(),
                        &setup.call_id,
                        request,
                        &routing_tx,
                        &mut timeline,
                        now,
                    );
                }
                BridgeOutput::Timeline(kind) => {
                    let refused = matches!(kind, TimelineKind::ProtocolError { .. });
                    if !refused || refused_logs.allow() {
                        log_event(&kind);
                    }
                    store_handoff_figures(shared.as_ref(), &setup.call_id, &kind);
                    if let TimelineKind::HandoffStep { step, .. } = &kind
                        && let Some(stage) = crate::call::registry::CallerStage::after(*step)
                    {
                        shared.registry().set_stage(&setup.call_id, stage);
                    }
                    handoff.time_stage(shared.metrics(), &kind, now);
                    insight.observe(now, &kind);
                    timeline.push(now, kind);
                }
                BridgeOutput::Ended(reason) => {
                    tracing::info!(?reason, "call ended");
                    let (caller, agent) = bridge.dropped();
                    for (peer, d) in [("caller", caller), ("agent", agent)] {
                        shared.metrics().peer_drops(peer, "dtmf", d.dtmf);
                        shared
                            .metrics()
                            .peer_drops(peer, "media_bytes", d.media_bytes);
                        shared.metrics().peer_drops(peer, "marks", d.marks);
                        if d != Dropped::default() {
                            tracing::warn!(
                                peer,
                                ?d,
                                "a peer sent beyond its limits; the excess was dropped"
                            );
                        }
                    }
                    for (kind, n) in &timeline.suppressed {
                        shared.metrics().peer_drops("call", kind, *n);
                    }
                }
            }
        }
        if let Some(at) = frame_started.take() {
            shared
                .metrics()
                .frame_processing
                .observe(at.elapsed().as_secs_f64());
        }
        if bridge.is_ended() {
            break;
        }
        if now >= time_limit {
            tracing::warn!(
                max_call_seconds = config.server.max_call_seconds,
                "call reached its time limit"
            );
            bridge.time_limit_reached();
            continue;
        }
        let wake = Some(tokio::time::Instant::from_std(
            bridge
                .poll_at(now)
                .map_or(time_limit, |at| at.min(time_limit)),
        ));
        tokio::select! {
            event = caller_rx.recv() => {
                let event = event.unwrap_or_else(|| {
                    LegEvent::Hangup(HangupCause::Lost("caller leg ended".into()))
                });
                let at = Instant::now();
                if let (Some(r), LegEvent::Audio(bytes)) = (recorder.as_mut(), &event) {
                    r.said(at, bytes);
                }
                let audio = matches!(event, LegEvent::Audio(_));
                bridge.handle_caller(event, at);
                if audio {
                    frame_started = Some(at);
                }
            }
            event = agent_rx.recv(), if agent_open => {
                let event = event.unwrap_or_else(|| {
                    agent_open = false;
                    LegEvent::Hangup(HangupCause::Lost("agent leg ended".into()))
                });
                bridge.handle_agent(event, Instant::now());
            }
            Some(event) = escalations.recv() => {
                let at = event.happened_at();
                timeline.push(at, insight_event(&event));
                match event {
                    InsightEvent::Escalated(e) => {
                        handoff.escalation = Some((e.decision.urgency, Arc::clone(&e.context), e.callback_number.clone()));
                        handoff.last_step = Some((HandoffStep::Escalating, at));
                        shared.metrics().escalation(e.decision.trigger.as_str(), e.decision.urgency.as_str());
                        handoff.skill = e.skill.clone();
                        bridge.set_no_agent_to_ai(
                            shared.config().routing.when_no_agent_for(&e.skill)
                                == crate::config::NoAgentFallback::Ai,
                        );
                        timeline.push(at, TimelineKind::HandoffStep {
                            step: HandoffStep::Disclosure,
                            agent: None,
                            detail: Some(e.disclosure_text.clone()),
                        });
                        if let Some(prompts) = e.prompts {
                            bridge.escalate(prompts, at);
                        }
                    }
                    InsightEvent::WhisperReady(w, ulaw) => {
                        handoff.whisper_seconds = Some(w.seconds());
                        bridge.whisper_ready(ulaw, at);
                    }
                    InsightEvent::WhisperFailed(_) => bridge.whisper_failed(at),
                    InsightEvent::Summary(_) => {}
                }
            }
            Some(event) = routing_rx.recv() => {
                let at = Instant::now();
                match event {
                    RoutingEvent::Offered { agent } => bridge.agent_offered(agent, at),
                    RoutingEvent::Overflowed { agent } => bridge.overflowed(agent),
                    RoutingEvent::Answered { agent, link } => {
                        shared.store().write(crate::store::Write::Handoff {
                            call_id: setup.call_id.clone(),
                            agent_id: agent.clone(),
                            answered_at: crate::brief::context::rfc3339(SystemTime::now()),
                            whisper_seconds: handoff.whisper_seconds,
                        });
                        handoff.answered_at = Some(at);
                        shared.registry().set_human_agent(&setup.call_id, Some(&agent));
                        handoff.human_tx = Some((agent.clone(), link.commands));
                        handoff.human_rx = Some(link.events);
                        // Outside destinations (and phone agents so configured)
                        // accept after the whisper: 1 takes it, 2 passes it on.
                        let consult = shared
                            .config()
                            .routing
                            .agents
                            .iter()
                            .find(|a| a.id == agent && a.consult_seconds > 0)
                            .map(|a| Duration::from_secs(a.consult_seconds));
                        bridge.consult_after_whisper(consult);
                        bridge.agent_answered(agent, at);
                    }
                    RoutingEvent::Declined { agent, reason } => {
                        let voicemail = reason == crate::routing::WithdrawReason::Voicemail;
                        bridge.agent_declined(agent, voicemail.then_some("voicemail"), at)
                    }
                    RoutingEvent::NoAgent { reason } => bridge.no_agent(reason, at),
                }
            }
            event = recv_or_pending(handoff.human_rx.as_mut()) => {
                let event = event.unwrap_or_else(|| {
                    handoff.human_rx = None;
                    LegEvent::Hangup(HangupCause::Lost("human agent leg ended".into()))
                });
                bridge.handle_human(event, Instant::now());
            }
            voice = recv_or_pending(monitor.as_mut().map(|m| &mut m.from_supervisor)) => match voice {
                Some(frame) => bridge.supervisor_audio(frame),
                None => {
                    if let Some(m) = monitor.take() {
                        tracing::info!(supervisor = %m.supervisor, "supervisor left the call");
                        bridge.supervise(m.supervisor, None);
                    }
                }
            },
            Some(request) = control_rx.recv() => match request {
                crate::call::registry::ControlRequest::Monitor(link) => {
                    tracing::info!(supervisor = %link.supervisor, mode = link.mode.as_str(), "supervisor on the call");
                    bridge.supervise(link.supervisor.clone(), Some(link.mode));
                    monitor = Some(link);
                }
                crate::call::registry::ControlRequest::MonitorMode { supervisor, mode } => {
                    if let Some(m) = monitor.as_mut().filter(|m| m.supervisor == supervisor) {
                        tracing::info!(%supervisor, mode = mode.as_str(), "supervisor changes mode");
                        m.mode = mode;
                        bridge.supervise(supervisor, Some(mode));
                    }
                }
                crate::call::registry::ControlRequest::Call(request) => match request {
                    crate::domain::CallControl::Hint { supervisor, text } => {
                        if !bridge.supervisor_hint(supervisor.clone(), text) {
                            tracing::info!(%supervisor, "hint dropped: the caller is not with the AI agent");
                        }
                    }
                    crate::domain::CallControl::ReturnToAi { by, note } => {
                        if bridge.return_to_ai(note, Instant::now()) {
                            tracing::info!(%by, "returned the caller to the AI agent");
                        } else {
                            tracing::info!(%by, "return to the AI ignored: the call is not with a person or waiting for one");
                        }
                    }
                    crate::domain::CallControl::TakeOver { supervisor } => {
                        if handoff.escalation.is_none() && handoff.reserved_for.is_none() {
                            tracing::info!(%supervisor, "a supervisor takes the call over");
                            handoff.reserved_for = Some(supervisor.clone());
                            // As if the AI agent asked for a person: the monitor decides
                            // (policy, elevated), the caller is told, and the call is
                            // queued for this supervisor only.
                            let kind = TimelineKind::EscalationRequested {
                                trigger: crate::domain::Trigger::Policy,
                                description: format!("supervisor {supervisor} took the call over"),
                                urgency: crate::domain::Urgency::Elevated,
                            };
                            let at = Instant::now();
                            insight.observe(at, &kind);
                            timeline.push(at, kind);
                        } else {
                            tracing::info!(%supervisor, "take-over ignored: the call is already with the handoff");
                        }
                    }
                },
            },
            changed = closing.changed(), if !closing_heard => {
                closing_heard = true;
                if changed.is_ok() && *closing.borrow() {
                    tracing::warn!("the gateway is stopping: saying goodbye to the caller");
                    bridge.close_for_shutdown(Instant::now());
                }
            }
            () = alarm.ring_at(wake) => {}
        }
    }
    // Wait for the final context (an LLM summary may still be in flight), and
    // record a decision that arrived as the call ended.
    let budget = Duration::from_millis(config.summary.budget_ms) + Duration::from_secs(1);
    let outcome = insight.finish(budget).await;
    while let Ok(event) = escalations.try_recv() {
        timeline.push(event.happened_at(), insight_event(&event));
    }
    shared
        .routing()
        .leave(&setup.call_id, crate::routing::WithdrawReason::CallerHangup);
    drop(agent_tx);
    drop(caller_tx);
    if let Some(r) = recorder.take() {
        r.finish().await;
        if let Some(outcome) = &outcome {
            write_brief_files(&record_dir, outcome).await;
        }
        let path = record_dir.join("timeline.json");
        match serde_json::to_vec_pretty(&timeline) {
            Ok(json) => {
                if let Err(e) = tokio::fs::write(&path, json).await {
                    tracing::warn!(path = %path.display(), error = %e, "cannot write timeline");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot serialise timeline"),
        }
    }
    shared.registry().finish(timeline);
}

/// Dials the AI agent for the call (again, when the caller comes back to it
/// after a person): the call's own choice of protocol, else the configured one.
fn dial_agent(
    config: &crate::config::Config,
    setup: &CallSetup,
) -> (mpsc::Sender<LegCommand>, mpsc::Receiver<LegEvent>) {
    use crate::config::AgentAdapter;
    let adapter = match setup.start.custom_parameters.get("agent") {
        Some(name) => AgentAdapter::parse(name).unwrap_or_else(|| {
            tracing::warn!(requested = %name, "unknown customParameters.agent; using agent.adapter");
            config.agent.adapter
        }),
        None => config.agent.adapter,
    };
    let adapter_name = adapter.as_str();
    if adapter == AgentAdapter::Realtime {
        let rt = crate::legs::realtime::RealtimeConfig::from_config(config);
        tracing::info!(call_sid = %setup.start.call_sid, agent = %rt.dial_url(), adapter = adapter_name, "dialling the AI agent");
        crate::legs::realtime::spawn(rt)
    } else {
        tracing::info!(call_sid = %setup.start.call_sid, agent = %config.agent.url, adapter = adapter_name, "dialling the AI agent");
        agent::spawn(
            AgentLegConfig::from_config(config),
            setup.start.clone(),
            setup.stream_sid.clone(),
        )
    }
}

/// The conversation so far, from the timeline (already redacted), for an AI
/// agent the caller comes back to.
fn conversation(timeline: &Timeline) -> Vec<crate::domain::Turn> {
    timeline
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            TimelineKind::Turn {
                role,
                content,
                confidence,
            } => Some(crate::domain::Turn {
                role: *role,
                content: content.clone(),
                confidence: *confidence,
            }),
            _ => None,
        })
        .collect()
}

/// Files the handoff's quality figures as they happen.
fn store_handoff_figures(shared: &dyn CallServices, call_id: &str, kind: &TimelineKind) {
    use crate::store::Write;
    let now = || crate::brief::context::rfc3339(SystemTime::now());
    if let TimelineKind::HandoffStep { step, agent, .. } = kind
        && step.is_counted()
    {
        shared.store().write(Write::HandoffOutcome {
            call_id: call_id.to_string(),
            outcome: step.as_str().to_string(),
            agent: agent.clone(),
            at: now(),
        });
    }
    match kind {
        TimelineKind::HandoffStep { step, .. } if *step == HandoffStep::Merged => {
            shared.store().write(Write::Merged {
                call_id: call_id.to_string(),
                merged_at: now(),
            })
        }
        TimelineKind::AgentFirstWords { after_merge_ms, .. } => {
            shared.store().write(Write::AgentFirstWords {
                call_id: call_id.to_string(),
                ms: *after_merge_ms,
            })
        }
        _ => {}
    }
}

fn insight_event(event: &InsightEvent) -> TimelineKind {
    match event {
        InsightEvent::Escalated(e) => escalation_event(e),
        InsightEvent::Summary(source) => TimelineKind::HandoffStep {
            step: HandoffStep::Summary,
            agent: None,
            detail: serde_json::to_string(source).ok(),
        },
        InsightEvent::WhisperReady(w, _) => TimelineKind::WhisperRendered {
            text: w.text.clone(),
            seconds: (w.seconds() * 1000.0).round() / 1000.0,
            renders: w.renders,
            render_ms: (w.render_ms * 10.0).round() / 10.0,
            engine: w.engine.to_string(),
            tts_failure: w.tts_failure.clone(),
        },
        InsightEvent::WhisperFailed(error) => TimelineKind::WhisperFailed {
            error: error.clone(),
        },
    }
}

/// Writes context.json (the context the whisper was rendered from, when there is
/// one), whisper.txt and whisper.wav (8 kHz) next to the call's recordings.
async fn write_brief_files(dir: &std::path::Path, outcome: &InsightOutcome) {
    let context = outcome
        .whisper
        .as_ref()
        .map(|(_, ctx)| ctx)
        .unwrap_or(&outcome.context);
    let mut files: Vec<(&str, Vec<u8>)> =
        vec![("context.json", context.to_json_pretty().into_bytes())];
    if let Some((whisper, _)) = &outcome.whisper {
        files.push(("whisper.txt", format!("{}\n", whisper.text).into_bytes()));
        match whisper.samples_at(8000) {
            Ok(samples) => {
                let path = dir.join("whisper.wav");
                let written = crate::media::wav::WavSink::create(&path, 8000)
                    .and_then(|mut sink| sink.write(&samples).and_then(|_| sink.finalize()));
                if let Err(e) = written {
                    tracing::warn!(error = %e, "cannot write whisper.wav");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot resample the whisper"),
        }
    }
    for (name, bytes) in files {
        let path = dir.join(name);
        if let Err(e) = tokio::fs::write(&path, bytes).await {
            tracing::warn!(path = %path.display(), error = %e, "cannot write");
        }
    }
}

fn escalation_event(e: &Escalation) -> TimelineKind {
    TimelineKind::EscalationDecided {
        trigger: e.decision.trigger,
        urgency: e.decision.urgency,
        description: e.decision.description.clone(),
        rule: e.decision.rule.to_string(),
        evidence: e.decision.evidence.clone(),
        why: Box::new(e.decision.why()),
        decision_latency_us: e.latency.as_micros() as u64,
        summary: serde_json::to_value(&e.summary_source).unwrap_or_default(),
    }
}

/// The call's side of the handoff: what routing and the human agent need.
#[derive(Default)]
struct HandoffLinks {
    escalation: Option<(
        crate::domain::Urgency,
        Arc<crate::brief::context::HandoffContext>,
        Option<String>,
    )>,
    human_tx: Option<(String, mpsc::Sender<LegCommand>)>,
    human_rx: Option<mpsc::Receiver<LegEvent>>,
    answered_at: Option<Instant>,
    whisper_seconds: Option<f64>,
    tried: std::collections::HashSet<String>,
    /// The queue the call joins ("" = any agent).
    skill: String,
    /// A supervisor who took the call over: the only agent it is offered to.
    reserved_for: Option<String>,
    /// The last timed handoff step and when (for the stage histograms).
    last_step: Option<(HandoffStep, Instant)>,
}

impl HandoffLinks {
    /// Feeds the handoff stage histograms: decision → ringing → answered →
    /// whisper started → merged (each stage timed from the step before it),
    /// and the whisper length histogram when the whisper starts.
    fn time_stage(&mut self, metrics: &crate::metrics::Metrics, kind: &TimelineKind, now: Instant) {
        let TimelineKind::HandoffStep { step, .. } = kind else {
            return;
        };
        use HandoffStep::*;
        // Stages are timed from the decision (the step that starts the handoff).
        let (stage, from, this) = match *step {
            Ringing => ("decision_to_ringing", Escalating, Ringing),
            Answered => ("ringing_to_answered", Ringing, Answered),
            WhisperStarted => ("answered_to_whisper", Answered, WhisperStarted),
            Merged => ("whisper_to_merged", WhisperStarted, Merged),
            _ => return,
        };
        if this == WhisperStarted
            && let Some(seconds) = self.whisper_seconds
        {
            // The whisper that plays (it may have been rendered more than once).
            metrics.whisper_seconds.observe(seconds);
        }
        if let Some((last, at)) = self.last_step
            && last == from
        {
            metrics.stage(stage, now.saturating_duration_since(at).as_secs_f64());
        }
        self.last_step = Some((this, now));
    }

    /// The urgency and context a queued call is offered with.
    fn queue_entry(
        &self,
    ) -> (
        crate::domain::Urgency,
        Arc<crate::brief::context::HandoffContext>,
    ) {
        match &self.escalation {
            Some((u, c, _)) => (*u, Arc::clone(c)),
            None => (Default::default(), Arc::default()),
        }
    }

    /// The caller is back with the AI: a later escalation starts afresh.
    fn back_to_ai(&mut self) {
        self.escalation = None;
        self.human_tx = None;
        self.human_rx = None;
        self.answered_at = None;
        self.whisper_seconds = None;
        self.tried.clear();
        self.reserved_for = None;
        self.last_step = None;
    }

    /// Puts the call in the queue for its skill, never for the agents tried
    /// before, for `only` that agent when given.
    fn queue(
        &self,
        shared: &dyn CallServices,
        call_id: &str,
        routing_tx: &mpsc::Sender<RoutingEvent>,
        only: Option<String>,
    ) -> crate::routing::QueueTicket {
        let (urgency, context) = self.queue_entry();
        shared.routing().enqueue_for(
            call_id,
            &self.skill,
            urgency,
            context,
            routing_tx.clone(),
            self.tried.clone(),
            only,
        )
    }

    fn execute(
        &mut self,
        shared: &dyn CallServices,
        call_id: &str,
        request: RoutingRequest,
        routing_tx: &mpsc::Sender<RoutingEvent>,
        timeline: &mut Timeline,
        now: Instant,
    ) {
        match request {
            RoutingRequest::JoinQueue => {
                let (urgency, context) = self.queue_entry();
                if let Some(webhook) = shared.webhook().cloned() {
                    let body = serde_json::json!({
                        "event": "screen_pop",
                        "callId": call_id,
                        "urgency": urgency,
                        "context": context.as_ref(),
                    })
                    .to_string();
                    let call = call_id.to_string();
                    tokio::spawn(tracing::Instrument::in_current_span(async move {
                        match webhook.deliver(body).await {
                            Ok(attempts) => {
                                tracing::info!(call = %call, attempts, "screen-pop webhook delivered")
                            }
                            Err(e) => {
                                tracing::error!(call = %call, error = %e, "screen-pop webhook not delivered")
                            }
                        }
                    }));
                }
                let ticket = self.queue(shared, call_id, routing_tx, self.reserved_for.clone());
                shared
                    .registry()
                    .set_estimated_wait(call_id, ticket.estimated_wait);
                timeline.push(
                    now,
                    TimelineKind::HandoffStep {
                        step: HandoffStep::Queued,
                        agent: None,
                        detail: Some(format!(
                            "{}position {}, estimated wait {}",
                            if self.skill.is_empty() {
                                String::new()
                            } else {
                                format!("{} queue, ", self.skill)
                            },
                            ticket.position,
                            crate::brief::prompts::wait_for_caller(ticket.estimated_wait)
                        )),
                    },
                );
            }
            RoutingRequest::OfferNext { instead_of, missed } => {
                let why = if missed {
                    crate::routing::WithdrawReason::RingTimeout
                } else {
                    crate::routing::WithdrawReason::Declined
                };
                if let Err(crate::routing::RoutingError::CallGone(_)) =
                    shared.routing().decline(&instead_of, call_id, why)
                {
                    // The call had left the queue (the agent had answered, then dropped): back in.
                    self.tried.insert(instead_of);
                    self.queue(shared, call_id, routing_tx, None);
                    timeline.push(
                        now,
                        TimelineKind::HandoffStep {
                            step: HandoffStep::Requeued,
                            agent: None,
                            detail: None,
                        },
                    );
                }
            }
            RoutingRequest::Transfer { from, target } => {
                // The transferring agent is not offered it again; a named
                // agent is the only one offered it, a skill queues it there.
                self.tried.insert(from);
                let only = match &target {
                    crate::domain::TransferTarget::Agent(a) => Some(a.clone()),
                    crate::domain::TransferTarget::Skill(s) => {
                        self.skill = s.clone();
                        None
                    }
                };
                let ticket = self.queue(shared, call_id, routing_tx, only);
                timeline.push(
                    now,
                    TimelineKind::HandoffStep {
                        step: HandoffStep::Requeued,
                        agent: None,
                        detail: Some(format!(
                            "transfer to {target}: position {}, estimated wait {}",
                            ticket.position,
                            crate::brief::prompts::wait_for_caller(ticket.estimated_wait)
                        )),
                    },
                );
            }
            RoutingRequest::SaveCallback { reason } => {
                shared
                    .routing()
                    .leave(call_id, crate::routing::WithdrawReason::CallbackChosen);
                let (number, context) = match &self.escalation {
                    Some((_, c, n)) => (n.clone().unwrap_or_default(), c.to_json_pretty()),
                    None => (String::new(), "{}".into()),
                };
                shared.store().write(crate::store::Write::Callback {
                    call_id: call_id.to_string(),
                    number,
                    reason: reason.clone(),
                    context,
                    created_at: crate::brief::context::rfc3339(SystemTime::now()),
                });
                timeline.push(
                    now,
                    TimelineKind::HandoffStep {
                        step: HandoffStep::CallbackSaved,
                        agent: None,
                        detail: Some(reason),
                    },
                );
            }
            RoutingRequest::Release { agent } => {
                let handled = self
                    .answered_at
                    .map(|a| now.saturating_duration_since(a))
                    .unwrap_or_default();
                shared.routing().call_finished(&agent, call_id, handled);
                self.human_tx = None;
            }
        }
    }
}

/// Logs the first `first` of a kind of line, then every 1000th with the count.
struct LogBudget {
    first: u64,
    seen: u64,
}

impl LogBudget {
    fn new(first: u64) -> LogBudget {
        LogBudget { first, seen: 0 }
    }

    fn allow(&mut self) -> bool {
        self.seen += 1;
        if self.seen == self.first + 1 {
            tracing::warn!(
                "more refused messages on this call: only every 1000th is logged from here"
            );
        }
        self.seen <= self.first || self.seen.is_multiple_of(1000)
    }
}

fn log_event(kind: &TimelineKind) {
    match kind {
        TimelineKind::Turn {
            role,
            content,
            confidence,
        } => {
            tracing::info!(?role, ?confidence, text = %content, "turn");
        }
        TimelineKind::ProtocolError { leg, error } => {
            tracing::warn!(?leg, %error, "message refused");
        }
        TimelineKind::AgentUnreachable { error } | TimelineKind::AgentLost { error } => {
            tracing::warn!(%error, "AI agent failed; apologising and escalating to a person");
        }
        TimelineKind::AudioDropped { leg, reason } => {
            tracing::warn!(?leg, %reason, "audio dropped")
        }
        TimelineKind::MarkPlayed { .. } => tracing::debug!(?kind, "event"),
        _ => tracing::info!(?kind, "event"),
    }
}

/// The call bridge's tuning from `[media]`, `[routing]` and `[server]`.
fn bridge_config(
    config: &crate::config::Config,
    redactor: Arc<crate::util::pii::Redactor>,
) -> crate::call::bridge::BridgeConfig {
    crate::call::bridge::BridgeConfig {
        redactor,
        playout_lead: Duration::from_millis(config.media.playout_lead_ms),
        max_playout_frames: (config.media.max_playout_seconds * 50) as usize,
        barge_in_on_caller_speech: config.media.barge_in,
        vad: crate::media::vad::VadConfig {
            threshold_dbfs: config.media.vad_threshold_dbfs,
            onset_frames: config.media.vad_onset_frames,
            hangover_frames: config.media.vad_hangover_frames,
        },
        handoff: crate::call::handoff::HandoffTimers {
            ring_timeout: Duration::from_millis(config.routing.ring_timeout_ms),
        },
        limits: crate::call::guard::PeerLimits {
            refused_in_row: config.server.max_refused_in_row.max(1),
            refused_per_window: config.server.max_refused_per_window.max(1),
            refused_window: Duration::from_secs(config.server.refused_window_s),
            dtmf_per_second: config.server.max_dtmf_per_second.max(0.1),
            media_speed: config.server.max_media_speed.max(1.0),
            marks_in_flight: config.server.max_marks_in_flight,
        },
        no_agent_to_ai: config.routing.when_no_agent == crate::config::NoAgentFallback::Ai,
        // A recorded call needs every frame in the call task.
        direct_relay: config.sip.direct_relay
            && !config.recording.enabled
            && crate::legs::sip::relay_plane::running(),
        ..Default::default()
    }
}
