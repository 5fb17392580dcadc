//! The Redis store: several signaling replicas share one Redis.
//!
//! Every key starts with the configured prefix `{p}` so that deployments (and tests) can
//! share a server:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{p}:node:{id}` | hash, `PEXPIRE` [`NODE_TTL_MS`] | `json` (the [`NodeRecord`] as registered) and the fields a heartbeat changes: `replica`, `sessions`, `draining`, `last_seen_ms` |
//! | `{p}:nodes` | set | node ids; ids whose key expired are pruned when listing |
//! | `{p}:slots:{node}` | sorted set | session id → lease expiry (Unix ms) |
//! | `{p}:slot_epoch:{node}` | hash | session id → fencing epoch of its reservation |
//! | `{p}:epoch:{node}` | counter | last fencing epoch given out (never reset) |
//! | `{p}:nonce:{nonce}` | string, `EX` | a spent token nonce |
//! | `{p}:titles` | hash | title id → [`Title`] JSON |
//! | `{p}:sessions` | hash | session id → [`SessionRecord`] JSON |
//! | `{p}:sessions_by_seq` | sorted set | session id → write sequence (newest last) |
//! | `{p}:session_seq` | counter | last write sequence |
//!
//! [`Envelope`]s travel as JSON on the pub/sub channel `{p}:replica:{replica}`.
//!
//! Every operation that reads and then writes is one Lua script, so replicas never interleave
//! inside it. Times come from the caller (`now_ms`), never from Redis's clock, so the
//! semantics equal [`MemoryStore`](super::memory::MemoryStore)'s; the one exception is node
//! liveness, which is also a key TTL in Redis's real time, so that a replica that dies cannot
//! leave its nodes behind. The scripts touch keys derived inside them (the node listing, for
//! one), so this backend needs a single Redis, not a Redis Cluster.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSub};
use redis::{Client, ErrorKind, RedisError, Value};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use super::{Envelope, NODE_TTL_MS, NodeRecord, SessionRecord, Store, StoreError};
use crate::catalog::Title;
use crate::token::{CLOCK_SKEW_S, MAX_TOKEN_LIFETIME_S};

/// Envelopes a subscriber's inbox holds; more are dropped (and logged) until it catches up.
const INBOX_DEPTH: usize = 4096;

/// Session records kept (oldest dropped first), as in the memory store.
const MAX_SESSION_RECORDS: usize = 10_000;

/// How long [`RedisStore::connect`] and a pub/sub (re)connection may take, PING included.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one connection attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a command may wait for its reply before it fails.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Reconnection attempts the command connection makes per failure before giving up until the
/// next command.
const RECONNECT_RETRIES: usize = 3;

/// Longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// First pause before a pub/sub reconnection attempt; doubled after each failure.
const MIN_BACKOFF: Duration = Duration::from_millis(100);

/// How often an idle pub/sub connection is checked with PING, so that a connection that died
/// silently (a half-open TCP connection) is noticed and replaced.
const PUBSUB_PING_EVERY: Duration = Duration::from_secs(10);

mod scripts;

use scripts::Scripts;

/// Shared state in Redis, for several replicas.
///
/// Commands go over one auto-reconnecting multiplexed connection; each [`Store::subscribe`]
/// opens its own pub/sub connection, which a background task keeps subscribed.
pub struct RedisStore {
    client: Client,
    conn: ConnectionManager,
    prefix: String,
    /// The URL without credentials, for errors and logs.
    url: String,
    scripts: Scripts,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.url)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects to the Redis at `url` (e.g. `redis://127.0.0.1:6379/`) and checks it answers
    /// PING. Every key and channel is namespaced as `{prefix}:…`.
    ///
    /// Fails with an error naming the URL (without its password) if the URL is invalid or
    /// Redis does not answer within a few seconds.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, StoreError> {
        let shown = redact_url(url);
        let client = Client::open(url).map_err(|e| {
            StoreError::Redis(RedisError::from((
                ErrorKind::InvalidClientConfig,
                "invalid redis url",
                format!("{shown}: {e}"),
            )))
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(ATTEMPT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(RECONNECT_RETRIES)
            .set_max_delay(MAX_BACKOFF);
        let connect = async {
            let mut conn = ConnectionManager::new_with_config(client.clone(), config).await?;
            redis::cmd("PING").query_async::<String>(&mut conn).await?;
            Ok::<_, RedisError>(conn)
        };
        let conn = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(unreachable(&shown, e)),
            Err(_) => {
                return Err(unreachable(
                    &shown,
                    RedisError::from((
                        ErrorKind::Io,
                        "timed out",
                        format!("no answer to PING within {} s", CONNECT_TIMEOUT.as_secs()),
                    )),
                ));
            }
        };
        tracing::info!(url = %shown, prefix, "connected to redis");
        Ok(RedisStore {
            client,
            conn,
            prefix: prefix.to_string(),
            url: shown,
            scripts: Scripts::new(),
        })
    }

    fn key(&self, kind: &str, id: &str) -> String {
        format!("{}:{kind}:{id}", self.prefix)
    }

    fn global(&self, name: &str) -> String {
        format!("{}:{name}", self.prefix)
    }

    fn channel(&self, replica: &str) -> String {
        self.key("replica", replica)
    }

    /// A handle on the shared command connection (cheap: it is reference counted).
    fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }
}

/// `err` while reaching the Redis at `url`, as a store error that names the URL.
fn unreachable(url: &str, err: RedisError) -> StoreError {
    StoreError::Redis(RedisError::from((
        err.kind(),
        "cannot reach redis",
        format!("{url}: {err}"),
    )))
}

/// `url` with any password or user name and any query (which may carry one) replaced by
/// `***`, fit for logs and error messages.
fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some(parts) => parts,
        None => return url.to_string(),
    };
    let (rest, query) = match rest.split_once('?') {
        Some((rest, _)) => (rest, "?***"),
        None => (rest, ""),
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((_, host)) => format!("***@{host}"),
        None => authority.to_string(),
    };
    format!("{scheme}://{authority}{path}{query}")
}

fn encode<T: serde::Serialize>(what: &'static str, value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt {
        what,
        detail: format!("cannot encode: {e}"),
    })
}

fn decode<T: serde::de::DeserializeOwned>(what: &'static str, json: &str) -> Result<T, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt {
        what,
        detail: e.to_string(),
    })
}

fn flag(b: bool) -> &'static str {
    if b { "1" } else { "0" }
}

/// One row of the fleet script as a record: the registered JSON with the fields heartbeats
/// change laid over it.
fn node_from_row(row: Vec<Option<String>>) -> Result<NodeRecord, StoreError> {
    const WHAT: &str = "node record";
    let corrupt = |detail: String| StoreError::Corrupt { what: WHAT, detail };
    let [id, json, replica, sessions, draining, last_seen_ms]: [Option<String>; 6] = row
        .try_into()
        .map_err(|row: Vec<_>| corrupt(format!("expected 6 fields, got {}", row.len())))?;
    let id = id.ok_or_else(|| corrupt("node id is missing".into()))?;
    let field = |name: &str, value: Option<String>| {
        value.ok_or_else(|| corrupt(format!("node {id:?} has no {name}")))
    };
    let mut node: NodeRecord = decode(WHAT, &field("json", json)?)?;
    if node.node_id != id {
        return Err(corrupt(format!(
            "key of node {id:?} holds node {:?}",
            node.node_id
        )));
    }
    node.replica = field("replica", replica)?;
    let sessions = field("sessions", sessions)?;
    node.sessions = sessions
        .parse()
        .map_err(|_| corrupt(format!("node {id:?} has sessions {sessions:?}")))?;
    node.draining = match field("draining", draining)?.as_str() {
        "1" => true,
        "0" => false,
        other => return Err(corrupt(format!("node {id:?} has draining {other:?}"))),
    };
    let last_seen_ms = field("last_seen_ms", last_seen_ms)?;
    node.last_seen_ms = last_seen_ms
        .parse()
        .map_err(|_| corrupt(format!("node {id:?} has last_seen_ms {last_seen_ms:?}")))?;
    Ok(node)
}

/// Seconds a nonce of a token expiring at `exp_unix` must be remembered from `now_unix`: as
/// long as [`ReplayCache`](crate::token::ReplayCache) remembers it (a far-future expiry is
/// capped at the longest token lifetime), and at least a second (`EX 0` is an error).
fn nonce_ttl_s(exp_unix: u64, now_unix: u64) -> u64 {
    let exp = exp_unix.min(now_unix.saturating_add(MAX_TOKEN_LIFETIME_S + CLOCK_SKEW_S));
    exp.saturating_add(CLOCK_SKEW_S)
        .saturating_sub(now_unix)
        .max(1)
}

#[async_trait]
impl Store for RedisStore {
    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn register_node(&self, node: &NodeRecord, now_ms: u64) -> Result<bool, StoreError> {
        let json = encode("node record", node)?;
        let done: i64 = self
            .scripts
            .register
            .key(self.key("node", &node.node_id))
            .key(self.global("nodes"))
            .arg(&node.node_id)
            .arg(json)
            .arg(&node.replica)
            .arg(node.sessions)
            .arg(flag(node.draining))
            .arg(node.last_seen_ms)
            .arg(now_ms)
            .arg(NODE_TTL_MS)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(done == 1)
    }

    async fn heartbeat(
        &self,
        node_id: &str,
        replica: &str,
        sessions: u32,
        draining: bool,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let done: i64 = self
            .scripts
            .heartbeat
            .key(self.key("node", node_id))
            .key(self.global("nodes"))
            .arg(node_id)
            .arg(replica)
            .arg(sessions)
            .arg(flag(draining))
            .arg(now_ms)
            .arg(NODE_TTL_MS)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(done == 1)
    }

    async fn set_draining(&self, node_id: &str, now_ms: u64) -> Result<bool, StoreError> {
        let done: i64 = self
            .scripts
            .set_draining
            .key(self.key("node", node_id))
            .arg(now_ms)
            .arg(NODE_TTL_MS)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(done == 1)
    }

    async fn remove_node(&self, node_id: &str, replica: &str) -> Result<(), StoreError> {
        let _: i64 = self
            .scripts
            .remove_node
            .key(self.key("node", node_id))
            .key(self.global("nodes"))
            .arg(node_id)
            .arg(replica)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(())
    }

    async fn nodes(&self, now_ms: u64) -> Result<Vec<NodeRecord>, StoreError> {
        // One script serves both reads; the slot counts cost little next to the round trip.
        Ok(self.fleet(now_ms).await?.0)
    }

    async fn fleet(&self, now_ms: u64) -> Result<(Vec<NodeRecord>, Vec<u32>), StoreError> {
        let rows: Vec<Vec<Option<String>>> = self
            .scripts
            .fleet
            .key(self.global("nodes"))
            .arg(self.key("node", ""))
            .arg(self.key("slots", ""))
            .arg(format!("({now_ms}"))
            .invoke_async(&mut self.conn())
            .await?;
        let mut fleet = Vec::with_capacity(rows.len());
        for mut row in rows {
            let used = row
                .pop()
                .flatten()
                .and_then(|u| u.parse::<u32>().ok())
                .ok_or_else(|| StoreError::Corrupt {
                    what: "slot count",
                    detail: "missing or not a number".into(),
                })?;
            let node = node_from_row(row)?;
            if node.alive(now_ms) {
                fleet.push((node, used));
            }
        }
        fleet.sort_by(|a, b| a.0.node_id.cmp(&b.0.node_id));
        Ok(fleet.into_iter().unzip())
    }

    async fn reserve(
        &self,
        node_id: &str,
        capacity: u32,
        session_id: &str,
        lease_ms: u64,
        now_ms: u64,
    ) -> Result<Option<u64>, StoreError> {
        let epoch: Option<u64> = self
            .scripts
            .reserve
            .key(self.key("slots", node_id))
            .key(self.key("slot_epoch", node_id))
            .key(self.key("epoch", node_id))
            .arg(capacity)
            .arg(session_id)
            .arg(now_ms)
            .arg(now_ms.saturating_add(lease_ms))
            .invoke_async(&mut self.conn())
            .await?;
        Ok(epoch)
    }

    async fn renew(
        &self,
        node_id: &str,
        session_id: &str,
        epoch: u64,
        lease_ms: u64,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let done: i64 = self
            .scripts
            .renew
            .key(self.key("slots", node_id))
            .key(self.key("slot_epoch", node_id))
            .arg(session_id)
            .arg(epoch)
            .arg(now_ms)
            .arg(now_ms.saturating_add(lease_ms))
            .invoke_async(&mut self.conn())
            .await?;
        Ok(done == 1)
    }

    async fn release(&self, node_id: &str, session_id: &str, epoch: u64) -> Result<(), StoreError> {
        let _: i64 = self
            .scripts
            .release
            .key(self.key("slots", node_id))
            .key(self.key("slot_epoch", node_id))
            .arg(session_id)
            .arg(epoch)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(())
    }

    async fn slots_used(&self, node_ids: &[String], now_ms: u64) -> Result<Vec<u32>, StoreError> {
        if node_ids.is_empty() {
            return Ok(Vec::new());
        }
        // A lease is live while its expiry is after now: `(now` excludes now itself.
        let after_now = format!("({now_ms}");
        let mut pipe = redis::pipe();
        for id in node_ids {
            pipe.cmd("ZCOUNT")
                .arg(self.key("slots", id))
                .arg(&after_now)
                .arg("+inf");
        }
        Ok(pipe.query_async(&mut self.conn()).await?)
    }

    async fn first_use_of_nonce(
        &self,
        nonce: &str,
        exp_unix: u64,
        now_unix: u64,
    ) -> Result<bool, StoreError> {
        let set: Option<String> = redis::cmd("SET")
            .arg(self.key("nonce", nonce))
            .arg(1)
            .arg("NX")
            .arg("EX")
            .arg(nonce_ttl_s(exp_unix, now_unix))
            .query_async(&mut self.conn())
            .await?;
        Ok(set.is_some())
    }

    async fn put_title(&self, title: &Title) -> Result<(), StoreError> {
        let json = encode("title", title)?;
        redis::cmd("HSET")
            .arg(self.global("titles"))
            .arg(title.id())
            .arg(json)
            .exec_async(&mut self.conn())
            .await?;
        Ok(())
    }

    async fn title(&self, id: &str) -> Result<Option<Title>, StoreError> {
        let json: Option<String> = redis::cmd("HGET")
            .arg(self.global("titles"))
            .arg(id)
            .query_async(&mut self.conn())
            .await?;
        json.map(|j| decode("title", &j)).transpose()
    }

    async fn titles(&self) -> Result<Vec<Title>, StoreError> {
        let all: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(self.global("titles"))
            .query_async(&mut self.conn())
            .await?;
        let mut titles = all
            .into_iter()
            .map(|(_, json)| decode::<Title>("title", &json))
            .collect::<Result<Vec<_>, _>>()?;
        titles.sort_by(|a, b| a.id().cmp(b.id()));
        Ok(titles)
    }

    async fn remove_title(&self, id: &str) -> Result<bool, StoreError> {
        let removed: i64 = redis::cmd("HDEL")
            .arg(self.global("titles"))
            .arg(id)
            .query_async(&mut self.conn())
            .await?;
        Ok(removed > 0)
    }

    async fn put_session(&self, record: &SessionRecord) -> Result<(), StoreError> {
        let json = encode("session record", record)?;
        let _: i64 = self
            .scripts
            .put_session
            .key(self.global("sessions"))
            .key(self.global("sessions_by_seq"))
            .key(self.global("session_seq"))
            .arg(&record.session_id)
            .arg(json)
            .arg(MAX_SESSION_RECORDS)
            .invoke_async(&mut self.conn())
            .await?;
        Ok(())
    }

    async fn sessions(&self, limit: usize) -> Result<Vec<SessionRecord>, StoreError> {
        let limit = limit.min(MAX_SESSION_RECORDS);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let flat: Vec<Option<String>> = self
            .scripts
            .sessions
            .key(self.global("sessions"))
            .key(self.global("sessions_by_seq"))
            .arg(limit)
            .invoke_async(&mut self.conn())
            .await?;
        flat.chunks(2)
            .map(|pair| match pair {
                [Some(_), Some(json)] => decode("session record", json),
                [id, None] => Err(StoreError::Corrupt {
                    what: "session record",
                    detail: format!(
                        "session {:?} is listed but has no record",
                        id.as_deref().unwrap_or_default()
                    ),
                }),
                _ => Err(StoreError::Corrupt {
                    what: "session record",
                    detail: "malformed listing".into(),
                }),
            })
            .collect()
    }

    async fn publish(&self, replica: &str, envelope: &Envelope) -> Result<(), StoreError> {
        let json = encode("envelope", envelope)?;
        let receivers: i64 = redis::cmd("PUBLISH")
            .arg(self.channel(replica))
            .arg(json)
            .query_async(&mut self.conn())
            .await?;
        if receivers == 0 {
            return Err(StoreError::NoSuchReplica(replica.to_string()));
        }
        Ok(())
    }

    async fn subscribe(&self, replica: &str) -> Result<mpsc::Receiver<Envelope>, StoreError> {
        let channel = self.channel(replica);
        // Subscribe before returning, so that what is published once this returns arrives.
        let pubsub = open_pubsub(&self.client, &channel)
            .await
            .map_err(|e| unreachable(&self.url, e))?;
        let (tx, rx) = mpsc::channel(INBOX_DEPTH);
        tokio::spawn(forward(
            self.client.clone(),
            self.url.clone(),
            channel,
            pubsub,
            tx,
        ));
        Ok(rx)
    }
}

/// A new pub/sub connection subscribed to `channel`, within [`CONNECT_TIMEOUT`].
async fn open_pubsub(client: &Client, channel: &str) -> Result<PubSub, RedisError> {
    let open = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        Ok(pubsub)
    };
    tokio::time::timeout(CONNECT_TIMEOUT, open)
        .await
        .unwrap_or_else(|_| {
            Err(RedisError::from((
                ErrorKind::Io,
                "timed out",
                format!(
                    "no pub/sub connection within {} s",
                    CONNECT_TIMEOUT.as_secs()
                ),
            )))
        })
}

/// Forwards the envelopes published on `channel` to `tx` until its receiver is dropped,
/// reconnecting (with backoff) and subscribing again whenever the connection is lost.
async fn forward(
    client: Client,
    url: String,
    channel: String,
    mut pubsub: PubSub,
    tx: mpsc::Sender<Envelope>,
) {
    loop {
        match pump(pubsub, &channel, &tx).await {
            Pump::ReceiverGone => return,
            Pump::ConnectionLost(why) => {
                tracing::warn!(%url, %channel, %why, "lost the redis pub/sub connection; reconnecting");
            }
        }
        let mut backoff = MIN_BACKOFF;
        pubsub = loop {
            tokio::select! {
                () = tx.closed() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            match open_pubsub(&client, &channel).await {
                Ok(pubsub) => {
                    tracing::info!(%url, %channel, "resubscribed to redis pub/sub");
                    break pubsub;
                }
                Err(e) => {
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    tracing::warn!(
                        %url, %channel, error = %e, retry_in_ms = backoff.as_millis() as u64,
                        "cannot resubscribe to redis pub/sub"
                    );
                }
            }
        };
    }
}

/// Why [`pump`] stopped.
enum Pump {
    /// Nobody listens any more: stop for good.
    ReceiverGone,
    /// The connection failed: reconnect.
    ConnectionLost(String),
}

/// Delivers messages from one pub/sub connection until it fails or `tx`'s receiver is gone.
async fn pump(pubsub: PubSub, channel: &str, tx: &mpsc::Sender<Envelope>) -> Pump {
    let (mut sink, mut stream) = pubsub.split();
    let mut ping = tokio::time::interval(PUBSUB_PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick is immediate; the connection was just checked by SUBSCRIBE.
    ping.tick().await;
    loop {
        tokio::select! {
            () = tx.closed() => return Pump::ReceiverGone,
            msg = stream.next() => {
                let Some(msg) = msg else {
                    return Pump::ConnectionLost("the connection closed".into());
                };
                let envelope = match serde_json::from_slice::<Envelope>(msg.get_payload_bytes()) {
                    Ok(envelope) => envelope,
                    Err(e) => {
                        tracing::warn!(
                            %channel, error = %e, bytes = msg.get_payload_bytes().len(),
                            "skipping an undecodable envelope"
                        );
                        continue;
                    }
                };
                match tx.try_send(envelope) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => tracing::warn!(
                        %channel, depth = INBOX_DEPTH,
                        "inbox is full; dropping an envelope"
                    ),
                    Err(TrySendError::Closed(_)) => return Pump::ReceiverGone,
                }
            }
            _ = ping.tick() => {
                match tokio::time::timeout(RESPONSE_TIMEOUT, sink.ping::<Value>()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Pump::ConnectionLost(format!("PING failed: {e}")),
                    Err(_) => return Pump::ConnectionLost("PING went unanswered".into()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_secrets() {
        assert_eq!(
            redact_url("redis://127.0.0.1:6379/"),
            "redis://127.0.0.1:6379/"
        );
        assert_eq!(
            redact_url("redis://:hunter2@redis.internal:6379/0"),
            "redis://***@redis.internal:6379/0"
        );
        assert_eq!(redact_url("rediss://user:p%40ss@host"), "rediss://***@host");
        assert_eq!(
            redact_url("redis+unix:///run/redis.sock?db=1&pass=hunter2"),
            "redis+unix:///run/redis.sock?***"
        );
        assert_eq!(redact_url("not a url"), "not a url");
    }

    #[test]
    fn nonces_live_as_long_as_in_the_replay_cache() {
        let now = 1_700_000_000;
        assert_eq!(nonce_ttl_s(now + 60, now), 60 + CLOCK_SKEW_S);
        // A bogus far-future expiry cannot pin a key.
        assert_eq!(
            nonce_ttl_s(u64::MAX, now),
            MAX_TOKEN_LIFETIME_S + 2 * CLOCK_SKEW_S
        );
        // Long expired: remembered for the shortest time Redis takes.
        assert_eq!(nonce_ttl_s(now - 600, now), 1);
    }

    #[test]
    fn node_rows_decode_or_say_what_is_wrong() {
        let record = NodeRecord {
            node_id: "n1".into(),
            site: Default::default(),
            gpu_class: "cpu".into(),
            capacity: 2,
            titles: Vec::new(),
            public_addr: None,
            probe_url: None,
            agent_version: "1".into(),
            sessions: 0,
            draining: false,
            replica: "r1".into(),
            last_seen_ms: 5,
            registered_ms: 5,
        };
        let json = serde_json::to_string(&record).expect("encodes");
        let row = |sessions: &str| {
            vec![
                Some("n1".to_string()),
                Some(json.clone()),
                Some("r2".to_string()),
                Some(sessions.to_string()),
                Some("1".to_string()),
                Some("9".to_string()),
            ]
        };
        let node = node_from_row(row("3")).expect("decodes");
        assert_eq!((node.replica.as_str(), node.sessions), ("r2", 3));
        assert!(node.draining);
        assert_eq!(node.last_seen_ms, 9);

        let err = node_from_row(row("many")).expect_err("corrupt");
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
        assert!(err.to_string().contains("many"), "{err}");
        let mut garbled = row("1");
        garbled[1] = Some("{".into());
        assert!(matches!(
            node_from_row(garbled),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(matches!(
            node_from_row(vec![None]),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
