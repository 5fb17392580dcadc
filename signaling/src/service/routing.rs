//! Where each message goes: to a connection on this replica, or through the store's bus to
//! the replica that holds it.
//!
//! A session lives on two replicas at most: the *client's* replica owns it (reservation,
//! lease, record) and the *node's* replica relays to the node. The client's replica tells the
//! node's replica where it is in the `start_session` envelope; from then on the node's
//! replica routes the node's answer, candidates and end back to it.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use super::{ReplicaState, now_ms};
use crate::protocol::{ServerMsg, SessionStats};
use crate::store::{Envelope, NODE_TTL_MS};

/// Where messages for one connection are queued; its writer task drains it into the socket.
pub(crate) type Outbox = mpsc::Sender<ServerMsg>;

/// Messages an outbox holds before the peer counts as too slow.
pub(crate) const OUTBOX_DEPTH: usize = 64;

/// Why and how a session ended, as the client's task learns it.
#[derive(Debug)]
pub(crate) struct Ended {
    pub reason: String,
    /// Trying again would end the same way.
    pub permanent: bool,
    pub stats: Option<SessionStats>,
}

#[derive(Debug)]
pub(crate) struct ClientEntry {
    pub outbox: Outbox,
    pub node_id: String,
    pub end: Option<oneshot::Sender<Ended>>,
}

#[derive(Debug)]
pub(crate) struct NodeEntry {
    pub outbox: Outbox,
    pub last_heard: Instant,
    pub kill: Option<oneshot::Sender<&'static str>>,
}

#[derive(Debug)]
pub(crate) struct NodeSession {
    pub node_id: String,
    pub client_replica: String,
}

#[derive(Debug, Default)]
struct Maps {
    nodes: HashMap<String, NodeEntry>,
    clients: HashMap<String, ClientEntry>,
    node_sessions: HashMap<String, NodeSession>,
}

/// The connections this replica holds.
#[derive(Debug, Default)]
pub struct Local {
    maps: Mutex<Maps>,
}

impl Local {
    fn lock(&self) -> std::sync::MutexGuard<'_, Maps> {
        self.maps.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ids of the nodes connected here.
    pub fn node_ids(&self) -> Vec<String> {
        self.lock().nodes.keys().cloned().collect()
    }

    /// Number of sessions whose client is connected here.
    pub fn client_sessions(&self) -> usize {
        self.lock().clients.len()
    }

    pub(crate) fn add_node(&self, node_id: &str, entry: NodeEntry) -> bool {
        let mut maps = self.lock();
        if maps.nodes.contains_key(node_id) {
            return false;
        }
        maps.nodes.insert(node_id.to_string(), entry);
        true
    }

    pub(crate) fn heard_from(&self, node_id: &str) {
        if let Some(n) = self.lock().nodes.get_mut(node_id) {
            n.last_heard = Instant::now();
        }
    }

    /// Forgets a node; returns the sessions it was relaying, to be ended.
    pub(crate) fn remove_node(&self, node_id: &str) -> Vec<(String, NodeSession)> {
        let mut maps = self.lock();
        maps.nodes.remove(node_id);
        let ids: Vec<String> = maps
            .node_sessions
            .iter()
            .filter(|(_, s)| s.node_id == node_id)
            .map(|(id, _)| id.clone())
            .collect();
        ids.into_iter()
            .filter_map(|id| maps.node_sessions.remove(&id).map(|s| (id, s)))
            .collect()
    }

    pub(crate) fn add_client(&self, session_id: &str, entry: ClientEntry) {
        self.lock().clients.insert(session_id.to_string(), entry);
    }

    pub(crate) fn remove_client(&self, session_id: &str) {
        self.lock().clients.remove(session_id);
    }

    /// The replica holding a session's client, if a node here relays that session.
    pub(crate) fn client_replica(&self, node_id: &str, session_id: &str) -> Option<String> {
        self.lock()
            .node_sessions
            .get(session_id)
            .filter(|s| s.node_id == node_id)
            .map(|s| s.client_replica.clone())
    }

    pub(crate) fn forget_node_session(&self, session_id: &str) {
        self.lock().node_sessions.remove(session_id);
    }

    /// Closes every connection (shutdown).
    pub fn close_all(&self) {
        let mut maps = self.lock();
        for (_, n) in maps.nodes.iter_mut() {
            if let Some(kill) = n.kill.take() {
                let _ = kill.send("the signaling replica is shutting down");
            }
        }
        for (_, c) in maps.clients.iter_mut() {
            if let Some(end) = c.end.take() {
                let _ = end.send(Ended {
                    reason: "the signaling replica is shutting down; reconnect".into(),
                    permanent: false,
                    stats: None,
                });
            }
        }
    }
}

/// Queues `msg`, logging instead of blocking when the peer is too slow or gone.
pub(crate) fn send(outbox: &Outbox, msg: ServerMsg) {
    if let Err(e) = outbox.try_send(msg) {
        tracing::warn!("dropping a message for a slow or closed peer: {e}");
    }
}

/// Sends an envelope to `replica`: handled here when it is this one, published otherwise.
pub(crate) async fn deliver(shared: &Arc<ReplicaState>, replica: &str, envelope: Envelope) {
    if replica == shared.replica {
        handle(shared, envelope).await;
        return;
    }
    shared
        .metrics
        .envelopes_published
        .fetch_add(1, Ordering::Relaxed);
    if let Err(e) = shared.store.publish(replica, &envelope).await {
        tracing::warn!(replica, "could not route a message to another replica: {e}");
        // The peer's replica is gone; its sessions end as the sweeper notices.
    }
}

/// Acts on an envelope addressed to this replica.
pub(crate) async fn handle(shared: &Arc<ReplicaState>, envelope: Envelope) {
    match envelope {
        Envelope::ToNode {
            node_id,
            client_replica,
            msg,
        } => {
            let outbox = {
                let mut maps = shared.local.lock();
                if let ServerMsg::StartSession { session_id, .. } = &msg
                    && let Some(client_replica) = &client_replica
                    && maps.nodes.contains_key(&node_id)
                {
                    maps.node_sessions.insert(
                        session_id.clone(),
                        NodeSession {
                            node_id: node_id.clone(),
                            client_replica: client_replica.clone(),
                        },
                    );
                }
                // An ended session stays routable until the node reports it over (with its
                // figures) or the node goes away.
                maps.nodes.get(&node_id).map(|n| n.outbox.clone())
            };
            match outbox {
                Some(outbox) => send(&outbox, msg),
                None => {
                    // The node is not (or no longer) here: end the session it was meant for.
                    if let (ServerMsg::StartSession { session_id, .. }, Some(client_replica)) =
                        (&msg, client_replica)
                    {
                        Box::pin(deliver(
                            shared,
                            &client_replica,
                            Envelope::SessionEnded {
                                session_id: session_id.clone(),
                                reason: format!("node {node_id} was lost"),
                                permanent: false,
                                stats: None,
                            },
                        ))
                        .await;
                    }
                }
            }
        }
        Envelope::ToClient { session_id, msg } => {
            let outbox = shared
                .local
                .lock()
                .clients
                .get(&session_id)
                .map(|c| c.outbox.clone());
            if let Some(outbox) = outbox {
                send(&outbox, msg);
            }
        }
        Envelope::SessionEnded {
            session_id,
            reason,
            permanent,
            stats,
        } => end_client_session(
            shared,
            &session_id,
            Ended {
                reason,
                permanent,
                stats,
            },
        ),
    }
}

/// Tells a client's task here that its session is over.
pub(crate) fn end_client_session(shared: &ReplicaState, session_id: &str, ended: Ended) {
    let end = shared
        .local
        .lock()
        .clients
        .get_mut(session_id)
        .and_then(|c| c.end.take());
    if let Some(end) = end {
        let _ = end.send(ended);
    }
}

/// Receives envelopes other replicas publish to this one.
pub(crate) async fn run_inbox(shared: Arc<ReplicaState>, mut inbox: mpsc::Receiver<Envelope>) {
    while let Some(envelope) = inbox.recv().await {
        shared
            .metrics
            .envelopes_received
            .fetch_add(1, Ordering::Relaxed);
        handle(&shared, envelope).await;
    }
    tracing::warn!("the inbox from other replicas closed");
}

/// Every second: drops nodes connected here that fell silent, and ends sessions whose node is
/// no longer alive anywhere (its replica may have died with it).
pub(crate) async fn run_sweeper(shared: Arc<ReplicaState>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        {
            let mut maps = shared.local.lock();
            for (node_id, n) in maps.nodes.iter_mut() {
                if n.last_heard.elapsed().as_millis() as u64 >= NODE_TTL_MS
                    && let Some(kill) = n.kill.take()
                {
                    tracing::warn!(node_id, "node silent for 3 s; dropping it");
                    let _ = kill.send("no heartbeat for 3 s");
                }
            }
        }
        let alive = match shared.store.nodes(now_ms()).await {
            Ok(nodes) => nodes
                .into_iter()
                .map(|n| n.node_id)
                .collect::<std::collections::HashSet<_>>(),
            Err(e) => {
                tracing::warn!("sweeper could not read the registry: {e}");
                continue;
            }
        };
        let orphans: Vec<(String, String)> = shared
            .local
            .lock()
            .clients
            .iter()
            .filter(|(_, c)| !alive.contains(&c.node_id))
            .map(|(id, c)| (id.clone(), c.node_id.clone()))
            .collect();
        for (session_id, node_id) in orphans {
            end_client_session(
                &shared,
                &session_id,
                Ended {
                    reason: format!("node {node_id} was lost"),
                    permanent: false,
                    stats: None,
                },
            );
        }
    }
}
