//! `warmline demo`: the gateway, a scripted AI agent and a simulated Twilio
//! caller in one process on loopback. Writes the call's recordings and timeline
//! and checks that the caller really heard the agent.

use crate::assets;
use crate::call::timeline::Timeline;
use crate::call::timeline::TimelineKind;
use crate::config::Config;
use crate::domain::{HandoffStep, Role};
use crate::gateway::{GatewayError, RunningGateway};
use crate::media::analysis::{best_lag_correlation, rms_dbfs};
use crate::media::vad::VadConfig;
use crate::media::wav::{self, WavError};
use crate::sim::agent::{AgentScript, ScriptLine, ScriptReply, ScriptedAgent};
use crate::sim::caller::{self, CallerError, CallerOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use thiserror::Error;

/// The demo failed.
#[derive(Debug, Error)]
pub enum DemoError {
    /// A bundled asset is broken.
    #[error("bundled asset: {0}")]
    Asset(#[from] WavError),
    /// The gateway did not start.
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    /// The simulated agent did not start.
    #[error("scripted agent: {0}")]
    Agent(std::io::Error),
    /// The simulated caller failed.
    #[error(transparent)]
    Caller(#[from] CallerError),
    /// The call did not finish in time.
    #[error("the demo call did not finish within {0:?}")]
    Timeout(Duration),
}

/// What the demo produced.
#[derive(Debug, Clone)]
pub struct DemoReport {
    /// The call's id.
    pub call_id: String,
    /// Folder with the call's files.
    pub call_dir: PathBuf,
    /// The timeline.
    pub timeline: Arc<Timeline>,
    /// For each line the caller should have heard: its text and its best
    /// correlation inside caller_heard.wav.
    pub caller_heard_lines: Vec<(String, f64)>,
    /// The whisper's best correlation inside caller_heard.wav (must be ≈ 0).
    pub whisper_in_caller_audio: Option<f64>,
    /// The whisper's best correlation inside agent_heard.wav (≈ 1).
    pub whisper_in_agent_audio: Option<f64>,
    /// Seconds and RMS level (dBFS) of caller_heard.wav.
    pub heard_stats: (f64, f64),
    /// Seconds and RMS level (dBFS) of caller_said.wav.
    pub said_stats: (f64, f64),
    /// Seconds and RMS level (dBFS) of agent_heard.wav, when a human answered.
    pub agent_heard_stats: Option<(f64, f64)>,
    /// The whisper text, when one was rendered.
    pub whisper_text: Option<String>,
    /// Handoff timings, ms: escalation → screen-pop, accept → first whisper
    /// frame, last whisper frame → first caller frame (merge gap).
    pub timings: DemoTimings,
    /// The handoff quality figures of `GET /v1/stats` after the call.
    pub quality: Option<serde_json::Value>,
}

/// Handoff timings measured in the demo call.
#[derive(Debug, Clone, Copy, Default)]
pub struct DemoTimings {
    /// Escalation decision → screen-pop sent (ms, timeline).
    pub escalation_to_screen_pop_ms: Option<f64>,
    /// Agent's accept → first whisper frame at the agent (ms, measured at the console).
    pub whisper_start_after_accept_ms: Option<f64>,
    /// Last whisper frame → first caller frame at the agent (ms, measured at the console).
    pub merge_gap_ms: Option<f64>,
    /// Whisper length, s.
    pub whisper_seconds: Option<f64>,
    /// Merge → the human agent's first words (ms, VAD on the agent's leg).
    pub merge_to_agent_first_words_ms: Option<f64>,
}

/// The story's AI agent: greets, fails twice on an order lookup, and is escalated.
pub fn escalation_script() -> Result<AgentScript, WavError> {
    let line = script_line;
    let lookup_failed = serde_json::json!({"event": "tool", "tool": {"name": "order_lookup", "ok": false, "detail": "order 8821 not found in the assistant's system", "args": {"orderId": "8821"}, "result": {"error": "not_found", "searched": ["orders", "archive"]}}});
    let intent = serde_json::json!({"event": "intent", "intent": {"primary": "order_status", "unresolvedItems": ["order 8821 not delivered"]}});
    let customer = serde_json::json!({"event": "customer", "customer": {"id": "C-1042", "name": "Sarah Chen", "verified": true}});
    Ok(AgentScript {
        greeting: greeting()?,
        replies: vec![
            ScriptReply {
                caller_said: "Hi. I'm calling about my order. It still hasn't arrived.".into(),
                line: line(
                    assets::DEMO_FAIL_WAVS[0],
                    "agent_fail_1.wav",
                    "I'm sorry, I'm not sure I can find that. Could you repeat your order number?",
                    0.55,
                )?,
                events: vec![customer, intent],
            },
            ScriptReply {
                caller_said: "It's order eight eight two one. I already told you.".into(),
                line: line(
                    assets::DEMO_FAIL_WAVS[1],
                    "agent_fail_2.wav",
                    "Unfortunately I can't see that order in my system.",
                    0.5,
                )?,
                events: vec![lookup_failed],
            },
        ],
        vad: VadConfig {
            hangover_frames: 30,
            ..VadConfig::default()
        },
        clear_on_barge_in: false,
    })
}

fn stats(samples: &[i16]) -> (f64, f64) {
    (samples.len() as f64 / 8000.0, rms_dbfs(samples))
}

/// How well the first two seconds of a line are found in a recording (a short
/// probe, so that one late frame elsewhere in a long line cannot hide it).
fn score_in(reference_ulaw: &[u8], recording: &[i16]) -> f64 {
    let mut pcm = Vec::new();
    let probe = &reference_ulaw[..reference_ulaw.len().min(16_000)];
    crate::media::g711::decode_ulaw(probe, &mut pcm);
    best_lag_correlation(&pcm, recording, 8).1
}

/// Runs the demo call — the AI fails twice, the call is escalated, a human agent
/// answers, hears the whisper, and talks with the caller — writing `<out>/<call-id>/…`.
pub async fn run(mut config: Config, out: &Path) -> Result<DemoReport, DemoError> {
    let script = escalation_script()?;
    let ai_lines: Vec<ScriptLine> = std::iter::once(script.greeting.clone())
        .chain(script.replies.iter().map(|r| r.line.clone()))
        .collect();
    let agent = ScriptedAgent::start(script)
        .await
        .map_err(DemoError::Agent)?;
    config.agent.url = agent.url();
    config.server.listen = "127.0.0.1:0".into();
    config.recording.enabled = true;
    config.recording.dir = out.to_path_buf();
    config.store.path = out.join("warmline.db");
    config.routing.agents.push(crate::config::AgentSeed {
        id: "alex".into(),
        name: "Alex Moreno".into(),
        token: "demo-console-token".into(),
        skills: vec![],
        sip_uri: String::new(),
        supervisor: false,
        consult_seconds: 0,
        dtmf_after_answer: String::new(),
        voicemail_after_ms: 0,
        hours: Default::default(),
    });
    let gateway = RunningGateway::start(config).await?;
    let human_voice = assets::ulaw(assets::DEMO_HUMAN_AGENT_WAV, "human_agent.wav")?;
    let human = tokio::spawn(crate::sim::human::run(crate::sim::human::HumanOptions {
        answer_after: Duration::from_secs(2),
        say: human_voice.clone(),
        hang_up_after: Some(Duration::from_secs(3)),
        max_duration: Duration::from_secs(90),
        wrapup: Some(serde_json::json!({
            "resolved": true,
            "callerRepeated": false,
            "contextAccurate": true,
            "notes": "Refund for order 8821 issued by phone."
        })),
        ..crate::sim::human::HumanOptions::new(
            &format!("ws://{}", gateway.addr),
            "alex",
            "demo-console-token",
        )
    }));
    tokio::time::sleep(Duration::from_millis(200)).await;

    let stamp = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut options = CallerOptions::new(
        gateway.media_url(),
        assets::ulaw(assets::DEMO_CALLER_WAV, "caller.wav")?,
        stamp,
    );
    options.call_sid = format!("CAdemo{stamp}");
    options
        .custom_parameters
        .insert("from".into(), "+15550100".into());
    options.tail = Duration::from_secs(1);
    println!(
        "warmline demo: caller → {} → scripted AI agent (fails twice) → human agent console; about {} s of real-time audio…",
        gateway.media_url(),
        options.audio.len() / 8000 + 1
    );
    caller::run(options).await?;
    let human = human.await.ok().and_then(Result::ok);
    let wait = Duration::from_secs(10);
    let timeline = gateway
        .shared
        .registry
        .wait_finished(1, wait)
        .await
        .into_iter()
        .next()
        .ok_or(DemoError::Timeout(wait))?;
    let _ = gateway.shared.store.flush().await;
    let quality = gateway.shared.store.stats().await.ok();
    gateway.shutdown().await;

    let call_dir = out.join(&timeline.call_id);
    let heard = wav::read_mono_file(&call_dir.join("caller_heard.wav"), 8000)?;
    let said = wav::read_mono_file(&call_dir.join("caller_said.wav"), 8000)?;
    let agent_heard = wav::read_mono_file(&call_dir.join("agent_heard.wav"), 8000).ok();
    let whisper_pcm = wav::read_mono_file(&call_dir.join("whisper.wav"), 8000).ok();
    let mut caller_heard_lines: Vec<(String, f64)> = ai_lines
        .iter()
        .map(|l| (format!("AI: {}", l.text), score_in(&l.audio, &heard)))
        .collect();
    caller_heard_lines.push((
        "Human agent: Hi Sarah, this is Alex from Acme…".into(),
        score_in(&human_voice, &heard),
    ));
    let whisper_in = |rec: &[i16]| {
        whisper_pcm
            .as_ref()
            .map(|w| best_lag_correlation(&w[..w.len().min(8000 * 4)], rec, 8).1)
    };
    let at = |pred: &dyn Fn(&TimelineKind) -> bool| {
        timeline
            .events
            .iter()
            .find(|e| pred(&e.kind))
            .map(|e| e.at_ms)
    };
    let decided = at(&|k| matches!(k, TimelineKind::EscalationDecided { .. }));
    let ringing = at(
        &|k| matches!(k, TimelineKind::HandoffStep { step, .. } if *step == HandoffStep::Ringing),
    );
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let timings = DemoTimings {
        escalation_to_screen_pop_ms: decided.zip(ringing).map(|(d, r)| r - d),
        whisper_start_after_accept_ms: human
            .as_ref()
            .and_then(|h| h.first_audio_at.zip(h.accepted_at))
            .map(|(a, b)| ms(a.saturating_duration_since(b))),
        merge_gap_ms: human
            .as_ref()
            .and_then(|h| h.first_caller_frame_at.zip(h.last_whisper_frame_at))
            .map(|(c, w)| ms(c.saturating_duration_since(w))),
        whisper_seconds: whisper_pcm.as_ref().map(|w| w.len() as f64 / 8000.0),
        merge_to_agent_first_words_ms: timeline.events.iter().find_map(|e| match e.kind {
            TimelineKind::AgentFirstWords { after_merge_ms, .. } => Some(after_merge_ms as f64),
            _ => None,
        }),
    };
    Ok(DemoReport {
        call_id: timeline.call_id.clone(),
        whisper_in_caller_audio: whisper_in(&heard),
        whisper_in_agent_audio: agent_heard.as_deref().and_then(whisper_in),
        heard_stats: stats(&heard),
        said_stats: stats(&said),
        agent_heard_stats: agent_heard.as_deref().map(stats),
        whisper_text: std::fs::read_to_string(call_dir.join("whisper.txt"))
            .ok()
            .map(|s| s.trim().to_string()),
        caller_heard_lines,
        timings,
        quality,
        call_dir,
        timeline,
    })
}

/// One scripted line from a bundled WAV.
fn script_line(
    wav: &[u8],
    name: &str,
    text: &str,
    confidence: f32,
) -> Result<ScriptLine, WavError> {
    Ok(ScriptLine {
        text: text.into(),
        audio: Arc::from(assets::ulaw(wav, name)?),
        confidence,
    })
}

/// The assistant's greeting, shared by both demo scripts.
fn greeting() -> Result<ScriptLine, WavError> {
    script_line(
        assets::DEMO_GREETING_WAV,
        "agent_greeting.wav",
        "Thanks for calling Acme support. This is the virtual assistant. How can I help you today?",
        0.95,
    )
}

/// The demo's scripted agent: an order-status conversation.
pub fn demo_script() -> Result<AgentScript, WavError> {
    let line = script_line;
    Ok(AgentScript {
        greeting: greeting()?,
        replies: vec![
            ScriptReply {
                caller_said: "Hi. I'm calling about my order. It still hasn't arrived.".into(),
                line: line(
                    assets::DEMO_REPLY_WAVS[0],
                    "agent_reply_1.wav",
                    "I'm sorry to hear that. Could you tell me your order number?",
                    0.9,
                )?,
                events: vec![],
            },
            ScriptReply {
                caller_said: "It's order eight eight two one.".into(),
                line: line(
                    assets::DEMO_REPLY_WAVS[1],
                    "agent_reply_2.wav",
                    "Thank you. Order eight eight two one shipped yesterday, and it should arrive tomorrow.",
                    0.85,
                )?,
                events: vec![],
            },
            ScriptReply {
                caller_said: "Great, thanks a lot.".into(),
                line: line(
                    assets::DEMO_REPLY_WAVS[2],
                    "agent_reply_3.wav",
                    "You're welcome. Is there anything else I can help you with?",
                    0.9,
                )?,
                events: vec![],
            },
        ],
        vad: VadConfig {
            hangover_frames: 30,
            ..VadConfig::default()
        },
        clear_on_barge_in: true,
    })
}

/// Prints the demo's summary.
pub fn print_summary(report: &DemoReport) {
    println!(
        "\ncall {} finished: {:?}",
        report.call_id,
        report.timeline.end_reason()
    );
    println!("conversation with the AI:");
    for (role, text) in report.timeline.turns() {
        let who = match role {
            Role::User => "caller",
            Role::Agent => "AI    ",
        };
        println!("  {who}: {text}");
    }
    for e in &report.timeline.events {
        match &e.kind {
            TimelineKind::EscalationDecided {
                trigger,
                urgency,
                description,
                rule,
                evidence,
                why,
                ..
            } => {
                println!(
                    "escalated at {:.1} s: {trigger:?} ({urgency:?}) — {description}",
                    e.at_ms / 1000.0
                );
                println!(
                    "  evidence: rule {rule} on event #{} ({}), turns {evidence:?}, turns read by the {}",
                    why["event"]["index"],
                    why["event"]["kind"].as_str().unwrap_or("?"),
                    why["monitor"].as_str().unwrap_or("?"),
                );
                for t in why["unhelpful"].as_array().into_iter().flatten() {
                    let why: Vec<String> = t["reasons"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|r| match r["kind"].as_str() {
                            Some("hedging") => {
                                format!("hedging ({})", r["phrase"].as_str().unwrap_or(""))
                            }
                            Some("low_confidence") => format!("confidence {}", r["confidence"]),
                            Some("tool_failed") => format!("tool {} failed", r["tool"]),
                            Some(k) => k.replace('_', " "),
                            None => "?".into(),
                        })
                        .collect();
                    println!("  unhelpful turn {}: {}", t["turn"], why.join(", "));
                }
                for t in why["labels"].as_array().into_iter().flatten() {
                    let labels: Vec<String> = t["labels"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|l| {
                            format!(
                                "{} {:.2}",
                                l["label"].as_str().unwrap_or("?"),
                                l["score"].as_f64().unwrap_or(0.0)
                            )
                        })
                        .collect();
                    if !labels.is_empty() {
                        println!(
                            "  turn {} ({}): {}",
                            t["turn"],
                            t["role"].as_str().unwrap_or("?"),
                            labels.join(", ")
                        );
                    }
                }
            }
            TimelineKind::HandoffStep {
                step,
                agent,
                detail,
            } => println!(
                "  {:>6.1} s  {step}{}{}",
                e.at_ms / 1000.0,
                agent
                    .as_deref()
                    .map(|a| format!(" [{a}]"))
                    .unwrap_or_default(),
                detail
                    .as_deref()
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default()
            ),
            _ => {}
        }
    }
    if let Some(w) = &report.whisper_text {
        println!(
            "whisper (agent only, {:.1} s): {w}",
            report.timings.whisper_seconds.unwrap_or(0.0)
        );
    }
    let t = &report.timings;
    let show = |v: Option<f64>| {
        v.map(|v| format!("{v:.1} ms"))
            .unwrap_or_else(|| "n/a".into())
    };
    println!(
        "handoff timings: escalation → screen-pop {}, accept → first whisper frame {}, merge gap {}",
        show(t.escalation_to_screen_pop_ms),
        show(t.whisper_start_after_accept_ms),
        show(t.merge_gap_ms)
    );
    if let Some(q) = &report.quality {
        println!(
            "handoff quality (GET /v1/stats): merge → agent's first words {}, wrap-ups {}: recovery rate {}, caller repeated {}, context accurate {}",
            show(t.merge_to_agent_first_words_ms),
            q["wrapups"],
            q["recovery_rate"],
            q["caller_repeated_rate"],
            q["context_accurate_rate"]
        );
    }
    println!("files in {}:", report.call_dir.display());
    println!(
        "  caller_heard.wav  {:5.1} s  {:6.1} dBFS RMS",
        report.heard_stats.0, report.heard_stats.1
    );
    println!(
        "  caller_said.wav   {:5.1} s  {:6.1} dBFS RMS",
        report.said_stats.0, report.said_stats.1
    );
    if let Some((s, l)) = report.agent_heard_stats {
        println!("  agent_heard.wav   {s:5.1} s  {l:6.1} dBFS RMS");
    }
    println!(
        "  context.json, whisper.txt, whisper.wav, timeline.json ({} events)",
        report.timeline.events.len()
    );
    println!("lines found in what the caller heard (normalised cross-correlation, 1.0 = exact):");
    for (text, score) in &report.caller_heard_lines {
        println!("  {score:.3}  {text}");
    }
    if let (Some(c), Some(a)) = (
        report.whisper_in_caller_audio,
        report.whisper_in_agent_audio,
    ) {
        println!(
            "whisper in the agent's audio: {a:.3}; in the caller's audio: {c:.3} (must stay near 0)"
        );
    }
}
