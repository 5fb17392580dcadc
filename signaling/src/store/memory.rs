//! The in-memory store: one process, nothing to install.
//!
//! Several services in one process may share one `MemoryStore` (tests do, to check routing
//! between replicas without Redis); [`Store::publish`] then hands envelopes over in process.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::{Envelope, NodeRecord, SessionRecord, Store, StoreError};
use crate::catalog::Title;
use crate::token::ReplayCache;

/// Envelopes a replica's inbox holds before publishing to it fails.
const INBOX_DEPTH: usize = 4096;

/// Session records kept (oldest dropped first).
const MAX_SESSION_RECORDS: usize = 10_000;

/// Token nonces remembered at most (see [`ReplayCache`]).
const MAX_NONCES: usize = 1_000_000;

#[derive(Debug)]
struct Slot {
    epoch: u64,
    expires_ms: u64,
}

#[derive(Debug)]
struct State {
    nodes: BTreeMap<String, NodeRecord>,
    slots: HashMap<String, HashMap<String, Slot>>,
    epochs: HashMap<String, u64>,
    nonces: ReplayCache,
    titles: BTreeMap<String, Title>,
    sessions: HashMap<String, (u64, SessionRecord)>,
    /// Session ids by first-write sequence: newest last, so eviction and listing cost only
    /// what they touch.
    session_order: BTreeMap<u64, String>,
    session_seq: u64,
    inboxes: HashMap<String, mpsc::Sender<Envelope>>,
}

/// Shared state in this process's memory.
#[derive(Debug)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                nodes: BTreeMap::new(),
                slots: HashMap::new(),
                epochs: HashMap::new(),
                nonces: ReplayCache::new(MAX_NONCES),
                titles: BTreeMap::new(),
                sessions: HashMap::new(),
                session_order: BTreeMap::new(),
                session_seq: 0,
                inboxes: HashMap::new(),
            }),
        }
    }
}

impl MemoryStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every operation leaves the maps consistent before it can panic, so a poisoned lock
        // still guards usable state.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn live_slots(slots: &mut HashMap<String, Slot>, now_ms: u64) -> u32 {
    slots.retain(|_, s| s.expires_ms > now_ms);
    slots.len() as u32
}

#[async_trait]
impl Store for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn register_node(&self, node: &NodeRecord, now_ms: u64) -> Result<bool, StoreError> {
        let mut state = self.lock();
        if let Some(old) = state.nodes.get(&node.node_id)
            && old.alive(now_ms)
            && old.replica != node.replica
        {
            return Ok(false);
        }
        state.nodes.insert(node.node_id.clone(), node.clone());
        Ok(true)
    }

    async fn heartbeat(
        &self,
        node_id: &str,
        replica: &str,
        sessions: u32,
        draining: bool,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let mut state = self.lock();
        match state.nodes.get_mut(node_id) {
            Some(n) if n.replica == replica => {
                n.sessions = sessions;
                // An operator's drain sticks even if the node has not heard of it yet.
                n.draining |= draining;
                n.last_seen_ms = now_ms;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn set_draining(&self, node_id: &str, now_ms: u64) -> Result<bool, StoreError> {
        let mut state = self.lock();
        match state.nodes.get_mut(node_id) {
            Some(n) if n.alive(now_ms) => {
                n.draining = true;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn remove_node(&self, node_id: &str, replica: &str) -> Result<(), StoreError> {
        let mut state = self.lock();
        if state
            .nodes
            .get(node_id)
            .is_some_and(|n| n.replica == replica)
        {
            state.nodes.remove(node_id);
        }
        Ok(())
    }

    async fn nodes(&self, now_ms: u64) -> Result<Vec<NodeRecord>, StoreError> {
        let mut state = self.lock();
        state.nodes.retain(|_, n| n.alive(now_ms));
        Ok(state.nodes.values().cloned().collect())
    }

    async fn reserve(
        &self,
        node_id: &str,
        capacity: u32,
        session_id: &str,
        lease_ms: u64,
        now_ms: u64,
    ) -> Result<Option<u64>, StoreError> {
        let mut state = self.lock();
        let state = &mut *state;
        let slots = state.slots.entry(node_id.to_string()).or_default();
        if live_slots(slots, now_ms) >= capacity {
            return Ok(None);
        }
        let epoch = state.epochs.entry(node_id.to_string()).or_insert(0);
        *epoch += 1;
        slots.insert(
            session_id.to_string(),
            Slot {
                epoch: *epoch,
                expires_ms: now_ms + lease_ms,
            },
        );
        Ok(Some(*epoch))
    }

    async fn renew(
        &self,
        node_id: &str,
        session_id: &str,
        epoch: u64,
        lease_ms: u64,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let mut state = self.lock();
        let Some(slot) = state
            .slots
            .get_mut(node_id)
            .and_then(|s| s.get_mut(session_id))
        else {
            return Ok(false);
        };
        if slot.epoch != epoch || slot.expires_ms <= now_ms {
            return Ok(false);
        }
        slot.expires_ms = now_ms + lease_ms;
        Ok(true)
    }

    async fn release(&self, node_id: &str, session_id: &str, epoch: u64) -> Result<(), StoreError> {
        let mut state = self.lock();
        if let Some(slots) = state.slots.get_mut(node_id)
            && slots.get(session_id).is_some_and(|s| s.epoch == epoch)
        {
            slots.remove(session_id);
        }
        Ok(())
    }

    async fn slots_used(&self, node_ids: &[String], now_ms: u64) -> Result<Vec<u32>, StoreError> {
        let mut state = self.lock();
        Ok(node_ids
            .iter()
            .map(|id| state.slots.get_mut(id).map_or(0, |s| live_slots(s, now_ms)))
            .collect())
    }

    async fn first_use_of_nonce(
        &self,
        nonce: &str,
        exp_unix: u64,
        now_unix: u64,
    ) -> Result<bool, StoreError> {
        Ok(self
            .lock()
            .nonces
            .check_and_insert(nonce, exp_unix, now_unix))
    }

    async fn put_title(&self, title: &Title) -> Result<(), StoreError> {
        self.lock()
            .titles
            .insert(title.id().to_string(), title.clone());
        Ok(())
    }

    async fn title(&self, id: &str) -> Result<Option<Title>, StoreError> {
        Ok(self.lock().titles.get(id).cloned())
    }

    async fn titles(&self) -> Result<Vec<Title>, StoreError> {
        Ok(self.lock().titles.values().cloned().collect())
    }

    async fn remove_title(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.lock().titles.remove(id).is_some())
    }

    async fn put_session(&self, record: &SessionRecord) -> Result<(), StoreError> {
        let mut state = self.lock();
        let state = &mut *state;
        let seq = match state.sessions.get(&record.session_id) {
            Some((seq, _)) => *seq,
            None => {
                state.session_seq += 1;
                state
                    .session_order
                    .insert(state.session_seq, record.session_id.clone());
                state.session_seq
            }
        };
        state
            .sessions
            .insert(record.session_id.clone(), (seq, record.clone()));
        while state.sessions.len() > MAX_SESSION_RECORDS {
            let Some((_, oldest)) = state.session_order.pop_first() else {
                break;
            };
            state.sessions.remove(&oldest);
        }
        Ok(())
    }

    async fn sessions(&self, limit: usize) -> Result<Vec<SessionRecord>, StoreError> {
        let state = self.lock();
        Ok(state
            .session_order
            .values()
            .rev()
            .filter_map(|id| state.sessions.get(id))
            .take(limit)
            .map(|(_, r)| r.clone())
            .collect())
    }

    async fn publish(&self, replica: &str, envelope: &Envelope) -> Result<(), StoreError> {
        let tx = self
            .lock()
            .inboxes
            .get(replica)
            .cloned()
            .ok_or_else(|| StoreError::NoSuchReplica(replica.to_string()))?;
        tx.try_send(envelope.clone())
            .map_err(|_| StoreError::NoSuchReplica(replica.to_string()))
    }

    async fn subscribe(&self, replica: &str) -> Result<mpsc::Receiver<Envelope>, StoreError> {
        let (tx, rx) = mpsc::channel(INBOX_DEPTH);
        self.lock().inboxes.insert(replica.to_string(), tx);
        Ok(rx)
    }
}
