// RGBA -> I420 (BT.601, limited range) in one compute pass. The source is a buffer of packed
// RGBA8 pixels (a rendered frame, or a presented image copied out with vkCmdCopyImageToBuffer);
// `src_stride` is in pixels.
//
// Each invocation converts a block of 8x2 pixels: it writes two 32-bit words of luma on each of
// the two rows, one word of Cb and one of Cr (four chroma samples, each the mean of a 2x2 quad).
// Width must be a multiple of 8 and height a multiple of 2; strides and offsets are in words.

struct Params {
    size: vec2<u32>,
    y_offset: u32,
    u_offset: u32,
    v_offset: u32,
    y_stride: u32,
    c_stride: u32,
    src_stride: u32,
}

var<immediate> params: Params;
@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;

fn luma(c: vec3<f32>) -> f32 {
    return 16.0 + 65.481 * c.r + 128.553 * c.g + 24.966 * c.b;
}

fn chroma_b(c: vec3<f32>) -> f32 {
    return 128.0 - 37.797 * c.r - 74.203 * c.g + 112.0 * c.b;
}

fn chroma_r(c: vec3<f32>) -> f32 {
    return 128.0 + 112.0 * c.r - 93.786 * c.g - 18.214 * c.b;
}

fn to_byte(v: f32) -> u32 {
    return u32(clamp(v + 0.5, 0.0, 255.0));
}

fn load(x: u32, y: u32) -> vec3<f32> {
    return unpack4x8unorm(src[y * params.src_stride + x]).rgb;
}

@compute @workgroup_size(8, 8, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let bx = gid.x;
    let by = gid.y;
    if (bx * 8u >= params.size.x || by * 2u >= params.size.y) {
        return;
    }
    var row0 = vec2<u32>(0u, 0u);
    var row1 = vec2<u32>(0u, 0u);
    var cb = 0u;
    var cr = 0u;
    let y = by * 2u;
    for (var i = 0u; i < 4u; i = i + 1u) {
        let x = bx * 8u + i * 2u;
        let p00 = load(x, y);
        let p10 = load(x + 1u, y);
        let p01 = load(x, y + 1u);
        let p11 = load(x + 1u, y + 1u);
        let shift = (i % 2u) * 16u;
        let top = (to_byte(luma(p00)) << shift) | (to_byte(luma(p10)) << (shift + 8u));
        let bottom = (to_byte(luma(p01)) << shift) | (to_byte(luma(p11)) << (shift + 8u));
        if (i < 2u) {
            row0.x = row0.x | top;
            row1.x = row1.x | bottom;
        } else {
            row0.y = row0.y | top;
            row1.y = row1.y | bottom;
        }
        let mean = (p00 + p10 + p01 + p11) * 0.25;
        cb = cb | (to_byte(chroma_b(mean)) << (i * 8u));
        cr = cr | (to_byte(chroma_r(mean)) << (i * 8u));
    }
    let first = params.y_offset + y * params.y_stride + bx * 2u;
    dst[first] = row0.x;
    dst[first + 1u] = row0.y;
    let second = first + params.y_stride;
    dst[second] = row1.x;
    dst[second + 1u] = row1.y;
    let c = by * params.c_stride + bx;
    dst[params.u_offset + c] = cb;
    dst[params.v_offset + c] = cr;
}
