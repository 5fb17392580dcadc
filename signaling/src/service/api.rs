//! The HTTP API: tokens, the catalog (studios publish), RTT probe targets, and the operator's
//! view (nodes, drain, sessions, metrics).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::guard::has_key;
use super::{ReplicaState, now_ms};
use crate::assign::{PROBE_TOP_K, Request, plan, probe_targets};
use crate::catalog::{BUILTIN_TITLES, DEMO_TITLE, ManifestError, Title, TitleManifest};
use crate::geo::resolve_location;
use crate::store::{Envelope, StoreError};
use crate::token::{AUD_CLIENT, MAX_TOKEN_LIFETIME_S};
use crate::web;

/// An error as JSON: `{"error": "..."}` with a status.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    #[derive(Serialize)]
    struct Body {
        error: String,
    }
    (
        status,
        Json(Body {
            error: message.into(),
        }),
    )
        .into_response()
}

fn store_error(e: StoreError) -> Response {
    tracing::warn!("store failed: {e}");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the signaling store is unavailable; try again",
    )
}

/// The refusal to send, unless the operator key is absent (open demo) or presented.
fn operator(shared: &ReplicaState, headers: &HeaderMap) -> Option<Response> {
    match &shared.operator_key {
        Some(key) if !has_key(headers, key) => Some(error(
            StatusCode::UNAUTHORIZED,
            "the operator API needs Authorization: Bearer <operator_key>",
        )),
        _ => None,
    }
}

/// The studio presenting its key, if any.
fn studio<'a>(shared: &'a ReplicaState, headers: &HeaderMap) -> Result<&'a str, Box<Response>> {
    shared
        .studios
        .iter()
        .find(|s| has_key(headers, &s.key))
        .map(|s| s.name.as_str())
        .ok_or_else(|| {
            Box::new(error(
                StatusCode::UNAUTHORIZED,
                "publishing needs Authorization: Bearer <studio key>",
            ))
        })
}

pub(crate) async fn static_file_root() -> Response {
    serve_file("/")
}

pub(crate) async fn static_file(Path(file): Path<String>) -> Response {
    serve_file(&format!("/{file}"))
}

fn serve_file(path: &str) -> Response {
    match web::file(path) {
        Some(f) => (
            [
                (header::CONTENT_TYPE, f.content_type),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            f.body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

pub(crate) async fn metrics(
    State(shared): State<Arc<ReplicaState>>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = operator(&shared, &headers) {
        return r;
    }
    let alive = shared.store.nodes(now_ms()).await.ok().map(|n| n.len());
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        shared.metrics.render(&shared.replica, alive),
    )
        .into_response()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenRequest {
    /// Who the token is for (only honoured with the issuer key).
    #[serde(default)]
    user: Option<String>,
    /// Bind the token to one title.
    #[serde(default)]
    title: Option<String>,
    /// Lifetime in seconds (at most 300).
    #[serde(default)]
    ttl_s: Option<u64>,
}

#[derive(Debug, Serialize)]
struct TokenResponse {
    token: String,
    user: String,
    expires_at: u64,
    ws_url_query: String,
}

/// `POST /api/token`. With an issuer key configured, only callers presenting it get tokens
/// (an identity provider's proxy or backend), and they name the user (`X-Stratus-User` header
/// or `user` in the body). Without one (the demo), anyone gets a guest token.
pub(crate) async fn issue_token(
    State(shared): State<Arc<ReplicaState>>,
    headers: HeaderMap,
    body: Option<Json<TokenRequest>>,
) -> Response {
    let body = body.map(|Json(b)| b).unwrap_or_default();
    let user = match &shared.issuer_key {
        Some(key) => {
            if !has_key(&headers, key) {
                shared.metrics.upgrade_refused("issuer_key");
                return error(
                    StatusCode::UNAUTHORIZED,
                    "tokens are issued to signed-in players only (Authorization: Bearer <issuer_key>)",
                );
            }
            let from_header = headers
                .get("x-stratus-user")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            match from_header.or(body.user) {
                Some(u) if !u.is_empty() && u.len() <= 128 => u,
                _ => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "name the player in X-Stratus-User or \"user\" (1 to 128 characters)",
                    );
                }
            }
        }
        None => format!("guest-{:08x}", rand::random::<u32>()),
    };
    let ttl = body.ttl_s.unwrap_or(MAX_TOKEN_LIFETIME_S);
    let now = now_ms() / 1000;
    match shared
        .token_key
        .issue(&user, AUD_CLIENT, ttl, body.title.as_deref(), now)
    {
        Ok((token, claims)) => Json(TokenResponse {
            ws_url_query: format!("token={token}"),
            token,
            user,
            expires_at: claims.exp,
        })
        .into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

#[derive(Debug, Serialize)]
struct TitleSummary<'a> {
    id: &'a str,
    name: &'a str,
    gpu_class: &'a str,
    inputs: &'a [crate::catalog::InputKind],
    studio: &'a str,
    /// Some live node has it installed.
    available: bool,
    /// A built-in instrument (checkers, labs): pickers leave it out.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    instrument: bool,
}

/// `GET /api/titles`: the catalog for the title picker.
pub(crate) async fn list_titles(State(shared): State<Arc<ReplicaState>>) -> Response {
    let (titles, nodes) = match (
        shared.store.titles().await,
        shared.store.nodes(now_ms()).await,
    ) {
        (Ok(t), Ok(n)) => (t, n),
        (Err(e), _) | (_, Err(e)) => return store_error(e),
    };
    let list: Vec<TitleSummary<'_>> = titles
        .iter()
        .map(|t| TitleSummary {
            id: t.id(),
            name: &t.manifest.name,
            gpu_class: &t.manifest.gpu_class,
            inputs: &t.manifest.inputs,
            studio: &t.studio,
            available: nodes.iter().any(|n| {
                !n.draining && n.titles.iter().any(|x| x == t.id()) && t.runs_on(&n.gpu_class)
            }),
            instrument: t.manifest.instrument,
        })
        .collect();
    Json(list).into_response()
}

/// `GET /api/titles/{id}`.
pub(crate) async fn get_title(
    State(shared): State<Arc<ReplicaState>>,
    Path(id): Path<String>,
) -> Response {
    match shared.store.title(&id).await {
        Ok(Some(t)) => Json(t).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("there is no title {id:?}")),
        Err(e) => store_error(e),
    }
}

/// `PUT /api/titles/{id}`: a studio publishes or updates one of its titles.
pub(crate) async fn put_title(
    State(shared): State<Arc<ReplicaState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let studio = match studio(&shared, &headers) {
        Ok(s) => s.to_string(),
        Err(r) => return *r,
    };
    let manifest: TitleManifest = match serde_json::from_slice(&body) {
        Ok(m) => m,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid manifest: {e}")),
    };
    if let Err(e) = manifest.validate(&id) {
        let status = match e {
            ManifestError::Reserved(_) => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        };
        return error(status, e.to_string());
    }
    let now = now_ms();
    let existing = match shared.store.title(&id).await {
        Ok(t) => t,
        Err(e) => return store_error(e),
    };
    let (title, status) = match existing {
        Some(old) if old.studio != studio => {
            return error(
                StatusCode::FORBIDDEN,
                ManifestError::NotOwner(id).to_string(),
            );
        }
        Some(old) => (
            Title {
                manifest,
                studio,
                revision: old.revision + 1,
                published_ms: old.published_ms,
                updated_ms: now,
            },
            StatusCode::OK,
        ),
        None => (
            Title {
                manifest,
                studio,
                revision: 1,
                published_ms: now,
                updated_ms: now,
            },
            StatusCode::CREATED,
        ),
    };
    if let Err(e) = shared.store.put_title(&title).await {
        return store_error(e);
    }
    shared.title_changed(title.id());
    tracing::info!(title = %title.id(), studio = %title.studio, revision = title.revision, "title published");
    (status, Json(title)).into_response()
}

/// `DELETE /api/titles/{id}`: a studio withdraws one of its titles.
pub(crate) async fn delete_title(
    State(shared): State<Arc<ReplicaState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let studio = match studio(&shared, &headers) {
        Ok(s) => s.to_string(),
        Err(r) => return *r,
    };
    if BUILTIN_TITLES.contains(&id.as_str()) {
        return error(
            StatusCode::FORBIDDEN,
            ManifestError::Reserved(id).to_string(),
        );
    }
    match shared.store.title(&id).await {
        Ok(Some(t)) if t.studio != studio => error(
            StatusCode::FORBIDDEN,
            ManifestError::NotOwner(id).to_string(),
        ),
        Ok(Some(_)) => match shared.store.remove_title(&id).await {
            Ok(_) => {
                shared.title_changed(&id);
                tracing::info!(title = %id, studio, "title withdrawn");
                StatusCode::NO_CONTENT.into_response()
            }
            Err(e) => store_error(e),
        },
        Ok(None) => error(StatusCode::NOT_FOUND, format!("there is no title {id:?}")),
        Err(e) => store_error(e),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct ProbeQuery {
    title: Option<String>,
}

#[derive(Debug, Serialize)]
struct ProbeTarget {
    node_id: String,
    url: String,
}

/// `GET /api/probe?title=…`: the nearest candidates' probe URLs, for the client to time
/// before its hello.
pub(crate) async fn probe(
    State(shared): State<Arc<ReplicaState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(query): Query<ProbeQuery>,
) -> Response {
    let title_id = query.title.unwrap_or_else(|| DEMO_TITLE.to_string());
    let title = match shared.store.title(&title_id).await {
        Ok(Some(t)) => t,
        Ok(None) => {
            return error(
                StatusCode::NOT_FOUND,
                format!("there is no title {title_id:?}"),
            );
        }
        Err(e) => return store_error(e),
    };
    let (_, location) =
        resolve_location(peer.ip(), &headers, &shared.trusted, shared.geoip.as_ref());
    let now = now_ms();
    let (nodes, used) = match shared.store.fleet(now).await {
        Ok(f) => f,
        Err(e) => return store_error(e),
    };
    let rtt = Default::default();
    let request = Request {
        title: &title,
        client: &location,
        rtt_ms: &rtt,
    };
    let plan = plan(&nodes, &used, &request, &shared.policy, now);
    let targets: Vec<ProbeTarget> = probe_targets(&plan, PROBE_TOP_K)
        .into_iter()
        .map(|(node_id, url)| ProbeTarget { node_id, url })
        .collect();
    Json(targets).into_response()
}

#[derive(Debug, Serialize)]
struct NodeView {
    #[serde(flatten)]
    node: crate::store::NodeRecord,
    slots_used: u32,
}

/// `GET /api/nodes`: the live fleet (operator).
pub(crate) async fn nodes(State(shared): State<Arc<ReplicaState>>, headers: HeaderMap) -> Response {
    if let Some(r) = operator(&shared, &headers) {
        return r;
    }
    let now = now_ms();
    let (nodes, used) = match shared.store.fleet(now).await {
        Ok(f) => f,
        Err(e) => return store_error(e),
    };
    let view: Vec<NodeView> = nodes
        .into_iter()
        .zip(used)
        .map(|(node, slots_used)| NodeView { node, slots_used })
        .collect();
    Json(view).into_response()
}

/// `POST /api/nodes/{id}/drain` (operator): the node takes no new sessions.
pub(crate) async fn drain(
    State(shared): State<Arc<ReplicaState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = operator(&shared, &headers) {
        return r;
    }
    let now = now_ms();
    let node = match shared.store.nodes(now).await {
        Ok(nodes) => nodes.into_iter().find(|n| n.node_id == id),
        Err(e) => return store_error(e),
    };
    let Some(node) = node else {
        return error(StatusCode::NOT_FOUND, format!("no live node {id:?}"));
    };
    match shared.store.set_draining(&id, now).await {
        Ok(true) => {}
        Ok(false) => return error(StatusCode::NOT_FOUND, format!("no live node {id:?}")),
        Err(e) => return store_error(e),
    }
    super::routing::deliver(
        &shared,
        &node.replica,
        Envelope::ToNode {
            node_id: id.clone(),
            client_replica: None,
            msg: crate::protocol::ServerMsg::Drain,
        },
    )
    .await;
    tracing::info!(node_id = %id, "node draining on operator request");
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Debug, Deserialize)]
pub(crate) struct SessionsQuery {
    limit: Option<usize>,
}

/// `GET /api/sessions?limit=N` (operator): session records, newest first.
pub(crate) async fn sessions(
    State(shared): State<Arc<ReplicaState>>,
    headers: HeaderMap,
    Query(query): Query<SessionsQuery>,
) -> Response {
    if let Some(r) = operator(&shared, &headers) {
        return r;
    }
    match shared
        .store
        .sessions(query.limit.unwrap_or(100).min(10_000))
        .await
    {
        Ok(s) => Json(s).into_response(),
        Err(e) => store_error(e),
    }
}
