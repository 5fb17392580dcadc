//! No test packet leaves the machine: the suite runs in a network namespace that holds only
//! `lo` (`scripts/test.sh` makes it and says so in `STRATUS_TEST_NETNS`), and the node's ICE
//! candidates in a session are loopback addresses only.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use benches::rtc_peer::{Player, PlayerOptions};
use server::config::NodeConfig;

#[test]
fn the_suite_runs_where_only_loopback_exists() {
    if std::env::var_os("STRATUS_TEST_NETNS").is_none() {
        eprintln!("not run through scripts/test.sh: the network namespace is not checked here");
        return;
    }
    // /proc/self/net is this process's namespace (/sys/class/net is the one sysfs was
    // mounted in).
    let dev = std::fs::read_to_string("/proc/self/net/dev").expect("read /proc/self/net/dev");
    let mut interfaces: Vec<String> = dev
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(|name| name.trim().to_owned())
        .collect();
    interfaces.sort();
    assert_eq!(interfaces, ["lo"], "the test namespace must hold only lo");
}

/// Keeps the node's answer as it passes.
#[derive(Debug, Default)]
struct Answers(Mutex<Vec<String>>);

impl client::session::MediaRoute for Answers {
    fn answer(&self, sdp: &str) -> String {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(sdp.to_owned());
        sdp.to_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nodes_candidates_are_loopback_only() {
    let mut config = NodeConfig::loopback("");
    config.video.width = 320;
    config.video.height = 240;
    config.video.fps = 30;
    config.sessions.audio = false;
    let lab = crate::support::start(config).await;
    let answers = Arc::new(Answers::default());
    let mut options = client::session::SessionOptions::new(lab.addr);
    options.title = Some("pattern".into());
    options.audio = false;
    options.route = Some(answers.clone());
    struct Nothing;
    impl client::session::MediaSink for Nothing {
        fn video(&self, _: client::depacketize::AccessUnit, _: std::time::Instant) -> bool {
            false
        }
        fn audio(&self, _: &[u8]) {}
    }
    let session = client::session::Session::connect(
        &options,
        Arc::new(Nothing),
        Arc::new(client::session::SessionCounters::default()),
        &|_| {},
    )
    .await
    .expect("a session");
    let sdp = answers.0.lock().expect("answers").join("\n");
    let candidates: Vec<&str> = sdp
        .lines()
        .filter(|l| l.starts_with("a=candidate:"))
        .collect();
    assert!(!candidates.is_empty(), "the answer has candidates: {sdp}");
    for c in &candidates {
        // foundation component transport priority address port typ …
        let address = c.split_whitespace().nth(4).unwrap_or_default();
        assert!(
            address == "127.0.0.1" || address == "::1",
            "a candidate off loopback: {c}"
        );
        assert!(!address.ends_with(".local"), "an mDNS candidate: {c}");
    }
    session.close().await;
    // A plain player on the same node plays too (it uses the same session).
    let player = Player::connect(lab.addr, &PlayerOptions::default())
        .await
        .expect("a player");
    player
        .wait_frames(10, Duration::from_secs(20))
        .await
        .expect("frames");
    player.close().await;
}
