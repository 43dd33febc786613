//! The `warmline` command line.
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use warmline::config::Config;

#[derive(Parser)]
#[command(
    name = "warmline",
    version,
    about = "Real-time voice gateway with warm handoff to humans"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// Config file (keys override the embedded defaults; WARMLINE_* env overrides both).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Run a complete call on loopback: gateway + scripted AI agent + simulated Twilio caller.
    Demo {
        /// Where to write <call-id>/caller_heard.wav, caller_said.wav and timeline.json.
        #[arg(long, default_value = "out")]
        out: PathBuf,
        /// Config file.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The AI agent: `scripted` (bundled, offline) or `realtime` (the OpenAI
        /// Realtime API from [realtime]; needs realtime.api_key or
        /// WARMLINE_REALTIME_API_KEY, and network).
        #[arg(long, default_value = "scripted")]
        agent: String,
    },
    /// Render the whisper brief for a handoff context (JSON) into a WAV file.
    Whisper {
        /// A HandoffContext JSON file (missing optional fields are fine).
        #[arg(long)]
        context: PathBuf,
        /// The WAV to write.
        #[arg(long, default_value = "whisper.wav")]
        out: PathBuf,
        /// Sample rate of the WAV (8000 for a phone leg; 0 keeps the engine's rate).
        #[arg(long, default_value_t = 8000)]
        rate: u32,
        /// Config file ([tts] and [whisper] are used).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate the configuration and print it with every default filled in.
    CheckConfig {
        /// Config file.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .init();
}

fn load(config: Option<&std::path::Path>) -> Result<Config, ExitCode> {
    Config::load(config).map_err(|e| {
        eprintln!("warmline: invalid configuration: {e}");
        ExitCode::from(2)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::CheckConfig { config } => match load(config.as_deref()) {
            Ok(c) => {
                print!("{}", c.to_toml());
                eprintln!("configuration OK");
                return ExitCode::SUCCESS;
            }
            Err(code) => return code,
        },
        Command::Serve { config } => {
            let config = match load(config.as_deref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            init_logging(&config.log.level);
            runtime().and_then(|rt| rt.block_on(serve(config)))
        }
        Command::Whisper {
            context,
            out,
            rate,
            config,
        } => {
            let config = match load(config.as_deref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            init_logging("warn");
            runtime().and_then(|rt| rt.block_on(whisper(config, &context, &out, rate)))
        }
        Command::Demo { out, config, agent } => {
            let mut config = match load(config.as_deref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match agent.as_str() {
                "scripted" => config.agent.adapter = "native".into(),
                "realtime" if config.realtime.api_key.is_empty() => {
                    eprintln!(
                        "warmline: --agent realtime needs an API key: set WARMLINE_REALTIME_API_KEY (or realtime.api_key)"
                    );
                    return ExitCode::from(2);
                }
                "realtime" => config.agent.adapter = "realtime".into(),
                other => {
                    eprintln!("warmline: --agent {other:?}: expected scripted or realtime");
                    return ExitCode::from(2);
                }
            }
            init_logging("warn");
            runtime().and_then(|rt| {
                rt.block_on(async {
                    let report = warmline::demo::run(config, &out)
                        .await
                        .map_err(|e| e.to_string())?;
                    warmline::demo::print_summary(&report);
                    Ok(())
                })
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("warmline: {e}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

async fn whisper(
    config: Config,
    context: &std::path::Path,
    out: &std::path::Path,
    rate: u32,
) -> Result<(), String> {
    let text = std::fs::read_to_string(context)
        .map_err(|e| format!("cannot read {}: {e}", context.display()))?;
    let ctx = warmline::brief::context::HandoffContext::from_json(&text)
        .map_err(|e| format!("{} is not a handoff context: {e}", context.display()))?;
    let engines =
        warmline::brief::tts::TtsSet::from_config(&config.tts).map_err(|e| e.to_string())?;
    let whisper = engines
        .render_whisper(&ctx, config.whisper_window())
        .await
        .map_err(|e| e.to_string())?;
    let (samples, out_rate) = if rate == 0 {
        (whisper.speech.samples.clone(), whisper.speech.rate)
    } else {
        (whisper.samples_at(rate).map_err(|e| e.to_string())?, rate)
    };
    let mut sink =
        warmline::media::wav::WavSink::create(out, out_rate).map_err(|e| e.to_string())?;
    sink.write(&samples).map_err(|e| e.to_string())?;
    sink.finalize().map_err(|e| e.to_string())?;
    println!("{}", whisper.text);
    println!(
        "{:.2} s at {} wpm, {} render(s) in {:.1} ms with {}{} → {} ({} Hz)",
        whisper.seconds(),
        whisper.words_per_minute,
        whisper.renders,
        whisper.render_ms,
        whisper.engine,
        whisper
            .tts_failure
            .as_deref()
            .map(|f| format!(" (fallback after: {f})"))
            .unwrap_or_default(),
        out.display(),
        out_rate
    );
    Ok(())
}

async fn serve(config: Config) -> Result<(), String> {
    let gateway = warmline::gateway::RunningGateway::start(config)
        .await
        .map_err(|e| e.to_string())?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("cannot listen for SIGTERM: {e}"))?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("Ctrl-C: draining"),
        _ = terminate.recv() => tracing::info!("SIGTERM: draining"),
    }
    let timeout = std::time::Duration::from_secs(gateway.shared.config.server.drain_timeout_s);
    let left = gateway.drain(timeout).await;
    tracing::info!(calls_cut = left, "stopped");
    Ok(())
}
