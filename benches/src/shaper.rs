//! A userspace UDP relay that shapes one direction like `tc tbf`: a token bucket in front of a
//! drop-tail queue. Kernel netem does not exist on these machines, and tests must not shape
//! loopback itself, so a [`crate::rtc_peer::Player`] can be sent through one of these instead.
//!
//! The player talks to [`Shaper::player_side`]; the relay forwards what it sends to the node at
//! once and what the node sends back through the bucket. The node sees the relay's other socket
//! as the player (an ICE peer-reflexive candidate).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// Bytes the bucket holds when full (a burst), as `tbf burst`.
const BURST_BYTES: f64 = 15_000.0;
/// Bytes the queue holds before it drops, as `tbf limit` (about 0.3 s at 1 Mbit/s).
const QUEUE_BYTES: usize = 40_000;

#[derive(Debug, Default, Clone, Copy)]
struct State {
    /// Where the node is (set from its answer's candidate).
    node: Option<SocketAddr>,
    /// Where the player is (learnt from its first packet).
    player: Option<SocketAddr>,
}

/// A running relay; stops when dropped.
#[derive(Debug)]
pub struct Shaper {
    player_side: SocketAddr,
    rate_bps: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
    from_node: Arc<AtomicU64>,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl Shaper {
    /// Starts a relay on loopback shaping the node→player direction to `rate_bps` (0: no
    /// limit).
    pub async fn start(rate_bps: u64) -> std::io::Result<Shaper> {
        let a = UdpSocket::bind("127.0.0.1:0").await?;
        let b = UdpSocket::bind("127.0.0.1:0").await?;
        let player_side = a.local_addr()?;
        let rate = Arc::new(AtomicU64::new(rate_bps));
        let dropped = Arc::new(AtomicU64::new(0));
        let state = Arc::new(Mutex::new(State::default()));
        let from_node = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(relay(
            a,
            b,
            rate.clone(),
            [dropped.clone(), from_node.clone()],
            state.clone(),
        ));
        Ok(Shaper {
            player_side,
            rate_bps: rate,
            dropped,
            from_node,
            state,
            task,
        })
    }

    /// The address the player should send to (in place of the node's candidate).
    pub fn player_side(&self) -> SocketAddr {
        self.player_side
    }

    /// Where the relay sends the player's packets.
    pub fn set_node(&self, node: SocketAddr) {
        self.lock().node = Some(node);
    }

    /// Changes the node→player rate (0: no limit).
    pub fn set_rate(&self, rate_bps: u64) {
        self.rate_bps.store(rate_bps, Ordering::Relaxed);
    }

    /// Packets the node has sent towards the player so far.
    pub fn from_node(&self) -> u64 {
        self.from_node.load(Ordering::Relaxed)
    }

    /// Packets the full queue dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Shaper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(
    a: UdpSocket,
    b: UdpSocket,
    rate: Arc<AtomicU64>,
    [dropped, from_node]: [Arc<AtomicU64>; 2],
    state: Arc<Mutex<State>>,
) {
    let mut from_player = vec![0u8; 65_536];
    let mut node_buf = vec![0u8; 65_536];
    let mut queue: VecDeque<Vec<u8>> = VecDeque::new();
    let mut queued = 0usize;
    let mut tokens = BURST_BYTES;
    let mut last = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let lock = |s: &Arc<Mutex<State>>| *s.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        tokio::select! {
            r = a.recv_from(&mut from_player) => {
                let Ok((n, player)) = r else { continue };
                let node = {
                    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
                    s.player = Some(player);
                    s.node
                };
                if let Some(node) = node {
                    let _ = b.send_to(&from_player[..n], node).await;
                }
            }
            r = b.recv_from(&mut node_buf) => {
                let Ok((n, _)) = r else { continue };
                from_node.fetch_add(1, Ordering::Relaxed);
                if queued + n > QUEUE_BYTES {
                    dropped.fetch_add(1, Ordering::Relaxed);
                } else {
                    queued += n;
                    queue.push_back(node_buf[..n].to_vec());
                }
            }
            _ = tick.tick() => {}
        }
        // Refill the bucket and send what it allows.
        let now = tokio::time::Instant::now();
        let bps = rate.load(Ordering::Relaxed);
        if bps == 0 {
            tokens = f64::INFINITY;
        } else {
            let refill = (now - last).as_secs_f64() * bps as f64 / 8.0;
            tokens = (tokens.min(BURST_BYTES) + refill).min(BURST_BYTES);
        }
        last = now;
        let Some(player) = lock(&state).player else {
            continue;
        };
        while let Some(front) = queue.front() {
            if (front.len() as f64) > tokens {
                break;
            }
            tokens -= front.len() as f64;
            queued -= front.len();
            if let Some(p) = queue.pop_front() {
                let _ = a.send_to(&p, player).await;
            }
        }
        if bps == 0 {
            tokens = BURST_BYTES;
        }
    }
}

/// A player's session sent through the relay: the node's candidates in its answer point at the
/// relay, and the relay learns the node's address from them.
impl client::session::MediaRoute for Shaper {
    fn answer(&self, sdp: &str) -> String {
        let (sdp, node) = redirect_candidates(sdp, self.player_side());
        if let Some(node) = node {
            self.set_node(node);
        }
        sdp
    }
}

/// Rewrites the UDP host candidates in `sdp` to `to` and returns the first one's address.
pub fn redirect_candidates(sdp: &str, to: SocketAddr) -> (String, Option<SocketAddr>) {
    let mut first = None;
    let lines: Vec<String> = sdp
        .split("\r\n")
        .map(|line| {
            let Some(rest) = line.strip_prefix("a=candidate:") else {
                return line.to_owned();
            };
            let mut f: Vec<String> = rest.split(' ').map(str::to_owned).collect();
            if f.len() < 8 || !f[2].eq_ignore_ascii_case("udp") || f[7] != "host" {
                return line.to_owned();
            }
            if let Ok(addr) = format!("{}:{}", f[4], f[5]).parse::<SocketAddr>() {
                first = first.or(Some(addr));
                f[4] = to.ip().to_string();
                f[5] = to.port().to_string();
            }
            format!("a=candidate:{}", f.join(" "))
        })
        .collect();
    (lines.join("\r\n"), first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_candidates_are_redirected() {
        let sdp = "v=0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host\r\na=candidate:2 1 tcp 1 127.0.0.1 9 typ host\r\n";
        let to: SocketAddr = "127.0.0.1:5555".parse().expect("addr");
        let (out, first) = redirect_candidates(sdp, to);
        assert_eq!(first, Some("127.0.0.1:40000".parse().expect("addr")));
        assert!(
            out.contains("udp 2130706431 127.0.0.1 5555 typ host"),
            "{out}"
        );
        assert!(out.contains("tcp 1 127.0.0.1 9 typ host"), "{out}");
    }
}
