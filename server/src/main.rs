//! `stratus-node`: the streaming node binary.

use std::net::{IpAddr, SocketAddr};

use anyhow::Context;
use clap::Parser;
use server::Node;
use server::config::{NodeConfig, SessionConfig, VideoConfig};
use tracing_subscriber::EnvFilter;

/// Stratus node: renders titles, encodes them, and streams them to players over WebRTC.
#[derive(Debug, Parser)]
#[command(name = "stratus-node", version)]
struct Cli {
    /// Also run a signaling service in this process on this address and connect to it: the
    /// one-command demo. The browser URL is printed at start.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:8080")]
    demo: Option<SocketAddr>,
    /// WebSocket URL of the signaling service's node endpoint (ignored with --demo); give
    /// several, comma-separated, to fail over between replicas.
    #[arg(
        long,
        default_value = "ws://127.0.0.1:8080/ws/node",
        env = "STRATUS_SIGNALING",
        value_delimiter = ','
    )]
    signaling: Vec<String>,
    /// Key to sign this node's signaling token with (the service's `node_key`).
    #[arg(long, env = "STRATUS_NODE_KEY", hide_env_values = true)]
    node_key: Option<String>,
    /// Region the node runs in, e.g. eu-west.
    #[arg(long, default_value = "", env = "STRATUS_REGION")]
    region: String,
    /// ISO 3166-1 alpha-2 country the node runs in.
    #[arg(long, env = "STRATUS_COUNTRY")]
    country: Option<String>,
    /// Latitude of the node's site, for nearest-node assignment.
    #[arg(long, requires = "lon", allow_negative_numbers = true)]
    lat: Option<f64>,
    /// Longitude of the node's site.
    #[arg(long, requires = "lat", allow_negative_numbers = true)]
    lon: Option<f64>,
    /// GPU class reported to signaling (geofence rules and titles name it).
    #[arg(long, default_value = "cpu")]
    gpu_class: String,
    /// Address to serve the RTT probe endpoint (`GET /probe`) on, e.g. 0.0.0.0:8090.
    #[arg(long)]
    probe_listen: Option<SocketAddr>,
    /// URL players reach the probe endpoint at (default: http://<probe-listen>/probe).
    #[arg(long)]
    probe_url: Option<String>,
    /// Public address, reported to the operator view.
    #[arg(long)]
    public_addr: Option<String>,
    /// This node's id in the fleet.
    #[arg(long, default_value = "local", env = "STRATUS_NODE_ID")]
    node_id: String,
    /// Concurrent sessions to accept.
    #[arg(long, default_value_t = 2)]
    capacity: u32,
    /// Address to gather ICE host candidates on.
    #[arg(long, default_value = "127.0.0.1")]
    rtc_ip: IpAddr,
    /// Frame width (multiple of 8).
    #[arg(long, default_value_t = 1280)]
    width: u32,
    /// Frame height (even).
    #[arg(long, default_value_t = 720)]
    height: u32,
    /// Frames per second.
    #[arg(long, default_value_t = 60)]
    fps: u32,
    /// Starting bitrate in kbit/s (congestion control moves it).
    #[arg(long, default_value_t = 4000)]
    bitrate_kbps: u32,
    /// Encoder element to prefer, e.g. x264enc (repeatable).
    #[arg(long = "encoder")]
    encoders: Vec<String>,
    /// Turn region-of-interest encoding off (on by default where the encoder honours it).
    #[arg(long)]
    no_roi: bool,
    /// Quality change inside the region of interest, in QP steps (negative = better).
    #[arg(long, default_value_t = encoder::roi::DEFAULT_QUALITY, allow_negative_numbers = true)]
    roi_quality: i8,
    /// Region edge as a fraction of the frame's shorter side.
    #[arg(long, default_value_t = encoder::roi::DEFAULT_SIZE_FRACTION)]
    roi_size: f32,
    /// Below this congestion estimate (kbit/s) streams step down to half the frame rate, then
    /// half the size, and back up when it recovers (0: never).
    #[arg(long, default_value_t = 1500)]
    ladder_floor_kbps: u32,
    /// Where frames become I420: `gpu` (compute shader), `cpu` (read back, SIMD conversion) or
    /// `auto` (cpu on a CPU Vulkan device such as lavapipe, gpu otherwise).
    #[arg(long, default_value_t = capture::path::CapturePath::Auto)]
    capture_path: capture::path::CapturePath,
    /// Titles installed on this node, by catalog id (comma-separated). `demo` is built in;
    /// others run their catalog manifest's command in a sandbox.
    #[arg(long, default_value = "demo", value_delimiter = ',')]
    titles: Vec<String>,
    /// Where the node keeps session sandboxes and its sound server (a private directory is
    /// made inside).
    #[arg(long, env = "STRATUS_RUNTIME_DIR")]
    runtime_dir: Option<std::path::PathBuf>,
    /// Seconds a title has to show its first frame.
    #[arg(long, default_value_t = 20)]
    first_frame_timeout: u64,
    /// Longest session in seconds (0: no limit).
    #[arg(long, default_value_t = 0)]
    max_session: u64,
    /// Seconds running sessions may go on after SIGTERM before they are ended.
    #[arg(long, default_value_t = 600)]
    drain_timeout: u64,
    /// No sound (no PulseAudio server, no audio track).
    #[arg(long)]
    no_audio: bool,
    /// A running PulseAudio server to put session sinks on instead of starting the node's own
    /// (e.g. `unix:/run/user/1000/pulse/native`); the node starts its own if it does not answer.
    #[arg(long, env = "PULSE_SERVER")]
    pulse_server: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,webrtc=warn,rtc=warn")),
        )
        .init();
    let cli = Cli::parse();
    let video = VideoConfig {
        width: cli.width,
        height: cli.height,
        fps: cli.fps,
        start_kbps: cli.bitrate_kbps,
        prefer_encoders: cli.encoders,
        roi: !cli.no_roi,
        roi_quality: cli.roi_quality,
        roi_size: cli.roi_size,
        ladder_floor_kbps: cli.ladder_floor_kbps,
        capture_path: cli.capture_path,
        ..VideoConfig::default()
    };
    let coords = match (cli.lat, cli.lon) {
        (Some(lat), Some(lon)) => Some(
            signaling::geo::LatLon::new(lat, lon)
                .context("--lat must be within ±90 and --lon within ±180")?,
        ),
        _ => None,
    };
    let mut config = NodeConfig {
        signaling_urls: cli.signaling,
        node_id: cli.node_id,
        capacity: cli.capacity,
        site: signaling::protocol::NodeSite {
            region: cli.region,
            country: cli.country.map(|c| c.to_ascii_uppercase()),
            coords,
        },
        gpu_class: cli.gpu_class,
        titles: cli.titles,
        public_addr: cli.public_addr,
        probe_listen: cli.probe_listen,
        probe_url: cli.probe_url,
        node_key: cli.node_key,
        rtc_ip: cli.rtc_ip,
        video,
        sessions: SessionConfig {
            runtime_root: cli.runtime_dir.unwrap_or_else(std::env::temp_dir),
            first_frame_timeout: std::time::Duration::from_secs(cli.first_frame_timeout.max(1)),
            max_duration: (cli.max_session > 0)
                .then(|| std::time::Duration::from_secs(cli.max_session)),
            audio: !cli.no_audio,
            pulse_server: cli.pulse_server.filter(|a| !a.is_empty()),
            drain_timeout: std::time::Duration::from_secs(cli.drain_timeout),
        },
    };

    // Ctrl-C stops at once; SIGTERM drains (no new sessions, stop when the running ones end).
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stop_tx = std::sync::Arc::new(stop_tx);
    let ctrl_c_stop = stop_tx.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
        let _ = ctrl_c_stop.send(true);
    });
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot handle SIGTERM")?;
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    let embedded = match cli.demo {
        Some(addr) => {
            let service = signaling::service::Service::bind(addr)
                .await
                .context("cannot start the embedded signaling service")?;
            let addr = service.local_addr();
            config.signaling_urls = vec![format!("ws://{addr}/ws/node")];
            println!("\n  Stratus demo: open http://{addr}/ in a browser\n");
            Some(tokio::spawn(service.run(stopped(stop_rx.clone()))))
        }
        None => None,
    };
    tracing::info!(node_id = %config.node_id, signaling = ?config.signaling_urls, "node starting");
    let node = Node::new(config);
    let drainer = node.drainer();
    let term_stop = stop_tx.clone();
    tokio::spawn(async move {
        if sigterm.recv().await.is_some() {
            tracing::info!("SIGTERM: draining (a second SIGTERM stops at once)");
            drainer.drain();
        }
        if sigterm.recv().await.is_some() {
            tracing::info!("second SIGTERM: shutting down");
            let _ = term_stop.send(true);
        }
    });
    node.run(stopped(stop_rx)).await;
    // A finished drain stops the embedded signaling service too.
    let _ = stop_tx.send(true);
    if let Some(service) = embedded {
        service.await.context("signaling task")??;
    }
    Ok(())
}
