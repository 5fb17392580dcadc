//! Drawing the window: the picture letterboxed, the status screens and the picker, the stats
//! overlay and the local cursor.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::App;
use crate::controller::Screen;
use crate::draw::{blit, draw_cursor, panel, ui_scale};
use crate::font::{CELL_H, Canvas, text_width};
use crate::input_map::Letterbox;
use crate::measure::{epoch_ms_now, percentile};

impl App {
    pub(super) fn draw(&mut self) -> anyhow::Result<()> {
        let lines = if self.show_stats {
            self.stats_lines()
        } else {
            Vec::new()
        };
        let (Some(window), Some(surface)) = (self.window.clone(), self.surface.as_mut()) else {
            return Ok(());
        };
        let size = window.inner_size();
        let (Some(w), Some(h)) = (
            std::num::NonZeroU32::new(size.width),
            std::num::NonZeroU32::new(size.height),
        ) else {
            return Ok(());
        };
        surface
            .resize(w, h)
            .map_err(|e| anyhow::anyhow!("resize the window buffer: {e}"))?;
        let fresh = self.latest.lock().unwrap_or_else(|p| p.into_inner()).take();
        let new_frame = fresh.is_some();
        if let Some(f) = fresh {
            self.current = Some(f);
        }
        let screen = self.shared.screen();
        let mut buffer = surface
            .buffer_mut()
            .map_err(|e| anyhow::anyhow!("the window buffer: {e}"))?;
        let (ww, wh) = (w.get() as usize, h.get() as usize);
        // Text and marks grow with the display's scale factor (HiDPI).
        let ui = ui_scale(window.scale_factor());
        let mut canvas = Canvas {
            pixels: &mut buffer,
            width: ww,
            height: wh,
        };
        let show_picture = matches!(screen, Screen::Playing | Screen::Problem { .. });
        match (&self.current, show_picture) {
            (Some(frame), true) => {
                let lb = Letterbox::fit((w.get(), h.get()), (frame.width, frame.height));
                self.letterbox = Some(lb);
                blit(&mut canvas, frame, &lb);
            }
            _ => canvas.fill(0, 0, ww, wh, 0x0010_1418),
        }
        match &screen {
            Screen::Playing => {
                if !self.locked
                    && let (Some(lb), Some((px, py))) = (self.letterbox, self.mapper.predicted)
                    && self.cursor.is_some()
                {
                    let (cx, cy) = lb.to_window(px, py);
                    draw_cursor(&mut canvas, cx, cy, ui);
                }
            }
            Screen::Picker { titles, selected } => {
                let scale = 3 * ui;
                let (left, mut y) = (60 * ui, PICKER_TOP * ui);
                canvas.text(left, y, "Stratus — pick a game", scale, 0x00ff_ffff);
                y += CELL_H * scale * 2;
                for (i, (id, name)) in titles.iter().enumerate() {
                    let colour = if i == *selected {
                        0x00ff_d040
                    } else {
                        0x00c0_c0c0
                    };
                    let marker = if i == *selected { ">" } else { " " };
                    canvas.text(left, y, &format!("{marker} {name} ({id})"), scale, colour);
                    y += (CELL_H * 3 + PICKER_GAP) * ui;
                }
                canvas.text(
                    left,
                    y + 20 * ui,
                    "Up/Down, Enter to play",
                    2 * ui,
                    0x0080_8080,
                );
            }
            Screen::Connecting(what) => {
                panel(&mut canvas, "Connecting", what, None, ui);
            }
            Screen::Problem {
                problem,
                detail,
                retry_at,
            } => {
                let countdown = retry_at.map(|at| {
                    let left = at.saturating_duration_since(Instant::now());
                    format!("Reconnecting in {} s", left.as_secs_f64().ceil() as u64)
                });
                canvas.shade(0, 0, ww, wh);
                panel(
                    &mut canvas,
                    problem.headline(),
                    detail,
                    countdown.as_deref(),
                    ui,
                );
            }
        }
        if !lines.is_empty() {
            let text = 2 * ui;
            let height = lines.len() * CELL_H * text + 16 * ui;
            let width = lines.iter().map(|l| text_width(l, text)).max().unwrap_or(0) + 16 * ui;
            canvas.shade(ww.saturating_sub(width + 8 * ui), 8 * ui, width, height);
            for (i, l) in lines.iter().enumerate() {
                canvas.text(
                    ww.saturating_sub(width),
                    16 * ui + i * CELL_H * text,
                    l,
                    text,
                    0x00e0_ffe0,
                );
            }
        }
        buffer
            .present()
            .map_err(|e| anyhow::anyhow!("present: {e}"))?;
        if new_frame
            && matches!(screen, Screen::Playing)
            && let Some(frame) = &self.current
        {
            let presented_epoch_ms = epoch_ms_now();
            let now = Instant::now();
            if self.first_frame.is_none() {
                self.first_frame = Some(now.duration_since(self.launched));
                tracing::info!(
                    "first picture {:?} after start",
                    now.duration_since(self.launched)
                );
            }
            let measure = &mut self.measure;
            frame.with_pixels(|px| {
                measure.presented(
                    px,
                    frame.stride,
                    frame.height as usize,
                    frame.decode,
                    frame.decoded_at,
                    presented_epoch_ms,
                    now,
                )
            });
        }
        Ok(())
    }

    fn stats_lines(&self) -> Vec<String> {
        let c = &self.shared.counters;
        let m = &self.measure;
        let recent = |q: &std::collections::VecDeque<f64>| {
            percentile(q.iter().rev().take(120).copied(), 50.0)
        };
        let bitrate_kbps = self.bitrate_kbps();
        let packets = c.video_packets.load(Ordering::Relaxed);
        let lost = c.lost_packets.load(Ordering::Relaxed);
        let loss = if packets + lost > 0 {
            100.0 * lost as f64 / (packets + lost) as f64
        } else {
            0.0
        };
        let mut lines = vec![
            format!("fps {}", m.fps()),
            format!("bitrate {:.0} kbit/s", bitrate_kbps),
            format!(
                "rtt {:.1} ms",
                c.rtt_us.load(Ordering::Relaxed) as f64 / 1000.0
            ),
            format!("loss {loss:.2}% ({lost})"),
            format!(
                "decode {:.1} ms ({})",
                recent(&m.decode_ms),
                self.decoder_name
            ),
            format!("glass-to-glass {:.1} ms", recent(&m.g2g_ms)),
        ];
        if let Some(session) = self.shared.session() {
            lines.push(format!("node {}", session.node_id()));
        }
        if self.recording.is_some() {
            lines.push("recording pointer (F9 to save)".into());
        }
        lines
    }

    /// Video bitrate over the last second or so (since the previous sample a second old).
    fn bitrate_kbps(&self) -> f64 {
        let bytes = self.shared.counters.video_bytes.load(Ordering::Relaxed);
        let (then, then_bytes) = self.rate_mark.get();
        let secs = then.elapsed().as_secs_f64();
        if secs >= 1.0 {
            self.rate_mark.set((Instant::now(), bytes));
            self.last_rate
                .set(bytes.saturating_sub(then_bytes) as f64 * 8.0 / secs / 1000.0);
        }
        self.last_rate.get()
    }
}

/// Where the picker's heading starts, and the gap between its rows, at scale factor 1.
pub(super) const PICKER_TOP: usize = 60;
pub(super) const PICKER_GAP: usize = 8;
