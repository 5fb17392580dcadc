//! A player's connection: admission at the upgrade, assignment at `hello`, then relaying the
//! negotiation to the node until either side ends the session.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::stream::SplitStream;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use super::guard::{RateLimiter, origin_allowed};
use super::routing::{self, ClientEntry, Ended, OUTBOX_DEPTH, Outbox, send};
use super::{HELLO_TIMEOUT, LEASE_MS, ReplicaState, now_ms};
use crate::assign::{Request, plan};
use crate::catalog::DEMO_TITLE;
use crate::geo::{Location, resolve_location};
use crate::protocol::{
    ClientMsg, ErrorCode, MAX_MESSAGE_BYTES, PROTOCOL_VERSION, ServerMsg, parse,
};
use crate::store::{NodeRecord, SessionRecord};
use crate::token::{AUD_CLIENT, Claims, TokenError};

/// Malformed messages a connection may send before it is closed.
pub(crate) const MAX_BAD_MESSAGES: u32 = 16;

/// How long a session's record waits for the node's figures after the player left.
const NODE_REPORT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Socket buffer sizes: signaling messages are small, and 10,000 idle sockets must stay cheap.
pub(crate) const SOCKET_BUFFER_BYTES: usize = 4 * 1024;

#[derive(Debug, Deserialize)]
pub(crate) struct TokenQuery {
    pub(crate) token: Option<String>,
}

fn unix_now() -> u64 {
    now_ms() / 1000
}

/// Verifies a token and spends its nonce; the error is what the peer is told.
pub(crate) async fn admit(
    shared: &ReplicaState,
    key: &crate::token::TokenKey,
    token: Option<&str>,
    audience: &str,
) -> Result<Claims, (StatusCode, String)> {
    let refuse = |e: TokenError| {
        shared.metrics.upgrade_refused(e.reason());
        (StatusCode::UNAUTHORIZED, format!("{e}\n"))
    };
    let token = token
        .filter(|t| !t.is_empty())
        .ok_or(TokenError::Missing)
        .map_err(refuse)?;
    let now = unix_now();
    let claims = key.verify(token, audience, now).map_err(refuse)?;
    match shared
        .store
        .first_use_of_nonce(&claims.nonce, claims.exp, now)
        .await
    {
        Ok(true) => Ok(claims),
        Ok(false) => Err(refuse(TokenError::Replayed)),
        Err(e) => {
            tracing::warn!("nonce check failed: {e}");
            shared.metrics.upgrade_refused("store");
            Err((
                StatusCode::SERVICE_UNAVAILABLE,
                "the signaling store is unavailable; try again\n".into(),
            ))
        }
    }
}

/// `GET /ws`: checks the `Origin` and the token before upgrading.
pub(crate) async fn upgrade(
    ws: WebSocketUpgrade,
    State(shared): State<Arc<ReplicaState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(query): Query<TokenQuery>,
) -> Response {
    if !origin_allowed(&headers, &shared.allowed_origins) {
        shared.metrics.upgrade_refused("origin");
        return (
            StatusCode::FORBIDDEN,
            "this page's origin may not open a Stratus session\n",
        )
            .into_response();
    }
    let claims = match admit(
        &shared,
        &shared.token_key,
        query.token.as_deref(),
        AUD_CLIENT,
    )
    .await
    {
        Ok(c) => c,
        Err(refusal) => return refusal.into_response(),
    };
    let (_, location) =
        resolve_location(peer.ip(), &headers, &shared.trusted, shared.geoip.as_ref());
    ws.max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .read_buffer_size(SOCKET_BUFFER_BYTES)
        .write_buffer_size(SOCKET_BUFFER_BYTES)
        .on_upgrade(move |socket| connection(socket, shared, claims, location))
}

/// Splits a socket into an outbox (drained by a writer task) and its reading half.
pub(crate) fn spawn_writer(socket: WebSocket) -> (Outbox, SplitStream<WebSocket>) {
    let (mut sink, stream) = socket.split();
    let (tx, mut rx) = mpsc::channel::<ServerMsg>(OUTBOX_DEPTH);
    tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            if sink
                .send(Message::Text(msg.to_json().into()))
                .await
                .is_err()
            {
                break;
            }
        }
        let _ = sink.close().await;
    });
    (tx, stream)
}

/// What reading the socket gave.
pub(crate) enum Read {
    Text(String),
    Closed,
}

/// Reads the next text message. Binary frames are answered as malformed text.
pub(crate) async fn next_text(stream: &mut SplitStream<WebSocket>) -> Read {
    loop {
        match stream.next().await {
            None => return Read::Closed,
            Some(Ok(Message::Text(text))) => return Read::Text(text.to_string()),
            Some(Ok(Message::Binary(_))) => return Read::Text(String::from("<binary>")),
            Some(Ok(Message::Close(_))) => return Read::Closed,
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                tracing::debug!("websocket read failed: {e}");
                return Read::Closed;
            }
        }
    }
}

/// Counts refused messages and enforces the message rate.
pub(crate) struct Discipline {
    strikes: u32,
    rate: RateLimiter,
}

impl Discipline {
    pub(crate) fn new(shared: &ReplicaState) -> Self {
        Self {
            strikes: 0,
            rate: RateLimiter::new(shared.limits.messages_per_s, shared.limits.burst),
        }
    }

    /// `false` when the peer exceeded its rate; it is told and should be closed.
    pub(crate) fn admit(&mut self, shared: &ReplicaState, outbox: &Outbox) -> bool {
        if self.rate.allow() {
            return true;
        }
        shared.metrics.message_refused("rate");
        let _ = outbox.try_send(ServerMsg::error(
            ErrorCode::RateLimited,
            "too many messages; closing the connection",
        ));
        false
    }

    /// Refuses one message; `true` when the peer has used up its strikes.
    pub(crate) fn bad(
        &mut self,
        shared: &ReplicaState,
        outbox: &Outbox,
        code: ErrorCode,
        message: String,
    ) -> bool {
        self.strikes += 1;
        shared.metrics.message_refused(match code {
            ErrorCode::BadMessage => "malformed",
            _ => "unexpected",
        });
        tracing::debug!(?code, %message, "refused a message");
        let _ = outbox.try_send(ServerMsg::error(code, message));
        self.strikes >= MAX_BAD_MESSAGES
    }
}

/// The client's hello: the title and the measured round trips.
struct Hello {
    title: Option<String>,
    rtt_ms: BTreeMap<String, f64>,
}

async fn wait_hello(
    shared: &ReplicaState,
    stream: &mut SplitStream<WebSocket>,
    outbox: &Outbox,
    discipline: &mut Discipline,
) -> Option<Hello> {
    loop {
        let text = match tokio::time::timeout(HELLO_TIMEOUT, next_text(stream)).await {
            Ok(Read::Text(t)) => t,
            Ok(Read::Closed) => return None,
            Err(_) => {
                send(
                    outbox,
                    ServerMsg::error(ErrorCode::UnexpectedMessage, "no hello in time; closing"),
                );
                return None;
            }
        };
        if !discipline.admit(shared, outbox) {
            return None;
        }
        match parse::<ClientMsg>(&text) {
            Ok(ClientMsg::Hello {
                version,
                title,
                rtt_ms,
            }) if version == PROTOCOL_VERSION => return Some(Hello { title, rtt_ms }),
            Ok(ClientMsg::Hello { version, .. }) => {
                send(
                    outbox,
                    ServerMsg::error(
                        ErrorCode::VersionMismatch,
                        format!("this service speaks protocol {PROTOCOL_VERSION}, not {version}"),
                    ),
                );
                return None;
            }
            Ok(_) => {
                if discipline.bad(
                    shared,
                    outbox,
                    ErrorCode::UnexpectedMessage,
                    "send hello first".into(),
                ) {
                    return None;
                }
            }
            Err(e) => {
                if discipline.bad(shared, outbox, ErrorCode::BadMessage, e) {
                    return None;
                }
            }
        }
    }
}

/// A session admitted and reserved.
struct Admitted {
    record: SessionRecord,
    node: NodeRecord,
    launch: crate::catalog::Launch,
}

/// Plans and reserves; on refusal, the error to send.
async fn assign(
    shared: &ReplicaState,
    claims: &Claims,
    location: &Location,
    hello: &Hello,
) -> Result<Admitted, (ErrorCode, String, &'static str)> {
    let started = Instant::now();
    let result = assign_inner(shared, claims, location, hello).await;
    let outcome = match &result {
        Ok(_) => "ok",
        Err((ErrorCode::NoNodeAvailable, ..)) => "no_node_available",
        Err((ErrorCode::Forbidden, ..)) => "forbidden",
        Err((ErrorCode::UnknownTitle, ..)) => "unknown_title",
        Err(_) => "error",
    };
    shared
        .metrics
        .assignment(outcome, started.elapsed().as_secs_f64());
    result
}

async fn assign_inner(
    shared: &ReplicaState,
    claims: &Claims,
    location: &Location,
    hello: &Hello,
) -> Result<Admitted, (ErrorCode, String, &'static str)> {
    let unavailable = |e: crate::store::StoreError| {
        tracing::warn!("store failed during assignment: {e}");
        (
            ErrorCode::Unavailable,
            "the signaling store is unavailable; try again".to_string(),
            "store",
        )
    };
    let title_id = hello
        .title
        .clone()
        .or_else(|| claims.title.clone())
        .unwrap_or_else(|| DEMO_TITLE.to_string());
    if let Some(bound) = &claims.title
        && *bound != title_id
    {
        return Err((
            ErrorCode::Forbidden,
            format!("this token is for {bound:?}, not {title_id:?}"),
            "token_title",
        ));
    }
    let title = shared
        .title(&title_id)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| {
            (
                ErrorCode::UnknownTitle,
                format!("there is no title {title_id:?} in the catalog"),
                "unknown_title",
            )
        })?;
    let now = now_ms();
    let (nodes, used) = shared.store.fleet(now).await.map_err(unavailable)?;
    let request = Request {
        title: &title,
        client: location,
        rtt_ms: &hello.rtt_ms,
    };
    let plan = plan(&nodes, &used, &request, &shared.policy, now);
    let session_id = format!("{:032x}", rand::random::<u128>());
    for candidate in &plan.ranked {
        let Some(epoch) = shared
            .store
            .reserve(
                &candidate.node_id,
                candidate.capacity,
                &session_id,
                LEASE_MS,
                now,
            )
            .await
            .map_err(unavailable)?
        else {
            continue;
        };
        let node = nodes
            .iter()
            .find(|n| n.node_id == candidate.node_id)
            .cloned()
            .expect("candidates come from the node list");
        let record = SessionRecord {
            session_id: session_id.clone(),
            user: claims.sub.clone(),
            title: title_id.clone(),
            node_id: node.node_id.clone(),
            replica: shared.replica.clone(),
            epoch,
            started_ms: now,
            ended_ms: None,
            duration_ms: None,
            bytes_sent: 0,
            mean_bitrate_kbps: None,
            rtt_ms: None,
            end_reason: None,
        };
        return Ok(Admitted {
            record,
            node,
            launch: title.manifest.launch.clone(),
        });
    }
    let (code, message) = plan.refusal(&title_id);
    Err((code, message, "refused"))
}

async fn connection(
    socket: WebSocket,
    shared: Arc<ReplicaState>,
    claims: Claims,
    location: Location,
) {
    shared
        .metrics
        .client_connections
        .fetch_add(1, Ordering::Relaxed);
    shared.metrics.clients_open.fetch_add(1, Ordering::Relaxed);
    session(socket, &shared, claims, location).await;
    shared.metrics.clients_open.fetch_sub(1, Ordering::Relaxed);
}

async fn session(
    socket: WebSocket,
    shared: &Arc<ReplicaState>,
    claims: Claims,
    location: Location,
) {
    let (outbox, mut stream) = spawn_writer(socket);
    let mut discipline = Discipline::new(shared);
    let Some(hello) = wait_hello(shared, &mut stream, &outbox, &mut discipline).await else {
        return;
    };
    let Admitted {
        mut record,
        node,
        launch,
    } = match assign(shared, &claims, &location, &hello).await {
        Ok(a) => a,
        Err((code, message, _)) => {
            send(&outbox, ServerMsg::error(code, message));
            return;
        }
    };
    let session_id = record.session_id.clone();
    let span = tracing::info_span!("session", session_id = %session_id, node_id = %node.node_id);
    async move {
        if let Err(e) = shared.store.put_session(&record).await {
            tracing::warn!("could not write the session record: {e}");
        }
        let (end_tx, mut end_rx) = oneshot::channel::<Ended>();
        shared.local.add_client(
            &session_id,
            ClientEntry {
                outbox: outbox.clone(),
                node_id: node.node_id.clone(),
                end: Some(end_tx),
            },
        );
        shared
            .metrics
            .sessions_active
            .fetch_add(1, Ordering::Relaxed);
        let ice_servers: Vec<_> = shared
            .turn
            .iter()
            .map(|t| t.credentials(&claims.sub, unix_now()))
            .collect();
        send(
            &outbox,
            ServerMsg::Welcome {
                version: PROTOCOL_VERSION,
                session_id: session_id.clone(),
                node_id: node.node_id.clone(),
                ice_servers: ice_servers.clone(),
            },
        );
        tracing::info!(user = %claims.sub, title = %record.title, epoch = record.epoch, "session assigned");

        let mut renew = tokio::time::interval(std::time::Duration::from_millis(LEASE_MS / 3));
        renew.tick().await;
        let mut node_ended: Option<Ended> = None;
        let mut reason = String::from("client disconnected");
        loop {
            tokio::select! {
                read = next_text(&mut stream) => {
                    let Read::Text(text) = read else { break };
                    if !discipline.admit(shared, &outbox) {
                        reason = "client exceeded the message rate".into();
                        break;
                    }
                    match parse::<ClientMsg>(&text).and_then(|m| m.validate().map(|()| m)) {
                        Ok(ClientMsg::Offer { sdp }) => {
                            shared.to_node(&node.replica, &node.node_id, ServerMsg::StartSession {
                                session_id: session_id.clone(),
                                title: Some(record.title.clone()),
                                launch: Some(launch.clone()),
                                sdp,
                                epoch: record.epoch,
                                ice_servers: ice_servers.clone(),
                            }).await;
                        }
                        Ok(ClientMsg::Ice { candidate }) => {
                            shared.to_node(&node.replica, &node.node_id, ServerMsg::Ice {
                                session_id: Some(session_id.clone()),
                                candidate,
                            }).await;
                        }
                        Ok(ClientMsg::Bye) => {
                            reason = "client said bye".into();
                            break;
                        }
                        Ok(ClientMsg::Hello { .. }) => {
                            if discipline.bad(shared, &outbox, ErrorCode::UnexpectedMessage, "hello was already sent".into()) {
                                reason = "too many refused messages".into();
                                break;
                            }
                        }
                        Err(e) => {
                            if discipline.bad(shared, &outbox, ErrorCode::BadMessage, e) {
                                reason = "too many malformed messages".into();
                                break;
                            }
                        }
                    }
                }
                ended = &mut end_rx => {
                    if let Ok(ended) = ended {
                        send(&outbox, ServerMsg::SessionEnded { reason: ended.reason.clone(), permanent: ended.permanent });
                        node_ended = Some(ended);
                    }
                    break;
                }
                _ = renew.tick() => {
                    match shared.store.renew(&node.node_id, &session_id, record.epoch, LEASE_MS, now_ms()).await {
                        Ok(true) => {}
                        Ok(false) => {
                            let ended = Ended { reason: "the session's reservation was lost".into(), permanent: false, stats: None };
                            send(&outbox, ServerMsg::SessionEnded { reason: ended.reason.clone(), permanent: false });
                            node_ended = Some(ended);
                            break;
                        }
                        Err(e) => tracing::warn!("could not renew the reservation: {e}"),
                    }
                }
            }
        }

        let ended_ms = now_ms();
        shared
            .metrics
            .sessions_active
            .fetch_sub(1, Ordering::Relaxed);
        if let Err(e) = shared
            .store
            .release(&node.node_id, &session_id, record.epoch)
            .await
        {
            tracing::warn!("could not release the reservation (it expires by itself): {e}");
        }
        let (reason, stats) = match node_ended {
            Some(ended) => (ended.reason, ended.stats),
            None => {
                // The player left: tell the node to tear the session down.
                routing::deliver(
                    shared,
                    &node.replica,
                    crate::store::Envelope::ToNode {
                        node_id: node.node_id.clone(),
                        client_replica: None,
                        msg: ServerMsg::EndSession {
                            session_id: session_id.clone(),
                            reason: reason.clone(),
                        },
                    },
                )
                .await;
                // The node answers with what the session carried; wait a moment for it so
                // the record has the figures.
                let stats = match tokio::time::timeout(NODE_REPORT_WAIT, &mut end_rx).await {
                    Ok(Ok(ended)) => ended.stats,
                    _ => None,
                };
                (reason, stats)
            }
        };
        shared.local.remove_client(&session_id);
        record.finish(ended_ms, &reason, stats.as_ref());
        if let Err(e) = shared.store.put_session(&record).await {
            tracing::warn!("could not write the session record: {e}");
        }
        tracing::info!(reason = %reason, "session closed");
    }
    .instrument(span)
    .await;
}
