//! Both store backends keep the same contract: one conformance function runs against the
//! memory store and against a real `redis-server` that the test starts.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use signaling::catalog::{Launch, Title, TitleManifest};
use signaling::geo::LatLon;
use signaling::protocol::{NodeSite, ServerMsg, SessionStats};
use signaling::store::local_redis::LocalRedis;
use signaling::store::memory::MemoryStore;
use signaling::store::redis::RedisStore;
use signaling::store::{Envelope, NODE_TTL_MS, NodeRecord, SessionRecord, Store, StoreError};

/// Longest wait for anything else (a message, a reconnection).
const WAIT: Duration = Duration::from_secs(10);

/// A virtual "now", far from the real clock, so nothing depends on when the test runs.
const T: u64 = 1_700_000_000_000;

/// A private `redis-server` for one test (the replica tests use the same one).
pub(crate) struct RedisServer;

impl RedisServer {
    /// Starts one on a free port; fails the test with the reason if it cannot.
    pub(crate) async fn start() -> LocalRedis {
        LocalRedis::start().await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts one on `port`.
    pub(crate) async fn start_on(port: u16) -> Result<LocalRedis, String> {
        LocalRedis::start_on(port).await
    }
}

/// A key prefix no other test uses.
fn unique_prefix(name: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "test-{name}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

async fn redis_store(server: &LocalRedis, prefix: &str) -> Arc<RedisStore> {
    let store = tokio::time::timeout(WAIT, RedisStore::connect(&server.url(), prefix))
        .await
        .expect("connect within the wait")
        .expect("connect to the test's redis");
    Arc::new(store)
}

/// A raw connection to the test's server, to plant data the store did not write.
async fn raw(server: &LocalRedis) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(server.url()).expect("valid url");
    tokio::time::timeout(WAIT, client.get_multiplexed_async_connection())
        .await
        .expect("connect within the wait")
        .expect("raw connection")
}

fn node(id: &str, replica: &str, now_ms: u64) -> NodeRecord {
    NodeRecord {
        node_id: id.to_string(),
        site: NodeSite {
            region: "eu-west".into(),
            country: Some("FR".into()),
            coords: Some(LatLon {
                lat: 48.85,
                lon: 2.35,
            }),
        },
        gpu_class: "l4".into(),
        capacity: 4,
        titles: vec!["demo".into(), "space-race".into()],
        public_addr: Some("203.0.113.7:443".into()),
        probe_url: None,
        agent_version: "0.1.0".into(),
        sessions: 0,
        draining: false,
        replica: replica.to_string(),
        last_seen_ms: now_ms,
        registered_ms: now_ms,
    }
}

fn title(id: &str, revision: u64) -> Title {
    Title {
        manifest: TitleManifest {
            id: id.to_string(),
            name: format!("Title {id}"),
            launch: Launch::Image {
                image: format!("registry.example.com/acme/{id}:1"),
            },
            gpu_class: "any".into(),
            inputs: Vec::new(),
            allowed_regions: Vec::new(),
            instrument: false,
        },
        studio: "acme".into(),
        revision,
        published_ms: T,
        updated_ms: T + revision,
    }
}

fn session(id: &str, started_ms: u64) -> SessionRecord {
    SessionRecord {
        session_id: id.to_string(),
        user: "player-1".into(),
        title: "demo".into(),
        node_id: "n1".into(),
        replica: "r1".into(),
        epoch: 1,
        started_ms,
        ended_ms: None,
        duration_ms: None,
        bytes_sent: 0,
        mean_bitrate_kbps: None,
        rtt_ms: None,
        end_reason: None,
    }
}

fn ids(nodes: &[NodeRecord]) -> Vec<&str> {
    nodes.iter().map(|n| n.node_id.as_str()).collect()
}

/// Runs `op` on the store, failing the test if it takes longer than the wait.
async fn bounded<F: Future>(op: F) -> F::Output {
    tokio::time::timeout(WAIT, op)
        .await
        .expect("store operation finished within the wait")
}

/// Awaits a store call within the wait and unwraps its result, naming the call if it fails.
macro_rules! ok {
    ($call:expr) => {
        bounded($call)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", stringify!($call)))
    };
}

/// The contract both backends keep, on virtual time.
async fn contract(store: Arc<dyn Store>) {
    let s = store.as_ref();
    nodes_contract(s).await;
    reservations_contract(s).await;
    nonces_contract(s).await;
    titles_contract(s).await;
    sessions_contract(s).await;
    routing_contract(s).await;
    fleet_contract(s).await;
}

/// `fleet` is `nodes` and `slots_used` read together (Redis does it in one script).
async fn fleet_contract(s: &dyn Store) {
    let t = T + 500_000;
    assert!(ok!(s.register_node(&node("fleet-a", "r1", t), t)));
    assert!(ok!(s.register_node(&node("fleet-b", "r1", t), t)));
    ok!(s.reserve("fleet-b", 4, "f1", 30_000, t)).expect("slot");
    ok!(s.reserve("fleet-b", 4, "f2", 30_000, t)).expect("slot");
    let (nodes, used) = ok!(s.fleet(t + 10));
    let ids: Vec<String> = nodes.iter().map(|n| n.node_id.clone()).collect();
    assert_eq!(ok!(s.slots_used(&ids, t + 10)), used);
    assert_eq!(ok!(s.nodes(t + 10)), nodes);
    let at = |id: &str| used[ids.iter().position(|n| n == id).expect("listed")];
    assert_eq!((at("fleet-a"), at("fleet-b")), (0, 2));
    ok!(s.remove_node("fleet-a", "r1"));
    ok!(s.remove_node("fleet-b", "r1"));
}

async fn nodes_contract(s: &dyn Store) {
    assert!(ok!(s.nodes(T)).is_empty());

    // Registration round-trips the whole record.
    let n1 = node("n1", "r1", T);
    assert!(ok!(s.register_node(&n1, T)));
    assert_eq!(ok!(s.nodes(T)), vec![n1.clone()]);

    // Another replica cannot take a live node; its holder may refresh it.
    let stolen = node("n1", "r2", T + 100);
    assert!(!ok!(s.register_node(&stolen, T + 100)));
    assert!(ok!(s.register_node(&n1, T + 100)));
    assert_eq!(ok!(s.nodes(T + 100))[0].replica, "r1");

    // Heartbeats: only from the holder, only for a known node.
    assert!(!ok!(s.heartbeat("n1", "r2", 1, false, T + 1000)));
    assert!(!ok!(s.heartbeat("ghost", "r1", 1, false, T + 1000)));
    assert!(ok!(s.heartbeat("n1", "r1", 2, false, T + 1000)));
    let listed = ok!(s.nodes(T + 1000));
    assert_eq!((listed[0].sessions, listed[0].last_seen_ms), (2, T + 1000));

    // Listing is sorted by id, whatever the order of registration.
    assert!(ok!(s.register_node(&node("n2", "r1", T), T)));
    assert!(ok!(s.register_node(&node("n0", "r2", T), T)));
    assert_eq!(ids(&ok!(s.nodes(T + 1000))), ["n0", "n1", "n2"]);

    // Liveness: silent for NODE_TTL_MS means dead.
    let last_alive = T + NODE_TTL_MS - 1;
    assert_eq!(ids(&ok!(s.nodes(last_alive))), ["n0", "n1", "n2"]);
    let dead_at = T + NODE_TTL_MS;
    assert_eq!(ids(&ok!(s.nodes(dead_at))), ["n1"]);
    // A dead node's id is free for another replica.
    assert!(ok!(s.register_node(&node("n0", "r1", dead_at), dead_at)));
    let listed = ok!(s.nodes(dead_at));
    assert_eq!(ids(&listed), ["n0", "n1"]);
    assert_eq!(listed[0].replica, "r1");

    // Draining is set by the operator and sticks through heartbeats that do not know of it.
    assert!(ok!(s.set_draining("n1", dead_at)));
    assert!(!ok!(s.set_draining("ghost", dead_at)));
    assert!(ok!(s.heartbeat("n1", "r1", 0, false, dead_at)));
    let listed = ok!(s.nodes(dead_at));
    assert!(listed[1].draining, "drain survives a heartbeat");
    assert!(!listed[0].draining);
    // A node may drain itself.
    assert!(ok!(s.heartbeat("n0", "r1", 0, true, dead_at)));
    assert!(ok!(s.nodes(dead_at))[0].draining);
    // Not a dead one.
    let n1_dead_at = dead_at + NODE_TTL_MS;
    assert!(!ok!(s.set_draining("n0", n1_dead_at)));

    // Removal: only by the holder.
    ok!(s.remove_node("n0", "r2"));
    assert_eq!(ids(&ok!(s.nodes(dead_at))), ["n0", "n1"]);
    ok!(s.remove_node("n0", "r1"));
    assert_eq!(ids(&ok!(s.nodes(dead_at))), ["n1"]);
    assert!(!ok!(s.heartbeat("n0", "r1", 0, false, dead_at)));
    ok!(s.remove_node("n1", "r1"));
    assert!(ok!(s.nodes(dead_at)).is_empty());
}

async fn reservations_contract(s: &dyn Store) {
    const LEASE: u64 = 30_000;
    let node = "gpu-a";
    let used =
        |now: u64| async move { ok!(s.slots_used(&[node.to_string(), "idle".to_string()], now)) };

    // Up to capacity, with strictly increasing epochs; then full.
    let e1 = ok!(s.reserve(node, 3, "s1", LEASE, T)).expect("slot");
    let e2 = ok!(s.reserve(node, 3, "s2", LEASE, T + 10)).expect("slot");
    let e3 = ok!(s.reserve(node, 3, "s3", LEASE, T + 20)).expect("slot");
    assert!(e1 < e2 && e2 < e3, "{e1} {e2} {e3}");
    assert_eq!(ok!(s.reserve(node, 3, "s4", LEASE, T + 30)), None);
    assert_eq!(used(T + 30).await, [3, 0]);
    assert_eq!(ok!(s.reserve("idle", 0, "s0", LEASE, T)), None);
    assert!(ok!(s.slots_used(&[], T)).is_empty());

    // The wrong epoch renews and frees nothing.
    assert!(!ok!(s.renew(node, "s1", e2, LEASE, T + 40)));
    assert!(!ok!(s.renew(node, "nobody", e1, LEASE, T + 40)));
    ok!(s.release(node, "s1", e2));
    assert_eq!(used(T + 40).await, [3, 0]);

    // The right one does.
    assert!(ok!(s.renew(node, "s1", e1, LEASE, T + 1000)));
    ok!(s.release(node, "s2", e2));
    assert_eq!(used(T + 1000).await, [2, 0]);
    let e4 = ok!(s.reserve(node, 3, "s4", LEASE, T + 1000)).expect("slot");
    assert!(e4 > e3);

    // Leases expire: s3's at T + 20 + LEASE (s1 was renewed to T + 1000 + LEASE).
    let s3_expiry = T + 20 + LEASE;
    assert_eq!(used(s3_expiry - 1).await, [3, 0]);
    assert_eq!(used(s3_expiry).await, [2, 0]);
    assert!(!ok!(s.renew(node, "s3", e3, LEASE, s3_expiry)));
    // The freed slot is given again, under a new epoch: the stale holder cannot free it.
    let e5 = ok!(s.reserve(node, 3, "s3", LEASE, s3_expiry)).expect("slot");
    assert!(e5 > e4);
    assert_eq!(ok!(s.reserve(node, 3, "s5", LEASE, s3_expiry)), None);
    ok!(s.release(node, "s3", e3));
    assert!(!ok!(s.renew(node, "s3", e3, LEASE, s3_expiry)));
    assert_eq!(used(s3_expiry).await, [3, 0]);
    assert!(ok!(s.renew(node, "s3", e5, LEASE, s3_expiry)));

    // Everything expires eventually; epochs keep growing.
    let later = s3_expiry + 2 * LEASE;
    assert_eq!(used(later).await, [0, 0]);
    let e6 = ok!(s.reserve(node, 3, "s6", LEASE, later)).expect("slot");
    assert!(e6 > e5);
}

async fn nonces_contract(s: &dyn Store) {
    let (now, exp) = (T / 1000, T / 1000 + 60);
    let (first, second) = ("9f2c4e1a7b3d5f60", "0a1b2c3d4e5f6071");
    assert!(ok!(s.first_use_of_nonce(first, exp, now)));
    assert!(!ok!(s.first_use_of_nonce(first, exp, now + 1)));
    assert!(ok!(s.first_use_of_nonce(second, exp, now + 1)));
}

async fn titles_contract(s: &dyn Store) {
    assert!(ok!(s.titles()).is_empty());
    assert_eq!(ok!(s.title("space-race")), None);
    ok!(s.put_title(&title("space-race", 1)));
    ok!(s.put_title(&title("asteroids", 1)));
    let all = ok!(s.titles());
    assert_eq!(all, [title("asteroids", 1), title("space-race", 1)]);

    ok!(s.put_title(&title("space-race", 2)));
    assert_eq!(ok!(s.title("space-race")), Some(title("space-race", 2)));
    assert!(ok!(s.remove_title("asteroids")));
    assert!(!ok!(s.remove_title("asteroids")));
    assert_eq!(ok!(s.title("asteroids")), None);
    assert_eq!(ok!(s.titles()), [title("space-race", 2)]);
}

async fn sessions_contract(s: &dyn Store) {
    assert!(ok!(s.sessions(10)).is_empty());
    for i in 1..=5 {
        ok!(s.put_session(&session(&format!("s{i}"), T + i)));
    }
    let newest = |records: Vec<SessionRecord>| {
        records
            .into_iter()
            .map(|r| r.session_id)
            .collect::<Vec<_>>()
    };
    assert_eq!(newest(ok!(s.sessions(3))), ["s5", "s4", "s3"]);
    assert!(ok!(s.sessions(0)).is_empty());

    // Replacing a record (it ended) keeps its place.
    let mut ended = session("s2", T + 2);
    ended.bytes_sent = 1_000_000;
    ended.finish(
        T + 10_002,
        "player left",
        Some(&SessionStats {
            bytes_sent: 2_000_000,
            rtt_ms: Some(12.5),
        }),
    );
    ok!(s.put_session(&ended));
    let all = ok!(s.sessions(usize::MAX));
    assert_eq!(newest(all.clone()), ["s5", "s4", "s3", "s2", "s1"]);
    assert_eq!(all[3], ended);

    // At most 10,000 are kept: the oldest go first.
    for i in 6..=10_002 {
        ok!(s.put_session(&session(&format!("s{i}"), T + i)));
    }
    let all = newest(ok!(s.sessions(usize::MAX)));
    assert_eq!(all.len(), 10_000);
    assert_eq!(all.first().map(String::as_str), Some("s10002"));
    assert_eq!(all.last().map(String::as_str), Some("s3"));
}

async fn routing_contract(s: &dyn Store) {
    let mut inbox = ok!(s.subscribe("r-x"));
    let envelopes = [
        Envelope::ToNode {
            node_id: "n1".into(),
            client_replica: Some("r-y".into()),
            msg: ServerMsg::Drain,
        },
        Envelope::SessionEnded {
            session_id: "s1".into(),
            reason: "title exited".into(),
            permanent: true,
            stats: Some(SessionStats {
                bytes_sent: 42,
                rtt_ms: Some(20.5),
            }),
        },
    ];
    for envelope in &envelopes {
        ok!(s.publish("r-x", envelope));
    }
    for envelope in &envelopes {
        let got = tokio::time::timeout(WAIT, inbox.recv())
            .await
            .expect("envelope arrives within the wait")
            .expect("inbox open");
        assert_eq!(&got, envelope);
    }
    let err = bounded(s.publish("r-nobody", &envelopes[0]))
        .await
        .expect_err("nobody listens");
    assert!(
        matches!(&err, StoreError::NoSuchReplica(r) if r == "r-nobody"),
        "{err:?}"
    );
}

/// Two replicas (two handles on the store) race `per_replica` reservations each for a node
/// of capacity 7: exactly 7 win, under distinct epochs.
async fn racing_reservations(replicas: [Arc<dyn Store>; 2], per_replica: usize) {
    const CAPACITY: u32 = 7;
    let mut tasks = Vec::new();
    for (r, store) in replicas.iter().enumerate() {
        for i in 0..per_replica {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .reserve("contended", CAPACITY, &format!("r{r}-s{i}"), 30_000, T)
                    .await
            }));
        }
    }
    let mut epochs = Vec::new();
    for task in tasks {
        let result = ok!(task).expect("reserve");
        epochs.extend(result);
    }
    assert_eq!(epochs.len(), CAPACITY as usize, "epochs: {epochs:?}");
    let distinct: HashSet<_> = epochs.iter().collect();
    assert_eq!(distinct.len(), epochs.len(), "epochs: {epochs:?}");
    for store in &replicas {
        let used = ok!(store.slots_used(&["contended".to_string()], T));
        assert_eq!(used, [CAPACITY]);
    }
}

#[tokio::test]
async fn memory_store_keeps_the_contract() {
    contract(Arc::new(MemoryStore::default())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_store_keeps_the_contract() {
    let server = RedisServer::start().await;
    let store = redis_store(&server, &unique_prefix("contract")).await;
    assert_eq!(store.kind(), "redis");
    contract(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_nodes_expire_in_real_time() {
    let server = RedisServer::start().await;
    let s = redis_store(&server, &unique_prefix("expiry")).await;
    // Virtual time stands still; Redis's key TTL still ends a node whose replica went silent.
    assert!(ok!(s.register_node(&node("n1", "r1", T), T)));
    assert!(ok!(s.register_node(&node("n2", "r1", T), T)));
    tokio::time::sleep(Duration::from_millis(NODE_TTL_MS / 2)).await;
    assert!(ok!(s.heartbeat("n2", "r1", 0, false, T)));
    tokio::time::sleep(Duration::from_millis(NODE_TTL_MS / 2 + 200)).await;
    assert_eq!(ids(&ok!(s.nodes(T))), ["n2"]);
    assert!(!ok!(s.heartbeat("n1", "r1", 0, false, T)));
    // Its id is free for any replica.
    assert!(ok!(s.register_node(&node("n1", "r2", T), T)));
    assert_eq!(ok!(s.nodes(T))[0].replica, "r2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_reservations_never_exceed_capacity() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::default());
    racing_reservations([store.clone(), store], 50).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_reservations_never_exceed_capacity_across_replicas() {
    let server = RedisServer::start().await;
    let prefix = unique_prefix("race");
    let a = redis_store(&server, &prefix).await;
    let b = redis_store(&server, &prefix).await;
    racing_reservations([a, b], 50).await;
}

#[tokio::test]
async fn unreachable_redis_is_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let url = format!("redis://:hunter2@127.0.0.1:{port}/");
    let err = tokio::time::timeout(WAIT, RedisStore::connect(&url, "x"))
        .await
        .expect("gives up within the wait")
        .expect_err("nothing listens there");
    let text = err.to_string();
    assert!(matches!(err, StoreError::Redis(_)), "{err:?}");
    assert!(text.contains("cannot reach redis"), "{text}");
    assert!(text.contains("127.0.0.1"), "{text}");
    assert!(
        !text.contains("hunter2"),
        "the password is not shown: {text}"
    );

    let err = RedisStore::connect("http://127.0.0.1/", "x")
        .await
        .expect_err("not a redis url");
    assert!(err.to_string().contains("invalid redis url"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn corrupt_data_is_an_error_not_a_panic() {
    let server = RedisServer::start().await;
    let prefix = unique_prefix("corrupt");
    let s = redis_store(&server, &prefix).await;
    let mut raw = raw(&server).await;

    // An envelope that does not decode is skipped; the next one arrives.
    let mut inbox = ok!(s.subscribe("r1"));
    let receivers: i64 = redis::cmd("PUBLISH")
        .arg(format!("{prefix}:replica:r1"))
        .arg("{not an envelope")
        .query_async(&mut raw)
        .await
        .expect("publish");
    assert_eq!(receivers, 1);
    let good = Envelope::ToClient {
        session_id: "s1".into(),
        msg: ServerMsg::Drain,
    };
    ok!(s.publish("r1", &good));
    let got = tokio::time::timeout(WAIT, inbox.recv())
        .await
        .expect("within the wait")
        .expect("inbox open");
    assert_eq!(got, good);

    // Stored values that do not decode name what was read.
    let _: () = redis::cmd("HSET")
        .arg(format!("{prefix}:titles"))
        .arg("broken")
        .arg("[1, 2")
        .query_async(&mut raw)
        .await
        .expect("hset");
    let err = bounded(s.titles()).await.expect_err("corrupt title");
    assert!(
        matches!(err, StoreError::Corrupt { what: "title", .. }),
        "{err:?}"
    );
    assert!(matches!(
        bounded(s.title("broken")).await,
        Err(StoreError::Corrupt { .. })
    ));

    assert!(ok!(s.register_node(&node("n1", "r1", T), T)));
    let _: () = redis::cmd("HSET")
        .arg(format!("{prefix}:node:n1"))
        .arg("sessions")
        .arg("lots")
        .query_async(&mut raw)
        .await
        .expect("hset");
    let err = bounded(s.nodes(T)).await.expect_err("corrupt node");
    assert!(err.to_string().contains("lots"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscriptions_survive_a_redis_restart() {
    let server = RedisServer::start().await;
    let port = server.port();
    let s = redis_store(&server, &unique_prefix("restart")).await;
    let mut inbox = ok!(s.subscribe("r1"));
    let envelope = |n: u32| Envelope::ToClient {
        session_id: format!("s{n}"),
        msg: ServerMsg::Drain,
    };
    ok!(s.publish("r1", &envelope(1)));
    let first = tokio::time::timeout(WAIT, inbox.recv())
        .await
        .expect("within the wait");
    assert_eq!(first, Some(envelope(1)));

    drop(server);
    let _server = RedisServer::start_on(port)
        .await
        .expect("restart on the same port");

    // Commands reconnect on their own; the subscription comes back with backoff. Until it
    // does, publishing finds no receiver.
    let deadline = Instant::now() + WAIT;
    loop {
        match s.publish("r1", &envelope(2)).await {
            Ok(()) => break,
            Err(StoreError::NoSuchReplica(_) | StoreError::Redis(_))
                if Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("publishing after the restart: {e}"),
        }
    }
    let second = tokio::time::timeout(WAIT, inbox.recv())
        .await
        .expect("within the wait");
    assert_eq!(second, Some(envelope(2)));
}
