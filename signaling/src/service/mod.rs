//! The HTTP and WebSocket service over a [`Store`]: serves the browser client, admits players
//! and nodes, assigns sessions, and routes negotiation between them — across replicas when
//! the store is shared.
//!
//! Routes:
//! - `GET /` and the page's files: the browser client;
//! - `GET /ws?token=…`: a player's connection ([`ClientMsg`](crate::protocol::ClientMsg) in,
//!   [`ServerMsg`] out); the upgrade is refused (401/403) for a missing, expired, replayed or
//!   wrong-audience token or a foreign `Origin`;
//! - `GET /ws/node`: a node agent's connection (a node token when `node_key` is set);
//! - `POST /api/token`: a client token (behind `issuer_key` when set);
//! - `GET /api/titles`, `GET /api/titles/{id}`: the catalog; `PUT`/`DELETE` for studios;
//! - `GET /api/probe?title=…`: the nearest nodes' probe URLs for this client;
//! - `GET /api/nodes`, `POST /api/nodes/{id}/drain`, `GET /api/sessions`, `GET /metrics`:
//!   the operator's view (behind `operator_key` when set);
//! - `GET /healthz`: `ok`.

mod api;
mod client;
mod guard;
mod node;
mod routing;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tokio::net::TcpListener;

use crate::SignalingError;
use crate::catalog::builtin_titles;
use crate::config::{Config, Limits, Studio};
use crate::geo::{GeoIpDb, TrustedProxies};
use crate::metrics::Metrics;
use crate::policy::GeofencePolicy;
use crate::protocol::ServerMsg;
use crate::store::Store;
use crate::store::memory::MemoryStore;
use crate::store::redis::RedisStore;
use crate::token::TokenKey;
use crate::turn::TurnConfig;

pub use routing::Local;

/// How long a slot reservation lasts unless renewed; a replica renews its sessions' every
/// third of it, so a dead replica's slots come free within this time.
pub const LEASE_MS: u64 = 15_000;

/// How long a client may stay connected before sending `hello`.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(120);

/// How often nodes heartbeat.
pub const HEARTBEAT_MS: u32 = 1000;

/// How long a replica reuses a title it read from the store for assignments. A studio's
/// update shows on the replica that took it at once and on the others within this time.
pub const TITLE_CACHE_TTL: Duration = Duration::from_secs(1);

/// Titles recently read, with when.
type TitleCache =
    std::collections::HashMap<String, (std::time::Instant, Option<crate::catalog::Title>)>;

/// Unix milliseconds now.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Everything a connection handler needs, shared by all of one replica's connections.
#[derive(Debug)]
pub struct ReplicaState {
    /// This replica's id.
    pub replica: String,
    /// The store every replica shares.
    pub store: Arc<dyn Store>,
    /// Verifies client tokens.
    pub token_key: TokenKey,
    /// Verifies node tokens, when nodes must authenticate.
    pub node_key: Option<TokenKey>,
    issuer_key: Option<String>,
    operator_key: Option<String>,
    studios: Vec<Studio>,
    allowed_origins: Vec<String>,
    trusted: TrustedProxies,
    geoip: Option<GeoIpDb>,
    policy: GeofencePolicy,
    turn: Option<TurnConfig>,
    limits: Limits,
    /// Connections on this replica.
    pub local: Local,
    titles: std::sync::Mutex<
        std::collections::HashMap<String, (std::time::Instant, Option<crate::catalog::Title>)>,
    >,
    /// Counters.
    pub metrics: Metrics,
}

impl ReplicaState {
    /// Builds the shared state from a configuration, connecting to the store.
    pub async fn from_config(config: &Config) -> Result<Arc<Self>, SignalingError> {
        let bad =
            |what: &str, e: &dyn std::fmt::Display| SignalingError::Config(format!("{what}: {e}"));
        let replica = config
            .replica_id
            .clone()
            .unwrap_or_else(|| format!("sig-{:08x}", rand::random::<u32>()));
        let store: Arc<dyn Store> = match config.store.as_deref() {
            None | Some("memory") => Arc::new(MemoryStore::default()),
            Some(url) if url.starts_with("redis://") => {
                let prefix = config.redis_prefix.as_deref().unwrap_or("stratus");
                Arc::new(
                    RedisStore::connect(url, prefix)
                        .await
                        .map_err(|e| bad("store", &e))?,
                )
            }
            Some(other) => {
                return Err(SignalingError::Config(format!(
                    "store must be \"memory\" or a redis:// URL, not {other:?}"
                )));
            }
        };
        Self::with_store(config, store, replica).await
    }

    /// Builds the shared state over an existing store (replicas in one process share one).
    pub async fn with_store(
        config: &Config,
        store: Arc<dyn Store>,
        replica: String,
    ) -> Result<Arc<Self>, SignalingError> {
        let bad =
            |what: &str, e: &dyn std::fmt::Display| SignalingError::Config(format!("{what}: {e}"));
        let token_key = match &config.token_key {
            Some(k) => TokenKey::from_secret_str(k).map_err(|e| bad("token_key", &e))?,
            None => {
                if store.kind() != "memory" {
                    return Err(SignalingError::Config(
                        "token_key must be set when replicas share a store (each replica must \
                         verify the others' tokens)"
                            .into(),
                    ));
                }
                TokenKey::random()
            }
        };
        let node_key = match &config.node_key {
            Some(k) => Some(TokenKey::from_secret_str(k).map_err(|e| bad("node_key", &e))?),
            None => {
                tracing::warn!("node_key is not set: nodes connect without authentication");
                None
            }
        };
        let trusted = TrustedProxies::parse(&config.trusted_proxies)
            .map_err(|e| bad("trusted_proxies", &e))?;
        let geoip = match &config.geoip_db {
            Some(path) => Some(GeoIpDb::load(path).map_err(|e| bad("geoip_db", &e))?),
            None => None,
        };
        let turn = match &config.turn {
            Some(t) => Some(
                TurnConfig::new(t.urls.clone(), t.secret.clone(), t.ttl_s)
                    .map_err(|e| bad("turn", &e))?,
            ),
            None => None,
        };
        let policy = GeofencePolicy {
            rules: config.rules.clone(),
        };
        policy.validate().map_err(|e| bad("geofence rule", &e))?;
        let shared = Arc::new(Self {
            replica,
            store,
            token_key,
            node_key,
            issuer_key: config.issuer_key.clone(),
            operator_key: config.operator_key.clone(),
            studios: config.studios.clone(),
            allowed_origins: config.allowed_origins.clone(),
            trusted,
            geoip,
            policy,
            turn,
            limits: config.limits,
            local: Local::default(),
            titles: Default::default(),
            metrics: Metrics::default(),
        });
        for builtin in builtin_titles() {
            if shared
                .store
                .title(builtin.id())
                .await
                .map_err(|e| bad("store", &e))?
                .is_none()
            {
                shared
                    .store
                    .put_title(&builtin)
                    .await
                    .map_err(|e| bad("store", &e))?;
            }
        }
        Ok(shared)
    }

    /// A title for assignment, read through a cache of [`TITLE_CACHE_TTL`].
    pub(crate) async fn title(
        &self,
        id: &str,
    ) -> Result<Option<crate::catalog::Title>, crate::store::StoreError> {
        if let Some((at, title)) = self.title_cache().get(id)
            && at.elapsed() < TITLE_CACHE_TTL
        {
            return Ok(title.clone());
        }
        let title = self.store.title(id).await?;
        let mut cache = self.title_cache();
        if cache.len() > 4096 {
            cache.clear();
        }
        cache.insert(id.to_string(), (std::time::Instant::now(), title.clone()));
        Ok(title)
    }

    /// Forgets a cached title after this replica changed it.
    pub(crate) fn title_changed(&self, id: &str) {
        self.title_cache().remove(id);
    }

    fn title_cache(&self) -> std::sync::MutexGuard<'_, TitleCache> {
        // The cache holds plain values; a poisoned lock still guards a usable map.
        self.titles.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends `msg` to a node, wherever it is connected. See [`routing`].
    pub(crate) async fn to_node(
        self: &Arc<Self>,
        node_replica: &str,
        node_id: &str,
        msg: ServerMsg,
    ) {
        routing::deliver(
            self,
            node_replica,
            crate::store::Envelope::ToNode {
                node_id: node_id.to_string(),
                client_replica: Some(self.replica.clone()),
                msg,
            },
        )
        .await;
    }
}

/// A bound, not yet running signaling service.
#[derive(Debug)]
pub struct Service {
    listener: TcpListener,
    shared: Arc<ReplicaState>,
}

impl Service {
    /// Binds the service with the embedded defaults (in-memory store, random token key, open
    /// token endpoint) to `addr` (port 0 picks a free port).
    pub async fn bind(addr: SocketAddr) -> Result<Self, SignalingError> {
        Self::bind_with(addr, &Config::default()).await
    }

    /// Binds the service with `config` to `addr`.
    pub async fn bind_with(addr: SocketAddr, config: &Config) -> Result<Self, SignalingError> {
        let shared = ReplicaState::from_config(config).await?;
        Self::bind_shared(addr, shared).await
    }

    /// Binds a service over prepared shared state to `addr`.
    pub async fn bind_shared(
        addr: SocketAddr,
        shared: Arc<ReplicaState>,
    ) -> Result<Self, SignalingError> {
        let listener = TcpListener::bind(addr).await.map_err(|source| {
            if source.kind() == std::io::ErrorKind::AddrInUse {
                SignalingError::AddrInUse { addr }
            } else {
                SignalingError::Bind { addr, source }
            }
        })?;
        Ok(Self { listener, shared })
    }

    /// The address the service listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The shared state, for embedding and tests.
    pub fn shared(&self) -> Arc<ReplicaState> {
        self.shared.clone()
    }

    /// Serves until `shutdown` completes. Background tasks (the inbox from other replicas,
    /// the liveness sweeper, lease renewal) stop with it.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), SignalingError> {
        let addr = self.local_addr();
        let shared = self.shared;
        let inbox = shared
            .store
            .subscribe(&shared.replica)
            .await
            .map_err(|e| SignalingError::Config(format!("store: {e}")))?;
        let background = vec![
            tokio::spawn(routing::run_inbox(shared.clone(), inbox)),
            tokio::spawn(routing::run_sweeper(shared.clone())),
        ];
        tracing::info!(%addr, replica = %shared.replica, store = shared.store.kind(), "signaling service listening");
        let app = router(shared.clone()).into_make_service_with_connect_info::<SocketAddr>();
        let result = axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|source| SignalingError::Serve { addr, source });
        for task in background {
            task.abort();
        }
        shared.local.close_all();
        result
    }
}

/// The service's routes over shared state.
pub fn router(shared: Arc<ReplicaState>) -> Router {
    Router::new()
        .route("/", get(api::static_file_root))
        .route("/{file}", get(api::static_file))
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(api::metrics))
        .route("/api/token", post(api::issue_token))
        .route("/api/titles", get(api::list_titles))
        .route(
            "/api/titles/{id}",
            get(api::get_title)
                .put(api::put_title)
                .delete(api::delete_title),
        )
        .route("/api/probe", get(api::probe))
        .route("/api/nodes", get(api::nodes))
        .route("/api/nodes/{id}/drain", post(api::drain))
        .route("/api/sessions", get(api::sessions))
        .route("/ws", get(client::upgrade))
        .route("/ws/node", get(node::upgrade))
        .layer(DefaultBodyLimit::max(crate::protocol::MAX_MESSAGE_BYTES))
        .with_state(shared)
}
