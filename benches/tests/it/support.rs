//! Starting a signaling service and a node in-process for a test.

use server::config::NodeConfig;

pub use benches::lab::Lab;

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

/// Starts the lab for a test, panicking with the reason if it cannot.
pub async fn start(config: NodeConfig) -> Lab {
    init_logging();
    Lab::start(config)
        .await
        .expect("start signaling and a node")
}
