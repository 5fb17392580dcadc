//! The capture layer's test title, `stratus-vk-testapp`: a minimal windowed Vulkan program
//! that presents a known image, so that a captured frame can be checked against the CPU
//! conversion of that image, and that resizes its window and recreates its swapchain on demand.
//! The layer's tests run it under Xvfb with the layer enabled; `stratus-bench capture` times
//! its present call with and without the layer.
//!
//! [`Presenter`] is the window and its swapchain; the image is
//! `capture::synthetic::test_pattern`. This is test tooling: the production crates do not
//! depend on it (it is why only this crate enables x11rb's unsafe XCB features).
//!
//! ```no_run
//! use capture::synthetic::test_pattern;
//! use capture_testapp::{Presenter, PresenterOptions};
//! let mut presenter = Presenter::new(&PresenterOptions::default())?;
//! let (w, h) = presenter.size();
//! let words = presenter.encode(test_pattern(w, h, 0))?;
//! let spent_in_present = presenter.present_words(&words)?;
//! # Ok::<(), capture_testapp::PresenterError>(())
//! ```
#![deny(missing_docs)]

mod presenter;

pub use presenter::{Presenter, PresenterOptions};

use std::path::PathBuf;

use capture::CaptureError;

/// Where cargo put `stratus-vk-testapp`: `target/<profile>/`, next to the calling test or
/// bench program (`target/<profile>/deps/…` or `target/<profile>/…`). It is this package's
/// binary, so a test of another package finds it only after a workspace build (or one with
/// `-p capture-testapp`); the error says so.
pub fn binary() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("the running program's path: {e}"))?;
    let mut dir = exe.parent();
    for _ in 0..2 {
        let Some(d) = dir else { break };
        let app = d.join("stratus-vk-testapp");
        if app.is_file() {
            return Ok(app);
        }
        dir = d.parent();
    }
    Err(format!(
        "stratus-vk-testapp is not built next to {}: build it with `cargo build -p \
         capture-testapp` (same profile), or build the workspace",
        exe.display()
    ))
}

/// What can go wrong while showing frames in a window.
#[derive(Debug, thiserror::Error)]
pub enum PresenterError {
    /// Vulkan failed: no loader, no device, a call that failed, no memory type.
    #[error(transparent)]
    Capture(#[from] CaptureError),
    /// The window, the display or the swapchain refused.
    #[error("presenter: {0}")]
    Window(String),
}
