//! Starting a signaling service and a node in-process for a test.

use benches::lab::Lab;
use server::config::NodeConfig;
use tokio::sync::{Mutex, MutexGuard};

/// Logs for tests (`RUST_LOG` overrides), once per process.
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,webrtc=warn,rtc=warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Tests that stream video share two cores with the renderer, the encoder and Chromium; run in
/// parallel they would measure each other. Each holds this for its whole run.
static STREAMING: Mutex<()> = Mutex::const_new(());

/// A running lab that also holds the streaming lock until dropped.
pub struct Exclusive {
    lab: Lab,
    _turn: MutexGuard<'static, ()>,
}

impl std::ops::Deref for Exclusive {
    type Target = Lab;
    fn deref(&self) -> &Lab {
        &self.lab
    }
}

/// Waits for this test's turn to use the machine alone (for tests that run Chromium without a
/// lab).
pub async fn turn() -> MutexGuard<'static, ()> {
    STREAMING.lock().await
}

/// Waits for the streaming lock, then starts the lab for a test, panicking with the reason if
/// it cannot.
pub async fn start(config: NodeConfig) -> Exclusive {
    start_with(config, &signaling::config::Config::default()).await
}

/// [`start`] with a signaling configuration of the test's.
pub async fn start_with(config: NodeConfig, signaling: &signaling::config::Config) -> Exclusive {
    init_logging();
    let turn = turn().await;
    let lab = Lab::start_with(config, signaling)
        .await
        .expect("start signaling and a node");
    Exclusive { lab, _turn: turn }
}

/// Waits until the decoded frame's input indicator (the demo title's bottom-left square) has
/// `want`'s colour, ±40 per channel; panics with the last frame after 10 s.
pub async fn wait_for_indicator(page: &mut benches::chromium::Chromium, want: [u8; 3], what: &str) {
    use serde_json::Value;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut last = Value::Null;
    while tokio::time::Instant::now() < deadline {
        last = page
            .eval("window.stratus.inspectFrame()")
            .await
            .expect("inspect");
        let got: Vec<i64> = last["indicator"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_i64).collect())
            .unwrap_or_default();
        if got.len() == 3
            && got
                .iter()
                .zip(want)
                .all(|(g, w)| (g - w as i64).abs() <= 40)
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{what}: indicator never showed {want:?}; last frame {last}");
}

/// A signaling configuration with one studio, `acme` (key `acme-key`).
pub fn studio() -> signaling::config::Config {
    signaling::config::Config {
        studios: vec![signaling::config::Studio {
            name: "acme".into(),
            key: "acme-key".into(),
        }],
        ..signaling::config::Config::default()
    }
}

/// Publishes a command title as the studio `acme`.
pub async fn publish(addr: std::net::SocketAddr, id: &str, argv: &[&str]) {
    let manifest = serde_json::json!({
        "id": id,
        "name": id,
        "launch": {"kind": "command", "argv": argv},
    })
    .to_string();
    let put = format!(
        "PUT /api/titles/{id} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer acme-key\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{manifest}",
        manifest.len()
    );
    let reply = benches::lab::http_raw(addr, &put).await.expect("publish");
    assert!(reply.starts_with("HTTP/1.1 201"), "{reply}");
}

/// Opens the page on `title` in headless Chromium and waits (40 s at most) until the session it
/// starts has ended, as a title that fails to start or cannot be streamed ends it.
pub async fn play_until_the_session_ends(lab: &Lab, title: &str) -> benches::chromium::Chromium {
    use benches::chromium::{Chromium, LaunchOptions};
    let mut page = Chromium::launch(
        &format!("{}?title={title}", lab.page_url()),
        &LaunchOptions::default(),
    )
    .await
    .expect("launch headless chromium");
    page.wait_for(
        "window.stratus && window.stratus.lastEnd !== null",
        std::time::Duration::from_secs(40),
        "the session's end",
    )
    .await
    .unwrap_or_else(|e| panic!("{title}: {e}"));
    page
}
