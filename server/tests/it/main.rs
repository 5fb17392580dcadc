//! The node agent against real signaling services.

mod audio;
mod sandbox;

use std::time::Duration;

use server::Node;
use server::config::NodeConfig;
use signaling::config::Config;
use signaling::service::{ReplicaState, Service};
use tokio::sync::watch;

/// Waits until `shared` lists (`present`) or stops listing the node `id`.
async fn wait_node(shared: &ReplicaState, id: &str, present: bool, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while shared.local.node_ids().iter().any(|n| n == id) != present {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn stopper() -> (
    watch::Sender<bool>,
    impl Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
) {
    let (stop, rx) = watch::channel(false);
    let make = move || {
        let mut rx = rx.clone();
        Box::pin(async move {
            let _ = rx.wait_for(|s| *s).await;
        }) as std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
    };
    (stop, make)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_retries_until_signaling_comes_up_and_stops_on_shutdown() {
    // A free port with nothing listening yet.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = probe.local_addr().expect("addr");
    drop(probe);

    let (stop, stopped) = stopper();
    let node = tokio::spawn(
        Node::new(NodeConfig::loopback(format!("ws://{addr}/ws/node"))).run(stopped()),
    );
    // Let the node fail a few times against the closed port.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        !node.is_finished(),
        "an unreachable signaling service is not fatal"
    );

    let service = Service::bind(addr).await.expect("the port is free again");
    let shared = service.shared();
    tokio::spawn(service.run(std::future::pending()));
    wait_node(
        &shared,
        "local",
        true,
        "the node did not reconnect within 15 s",
    )
    .await;

    stop.send(true).expect("node listening");
    tokio::time::timeout(Duration::from_secs(10), node)
        .await
        .expect("the node stops within 10 s of shutdown")
        .expect("node task");
    wait_node(
        &shared,
        "local",
        false,
        "signaling still lists the stopped node",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_fails_over_to_the_next_replica_heartbeats_and_reports_itself() {
    let key = "node-key-node-key-node-key-node-key-42";
    let config = Config {
        node_key: Some(key.into()),
        ..Config::default()
    };
    let first = Service::bind_with("127.0.0.1:0".parse().expect("addr"), &config)
        .await
        .expect("bind");
    let second = Service::bind_with("127.0.0.1:0".parse().expect("addr"), &config)
        .await
        .expect("bind");
    let (a, b) = (first.local_addr(), second.local_addr());
    let (shared_a, shared_b) = (first.shared(), second.shared());
    let (stop_a, stopped_a) = stopper();
    let service_a = tokio::spawn(first.run(stopped_a()));
    tokio::spawn(second.run(std::future::pending()));

    let mut config = NodeConfig::loopback(format!("ws://{a}/ws/node"));
    config.signaling_urls.push(format!("ws://{b}/ws/node"));
    config.node_id = "gpu-1".into();
    config.node_key = Some(key.into());
    config.gpu_class = "l4".into();
    config.site.region = "eu-west".into();
    config.probe_listen = Some("127.0.0.1:0".parse().expect("addr"));
    let (stop, stopped) = stopper();
    let node = tokio::spawn(Node::new(config).run(stopped()));
    wait_node(
        &shared_a,
        "gpu-1",
        true,
        "the node did not register with the first replica",
    )
    .await;

    // It heartbeats: still alive after more than the 3 s liveness window.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64;
    let nodes = shared_a.store.nodes(now).await.expect("registry");
    assert_eq!(nodes.len(), 1, "alive after 3.5 s: {nodes:?}");
    let record = &nodes[0];
    assert_eq!(record.gpu_class, "l4");
    assert_eq!(record.site.region, "eu-west");
    let probe = record.probe_url.clone().expect("a probe URL");
    assert!(
        probe.starts_with("http://127.0.0.1:") && probe.ends_with("/probe"),
        "{probe}"
    );

    // The first replica goes away; the node moves to the second.
    stop_a.send(true).expect("replica a running");
    let _ = tokio::time::timeout(Duration::from_secs(10), service_a).await;
    wait_node(
        &shared_b,
        "gpu-1",
        true,
        "the node did not fail over to the second replica",
    )
    .await;

    stop.send(true).expect("node listening");
    tokio::time::timeout(Duration::from_secs(10), node)
        .await
        .expect("the node stops within 10 s of shutdown")
        .expect("node task");
}
