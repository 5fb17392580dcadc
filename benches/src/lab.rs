//! A signaling service and one node with the demo title, in this process, on loopback: the
//! stage every end-to-end test and benchmark plays on.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use server::Node;
use server::config::NodeConfig;
use signaling::service::Service;
use tokio::sync::watch;

/// A running signaling service and node; both stop when this is dropped.
#[derive(Debug)]
pub struct Lab {
    /// Where the signaling service (and the browser page) listens.
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
}

impl Lab {
    /// Starts the service on a free loopback port and a node with `config` (its signaling URL
    /// is set here), and waits until the node has registered. Must run inside a Tokio runtime.
    pub async fn start(mut config: NodeConfig) -> anyhow::Result<Lab> {
        let service = Service::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .context("start the signaling service")?;
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
            if tokio::time::Instant::now() > deadline {
                bail!("the node did not register with signaling within 10 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Lab { addr, stop })
    }

    /// The URL of the browser page.
    pub fn page_url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
