//! The impairment relay: a userspace UDP relay on loopback between a player and a node, each
//! direction a [`Link`], with a scenario's timeline applied from the moment [`Relay::begin`] is
//! called (before that it is a clean pass-through, so a session connects and settles first).
//!
//! The player talks to [`Relay::player_side`] and the node to the relay's other socket, so the
//! only path between them is the relay's: the node's candidates are rewritten to the player side
//! (for our client session through [`client::session::MediaRoute`]; for a browser by the
//! [`Relay::browser_hook`] script, which also withholds the browser's own candidates), and the
//! relay learns the node's address from those candidates.
//!
//! It also measures what crosses it: the node's sending rate in 100 ms bins, its bytes by kind
//! (media, retransmissions, FEC — told apart by RTP payload type, which SRTP leaves in clear, as
//! the answer's `rtpmap` lines define them), and how long each packet waited in the bottleneck
//! queue. A scenario with cross traffic runs a TCP-like bulk flow (AIMD on the bottleneck's
//! drops, acknowledged over the uplink's delay) through the same bottleneck.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

use super::link::{Fate, Link, LinkConfig, LinkCounters};
use super::scenario::{Action, Scenario};

/// The width of the rate bins.
pub const BIN: Duration = Duration::from_millis(100);
/// The first byte of a cross-traffic packet: outside every range RFC 7983 gives STUN, DTLS,
/// TURN and RTP/RTCP, so it is never mistaken for the session's.
const CROSS_MARK: u8 = 0xFF;
/// A cross-traffic segment's size.
const CROSS_SEGMENT: usize = 1200;

/// What kind of bytes a packet from the node carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// RTP media (video or audio).
    Media,
    /// An RTX retransmission.
    Rtx,
    /// Forward error correction (FlexFEC, ULPFEC, RED).
    Fec,
    /// RTCP, STUN, DTLS.
    Control,
}

/// Payload types the answer gave to retransmission and FEC.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PayloadTypes {
    /// `rtx/90000`.
    pub rtx: Vec<u8>,
    /// `flexfec-03`, `ulpfec`, `red`.
    pub fec: Vec<u8>,
}

impl PayloadTypes {
    /// Reads the `a=rtpmap` lines of `sdp`.
    pub fn from_sdp(sdp: &str) -> Self {
        let mut out = PayloadTypes::default();
        for line in sdp.lines() {
            let Some(rest) = line.trim().strip_prefix("a=rtpmap:") else {
                continue;
            };
            let mut parts = rest.split_whitespace();
            let (Some(pt), Some(codec)) = (parts.next(), parts.next()) else {
                continue;
            };
            let Ok(pt) = pt.parse::<u8>() else { continue };
            let name = codec.split('/').next().unwrap_or("").to_ascii_lowercase();
            match name.as_str() {
                "rtx" => out.rtx.push(pt),
                "flexfec-03" | "flexfec" | "ulpfec" | "red" => out.fec.push(pt),
                _ => {}
            }
        }
        out
    }

    /// The kind of `packet` (RFC 7983 demultiplexing, then the payload type). A
    /// retransmission sent on the media stream itself (no RTX negotiated) looks like media here;
    /// [`Resends`] tells those apart.
    pub fn classify(&self, packet: &[u8]) -> Kind {
        if packet.len() < 12 || !(128..=191).contains(&packet[0]) {
            return Kind::Control;
        }
        // RTCP packet types 192–223 sit where an RTP marker bit and payload type would be.
        if (192..=223).contains(&packet[1]) {
            return Kind::Control;
        }
        let pt = packet[1] & 0x7f;
        if self.rtx.contains(&pt) {
            Kind::Rtx
        } else if self.fec.contains(&pt) {
            Kind::Fec
        } else {
            Kind::Media
        }
    }
}

/// Recognises a media packet seen before (the same SSRC and sequence number): a retransmission
/// on the media stream itself, as a sender without RTX sends them.
#[derive(Debug, Default)]
pub struct Resends {
    /// Per SSRC, the sequence number (+1) last seen in each of 4096 slots.
    seen: std::collections::HashMap<u32, Vec<u32>>,
}

impl Resends {
    /// True when this RTP packet's SSRC and sequence number came before.
    pub fn repeated(&mut self, packet: &[u8]) -> bool {
        if packet.len() < 12 {
            return false;
        }
        let seq = u16::from_be_bytes([packet[2], packet[3]]);
        let ssrc = u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]);
        let slots = self.seen.entry(ssrc).or_insert_with(|| vec![0; 4096]);
        let slot = &mut slots[usize::from(seq) % 4096];
        let repeated = *slot == u32::from(seq) + 1;
        *slot = u32::from(seq) + 1;
        repeated
    }
}

/// What the relay measured over the impaired span.
#[derive(Debug, Clone, Default)]
pub struct RelayReport {
    /// Bytes the node sent per [`BIN`] (everything, retransmissions and FEC included).
    pub sent_bins: Vec<u64>,
    /// Bytes of the session delivered to the player per [`BIN`].
    pub delivered_bins: Vec<u64>,
    /// Cross-traffic bytes delivered per [`BIN`].
    pub cross_bins: Vec<u64>,
    /// The longest one-way delay (queue, propagation and jitter) a node packet was given in
    /// each [`BIN`], ms.
    pub delay_bins: Vec<f64>,
    /// Bytes the node sent by kind: media, RTX, FEC.
    pub media_bytes: u64,
    /// RTX bytes.
    pub rtx_bytes: u64,
    /// FEC bytes.
    pub fec_bytes: u64,
    /// Each delivered downlink packet's wait in the bottleneck queue, ms.
    pub queue_ms: Vec<f64>,
    /// Node → player counters since the span began.
    pub down: LinkCounters,
    /// Player → node counters since the span began.
    pub up: LinkCounters,
}

/// A bulk flow that behaves like TCP Reno in congestion avoidance: a window of segments, one
/// more per window acknowledged, halved when the bottleneck drops one of its segments.
#[derive(Debug)]
struct Cross {
    cwnd: f64,
    in_flight: usize,
    next_seq: u64,
    /// Acknowledgements on their way back: when each arrives.
    acks: VecDeque<Instant>,
    /// The last halving, so one loss episode halves once (as fast recovery does).
    last_cut: Option<Instant>,
}

impl Cross {
    fn new() -> Self {
        Self {
            cwnd: 10.0,
            in_flight: 0,
            next_seq: 0,
            acks: VecDeque::new(),
            last_cut: None,
        }
    }
}

#[derive(Debug)]
struct Inner {
    down: Link,
    up: Link,
    node: Option<SocketAddr>,
    player: Option<SocketAddr>,
    types: PayloadTypes,
    resends: Resends,
    /// The scenario in force and when it began.
    running: Option<(Scenario, Instant)>,
    /// Its events not yet applied, and blackouts to lift.
    pending: VecDeque<(Instant, Action)>,
    lifts: Vec<Instant>,
    cross: Option<Cross>,
    report: RelayReport,
    /// Counters and queue samples at the span's start.
    down_at_begin: LinkCounters,
    up_at_begin: LinkCounters,
    queue_at_begin: usize,
}

impl Inner {
    fn bin(&self, now: Instant) -> Option<usize> {
        let (_, t0) = self.running.as_ref()?;
        Some((now.saturating_duration_since(*t0).as_nanos() / BIN.as_nanos()) as usize)
    }

    fn add(bins: &mut Vec<u64>, i: usize, n: u64) {
        if bins.len() <= i {
            bins.resize(i + 1, 0);
        }
        bins[i] += n;
    }

    /// Applies the events due by `now`.
    fn apply(&mut self, now: Instant) {
        while self.pending.front().is_some_and(|(at, _)| *at <= now) {
            let Some((at, action)) = self.pending.pop_front() else {
                break;
            };
            match action {
                Action::Blackout(d) => {
                    self.down.set_blackout(true);
                    self.up.set_blackout(true);
                    self.lifts.push(at + d);
                }
                Action::DownRate(r) => self.down.set_rate(r),
            }
        }
        let before = self.lifts.len();
        self.lifts.retain(|end| *end > now);
        if before != self.lifts.len() && self.lifts.is_empty() {
            self.down.set_blackout(false);
            self.up.set_blackout(false);
        }
    }

    /// Lets the cross flow send what its window allows.
    fn cross_send(&mut self, now: Instant) {
        let Some(cross) = self.cross.as_mut() else {
            return;
        };
        while (cross.in_flight as f64) < cross.cwnd.floor() {
            let mut segment = vec![0u8; CROSS_SEGMENT];
            segment[0] = CROSS_MARK;
            segment[1..9].copy_from_slice(&cross.next_seq.to_be_bytes());
            cross.next_seq += 1;
            match self.down.send(now, segment) {
                Fate::Delivered(_) => cross.in_flight += 1,
                _ => {
                    // A drop: halve once per round trip, as fast recovery would.
                    let rtt = self.down.config().delay + self.up.config().delay;
                    if cross.last_cut.is_none_or(|t| now.duration_since(t) > rtt) {
                        cross.cwnd = (cross.cwnd / 2.0).max(2.0);
                        cross.last_cut = Some(now);
                    }
                    break;
                }
            }
        }
    }

    /// A cross segment reached the player: its acknowledgement travels back over the uplink's
    /// delay (acknowledgements are small; they are not put through the uplink's loss).
    fn cross_delivered(&mut self, now: Instant, len: usize) {
        if let Some(i) = self.bin(now) {
            Self::add(&mut self.report.cross_bins, i, len as u64);
        }
        let delay = self.up.config().delay;
        if let Some(cross) = self.cross.as_mut() {
            cross.acks.push_back(now + delay);
        }
    }

    fn cross_acks(&mut self, now: Instant) {
        let Some(cross) = self.cross.as_mut() else {
            return;
        };
        while cross.acks.front().is_some_and(|at| *at <= now) {
            cross.acks.pop_front();
            cross.in_flight = cross.in_flight.saturating_sub(1);
            cross.cwnd += 1.0 / cross.cwnd.max(1.0);
        }
    }

    fn next_wake(&self) -> Option<Instant> {
        [
            self.down.next_due(),
            self.up.next_due(),
            self.pending.front().map(|(at, _)| *at),
            self.lifts.iter().min().copied(),
            self.cross.as_ref().and_then(|c| c.acks.front().copied()),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

/// A running relay on loopback; stops when dropped.
#[derive(Debug)]
pub struct Relay {
    player_side: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    task: JoinHandle<()>,
}

impl Relay {
    /// Starts a clean relay on loopback; `seed` makes the scenario's randomness repeatable.
    pub async fn start(seed: u64) -> std::io::Result<Relay> {
        let a = UdpSocket::bind("127.0.0.1:0").await?;
        let b = UdpSocket::bind("127.0.0.1:0").await?;
        let player_side = a.local_addr()?;
        let inner = Arc::new(Mutex::new(Inner {
            down: Link::new(LinkConfig::default(), seed),
            up: Link::new(LinkConfig::default(), seed ^ 0x5555_5555),
            node: None,
            player: None,
            types: PayloadTypes::default(),
            resends: Resends::default(),
            running: None,
            pending: VecDeque::new(),
            lifts: Vec::new(),
            cross: None,
            report: RelayReport::default(),
            down_at_begin: LinkCounters::default(),
            up_at_begin: LinkCounters::default(),
            queue_at_begin: 0,
        }));
        let task = tokio::spawn(run(a, b, inner.clone()));
        Ok(Relay {
            player_side,
            inner,
            task,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The address the player should send to, in place of the node's.
    pub fn player_side(&self) -> SocketAddr {
        self.player_side
    }

    /// Where the player's packets go.
    pub fn set_node(&self, node: SocketAddr) {
        self.lock().node = Some(node);
    }

    /// Whether the relay knows where the node is yet.
    pub fn knows_node(&self) -> bool {
        self.lock().node.is_some()
    }

    /// Learns the payload types of retransmissions and FEC from the answer's SDP.
    pub fn learn_payload_types(&self, sdp: &str) {
        self.lock().types = PayloadTypes::from_sdp(sdp);
    }

    /// Impairs the downlink as `config` says from now on, outside any scenario (a test that
    /// caps the link and lifts it again).
    pub fn set_down(&self, config: LinkConfig) {
        self.lock().down.set_config(config);
    }

    /// The downlink's counters since the relay started.
    pub fn down_counters(&self) -> LinkCounters {
        self.lock().down.counters()
    }

    /// Impairs the path as `scenario` says from now on and starts measuring.
    pub fn begin(&self, scenario: &Scenario) {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.down.set_config(scenario.down);
        inner.up.set_config(scenario.up);
        inner.pending = scenario
            .events
            .iter()
            .map(|e| (now + e.at, e.action))
            .collect();
        inner.lifts.clear();
        inner.cross = scenario.cross_traffic.then(Cross::new);
        inner.report = RelayReport::default();
        inner.down_at_begin = inner.down.counters();
        inner.up_at_begin = inner.up.counters();
        inner.queue_at_begin = inner.down.queue_delays().len();
        inner.running = Some((scenario.clone(), now));
        inner.cross_send(now);
    }

    /// Back to a clean pass-through; returns what was measured since [`Relay::begin`].
    pub fn end(&self) -> RelayReport {
        let mut inner = self.lock();
        inner.down.set_config(LinkConfig::default());
        inner.up.set_config(LinkConfig::default());
        inner.down.set_blackout(false);
        inner.up.set_blackout(false);
        inner.pending.clear();
        inner.lifts.clear();
        inner.cross = None;
        inner.running = None;
        let mut report = std::mem::take(&mut inner.report);
        report.queue_ms = inner.down.queue_delays()[inner.queue_at_begin..]
            .iter()
            .map(|d| d.as_secs_f64() * 1000.0)
            .collect();
        report.down = diff(inner.down.counters(), inner.down_at_begin);
        report.up = diff(inner.up.counters(), inner.up_at_begin);
        report
    }

    /// A script for [`crate::chromium::LaunchOptions::before_load`] that sends a page's
    /// peer connection through this relay: the remote description's and trickled candidates'
    /// UDP host addresses become the relay's (the first one is kept in
    /// `window.__relay.node`, the answer in `window.__relay.answer`, for
    /// [`Relay::learn_from_page`]), other remote candidates are dropped, and the page's own
    /// candidates are not handed to it, so the node only ever sees the relay.
    pub fn browser_hook(&self) -> String {
        BROWSER_HOOK
            .replace("__IP__", &self.player_side.ip().to_string())
            .replace("__PORT__", &self.player_side.port().to_string())
    }

    /// Reads what [`Relay::browser_hook`] noted in the page (`window.__relay`) and learns the
    /// node's address and payload types from it; false until the page has the node's
    /// candidate.
    pub fn learn_from_page(&self, noted: &serde_json::Value) -> bool {
        if let Some(sdp) = noted["answer"].as_str() {
            self.learn_payload_types(sdp);
        }
        match noted["node"].as_str().and_then(|s| s.parse().ok()) {
            Some(node) => {
                self.set_node(node);
                true
            }
            None => false,
        }
    }
}

fn diff(a: LinkCounters, b: LinkCounters) -> LinkCounters {
    LinkCounters {
        sent: a.sent - b.sent,
        sent_bytes: a.sent_bytes - b.sent_bytes,
        delivered: a.delivered - b.delivered,
        delivered_bytes: a.delivered_bytes - b.delivered_bytes,
        blackout: a.blackout - b.blackout,
        queue_full: a.queue_full - b.queue_full,
        lost: a.lost - b.lost,
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Our client session through the relay: the node's candidates in its answer point at the
/// relay, which learns the node's address and payload types from them.
impl client::session::MediaRoute for Relay {
    fn answer(&self, sdp: &str) -> String {
        let (rewritten, node) = redirect_candidates(sdp, self.player_side);
        if let Some(node) = node {
            self.set_node(node);
        }
        self.learn_payload_types(sdp);
        rewritten
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

async fn run(a: UdpSocket, b: UdpSocket, inner: Arc<Mutex<Inner>>) {
    let mut from_player = vec![0u8; 65_536];
    let mut from_node = vec![0u8; 65_536];
    let lock = || inner.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let wake = lock()
            .next_wake()
            .unwrap_or_else(|| Instant::now() + Duration::from_millis(50));
        tokio::select! {
            r = a.recv_from(&mut from_player) => {
                if let Ok((n, player)) = r {
                    let now = Instant::now();
                    let mut s = lock();
                    s.player = Some(player);
                    s.apply(now);
                    s.up.send(now, from_player[..n].to_vec());
                }
            }
            r = b.recv_from(&mut from_node) => {
                if let Ok((n, _)) = r {
                    let now = Instant::now();
                    let mut s = lock();
                    s.apply(now);
                    let packet = &from_node[..n];
                    let mut kind = s.types.classify(packet);
                    if kind == Kind::Media && s.resends.repeated(packet) {
                        kind = Kind::Rtx;
                    }
                    if let Some(i) = s.bin(now) {
                        let report = &mut s.report;
                        Inner::add(&mut report.sent_bins, i, n as u64);
                        match kind {
                            Kind::Media => report.media_bytes += n as u64,
                            Kind::Rtx => report.rtx_bytes += n as u64,
                            Kind::Fec => report.fec_bytes += n as u64,
                            Kind::Control => {}
                        }
                    }
                    let fate = s.down.send(now, packet.to_vec());
                    if let (Fate::Delivered(at), Some(i)) = (fate, s.bin(now)) {
                        let wait = at.saturating_duration_since(now).as_secs_f64() * 1000.0;
                        let bins = &mut s.report.delay_bins;
                        if bins.len() <= i {
                            bins.resize(i + 1, 0.0);
                        }
                        bins[i] = bins[i].max(wait);
                    }
                }
            }
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {}
        }
        let now = Instant::now();
        let (to_player, to_node, player, node) = {
            let mut s = lock();
            s.apply(now);
            s.cross_acks(now);
            let mut to_player = Vec::new();
            while let Some(p) = s.down.receive(now) {
                if p.first() == Some(&CROSS_MARK) {
                    s.cross_delivered(now, p.len());
                } else {
                    if let Some(i) = s.bin(now) {
                        Inner::add(&mut s.report.delivered_bins, i, p.len() as u64);
                    }
                    to_player.push(p);
                }
            }
            s.cross_send(now);
            let to_node: Vec<Vec<u8>> = std::iter::from_fn(|| s.up.receive(now)).collect();
            (to_player, to_node, s.player, s.node)
        };
        if let Some(player) = player {
            for p in &to_player {
                let _ = a.send_to(p, player).await;
            }
        }
        if let Some(node) = node {
            for p in &to_node {
                let _ = b.send_to(p, node).await;
            }
        }
    }
}

/// See [`Relay::browser_hook`]. Runs before the page's own scripts.
const BROWSER_HOOK: &str = r#"
(() => {
  const relay = { ip: '__IP__', port: '__PORT__' };
  window.__relay = { node: null, answer: null };
  const rewrite = (line) => {
    const m = line.match(/^(a=)?candidate:(\S+) (\d+) (udp) (\d+) (\S+) (\d+) typ host(.*)$/i);
    if (!m) return null;
    if (!window.__relay.node) window.__relay.node = m[6] + ':' + m[7];
    return `${m[1] || ''}candidate:${m[2]} ${m[3]} ${m[4]} ${m[5]} ${relay.ip} ${relay.port} typ host${m[8]}`;
  };
  const P = RTCPeerConnection.prototype;
  const setRemote = P.setRemoteDescription;
  P.setRemoteDescription = function (desc) {
    if (desc && desc.sdp) {
      window.__relay.answer = desc.sdp;
      const sdp = desc.sdp.split('\r\n')
        .map((l) => (l.startsWith('a=candidate:') ? rewrite(l) : l))
        .filter((l) => l !== null).join('\r\n');
      desc = { type: desc.type, sdp };
    }
    return setRemote.call(this, desc);
  };
  const addCandidate = P.addIceCandidate;
  P.addIceCandidate = function (c) {
    if (c && c.candidate) {
      const r = rewrite(c.candidate);
      if (r === null) return Promise.resolve();
      c = { candidate: r, sdpMid: c.sdpMid, sdpMLineIndex: c.sdpMLineIndex };
    }
    return addCandidate.call(this, c);
  };
  const own = Object.getOwnPropertyDescriptor(P, 'onicecandidate');
  Object.defineProperty(P, 'onicecandidate', {
    configurable: true,
    get() { return own.get.call(this); },
    set(fn) { own.set.call(this, fn && ((e) => { if (!e.candidate) fn(e); })); },
  });
})();
"#;

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

    #[test]
    fn payload_types_come_from_the_answer() {
        let sdp = "m=video 9 UDP/TLS/RTP/SAVPF 102 103 120\r\na=rtpmap:102 H264/90000\r\na=rtpmap:103 rtx/90000\r\na=rtpmap:120 flexfec-03/90000\r\na=rtpmap:111 opus/48000/2\r\n";
        let t = PayloadTypes::from_sdp(sdp);
        assert_eq!(t.rtx, vec![103]);
        assert_eq!(t.fec, vec![120]);
        let rtp = |pt: u8| {
            let mut p = vec![0u8; 20];
            p[0] = 0x80;
            p[1] = pt | 0x80;
            p
        };
        assert_eq!(t.classify(&rtp(102)), Kind::Media);
        assert_eq!(t.classify(&rtp(103)), Kind::Rtx);
        assert_eq!(t.classify(&rtp(120)), Kind::Fec);
        assert_eq!(t.classify(&rtp(111)), Kind::Media);
        // RTCP (a receiver report, PT 201), STUN and DTLS are control.
        let mut rr = vec![0u8; 20];
        rr[0] = 0x80;
        rr[1] = 201;
        assert_eq!(t.classify(&rr), Kind::Control);
        assert_eq!(
            t.classify(&[0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42, 0, 0, 0, 0]),
            Kind::Control
        );
        assert_eq!(t.classify(&[22; 20]), Kind::Control);
        // A resend on the media stream itself is recognised by its repeated sequence number.
        let mut r = Resends::default();
        let first = rtp(102);
        assert!(!r.repeated(&first));
        let mut next = first.clone();
        next[3] = 1;
        assert!(!r.repeated(&next));
        assert!(r.repeated(&first));
    }

    /// Two sockets talking through the relay: clean, then a blackout drops both directions,
    /// then it passes again; the rate bins count what the "node" sent.
    #[tokio::test]
    async fn packets_cross_it_and_a_blackout_stops_them() {
        let relay = Relay::start(1).await.expect("relay");
        let node = UdpSocket::bind("127.0.0.1:0").await.expect("node");
        let player = UdpSocket::bind("127.0.0.1:0").await.expect("player");
        relay.set_node(node.local_addr().expect("addr"));
        let to = relay.player_side();
        async fn recv(
            s: &UdpSocket,
        ) -> Result<std::io::Result<(Vec<u8>, SocketAddr)>, tokio::time::error::Elapsed> {
            let mut buf = [0u8; 64];
            tokio::time::timeout(Duration::from_millis(300), async move {
                s.recv_from(&mut buf)
                    .await
                    .map(|(n, from)| (buf[..n].to_vec(), from))
            })
            .await
        }
        player.send_to(b"hello", to).await.expect("send");
        let (got, relay_node_side) = recv(&node).await.expect("in time").expect("recv");
        assert_eq!(got, b"hello");
        let scenario = Scenario {
            events: vec![super::super::scenario::Event {
                at: Duration::from_millis(100),
                action: Action::Blackout(Duration::from_millis(300)),
            }],
            ..Scenario::with_length("R1", Duration::from_secs(1)).expect("R1")
        };
        relay.begin(&scenario);
        node.send_to(b"one", relay_node_side).await.expect("send");
        assert_eq!(
            recv(&player).await.expect("in time").expect("recv").0,
            b"one"
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
        node.send_to(b"lost", relay_node_side).await.expect("send");
        assert!(
            recv(&player).await.is_err(),
            "a packet crossed the blackout"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        node.send_to(b"two", relay_node_side).await.expect("send");
        assert_eq!(
            recv(&player).await.expect("in time").expect("recv").0,
            b"two"
        );
        let report = relay.end();
        assert_eq!(report.down.blackout, 1);
        assert_eq!(report.down.delivered, 2);
        assert_eq!(report.sent_bins.iter().sum::<u64>(), 3 + 4 + 3);
    }
}
