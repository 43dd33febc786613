//! Real PostgreSQL and NATS for the scale-out tests: a fresh database per test
//! on the server `scripts/test-services.sh` starts (`make test` does;
//! `WARMLINE_TEST_POSTGRES` points elsewhere), and a private `nats-server` per
//! test on a free port.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The PostgreSQL server the tests create their databases on.
pub fn postgres_server_url() -> String {
    std::env::var("WARMLINE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://warmline:warmline@127.0.0.1:54329/postgres".into())
}

/// A new empty database for one test; its URL.
pub async fn fresh_database(tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let server = postgres_server_url();
    let name = format!(
        "wl_{tag}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    let (client, connection) = tokio_postgres::connect(&server, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL at {server} is needed by this test (`bash scripts/test-services.sh start` starts it; `make test` does): {e}"
            )
        });
    tokio::spawn(connection);
    for sql in [
        format!("DROP DATABASE IF EXISTS {name}"),
        format!("CREATE DATABASE {name}"),
    ] {
        client
            .batch_execute(&sql)
            .await
            .expect("create the test database");
    }
    match server.rfind('/') {
        Some(slash) if !server[..slash].ends_with('/') => format!("{}/{name}", &server[..slash]),
        _ => format!("{server}/{name}"),
    }
}

/// A private nats-server, killed on drop.
pub struct Nats {
    child: Child,
    /// `nats://127.0.0.1:<port>`.
    pub url: String,
    /// Its port.
    pub port: u16,
}

impl Nats {
    /// Starts nats-server on a free loopback port and waits until it accepts connections.
    pub fn start() -> Nats {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        Self::start_on(port)
    }

    /// Starts nats-server on `port` (e.g. again after [`Nats::stop`]).
    pub fn start_on(port: u16) -> Nats {
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server runs (Debian package nats-server; scripts/setup.sh installs it)");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "nats-server came up");
            std::thread::sleep(Duration::from_millis(20));
        }
        Nats {
            child,
            url: format!("nats://127.0.0.1:{port}"),
            port,
        }
    }

    /// Kills the server.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The secret the test nodes share.
pub const SECRET: &str = "cluster-secret-for-tests";

/// Makes `c` node `name` of a cluster on `postgres` and `nats`, listening on `port`.
pub fn cluster_node_config(
    c: &mut warmline::config::Config,
    name: &str,
    port: u16,
    postgres: &str,
    nats: &str,
) {
    c.server.listen = format!("127.0.0.1:{port}");
    c.store.postgres_url = postgres.into();
    c.cluster.enabled = true;
    c.cluster.node_id = name.into();
    c.cluster.nats_url = nats.into();
    c.cluster.advertise_url = format!("http://127.0.0.1:{port}");
    c.cluster.secret = SECRET.into();
    c.cluster.heartbeat_ms = 200;
    c.cluster.lease_ms = 1000;
}

/// The same as TOML tables for `warmline serve` (see `serve_process_on`; the
/// PostgreSQL URL goes in its `store_keys`).
pub fn cluster_node_toml(name: &str, port: u16, nats: &str) -> String {
    format!(
        "[cluster]\nenabled = true\nnode_id = \"{name}\"\nnats_url = \"{nats}\"\n\
         advertise_url = \"http://127.0.0.1:{port}\"\nsecret = \"{SECRET}\"\nheartbeat_ms = 200\nlease_ms = 1000\n"
    )
}

/// Waits until `routing` lists `agent` as available on `node` (presence crossed over).
pub async fn wait_agent_on(routing: &warmline::routing::Routing, agent: &str, node: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if routing.agents().iter().any(|a| {
            a.id == agent
                && a.node.as_deref() == Some(node)
                && a.status == warmline::routing::AgentStatus::Available
        }) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{agent} seen available on {node}: {:?}",
            routing.agents()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One query's rows on `url`.
pub async fn query(
    url: &str,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Vec<tokio_postgres::Row> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to the test database");
    tokio::spawn(connection);
    client.query(sql, params).await.expect("query")
}

/// `url` with its port replaced by `port`.
pub fn with_port(url: &str, port: u16) -> String {
    let at = url.rfind('@').map_or(0, |i| i + 1);
    let host_end = url[at..].find('/').map_or(url.len(), |i| at + i);
    let host = url[at..host_end]
        .rsplit_once(':')
        .map_or(&url[at..host_end], |(h, _)| h);
    format!("{}{host}:{port}{}", &url[..at], &url[host_end..])
}

/// A TCP proxy in front of a server, to cut a node off it and bring it back.
pub struct Proxy {
    /// The proxy's loopback port.
    pub port: u16,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    links: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    /// Forwards connections on a free port to 127.0.0.1:`target`.
    pub async fn start(target: u16) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("proxy port");
        let port = listener.local_addr().expect("addr").port();
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let links: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>> =
            Default::default();
        let (up2, links2) = (up.clone(), links.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    continue; // refused: dropped at once
                }
                let link = tokio::spawn(async move {
                    if let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                links2.lock().expect("links").push(link);
            }
        });
        Proxy { port, up, links }
    }

    /// Drops every connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for link in self.links.lock().expect("links").drain(..) {
            link.abort();
        }
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// Two nodes' views of a fresh cluster database (migrated), both alive.
pub async fn two_cluster_dbs(
    tag: &str,
) -> (
    warmline::cluster::db::ClusterDb,
    warmline::cluster::db::ClusterDb,
) {
    use warmline::cluster::db::ClusterDb;
    let url = fresh_database(tag).await;
    drop(warmline::store::Store::open_postgres(&url).expect("migrations"));
    let lease = Duration::from_secs(30);
    let a = ClusterDb::connect(&url, "node-a", lease, lease)
        .await
        .expect("node a");
    let b = ClusterDb::connect(&url, "node-b", lease, lease)
        .await
        .expect("node b");
    a.heartbeat("http://127.0.0.1:1").await.expect("a beats");
    b.heartbeat("http://127.0.0.1:2").await.expect("b beats");
    (a, b)
}

/// A standard-urgency queue entry for `call_id` needing `skill`.
pub fn queue_entry(call_id: &str, skill: &str) -> warmline::cluster::db::QueueEntry {
    warmline::cluster::db::QueueEntry {
        call_id: call_id.into(),
        skill: skill.into(),
        urgency: warmline::domain::Urgency::Standard,
        tried: vec![],
        context: "{}".into(),
        callback_number: String::new(),
        only: None,
    }
}

/// Waits until `sql` returns a row on `url`.
pub async fn wait_for_row(url: &str, sql: &str, within: Duration, what: &str) {
    let deadline = tokio::time::Instant::now() + within;
    while query(url, sql, &[]).await.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
