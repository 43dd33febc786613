//! A real headless Chromium driven over WebDriver (chromedriver, W3C protocol)
//! with plain HTTP: fake media devices play a WAV file as the microphone.
#![allow(dead_code)]

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where screenshots go (kept after the test as artifacts).
pub fn artifacts_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

/// One browser at a time per test binary: two headless Chromiums with fake
/// audio on 2 cores starve each other's audio capture.
fn one_at_a_time() -> std::sync::Arc<tokio::sync::Mutex<()>> {
    static LOCK: std::sync::OnceLock<std::sync::Arc<tokio::sync::Mutex<()>>> =
        std::sync::OnceLock::new();
    std::sync::Arc::clone(LOCK.get_or_init(Default::default))
}

/// One browser session.
pub struct Browser {
    _turn: tokio::sync::OwnedMutexGuard<()>,
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium whose microphone plays
    /// `microphone` (a WAV file), at a `width`×`height` window.
    pub async fn launch(microphone: &Path, width: u32, height: u32) -> Browser {
        let turn = one_at_a_time().lock_owned().await;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "chromedriver runs (Debian package chromium-driver; scripts/setup.sh installs it)",
            );
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let ready = Instant::now() + Duration::from_secs(20);
        loop {
            let up = http.get(format!("{base}/status")).send().await;
            if up.is_ok() {
                break;
            }
            assert!(Instant::now() < ready, "chromedriver did not come up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().expect("profile dir");
        let args = vec![
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--use-fake-ui-for-media-stream".into(),
            "--use-fake-device-for-media-stream".into(),
            format!("--use-file-for-fake-audio-capture={}", microphone.display()),
            "--autoplay-policy=no-user-gesture-required".into(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}
        }}});
        let reply: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .expect("session reply");
        let session = reply["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {reply}"))
            .to_string();
        Browser {
            _turn: turn,
            driver,
            base,
            session,
            http,
            _profile: profile,
        }
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut request = self.http.request(method, url);
        if !body.is_null() {
            request = request.json(&body);
        }
        let reply: Value = request
            .send()
            .await
            .expect("webdriver reachable")
            .json()
            .await
            .expect("webdriver reply");
        if reply["value"]["error"].is_string() {
            panic!("webdriver {path}: {}", reply["value"]);
        }
        reply["value"].clone()
    }

    /// Opens `url`.
    pub async fn goto(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", json!({ "url": url }))
            .await;
    }

    /// Runs `script` (a function body; `return` gives the value) in the page.
    pub async fn js(&self, script: &str) -> Value {
        self.command(
            reqwest::Method::POST,
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
        .await
    }

    /// Runs `script` with `args` (`arguments[0]`, …) in the page.
    pub async fn js_with(&self, script: &str, args: Value) -> Value {
        self.command(
            reqwest::Method::POST,
            "/execute/sync",
            json!({"script": script, "args": args}),
        )
        .await
    }

    /// Runs axe-core (installed by scripts/setup.sh) on the page as it is
    /// now; returns its serious and critical violations, one line each.
    pub async fn accessibility_violations(&self) -> Vec<String> {
        let dir =
            std::env::var("WARMLINE_CACHE_DIR").unwrap_or_else(|_| "/var/cache/warmline".into());
        let path = format!("{dir}/axe/node_modules/axe-core/axe.min.js");
        let source = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("axe-core at {path} (scripts/setup.sh installs it): {e}"));
        self.js_with(
            "if (!window.axe) { const s = document.createElement('script'); s.textContent = arguments[0]; document.head.append(s); }
             window.__axe = null;
             axe.run(document, {resultTypes: ['violations']}).then(r => { window.__axe = r.violations; });
             return true;",
            json!([source]),
        )
        .await;
        self.wait_for(
            "window.__axe !== null",
            Duration::from_secs(30),
            "axe-core's report",
        )
        .await;
        let found = self
            .js("return window.__axe.filter(v => v.impact === 'serious' || v.impact === 'critical')
                   .map(v => v.id + ' (' + v.impact + '): ' + v.nodes.map(n => n.target.join(' ')).join(', '));")
            .await;
        found
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits until `condition` (a JS expression) is truthy; panics with
    /// `what` and the page's `window.warmline` state otherwise.
    pub async fn wait_for(&self, condition: &str, within: Duration, what: &str) {
        let deadline = Instant::now() + within;
        let script = format!("return !!({condition});");
        while Instant::now() < deadline {
            if self.js(&script).await == Value::Bool(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let state = self.js("return window.warmline || null;").await;
        panic!("timed out waiting for {what} ({condition}); page state: {state}");
    }

    /// Clicks the element with this id (as a user would, through the DOM).
    pub async fn click(&self, id: &str) {
        let found = self
            .js(&format!(
                "const e = document.getElementById({id:?}); if (!e) return false; e.click(); return true;"
            ))
            .await;
        assert_eq!(found, Value::Bool(true), "no element #{id}");
    }

    /// Opens the console at `url` (`?agent=…&token=…` here for the test's
    /// convenience: the token is typed into the form, never put in the page's
    /// URL) and presses Sign in.
    pub async fn sign_in(&self, url: &str) {
        let (page, token) = match url.split_once("token=") {
            Some((before, after)) => {
                let (token, rest) = after.split_once('&').unwrap_or((after, ""));
                let page = format!("{before}{rest}");
                (
                    page.trim_end_matches(['&', '?']).to_string(),
                    token.to_string(),
                )
            }
            None => (url.to_string(), String::new()),
        };
        self.goto(&page).await;
        self.js_with(
            "document.getElementById('agent-token').value = arguments[0]; return true;",
            json!([token]),
        )
        .await;
        self.click("signin-button").await;
    }

    /// Opens the console at `url` (with `?agent=…&token=…`), signs in, waits
    /// for the headset audio (WebRTC) and goes available.
    pub async fn sign_in_available(&self, url: &str) {
        self.sign_in(url).await;
        self.wait_for(
            "window.warmline.audioConnected",
            Duration::from_secs(10),
            "the console's WebRTC audio",
        )
        .await;
        // Signed in, the gateway routes the agent as available unless they
        // chose otherwise before; the header says what the gateway says.
        self.wait_for(
            "window.warmline.presence !== null",
            Duration::from_secs(5),
            "the presence from the gateway",
        )
        .await;
        self.choose_presence("available").await;
    }

    /// Picks a presence in the header (as a user would) and waits until the
    /// gateway confirms it.
    pub async fn choose_presence(&self, status: &str) {
        self.js(&format!(
            "const s = document.getElementById('presence-choice');
             if (window.warmline.presence !== {status:?}) {{
               s.value = {status:?}; s.dispatchEvent(new Event('change'));
             }}
             return true;"
        ))
        .await;
        self.wait_for(
            &format!("window.warmline.presence === {status:?}"),
            Duration::from_secs(5),
            status,
        )
        .await;
    }

    /// Saves a PNG screenshot as `name`.png in [`artifacts_dir`]; returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        use base64::Engine;
        let png = self
            .command(reqwest::Method::GET, "/screenshot", Value::Null)
            .await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap_or_default())
            .expect("screenshot is base64");
        assert!(bytes.starts_with(b"\x89PNG"), "screenshot is a PNG");
        let path = artifacts_dir().join(format!("{name}.png"));
        std::fs::write(&path, bytes).expect("screenshot written");
        path
    }

    /// Ends the session and the driver.
    pub async fn quit(mut self) {
        let _ = self
            .http
            .delete(format!("{}/session/{}", self.base, self.session))
            .send()
            .await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}

/// Writes `pcm` (8 kHz) as a 48 kHz mono WAV for the fake microphone.
pub fn microphone_wav(pcm_8k: &[i16], path: &Path) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("wav");
    for &s in pcm_8k {
        for _ in 0..6 {
            w.write_sample(s).expect("sample");
        }
    }
    w.finalize().expect("wav finalized");
}
