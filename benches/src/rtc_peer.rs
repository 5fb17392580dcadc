//! A headless player: the client's own session ([`client::session::Session`]) with a sink that
//! counts instead of decoding — video RTP packets, bytes and frames (one frame per new RTP
//! timestamp), per second too — so benchmarks can run several players next to a node without
//! taking its cores the way Chromium would. The options tests need: sound on or off, NACK on
//! or off, and a relay ([`crate::impair::relay::Relay`]) for the media.
//!
//! ```no_run
//! # async fn demo(addr: std::net::SocketAddr) -> anyhow::Result<()> {
//! use benches::rtc_peer::{Player, PlayerOptions};
//! let player = Player::connect(addr, &PlayerOptions::default()).await?;
//! player.wait_frames(60, std::time::Duration::from_secs(10)).await?;
//! println!("{} frames, {} bytes", player.frames(), player.bytes());
//! player.close().await;
//! # Ok(())
//! # }
//! ```

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use client::depacketize::AccessUnit;
use client::session::{
    ConnectError, MediaRoute, MediaSink, Session, SessionCounters, SessionOptions,
};
use webrtc::peer_connection::RTCPeerConnectionState;

/// How a [`Player`] connects.
#[derive(Debug, Clone)]
pub struct PlayerOptions {
    /// The title to ask for (`hello.title`); the catalog's default when `None`.
    pub title: Option<String>,
    /// Also receive the sound (a recvonly Opus transceiver, as the page has).
    pub audio: bool,
    /// Address the player's ICE host candidates are gathered on.
    pub bind_ip: IpAddr,
    /// Bound on each step: the token, the welcome, the answer, and reaching `connected`.
    pub step_timeout: Duration,
    /// Send all media through this relay (the node's candidates are redirected to it and the
    /// player's own are not sent, so the node only sees the relay).
    pub through: Option<Arc<dyn MediaRoute>>,
    /// Ask for lost packets again (NACK, the client session's bounded requests).
    pub nack: bool,
}

impl Default for PlayerOptions {
    fn default() -> Self {
        Self {
            title: None,
            audio: false,
            bind_ip: IpAddr::from([127, 0, 0, 1]),
            step_timeout: Duration::from_secs(20),
            through: None,
            nack: true,
        }
    }
}

/// Counts frames as their packets arrive.
#[derive(Debug, Default)]
struct FrameCounter {
    frames: AtomicU64,
    /// Video frames per second, indexed by whole seconds since the first video packet, and
    /// the newest RTP timestamp seen.
    per_second: Mutex<PerSecond>,
}

#[derive(Debug, Default)]
struct PerSecond {
    since: Option<Instant>,
    frames: Vec<u64>,
    last_ts: Option<u32>,
}

impl FrameCounter {
    /// One video packet with RTP timestamp `ts`: all packets of an access unit share its
    /// timestamp and a newer one starts the next frame; older ones (reordered, retransmitted)
    /// belong to frames already counted.
    fn packet(&self, ts: u32, now: Instant) {
        let mut s = self.per_second.lock().unwrap_or_else(|p| p.into_inner());
        if s.last_ts
            .is_some_and(|last| (ts.wrapping_sub(last) as i32) <= 0)
        {
            return;
        }
        s.last_ts = Some(ts);
        self.frames.fetch_add(1, Ordering::Relaxed);
        let since = *s.since.get_or_insert(now);
        let i = now.duration_since(since).as_secs() as usize;
        if s.frames.len() <= i {
            s.frames.resize(i + 1, 0);
        }
        s.frames[i] += 1;
    }
}

impl MediaSink for FrameCounter {
    fn video(&self, _unit: AccessUnit, _arrived: Instant) -> bool {
        false
    }

    fn audio(&self, _payload: &[u8]) {}

    fn rtp(&self, video: bool, header: &rtc::rtp::Header, _len: usize, arrived: Instant) {
        if video {
            self.packet(header.timestamp, arrived);
        }
    }
}

/// A connected headless player; closes its session on [`Player::close`] (or, less politely,
/// on drop).
#[derive(Debug)]
pub struct Player {
    session: Session,
    counter: Arc<FrameCounter>,
}

impl Player {
    /// Signs in at the signaling service on `addr`, asks for a session and negotiates it;
    /// returns once the peer connection is `connected`. Every step is bounded by
    /// `options.step_timeout`.
    pub async fn connect(addr: SocketAddr, options: &PlayerOptions) -> anyhow::Result<Player> {
        let mut session = SessionOptions::new(addr);
        session.title = options.title.clone();
        session.bind_ip = options.bind_ip;
        session.step_timeout = options.step_timeout;
        session.audio = options.audio;
        session.nack = options.nack;
        // It does not decode, so it never needs a keyframe; a lost packet is only counted.
        session.keyframe_requests = false;
        session.route = options.through.clone();
        let counter = Arc::new(FrameCounter::default());
        let sink: Arc<dyn MediaSink> = counter.clone();
        let counters = Arc::new(SessionCounters::default());
        let session = Session::connect(&session, sink, counters, &|_| {})
            .await
            .map_err(|e| match e {
                ConnectError::NoNode(_)
                | ConnectError::Refused(_)
                | ConnectError::AuthRefused(_) => {
                    anyhow::anyhow!("signaling refused the session: {e}")
                }
                e => anyhow::anyhow!("{e}"),
            })?;
        tracing::debug!(
            session_id = session.session_id(),
            node_id = session.node_id(),
            "player connected"
        );
        Ok(Player { session, counter })
    }

    /// Waits until at least `frames` video frames have arrived in all.
    pub async fn wait_frames(&self, frames: u64, limit: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + limit;
        while self.frames() < frames {
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "session {}: {} of {frames} frames within {limit:?} (state {}){}",
                    self.session_id(),
                    self.frames(),
                    self.state(),
                    self.ended()
                        .map(|r| format!("; the session ended: {r}"))
                        .unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Video frames received (distinct RTP timestamps).
    pub fn frames(&self) -> u64 {
        self.counter.frames.load(Ordering::Relaxed)
    }

    /// Video RTP payload bytes received.
    pub fn bytes(&self) -> u64 {
        self.session.counters().video_bytes.load(Ordering::Relaxed)
    }

    /// Video RTP packets received.
    pub fn packets(&self) -> u64 {
        self.session
            .counters()
            .video_packets
            .load(Ordering::Relaxed)
    }

    /// Audio RTP packets received (0 unless [`PlayerOptions::audio`]).
    pub fn audio_packets(&self) -> u64 {
        self.session
            .counters()
            .audio_packets
            .load(Ordering::Relaxed)
    }

    /// Video frames received in each whole second since the first video packet.
    pub fn frames_per_second(&self) -> Vec<u64> {
        self.counter
            .per_second
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .frames
            .clone()
    }

    /// True while the peer connection is `connected`.
    pub fn connected(&self) -> bool {
        self.state() == RTCPeerConnectionState::Connected
    }

    /// The peer connection's state.
    pub fn state(&self) -> RTCPeerConnectionState {
        self.session.state()
    }

    /// When the peer connection reached `connected`.
    pub fn connected_at(&self) -> Instant {
        self.session.connected_at()
    }

    /// The session signaling assigned.
    pub fn session_id(&self) -> &str {
        self.session.session_id()
    }

    /// The node serving it.
    pub fn node_id(&self) -> &str {
        self.session.node_id()
    }

    /// Why the session ended, if it has.
    pub fn ended(&self) -> Option<String> {
        self.session.ended()
    }

    /// Says `bye` to signaling and closes the peer connection; bounded to a few seconds.
    pub async fn close(self) {
        self.session.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::Lab;
    use server::config::NodeConfig;

    #[test]
    fn frames_are_bucketed_by_second() {
        let c = FrameCounter::default();
        let t0 = Instant::now();
        c.packet(1000, t0);
        c.packet(1000, t0); // a second packet of the same frame
        c.packet(4000, t0 + Duration::from_millis(500));
        c.packet(2000, t0 + Duration::from_millis(600)); // late: an older frame
        c.packet(7000, t0 + Duration::from_millis(2100));
        assert_eq!(c.frames.load(Ordering::Relaxed), 3);
        assert_eq!(c.per_second.lock().expect("lock").frames, vec![2, 0, 1]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_player_connects_and_receives_frames() {
        let mut config = NodeConfig::loopback("");
        config.video.width = 320;
        config.video.height = 240;
        config.video.fps = 30;
        config.sessions.audio = false;
        let lab = Lab::start(config).await.expect("start the lab");
        let player = Player::connect(
            lab.addr,
            &PlayerOptions {
                title: Some("demo".into()),
                ..PlayerOptions::default()
            },
        )
        .await
        .expect("the player connects");
        assert!(player.connected());
        player
            .wait_frames(60, Duration::from_secs(20))
            .await
            .expect("60 frames");
        assert!(player.bytes() > 0 && player.packets() >= 60, "{player:?}");
        // The node counts the same session.
        let sessions = lab.node_metrics().sessions();
        assert!(
            sessions.iter().any(|(id, _)| id == player.session_id()),
            "node sessions {:?}, player session {}",
            sessions.iter().map(|(id, _)| id).collect::<Vec<_>>(),
            player.session_id()
        );
        eprintln!(
            "{} frames, {} packets, {} bytes; per second {:?}",
            player.frames(),
            player.packets(),
            player.bytes(),
            player.frames_per_second()
        );
        tokio::time::timeout(Duration::from_secs(10), player.close())
            .await
            .expect("close within 10 s");
        drop(lab);
    }
}
