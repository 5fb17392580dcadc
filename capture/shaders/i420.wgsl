// Packed RGB -> I420 (BT.601, limited range) in one compute pass. The source is a buffer of
// 32-bit pixels: a rendered frame (the demo title), or a presented swapchain image the capture
// layer copied out with vkCmdCopyImageToBuffer. `src_format` says how a pixel is packed:
//   0 = R8G8B8A8 (bytes R, G, B, A), 1 = B8G8R8A8 (bytes B, G, R, A),
//   2 = A2B10G10R10 (R in bits 0..10), 3 = A2R10G10B10 (B in bits 0..10).
// sRGB formats are read as their stored (already gamma-encoded) values, which is what a video
// encoder wants.
//
// The output is a padded I420 layout: `size` is the source size rounded up to a multiple of 8
// (width) and 2 (height); pixels past the source's edge repeat its last column and row.
// Each invocation converts a block of 8x2 pixels: it writes two 32-bit words of luma on each of
// the two rows, one word of Cb and one of Cr (four chroma samples, each the mean of a 2x2 quad).
// Strides and offsets are in words; `src_stride` is in pixels.

struct Params {
    size: vec2<u32>,
    y_offset: u32,
    u_offset: u32,
    v_offset: u32,
    y_stride: u32,
    c_stride: u32,
    src_stride: u32,
    src_size: vec2<u32>,
    src_format: u32,
    reserved: u32,
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

fn ten_bits(w: u32, shift: u32) -> f32 {
    return f32((w >> shift) & 1023u) / 1023.0;
}

fn load(x: u32, y: u32) -> vec3<f32> {
    let cx = min(x, params.src_size.x - 1u);
    let cy = min(y, params.src_size.y - 1u);
    let w = src[cy * params.src_stride + cx];
    switch params.src_format {
        case 1u: {
            return unpack4x8unorm(w).bgr;
        }
        case 2u: {
            return vec3<f32>(ten_bits(w, 0u), ten_bits(w, 10u), ten_bits(w, 20u));
        }
        case 3u: {
            return vec3<f32>(ten_bits(w, 20u), ten_bits(w, 10u), ten_bits(w, 0u));
        }
        default: {
            return unpack4x8unorm(w).rgb;
        }
    }
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
