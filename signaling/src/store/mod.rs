//! Where the signaling service keeps shared state: the node registry, slot reservations,
//! token nonces, the catalog, session records, and the message bus between replicas.
//!
//! Two backends keep the same [`Store`] contract:
//! - [`memory::MemoryStore`]: one process, nothing to install (the embedded default);
//! - [`redis::RedisStore`]: several replicas share one Redis; node liveness is a key with a
//!   TTL, reservations are one Lua script (check-and-add plus a fencing epoch), nonces use
//!   `SET NX EX`, and [`Envelope`]s travel over pub/sub to the replica that holds a peer.
//!
//! **Invariant**: a slot is reserved only by [`Store::reserve`], which is atomic across all
//! replicas: the number of live reservations of a node never exceeds its capacity. A
//! reservation carries a fencing epoch; [`Store::renew`] and [`Store::release`] act only when
//! the epoch matches, so a replica that lost its lease cannot free a slot that was given again.

pub mod local_redis;
pub mod memory;
pub mod redis;

use std::fmt::Debug;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::catalog::Title;
use crate::protocol::{NodeSite, ServerMsg, SessionStats};

/// A node silent for this long is dead.
pub const NODE_TTL_MS: u64 = 3000;

/// A node in the registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Unique id in the fleet.
    pub node_id: String,
    /// Region, country, coordinates.
    pub site: NodeSite,
    /// GPU class.
    pub gpu_class: String,
    /// Concurrent sessions it takes.
    pub capacity: u32,
    /// Titles installed.
    pub titles: Vec<String>,
    /// Public address (informational).
    pub public_addr: Option<String>,
    /// RTT probe URL.
    pub probe_url: Option<String>,
    /// Node software version.
    pub agent_version: String,
    /// Sessions the node last reported running.
    pub sessions: u32,
    /// True when it takes no new sessions.
    pub draining: bool,
    /// The replica that holds its connection.
    pub replica: String,
    /// Last registration or heartbeat (Unix ms).
    pub last_seen_ms: u64,
    /// When it registered (Unix ms).
    pub registered_ms: u64,
}

impl NodeRecord {
    /// Whether it was heard from within [`NODE_TTL_MS`].
    pub fn alive(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.last_seen_ms) < NODE_TTL_MS
    }
}

/// One session, from assignment to end: what the operator's session log shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Session id.
    pub session_id: String,
    /// Who played (the token's subject).
    pub user: String,
    /// Title played.
    pub title: String,
    /// Node that served it.
    pub node_id: String,
    /// Replica that held the player's connection.
    pub replica: String,
    /// Fencing epoch of its slot reservation.
    pub epoch: u64,
    /// Assignment time (Unix ms).
    pub started_ms: u64,
    /// End time (Unix ms), once over.
    pub ended_ms: Option<u64>,
    /// Duration in ms, once over.
    pub duration_ms: Option<u64>,
    /// Media bytes the node sent.
    pub bytes_sent: u64,
    /// Mean media bitrate over the session, in kbit/s.
    pub mean_bitrate_kbps: Option<f64>,
    /// Round-trip time to the player the node last measured, in ms.
    pub rtt_ms: Option<f64>,
    /// Why it ended.
    pub end_reason: Option<String>,
}

impl SessionRecord {
    /// Closes the record at `now_ms` with `reason` and the node's stats, if any.
    pub fn finish(&mut self, now_ms: u64, reason: &str, stats: Option<&SessionStats>) {
        if self.ended_ms.is_some() {
            return;
        }
        let duration = now_ms.saturating_sub(self.started_ms);
        self.ended_ms = Some(now_ms);
        self.duration_ms = Some(duration);
        self.end_reason = Some(reason.to_string());
        if let Some(stats) = stats {
            self.bytes_sent = stats.bytes_sent;
            self.rtt_ms = stats.rtt_ms;
        }
        if duration > 0 && self.bytes_sent > 0 {
            self.mean_bitrate_kbps = Some(self.bytes_sent as f64 * 8.0 / duration as f64);
        }
    }
}

/// A message on its way to the replica that holds its recipient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Envelope {
    /// For a node's connection.
    ToNode {
        /// The node.
        node_id: String,
        /// The replica holding the session's client (set with `start_session`, so the
        /// node's replica knows where to route the answer).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_replica: Option<String>,
        /// What to send.
        msg: ServerMsg,
    },
    /// For a session's client.
    ToClient {
        /// The session.
        session_id: String,
        /// What to send.
        msg: ServerMsg,
    },
    /// The node ended a session; the client's replica closes it and its record.
    SessionEnded {
        /// The session.
        session_id: String,
        /// Why.
        reason: String,
        /// Whether trying again would end the same way.
        #[serde(default)]
        permanent: bool,
        /// What it carried.
        stats: Option<SessionStats>,
    },
}

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis refused or the connection failed.
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    /// A stored value did not decode.
    #[error("stored {what} is corrupt: {detail}")]
    Corrupt {
        /// What was read.
        what: &'static str,
        /// The decoder's complaint.
        detail: String,
    },
    /// No replica with this id listens.
    #[error("no replica {0:?} is subscribed")]
    NoSuchReplica(String),
}

/// The contract both backends keep. Times are arguments (Unix ms unless named `_unix`, which
/// are Unix seconds) so that callers, not stores, own the clock.
#[async_trait]
pub trait Store: Send + Sync + Debug + 'static {
    /// `memory` or `redis`, for logs and metrics.
    fn kind(&self) -> &'static str;

    /// Adds or refreshes a node held by `node.replica`. Returns `false` (and changes nothing)
    /// when a live node with this id is held by another replica.
    async fn register_node(&self, node: &NodeRecord, now_ms: u64) -> Result<bool, StoreError>;

    /// A heartbeat from a node held by `replica`. Returns `false` when the record is gone or
    /// held by another replica (the caller then drops the connection).
    async fn heartbeat(
        &self,
        node_id: &str,
        replica: &str,
        sessions: u32,
        draining: bool,
        now_ms: u64,
    ) -> Result<bool, StoreError>;

    /// Marks a node draining (operator request). Returns `false` if no such live node.
    async fn set_draining(&self, node_id: &str, now_ms: u64) -> Result<bool, StoreError>;

    /// Removes a node if `replica` holds it.
    async fn remove_node(&self, node_id: &str, replica: &str) -> Result<(), StoreError>;

    /// The live nodes, sorted by id.
    async fn nodes(&self, now_ms: u64) -> Result<Vec<NodeRecord>, StoreError>;

    /// The live nodes and each one's live reservations: what assignment reads per request.
    /// Backends may do it in one round trip.
    async fn fleet(&self, now_ms: u64) -> Result<(Vec<NodeRecord>, Vec<u32>), StoreError> {
        let nodes = self.nodes(now_ms).await?;
        let ids: Vec<String> = nodes.iter().map(|n| n.node_id.clone()).collect();
        let used = self.slots_used(&ids, now_ms).await?;
        Ok((nodes, used))
    }

    /// Reserves one of `capacity` slots of `node_id` for `session_id` until `now_ms +
    /// lease_ms`, atomically across replicas. Returns the fencing epoch, or `None` when full.
    async fn reserve(
        &self,
        node_id: &str,
        capacity: u32,
        session_id: &str,
        lease_ms: u64,
        now_ms: u64,
    ) -> Result<Option<u64>, StoreError>;

    /// Extends a reservation whose epoch matches. Returns `false` if it is gone.
    async fn renew(
        &self,
        node_id: &str,
        session_id: &str,
        epoch: u64,
        lease_ms: u64,
        now_ms: u64,
    ) -> Result<bool, StoreError>;

    /// Frees a reservation whose epoch matches.
    async fn release(&self, node_id: &str, session_id: &str, epoch: u64) -> Result<(), StoreError>;

    /// Live reservations of each node in `node_ids`, in order.
    async fn slots_used(&self, node_ids: &[String], now_ms: u64) -> Result<Vec<u32>, StoreError>;

    /// Records a token nonce until `exp_unix`; `true` the first time it is seen.
    async fn first_use_of_nonce(
        &self,
        nonce: &str,
        exp_unix: u64,
        now_unix: u64,
    ) -> Result<bool, StoreError>;

    /// Publishes or replaces a title.
    async fn put_title(&self, title: &Title) -> Result<(), StoreError>;

    /// A title by id.
    async fn title(&self, id: &str) -> Result<Option<Title>, StoreError>;

    /// Every title, sorted by id.
    async fn titles(&self) -> Result<Vec<Title>, StoreError>;

    /// Withdraws a title. Returns `false` if there was none.
    async fn remove_title(&self, id: &str) -> Result<bool, StoreError>;

    /// Writes a session record (insert or replace).
    async fn put_session(&self, record: &SessionRecord) -> Result<(), StoreError>;

    /// The newest `limit` session records, newest first.
    async fn sessions(&self, limit: usize) -> Result<Vec<SessionRecord>, StoreError>;

    /// Sends an envelope to `replica`.
    async fn publish(&self, replica: &str, envelope: &Envelope) -> Result<(), StoreError>;

    /// Starts receiving the envelopes published to `replica`.
    async fn subscribe(&self, replica: &str) -> Result<mpsc::Receiver<Envelope>, StoreError>;
}
