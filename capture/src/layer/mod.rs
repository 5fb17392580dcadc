//! Capturing any Vulkan game: the capture layer and the node's end of its frame ring.
//!
//! **In the game's process** (the cdylib `capture/layer`, `libstratus_capture_layer.so`):
//! [`hooks`] intercepts swapchain creation (adding `TRANSFER_SRC` usage) and
//! `vkQueuePresentKHR`. On each present of the captured swapchain it copies the presented image
//! on the game's queue, converts it to I420 with the same compute pass as the demo title
//! ([`crate::convert`], BT.601 limited range), and hands the frame to its own worker thread,
//! which waits for the GPU and writes it into a slot of the shared-memory ring
//! ([`crate::ring`]). On a CPU device (lavapipe) the copy lands in host memory instead and the
//! worker converts it with SIMD straight into the ring slot ([`grab`]; the path is
//! [`crate::path::PATH_ENV`], `auto` by default). The game never waits for the node: a full ring, a busy GPU or an absent
//! node drop (and count) frames instead. A failure in the layer switches capture off and is
//! logged; the game carries on.
//!
//! **In the node**: [`RingSource`] listens on a Unix socket, receives the ring the layer makes,
//! and yields its frames as a [`Source`]. [`LayerInstall`] writes the layer's manifest and
//! gives the environment that enables the layer for one title:
//!
//! ```no_run
//! use capture::layer::{LayerInstall, RingSource};
//! use capture::Source;
//! let dir = std::env::temp_dir().join("stratus-session-1");
//! let install = LayerInstall::write(&dir, LayerInstall::find_library()?)?;
//! let mut source = RingSource::listen(dir.join("capture.sock"))?;
//! let title = std::process::Command::new("vkcube")
//!     .envs(install.env(source.socket_path()))
//!     .spawn()?;
//! let frame = source.next_frame()?;
//! # drop(title);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! On displays without vertical sync (Xvfb), [`LayerInstall::env_paced`] also sets
//! [`pacer::FPS_ENV`], and the layer paces the title's presents to the session's frame rate.
//!
//! Which swapchain is captured: the most recently created one that is still alive (a resize
//! creates a new swapchain, which takes over; frames then carry the new size).

pub mod grab;
pub mod hooks;
mod loader;
pub mod pacer;
mod worker;

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use grab::Grab;

use crate::ring::{self, RingReader};
use crate::{CaptureError, Frame, Source};

/// The layer's name, as `VK_INSTANCE_LAYERS` names it.
pub const LAYER_NAME: &str = "VK_LAYER_STRATUS_capture";
/// File name of the layer library cargo builds.
pub const LIBRARY_FILE: &str = "libstratus_capture_layer.so";
/// Environment variable naming the layer library, for nodes whose layer is not installed next
/// to their executable.
pub const LIBRARY_ENV: &str = "STRATUS_CAPTURE_LAYER";
/// The variable that enables the implicit variant of the manifest.
pub const ENABLE_ENV: &str = "STRATUS_CAPTURE_ENABLE";
/// File name of the explicit manifest.
pub const MANIFEST_FILE: &str = "VkLayer_stratus_capture.json";

/// The layer's JSON manifest pointing at `library`. An implicit manifest is loaded into every
/// Vulkan program that finds it but is active only while [`ENABLE_ENV`] is `1`.
pub fn manifest_json(library: &Path, implicit: bool) -> String {
    let path = serde_escape(&library.to_string_lossy());
    let enable = if implicit {
        format!(
            ",\n    \"enable_environment\": {{ \"{ENABLE_ENV}\": \"1\" }},\n    \"disable_environment\": {{ \"STRATUS_CAPTURE_DISABLE\": \"1\" }}"
        )
    } else {
        String::new()
    };
    format!(
        "{{\n  \"file_format_version\": \"1.1.2\",\n  \"layer\": {{\n    \"name\": \"{LAYER_NAME}\",\n    \"type\": \"GLOBAL\",\n    \"library_path\": \"{path}\",\n    \"api_version\": \"1.3.0\",\n    \"implementation_version\": \"1\",\n    \"description\": \"Stratus frame capture: copies each presented frame to the node as I420\"{enable}\n  }}\n}}\n"
    )
}

fn serde_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// A written explicit manifest: the directory to add to the loader's search path.
#[derive(Debug, Clone)]
pub struct LayerInstall {
    dir: PathBuf,
    library: PathBuf,
}

impl LayerInstall {
    /// Writes [`MANIFEST_FILE`] for `library` into `dir` (created if missing).
    pub fn write(dir: &Path, library: PathBuf) -> Result<Self, CaptureError> {
        let io = |e: std::io::Error| CaptureError::Layer(format!("{}: {e}", dir.display()));
        std::fs::create_dir_all(dir).map_err(io)?;
        std::fs::write(dir.join(MANIFEST_FILE), manifest_json(&library, false)).map_err(io)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            library,
        })
    }

    /// Finds the layer library: [`LIBRARY_ENV`], else next to the running executable (or one
    /// directory up, where cargo puts libraries for test binaries in `deps/`).
    pub fn find_library() -> Result<PathBuf, CaptureError> {
        if let Some(path) = std::env::var_os(LIBRARY_ENV) {
            let path = PathBuf::from(path);
            return if path.is_file() {
                Ok(path)
            } else {
                Err(CaptureError::Layer(format!(
                    "{LIBRARY_ENV}={} does not exist",
                    path.display()
                )))
            };
        }
        let exe = std::env::current_exe().map_err(|e| CaptureError::Layer(e.to_string()))?;
        let mut dir = exe.parent();
        for _ in 0..2 {
            let Some(d) = dir else { break };
            let candidate = d.join(LIBRARY_FILE);
            if candidate.is_file() {
                return Ok(candidate);
            }
            dir = d.parent();
        }
        Err(CaptureError::Layer(format!(
            "{LIBRARY_FILE} not found next to {}; build it with `cargo build -p capture-layer` \
             (same profile) or set {LIBRARY_ENV}",
            exe.display()
        )))
    }

    /// The directory holding the manifest.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The layer library the manifest names.
    pub fn library(&self) -> &Path {
        &self.library
    }

    /// [`LayerInstall::env`], and the layer paces the title's presents to `fps`.
    pub fn env_paced(&self, socket: &Path, fps: u32) -> Vec<(String, String)> {
        let mut env = self.env(socket);
        env.push((pacer::FPS_ENV.to_string(), fps.to_string()));
        env
    }

    /// Environment for a title: find the manifest, enable the layer, and tell it the socket.
    pub fn env(&self, socket: &Path) -> Vec<(String, String)> {
        vec![
            (
                "VK_ADD_LAYER_PATH".to_string(),
                self.dir.to_string_lossy().into_owned(),
            ),
            ("VK_INSTANCE_LAYERS".to_string(), LAYER_NAME.to_string()),
            (
                ring::SOCKET_ENV.to_string(),
                socket.to_string_lossy().into_owned(),
            ),
        ]
    }
}

/// Counters of a [`RingSource`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RingStats {
    /// Frames read.
    pub frames: u64,
    /// Frames the current producer dropped (ring full, GPU busy, too large), from its ring.
    pub dropped: u64,
    /// Producers (game processes) that connected so far.
    pub producers: u64,
    /// Slots skipped because their fields were impossible.
    pub invalid: u64,
}

/// The node's end of the capture layer: a [`Source`] reading the frame ring of whichever game
/// process connected last to its socket.
#[derive(Debug)]
pub struct RingSource {
    listener: UnixListener,
    path: PathBuf,
    ring: Option<(std::os::unix::net::UnixStream, RingReader)>,
    frame_timeout: Duration,
    size: (u32, u32),
    stats: RingStats,
}

impl RingSource {
    /// Listens on a Unix socket at `path` (a stale socket file there is replaced).
    pub fn listen(path: impl Into<PathBuf>) -> Result<Self, CaptureError> {
        let path = path.into();
        let io = |e: std::io::Error| CaptureError::Layer(format!("{}: {e}", path.display()));
        if path.exists() {
            std::fs::remove_file(&path).map_err(io)?;
        }
        let listener = UnixListener::bind(&path).map_err(io)?;
        listener.set_nonblocking(true).map_err(io)?;
        Ok(Self {
            listener,
            path,
            ring: None,
            frame_timeout: Duration::from_secs(10),
            size: (0, 0),
            stats: RingStats::default(),
        })
    }

    /// The socket path to give the title (see [`LayerInstall::env`]).
    pub fn socket_path(&self) -> &Path {
        &self.path
    }

    /// How long [`Source::next_frame`] waits before it reports that no frame came.
    pub fn set_frame_timeout(&mut self, timeout: Duration) {
        self.frame_timeout = timeout;
    }

    /// True while a game process holds a ring with us.
    pub fn connected(&self) -> bool {
        self.ring.is_some()
    }

    /// The layer's timing of the frame returned last (zero before the first).
    pub fn last_timing(&self) -> ring::FrameTiming {
        self.ring
            .as_ref()
            .map(|(_, r)| r.last_timing())
            .unwrap_or_default()
    }

    /// Counters so far.
    pub fn stats(&self) -> RingStats {
        let mut stats = self.stats;
        if let Some((_, ring)) = &self.ring {
            stats.dropped = ring.dropped();
        }
        stats
    }

    fn accept(&mut self) {
        loop {
            let stream = match self.listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::warn!(error = %e, "capture socket accept failed");
                    return;
                }
            };
            if let Err(e) = stream.set_nonblocking(false) {
                tracing::warn!(error = %e, "capture socket");
                continue;
            }
            match RingReader::receive(&stream, Duration::from_secs(2)) {
                Ok(reader) => {
                    tracing::info!(pid = reader.producer_pid(), "capture layer connected");
                    self.stats.producers += 1;
                    self.ring = Some((stream, reader));
                }
                Err(e) => tracing::warn!(error = %e, "capture layer hello refused"),
            }
        }
    }

    /// Waits up to `timeout` for the next frame; `Ok(None)` when none came.
    pub fn next_frame_timeout(&mut self, timeout: Duration) -> Result<Option<Frame>, CaptureError> {
        let deadline = Instant::now() + timeout;
        loop {
            self.accept();
            if let Some((stream, reader)) = &mut self.ring {
                reader.clear_wakeups();
                if let Some(frame) = reader.try_read() {
                    self.stats.frames += 1;
                    self.stats.invalid = reader.invalid();
                    self.size = (frame.width, frame.height);
                    return Ok(Some(frame));
                }
                if ring::hung_up(stream) {
                    tracing::info!(pid = reader.producer_pid(), "capture layer disconnected");
                    self.stats.dropped = reader.dropped();
                    self.ring = None;
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let mut fds = vec![self.listener.as_raw_fd()];
            if let Some((stream, reader)) = &self.ring {
                fds.push(reader.eventfd().as_raw_fd());
                fds.push(stream.as_raw_fd());
            }
            ring::poll_fds(&fds, deadline - now);
        }
    }
}

impl Source for RingSource {
    fn next_frame(&mut self) -> Result<Frame, CaptureError> {
        self.next_frame_timeout(self.frame_timeout)?
            .ok_or(CaptureError::NoFrame(self.frame_timeout))
    }

    fn size(&self) -> (u32, u32) {
        self.size
    }

    fn describe(&self) -> String {
        match &self.ring {
            Some((_, r)) => format!(
                "capture layer ring of pid {} via {}",
                r.producer_pid(),
                self.path.display()
            ),
            None => format!(
                "capture layer socket {} (no title yet)",
                self.path.display()
            ),
        }
    }
}

impl Drop for RingSource {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_name_the_layer_and_library() {
        let lib = Path::new("/opt/stratus/lib\"x.so");
        let explicit = manifest_json(lib, false);
        assert!(
            explicit.contains("\"name\": \"VK_LAYER_STRATUS_capture\""),
            "{explicit}"
        );
        assert!(
            explicit.contains(r#""library_path": "/opt/stratus/lib\"x.so""#),
            "{explicit}"
        );
        assert!(!explicit.contains("enable_environment"));
        let implicit = manifest_json(lib, true);
        assert!(
            implicit.contains("\"enable_environment\": { \"STRATUS_CAPTURE_ENABLE\": \"1\" }"),
            "{implicit}"
        );
    }

    #[test]
    fn the_title_environment_enables_the_layer() {
        let dir = std::env::temp_dir().join(format!("stratus-manifest-{}", std::process::id()));
        let install = LayerInstall::write(&dir, PathBuf::from("/x/libstratus_capture_layer.so"))
            .expect("write manifest");
        let written = std::fs::read_to_string(dir.join(MANIFEST_FILE)).expect("manifest");
        assert!(written.contains("/x/libstratus_capture_layer.so"));
        let env = install.env(Path::new("/run/s.sock"));
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(
            get("VK_ADD_LAYER_PATH"),
            Some(dir.to_string_lossy().into_owned())
        );
        assert_eq!(get("VK_INSTANCE_LAYERS").as_deref(), Some(LAYER_NAME));
        assert_eq!(get(ring::SOCKET_ENV).as_deref(), Some("/run/s.sock"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
