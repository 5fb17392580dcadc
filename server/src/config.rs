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
        }
    }
}

/// Everything a node needs to run.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    /// WebSocket URL of the signaling service's node endpoint, e.g. `ws://127.0.0.1:8080/ws/node`.
    pub signaling_url: String,
    /// This node's id in the fleet.
    pub node_id: String,
    /// Concurrent sessions to accept.
    pub capacity: u32,
    /// Address to gather ICE host candidates on (`127.0.0.1` for a loopback demo).
    pub rtc_ip: IpAddr,
    /// Video settings.
    pub video: VideoConfig,
}

impl NodeConfig {
    /// A node on loopback with the defaults, talking to `signaling_url`.
    pub fn loopback(signaling_url: impl Into<String>) -> Self {
        Self {
            signaling_url: signaling_url.into(),
            node_id: "local".into(),
            capacity: 2,
            rtc_ip: IpAddr::from([127, 0, 0, 1]),
            video: VideoConfig::default(),
        }
    }
}
