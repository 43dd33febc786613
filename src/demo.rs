//! `warmline demo`: the gateway, a scripted AI agent and a simulated Twilio
//! caller in one process on loopback. Writes the call's recordings and timeline
//! and checks that the caller really heard the agent.

use crate::assets;
use crate::call::timeline::Timeline;
use crate::config::Config;
use crate::gateway::{GatewayError, RunningGateway};
use crate::legs::media_streams::Role;
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
    /// For each agent line: its text and its best correlation inside caller_heard.wav.
    pub agent_lines_heard: Vec<(String, f64)>,
    /// Seconds and RMS level (dBFS) of caller_heard.wav.
    pub heard_stats: (f64, f64),
    /// Seconds and RMS level (dBFS) of caller_said.wav.
    pub said_stats: (f64, f64),
}

/// The demo's scripted agent: an order-status conversation.
pub fn demo_script() -> Result<AgentScript, WavError> {
    let line =
        |wav: &[u8], name: &str, text: &str, confidence: f32| -> Result<ScriptLine, WavError> {
            Ok(ScriptLine {
                text: text.into(),
                audio: Arc::from(assets::ulaw(wav, name)?),
                confidence,
            })
        };
    Ok(AgentScript {
        greeting: line(
            assets::DEMO_GREETING_WAV,
            "agent_greeting.wav",
            "Thanks for calling Acme support. This is the virtual assistant. How can I help you today?",
            0.95,
        )?,
        replies: vec![
            ScriptReply {
                caller_said: "Hi. I'm calling about my order. It still hasn't arrived.".into(),
                line: line(
                    assets::DEMO_REPLY_WAVS[0],
                    "agent_reply_1.wav",
                    "I'm sorry to hear that. Could you tell me your order number?",
                    0.9,
                )?,
            },
            ScriptReply {
                caller_said: "It's order eight eight two one.".into(),
                line: line(
                    assets::DEMO_REPLY_WAVS[1],
                    "agent_reply_2.wav",
                    "Thank you. Order eight eight two one shipped yesterday, and it should arrive tomorrow.",
                    0.85,
                )?,
            },
            ScriptReply {
                caller_said: "Great, thanks a lot.".into(),
                line: line(
                    assets::DEMO_REPLY_WAVS[2],
                    "agent_reply_3.wav",
                    "You're welcome. Is there anything else I can help you with?",
                    0.9,
                )?,
            },
        ],
        vad: VadConfig {
            hangover_frames: 30,
            ..VadConfig::default()
        },
        clear_on_barge_in: true,
    })
}

/// Runs the demo call, writing `<out>/<call-id>/…`.
pub async fn run(mut config: Config, out: &Path) -> Result<DemoReport, DemoError> {
    let script = demo_script()?;
    let lines: Vec<ScriptLine> = std::iter::once(script.greeting.clone())
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
    let gateway = RunningGateway::start(config).await?;

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
        "warmline demo: caller → {} → scripted agent {} (about {} s of real-time audio)…",
        gateway.media_url(),
        agent.url(),
        options.audio.len() / 8000 + 1
    );
    caller::run(options).await?;
    let wait = Duration::from_secs(10);
    let timeline = gateway
        .shared
        .registry
        .wait_finished(1, wait)
        .await
        .into_iter()
        .next()
        .ok_or(DemoError::Timeout(wait))?;
    gateway.shutdown().await;

    let call_dir = out.join(&timeline.call_id);
    let heard = wav::read_mono_file(&call_dir.join("caller_heard.wav"), 8000)?;
    let said = wav::read_mono_file(&call_dir.join("caller_said.wav"), 8000)?;
    let mut agent_lines_heard = Vec::new();
    for line in &lines {
        let mut pcm = Vec::new();
        crate::media::g711::decode_ulaw(&line.audio, &mut pcm);
        let (_, score) = best_lag_correlation(&pcm, &heard, 8);
        agent_lines_heard.push((line.text.clone(), score));
    }
    Ok(DemoReport {
        call_id: timeline.call_id.clone(),
        call_dir,
        agent_lines_heard,
        heard_stats: (heard.len() as f64 / 8000.0, rms_dbfs(&heard)),
        said_stats: (said.len() as f64 / 8000.0, rms_dbfs(&said)),
        timeline,
    })
}

/// Prints the demo's summary.
pub fn print_summary(report: &DemoReport) {
    println!(
        "\ncall {} finished: {:?}",
        report.call_id,
        report.timeline.end_reason()
    );
    println!("conversation:");
    for (role, text) in report.timeline.turns() {
        let who = match role {
            Role::User => "caller",
            Role::Agent => "agent ",
        };
        println!("  {who}: {text}");
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
    println!(
        "  timeline.json     {} events",
        report.timeline.events.len()
    );
    println!(
        "agent lines found in what the caller heard (normalised cross-correlation, 1.0 = exact):"
    );
    for (text, score) in &report.agent_lines_heard {
        println!("  {score:.3}  {text}");
    }
}
