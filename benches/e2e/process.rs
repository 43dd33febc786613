//! The systems under test as separate processes — the warmline gateway
//! (`warmline serve`) and rtpengine — so their CPU time is theirs alone.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed when dropped.
pub struct Process {
    child: Child,
    name: &'static str,
}

impl Process {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// User + system CPU seconds used so far (from /proc; USER_HZ is 100 on Linux).
    pub fn cpu_seconds(&self) -> f64 {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())) else {
            return f64::NAN;
        };
        // Fields after the ")" that closes the command name: utime is the 12th, stime the 13th.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            return f64::NAN;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
        match (ticks(11), ticks(12)) {
            (Some(u), Some(s)) => (u + s) / 100.0,
            _ => f64::NAN,
        }
    }

    /// Resident memory, KiB.
    pub fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(0)
    }

    /// Fails when the process has already exited.
    pub fn check_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Err(format!("{} exited: {status}", self.name)),
            _ => Ok(()),
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port (bound and released; good enough on a quiet machine).
pub fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// The running gateway.
pub struct Gateway {
    /// Its process.
    pub process: Process,
    /// HTTP/WebSocket address.
    pub http: SocketAddr,
    /// SIP address (UDP).
    pub sip: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Gateway {
    /// Starts `warmline serve` with SIP on, dialing `agent_url`, with `humans`
    /// human agents `bench-agent-<i>` (token `bench-token-<i>`) and, with
    /// `phones = Some((addr, n))`, `n` agents `bench-phone-<i>` on SIP phones
    /// at `addr`; logs at `warn`.
    pub async fn start(
        exe: &Path,
        agent_url: &str,
        humans: usize,
        phones: Option<(SocketAddr, usize)>,
    ) -> Result<Gateway, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let http: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let sip: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let config = format!(
            // Every simulated call comes from 127.0.0.1: no per-IP limit (HTTP or
            // INVITE rate; the trunk's default burst is 100); up to 5000 calls.
            "[server]\nlisten = \"{http}\"\nper_ip_rate = 0.0\nmax_calls = 5000\n[agent]\nurl = \"{agent_url}\"\n[media]\nbarge_in = false\n\
             [sip]\nlisten = \"{sip}\"\nrtp_port_min = 40000\nrtp_port_max = 49999\nmax_calls = 5000\ninvite_rate = 0.0\n\
             [store]\npath = \"{db}\"\n[log]\nlevel = \"warn\"\n",
            db = dir.path().join("warmline.db").display()
        );
        let mut config = config;
        for i in 0..humans {
            config.push_str(&format!(
                "[[routing.agents]]\nid = \"bench-agent-{i}\"\nname = \"Agent {i}\"\ntoken = \"bench-token-{i}\"\n"
            ));
        }
        if let Some((addr, n)) = phones {
            for i in 0..n {
                config.push_str(&format!(
                    "[[routing.agents]]\nid = \"bench-phone-{i}\"\nname = \"Phone {i}\"\ntoken = \"bench-phone-token-{i}\"\nsip_uri = \"sip:phone{i}@{addr}\"\n"
                ));
            }
        }
        let config_path = dir.path().join("bench.toml");
        std::fs::write(&config_path, config).map_err(|e| e.to_string())?;
        let mut cmd = Command::new(exe);
        // The harness's own settings are not the gateway's configuration.
        for (name, _) in std::env::vars().filter(|(n, _)| n.starts_with("WARMLINE_BENCH_")) {
            cmd.env_remove(name);
        }
        let child = cmd
            .args(["serve", "--config"])
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
        let mut process = Process {
            child,
            name: "warmline",
        };
        wait_tcp(http, &mut process).await?;
        Ok(Gateway {
            process,
            http,
            sip,
            _dir: dir,
        })
    }

    /// The Media Streams URL callers connect to.
    pub fn media_url(&self) -> String {
        format!("ws://{}/media", self.http)
    }
}

async fn wait_tcp(addr: SocketAddr, process: &mut Process) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        process.check_alive()?;
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!(
        "{} did not listen on {addr} within 20 s",
        process.name
    ))
}

/// Starts rtpengine in userspace mode with its ng control port on `ng`.
pub async fn start_rtpengine(ng: SocketAddr) -> Result<Process, String> {
    let exe = which("rtpengine")
        .ok_or("rtpengine is not installed (apt-get install rtpengine-daemon)")?;
    let dir = std::env::temp_dir().join(format!("warmline-bench-rtpengine-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let child = Command::new(exe)
        .args([
            "--config-file=none",
            "--interface=127.0.0.1",
            &format!("--listen-ng={ng}"),
            "--table=-1",
            "--foreground",
            "--log-stderr",
            "--log-level=3",
            "--delete-delay=0",
            "--port-min=30000",
            "--port-max=39999",
        ])
        .arg(format!("--pidfile={}", dir.join("rtpengine.pid").display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start rtpengine: {e}"))?;
    let mut process = Process {
        child,
        name: "rtpengine",
    };
    // Ready when it answers a ping.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        process.check_alive()?;
        if super::rtpengine::ping(ng).await {
            return Ok(process);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err("rtpengine did not answer ping within 10 s".into())
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

/// The gateway's `warmline_frame_processing_seconds` histogram buckets
/// (upper bound in seconds, cumulative count), read from `GET /metrics`.
pub async fn frame_processing_buckets(http: SocketAddr) -> Vec<(f64, u64)> {
    metrics_text(http)
        .await
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("warmline_frame_processing_seconds_bucket{le=\"")?;
            let (bound, count) = rest.split_once("\"} ")?;
            let bound = if bound == "+Inf" {
                f64::INFINITY
            } else {
                bound.parse().ok()?
            };
            Some((bound, count.trim().parse().ok()?))
        })
        .collect()
}

/// The gateway's `GET /metrics` text ("" when it cannot be read).
pub async fn metrics_text(http: SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut tcp) = tokio::net::TcpStream::connect(http).await else {
        return String::new();
    };
    let request = "GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n";
    if tcp.write_all(request.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut text = String::new();
    let _ = tcp.read_to_string(&mut text).await;
    text
}

/// The relay plane's lines of `GET /metrics` (calls relayed now, packets
/// forwarded and dropped), for the relay mode's log.
pub async fn relay_plane_lines(http: SocketAddr) -> String {
    metrics_text(http)
        .await
        .lines()
        .filter(|l| l.starts_with("warmline_relay_plane"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The bucket bound (µs) under which fraction `q` of the observations between
/// two readings fall.
pub fn bucket_quantile_us(before: &[(f64, u64)], after: &[(f64, u64)], q: f64) -> Option<f64> {
    let deltas: Vec<(f64, u64)> = after
        .iter()
        .map(|&(b, c)| {
            let earlier = before.iter().find(|(x, _)| *x == b).map_or(0, |(_, c)| *c);
            (b, c.saturating_sub(earlier))
        })
        .collect();
    let total = deltas.last()?.1;
    if total == 0 {
        return None;
    }
    deltas
        .iter()
        .find(|(_, c)| *c as f64 >= q * total as f64)
        .map(|(b, _)| b * 1e6)
}
