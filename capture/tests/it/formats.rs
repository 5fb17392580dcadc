//! The GPU I420 conversion of every source format against the CPU reference, on the known
//! test image, at sizes that need padding and at sizes that do not.

use std::sync::Arc;

use capture::convert::{HostConverter, SourceFormat, reference_i420};
use capture::synthetic::test_pattern;
use capture::vk::VkContext;

pub(crate) fn context() -> Arc<VkContext> {
    VkContext::new().expect("a Vulkan device (install mesa-vulkan-drivers for lavapipe)")
}

pub(crate) fn max_diff(a: &[u8], b: &[u8]) -> u8 {
    assert_eq!(a.len(), b.len(), "plane sizes");
    a.iter()
        .zip(b)
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(0)
}

#[test]
fn every_source_format_matches_the_cpu_reference() {
    let ctx = context();
    let formats = [
        SourceFormat::Rgba8,
        SourceFormat::Bgra8,
        SourceFormat::A2b10g10r10,
        SourceFormat::A2r10g10b10,
    ];
    for (w, h) in [(320, 180), (333, 101), (64, 2)] {
        let pattern = test_pattern(w, h, 3);
        for format in formats {
            let words: Vec<u32> = (0..h)
                .flat_map(|y| (0..w).map(move |x| (x, y)))
                .map(|(x, y)| format.encode(pattern(x, y)))
                .collect();
            let mut conv = HostConverter::new(&ctx, w, h, format).expect("converter");
            let gpu = conv.convert(&words).expect("convert");
            let cpu = reference_i420(w, h, |x, y| format.decode(words[(y * w + x) as usize]));
            let diff = max_diff(&gpu, &cpu);
            assert!(
                diff <= 2,
                "{format:?} {w}x{h}: GPU differs from the CPU reference by {diff}"
            );
            // And the 8-bit reference of the original colours agrees too (10-bit rounding
            // stays well inside the tolerance).
            let cpu8 = reference_i420(w, h, |x, y| pattern(x, y).map(|c| c as f32 / 255.0));
            let diff8 = max_diff(&gpu, &cpu8);
            assert!(
                diff8 <= 2,
                "{format:?} {w}x{h}: {diff8} from the 8-bit reference"
            );
        }
    }
}

#[test]
fn wrong_pixel_counts_are_refused() {
    let ctx = context();
    let mut conv = HostConverter::new(&ctx, 16, 16, SourceFormat::Bgra8).expect("converter");
    let err = conv.convert(&[0; 10]).expect_err("too few pixels");
    assert!(err.to_string().contains("pixel count"), "{err}");
    assert!(HostConverter::new(&ctx, 0, 16, SourceFormat::Bgra8).is_err());
}
