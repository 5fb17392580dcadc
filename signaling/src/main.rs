//! `stratus-signaling`: the signaling service binary.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use signaling::config::{Config, DEFAULT_LISTEN};
use tracing_subscriber::EnvFilter;

/// Stratus signaling service: assigns players to nodes, relays their negotiation, keeps the
/// catalog, and serves the browser client.
#[derive(Debug, Parser)]
#[command(name = "stratus-signaling", version)]
struct Cli {
    /// Configuration file (TOML; see the README's signaling section). Without one the embedded
    /// defaults apply: in-memory store, open token endpoint, no TURN.
    #[arg(long, env = "STRATUS_SIGNALING_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on (overrides the file).
    #[arg(long, env = "STRATUS_LISTEN")]
    listen: Option<SocketAddr>,
    /// `memory` or a `redis://` URL (overrides the file).
    #[arg(long, env = "STRATUS_STORE")]
    store: Option<String>,
    /// This replica's id (overrides the file).
    #[arg(long, env = "STRATUS_REPLICA_ID")]
    replica_id: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let mut config = match &cli.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if cli.store.is_some() {
        config.store = cli.store;
    }
    if cli.replica_id.is_some() {
        config.replica_id = cli.replica_id;
    }
    let listen = cli
        .listen
        .or(config.listen)
        .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("the default address parses"));
    let service = signaling::service::Service::bind_with(listen, &config).await?;
    let shared = service.shared();
    println!(
        "stratus-signaling: replica {} listening on http://{}/ (store: {})",
        shared.replica,
        service.local_addr(),
        shared.store.kind()
    );
    service
        .run(async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutting down");
        })
        .await
        .context("signaling service stopped")
}
