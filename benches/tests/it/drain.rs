//! An operator stops a node gracefully: SIGTERM drains it (the binary calls the same
//! [`server::Drainer`]). Running sessions play on, new players are sent elsewhere, `/metrics`
//! says so, and the node stops once its last session ends.

use std::time::Duration;

use benches::rtc_peer::{Player, PlayerOptions};
use server::config::NodeConfig;

/// The value of an unlabelled metric in Prometheus text.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The node's `/metrics` page, through the probe URL it registered with.
async fn scrape(lab: &benches::lab::Lab) -> String {
    let nodes = lab.shared().store.nodes(now_ms()).await.expect("nodes");
    let probe = nodes[0]
        .probe_url
        .clone()
        .expect("the node advertises its probe URL");
    let addr: std::net::SocketAddr = probe
        .trim_start_matches("http://")
        .trim_end_matches("/probe")
        .parse()
        .expect("probe address");
    let reply = benches::lab::http_raw(
        addr,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await
    .expect("GET /metrics");
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    reply
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_node_finishes_its_sessions_takes_no_new_ones_and_stops() {
    let mut config = NodeConfig::loopback("");
    config.capacity = 2;
    config.video.width = 320;
    config.video.height = 184;
    config.video.fps = 30;
    config.probe_listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    let lab = crate::support::start(config).await;

    let options = PlayerOptions {
        audio: true,
        ..PlayerOptions::default()
    };
    let player = Player::connect(lab.addr, &options)
        .await
        .expect("first player");
    player
        .wait_frames(30, Duration::from_secs(30))
        .await
        .expect("frames");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while player.audio_packets() < 25 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the demo's sound did not arrive: {} audio packets",
            player.audio_packets()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The session shows on /metrics, with its frame rate published each second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let text = scrape(&lab).await;
    assert_eq!(metric(&text, "stratus_node_sessions"), Some(1.0), "{text}");
    assert_eq!(metric(&text, "stratus_node_draining"), Some(0.0), "{text}");
    let fps_line = text
        .lines()
        .find(|l| l.starts_with("stratus_session_fps{"))
        .unwrap_or_else(|| panic!("no per-session fps: {text}"));
    let fps: f64 = fps_line
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .expect("fps value");
    assert!(fps > 5.0, "{fps_line}");
    assert!(
        text.contains("stratus_session_capture_to_packet_ms{"),
        "{text}"
    );

    // Drain: signaling hears it with the next heartbeat, and new players are refused.
    lab.drain();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let nodes = lab.shared().store.nodes(now_ms()).await.expect("nodes");
        if nodes.iter().all(|n| n.draining) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "signaling does not see the node draining: {nodes:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refused = Player::connect(lab.addr, &PlayerOptions::default()).await;
    let Err(err) = refused else {
        panic!("a draining node took a new session");
    };
    eprintln!("second player: {err:#}");
    assert!(format!("{err:#}").contains("refused"), "{err:#}");
    let text = scrape(&lab).await;
    assert_eq!(metric(&text, "stratus_node_draining"), Some(1.0), "{text}");

    // The running session plays on through the drain.
    let before = player.frames();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        player.frames() > before + 10,
        "the running session stalled while draining ({before} → {})",
        player.frames()
    );
    assert!(
        !lab.node_stopped(),
        "the node stopped with a session running"
    );

    // The player leaves; the node stops by itself.
    player.close().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !lab.node_stopped() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the drained node did not stop after its last session ended"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
