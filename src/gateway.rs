//! The running gateway: shared state, the HTTP/WebSocket server and its lifecycle.

use crate::brief::summary::LlmSummarizer;
use crate::brief::tts::TtsSet;
use crate::call::registry::CallRegistry;
use crate::config::Config;
use crate::routing::Routing;
use crate::store::{Store, StoreError};
use std::net::SocketAddr;
use std::sync::Arc;
use thiserror::Error;
use tokio::sync::oneshot;

/// State shared by every call and request.
#[derive(Debug)]
pub struct Shared {
    /// The configuration in force.
    pub config: Config,
    /// Calls in progress and recently finished.
    pub registry: CallRegistry,
    /// The "agent unavailable" prompt, μ-law 8 kHz.
    pub apology: crate::call::bridge::Apologies,
    /// Persistence.
    pub store: Store,
    /// The LLM summariser, when configured.
    pub llm: Option<LlmSummarizer>,
    /// Text-to-speech engines for the whisper and prompts.
    pub tts: TtsSet,
    /// Human agents and the queue.
    pub routing: Routing,
    /// Live metrics (`GET /metrics`).
    pub metrics: crate::metrics::Metrics,
    /// The screen-pop webhook, when configured.
    pub webhook: Option<crate::routing::webhook::Webhook>,
    /// Browser (WebRTC) callers in progress, against `webrtc.max_calls`.
    pub webrtc_calls: Arc<std::sync::atomic::AtomicUsize>,
    /// Set by [`RunningGateway::drain`]: new calls are refused, /healthz says 503.
    pub draining: std::sync::atomic::AtomicBool,
    /// New connections per IP (`server.per_ip_rate`, `per_ip_burst`).
    pub ip_limiter: std::sync::Mutex<crate::util::RateLimiter>,
    /// This node's cluster membership, when `[cluster]` is enabled.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// How the monitor reads turns (the trained heads, or the rule fallback).
    pub classifier: crate::monitor::TurnClassifier,
    /// The optional LLM judge for turns the heads are unsure about.
    pub judge: Option<Arc<crate::call::judge::LlmJudge>>,
    /// Set when the gateway must stop with calls still up (a drain that timed
    /// out): every call says goodbye to its caller and hangs up.
    pub closing: tokio::sync::watch::Sender<bool>,
    /// Failed console sign-ins by (agent, source address), with backoff.
    pub sign_ins: std::sync::Mutex<crate::util::SignInGuard>,
    /// `[privacy]`: personal data replaced in free text as it enters a call.
    pub redactor: Arc<crate::util::pii::Redactor>,
    /// Signs the context URLs put in the signalling of a handoff.
    pub context_urls: crate::util::signature::UrlSigner,
    /// Where desks reach those URLs (`routing.context_url_base`, or this node's address).
    pub context_url_base: String,
}

impl Shared {
    /// The signed, expiring URL a desk fetches `call_id`'s handoff context from.
    pub fn context_url(&self, call_id: &str) -> String {
        let base = &self.context_url_base;
        let expires = crate::util::unix_seconds(std::time::SystemTime::now()) as u64
            + self.config.routing.context_url_ttl_s;
        let sig = self.context_urls.sign(call_id, expires);
        let id: String = url_path_segment(call_id);
        format!("{base}/v1/handoff/{id}/context?exp={expires}&sig={sig}")
    }
}

/// `s` percent-encoded for one URL path segment.
fn url_path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Shared {
    /// Why a new call is refused now, if it is (draining, or `server.max_calls` reached).
    pub fn call_refusal(&self) -> Option<String> {
        if self.draining.load(std::sync::atomic::Ordering::SeqCst) {
            return Some("the gateway is draining for a restart; try another node".into());
        }
        let active = self.registry.counts().active;
        let max = self.config.server.max_calls;
        (active >= max).then(|| format!("{active} calls in progress (server.max_calls = {max})"))
    }

    /// The Prometheus text of `GET /metrics`.
    pub fn render_metrics(&self) -> String {
        let counts = self.registry.counts();
        let mut agents = std::collections::BTreeMap::new();
        for a in self.routing.agents() {
            let status = if a.connected {
                a.status.as_str()
            } else {
                "disconnected"
            };
            *agents.entry(status).or_insert(0) += 1;
        }
        self.metrics.render(&crate::metrics::Snapshot {
            calls_active: counts.active,
            calls_total: counts.total,
            queues: self.routing.queues(),
            agents: agents.into_iter().collect(),
            webrtc_calls_active: self.webrtc_calls.load(std::sync::atomic::Ordering::SeqCst),
            draining: self.draining.load(std::sync::atomic::Ordering::SeqCst),
            tasks_alive: tokio::runtime::Handle::try_current()
                .map_or(0, |h| h.metrics().num_alive_tasks()),
            cluster: self.cluster.as_ref().map(|c| c.health()),
            monitor_fallback: matches!(
                self.classifier,
                crate::monitor::TurnClassifier::Rules { .. }
            ),
            relay_plane: crate::legs::sip::relay_plane::figures(),
        })
    }

    /// Sets an agent's availability; their own choice (available or offline) is
    /// kept in the database, so it survives a restart.
    pub fn set_agent_status(
        &self,
        id: &str,
        status: crate::routing::AgentStatus,
    ) -> Result<(), crate::routing::RoutingError> {
        use crate::routing::AgentStatus;
        self.routing.set_status(id, status)?;
        if matches!(status, AgentStatus::Available | AgentStatus::Offline) {
            self.store.write(crate::store::Write::AgentStatus {
                id: id.to_string(),
                status: status.as_str().to_string(),
            });
        }
        Ok(())
    }
}

impl Shared {
    /// The agent accepts their offer: alone, routing hands the call over at
    /// once; in a cluster, the accept is won in PostgreSQL first (exactly one
    /// wins) and a call held by another node is reached over its relay.
    pub async fn accept_offer(
        self: &Arc<Self>,
        agent_id: &str,
        call_id: &str,
    ) -> Result<crate::legs::desk::AcceptOutcome, String> {
        match &self.cluster {
            Some(cluster) => {
                let host: Arc<dyn crate::cluster::ClusterHost> = Arc::clone(self) as _;
                cluster.accept(&host, agent_id, call_id).await
            }
            None => self
                .routing
                .accept_local(agent_id, call_id)
                .map(crate::legs::desk::AcceptOutcome::Call)
                .map_err(|e| e.to_string()),
        }
    }

    /// Reloads agents registered in the database (by another node, say).
    pub async fn reload_agents(&self) {
        match self.store.agents().await {
            Ok(agents) => {
                for a in agents {
                    self.routing
                        .register_hashed(&a.id, &a.name, &a.token_sha256, a.skills);
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot load registered agents"),
        }
    }
}

/// The agents' legs reach routing and the cluster through this port.
impl crate::legs::desk::AgentDesk for Shared {
    fn phone_connected(
        &self,
        agent_id: &str,
        phone: tokio::sync::mpsc::Sender<crate::legs::desk::HumanCommand>,
    ) -> Result<(), String> {
        self.routing
            .phone_connected(agent_id, phone)
            .map_err(|e| e.to_string())
    }

    fn decline(
        &self,
        agent_id: &str,
        call_id: &str,
        reason: crate::domain::WithdrawReason,
    ) -> Result<(), String> {
        self.routing
            .decline(agent_id, call_id, reason)
            .map_err(|e| e.to_string())
    }

    fn accept<'a>(
        self: Arc<Self>,
        agent_id: &'a str,
        call_id: &'a str,
    ) -> crate::legs::desk::DeskFuture<'a, Result<crate::legs::desk::AcceptOutcome, String>> {
        Box::pin(async move { Shared::accept_offer(&self, agent_id, call_id).await })
    }

    fn context_url(&self, call_id: &str) -> String {
        Shared::context_url(self, call_id)
    }
}

/// The agents' consoles reach routing, the cluster and the live calls through this port.
impl crate::legs::desk::ConsoleDesk for Shared {
    fn config(&self) -> &Config {
        &self.config
    }

    fn store(&self) -> &Store {
        &self.store
    }

    fn redactor(&self) -> &crate::util::pii::Redactor {
        &self.redactor
    }

    fn console_connected(
        &self,
        agent_id: &str,
        console: tokio::sync::mpsc::Sender<crate::legs::desk::HumanCommand>,
    ) -> Result<crate::legs::desk::Arrival, String> {
        self.routing
            .console_connected(agent_id, console)
            .map_err(|e| e.to_string())
    }

    fn console_gone(
        &self,
        agent_id: &str,
        console: &tokio::sync::mpsc::Sender<crate::legs::desk::HumanCommand>,
        held: Option<crate::legs::desk::HeldCall>,
    ) {
        self.routing.console_gone(agent_id, console, held)
    }

    fn held_call_gone(&self, agent_id: &str, call_id: &str) {
        self.routing.held_call_gone(agent_id, call_id)
    }

    fn is_supervisor(&self, agent_id: &str) -> bool {
        self.routing.is_supervisor(agent_id)
    }

    fn is_agent(&self, agent_id: &str) -> bool {
        self.routing.agents().iter().any(|a| a.id == agent_id)
    }

    fn set_status(&self, agent_id: &str, status: crate::domain::AgentStatus) -> Result<(), String> {
        self.set_agent_status(agent_id, status)
            .map_err(|e| e.to_string())
    }

    fn tick(&self) {
        self.routing.tick()
    }

    fn team(&self) -> crate::legs::desk::Team {
        self.routing.team()
    }

    fn team_changed(&self) -> Arc<tokio::sync::Notify> {
        self.routing.team_changed()
    }

    fn took(&self, agent_id: &str, call_id: &str) -> bool {
        self.routing.took(agent_id, call_id)
    }

    fn wrapup_done(&self, agent_id: &str, call_id: &str) {
        self.routing.wrapup_done(agent_id, call_id)
    }

    fn board(&self) -> Vec<crate::domain::LiveCallView> {
        self.registry.board()
    }

    fn monitor(&self, call_id: &str, link: crate::legs::MonitorLink) -> Result<(), String> {
        self.registry.monitor(call_id, link)
    }

    fn monitor_mode(
        &self,
        call_id: &str,
        supervisor: &str,
        mode: crate::domain::SupervisorMode,
    ) -> Result<(), String> {
        self.registry.monitor_mode(call_id, supervisor, mode)
    }

    fn hint(&self, call_id: &str, supervisor: &str, text: &str) -> Result<(), String> {
        self.registry
            .hint(call_id, supervisor, text)
            .map_err(|e| e.to_string())
    }

    fn control(&self, call_id: &str, request: crate::domain::CallControl) -> Result<(), String> {
        self.registry.control(call_id, request)
    }
}

/// The SIP user agent reaches the gateway through this port.
impl crate::legs::sip::endpoint::SipServices for Shared {
    fn config(&self) -> &Config {
        &self.config
    }

    fn store(&self) -> &Store {
        &self.store
    }

    fn metrics(&self) -> &crate::metrics::Metrics {
        &self.metrics
    }

    fn call_refusal(&self) -> Option<String> {
        Shared::call_refusal(self)
    }
}

/// Calls reach the gateway's services through this port.
impl crate::call::services::CallServices for Shared {
    fn config(&self) -> &Config {
        &self.config
    }

    fn registry(&self) -> &CallRegistry {
        &self.registry
    }

    fn apology(&self) -> &crate::call::bridge::Apologies {
        &self.apology
    }

    fn store(&self) -> &Store {
        &self.store
    }

    fn llm(&self) -> Option<&LlmSummarizer> {
        self.llm.as_ref()
    }

    fn tts(&self) -> &TtsSet {
        &self.tts
    }

    fn routing(&self) -> &Routing {
        &self.routing
    }

    fn metrics(&self) -> &crate::metrics::Metrics {
        &self.metrics
    }

    fn webhook(&self) -> Option<&crate::routing::webhook::Webhook> {
        self.webhook.as_ref()
    }

    fn closing(&self) -> &tokio::sync::watch::Sender<bool> {
        &self.closing
    }

    fn redactor(&self) -> &Arc<crate::util::pii::Redactor> {
        &self.redactor
    }

    fn classifier(&self) -> &crate::monitor::TurnClassifier {
        &self.classifier
    }

    fn judge(&self) -> Option<&Arc<crate::call::judge::LlmJudge>> {
        self.judge.as_ref()
    }
}

/// The caller legs start calls through this port (one start path for every transport).
impl crate::legs::CallStarter for Shared {
    fn start_call(self: Arc<Self>, arrival: crate::legs::CallArrival) -> String {
        crate::call::session::start_call(self, arrival)
    }
}

/// The cluster reaches this node's routing through this port.
impl crate::cluster::ClusterHost for Shared {
    fn routing(&self) -> &Routing {
        &self.routing
    }
}

/// The HTTP edge's admission control asks the gateway through this port.
impl crate::http::limits::Admission for Shared {
    fn admit_ip(&self, ip: std::net::IpAddr, now: std::time::Instant) -> bool {
        self.ip_limiter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .admit(ip, now)
    }

    fn call_refusal(&self) -> Option<String> {
        Shared::call_refusal(self)
    }
}

/// The gateway could not start.
#[derive(Debug, Error)]
pub enum GatewayError {
    /// The SIP user agent could not start.
    #[error(transparent)]
    Sip(#[from] crate::legs::sip::endpoint::SipStartError),
    /// The listen address is taken or not allowed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// A bundled asset is broken.
    #[error("bundled asset: {0}")]
    Asset(#[from] crate::media::wav::WavError),
    /// The database cannot be used.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An HTTP client (LLM summary, webhook) cannot be built.
    #[error("HTTP client: {0}")]
    HttpClient(String),
    /// A `[privacy]` pattern cannot be used.
    #[error(transparent)]
    Privacy(#[from] crate::util::pii::PiiError),
    /// The TTS engines cannot be built.
    #[error("TTS: {0}")]
    Tts(#[from] crate::brief::tts::TtsError),
    /// The cluster (PostgreSQL, NATS) cannot be joined.
    #[error(
        "cannot join the cluster: {0} (set cluster.fallback_single_node = true to run alone instead)"
    )]
    Cluster(#[from] crate::cluster::ClusterError),
    /// A non-loopback address with no API token would serve customer data to anyone.
    #[error(
        "refusing to serve on {0} with an empty api.token: transcripts, contexts and call lists would be open to anyone who can reach it. Set api.token (WARMLINE_API_TOKEN), listen on 127.0.0.1, or set api.allow_open = true if something in front of warmline guards it"
    )]
    OpenApi(SocketAddr),
}

/// The program that renders whispers (`tts.whisper_worker_exe`, or this
/// program when it is the warmline binary); `None`: render in this process.
fn whisper_worker_exe(tts: &crate::config::TtsConfig) -> Option<std::path::PathBuf> {
    if !tts.whisper_worker_exe.is_empty() {
        return Some(std::path::PathBuf::from(&tts.whisper_worker_exe));
    }
    let me = std::env::current_exe().ok()?;
    let name = me.file_name()?.to_str()?;
    (name == "warmline").then_some(me)
}

/// How long the callers still on the line at the end of a drain have to hear
/// the closing goodbye and be hung up before the gateway stops.
const CLOSING_GRACE: std::time::Duration = std::time::Duration::from_secs(15);

/// How long a stop waits for the store to write what the last calls queued.
const STORE_FLUSH_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// A gateway serving on a socket; dropping it (or `shutdown`) stops the server.
pub struct RunningGateway {
    /// The bound address (useful with port 0).
    pub addr: SocketAddr,
    /// Shared state (registry, config).
    pub shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    /// The SIP user agent, when `sip.listen` is set.
    pub sip: Option<Arc<crate::legs::sip::endpoint::SipEndpoint>>,
}

impl RunningGateway {
    /// Binds `config.server.listen` and starts serving.
    pub async fn start(config: Config) -> Result<RunningGateway, GatewayError> {
        let apology = crate::call::bridge::Apologies {
            handing_over: crate::assets::agent_failed()?,
            goodbye: crate::assets::agent_unavailable()?,
            closing: crate::assets::shutting_down()?,
        };
        let store = Store::from_config(&config.store)?;
        let cluster = if config.cluster.enabled {
            match crate::cluster::Cluster::connect(&config).await {
                Ok(c) => Some(Arc::new(c)),
                Err(e) if config.cluster.fallback_single_node => {
                    tracing::error!(error = %e, "cluster unreachable; running as a single node (cluster.fallback_single_node)");
                    None
                }
                Err(e) => return Err(e.into()),
            }
        } else {
            None
        };
        let llm = if config.summary.llm_url.is_empty() {
            None
        } else {
            Some(
                LlmSummarizer::new(
                    &config.summary.llm_url,
                    &config.summary.llm_model,
                    &config.summary.llm_api_key,
                    std::time::Duration::from_millis(config.summary.budget_ms),
                )
                .map_err(|e| GatewayError::HttpClient(e.to_string()))?,
            )
        };
        let mut tts = TtsSet::from_config(&config.tts)?;
        if let Some(exe) = whisper_worker_exe(&config.tts) {
            let workers = match config.tts.whisper_workers {
                0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
                n => n,
            };
            tracing::info!(exe = %exe.display(), workers, "whispers rendered in worker processes");
            tts = tts.with_whisper_workers(exe, workers, &config.tts);
        }
        crate::monitor::sentiment::SentimentScorer::warm_up();
        let classifier = crate::monitor::TurnClassifier::from_config(&config.monitor);
        let judge = crate::call::judge::LlmJudge::from_config(&config.monitor)
            .map_err(|e| GatewayError::HttpClient(e.to_string()))?
            .map(Arc::new);
        match &classifier {
            crate::monitor::TurnClassifier::Heads(_) => {
                tracing::info!("escalation monitor: {}", classifier.describe())
            }
            crate::monitor::TurnClassifier::Rules { .. } => tracing::warn!(
                "escalation monitor runs the rule fallback: {}",
                classifier.describe()
            ),
        }
        let webhook = if config.webhook.url.is_empty() {
            None
        } else {
            Some(
                crate::routing::webhook::Webhook::new(
                    &config.webhook.url,
                    &config.webhook.secret,
                    config.webhook.attempts,
                )
                .map_err(GatewayError::HttpClient)?,
            )
        };
        let routing = Routing::new(crate::routing::RoutingConfig::from_config(&config));
        // A previous run that died without ending its calls (kill -9, power
        // loss): close them, and call back the escalated callers it cut off.
        // A cluster's nodes share the database; there the cluster does this.
        if !config.cluster.enabled {
            let now = crate::brief::context::rfc3339(std::time::SystemTime::now());
            match store.recover_after_crash(&now).await {
                Ok(r) if r.closed > 0 => tracing::warn!(
                    closed = r.closed,
                    callbacks = r.callbacks,
                    "calls left open by a previous run closed (gateway_restart); escalated callers among them will be called back"
                ),
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "cannot close the calls a previous run left open")
                }
            }
        }
        // Agents registered over REST earlier (kept in SQLite), then those in the config.
        match store.agents().await {
            Ok(agents) => {
                for a in agents {
                    routing.register_hashed(&a.id, &a.name, &a.token_sha256, a.skills);
                    routing.restore_away(&a.id, a.status == "offline");
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot load registered agents"),
        }
        for agent in &config.routing.agents {
            routing.register(&agent.id, &agent.name, &agent.token, agent.skills.clone());
            routing.set_supervisor(&agent.id, agent.supervisor);
            // Validated at load.
            routing.set_hours(&agent.id, config.desk_hours(&agent.hours).ok().flatten());
        }
        let addr = config.server.listen.clone();
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|source| GatewayError::Bind {
                addr: addr.clone(),
                source,
            })?;
        let local = listener
            .local_addr()
            .map_err(|source| GatewayError::Bind { addr, source })?;
        if config.api.token.is_empty() {
            if !local.ip().is_loopback() && !config.api.allow_open {
                return Err(GatewayError::OpenApi(local));
            }
            tracing::warn!(%local, "api.token is empty: the /v1 API is open to anyone who can reach this address");
        }
        let config_rate = (config.server.per_ip_rate, config.server.per_ip_burst);
        let config_privacy = config.privacy.clone();
        let context_urls =
            crate::util::signature::UrlSigner::new(&config.routing.context_url_secret);
        let context_url_base = if config.routing.context_url_base.is_empty() {
            format!("http://{local}")
        } else {
            config
                .routing
                .context_url_base
                .trim_end_matches('/')
                .to_string()
        };
        let registry = CallRegistry::new(
            config.server.finished_calls_kept,
            config.server.finished_calls_mb << 20,
        );
        let shared = Arc::new(Shared {
            config,
            registry,
            apology,
            store,
            llm,
            tts,
            routing,
            webhook,
            metrics: crate::metrics::Metrics::default(),
            webrtc_calls: Arc::default(),
            draining: std::sync::atomic::AtomicBool::new(false),
            ip_limiter: std::sync::Mutex::new(crate::util::RateLimiter::new(
                config_rate.0,
                config_rate.1,
            )),
            closing: tokio::sync::watch::Sender::new(false),
            sign_ins: std::sync::Mutex::default(),
            redactor: Arc::new(crate::util::pii::Redactor::new(&config_privacy)?),
            context_urls,
            context_url_base,
            cluster,
            classifier,
            judge,
        });
        if let Some(cluster) = shared.cluster.clone() {
            let host: std::sync::Weak<Shared> = Arc::downgrade(&shared);
            cluster.spawn(host).await?;
        }
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let app = crate::http::router(Arc::clone(&shared));
        let server = &shared.config.server;
        let limits = crate::http::server::ServeLimits {
            header_timeout: std::time::Duration::from_millis(server.http_header_timeout_ms.max(1)),
            per_ip: server.max_connections_per_ip,
            total: crate::http::server::connection_ceiling(
                server.max_connections,
                server.fd_headroom,
            ),
        };
        tracing::info!(
            per_ip = limits.per_ip,
            total = limits.total,
            header_timeout_ms = limits.header_timeout.as_millis() as u64,
            "HTTP connection limits"
        );
        let counter = Arc::clone(&shared);
        let refused: Arc<dyn Fn(crate::util::conn_table::Refusal) + Send + Sync> =
            Arc::new(move |why| counter.metrics.peer_drops("http", why.as_str(), 1));
        let task = tokio::spawn(crate::http::server::serve(
            listener,
            app,
            limits,
            refused,
            async {
                let _ = stop_rx.await;
            },
        ));
        tracing::info!(%local, media = %format!("ws://{local}/media"), "warmline listening");
        // Routing's clock: wrap-ups that end and waiting calls that overflow
        // (stops with the gateway: it holds the shared services only weakly).
        let clock = Arc::downgrade(&shared);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                match clock.upgrade() {
                    Some(shared) => shared.routing.tick(),
                    None => break,
                }
            }
        });
        let sip = if shared.config.sip.listen.is_empty() {
            None
        } else {
            // One plane per process (threads named rtp-relay-N), started once.
            crate::legs::sip::relay_plane::start(shared.config.sip.relay_plane_threads());
            Some(crate::legs::sip::endpoint::SipEndpoint::start(Arc::clone(&shared) as _).await?)
        };
        Ok(RunningGateway {
            addr: local,
            shared,
            stop: Some(stop_tx),
            task,
            sip,
        })
    }

    /// The Media Streams URL of this gateway.
    pub fn media_url(&self) -> String {
        format!("ws://{}/media", self.addr)
    }

    /// Stops accepting connections and waits for the server task.
    /// Every record queued before the stop (a call that ended a moment ago)
    /// is on disk when this returns, or a warning says how many are not.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
        self.flush_store().await;
    }

    /// Waits (bounded) until the store has written what was queued so far.
    async fn flush_store(&self) {
        match tokio::time::timeout(STORE_FLUSH_GRACE, self.shared.store.flush()).await {
            Ok(Ok(0)) => {}
            Ok(Ok(pending)) => tracing::warn!(
                pending,
                db = %self.shared.store.location(),
                "stopping with store writes still failing; they are lost"
            ),
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot flush the store at the stop"),
            Err(_) => tracing::warn!(
                grace_s = STORE_FLUSH_GRACE.as_secs(),
                "the store did not finish its queued writes in time"
            ),
        }
    }

    /// Drains, then stops: new calls are refused (503) and `/healthz` answers
    /// 503 so a load balancer moves traffic away, calls in progress go on until
    /// they end or `timeout` passes. Returns how many calls were still up.
    pub async fn drain(self, timeout: std::time::Duration) -> usize {
        use std::sync::atomic::Ordering;
        self.shared.draining.store(true, Ordering::SeqCst);
        let active = self.shared.registry.counts().active;
        tracing::info!(
            active,
            timeout_s = timeout.as_secs(),
            "draining: new calls refused"
        );
        let deadline = tokio::time::Instant::now() + timeout;
        let mut left = active;
        while left > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            left = self.shared.registry.counts().active;
        }
        if left > 0 {
            tracing::warn!(
                left,
                "drain timeout: saying goodbye to the callers still on the line"
            );
            self.shared.closing.send_replace(true);
            // The goodbye (≈ 8 s) plays out, the provider echoes its end mark,
            // every leg is hung up (BYE, close frames); then the server stops.
            let goodbye_deadline = tokio::time::Instant::now() + CLOSING_GRACE;
            while left > 0 && tokio::time::Instant::now() < goodbye_deadline {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                left = self.shared.registry.counts().active;
            }
            if left > 0 {
                tracing::warn!(left, "calls still up after the goodbye; stopping anyway");
            }
        } else {
            tracing::info!("drained: no call in progress");
        }
        if let Some(cluster) = &self.shared.cluster {
            cluster.leave().await;
        }
        self.shutdown().await;
        left
    }

    /// Waits until the server stops (e.g. after Ctrl-C handling elsewhere).
    pub async fn wait(mut self) {
        let _ = (&mut self.task).await;
        self.flush_store().await;
    }
}

impl Drop for RunningGateway {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
