//! The node agent against a real signaling service.

use std::time::Duration;

use server::Node;
use server::config::NodeConfig;
use signaling::service::Service;
use tokio::sync::watch;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_retries_until_signaling_comes_up_and_stops_on_shutdown() {
    // A free port with nothing listening yet.
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = probe.local_addr().expect("addr");
    drop(probe);

    let (stop, mut stop_rx) = watch::channel(false);
    let node = tokio::spawn(
        Node::new(NodeConfig::loopback(format!("ws://{addr}/ws/node"))).run(async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        }),
    );
    // Let the node fail a few times against the closed port.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        !node.is_finished(),
        "an unreachable signaling service is not fatal"
    );

    let service = Service::bind(addr).await.expect("the port is free again");
    let hub = service.hub();
    tokio::spawn(service.run(std::future::pending()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while hub.nodes().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the node did not reconnect within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(hub.nodes()[0].node_id, "local");

    stop.send(true).expect("node listening");
    tokio::time::timeout(Duration::from_secs(10), node)
        .await
        .expect("the node stops within 10 s of shutdown")
        .expect("node task");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !hub.nodes().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "signaling still lists the stopped node"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
