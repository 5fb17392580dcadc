//! The in-memory hub: which nodes are connected, which sessions exist, and where each message
//! goes.
//!
//! Every connection owns an [`Outbox`]; the hub only routes messages into outboxes and never
//! awaits, so its lock is never held across I/O. Assignment here is the simple first policy:
//! the connected node with the most free capacity that has the title.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use serde::Serialize;
use tokio::sync::mpsc;

use crate::protocol::{ErrorCode, IceCandidate, PROTOCOL_VERSION, ServerMsg};

/// Where messages for one connection are queued; its writer task drains it into the socket.
pub type Outbox = mpsc::Sender<ServerMsg>;

/// Messages an outbox holds before the peer counts as too slow.
pub const OUTBOX_DEPTH: usize = 64;

#[derive(Debug)]
struct NodeEntry {
    outbox: Outbox,
    capacity: u32,
    titles: Vec<String>,
    sessions: HashSet<String>,
}

#[derive(Debug)]
struct SessionEntry {
    node_id: String,
    client: Outbox,
    title: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    nodes: HashMap<String, NodeEntry>,
    sessions: HashMap<String, SessionEntry>,
}

/// A node as the operator view shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeView {
    /// Node id.
    pub node_id: String,
    /// Concurrent sessions it takes.
    pub capacity: u32,
    /// Sessions it runs now.
    pub sessions: u32,
    /// Titles it can launch.
    pub titles: Vec<String>,
}

/// Routing state shared by every connection of one service.
#[derive(Debug, Default)]
pub struct Hub {
    state: Mutex<State>,
}

/// Queues `msg`, logging instead of blocking when the peer is too slow or gone.
fn deliver(outbox: &Outbox, msg: ServerMsg) {
    if let Err(e) = outbox.try_send(msg) {
        tracing::warn!("dropping a message for a slow or closed peer: {e}");
    }
}

impl Hub {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters more than losing routing altogether, so keep serving.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a node. Refuses an id that is already connected.
    pub fn register_node(
        &self,
        node_id: &str,
        capacity: u32,
        titles: Vec<String>,
        outbox: Outbox,
    ) -> Result<(), ErrorCode> {
        let mut state = self.lock();
        if state.nodes.contains_key(node_id) {
            return Err(ErrorCode::DuplicateNode);
        }
        deliver(
            &outbox,
            ServerMsg::Registered {
                version: PROTOCOL_VERSION,
                node_id: node_id.to_string(),
            },
        );
        state.nodes.insert(
            node_id.to_string(),
            NodeEntry {
                outbox,
                capacity,
                titles,
                sessions: HashSet::new(),
            },
        );
        tracing::info!(node_id, capacity, "node registered");
        Ok(())
    }

    /// Forgets a node whose connection closed, ending its sessions for their clients.
    pub fn node_gone(&self, node_id: &str) {
        let mut state = self.lock();
        let Some(node) = state.nodes.remove(node_id) else {
            return;
        };
        for session_id in node.sessions {
            if let Some(session) = state.sessions.remove(&session_id) {
                deliver(
                    &session.client,
                    ServerMsg::SessionEnded {
                        reason: format!("node {node_id} was lost"),
                    },
                );
            }
        }
        tracing::info!(node_id, "node left");
    }

    /// Assigns a new session to the connected node with the most free capacity that offers
    /// `title` (any node when `title` is `None`). Returns `(session_id, node_id)`.
    pub fn open_session(
        &self,
        title: Option<String>,
        client: Outbox,
    ) -> Result<(String, String), ErrorCode> {
        let mut state = self.lock();
        let node_id = state
            .nodes
            .iter()
            .filter(|(_, n)| (n.sessions.len() as u32) < n.capacity)
            .filter(|(_, n)| title.as_ref().is_none_or(|t| n.titles.contains(t)))
            .max_by_key(|(id, n)| (n.capacity - n.sessions.len() as u32, std::cmp::Reverse(*id)))
            .map(|(id, _)| id.clone())
            .ok_or(ErrorCode::NoNodeAvailable)?;
        let session_id = new_session_id();
        if let Some(node) = state.nodes.get_mut(&node_id) {
            node.sessions.insert(session_id.clone());
        }
        state.sessions.insert(
            session_id.clone(),
            SessionEntry {
                node_id: node_id.clone(),
                client,
                title,
            },
        );
        tracing::info!(session_id, node_id, "session assigned");
        Ok((session_id, node_id))
    }

    /// A session and the node serving it.
    fn node_of<'a>(
        state: &'a State,
        session_id: &str,
    ) -> Result<(&'a SessionEntry, &'a NodeEntry), ErrorCode> {
        let session = state
            .sessions
            .get(session_id)
            .ok_or(ErrorCode::UnknownSession)?;
        let node = state
            .nodes
            .get(&session.node_id)
            .ok_or(ErrorCode::NodeLost)?;
        Ok((session, node))
    }

    /// Forwards the client's offer to the session's node.
    pub fn client_offer(&self, session_id: &str, sdp: String) -> Result<(), ErrorCode> {
        let state = self.lock();
        let (session, node) = Self::node_of(&state, session_id)?;
        deliver(
            &node.outbox,
            ServerMsg::StartSession {
                session_id: session_id.to_string(),
                title: session.title.clone(),
                sdp,
            },
        );
        Ok(())
    }

    /// Forwards a client's ICE candidate to the session's node.
    pub fn client_ice(&self, session_id: &str, candidate: IceCandidate) -> Result<(), ErrorCode> {
        let state = self.lock();
        let (_, node) = Self::node_of(&state, session_id)?;
        deliver(
            &node.outbox,
            ServerMsg::Ice {
                session_id: Some(session_id.to_string()),
                candidate,
            },
        );
        Ok(())
    }

    /// Ends a session whose client left, telling its node.
    pub fn client_gone(&self, session_id: &str, reason: &str) {
        let mut state = self.lock();
        let Some(session) = state.sessions.remove(session_id) else {
            return;
        };
        if let Some(node) = state.nodes.get_mut(&session.node_id) {
            node.sessions.remove(session_id);
            deliver(
                &node.outbox,
                ServerMsg::EndSession {
                    session_id: session_id.to_string(),
                    reason: reason.to_string(),
                },
            );
        }
        tracing::info!(session_id, reason, "session closed by client side");
    }

    /// Looks up a session that must belong to `node_id`.
    fn client_of(state: &State, node_id: &str, session_id: &str) -> Result<Outbox, ErrorCode> {
        match state.sessions.get(session_id) {
            Some(s) if s.node_id == node_id => Ok(s.client.clone()),
            _ => Err(ErrorCode::UnknownSession),
        }
    }

    /// Forwards a node's answer to the session's client.
    pub fn node_answer(
        &self,
        node_id: &str,
        session_id: &str,
        sdp: String,
    ) -> Result<(), ErrorCode> {
        let client = Self::client_of(&self.lock(), node_id, session_id)?;
        deliver(&client, ServerMsg::Answer { sdp });
        Ok(())
    }

    /// Forwards a node's ICE candidate to the session's client.
    pub fn node_ice(
        &self,
        node_id: &str,
        session_id: &str,
        candidate: IceCandidate,
    ) -> Result<(), ErrorCode> {
        let client = Self::client_of(&self.lock(), node_id, session_id)?;
        deliver(
            &client,
            ServerMsg::Ice {
                session_id: None,
                candidate,
            },
        );
        Ok(())
    }

    /// A node reports a session over: tell the client and free the slot.
    pub fn node_session_ended(&self, node_id: &str, session_id: &str, reason: String) {
        let mut state = self.lock();
        if Self::client_of(&state, node_id, session_id).is_err() {
            return;
        }
        if let Some(session) = state.sessions.remove(session_id) {
            deliver(
                &session.client,
                ServerMsg::SessionEnded {
                    reason: reason.clone(),
                },
            );
        }
        if let Some(node) = state.nodes.get_mut(node_id) {
            node.sessions.remove(session_id);
        }
        tracing::info!(session_id, node_id, reason, "session ended by node");
    }

    /// The connected nodes, sorted by id.
    pub fn nodes(&self) -> Vec<NodeView> {
        let state = self.lock();
        let mut nodes: Vec<_> = state
            .nodes
            .iter()
            .map(|(id, n)| NodeView {
                node_id: id.clone(),
                capacity: n.capacity,
                sessions: n.sessions.len() as u32,
                titles: n.titles.clone(),
            })
            .collect();
        nodes.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        nodes
    }
}

/// A random 128-bit session id in hex.
fn new_session_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbox() -> (Outbox, mpsc::Receiver<ServerMsg>) {
        mpsc::channel(OUTBOX_DEPTH)
    }

    #[test]
    fn session_routes_both_ways_and_frees_the_slot() {
        let hub = Hub::default();
        let (node_tx, mut node_rx) = outbox();
        hub.register_node("n1", 1, vec!["demo".into()], node_tx)
            .expect("register");
        assert!(matches!(
            node_rx.try_recv(),
            Ok(ServerMsg::Registered { .. })
        ));

        let (client_tx, mut client_rx) = outbox();
        let (sid, nid) = hub.open_session(None, client_tx.clone()).expect("assigned");
        assert_eq!(nid, "n1");
        assert_eq!(
            hub.open_session(None, client_tx).expect_err("node is full"),
            ErrorCode::NoNodeAvailable
        );

        hub.client_offer(&sid, "v=0".into()).expect("offer");
        assert!(
            matches!(node_rx.try_recv(), Ok(ServerMsg::StartSession { sdp, .. }) if sdp == "v=0")
        );
        hub.node_answer("n1", &sid, "v=0 answer".into())
            .expect("answer");
        assert!(matches!(client_rx.try_recv(), Ok(ServerMsg::Answer { .. })));
        assert_eq!(
            hub.node_answer("other", &sid, "x".into())
                .expect_err("not its session"),
            ErrorCode::UnknownSession
        );

        hub.client_gone(&sid, "bye");
        assert!(matches!(
            node_rx.try_recv(),
            Ok(ServerMsg::EndSession { .. })
        ));
        assert_eq!(hub.nodes()[0].sessions, 0);
    }

    #[test]
    fn lost_node_ends_its_sessions() {
        let hub = Hub::default();
        let (node_tx, _node_rx) = outbox();
        hub.register_node("n1", 4, vec![], node_tx)
            .expect("register");
        let (client_tx, mut client_rx) = outbox();
        let (sid, _) = hub.open_session(None, client_tx).expect("assigned");
        hub.node_gone("n1");
        assert!(matches!(
            client_rx.try_recv(),
            Ok(ServerMsg::SessionEnded { .. })
        ));
        assert_eq!(
            hub.client_offer(&sid, "x".into()),
            Err(ErrorCode::UnknownSession)
        );
        assert!(hub.nodes().is_empty());
    }

    #[test]
    fn duplicate_node_and_missing_title_are_refused() {
        let hub = Hub::default();
        let (a, _ra) = outbox();
        let (b, _rb) = outbox();
        hub.register_node("n1", 1, vec!["demo".into()], a)
            .expect("register");
        assert_eq!(
            hub.register_node("n1", 1, vec![], b),
            Err(ErrorCode::DuplicateNode)
        );
        let (c, _rc) = outbox();
        assert_eq!(
            hub.open_session(Some("other-game".into()), c),
            Err(ErrorCode::NoNodeAvailable)
        );
    }
}
