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
//
// Cheap per pixel on llvmpipe, which runs this on the CPU with 8 invocations to a SIMD vector
// (consecutive x, one row): each invocation draws a span of 16 pixels as four vec4 stores;
// everything that depends on the row alone (which regions the row crosses, the green of the
// colour field) is worked out once per span, and regions whose edges fall on multiples of 4
// (the codes, the swatch, the indicator; the width is a multiple of 8) once per vec4. The
// colour field is integer arithmetic on 8.24 fixed-point phases, packed with shifts: no float
// maths, conversion or pack4x8unorm per pixel.

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
@group(0) @binding(0) var<storage, read_write> frame: array<vec4<u32>>;

const SPAN: u32 = 16u;
const CELL_W: u32 = 16u;
const CELL_H: u32 = 32u;
const CELLS: u32 = 57u;
const SWATCH: u32 = 192u;
const SWATCH_MARGIN: u32 = 32u;
const INDICATOR: u32 = 128u;
const SQUARE: u32 = 128u;
const OPAQUE: u32 = 0xff000000u;
const WHITE: u32 = 0xffffffffu;
// Phases are 8.24 fixed point: one turn of a triangle wave is 1 << 24.
const TURN: f32 = 16777216.0;

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

// PALETTE[i] = red, green, blue, yellow, cyan, magenta, white, black, packed: bit i of each
// mask is that channel of colour i (bit tricks instead of an indexed array, which llvmpipe
// spills).
fn palette(i: u32) -> u32 {
    let k = i % 8u;
    let r = ((0x69u >> k) & 1u) * 0xffu;
    let g = ((0x5Au >> k) & 1u) * 0xffu;
    let b = ((0x74u >> k) & 1u) * 0xffu;
    return OPAQUE | (b << 16u) | (g << 8u) | r;
}

fn triangle(u: f32) -> f32 {
    return abs(fract(u) * 2.0 - 1.0);
}

// 51 + 153 * triangle(phase), the field's 0.2 + 0.6 * triangle in bytes, for an 8.24 phase.
fn wave(phase: u32) -> u32 {
    let t = abs(i32((phase >> 8u) & 0xffffu) * 2 - 65536);
    return 51u + ((153u * u32(t)) >> 16u);
}

// Everything a span's pixels share.
struct Row {
    // Colour field: phases of red (x) and blue (x + y) at the span's first pixel, their step
    // per pixel, and the row's green, already shifted into place.
    red: u32,
    blue: u32,
    red_step: u32,
    blue_step: u32,
    green: u32,
    // The bouncing square: its left edge, and whether this row crosses it (and which checker
    // row).
    square_x: i32,
    square_row: bool,
    checker_row: u32,
    // Crosshair: whether this row crosses it, and how far from the pointer's x a pixel may be.
    cross_row: bool,
    cross_reach: i32,
}

// The colour of pixel x of the span (offset `i` from its first pixel), before the
// region-by-vec4 overrides.
fn pixel(row: Row, x: u32, i: u32) -> u32 {
    var c = OPAQUE | row.green | (wave(row.blue + i * row.blue_step) << 16u)
        | wave(row.red + i * row.red_step);
    let sq = i32(x) - row.square_x;
    if (row.square_row && sq >= 0 && sq < i32(SQUARE)) {
        let checker = ((u32(sq) / 16u) + row.checker_row) % 2u;
        c = select(0xfff2f2f2u, 0xff1a1a1au, checker == 1u);
    }
    return c;
}

fn crosshair(row: Row, x: u32, c: u32) -> u32 {
    let dx = abs(i32(x) - params.pointer.x);
    return select(c, c ^ 0x00ffffffu, row.cross_row && dx <= row.cross_reach);
}

@compute @workgroup_size(8, 8, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let w = params.size.x;
    let h = params.size.y;
    let x0 = gid.x * SPAN;
    let y = gid.y;
    if (x0 >= w || y >= h) {
        return;
    }
    let base = (y * w + x0) / 4u;

    // The latency code and the frame-id code: a span is exactly one cell.
    if (y < CELL_H * 2u && x0 < CELL_W * CELLS) {
        let v = select(params.frame_id, params.epoch_ms, y < CELL_H);
        let c = select(OPAQUE, WHITE, code_cell(v, x0 / CELL_W) == 1u);
        for (var g = 0u; g < SPAN / 4u; g = g + 1u) {
            frame[base + g] = vec4<u32>(c);
        }
        return;
    }

    let t = f32(params.time_ms) / 1000.0;
    let fw = f32(w);
    let fh = f32(h);
    let fy = f32(y) / fh;
    var row: Row;
    // A slowly moving colour field, so the encoder sees motion everywhere.
    row.red_step = u32(1.5 / fw * TURN);
    row.blue_step = u32(0.8 / fw * TURN);
    row.red = x0 * row.red_step + u32(fract(t * 0.20) * TURN);
    row.blue = x0 * row.blue_step + u32(fract(fy * 0.8 + t * 0.10 + 0.66) * TURN);
    let green = u32(0.5 + 255.0 * (0.2 + 0.6 * triangle(fy * 1.2 - t * 0.15 + 0.33)));
    row.green = green << 8u;
    // A bouncing square with a checker texture.
    row.square_x = i32(triangle(t * 0.23) * (fw - f32(SQUARE)));
    let square_y = i32(64.0 + triangle(t * 0.31) * (fh - f32(SQUARE) - 64.0));
    let sy = i32(y) - square_y;
    row.square_row = sy >= 0 && sy < i32(SQUARE);
    row.checker_row = u32(max(sy, 0)) / 16u;
    // Crosshair at the pointer: a vertical bar 3 wide and 25 high, a horizontal one 25 wide and
    // 3 high.
    let dy = abs(i32(y) - params.pointer.y);
    row.cross_row = dy <= 12;
    row.cross_reach = select(1, 12, dy <= 1);

    // Input indicator: hue from the last key code, brightness from the buttons held.
    let k = params.key;
    let indicator = OPAQUE | (((params.buttons * 85u + 32u) % 256u) << 16u)
        | (((k * 91u + 64u) % 256u) << 8u) | ((k * 37u) % 256u);
    let indicator_row = y >= h - INDICATOR;
    // The known-colour swatch.
    let swatch_x = w - SWATCH - SWATCH_MARGIN;
    let swatch_row = w > SWATCH + SWATCH_MARGIN && h > SWATCH + SWATCH_MARGIN
        && y >= h - SWATCH - SWATCH_MARGIN && y < h - SWATCH_MARGIN;
    let swatch = palette(params.frame_id.x);

    for (var g = 0u; g < SPAN / 4u; g = g + 1u) {
        let x = x0 + 4u * g;
        if (x >= w) {
            break;
        }
        if (swatch_row && x >= swatch_x && x < w - SWATCH_MARGIN) {
            frame[base + g] = vec4<u32>(swatch);
            continue;
        }
        var p: vec4<u32>;
        if (indicator_row && x < INDICATOR) {
            p = vec4<u32>(indicator);
        } else {
            let i = 4u * g;
            p = vec4<u32>(pixel(row, x, i), pixel(row, x + 1u, i + 1u),
                pixel(row, x + 2u, i + 2u), pixel(row, x + 3u, i + 3u));
        }
        if (row.cross_row) {
            p = vec4<u32>(crosshair(row, x, p.x), crosshair(row, x + 1u, p.y),
                crosshair(row, x + 2u, p.z), crosshair(row, x + 3u, p.w));
        }
        frame[base + g] = p;
    }
}
