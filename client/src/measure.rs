//! What the player's eye sees, measured from the pixels the client presents: glass-to-glass
//! latency (the latency code's capture time against the wall clock right after the present,
//! one machine, one clock), the frame id, frame rate, decode time, and input-to-photon (a key
//! press's arrival in the client to the first presented frame whose demo input indicator shows
//! it). The stats overlay and the `--report` file read it.

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::latency_code::{self, CodeRow};

/// Samples kept for the quantiles (a few minutes at 60 fps).
const KEEP: usize = 20_000;

/// The demo title's input indicator colour for a key (no button held), as its shader draws it.
pub fn indicator_rgb(key: u32) -> [u8; 3] {
    [
        (key.wrapping_mul(37) % 256) as u8,
        (key.wrapping_mul(91).wrapping_add(64) % 256) as u8,
        32,
    ]
}

/// Mean RGB of the demo's input indicator (64×64 px at (32, h − 96)) in BGRx pixels.
pub fn indicator_mean(pixels: &[u8], stride: usize, height: usize) -> Option<[f32; 3]> {
    if height < 96 || stride < 96 * 4 {
        return None;
    }
    let mut sum = [0f64; 3];
    for y in height - 96..height - 32 {
        let row = pixels.get(y * stride + 32 * 4..y * stride + 96 * 4)?;
        for p in row.chunks_exact(4) {
            sum[0] += f64::from(p[2]);
            sum[1] += f64::from(p[1]);
            sum[2] += f64::from(p[0]);
        }
    }
    Some(sum.map(|s| (s / 4096.0) as f32))
}

/// Milliseconds since the Unix epoch, now.
pub fn epoch_ms_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// Running measurements.
#[derive(Debug, Default)]
pub struct Measure {
    /// Glass-to-glass samples, ms.
    pub g2g_ms: VecDeque<f64>,
    /// Decode (+ conversion) samples, ms.
    pub decode_ms: VecDeque<f64>,
    /// The client's own share: the unit's last packet in to the picture presented, ms.
    pub client_ms: VecDeque<f64>,
    /// Input-to-photon samples, ms.
    pub i2p_ms: VecDeque<f64>,
    /// The sender's and network's share of each glass-to-glass sample: glass-to-glass minus
    /// the client's share (so: latency code to the unit's last packet in), ms.
    pub sender_ms: VecDeque<f64>,
    /// Freezes among the presented frames, as the W3C counts them.
    pub freezes: FreezeCounter,
    /// Frames presented.
    pub presented: u64,
    /// The last frame id read from the picture.
    pub last_frame_id: Option<u64>,
    /// Present times in the last second, for the frame rate.
    recent: VecDeque<Instant>,
    /// A key waiting to show: when it arrived and its code.
    pending_key: Option<(Instant, u32)>,
}

fn push(q: &mut VecDeque<f64>, v: f64) {
    if q.len() == KEEP {
        q.pop_front();
    }
    q.push_back(v);
}

impl Measure {
    /// Notes a presented frame: its BGRx pixels, decode time, when it was decoded, and the
    /// wall-clock time just after the present.
    #[allow(clippy::too_many_arguments)]
    pub fn presented(
        &mut self,
        pixels: &[u8],
        stride: usize,
        height: usize,
        decode: Duration,
        decoded_at: Instant,
        presented_epoch_ms: f64,
        now: Instant,
    ) {
        self.presented += 1;
        self.recent.push_back(now);
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(1))
        {
            self.recent.pop_front();
        }
        push(&mut self.decode_ms, decode.as_secs_f64() * 1000.0);
        let client = decode + now.saturating_duration_since(decoded_at);
        let client_ms = client.as_secs_f64() * 1000.0;
        push(&mut self.client_ms, client_ms);
        self.freezes.presented(now);
        // BGRx reads as RGBx for black and white cells.
        if let Some(rendered) = latency_code::read_rgba(pixels, stride, height, CodeRow::EpochMs) {
            let g2g = presented_epoch_ms - rendered as f64;
            push(&mut self.g2g_ms, g2g);
            push(&mut self.sender_ms, g2g - client_ms);
        }
        if let Some(id) = latency_code::read_rgba(pixels, stride, height, CodeRow::FrameId) {
            self.last_frame_id = Some(id);
        }
        if let Some((at, key)) = self.pending_key
            && let Some(got) = indicator_mean(pixels, stride, height)
        {
            let want = indicator_rgb(key);
            if got
                .iter()
                .zip(want)
                .all(|(g, w)| (g - f32::from(w)).abs() <= 40.0)
            {
                push(
                    &mut self.i2p_ms,
                    now.duration_since(at).as_secs_f64() * 1000.0,
                );
                self.pending_key = None;
            }
        }
    }

    /// Notes a key press that will be sent to the node now.
    pub fn key_pressed(&mut self, code: u32, at: Instant) {
        self.pending_key = Some((at, code));
    }

    /// Frames presented in the last second.
    pub fn fps(&self) -> usize {
        self.recent.len()
    }
}

/// Counts freezes the way the W3C's `freezeCount` does: a frame shown at least
/// max(3 × the mean, the mean + 150 ms) after the one before, the mean taken over the
/// durations of the 30 frames before it.
#[derive(Debug, Default)]
pub struct FreezeCounter {
    last: Option<Instant>,
    durations: VecDeque<f64>,
    count: u64,
}

impl FreezeCounter {
    /// Frames the mean is taken over.
    const WINDOW: usize = 30;

    /// Notes a frame presented at `now`.
    pub fn presented(&mut self, now: Instant) {
        if let Some(last) = self.last {
            let d = now.saturating_duration_since(last).as_secs_f64() * 1000.0;
            if !self.durations.is_empty() {
                let mean = self.durations.iter().sum::<f64>() / self.durations.len() as f64;
                if d >= (3.0 * mean).max(mean + 150.0) {
                    self.count += 1;
                }
            }
            if self.durations.len() == Self::WINDOW {
                self.durations.pop_front();
            }
            self.durations.push_back(d);
        }
        self.last = Some(now);
    }

    /// Freezes so far.
    pub fn count(&self) -> u64 {
        self.count
    }
}

/// The `p`-th percentile (0–100) of `samples`, by nearest rank; 0 when empty.
pub fn percentile(samples: impl IntoIterator<Item = f64>, p: f64) -> f64 {
    let mut v: Vec<f64> = samples.into_iter().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(w: usize, h: usize, epoch: u64, id: u64, indicator: [u8; 3]) -> Vec<u8> {
        let mut rgba = vec![0u8; w * h * 4];
        latency_code::stamp_rgba(&mut rgba, w * 4, h, CodeRow::EpochMs, epoch);
        latency_code::stamp_rgba(&mut rgba, w * 4, h, CodeRow::FrameId, id);
        for y in h - 96..h - 32 {
            for x in 32..96 {
                let p = &mut rgba[(y * w + x) * 4..(y * w + x) * 4 + 4];
                p.copy_from_slice(&[indicator[2], indicator[1], indicator[0], 255]);
            }
        }
        rgba
    }

    #[test]
    fn reads_latency_frame_id_and_input_to_photon_from_pixels() {
        let (w, h) = (960, 200);
        let t0 = Instant::now();
        let mut m = Measure::default();
        let key = input::KeyCode::KeyW as u32;
        m.key_pressed(key, t0);
        let px = frame(w, h, 1_000_000, 41, indicator_rgb(0));
        m.presented(&px, w * 4, h, Duration::from_millis(4), t0, 1_000_020.5, t0);
        assert_eq!(m.i2p_ms.len(), 0, "the indicator does not show W yet");
        let px = frame(w, h, 1_000_017, 42, indicator_rgb(key));
        let later = t0 + Duration::from_millis(33);
        m.presented(
            &px,
            w * 4,
            h,
            Duration::from_millis(6),
            t0,
            1_000_040.0,
            later,
        );
        assert_eq!(m.g2g_ms, [20.5, 23.0]);
        assert_eq!(m.last_frame_id, Some(42));
        assert_eq!(m.i2p_ms.len(), 1);
        assert!((m.i2p_ms[0] - 33.0).abs() < 1e-6);
        assert_eq!(m.fps(), 2);
        assert_eq!(percentile(m.decode_ms.iter().copied(), 50.0), 4.0);
        // Decoded at t0, presented 33 ms later after 6 ms of decoding: 39 ms in the client.
        assert!((m.client_ms[1] - 39.0).abs() < 1e-6, "{:?}", m.client_ms);
        // The rest of glass-to-glass is the sender's and the network's.
        assert!(
            (m.sender_ms[1] - (23.0 - 39.0)).abs() < 1e-6,
            "{:?}",
            m.sender_ms
        );
        // A frame without codes counts as presented but adds no latency sample.
        m.presented(
            &vec![0; w * h * 4],
            w * 4,
            h,
            Duration::ZERO,
            later,
            0.0,
            later,
        );
        assert_eq!((m.presented, m.g2g_ms.len()), (3, 2));
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let v = (1..=100).map(f64::from);
        assert_eq!(percentile(v.clone(), 50.0), 50.0);
        assert_eq!(percentile(v, 95.0), 95.0);
        assert_eq!(percentile([], 50.0), 0.0);
    }

    #[test]
    fn counts_freezes_as_the_w3c_does() {
        let t0 = Instant::now();
        let mut f = FreezeCounter::default();
        let mut t = t0;
        for _ in 0..40 {
            f.presented(t);
            t += Duration::from_millis(16);
        }
        assert_eq!(f.count(), 0);
        // 160 ms is over 3 × 16 ms but not over 16 + 150 ms: not a freeze.
        t += Duration::from_millis(144);
        f.presented(t);
        assert_eq!(f.count(), 0);
        for _ in 0..40 {
            t += Duration::from_millis(16);
            f.presented(t);
        }
        t += Duration::from_millis(300);
        f.presented(t);
        assert_eq!(f.count(), 1);
    }
}
