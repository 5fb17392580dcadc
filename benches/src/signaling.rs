//! `stratus-bench signaling`: assignment throughput and latency through the whole front door
//! (token-authenticated WebSocket upgrade, `hello`, assignment reply), with the in-memory
//! store and with a real Redis, and the memory of 10,000 idle client WebSockets.
//!
//! The service runs in a child process (this binary re-executed with a hidden subcommand) so
//! its resident memory is its own; the load generator is this process. Fleet: `NODES`
//! protocol-level node agents with ample capacity that heartbeat and read what they are sent.
//! Each assignment is a fresh connection with a fresh token, closed after the welcome (which
//! releases the slot, so the fleet never fills).

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use signaling::token::{AUD_CLIENT, TokenKey};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;

use crate::stats::{Report, percentile};

/// Hidden subcommand the bench re-executes itself with to run the service.
pub const SERVE_SUBCOMMAND: &str = "__serve-signaling";

/// Token key shared by the bench and its service.
const BENCH_KEY: &str = "stratus-bench-signaling-key-0123456789abcdef";

/// Protocol-level nodes in the fleet.
const NODES: usize = 8;

/// Options of the signaling bench.
#[derive(Debug, Clone)]
pub struct SignalingArgs {
    /// Seconds to run each assignment phase.
    pub seconds: f64,
    /// Concurrent clients.
    pub concurrency: usize,
    /// Idle WebSockets to hold for the memory figure.
    pub idle: usize,
    /// Skip the Redis phase (when no `redis-server` is installed).
    pub skip_redis: bool,
}

/// Runs the service in this process until stdin closes: the child side of the bench.
pub fn serve(store: &str) -> anyhow::Result<()> {
    // Exit when the parent closes our stdin (or dies without killing us).
    std::thread::spawn(|| {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        std::process::exit(0);
    });
    let rt = tokio::runtime::Runtime::new().context("runtime")?;
    rt.block_on(async {
        let config = signaling::config::Config {
            store: Some(store.to_string()),
            redis_prefix: Some(format!("bench{:08x}", rand_u32())),
            token_key: Some(BENCH_KEY.to_string()),
            // The load generator is one peer address sending thousands of messages a second
            // over many connections; per-connection limits still apply.
            ..signaling::config::Config::default()
        };
        let service =
            signaling::service::Service::bind_with(SocketAddr::from(([127, 0, 0, 1], 0)), &config)
                .await?;
        println!("listening {}", service.local_addr());
        service.run(std::future::pending()).await?;
        Ok(())
    })
}

fn rand_u32() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
}

/// A service child process.
struct ServiceProcess {
    child: Child,
    addr: SocketAddr,
}

impl ServiceProcess {
    async fn start(store: &str) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("own executable")?;
        let mut child = Command::new(exe)
            .arg(SERVE_SUBCOMMAND)
            .arg(store)
            .env("RUST_LOG", "error")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("start the service process")?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .context("the service did not start within 20 s")??
            .context("the service exited at start")?;
        let addr = line
            .strip_prefix("listening ")
            .context("unexpected service output")?
            .parse()?;
        Ok(Self { child, addr })
    }

    fn rss_mb(&self) -> anyhow::Result<f64> {
        let pid = self.child.id().context("service pid")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .context("VmRSS")?;
        Ok(kb / 1024.0)
    }
}

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

/// Connects without leaving the socket in TIME_WAIT (thousands of connections a second
/// would otherwise exhaust loopback's ephemeral ports).
async fn ws_connect(addr: SocketAddr, path: &str) -> anyhow::Result<Ws> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    // A zero linger resets instead of lingering: no blocking on drop, no TIME_WAIT.
    #[allow(deprecated)]
    tcp.set_linger(Some(Duration::ZERO))?;
    let (ws, _) = tokio_tungstenite::client_async_with_config(
        format!("ws://{addr}{path}"),
        tcp,
        Some(client_config()),
    )
    .await?;
    Ok(ws)
}

/// The load generator's sockets carry a few small JSON messages each: small buffers, as a real
/// client would size them, so that zeroing tungstenite's default 128 KiB buffers for every
/// connection does not take the cores the service is measured on.
fn client_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
}

fn token(key: &TokenKey) -> anyhow::Result<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let (t, _) = key
        .issue("bench", AUD_CLIENT, 300, None, now)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(t)
}

/// Registers `NODES` nodes that heartbeat and drain their inbox until the returned handles
/// are dropped.
async fn fleet(addr: SocketAddr) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut handles = Vec::new();
    for i in 0..NODES {
        let mut ws = ws_connect(addr, "/ws/node").await?;
        let hello = json!({"type": "hello", "version": 1, "node_id": format!("bench-{i}"), "capacity": 1_000_000, "titles": ["demo"]});
        ws.send(Message::Text(hello.to_string().into())).await?;
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) if t.contains("registered") => {}
            other => bail!("node bench-{i} was not registered: {other:?}"),
        }
        handles.push(tokio::spawn(async move {
            let (mut sink, mut stream) = ws.split();
            let beat = json!({"type": "heartbeat", "sessions": 0}).to_string();
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        if sink.send(Message::Text(beat.clone().into())).await.is_err() { return; }
                    }
                    msg = stream.next() => if msg.is_none() { return },
                }
            }
        }));
    }
    Ok(handles)
}

/// One assignment: connect with a token, hello, wait for the welcome, close.
async fn assign_once(addr: SocketAddr, key: &TokenKey) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut ws = ws_connect(addr, &format!("/ws?token={}", token(key)?)).await?;
    ws.send(Message::Text(r#"{"type":"hello","version":1}"#.into()))
        .await?;
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                if t.contains("\"welcome\"") {
                    break;
                }
                bail!("not assigned: {t}");
            }
            Ok(Some(Ok(_))) => continue,
            other => bail!("no welcome: {other:?}"),
        }
    }
    let elapsed = started.elapsed();
    let _ = ws.send(Message::Text(r#"{"type":"bye"}"#.into())).await;
    Ok(elapsed)
}

/// Assignments per second and p99 latency (ms) against a service with `store`.
async fn assignment_phase(store: &str, args: &SignalingArgs) -> anyhow::Result<(f64, f64, usize)> {
    let service = ServiceProcess::start(store).await?;
    let addr = service.addr;
    let _fleet = fleet(addr).await?;
    let key = Arc::new(TokenKey::from_secret_str(BENCH_KEY).map_err(|e| anyhow::anyhow!("{e}"))?);
    // Warm-up: connections, Lua script cache, allocator.
    for _ in 0..50 {
        assign_once(addr, &key).await?;
    }
    let deadline = Instant::now() + Duration::from_secs_f64(args.seconds);
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let key = key.clone();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failures = 0usize;
            while Instant::now() < deadline {
                match assign_once(addr, &key).await {
                    Ok(d) => latencies.push(d.as_secs_f64() * 1000.0),
                    Err(e) => {
                        failures += 1;
                        tracing::warn!("assignment failed: {e:#}");
                    }
                }
            }
            (latencies, failures)
        }));
    }
    let mut all = Vec::new();
    let mut failures = 0;
    for w in workers {
        let (l, f) = w.await?;
        all.extend(l);
        failures += f;
    }
    let elapsed = started.elapsed().as_secs_f64();
    drop(service);
    Ok((all.len() as f64 / elapsed, percentile(&all, 99.0), failures))
}

/// Resident memory (MB) of a memory-store service holding `n` idle client WebSockets.
async fn idle_phase(n: usize) -> anyhow::Result<(f64, f64)> {
    let service = ServiceProcess::start("memory").await?;
    let addr = service.addr;
    let key = Arc::new(TokenKey::from_secret_str(BENCH_KEY).map_err(|e| anyhow::anyhow!("{e}"))?);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = service.rss_mb()?;
    let mut sockets = Vec::with_capacity(n);
    let batch = 100;
    while sockets.len() < n {
        let mut connecting = Vec::new();
        for _ in 0..batch.min(n - sockets.len()) {
            let key = key.clone();
            connecting.push(tokio::spawn(async move {
                let tcp = TcpStream::connect(addr).await?;
                let path = format!("ws://{addr}/ws?token={}", token(&key)?);
                let (ws, _) =
                    tokio_tungstenite::client_async_with_config(path, tcp, Some(client_config()))
                        .await?;
                anyhow::Ok(ws)
            }));
        }
        for c in connecting {
            sockets.push(c.await??);
        }
    }
    // Let the service settle (allocator, task stacks) before reading its memory.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = service.rss_mb()?;
    drop(sockets);
    Ok((before, after))
}

/// Runs the whole bench.
pub fn run(args: &SignalingArgs) -> anyhow::Result<Report> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("runtime")?;
    rt.block_on(async {
        let (mem_rate, mem_p99, mem_failures) = assignment_phase("memory", args).await?;
        let mut report = Report::default()
            .field("assign_per_s_memory", mem_rate)
            .field("assign_p99_ms_memory", mem_p99);
        let mut failures = mem_failures;
        if args.skip_redis {
            report = report
                .field("assign_per_s_redis", serde_json::Value::Null)
                .field("assign_p99_ms_redis", serde_json::Value::Null);
        } else {
            let redis = signaling::store::local_redis::LocalRedis::start().await?;
            let (rate, p99, f) = assignment_phase(&redis.url(), args).await?;
            failures += f;
            report = report
                .field("assign_per_s_redis", rate)
                .field("assign_p99_ms_redis", p99);
        }
        let (idle_before, idle_after) = idle_phase(args.idle).await?;
        Ok(report
            .field("ws_idle_10k_rss_mb", idle_after)
            .field("service_rss_mb_at_start", idle_before)
            .field("idle_websockets", args.idle as u64)
            .field("concurrency", args.concurrency as u64)
            .field("failures", failures as u64))
    })
}
