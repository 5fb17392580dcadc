//! A private `redis-server` on a free loopback port, for tests, benchmarks and trying the
//! replicated setup on one machine. Production points `store` at an operator's Redis.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Debian's server (`apt-get install redis-server`).
pub const REDIS_SERVER: &str = "/usr/bin/redis-server";

/// Longest wait for a started server to answer `PING`.
const STARTUP: Duration = Duration::from_secs(10);

/// A `redis-server` process without persistence; killed when dropped.
#[derive(Debug)]
pub struct LocalRedis {
    child: Child,
    port: u16,
}

/// Why a local Redis could not start.
#[derive(Debug, thiserror::Error)]
pub enum LocalRedisError {
    /// The binary is not installed.
    #[error(
        "{REDIS_SERVER} is missing; install it with `apt-get install redis-server` (scripts/setup.sh does)"
    )]
    Missing,
    /// It did not come up.
    #[error("redis-server did not start: {0}")]
    Start(String),
}

impl LocalRedis {
    /// Starts a server on a free port (trying another if the first was taken meanwhile).
    pub async fn start() -> Result<Self, LocalRedisError> {
        if !Path::new(REDIS_SERVER).exists() {
            return Err(LocalRedisError::Missing);
        }
        let mut last_failure = String::new();
        for _ in 0..3 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .map_err(|e| LocalRedisError::Start(format!("no free port: {e}")))?;
            match Self::start_on(port).await {
                Ok(server) => return Ok(server),
                Err(why) => last_failure = why,
            }
        }
        Err(LocalRedisError::Start(last_failure))
    }

    /// Starts a server on `port` (e.g. to restart one in place), or says why it did not
    /// come up.
    pub async fn start_on(port: u16) -> Result<Self, String> {
        if !Path::new(REDIS_SERVER).exists() {
            return Err(LocalRedisError::Missing.to_string());
        }
        let child = Command::new(REDIS_SERVER)
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run {REDIS_SERVER}: {e}"))?;
        // The guard owns the child from here on, so a failed start still kills it.
        let mut server = LocalRedis { child, port };
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!("redis-server on port {port} exited: {status}"));
            }
            if ping(port).await {
                return Ok(server);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "redis-server on port {port} did not answer PING within {STARTUP:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The URL to connect to it.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for LocalRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether a server on `port` answers `PING` within a second.
async fn ping(port: u16) -> bool {
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        s.write_all(b"PING\r\n").await?;
        let mut reply = [0u8; 7];
        s.read_exact(&mut reply).await?;
        Ok::<_, std::io::Error>(&reply == b"+PONG\r\n")
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), attempt).await,
        Ok(Ok(true))
    )
}
