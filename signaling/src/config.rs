//! The service's configuration: a TOML file, with the embedded defaults when there is none.
//!
//! ```toml
//! # stratus-signaling.toml
//! listen = "0.0.0.0:8080"
//! replica_id = "sig-a"                  # default: random
//! store = "redis://127.0.0.1:6379/"     # default: "memory"
//! token_key = "…at least 32 characters, shared by all replicas…"
//! issuer_key = "…"                      # protects POST /api/token (put your IdP in front)
//! node_key = "…"                        # nodes sign their own tokens with it
//! operator_key = "…"                    # protects the operator API
//! allowed_origins = ["https://play.example.com"]
//! trusted_proxies = ["10.0.0.0/8"]
//! geoip_db = "/etc/stratus/geoip.csv"
//!
//! [turn]
//! urls = ["turn:turn.example.com:3478?transport=udp"]
//! secret = "…coturn static-auth-secret…"
//! ttl_s = 3600
//!
//! [limits]
//! messages_per_s = 50
//! burst = 200
//!
//! [[studio]]
//! name = "acme"
//! key = "…"
//!
//! [[rule]]                              # geofence, see `policy`
//! gpu_class = "h100"
//! deny = ["IR", "KP", "SY", "CU"]
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::policy::GeofenceRule;

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Per-connection message rate limits.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Sustained messages per second.
    #[serde(default = "default_rate")]
    pub messages_per_s: f64,
    /// Burst allowance.
    #[serde(default = "default_burst")]
    pub burst: f64,
}

fn default_rate() -> f64 {
    50.0
}

fn default_burst() -> f64 {
    200.0
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            messages_per_s: default_rate(),
            burst: default_burst(),
        }
    }
}

/// TURN relay settings (coturn with `use-auth-secret`).
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TurnSection {
    /// `turn:` URLs handed to peers.
    pub urls: Vec<String>,
    /// coturn's `static-auth-secret`.
    pub secret: String,
    /// Credential lifetime in seconds (at most 3600).
    #[serde(default = "default_turn_ttl")]
    pub ttl_s: u64,
}

impl std::fmt::Debug for TurnSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnSection")
            .field("urls", &self.urls)
            .field("ttl_s", &self.ttl_s)
            .finish_non_exhaustive()
    }
}

fn default_turn_ttl() -> u64 {
    3600
}

/// A studio allowed to publish titles.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Studio {
    /// Its name; it owns the titles it publishes.
    pub name: String,
    /// Its API key (`Authorization: Bearer …`).
    pub key: String,
}

impl std::fmt::Debug for Studio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Studio")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Everything the service can be told.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub listen: Option<SocketAddr>,
    /// This replica's id (random when absent).
    pub replica_id: Option<String>,
    /// `memory` or a `redis://` URL.
    pub store: Option<String>,
    /// Key prefix in Redis.
    pub redis_prefix: Option<String>,
    /// HMAC key for client tokens (≥ 32 characters); random per process when absent, so
    /// replicas sharing a store must set it.
    pub token_key: Option<String>,
    /// Key guarding `POST /api/token`; when absent anyone may ask for a token (the demo).
    pub issuer_key: Option<String>,
    /// Key nodes sign their tokens with; when absent nodes connect unauthenticated.
    pub node_key: Option<String>,
    /// Key guarding the operator API; when absent it is open (loopback demo).
    pub operator_key: Option<String>,
    /// `Origin`s allowed to open a client WebSocket, besides the service's own.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Proxies whose `X-Forwarded-For` and `X-Client-*` headers are believed.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// GeoIP database (CSV, see `geo`).
    pub geoip_db: Option<PathBuf>,
    /// TURN relay.
    pub turn: Option<TurnSection>,
    /// Message rate limits.
    #[serde(default)]
    pub limits: Limits,
    /// Studios.
    #[serde(default, rename = "studio")]
    pub studios: Vec<Studio>,
    /// Geofence rules.
    #[serde(default, rename = "rule")]
    pub rules: Vec<GeofenceRule>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys stay out of logs.
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("replica_id", &self.replica_id)
            .field("store", &self.store)
            .field("token_key", &self.token_key.as_ref().map(|_| "<set>"))
            .field("issuer_key", &self.issuer_key.as_ref().map(|_| "<set>"))
            .field("node_key", &self.node_key.as_ref().map(|_| "<set>"))
            .field("operator_key", &self.operator_key.as_ref().map(|_| "<set>"))
            .field("allowed_origins", &self.allowed_origins)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("geoip_db", &self.geoip_db)
            .field("turn", &self.turn)
            .field("limits", &self.limits)
            .field("studios", &self.studios)
            .field("rules", &self.rules.len())
            .finish()
    }
}

/// The configuration file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Reading failed.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The TOML is invalid.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line.
        message: String,
    },
}

impl Config {
    /// Parses TOML text; `path` names it in errors.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Reads a TOML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_parses() {
        let doc = include_str!("config.rs");
        let example: String = doc
            .lines()
            .skip_while(|l| !l.starts_with("//! ```toml"))
            .skip(1)
            .take_while(|l| !l.starts_with("//! ```"))
            .map(|l| l.trim_start_matches("//!").trim_start_matches(' '))
            .collect::<Vec<_>>()
            .join("\n");
        let c = Config::from_toml(&example, Path::new("example.toml")).expect("example parses");
        assert_eq!(c.store.as_deref(), Some("redis://127.0.0.1:6379/"));
        assert_eq!(c.studios.len(), 1);
        assert_eq!(c.rules.len(), 1);
        assert_eq!(c.turn.as_ref().map(|t| t.ttl_s), Some(3600));
        assert!(!format!("{c:?}").contains("coturn static-auth-secret"));
    }

    #[test]
    fn unknown_keys_are_refused_with_the_line() {
        let err = Config::from_toml(
            "listen = \"127.0.0.1:1\"\nlsiten = 3\n",
            Path::new("x.toml"),
        )
        .expect_err("typo");
        assert!(err.to_string().contains("lsiten"), "{err}");
    }
}
