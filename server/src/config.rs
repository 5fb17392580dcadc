//! Node configuration: what `main` parses and hands to [`crate::Node`].

use std::net::IpAddr;

/// Video settings for every session of this node.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoConfig {
    /// Frame width in pixels (multiple of 8).
    pub width: u32,
    /// Frame height in pixels (even).
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// Bitrate at session start, kbit/s.
    pub start_kbps: u32,
    /// Lowest bitrate congestion control may ask for, kbit/s.
    pub min_kbps: u32,
    /// Highest bitrate congestion control may ask for, kbit/s.
    pub max_kbps: u32,
    /// Encoder element names to try first.
    pub prefer_encoders: Vec<String>,
    /// Region-of-interest encoding around the player's pointer (centre of the frame when there
    /// is none), where the encoder honours it.
    pub roi: bool,
    /// Quality change inside the region, QP steps (negative = better).
    pub roi_quality: i8,
    /// Region edge as a fraction of the frame's shorter side.
    pub roi_size: f32,
    /// Below this congestion estimate (kbit/s) the stream steps down to half the frame rate,
    /// then to half the size (see [`crate::media::ladder`]); 0 turns the ladder off.
    pub ladder_floor_kbps: u32,
    /// Where frames become I420, for the demo title and the capture layer alike.
    pub capture_path: capture::path::CapturePath,
}

impl Default for VideoConfig {
    fn default() -> Self {
        Self {
            width: 1280,
            height: 720,
            fps: 60,
            start_kbps: 4_000,
            min_kbps: 300,
            max_kbps: 12_000,
            prefer_encoders: Vec::new(),
            roi: true,
            roi_quality: encoder::roi::DEFAULT_QUALITY,
            roi_size: encoder::roi::DEFAULT_SIZE_FRACTION,
            ladder_floor_kbps: 1_500,
            capture_path: capture::path::CapturePath::Auto,
        }
    }
}

/// Everything a node needs to run.
#[derive(Clone, PartialEq)]
pub struct NodeConfig {
    /// WebSocket URLs of the signaling replicas' node endpoint, e.g.
    /// `ws://127.0.0.1:8080/ws/node`; the node uses the first that answers and fails over to
    /// the next when it is lost.
    pub signaling_urls: Vec<String>,
    /// This node's id in the fleet.
    pub node_id: String,
    /// Concurrent sessions to accept.
    pub capacity: u32,
    /// Where the node runs (region, country, coordinates), for nearest-node assignment.
    pub site: signaling::protocol::NodeSite,
    /// GPU class reported to signaling (`cpu` for lavapipe).
    pub gpu_class: String,
    /// Titles installed.
    pub titles: Vec<String>,
    /// Public address, reported for the operator.
    pub public_addr: Option<String>,
    /// Address to serve the RTT probe endpoint on (`GET /probe`); none when absent.
    pub probe_listen: Option<std::net::SocketAddr>,
    /// URL clients reach the probe endpoint at (defaults to `http://<probe_listen>/probe`).
    pub probe_url: Option<String>,
    /// Key the node signs its signaling token with (the service's `node_key`).
    pub node_key: Option<String>,
    /// Address to gather ICE host candidates on (`127.0.0.1` for a loopback demo).
    pub rtc_ip: IpAddr,
    /// Video settings.
    pub video: VideoConfig,
    /// Session settings (sandboxes, limits).
    pub sessions: SessionConfig,
}

/// How sessions run titles.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionConfig {
    /// Where session sandboxes, the capture layer's manifest and the sound server live; the
    /// node makes a private directory inside it.
    pub runtime_root: std::path::PathBuf,
    /// How long a title has to show its first frame.
    pub first_frame_timeout: std::time::Duration,
    /// Longest a session may last; none for no limit.
    pub max_duration: Option<std::time::Duration>,
    /// Give sessions sound (a PulseAudio server the node starts, a sink per session).
    pub audio: bool,
    /// A running PulseAudio server to give sessions their sinks on instead of starting the
    /// node's own (a server string such as `unix:/run/user/1000/pulse/native`; `main` reads it
    /// from `--pulse-server` or `PULSE_SERVER`). When it does not answer, the node starts its
    /// own after all. `None`: the node's own private server.
    pub pulse_server: Option<String>,
    /// On SIGTERM, how long running sessions may go on before they are ended.
    pub drain_timeout: std::time::Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            runtime_root: std::env::temp_dir(),
            first_frame_timeout: std::time::Duration::from_secs(20),
            max_duration: None,
            audio: true,
            pulse_server: None,
            drain_timeout: std::time::Duration::from_secs(600),
        }
    }
}

impl std::fmt::Debug for NodeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeConfig")
            .field("signaling_urls", &self.signaling_urls)
            .field("node_id", &self.node_id)
            .field("capacity", &self.capacity)
            .field("site", &self.site)
            .field("gpu_class", &self.gpu_class)
            .field("titles", &self.titles)
            .field("probe_listen", &self.probe_listen)
            .field("node_key", &self.node_key.as_ref().map(|_| "<set>"))
            .field("rtc_ip", &self.rtc_ip)
            .field("video", &self.video)
            .field("sessions", &self.sessions)
            .finish_non_exhaustive()
    }
}

impl NodeConfig {
    /// A node on loopback with the defaults, talking to `signaling_url`.
    pub fn loopback(signaling_url: impl Into<String>) -> Self {
        Self {
            signaling_urls: vec![signaling_url.into()],
            node_id: "local".into(),
            capacity: 2,
            site: signaling::protocol::NodeSite::default(),
            gpu_class: "cpu".into(),
            titles: vec![signaling::catalog::DEMO_TITLE.to_string()],
            public_addr: None,
            probe_listen: None,
            probe_url: None,
            node_key: None,
            rtc_ip: IpAddr::from([127, 0, 0, 1]),
            video: VideoConfig::default(),
            sessions: SessionConfig::default(),
        }
    }
}
