//! Drawing into the window's `0RGB` buffer: the picture in its letterbox, the local cursor,
//! and the message panels of the status screens. Text comes from [`crate::font`].

use crate::font::{CELL_H, Canvas, text_width};
use crate::input_map::Letterbox;
use crate::video::DecodedFrame;

/// Copies the frame into the canvas, scaled into its letterbox (nearest neighbour; a straight
/// row copy when the sizes match), with black bars around it.
pub(crate) fn blit(canvas: &mut Canvas<'_>, frame: &DecodedFrame, lb: &Letterbox) {
    let (ww, wh) = (canvas.width, canvas.height);
    let dw = ((f64::from(frame.width) * lb.scale).round() as usize).min(ww);
    let dh = ((f64::from(frame.height) * lb.scale).round() as usize).min(wh);
    let (ox, oy) = (lb.x as usize, lb.y as usize);
    if dw < ww || dh < wh {
        canvas.fill(0, 0, ww, wh, 0);
    }
    let stride = frame.stride;
    let fw = frame.width as usize;
    let fh = frame.height as usize;
    frame.with_pixels(|src| {
        let xs: Vec<usize> = (0..dw)
            .map(|x| ((x as f64 / lb.scale) as usize).min(fw - 1))
            .collect();
        for y in 0..dh {
            let sy = ((y as f64 / lb.scale) as usize).min(fh - 1);
            let Some(row) = src.get(sy * stride..sy * stride + fw * 4) else {
                break;
            };
            let start = (oy + y) * ww + ox;
            let Some(out) = canvas.pixels.get_mut(start..start + dw) else {
                break;
            };
            if dw == fw {
                for (o, p) in out.iter_mut().zip(row.chunks_exact(4)) {
                    *o = u32::from_le_bytes([p[0], p[1], p[2], 0]);
                }
            } else {
                for (o, &sx) in out.iter_mut().zip(&xs) {
                    let p = &row[sx * 4..sx * 4 + 4];
                    *o = u32::from_le_bytes([p[0], p[1], p[2], 0]);
                }
            }
        }
    });
}

/// The multiplier for text and marks at a display scale factor: 1 up to 1.49, 2 from 1.5…
pub(crate) fn ui_scale(scale_factor: f64) -> usize {
    scale_factor.round().clamp(1.0, 4.0) as usize
}

/// The local cursor: a small white cross with a dark outline at the predicted position.
pub(crate) fn draw_cursor(canvas: &mut Canvas<'_>, x: f64, y: f64, ui: usize) {
    let (x, y) = (x.max(0.0) as usize, y.max(0.0) as usize);
    let (arm, outline) = (7 * ui, ui);
    let thick = 3 * ui;
    let half = thick / 2;
    canvas.fill(
        x.saturating_sub(arm + outline),
        y.saturating_sub(half + outline),
        2 * (arm + outline) + 1,
        thick + 2 * outline,
        0,
    );
    canvas.fill(
        x.saturating_sub(half + outline),
        y.saturating_sub(arm + outline),
        thick + 2 * outline,
        2 * (arm + outline) + 1,
        0,
    );
    canvas.fill(
        x.saturating_sub(arm),
        y.saturating_sub(half),
        2 * arm + 1,
        thick,
        0x00ff_ffff,
    );
    canvas.fill(
        x.saturating_sub(half),
        y.saturating_sub(arm),
        thick,
        2 * arm + 1,
        0x00ff_ffff,
    );
}

/// A centred message panel: headline, detail (wrapped), and an optional last line; `ui` is the
/// HiDPI multiplier.
pub(crate) fn panel(
    canvas: &mut Canvas<'_>,
    headline: &str,
    detail: &str,
    footer: Option<&str>,
    ui: usize,
) {
    let (ww, wh) = (canvas.width, canvas.height);
    let (big, body, foot) = (4 * ui, 2 * ui, 3 * ui);
    let max_chars = (ww.saturating_sub(80 * ui) / (crate::font::CELL_W * body)).max(10);
    let mut lines: Vec<String> = Vec::new();
    for word in detail.split_whitespace() {
        match lines.last_mut() {
            Some(l) if l.chars().count() + 1 + word.chars().count() <= max_chars => {
                l.push(' ');
                l.push_str(word);
            }
            _ => lines.push(word.chars().take(max_chars).collect()),
        }
    }
    lines.truncate(8);
    let height = CELL_H * big
        + 16 * ui
        + lines.len() * CELL_H * body
        + footer.map_or(0, |_| CELL_H * foot + 8 * ui);
    let top = wh.saturating_sub(height) / 2;
    canvas.shade(
        20 * ui,
        top.saturating_sub(20 * ui),
        ww.saturating_sub(40 * ui),
        height + 40 * ui,
    );
    let hx = ww.saturating_sub(text_width(headline, big)) / 2;
    canvas.text(hx, top, headline, big, 0x00ff_ffff);
    let mut y = top + CELL_H * big + 16 * ui;
    for l in &lines {
        let x = ww.saturating_sub(text_width(l, body)) / 2;
        canvas.text(x, y, l, body, 0x00d0_d0d0);
        y += CELL_H * body;
    }
    if let Some(f) = footer {
        let x = ww.saturating_sub(text_width(f, foot)) / 2;
        canvas.text(x, y + 8 * ui, f, foot, 0x00ff_d040);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidpi_multiplier_rounds_the_scale_factor() {
        let got: Vec<usize> = [0.5, 1.0, 1.25, 1.5, 2.0, 3.0, 10.0]
            .into_iter()
            .map(ui_scale)
            .collect();
        assert_eq!(got, [1, 1, 1, 2, 2, 3, 4]);
    }

    #[test]
    fn screens_draw_at_every_scale_and_size_without_leaving_the_canvas() {
        for (w, h) in [(1, 1), (64, 48), (640, 360), (3840, 2160)] {
            for ui in 1..=4 {
                let mut px = vec![0u32; w * h];
                let mut c = Canvas {
                    pixels: &mut px,
                    width: w,
                    height: h,
                };
                panel(
                    &mut c,
                    "Connection to the game server lost",
                    "node b was lost: a long explanation that wraps over several lines of text",
                    Some("Reconnecting in 3 s"),
                    ui,
                );
                draw_cursor(&mut c, w as f64 - 1.0, 0.0, ui);
                draw_cursor(&mut c, -5.0, h as f64 + 9.0, ui);
                if w >= 640 {
                    let white = px.iter().filter(|&&p| p == 0x00ff_ffff).count();
                    assert!(
                        white > 100 * ui * ui,
                        "{w}x{h} at {ui}: {white} white pixels"
                    );
                }
            }
        }
    }
}
