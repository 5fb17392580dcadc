//! Stratus signaling: the front door players and nodes connect to.
//!
//! - [`protocol`]: the JSON messages ([`protocol::ClientMsg`], [`protocol::NodeMsg`],
//!   [`protocol::ServerMsg`]), tagged by `"type"` and versioned in the hello.
//! - [`assign`]: the Sans-IO assignment core — which live node a player lands on (RTT,
//!   distance, load, geofence, title, GPU class); time is an argument.
//! - [`store`]: the shared state behind every replica (registry, slot reservations with
//!   fencing epochs and leases, nonces, catalog, session records, the bus between replicas),
//!   in memory or in Redis.
//! - [`service`]: the HTTP/WebSocket service — client and node connections, routing of offers,
//!   answers and ICE candidates to the replica that holds the peer, the HTTP API — which also
//!   serves the browser client ([`web`]).
//! - [`token`], [`turn`], [`geo`], [`policy`], [`catalog`], [`config`], [`metrics`]: session
//!   tokens, TURN credentials, locations, the geofence, title manifests, the configuration
//!   file, Prometheus text.
//!
//! ```no_run
//! # async fn demo() -> Result<(), signaling::SignalingError> {
//! let service = signaling::service::Service::bind("127.0.0.1:0".parse().unwrap()).await?;
//! println!("open http://{}/", service.local_addr());
//! service.run(std::future::pending()).await
//! # }
//! ```
//!
//! Clients need only the wire types: with `default-features = false` the crate is just
//! [`protocol`], [`catalog`], [`policy`] and [`geo`]'s data types, without the service and its
//! HTTP, Redis and crypto dependencies (feature `service`, on by default).
#![deny(missing_docs)]

#[cfg(feature = "service")]
pub mod assign;
pub mod catalog;
#[cfg(feature = "service")]
pub mod config;
pub mod geo;
#[cfg(feature = "service")]
pub mod metrics;
pub mod policy;
pub mod protocol;
#[cfg(feature = "service")]
pub mod service;
#[cfg(feature = "service")]
pub mod store;
#[cfg(feature = "service")]
pub mod token;
#[cfg(feature = "service")]
pub mod turn;
#[cfg(feature = "service")]
pub mod web;

use std::net::SocketAddr;

/// What can stop the service.
#[derive(Debug, thiserror::Error)]
pub enum SignalingError {
    /// Another process holds the port.
    #[error(
        "cannot listen on {addr}: the address is already in use (is another stratus-signaling \
         running? pick another port with --listen)"
    )]
    AddrInUse {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// Binding failed for another reason.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The configuration is unusable.
    #[error("configuration: {0}")]
    Config(String),
    /// The server loop failed.
    #[error("signaling service on {addr} failed: {source}")]
    Serve {
        /// The address served.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
}
