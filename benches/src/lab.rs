//! A signaling service and one node with the demo title, in this process, on loopback: the
//! stage every end-to-end test and benchmark plays on.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use server::Node;
use server::config::NodeConfig;
use signaling::hub::Hub;
use signaling::service::Service;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running signaling service and node; both stop when this is dropped.
#[derive(Debug)]
pub struct Lab {
    /// Where the signaling service (and the browser page) listens.
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    hub: std::sync::Arc<Hub>,
}

/// An extra node of a [`Lab`]; killed (its task aborted, as if the process died) on
/// [`NodeHandle::kill`] or drop.
#[derive(Debug)]
pub struct NodeHandle {
    task: JoinHandle<()>,
}

impl NodeHandle {
    /// Kills the node at once: no goodbye to signaling or players.
    pub fn kill(self) {}
}

impl Drop for NodeHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
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
        let node_id = config.node_id.clone();
        tokio::spawn(Node::new(config).run(stopped(stop_rx)));
        wait_registered(&hub, &node_id).await?;
        Ok(Lab { addr, stop, hub })
    }

    /// Starts one more node with `config` (give it its own `node_id`) and waits until it has
    /// registered.
    pub async fn add_node(&self, mut config: NodeConfig) -> anyhow::Result<NodeHandle> {
        config.signaling_url = format!("ws://{}/ws/node", self.addr);
        let node_id = config.node_id.clone();
        let task = tokio::spawn(Node::new(config).run(std::future::pending()));
        wait_registered(&self.hub, &node_id).await?;
        Ok(NodeHandle { task })
    }

    /// The URL of the browser page.
    pub fn page_url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

async fn wait_registered(hub: &Hub, node_id: &str) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !hub.nodes().iter().any(|n| n.node_id == node_id) {
        if tokio::time::Instant::now() > deadline {
            bail!("node {node_id} did not register with signaling within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
