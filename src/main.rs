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
        Command::Demo { out, config } => {
            let config = match load(config.as_deref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
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

async fn serve(config: Config) -> Result<(), String> {
    let gateway = warmline::gateway::RunningGateway::start(config)
        .await
        .map_err(|e| e.to_string())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {
            tracing::info!("Ctrl-C: stopping");
            gateway.shutdown().await;
        }
    }
    Ok(())
}
