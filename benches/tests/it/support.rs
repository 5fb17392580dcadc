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
    init_logging();
    let turn = turn().await;
    let lab = Lab::start(config)
        .await
        .expect("start signaling and a node");
    Exclusive { lab, _turn: turn }
}
