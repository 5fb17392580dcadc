//! The latency code: a 48-bit value drawn as 57 black/white cells in a frame's top rows, so
//! that any receiver can tell from pixels alone when a frame was made and which frame it is.
//!
//! Format: cells of 16×32 px, cell *i* at x ∈ [16i, 16i+16); cells 0–3 the start
//! pattern `1010`, cells 4–51 the value MSB first, cell 52 even parity (XOR of the 48 value
//! bits), cells 53–56 the stop pattern `0110`. White (luma 235 / RGB 255) is 1, black is 0. A
//! cell is read as the mean luma of its inner 8×16 px, threshold 125.5; a code is valid only if
//! start, stop and parity all match.
//!
//! Row 0 (y ∈ [0, 32)) carries the Unix epoch time in milliseconds at render; the demo title
//! draws the frame id in row 1 (y ∈ [32, 64)) with the same layout.
//!
//! The demo title draws both codes on the GPU (`capture/shaders/scene.wgsl`); this module is
//! the reference: [`encode`] and [`decode`] the cells, [`read_luma_plane`] and [`read_rgba`]
//! read a code from decoded pixels (the clients, the tests), and [`stamp_rgba`] draws one for
//! titles and tests without a GPU path of their own.

/// Width of one cell in pixels.
pub const CELL_WIDTH: usize = 16;
/// Height of one cell (and of one code row) in pixels.
pub const CELL_HEIGHT: usize = 32;
/// Cells in one code.
pub const CELLS: usize = 57;
/// Width of a whole code in pixels.
pub const CODE_WIDTH: usize = CELL_WIDTH * CELLS;
/// Largest value a code can carry.
pub const MAX_VALUE: u64 = (1 << 48) - 1;

const START: [bool; 4] = [true, false, true, false];
const STOP: [bool; 4] = [false, true, true, false];
const THRESHOLD: f32 = 125.5;

/// Which code row to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeRow {
    /// Row 0: Unix epoch milliseconds when the frame was made.
    EpochMs,
    /// Row 1: the frame id (demo title).
    FrameId,
}

impl CodeRow {
    fn top(self) -> usize {
        match self {
            CodeRow::EpochMs => 0,
            CodeRow::FrameId => CELL_HEIGHT,
        }
    }
}

/// The 57 cell values of the code carrying `value` (only its low 48 bits are used).
pub fn encode(value: u64) -> [bool; CELLS] {
    let value = value & MAX_VALUE;
    let mut cells = [false; CELLS];
    cells[..4].copy_from_slice(&START);
    for bit in 0..48 {
        cells[4 + bit] = (value >> (47 - bit)) & 1 == 1;
    }
    cells[52] = value.count_ones() % 2 == 1;
    cells[53..].copy_from_slice(&STOP);
    cells
}

/// The value of a code from its 57 cells, or `None` if start, stop or parity do not match.
pub fn decode(cells: &[bool; CELLS]) -> Option<u64> {
    if cells[..4] != START || cells[53..] != STOP {
        return None;
    }
    let value = cells[4..52]
        .iter()
        .fold(0u64, |acc, &b| (acc << 1) | b as u64);
    (cells[52] == (value.count_ones() % 2 == 1)).then_some(value)
}

/// Reads a code through `luma(x, y)`, which returns the luma (0–255) of a pixel of a frame at
/// least [`CODE_WIDTH`] wide and 64 high. Returns `None` if the code is not valid.
pub fn read(row: CodeRow, luma: impl Fn(usize, usize) -> f32) -> Option<u64> {
    let top = row.top();
    let mut cells = [false; CELLS];
    for (i, cell) in cells.iter_mut().enumerate() {
        let mut sum = 0.0;
        for y in top + 8..top + 24 {
            for x in CELL_WIDTH * i + 4..CELL_WIDTH * i + 12 {
                sum += luma(x, y);
            }
        }
        *cell = sum / (8.0 * 16.0) > THRESHOLD;
    }
    decode(&cells)
}

/// Reads a code from an 8-bit luma plane (e.g. the Y plane of an I420 frame).
pub fn read_luma_plane(plane: &[u8], stride: usize, height: usize, row: CodeRow) -> Option<u64> {
    if stride < CODE_WIDTH || height < 2 * CELL_HEIGHT || plane.len() < stride * 2 * CELL_HEIGHT {
        return None;
    }
    read(row, |x, y| plane[y * stride + x] as f32)
}

/// Reads a code from packed RGBA pixels (e.g. a canvas or a screenshot), with BT.601 luma
/// weights applied to full-range RGB.
pub fn read_rgba(pixels: &[u8], stride: usize, height: usize, row: CodeRow) -> Option<u64> {
    if stride < 4 * CODE_WIDTH
        || height < 2 * CELL_HEIGHT
        || pixels.len() < stride * 2 * CELL_HEIGHT
    {
        return None;
    }
    read(row, |x, y| {
        let p = &pixels[y * stride + 4 * x..y * stride + 4 * x + 3];
        0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32
    })
}

/// Draws the code carrying `value` into packed RGBA pixels (for a title or test that has no
/// GPU path of its own). Pixels outside the buffer are left alone.
pub fn stamp_rgba(pixels: &mut [u8], stride: usize, height: usize, row: CodeRow, value: u64) {
    let cells = encode(value);
    let top = row.top();
    for y in top..(top + CELL_HEIGHT).min(height) {
        for (i, &bit) in cells.iter().enumerate() {
            let v = if bit { 255 } else { 0 };
            for x in CELL_WIDTH * i..CELL_WIDTH * (i + 1) {
                if let Some(p) = pixels.get_mut(y * stride + 4 * x..y * stride + 4 * x + 4) {
                    p.copy_from_slice(&[v, v, v, 255]);
                }
            }
        }
    }
}

/// Draws the code carrying `value` into a luma plane (Y = 235 for 1, 16 for 0, as the format
/// says), for titles that make I420 themselves. Samples outside the plane are left alone; the
/// caller sets the chroma under the code to neutral.
pub fn stamp_luma_plane(plane: &mut [u8], stride: usize, height: usize, row: CodeRow, value: u64) {
    let cells = encode(value);
    let top = row.top();
    for y in top..(top + CELL_HEIGHT).min(height) {
        let Some(line) = plane.get_mut(y * stride..(y * stride + stride).min(plane.len())) else {
            continue;
        };
        for (i, &bit) in cells.iter().enumerate() {
            let (x0, x1) = (CELL_WIDTH * i, (CELL_WIDTH * (i + 1)).min(line.len()));
            if x0 < x1 {
                line[x0..x1].fill(if bit { 235 } else { 16 });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn design_example() {
        // The format's worked example:
        // 1700000000123 -> 1010 000000011000101111001111111001010110100001111011 1 0110
        let expected = "1010000000011000101111001111111001010110100001111011\
                        10110";
        let cells: String = encode(1_700_000_000_123)
            .iter()
            .map(|&b| if b { '1' } else { '0' })
            .collect();
        assert_eq!(cells, expected);
        assert_eq!(decode(&encode(1_700_000_000_123)), Some(1_700_000_000_123));
    }

    #[test]
    fn corrupted_codes_are_rejected() {
        let mut cells = encode(42);
        cells[20] = !cells[20];
        assert_eq!(decode(&cells), None, "parity catches one flipped bit");
        let mut cells = encode(42);
        cells[0] = false;
        assert_eq!(decode(&cells), None, "bad start");
        let mut cells = encode(42);
        cells[56] = true;
        assert_eq!(decode(&cells), None, "bad stop");
        assert_eq!(decode(&[false; CELLS]), None, "all black");
        assert_eq!(decode(&[true; CELLS]), None, "all white");
    }

    #[test]
    fn stamp_then_read_rgba() {
        let (w, h) = (1280usize, 96usize);
        let mut px = vec![128u8; w * h * 4];
        stamp_rgba(&mut px, w * 4, h, CodeRow::EpochMs, 1_763_000_000_001);
        stamp_rgba(&mut px, w * 4, h, CodeRow::FrameId, 7);
        assert_eq!(
            read_rgba(&px, w * 4, h, CodeRow::EpochMs),
            Some(1_763_000_000_001)
        );
        assert_eq!(read_rgba(&px, w * 4, h, CodeRow::FrameId), Some(7));
    }

    #[test]
    fn stamp_then_read_a_luma_plane() {
        let (w, h) = (1000usize, 70usize);
        let mut luma = vec![128u8; w * h];
        stamp_luma_plane(&mut luma, w, h, CodeRow::EpochMs, 1_763_000_000_002);
        stamp_luma_plane(&mut luma, w, h, CodeRow::FrameId, 99);
        assert_eq!(
            read_luma_plane(&luma, w, h, CodeRow::EpochMs),
            Some(1_763_000_000_002)
        );
        assert_eq!(read_luma_plane(&luma, w, h, CodeRow::FrameId), Some(99));
        assert!(luma.iter().all(|&y| y == 16 || y == 235 || y == 128));
        // A plane too narrow or too short for the code is left whole and reads as nothing.
        let mut small = vec![128u8; 300 * 20];
        stamp_luma_plane(&mut small, 300, 20, CodeRow::FrameId, 5);
        assert_eq!(read_luma_plane(&small, 300, 20, CodeRow::FrameId), None);
    }

    #[test]
    fn small_frames_read_as_none() {
        let px = vec![0u8; 100 * 100 * 4];
        assert_eq!(read_rgba(&px, 400, 100, CodeRow::EpochMs), None);
        assert_eq!(read_luma_plane(&px, 100, 100, CodeRow::EpochMs), None);
    }
}
