//! Starting a signaling service and a node in-process for a test.

use std::time::Duration;

use server::Node;
use server::config::NodeConfig;

use signaling::service::Service;
use tokio::sync::watch;

/// A signaling service and one node on loopback; both stop when this is dropped.
pub struct Stack {
    pub addr: std::net::SocketAddr,

    stop: watch::Sender<bool>,
}

impl Stack {
    /// Starts the service on a free port and a node with `config` (its signaling URL is set
    /// here), and waits until the node has registered.
    pub async fn start(mut config: NodeConfig) -> Stack {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "info,webrtc=warn,rtc=warn".into()),
            )
            .with_test_writer()
            .try_init();
        let service = Service::bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        let addr = service.local_addr();
        let hub = service.hub();
        let (stop, stop_rx) = watch::channel(false);
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        tokio::spawn(service.run(stopped(stop_rx.clone())));
        config.signaling_url = format!("ws://{addr}/ws/node");
        tokio::spawn(Node::new(config).run(stopped(stop_rx)));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while hub.nodes().is_empty() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the node did not register within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Stack { addr, stop }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
