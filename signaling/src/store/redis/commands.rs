//! [`RedisStore`]'s [`Store`] operations, each one command, a pipeline or one of the Lua
//! scripts, and how records are laid out in Redis values.

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::bus::{forward, open_pubsub};
use super::{INBOX_DEPTH, MAX_SESSION_RECORDS, RedisStore, unreachable};
use crate::catalog::Title;
use crate::store::{Envelope, NODE_TTL_MS, NodeRecord, SessionRecord, Store, StoreError};
use crate::token::{CLOCK_SKEW_S, MAX_TOKEN_LIFETIME_S};

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
pub(super) fn node_from_row(row: Vec<Option<String>>) -> Result<NodeRecord, StoreError> {
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
pub(super) fn nonce_ttl_s(exp_unix: u64, now_unix: u64) -> u64 {
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
