//! A node agent's connection: registration, heartbeats, and relaying its answers, candidates
//! and session ends to the replicas holding the sessions' clients.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::extract::ws::{WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use futures_util::stream::SplitStream;
use tokio::sync::oneshot;

use super::client::{
    Discipline, Read, SOCKET_BUFFER_BYTES, TokenQuery, admit, next_text, spawn_writer,
};
use super::guard::bearer;
use super::routing::{self, NodeEntry, Outbox, send};
use super::{HEARTBEAT_MS, ReplicaState, now_ms};
use crate::protocol::{ErrorCode, MAX_MESSAGE_BYTES, NodeMsg, PROTOCOL_VERSION, ServerMsg, parse};
use crate::store::{Envelope, NodeRecord};
use crate::token::AUD_NODE;

/// Titles a node may list.
const MAX_TITLES: usize = 1024;

/// `GET /ws/node`: checks the node token (when nodes must authenticate) before upgrading.
pub(crate) async fn upgrade(
    ws: WebSocketUpgrade,
    State(shared): State<Arc<ReplicaState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(query): Query<TokenQuery>,
) -> Response {
    let subject = match &shared.node_key {
        Some(key) => {
            let token = bearer(&headers).or(query.token.as_deref());
            match admit(&shared, key, token, AUD_NODE).await {
                Ok(claims) => Some(claims.sub),
                Err(refusal) => return refusal.into_response(),
            }
        }
        None => None,
    };
    tracing::debug!(peer = %peer.ip(), "node connecting");
    ws.max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .read_buffer_size(SOCKET_BUFFER_BYTES)
        .write_buffer_size(SOCKET_BUFFER_BYTES)
        .on_upgrade(move |socket| connection(socket, shared, subject))
}

async fn connection(socket: WebSocket, shared: Arc<ReplicaState>, subject: Option<String>) {
    shared
        .metrics
        .node_connections
        .fetch_add(1, Ordering::Relaxed);
    shared.metrics.nodes_open.fetch_add(1, Ordering::Relaxed);
    run(socket, &shared, subject).await;
    shared.metrics.nodes_open.fetch_sub(1, Ordering::Relaxed);
}

fn refuse(outbox: &Outbox, code: ErrorCode, message: impl Into<String>) {
    send(outbox, ServerMsg::error(code, message));
}

/// Waits for the node's hello and registers it; `None` when it was refused or left.
async fn register(
    shared: &Arc<ReplicaState>,
    stream: &mut SplitStream<WebSocket>,
    outbox: &Outbox,
    discipline: &mut Discipline,
    subject: Option<&str>,
) -> Option<(NodeRecord, oneshot::Receiver<&'static str>)> {
    loop {
        let text = match tokio::time::timeout(super::HELLO_TIMEOUT, next_text(stream)).await {
            Ok(Read::Text(t)) => t,
            _ => return None,
        };
        if !discipline.admit(shared, outbox) {
            return None;
        }
        let hello = match parse::<NodeMsg>(&text) {
            Ok(hello @ NodeMsg::Hello { .. }) => hello,
            Ok(_) => {
                if discipline.bad(
                    shared,
                    outbox,
                    ErrorCode::UnexpectedMessage,
                    "send hello first".into(),
                ) {
                    return None;
                }
                continue;
            }
            Err(e) => {
                if discipline.bad(shared, outbox, ErrorCode::BadMessage, e) {
                    return None;
                }
                continue;
            }
        };
        let NodeMsg::Hello {
            version,
            node_id,
            capacity,
            titles,
            site,
            gpu_class,
            public_addr,
            probe_url,
            agent_version,
        } = hello
        else {
            return None;
        };
        if version != PROTOCOL_VERSION {
            refuse(
                outbox,
                ErrorCode::VersionMismatch,
                format!("this service speaks protocol {PROTOCOL_VERSION}, not {version}"),
            );
            return None;
        }
        if node_id.is_empty() || node_id.len() > 128 || node_id.chars().any(char::is_control) {
            refuse(
                outbox,
                ErrorCode::BadMessage,
                "node_id must be 1 to 128 printable characters",
            );
            return None;
        }
        if let Some(subject) = subject
            && subject != node_id
        {
            refuse(
                outbox,
                ErrorCode::Forbidden,
                format!("this token is for node {subject:?}, not {node_id:?}"),
            );
            return None;
        }
        if titles.len() > MAX_TITLES || gpu_class.is_empty() || gpu_class.len() > 32 {
            refuse(
                outbox,
                ErrorCode::BadMessage,
                "at most 1024 titles and a gpu_class of 1 to 32 characters",
            );
            return None;
        }
        let now = now_ms();
        let record = NodeRecord {
            node_id: node_id.clone(),
            site,
            gpu_class,
            capacity,
            titles,
            public_addr,
            probe_url,
            agent_version,
            sessions: 0,
            draining: false,
            replica: shared.replica.clone(),
            last_seen_ms: now,
            registered_ms: now,
        };
        let (kill_tx, kill_rx) = oneshot::channel();
        let entry = NodeEntry {
            outbox: outbox.clone(),
            last_heard: Instant::now(),
            kill: Some(kill_tx),
        };
        if !shared.local.add_node(&node_id, entry) {
            refuse(
                outbox,
                ErrorCode::DuplicateNode,
                format!("a node with id {node_id:?} is already connected"),
            );
            return None;
        }
        match shared.store.register_node(&record, now).await {
            Ok(true) => {}
            Ok(false) => {
                shared.local.remove_node(&node_id);
                refuse(
                    outbox,
                    ErrorCode::DuplicateNode,
                    format!("a node with id {node_id:?} is already connected"),
                );
                return None;
            }
            Err(e) => {
                shared.local.remove_node(&node_id);
                tracing::warn!("could not register a node: {e}");
                refuse(
                    outbox,
                    ErrorCode::Unavailable,
                    "the signaling store is unavailable; try again",
                );
                return None;
            }
        }
        send(
            outbox,
            ServerMsg::Registered {
                version: PROTOCOL_VERSION,
                node_id: node_id.clone(),
                heartbeat_ms: HEARTBEAT_MS,
            },
        );
        tracing::info!(node_id, capacity, gpu_class = %record.gpu_class, region = %record.site.region, "node registered");
        return Some((record, kill_rx));
    }
}

async fn run(socket: WebSocket, shared: &Arc<ReplicaState>, subject: Option<String>) {
    let (outbox, mut stream) = spawn_writer(socket);
    let mut discipline = Discipline::new(shared);
    let Some((record, mut kill)) = register(
        shared,
        &mut stream,
        &outbox,
        &mut discipline,
        subject.as_deref(),
    )
    .await
    else {
        return;
    };
    let node_id = record.node_id.clone();
    let mut why = "node disconnected";
    loop {
        let text = tokio::select! {
            read = next_text(&mut stream) => match read {
                Read::Text(t) => t,
                Read::Closed => break,
            },
            reason = &mut kill => {
                why = reason.unwrap_or("dropped");
                refuse(&outbox, ErrorCode::NodeLost, why);
                break;
            }
        };
        if !discipline.admit(shared, &outbox) {
            why = "node exceeded the message rate";
            break;
        }
        shared.local.heard_from(&node_id);
        let relay = |session_id: &str| shared.local.client_replica(&node_id, session_id);
        match parse::<NodeMsg>(&text).and_then(|m| m.validate().map(|()| m)) {
            Ok(NodeMsg::Heartbeat { sessions, draining }) => {
                match shared
                    .store
                    .heartbeat(&node_id, &shared.replica, sessions, draining, now_ms())
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => {
                        // Re-register: the record expired (e.g. the store restarted).
                        let mut again = record.clone();
                        again.last_seen_ms = now_ms();
                        again.sessions = sessions;
                        again.draining = draining;
                        if !matches!(
                            shared.store.register_node(&again, again.last_seen_ms).await,
                            Ok(true)
                        ) {
                            why = "the node's registration was taken over";
                            refuse(&outbox, ErrorCode::DuplicateNode, why);
                            break;
                        }
                    }
                    Err(e) => tracing::warn!(node_id, "heartbeat not stored: {e}"),
                }
            }
            Ok(NodeMsg::Answer { session_id, sdp }) => match relay(&session_id) {
                Some(replica) => {
                    routing::deliver(
                        shared,
                        &replica,
                        Envelope::ToClient {
                            session_id,
                            msg: ServerMsg::Answer { sdp },
                        },
                    )
                    .await;
                }
                None => refuse(
                    &outbox,
                    ErrorCode::UnknownSession,
                    "no such session on this node",
                ),
            },
            Ok(NodeMsg::Ice {
                session_id,
                candidate,
            }) => match relay(&session_id) {
                Some(replica) => {
                    routing::deliver(
                        shared,
                        &replica,
                        Envelope::ToClient {
                            session_id,
                            msg: ServerMsg::Ice {
                                session_id: None,
                                candidate,
                            },
                        },
                    )
                    .await;
                }
                None => refuse(
                    &outbox,
                    ErrorCode::UnknownSession,
                    "no such session on this node",
                ),
            },
            Ok(NodeMsg::SessionEnded {
                session_id,
                reason,
                permanent,
                stats,
            }) => {
                if let Some(replica) = relay(&session_id) {
                    shared.local.forget_node_session(&session_id);
                    routing::deliver(
                        shared,
                        &replica,
                        Envelope::SessionEnded {
                            session_id,
                            reason,
                            permanent,
                            stats,
                        },
                    )
                    .await;
                }
            }
            Ok(NodeMsg::Hello { .. }) => {
                if discipline.bad(
                    shared,
                    &outbox,
                    ErrorCode::UnexpectedMessage,
                    "hello was already sent".into(),
                ) {
                    why = "too many refused messages";
                    break;
                }
            }
            Err(e) => {
                if discipline.bad(shared, &outbox, ErrorCode::BadMessage, e) {
                    why = "too many malformed messages";
                    break;
                }
            }
        }
    }
    let orphaned = shared.local.remove_node(&node_id);
    if let Err(e) = shared.store.remove_node(&node_id, &shared.replica).await {
        tracing::warn!(node_id, "could not remove the node from the registry: {e}");
    }
    for (session_id, s) in orphaned {
        routing::deliver(
            shared,
            &s.client_replica,
            Envelope::SessionEnded {
                session_id,
                reason: format!("node {node_id} was lost"),
                permanent: false,
                stats: None,
            },
        )
        .await;
    }
    tracing::info!(node_id, why, "node left");
}
