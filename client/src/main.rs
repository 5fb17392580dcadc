//! `stratus-client`: the native thin client. Opens a window, signs in at the signaling
//! service, shows the catalog (or plays `--title` at once), and plays.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use client::app::{ClientOptions, run};
use client::session::SessionOptions;

/// Play a Stratus game.
#[derive(Debug, Parser)]
#[command(name = "stratus-client", version)]
struct Args {
    /// The signaling service: host:port or http://host:port.
    #[arg(long, env = "STRATUS_SIGNALING", default_value = "127.0.0.1:8080")]
    signaling: String,
    /// Play this title at once instead of showing the catalog.
    #[arg(long)]
    title: Option<String>,
    /// A session token from your identity provider (else the client asks the service for a
    /// guest token, which a demo service gives).
    #[arg(long, env = "STRATUS_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Window size, WIDTHxHEIGHT.
    #[arg(long, default_value = "1280x720")]
    size: String,
    /// Start fullscreen (F11 toggles).
    #[arg(long)]
    fullscreen: bool,
    /// Show the stats overlay from the start (F2 toggles).
    #[arg(long)]
    stats: bool,
    /// Use only this H.264 decoder element (nvh264dec, vah264dec, avdec_h264, openh264dec).
    #[arg(long)]
    decoder: Option<String>,
    /// Sound output element (default autoaudiosink; "none" for no sound).
    #[arg(long)]
    audio_sink: Option<String>,
    /// Send pointer positions as they are instead of predicted ones.
    #[arg(long)]
    no_predict: bool,
    /// Record pointer traces into this directory from the start (F9 saves and toggles).
    #[arg(long)]
    record: Option<PathBuf>,
    /// Write a JSON report of the measurements to this file (twice a second and at exit).
    #[arg(long)]
    report: Option<PathBuf>,
    /// Quit after this many seconds.
    #[arg(long)]
    quit_after: Option<f64>,
    /// Each connection step's time limit, seconds.
    #[arg(long, default_value_t = 15.0)]
    step_timeout: f64,
}

fn signaling_addr(s: &str) -> anyhow::Result<SocketAddr> {
    let hostport = s
        .trim_start_matches("http://")
        .trim_start_matches("ws://")
        .trim_end_matches('/');
    hostport
        .to_socket_addrs()
        .with_context(|| format!("--signaling {s:?}: not a host:port"))?
        .next()
        .with_context(|| format!("--signaling {s:?}: the name has no address"))
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,webrtc=warn,rtc=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let signaling = signaling_addr(&args.signaling)?;
    let (w, h) = args
        .size
        .split_once('x')
        .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
        .filter(|&(w, h): &(u32, u32)| w > 0 && h > 0)
        .with_context(|| format!("--size {:?}: expected WIDTHxHEIGHT", args.size))?;
    let mut session = SessionOptions::new(signaling);
    session.title = args.title;
    session.token = args.token;
    session.step_timeout = Duration::from_secs_f64(args.step_timeout.max(0.1));
    if !signaling.ip().is_loopback() {
        session.bind_ip = std::net::IpAddr::from([0, 0, 0, 0]);
    }
    run(ClientOptions {
        session,
        decoder: args.decoder,
        audio_sink: args.audio_sink,
        size: (w, h),
        fullscreen: args.fullscreen,
        stats: args.stats,
        predict: !args.no_predict,
        report: args.report,
        record: args.record,
        quit_after: args.quit_after.map(Duration::from_secs_f64),
    })
}
