//! `stratus-signaling`: the signaling service binary.

use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;

/// Stratus signaling service: pairs players with nodes and serves the browser client.
#[derive(Debug, Parser)]
#[command(name = "stratus-signaling", version)]
struct Cli {
    /// Address to listen on for HTTP and WebSocket connections.
    #[arg(long, default_value = "127.0.0.1:8080", env = "STRATUS_LISTEN")]
    listen: SocketAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    let service = signaling::service::Service::bind(cli.listen).await?;
    println!(
        "stratus-signaling: listening on http://{}/",
        service.local_addr()
    );
    service
        .run(async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutting down");
        })
        .await
        .context("signaling service stopped")
}
