//! The session core: every decision a streaming session makes, with no I/O.
//!
//! [`SessionControl`] takes what happens to a session — the peer connection's state, the
//! congestion controller's estimate, the player's keyframe requests, frames going out, the
//! passing of time — through [`SessionControl::handle_input`], and says what to do through
//! [`SessionControl::poll_output`]: start the media path, set the encoder's bitrate, force a
//! keyframe, move to another rung of the quality ladder, publish the second's figures, end the
//! session and why. The async driver ([`super`]) owns the sockets, the peer connection, the
//! encoder and the clock, and only moves events in and commands out.
//!
//! **Invariant:** no I/O, no clock, no locks, no threads: time is the `now` argument, so every
//! rule runs on virtual time in the tests below. Once [`Output::End`] has been emitted the
//! core emits nothing more.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use server::session::control::{ControlConfig, Input, Output, PeerState, SessionControl};
//!
//! let t0 = Instant::now();
//! let mut core = SessionControl::new(ControlConfig::new(4000, 300, 12000), t0);
//! core.handle_input(Input::Peer(PeerState::Connected), t0);
//! assert_eq!(core.poll_output(), Some(Output::StartMedia));
//! core.handle_input(Input::MediaStarted, t0);
//! // The estimate falls; at the next tick the encoder follows at once.
//! core.handle_input(Input::Estimate { bps: 1_000_000.0 }, t0);
//! let tick = core.poll_timeout();
//! core.handle_input(Input::Tick, tick);
//! assert_eq!(core.poll_output(), Some(Output::SetBitrate { kbps: 1000 }));
//! # let _ = Duration::ZERO;
//! ```

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::media::{Ladder, LadderConfig, RUNGS, Rung};

/// How long the player has to connect after the answer is sent.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a disconnected peer has to come back before the session ends.
pub const DISCONNECT_GRACE: Duration = Duration::from_secs(5);
/// Keyframe requests closer together than this are merged (a burst of PLIs during loss would
/// otherwise send a burst of large IDR frames and make the loss worse).
pub const MIN_KEYFRAME_GAP: Duration = Duration::from_millis(300);
/// How often the encoder bitrate follows the congestion controller, and the timers are checked.
pub const TICK: Duration = Duration::from_millis(100);
/// How often the session's figures are published.
pub const METRICS_PERIOD: Duration = Duration::from_secs(1);

/// The rules' settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlConfig {
    /// Encoder bitrate before any estimate, kbit/s.
    pub start_kbps: u32,
    /// The encoder bitrate never goes below this, kbit/s.
    pub min_kbps: u32,
    /// Nor above this, kbit/s.
    pub max_kbps: u32,
    /// The quality ladder; `None` keeps full quality whatever the estimate.
    pub ladder: Option<LadderConfig>,
    /// See [`CONNECT_TIMEOUT`].
    pub connect_timeout: Duration,
    /// See [`DISCONNECT_GRACE`].
    pub disconnect_grace: Duration,
    /// See [`MIN_KEYFRAME_GAP`].
    pub min_keyframe_gap: Duration,
    /// The session ends this long after it began; `None` for no limit.
    pub max_duration: Option<Duration>,
    /// See [`TICK`].
    pub tick: Duration,
}

impl ControlConfig {
    /// The defaults for a stream that starts at `start_kbps` within `min_kbps..=max_kbps`,
    /// without a ladder or a time limit.
    pub fn new(start_kbps: u32, min_kbps: u32, max_kbps: u32) -> Self {
        Self {
            start_kbps,
            min_kbps,
            max_kbps,
            ladder: None,
            connect_timeout: CONNECT_TIMEOUT,
            disconnect_grace: DISCONNECT_GRACE,
            min_keyframe_gap: MIN_KEYFRAME_GAP,
            max_duration: None,
            tick: TICK,
        }
    }
}

/// The peer connection's state, as far as the rules care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    /// Media can flow.
    Connected,
    /// Connectivity was lost; it may come back.
    Disconnected,
    /// ICE or DTLS failed for good.
    Failed,
    /// The player closed the connection.
    Closed,
}

/// What happens to a session.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// The peer connection changed state.
    Peer(PeerState),
    /// The congestion controller's latest estimate, bit/s.
    Estimate {
        /// Bits per second.
        bps: f64,
    },
    /// The player asked for a keyframe (RTCP PLI or FIR).
    KeyframeRequest,
    /// The media path asked for by [`Output::StartMedia`] is running.
    MediaStarted,
    /// A frame went out on the video track.
    FrameSent {
        /// Capture to encoded, nanoseconds.
        encode_ns: u64,
    },
    /// The session must end: the player or the node ended it, the title exited, the media
    /// path failed.
    Stop(SessionEnd),
    /// Time passed: the driver feeds this at [`SessionControl::poll_timeout`].
    Tick,
}

/// The figures of one period, published by the driver.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricsSample {
    /// Frames sent per second over the period.
    pub fps: f64,
    /// Mean capture → encoded time of those frames, microseconds; `None` without frames.
    pub encode_us: Option<u64>,
    /// The encoder bitrate the core last set, kbit/s.
    pub bitrate_kbps: u32,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// The player is connected: start the title and the media path, then report
    /// [`Input::MediaStarted`].
    StartMedia,
    /// Set the encoder's target bitrate.
    SetBitrate {
        /// kbit/s.
        kbps: u32,
    },
    /// Make the next frame a keyframe.
    ForceKeyframe,
    /// Move the stream to another rung of the quality ladder.
    SetRung {
        /// Index into [`RUNGS`].
        index: usize,
        /// The rung.
        rung: Rung,
    },
    /// The period's figures.
    Metrics(MetricsSample),
    /// End the session.
    End(SessionEnd),
}

/// Why a session ended, for the player and the session record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEnd {
    /// Why, in a sentence a player can read.
    pub reason: String,
    /// Starting the same session again would end the same way (the title cannot start or
    /// exited, its picture cannot be streamed, the time limit): players should not retry on
    /// their own.
    pub permanent: bool,
}

impl SessionEnd {
    /// An end that trying again may not repeat (the network, the player, the node).
    pub fn transient(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            permanent: false,
        }
    }

    /// An end that trying again would repeat.
    pub fn permanent(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            permanent: true,
        }
    }
}

/// Where the session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the player to connect.
    Connecting,
    /// Connected; the media path is being started.
    Starting,
    /// Frames flow.
    Streaming,
    /// Over.
    Ended,
}

/// One session's decisions. See the module docs for the drive loop.
#[derive(Debug)]
pub struct SessionControl {
    config: ControlConfig,
    phase: Phase,
    began: Instant,
    next_tick: Instant,
    estimate_bps: Option<f64>,
    bitrate_kbps: u32,
    ladder: Option<Ladder>,
    last_keyframe: Option<Instant>,
    disconnected_since: Option<Instant>,
    period_began: Instant,
    period_frames: u64,
    period_encode_ns: u64,
    out: VecDeque<Output>,
}

impl SessionControl {
    /// A session that begins at `now`, waiting for its player.
    pub fn new(config: ControlConfig, now: Instant) -> Self {
        let ladder = config.ladder.map(Ladder::new);
        Self {
            bitrate_kbps: config.start_kbps.clamp(config.min_kbps, config.max_kbps),
            next_tick: now + config.tick,
            config,
            phase: Phase::Connecting,
            began: now,
            estimate_bps: None,
            ladder,
            last_keyframe: None,
            disconnected_since: None,
            period_began: now,
            period_frames: 0,
            period_encode_ns: 0,
            out: VecDeque::new(),
        }
    }

    /// Takes one event that happened at `now`.
    pub fn handle_input(&mut self, input: Input, now: Instant) {
        if self.phase == Phase::Ended {
            return;
        }
        match input {
            Input::Peer(state) => self.on_peer(state, now),
            Input::Estimate { bps } => {
                if bps.is_finite() && bps >= 0.0 {
                    self.estimate_bps = Some(bps);
                }
            }
            Input::KeyframeRequest => self.on_keyframe_request(now),
            Input::MediaStarted => {
                if self.phase == Phase::Starting {
                    self.phase = Phase::Streaming;
                    self.period_began = now;
                }
            }
            Input::FrameSent { encode_ns } => {
                self.period_frames += 1;
                self.period_encode_ns = self.period_encode_ns.saturating_add(encode_ns);
            }
            Input::Stop(end) => self.end(end),
            Input::Tick => self.on_tick(now),
        }
    }

    /// The next command, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When the driver should next feed [`Input::Tick`].
    pub fn poll_timeout(&self) -> Instant {
        self.next_tick
    }

    /// True once the session has ended.
    pub fn ended(&self) -> bool {
        self.phase == Phase::Ended
    }

    /// The encoder bitrate the core last asked for (the start rate until then), kbit/s.
    pub fn bitrate_kbps(&self) -> u32 {
        self.bitrate_kbps
    }

    /// The quality ladder's current rung (0 = full quality).
    pub fn rung(&self) -> usize {
        self.ladder.as_ref().map_or(0, Ladder::rung)
    }

    fn end(&mut self, end: SessionEnd) {
        if self.phase != Phase::Ended {
            self.phase = Phase::Ended;
            self.out.push_back(Output::End(end));
        }
    }

    fn on_peer(&mut self, state: PeerState, now: Instant) {
        match state {
            PeerState::Connected => {
                self.disconnected_since = None;
                if self.phase == Phase::Connecting {
                    self.phase = Phase::Starting;
                    self.out.push_back(Output::StartMedia);
                }
            }
            PeerState::Disconnected => {
                self.disconnected_since.get_or_insert(now);
            }
            PeerState::Failed => {
                self.end(SessionEnd::transient("the connection to the player failed"))
            }
            PeerState::Closed => {
                self.end(SessionEnd::transient("the player closed the connection"))
            }
        }
    }

    /// Requests closer together than the gap are merged into the keyframe already on its way.
    fn on_keyframe_request(&mut self, now: Instant) {
        if self.phase != Phase::Streaming {
            return;
        }
        let due = self
            .last_keyframe
            .is_none_or(|t| now.saturating_duration_since(t) >= self.config.min_keyframe_gap);
        if due {
            self.last_keyframe = Some(now);
            self.out.push_back(Output::ForceKeyframe);
        }
    }

    fn on_tick(&mut self, now: Instant) {
        if now < self.next_tick {
            return;
        }
        // Ticks that were missed (a busy runtime) are not made up: the next is one period on.
        self.next_tick = now + self.config.tick;
        if let Some(since) = self.disconnected_since
            && now.saturating_duration_since(since) > self.config.disconnect_grace
        {
            return self.end(SessionEnd::transient("the player disconnected"));
        }
        if self.phase == Phase::Connecting
            && now.saturating_duration_since(self.began) >= self.config.connect_timeout
        {
            return self.end(SessionEnd::transient(format!(
                "the player did not connect within {:?}",
                self.config.connect_timeout
            )));
        }
        if let Some(limit) = self.config.max_duration
            && now.saturating_duration_since(self.began) >= limit
        {
            // Starting again at once would only meet the limit again later: not a retry.
            return self.end(SessionEnd::permanent(format!(
                "the session reached its time limit ({} s)",
                limit.as_secs()
            )));
        }
        if self.phase != Phase::Streaming {
            return;
        }
        if let Some(bps) = self.estimate_bps {
            self.follow_estimate(bps, now);
        }
        if now.saturating_duration_since(self.period_began) >= METRICS_PERIOD {
            self.publish(now);
        }
    }

    /// Down at once (congestion), up smoothly (a third of the gap per tick); changes under 5 %
    /// are ignored to spare the encoder churn. The ladder steps on the raw estimate.
    fn follow_estimate(&mut self, bps: f64, now: Instant) {
        let kbps = (bps / 1000.0) as u32;
        let current = self.bitrate_kbps;
        let goal = kbps.clamp(self.config.min_kbps, self.config.max_kbps);
        // The dead band is measured against the goal, not the smoothed step: measured against
        // the step, a rise stopped about 10 % short of the estimate for good.
        if goal.abs_diff(current) * 20 > current {
            let target = smooth_bitrate(current, goal);
            self.bitrate_kbps = target;
            self.out.push_back(Output::SetBitrate { kbps: target });
        }
        if let Some(ladder) = &mut self.ladder
            && let Some(index) = ladder.observe(f64::from(kbps), now)
        {
            self.out.push_back(Output::SetRung {
                index,
                rung: RUNGS[index],
            });
        }
    }

    fn publish(&mut self, now: Instant) {
        let secs = now
            .saturating_duration_since(self.period_began)
            .as_secs_f64()
            .max(1e-3);
        self.out.push_back(Output::Metrics(MetricsSample {
            fps: self.period_frames as f64 / secs,
            encode_us: self
                .period_encode_ns
                .checked_div(self.period_frames)
                .map(|ns| ns / 1000),
            bitrate_kbps: self.bitrate_kbps,
        }));
        self.period_began = now;
        self.period_frames = 0;
        self.period_encode_ns = 0;
    }
}

/// The next encoder bitrate given the current one and the congestion estimate (kbit/s): a drop
/// is followed at once, a rise by a third of the gap.
fn smooth_bitrate(current: u32, estimate: u32) -> u32 {
    if current == 0 || estimate <= current {
        estimate
    } else {
        current + (estimate - current).div_ceil(3)
    }
}

#[cfg(test)]
mod tests;
