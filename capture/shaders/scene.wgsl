// The built-in demo title: one compute pass that draws the whole frame into a buffer of packed
// RGBA8 pixels (row-major, stride = width). A buffer rather than a storage image because image
// stores are several times slower on llvmpipe, the CPU driver CI runs on.
//
// Layout of a frame (see DESIGN.md, "latency code"):
//   rows y in [0, 32):  the latency code, 57 cells of 16x32 px carrying the Unix epoch time in ms;
//   rows y in [32, 64): the frame-id code, same cell layout, carrying the frame id;
//   a 192x192 swatch at the bottom right whose colour is PALETTE[frame_id % 8];
//   an input indicator at the bottom left whose colour follows the last key and the buttons;
//   a crosshair at the pointer position; a bouncing square and a moving colour field behind.

struct Params {
    size: vec2<u32>,
    frame_id: vec2<u32>,   // low 32 bits, high 32 bits
    epoch_ms: vec2<u32>,   // low 32 bits, high 16 bits
    time_ms: u32,
    buttons: u32,
    pointer: vec2<i32>,
    key: u32,
    _pad: u32,
}

var<immediate> params: Params;
@group(0) @binding(0) var<storage, read_write> frame: array<u32>;

const PIXELS_PER_INVOCATION: u32 = 16u;
const CELL_W: u32 = 16u;
const CELL_H: u32 = 32u;
const CELLS: u32 = 57u;
const SWATCH: u32 = 192u;
const SWATCH_MARGIN: u32 = 32u;
const INDICATOR: u32 = 128u;
const SQUARE: f32 = 128.0;

fn value_bit(v: vec2<u32>, b: u32) -> u32 {
    if (b >= 32u) {
        return (v.y >> (b - 32u)) & 1u;
    }
    return (v.x >> b) & 1u;
}

// The bit shown in `cell` of a code carrying the 48-bit value `v`.
fn code_cell(v: vec2<u32>, cell: u32) -> u32 {
    if (cell < 4u) {
        return select(0u, 1u, (cell % 2u) == 0u);
    }
    if (cell < 52u) {
        return value_bit(v, 47u - (cell - 4u));
    }
    if (cell == 52u) {
        return (countOneBits(v.x) + countOneBits(v.y & 0xffffu)) & 1u;
    }
    let s = cell - 53u;
    return select(0u, 1u, s == 1u || s == 2u);
}

// PALETTE[i] = red, green, blue, yellow, cyan, magenta, white, black: bit i of each mask is
// that channel of colour i (bit tricks instead of an indexed array, which llvmpipe spills).
fn palette(i: u32) -> vec3<f32> {
    let k = i % 8u;
    return vec3<f32>(f32((0x69u >> k) & 1u), f32((0x5Au >> k) & 1u), f32((0x74u >> k) & 1u));
}

fn triangle(u: f32) -> f32 {
    return abs(fract(u) * 2.0 - 1.0);
}

// The colour of pixel (x, y) at time t (seconds).
fn shade(x: u32, y: u32, w: u32, h: u32, t: f32, sx: f32, sy: f32) -> vec3<f32> {
    let fx = f32(x) / f32(w);
    let fy = f32(y) / f32(h);

    // The latency code and the frame-id code.
    if (y < CELL_H * 2u && x < CELL_W * CELLS) {
        let v = select(params.frame_id, params.epoch_ms, y < CELL_H);
        return vec3<f32>(f32(code_cell(v, x / CELL_W)));
    }

    // The known-colour swatch.
    if (w > SWATCH + SWATCH_MARGIN && h > SWATCH + SWATCH_MARGIN
        && x >= w - SWATCH - SWATCH_MARGIN && x < w - SWATCH_MARGIN
        && y >= h - SWATCH - SWATCH_MARGIN && y < h - SWATCH_MARGIN) {
        return palette(params.frame_id.x);
    }

    // A slowly moving colour field, so the encoder sees motion everywhere.
    var c = vec3<f32>(
        0.2 + 0.6 * triangle(fx * 1.5 + t * 0.20),
        0.2 + 0.6 * triangle(fy * 1.2 - t * 0.15 + 0.33),
        0.2 + 0.6 * triangle((fx + fy) * 0.8 + t * 0.10 + 0.66),
    );

    // A bouncing square with a checker texture.
    let px = f32(x);
    let py = f32(y);
    if (px >= sx && px < sx + SQUARE && py >= sy && py < sy + SQUARE) {
        let checker = ((u32(px - sx) / 16u) + (u32(py - sy) / 16u)) % 2u;
        c = select(vec3<f32>(0.95, 0.95, 0.95), vec3<f32>(0.1, 0.1, 0.1), checker == 1u);
    }

    // Input indicator: hue from the last key code, brightness from the buttons held.
    if (x < INDICATOR && y >= h - INDICATOR) {
        let k = params.key;
        c = vec3<f32>(
            f32((k * 37u) % 256u) / 255.0,
            f32((k * 91u + 64u) % 256u) / 255.0,
            f32((params.buttons * 85u + 32u) % 256u) / 255.0,
        );
    }

    // Crosshair at the pointer.
    let dx = abs(i32(x) - params.pointer.x);
    let dy = abs(i32(y) - params.pointer.y);
    if ((dx <= 1 && dy <= 12) || (dy <= 1 && dx <= 12)) {
        c = vec3<f32>(1.0, 1.0, 1.0) - c;
    }
    return c;
}

// Each invocation draws PIXELS_PER_INVOCATION horizontally adjacent pixels: on llvmpipe the
// per-invocation overhead is a large share of a simple shader's cost.
@compute @workgroup_size(8, 8, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let w = params.size.x;
    let h = params.size.y;
    let x0 = gid.x * PIXELS_PER_INVOCATION;
    let y = gid.y;
    if (x0 >= w || y >= h) {
        return;
    }
    let t = f32(params.time_ms) / 1000.0;
    let sx = triangle(t * 0.23) * (f32(w) - SQUARE);
    let sy = 64.0 + triangle(t * 0.31) * (f32(h) - SQUARE - 64.0);
    for (var i = 0u; i < PIXELS_PER_INVOCATION; i = i + 1u) {
        let x = x0 + i;
        if (x < w) {
            // Packed R, G, B, A bytes in memory order.
            frame[y * w + x] = pack4x8unorm(vec4<f32>(shade(x, y, w, h, t, sx, sy), 1.0));
        }
    }
}
