//! A signaling service and one node with the demo title, in this process, on loopback: the
//! stage every end-to-end test and benchmark plays on.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use server::config::NodeConfig;
use server::metrics::NodeMetrics;
use server::{Drainer, Node};
use signaling::config::Config;
use signaling::service::{ReplicaState, Service};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running signaling service and node; both stop when this is dropped.
#[derive(Debug)]
pub struct Lab {
    /// Where the signaling service (and the browser page) listens.
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    shared: std::sync::Arc<ReplicaState>,
    /// The first node's live metrics (its sessions' frame counts and latencies).
    metrics: std::sync::Arc<NodeMetrics>,
    drainer: Drainer,
    node_task: JoinHandle<()>,
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
    pub async fn start(config: NodeConfig) -> anyhow::Result<Lab> {
        Self::start_with(config, &Config::default()).await
    }

    /// [`Lab::start`] with a signaling configuration of the test's (TURN, keys, limits).
    pub async fn start_with(mut config: NodeConfig, signaling: &Config) -> anyhow::Result<Lab> {
        let service = Service::bind_with(SocketAddr::from(([127, 0, 0, 1], 0)), signaling)
            .await
            .context("start the signaling service")?;
        let addr = service.local_addr();
        let shared = service.shared();
        let (stop, stop_rx) = watch::channel(false);
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        tokio::spawn(service.run(stopped(stop_rx.clone())));
        config.signaling_urls = vec![format!("ws://{addr}/ws/node")];
        let node_id = config.node_id.clone();
        let node = Node::new(config);
        let metrics = node.metrics();
        let drainer = node.drainer();
        let node_task = tokio::spawn(node.run(stopped(stop_rx)));
        wait_registered(&shared, &node_id).await?;
        Ok(Lab {
            addr,
            stop,
            shared,
            metrics,
            drainer,
            node_task,
        })
    }

    /// Starts one more node with `config` (give it its own `node_id`) and waits until it has
    /// registered.
    pub async fn add_node(&self, mut config: NodeConfig) -> anyhow::Result<NodeHandle> {
        config.signaling_urls = vec![format!("ws://{}/ws/node", self.addr)];
        let node_id = config.node_id.clone();
        let task = tokio::spawn(Node::new(config).run(std::future::pending()));
        wait_registered(&self.shared, &node_id).await?;
        Ok(NodeHandle { task })
    }

    /// A client WebSocket URL with a fresh token, for peers other than the browser page.
    pub fn client_ws_url(&self) -> anyhow::Result<String> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let (token, _) = self
            .shared
            .token_key
            .issue("lab", signaling::token::AUD_CLIENT, 300, None, now)
            .map_err(|e| anyhow::anyhow!("token: {e}"))?;
        Ok(format!("ws://{}/ws?token={token}", self.addr))
    }

    /// The service's shared state (store, registry, metrics).
    pub fn shared(&self) -> &std::sync::Arc<ReplicaState> {
        &self.shared
    }

    /// The first node's live metrics: its running sessions' frames sent, frame rate and
    /// capture→packet latencies (what it serves at `/metrics`).
    pub fn node_metrics(&self) -> std::sync::Arc<NodeMetrics> {
        self.metrics.clone()
    }

    /// Drains the first node, as SIGTERM does: it takes no new sessions and stops when its last
    /// session ends.
    pub fn drain(&self) {
        self.drainer.drain();
    }

    /// Whether the first node has stopped (after a drain, or when the lab stops).
    pub fn node_stopped(&self) -> bool {
        self.node_task.is_finished()
    }

    /// The URL of the browser page.
    pub fn page_url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

/// Waits (at most 10 s) until `node_id` has registered with the service behind `shared`.
pub async fn wait_registered(shared: &ReplicaState, node_id: &str) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !shared.local.node_ids().iter().any(|n| n == node_id) {
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

/// Sends one raw HTTP/1.1 request (with `Connection: close`) and returns the whole response.
pub async fn http_raw(addr: SocketAddr, request: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await
        .context("connect timed out")??;
    s.write_all(request.as_bytes()).await?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .context("reply timed out")??;
    Ok(String::from_utf8_lossy(&out).into_owned())
}
