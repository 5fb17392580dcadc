//! Debian's headless Chromium, driven over the DevTools protocol: launch it on a page, evaluate
//! JavaScript in it, and clean up (process and profile directory) on drop.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// How long Chromium may take to open its DevTools port.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one evaluation may take.
const EVAL_TIMEOUT: Duration = Duration::from_secs(30);

/// Window size and extra flags for a launch.
#[derive(Debug, Clone)]
pub struct LaunchOptions {
    /// Viewport width and height in CSS pixels.
    pub window: (u32, u32),
    /// A script that runs in the page before any of its own (DevTools
    /// `Page.addScriptToEvaluateOnNewDocument`): the browser opens a blank page, installs it,
    /// then goes to the URL.
    pub before_load: Option<String>,
}

impl Default for LaunchOptions {
    fn default() -> Self {
        Self {
            window: (1280, 800),
            before_load: None,
        }
    }
}

/// A running headless Chromium with one page.
#[derive(Debug)]
pub struct Chromium {
    child: Child,
    profile: PathBuf,
    ws: Ws,
    next_id: u64,
}

/// The Chromium binary: `$STRATUS_CHROMIUM`, else `chromium` from Debian.
pub fn binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("STRATUS_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

impl Chromium {
    /// Starts Chromium on `url` and connects to the page's DevTools target.
    pub async fn launch(url: &str, options: &LaunchOptions) -> anyhow::Result<Self> {
        let bin =
            binary().context("chromium not found; install it with `apt-get install chromium`")?;
        let profile = std::env::temp_dir().join(format!(
            "stratus-chromium-{}-{:x}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&profile).context("create a Chromium profile directory")?;
        let log = std::fs::File::create(profile.join("chromium.log"))?;
        let child = Command::new(&bin)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--mute-audio",
                "--remote-debugging-port=0",
                "--allow-loopback-in-peer-connection",
                "--autoplay-policy=no-user-gesture-required",
                "--disable-features=WebRtcHideLocalIpsWithMdns",
                "--disable-background-timer-throttling",
                "--disable-renderer-backgrounding",
            ])
            .arg(format!(
                "--window-size={},{}",
                options.window.0, options.window.1
            ))
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(if options.before_load.is_some() {
                "about:blank"
            } else {
                url
            })
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let mut child = child;
        let connected = tokio::time::timeout(START_TIMEOUT, connect(&mut child, &profile))
            .await
            .map_err(|_| {
                anyhow!("chromium did not open its DevTools port within {START_TIMEOUT:?}")
            })
            .and_then(|r| r);
        match connected {
            Ok(ws) => {
                let mut page = Self {
                    child,
                    profile,
                    ws,
                    next_id: 1,
                };
                if let Some(script) = &options.before_load {
                    page.call("Page.enable", json!({})).await?;
                    page.call(
                        "Page.addScriptToEvaluateOnNewDocument",
                        json!({ "source": script }),
                    )
                    .await
                    .context("install the page's first script")?;
                    page.call("Page.navigate", json!({ "url": url }))
                        .await
                        .with_context(|| format!("open {url}"))?;
                }
                Ok(page)
            }
            Err(e) => {
                let _ = child.start_kill();
                let _ = std::fs::remove_dir_all(&profile);
                Err(e)
            }
        }
    }

    /// The browser's process id (its renderer and GPU processes are its descendants).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Evaluates `expression` in the page (promises are awaited) and returns its JSON value.
    pub async fn eval(&mut self, expression: &str) -> anyhow::Result<Value> {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "awaitPromise": true, "returnByValue": true }),
            )
            .await?;
        if let Some(details) = result.get("exceptionDetails") {
            let text = details["exception"]["description"]
                .as_str()
                .or(details["text"].as_str())
                .unwrap_or("unknown exception");
            bail!("javascript threw: {text}");
        }
        Ok(result["result"]["value"].clone())
    }

    /// Sends one DevTools command and waits for its reply.
    pub async fn call(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let msg = json!({ "id": id, "method": method, "params": params });
        self.ws.send(Message::Text(msg.to_string().into())).await?;
        let reply = tokio::time::timeout(EVAL_TIMEOUT, async {
            while let Some(msg) = self.ws.next().await {
                if let Message::Text(text) = msg? {
                    let v: Value = serde_json::from_str(&text)?;
                    if v["id"] == id {
                        return Ok(v);
                    }
                }
            }
            Err(anyhow!("the DevTools connection closed"))
        })
        .await
        .map_err(|_| anyhow!("{method} did not answer within {EVAL_TIMEOUT:?}"))??;
        if let Some(err) = reply.get("error") {
            bail!("{method} failed: {err}");
        }
        Ok(reply["result"].clone())
    }

    /// Polls `expression` until it evaluates to a truthy value, or fails after `timeout`
    /// with `what` and the last value seen.
    pub async fn wait_for(
        &mut self,
        expression: &str,
        timeout: Duration,
        what: &str,
    ) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = Value::Null;
        while tokio::time::Instant::now() < deadline {
            last = self.eval(expression).await?;
            let truthy = match &last {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return Ok(last);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let status = self
            .eval("window.stratus ? window.stratus.status : 'no page state'")
            .await
            .unwrap_or_default();
        bail!(
            "timed out after {timeout:?} waiting for {what} (last value {last}, page status {status})"
        )
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        // The profile is ours alone; Chromium may still be writing while it dies, so retry once.
        if std::fs::remove_dir_all(&self.profile).is_err() {
            std::thread::sleep(Duration::from_millis(200));
            let _ = std::fs::remove_dir_all(&self.profile);
        }
    }
}

/// Waits for Chromium's DevTools port and connects to its page target.
async fn connect(child: &mut Child, profile: &std::path::Path) -> anyhow::Result<Ws> {
    let port_file = profile.join("DevToolsActivePort");
    let port: u16 = loop {
        if let Some(status) = child.try_wait()? {
            bail!(
                "chromium exited at start ({status}); see {}",
                profile.join("chromium.log").display()
            );
        }
        if let Ok(text) = std::fs::read_to_string(&port_file)
            && let Some(Ok(port)) = text.lines().next().map(str::parse)
        {
            break port;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let page = loop {
        let list = http_get_json(port, "/json/list").await?;
        let page = list.as_array().and_then(|targets| {
            targets
                .iter()
                .find(|t| t["type"] == "page")
                .and_then(|t| t["webSocketDebuggerUrl"].as_str())
        });
        if let Some(url) = page {
            break url.to_string();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (ws, _) = tokio_tungstenite::connect_async(page.as_str())
        .await
        .context("connect to the page's DevTools socket")?;
    Ok(ws)
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

/// A minimal HTTP/1.1 GET on loopback that returns the body parsed as JSON. Chromium's DevTools
/// server keeps the connection open, so the body is read by its `Content-Length`.
async fn http_get_json(port: u16, path: &str) -> anyhow::Result<Value> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("DevTools closed the connection before answering {path}");
        }
        raw.extend_from_slice(&chunk[..n]);
        let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .context("DevTools answered without a Content-Length")?;
        if raw.len() >= end + 4 + length {
            return Ok(serde_json::from_slice(&raw[end + 4..end + 4 + length])?);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The script given as `before_load` runs before the page's own: the page sees what it set.
    #[tokio::test]
    async fn the_first_script_runs_before_the_page() {
        if binary().is_none() {
            eprintln!("chromium is not installed; skipped");
            return;
        }
        let page_url = "data:text/html,<script>window.seen = typeof window.__first</script>";
        let mut page = Chromium::launch(
            page_url,
            &LaunchOptions {
                before_load: Some("window.__first = 1;".into()),
                ..LaunchOptions::default()
            },
        )
        .await
        .expect("launch");
        let seen = page
            .wait_for("window.seen", Duration::from_secs(10), "the page's script")
            .await
            .expect("the page ran");
        assert_eq!(seen, "number");
    }
}
