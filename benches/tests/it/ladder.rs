//! Congestion control end to end: a player whose downlink is capped (the impairment relay's
//! bottleneck, as `tc tbf` would) drags the node's GCC estimate and encoder bitrate under the ladder's floor;
//! the session steps down the quality ladder and keeps playing; when the cap is lifted it
//! climbs back.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use benches::impair::link::LinkConfig;
use benches::impair::relay::Relay;
use benches::rtc_peer::{Player, PlayerOptions};
use server::config::NodeConfig;
use server::metrics::SessionMetrics;

/// Polls the session's metrics every 200 ms until `done` holds or `limit` passes; returns
/// whether it held.
async fn wait_until(
    m: &SessionMetrics,
    limit: Duration,
    done: impl Fn(&SessionMetrics) -> bool,
) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if done(m) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    done(m)
}

fn describe(m: &SessionMetrics) -> String {
    format!(
        "bitrate {} kbit/s, rung {}, {:.1} fps",
        m.bitrate_kbps.load(Relaxed),
        m.quality_step.load(Relaxed),
        m.fps_x100.load(Relaxed) as f64 / 100.0
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capped_downlink_steps_the_stream_down_and_it_recovers_when_lifted() {
    let mut config = NodeConfig::loopback("");
    config.video.width = 640;
    config.video.height = 360;
    config.video.fps = 30;
    config.video.start_kbps = 3_000;
    config.video.ladder_floor_kbps = 1_500;
    config.sessions.audio = false;
    let lab = crate::support::start(config).await;

    let relay = Arc::new(Relay::start(1).await.expect("start the relay"));
    let options = PlayerOptions {
        through: Some(relay.clone() as Arc<dyn client::session::MediaRoute>),
        // The player counts packets and decodes nothing, so retransmissions would only take
        // the capped link's capacity from the frames the test counts.
        nack: false,
        ..PlayerOptions::default()
    };
    let player = Player::connect(lab.addr, &options)
        .await
        .expect("a player through the relay");
    player
        .wait_frames(30, Duration::from_secs(30))
        .await
        .expect("frames through the relay");
    let sessions = lab.node_metrics().sessions();
    let (_, m) = sessions
        .iter()
        .find(|(id, _)| id == player.session_id())
        .expect("the node's session");
    eprintln!("uncapped: {}", describe(m));
    assert_eq!(m.quality_step.load(Relaxed), 0, "{}", describe(m));

    // Cap the downlink at 600 kbit/s: the estimate falls under the 1.5 Mbit/s floor.
    relay.set_down(LinkConfig {
        rate_bps: 600_000,
        // As the token bucket this test used before: about 40 kB of queue at the cap.
        queue: std::time::Duration::from_millis(500),
        ..LinkConfig::default()
    });
    let stepped = wait_until(m, Duration::from_secs(40), |m| {
        m.quality_step.load(Relaxed) >= 1
    })
    .await;
    eprintln!(
        "capped: {} ({} packets dropped by the cap)",
        describe(m),
        relay.down_counters().queue_full
    );
    assert!(
        stepped,
        "the session did not step down under a 600 kbit/s cap: {}",
        describe(m)
    );
    assert!(m.bitrate_kbps.load(Relaxed) < 1_500, "{}", describe(m));
    // It keeps playing on the lower rung.
    let before = player.frames();
    let sent_before = m.frames_sent.load(Relaxed);
    let relayed_before = relay.down_counters().sent;
    let packets_before = player.packets();
    tokio::time::sleep(Duration::from_secs(3)).await;
    eprintln!(
        "on the lower rung: {}; node sent {} frames ({} packets reached the relay, {} the player) and the player got {} in 3 s; {} dropped by the cap",
        describe(m),
        m.frames_sent.load(Relaxed) - sent_before,
        relay.down_counters().sent - relayed_before,
        player.packets() - packets_before,
        player.frames() - before,
        relay.down_counters().queue_full
    );
    assert!(
        player.frames() > before + 10,
        "the stepped-down stream stalled: {} → {} frames",
        before,
        player.frames()
    );

    // Lift the cap: the estimate climbs back over 1.5× the floor and the ladder follows.
    relay.set_down(LinkConfig::default());
    let recovered = wait_until(m, Duration::from_secs(60), |m| {
        m.quality_step.load(Relaxed) == 0
    })
    .await;
    eprintln!("lifted: {}", describe(m));
    assert!(
        recovered,
        "the session did not climb back once the cap was lifted: {}",
        describe(m)
    );
    player.close().await;
}
