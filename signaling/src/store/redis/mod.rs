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
//!
//! [`NODE_TTL_MS`]: super::NODE_TTL_MS
//! [`NodeRecord`]: super::NodeRecord
//! [`SessionRecord`]: super::SessionRecord
//! [`Envelope`]: super::Envelope
//! [`Title`]: crate::catalog::Title

use std::fmt;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, ErrorKind, RedisError};

use super::StoreError;

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

mod bus;
mod commands;
mod scripts;
#[cfg(test)]
mod tests;

use scripts::Scripts;

/// Shared state in Redis, for several replicas.
///
/// Commands go over one auto-reconnecting multiplexed connection; each [`Store::subscribe`]
/// opens its own pub/sub connection, which a background task keeps subscribed.
///
/// [`Store::subscribe`]: super::Store::subscribe
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
