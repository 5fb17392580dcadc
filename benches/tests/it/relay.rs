//! TURN: signaling mints TURN REST credentials for a real coturn on loopback, the page forces
//! relay-only ICE, and the stream still plays — through the relay.

use std::process::Stdio;
use std::time::Duration;

use benches::chromium::{Chromium, LaunchOptions};
use benches::e2e::INBOUND_VIDEO;
use server::config::NodeConfig;
use signaling::config::{Config, TurnSection};

const SECRET: &str = "coturn-shared-secret-for-tests";

/// A coturn process on loopback; killed on drop.
struct Coturn {
    child: tokio::process::Child,
    port: u16,
}

fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free UDP port")
}

impl Coturn {
    async fn start() -> Coturn {
        let binary = "/usr/bin/turnserver";
        assert!(
            std::path::Path::new(binary).exists(),
            "coturn is not installed; run scripts/setup.sh"
        );
        let port = free_port();
        let min_port = 40_000 + (port % 1000) * 10;
        let child = tokio::process::Command::new(binary)
            .args([
                "-n",
                "--listening-ip=127.0.0.1",
                "--relay-ip=127.0.0.1",
                &format!("--listening-port={port}"),
                &format!("--min-port={min_port}"),
                &format!("--max-port={}", min_port + 9),
                "--use-auth-secret",
                &format!("--static-auth-secret={SECRET}"),
                "--realm=stratus.test",
                "--allow-loopback-peers",
                "--no-cli",
                "--no-tls",
                "--no-dtls",
                "--fingerprint",
                "--log-file=stdout",
                "--simple-log",
                "--pidfile=/dev/null",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start turnserver");
        // coturn is ready when it answers on its port; give it a moment to bind.
        tokio::time::sleep(Duration::from_millis(500)).await;
        Coturn { child, port }
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_flows_through_coturn_with_relay_only_ice() {
    let coturn = Coturn::start().await;
    let signaling = Config {
        turn: Some(TurnSection {
            urls: vec![format!("turn:127.0.0.1:{}?transport=udp", coturn.port)],
            secret: SECRET.into(),
            ttl_s: 600,
        }),
        ..Config::default()
    };
    let mut config = NodeConfig::loopback("");
    config.video.fps = 30;
    config.video.width = 640;
    config.video.height = 360;
    let stack = crate::support::start_with(config, &signaling).await;
    let url = format!("{}?relay=1", stack.page_url());
    let mut browser = Chromium::launch(&url, &LaunchOptions::default())
        .await
        .expect("launch headless chromium");
    browser
        .wait_for(
            &format!("({INBOUND_VIDEO}).then(s => s && s.framesDecoded >= 60)"),
            Duration::from_secs(40),
            "60 frames decoded over the relay",
        )
        .await
        .expect("frames over the relay");
    // The nominated pair's local candidate is a relay candidate from our coturn.
    let pair = browser
        .eval(
            "window.stratus.pc.getStats().then(r => { let out = null; r.forEach(s => { \
               if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') { \
                 const l = r.get(s.localCandidateId); \
                 out = { type: l.candidateType, url: l.url || null, relayProtocol: l.relayProtocol || null, bytes: s.bytesReceived }; \
               } }); return out; })",
        )
        .await
        .expect("stats");
    assert_eq!(pair["type"], "relay", "selected pair: {pair}");
    assert!(pair["bytes"].as_f64().unwrap_or(0.0) > 10_000.0, "{pair}");
    eprintln!("relayed: {pair}");
}
