//! Two replicas of the real `stratus-signaling` binary sharing a real Redis: assignment across
//! replicas, negotiation routed between them, no double booking, and failover when one dies.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::support::*;
use signaling::store::local_redis::LocalRedis;

const KEY: &str = "replica-shared-token-key-0123456789abcdef";

/// A `stratus-signaling` process; killed on drop.
struct Replica {
    child: Child,
    addr: SocketAddr,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Replica {
    async fn start(id: &str, redis_url: &str, prefix: &str) -> Replica {
        let dir = std::env::temp_dir().join(format!(
            "stratus-replica-{}-{id}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let config = dir.join("signaling.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:0\"\nreplica_id = \"{id}\"\nstore = \"{redis_url}\"\nredis_prefix = \"{prefix}\"\ntoken_key = \"{KEY}\"\n"
            ),
        )
        .expect("write config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_stratus-signaling"))
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn stratus-signaling");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let addr = tokio::time::timeout(Duration::from_secs(20), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    return rest.split('/').next().map(str::to_string);
                }
            }
            None
        })
        .await
        .expect("replica starts within 20 s")
        .expect("replica prints its address");
        Replica {
            child,
            addr: addr.parse().expect("address"),
            _dir: TempDir(dir),
        }
    }

    async fn kill(mut self) {
        let _ = self.child.kill().await;
    }
}

#[tokio::test]
async fn a_client_on_one_replica_plays_on_a_node_of_the_other() {
    let redis = LocalRedis::start().await.expect("redis-server starts");
    let a = Replica::start("a", &redis.url(), "routing").await;
    let b = Replica::start("b", &redis.url(), "routing").await;

    let mut n = node(b.addr, "n1", 1, json!({})).await;
    // A token from replica B is good on replica A: they share the key and the nonce store.
    let t = token(b.addr).await;
    let mut c = try_connect(a.addr, &format!("/ws?token={t}"), &[])
        .await
        .expect("upgrade on A");
    let welcome = hello(&mut c, json!({})).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    assert_eq!(welcome["node_id"], "n1");
    // The same token is spent on every replica.
    assert_eq!(
        try_connect(b.addr, &format!("/ws?token={t}"), &[])
            .await
            .err(),
        Some(401)
    );

    send(&mut c, json!({"type": "offer", "sdp": "v=0 from A"})).await;
    let start = recv_type(&mut n, "start_session").await;
    assert_eq!(start["sdp"], "v=0 from A");
    let sid = start["session_id"].as_str().expect("sid").to_string();
    send(
        &mut n,
        json!({"type": "answer", "session_id": sid, "sdp": "v=0 from the node on B"}),
    )
    .await;
    assert_eq!(
        recv_type(&mut c, "answer").await["sdp"],
        "v=0 from the node on B"
    );
    send(&mut c, json!({"type": "ice", "candidate": {"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host"}})).await;
    assert_eq!(recv_type(&mut n, "ice").await["session_id"], sid.as_str());
    send(&mut n, json!({"type": "ice", "session_id": sid, "candidate": {"candidate": "candidate:2 1 udp 1 127.0.0.1 10 typ host"}})).await;
    recv_type(&mut c, "ice").await;

    // The node is full for every replica.
    let mut c2 = client(b.addr).await;
    assert_eq!(hello(&mut c2, json!({})).await["code"], "no_node_available");

    // The player leaves on A; the node on B is told.
    drop(c);
    assert_eq!(
        recv_type(&mut n, "end_session").await["session_id"],
        sid.as_str()
    );
    a.kill().await;
    b.kill().await;
}

#[tokio::test]
async fn concurrent_players_on_both_replicas_never_double_book() {
    let redis = LocalRedis::start().await.expect("redis-server starts");
    let a = Replica::start("a", &redis.url(), "booking").await;
    let b = Replica::start("b", &redis.url(), "booking").await;
    let _n = node(a.addr, "small", 3, json!({})).await;
    let mut tasks = Vec::new();
    for i in 0..24 {
        let addr = if i % 2 == 0 { a.addr } else { b.addr };
        tasks.push(tokio::spawn(async move {
            let mut c = client(addr).await;
            let reply = hello(&mut c, json!({})).await;
            (reply, c)
        }));
    }
    let mut welcomed = 0;
    let mut refused = 0;
    let mut keep = Vec::new();
    for t in tasks {
        let (reply, c) = tokio::time::timeout(Duration::from_secs(20), t)
            .await
            .expect("in time")
            .expect("task");
        match reply["type"].as_str() {
            Some("welcome") => welcomed += 1,
            _ => {
                assert_eq!(reply["code"], "no_node_available", "{reply}");
                refused += 1;
            }
        }
        keep.push(c);
    }
    assert_eq!((welcomed, refused), (3, 21));
    a.kill().await;
    b.kill().await;
}

#[tokio::test]
async fn when_a_replica_dies_its_players_reconnect_to_the_other() {
    let redis = LocalRedis::start().await.expect("redis-server starts");
    let a = Replica::start("a", &redis.url(), "failover").await;
    let b = Replica::start("b", &redis.url(), "failover").await;
    let mut n = node(b.addr, "n1", 2, json!({})).await;
    let mut c = client(a.addr).await;
    assert_eq!(hello(&mut c, json!({})).await["type"], "welcome");
    let a_addr = a.addr;
    a.kill().await;
    // The player's socket to A is gone...
    assert!(recv_within(&mut c, Duration::from_secs(5)).await.is_none());
    // ...A is unreachable, and the player's client moves to B and is assigned again.
    assert!(tokio::net::TcpStream::connect(a_addr).await.is_err());
    let mut again = client(b.addr).await;
    let welcome = hello(&mut again, json!({})).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    send(&mut again, json!({"type": "offer", "sdp": "v=0 again"})).await;
    // The node on B still hears from its replica: first the fresh session.
    loop {
        let msg = recv(&mut n).await.expect("node hears");
        if msg["type"] == "start_session" {
            assert_eq!(msg["sdp"], "v=0 again");
            break;
        }
    }
    b.kill().await;
}
