//! `stratus-vk-testapp`: a small Vulkan title for testing the capture layer. It opens an X11
//! window, presents the known test image (`capture::synthetic::test_pattern`) for a number of
//! frames, and for every further phase resizes its window, recreates its swapchain at the new
//! size and presents again.
//!
//! ```text
//! stratus-vk-testapp --phase 320x240:60 --phase 640x360:60 [--interval-ms 10] [--format bgra|bgra-srgb|rgba]
//! ```
//!
//! Prints one line per phase:
//! `phase <i> <width>x<height> format <vk::Format> frames <n> present_p50_ms <ms>`.

use std::time::Duration;

use ash::vk;
use capture::synthetic::test_pattern;
use capture_testapp::{Presenter, PresenterOptions};

struct Phase {
    width: u32,
    height: u32,
    frames: u32,
}

fn parse_phase(s: &str) -> Option<Phase> {
    let (size, frames) = s.split_once(':')?;
    let (w, h) = size.split_once('x')?;
    Some(Phase {
        width: w.parse().ok()?,
        height: h.parse().ok()?,
        frames: frames.parse().ok()?,
    })
}

fn run() -> Result<(), String> {
    let mut phases = Vec::new();
    let mut interval = Duration::from_millis(10);
    let mut formats = vec![vk::Format::B8G8R8A8_UNORM];
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().ok_or_else(|| format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--phase" => phases.push(
                parse_phase(&value)
                    .ok_or_else(|| format!("bad phase {value:?}; use WxH:FRAMES"))?,
            ),
            "--interval-ms" => {
                interval =
                    Duration::from_millis(value.parse().map_err(|e| format!("{value}: {e}"))?)
            }
            "--format" => {
                formats = match value.as_str() {
                    "bgra" => vec![vk::Format::B8G8R8A8_UNORM],
                    "bgra-srgb" => vec![vk::Format::B8G8R8A8_SRGB],
                    "rgba" => vec![vk::Format::R8G8B8A8_UNORM],
                    other => return Err(format!("unknown format {other}")),
                }
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let first = phases.first().ok_or("give at least one --phase")?;
    let mut presenter = Presenter::new(&PresenterOptions {
        width: first.width,
        height: first.height,
        formats,
        ..PresenterOptions::default()
    })
    .map_err(|e| e.to_string())?;
    for (i, phase) in phases.iter().enumerate() {
        if i > 0 {
            presenter
                .resize(phase.width, phase.height)
                .map_err(|e| e.to_string())?;
        }
        let (w, h) = presenter.size();
        let words = presenter
            .encode(test_pattern(w, h, i as u32))
            .map_err(|e| e.to_string())?;
        let mut times = Vec::new();
        for _ in 0..phase.frames {
            times.push(presenter.present_words(&words).map_err(|e| e.to_string())?);
            std::thread::sleep(interval);
        }
        times.sort();
        let p50 = times.get(times.len() / 2).copied().unwrap_or_default();
        println!(
            "phase {i} {w}x{h} format {:?} frames {} present_p50_ms {:.3}",
            presenter.format(),
            phase.frames,
            p50.as_secs_f64() * 1000.0
        );
    }
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("stratus-vk-testapp: {e}");
        std::process::exit(1);
    }
}
