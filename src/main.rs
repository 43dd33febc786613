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
enum PolicyCommand {
    /// Play labelled conversations (docs/POLICY.md) through the escalation
    /// monitor and report accuracy, the confusion matrix and the escalation rate.
    Eval {
        /// A directory of *.jsonl / *.json conversations (or one file).
        #[arg(long)]
        corpus: PathBuf,
        /// Config file (thresholds and lists of `[monitor]`).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Classifier heads file ("none": the phrase rules); default: monitor.heads.
        #[arg(long)]
        heads: Option<String>,
        /// Print every case, not only the misses.
        #[arg(long)]
        verbose: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show how the classifier heads read one turn (every head's score).
    Label {
        /// The turn's text.
        text: String,
        /// Whose turn: user or agent.
        #[arg(long, default_value = "user")]
        role: String,
        /// The assistant's previous turn offered a person.
        #[arg(long)]
        after_offer: bool,
        /// Classifier heads file; default: the bundled ones.
        #[arg(long)]
        heads: Option<PathBuf>,
    },
    /// Train the classifier heads on CORPUS/train (+ CORPUS/utterances) and set
    /// their thresholds on CORPUS/dev. CORPUS/test is never read.
    Train {
        /// The corpus root (train/, dev/, utterances/).
        #[arg(long, default_value = "tests/data/policy")]
        corpus: PathBuf,
        /// Where to write the heads.
        #[arg(long, default_value = "assets/policy/heads.bin")]
        out: PathBuf,
        /// Passes over the training data.
        #[arg(long, default_value_t = 30)]
        epochs: usize,
        /// Feature buckets (log2).
        #[arg(long, default_value_t = 16)]
        dim_bits: u32,
        /// AdaGrad learning rate.
        #[arg(long, default_value_t = 0.2)]
        rate: f32,
        /// L2 penalty (chosen on the dev split).
        #[arg(long, default_value_t = 6e-3)]
        l2: f32,
        /// Also train the sentence encoder's heads with the model in this
        /// directory ("" = the build cache's copy), written to --encoder-out.
        #[arg(long)]
        encoder: Option<String>,
        /// Where to write the encoder's heads.
        #[arg(long, default_value = "assets/policy/encoder_heads.bin")]
        encoder_out: PathBuf,
        /// Keep the subword heads already in --out (train only the encoder's).
        #[arg(long)]
        keep_heads: bool,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Evaluate or train the escalation policy.
    Policy {
        #[command(subcommand)]
        action: PolicyCommand,
    },
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
    /// Render whispers for the gateway: one JSON request a line on stdin, each
    /// answered on stdout from a fork of the prepared engine.
    #[command(hide = true)]
    TtsWorker {
        /// The whisper voice to load before the first request.
        #[arg(long)]
        voice: Option<String>,
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
        Command::Policy { action } => policy(action),
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
        Command::TtsWorker { voice } => {
            // No runtime: the worker forks, so it must stay single-threaded.
            // Rendering must never take the CPU from the calls the gateway carries.
            warmline::util::os::lower_priority(10);
            warmline::brief::tts::pool::serve_forever(voice)
        }
        Command::Demo { out, config, agent } => {
            let mut config = match load(config.as_deref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match agent.as_str() {
                "scripted" => config.agent.adapter = warmline::config::AgentAdapter::Native,
                "realtime" if config.realtime.api_key.is_empty() => {
                    eprintln!(
                        "warmline: --agent realtime needs an API key: set WARMLINE_REALTIME_API_KEY (or realtime.api_key)"
                    );
                    return ExitCode::from(2);
                }
                "realtime" => config.agent.adapter = warmline::config::AgentAdapter::Realtime,
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

fn policy(action: PolicyCommand) -> Result<(), String> {
    use warmline::monitor::corpus;
    match action {
        PolicyCommand::Label {
            text,
            role,
            after_offer,
            heads,
        } => {
            use warmline::monitor::heads::{Heads, Label, Speaker};
            let heads = match heads {
                Some(p) => Heads::load(&p),
                None => Heads::bundled(),
            }
            .map_err(|e| e.to_string())?;
            let speaker = match role.as_str() {
                "user" | "caller" => Speaker::Caller,
                "agent" => Speaker::Agent,
                other => return Err(format!("--role {other:?}: expected user or agent")),
            };
            let ctx = warmline::monitor::features::TurnContext { after_offer };
            let scores = heads.score(speaker, &text, ctx);
            for label in Label::ALL.into_iter().filter(|l| l.speaker() == speaker) {
                let mark = if scores.has(label) { "*" } else { " " };
                println!("{mark} {:<18} {:.3}", label.as_str(), scores.score(label));
            }
            Ok(())
        }
        PolicyCommand::Eval {
            corpus: dir,
            config,
            heads,
            verbose,
            json,
        } => {
            let mut config = load(config.as_deref())
                .map_err(|_| "the configuration is not valid".to_string())?;
            if let Some(h) = heads {
                config.monitor.heads = h;
            }
            let classifier = warmline::monitor::TurnClassifier::from_config(&config.monitor);
            eprintln!("turns read by: {}", classifier.describe());
            let convs = corpus::load_conversations(&dir).map_err(|e| e.to_string())?;
            let report = corpus::evaluate(&convs, &config.monitor, &classifier);
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
                );
            } else {
                print!("{}", report.render(verbose));
            }
            Ok(())
        }
        PolicyCommand::Train {
            corpus: root,
            out,
            epochs,
            dim_bits,
            rate,
            l2,
            encoder,
            encoder_out,
            keep_heads,
        } => {
            let train =
                corpus::load_conversations(&root.join("train")).map_err(|e| e.to_string())?;
            let dev = corpus::load_conversations(&root.join("dev")).map_err(|e| e.to_string())?;
            let utterances = match corpus::load_utterances(&root.join("utterances")) {
                Ok(u) => u,
                Err(corpus::CorpusError::Empty(_)) => Vec::new(),
                Err(e) => return Err(e.to_string()),
            };
            let opts = warmline::monitor::heads::TrainOptions {
                dim: 1 << dim_bits.clamp(8, 20),
                epochs,
                rate,
                l2,
                ..Default::default()
            };
            let started = std::time::Instant::now();
            let heads = if keep_heads {
                warmline::monitor::heads::Heads::load(&out).map_err(|e| e.to_string())?
            } else {
                let heads = corpus::train_heads(&train, &utterances, &dev, &opts);
                std::fs::write(&out, heads.to_bytes())
                    .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
                eprintln!(
                    "trained {} heads on {} conversations + {} utterances in {:.1} s → {}",
                    heads.labels().len(),
                    train.len(),
                    utterances.len(),
                    started.elapsed().as_secs_f64(),
                    out.display()
                );
                heads
            };
            if let Some(dir) = encoder {
                use warmline::monitor::encoder::Encoder;
                let dir = if dir.is_empty() {
                    Encoder::default_dir()
                } else {
                    PathBuf::from(dir)
                };
                let enc = std::sync::Arc::new(Encoder::load(&dir).map_err(|e| e.to_string())?);
                let mut cache = corpus::EmbeddingCache::open(Some(dir.join("embeddings.cache")));
                let started = std::time::Instant::now();
                let result =
                    corpus::train_encoder_heads(&train, &utterances, &dev, &heads, enc, &mut cache);
                if let Err(e) = cache.save() {
                    eprintln!("(embedding cache not saved: {e})");
                }
                let (eh, trials) = result.map_err(|e| e.to_string())?;
                for t in &trials {
                    println!(
                        "dev blend {:.2} margin {:.2}: escalate-or-not {} ordinary escalated {} trigger {} right event {}",
                        t.blend,
                        t.margin,
                        t.report.escalation,
                        t.report.ordinary_escalated,
                        t.report.trigger,
                        t.report.on_the_right_event
                    );
                }
                let reader = warmline::monitor::encoder::EncoderReader::from_parts(
                    std::sync::Arc::new(Encoder::load(&dir).map_err(|e| e.to_string())?),
                    eh.clone(),
                    eh.margin,
                );
                let mut cache = corpus::EmbeddingCache::open(Some(dir.join("embeddings.cache")));
                println!(
                    "dev turns:\n{}",
                    corpus::encoder_label_report(&heads, &reader, &dev, &mut cache)
                        .map_err(|e| e.to_string())?
                );
                std::fs::write(&encoder_out, eh.to_bytes())
                    .map_err(|e| format!("cannot write {}: {e}", encoder_out.display()))?;
                eprintln!(
                    "trained the encoder's heads in {:.1} s (blend {:.2}, margin {:.2}) → {}",
                    started.elapsed().as_secs_f64(),
                    eh.blend,
                    eh.margin,
                    encoder_out.display()
                );
            }
            let classifier = warmline::monitor::TurnClassifier::Heads(std::sync::Arc::new(heads));
            let report = corpus::evaluate(
                &dev,
                &warmline::monitor::PolicyConfig::default(),
                &classifier,
            );
            if let warmline::monitor::TurnClassifier::Heads(h) = &classifier {
                println!("dev turns:\n{}", corpus::label_report(h, &dev));
            }
            println!("dev split:");
            print!("{}", report.render(false));
            Ok(())
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
        .render_whisper(
            &ctx,
            warmline::brief::whisper::WhisperWindow::from_config(&config),
        )
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
