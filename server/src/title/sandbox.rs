//! The session sandbox: a published title run for one player, apart from every other session.
//!
//! Each sandbox has its own directory (the capture socket and the title's log), its own Xvfb
//! display the size of the stream, and the title's process in its own process group, started
//! from the catalog manifest's command with the capture layer enabled through its
//! environment. [`Sandbox::start`] returns once the title has shown its first frame, or fails
//! with a [`SandboxError`] that says why (the title exited, showed nothing in time, or could not
//! be started). Dropping the sandbox ends the title's whole process group, stops the display
//! and removes the directory: nothing of the session is left behind.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use capture::display::Xvfb;
use capture::layer::{LayerInstall, RingSource};
use capture::{CaptureError, Frame, Source};

/// How long a title has to exit after SIGTERM before its process group is killed.
const TERM_GRACE: Duration = Duration::from_secs(2);
/// How many trailing bytes of the title's log an error quotes.
const LOG_TAIL: usize = 600;
/// The title's log, in the sandbox directory.
const LOG_FILE: &str = "title.log";
/// The capture layer's socket, in the sandbox directory.
const SOCKET_FILE: &str = "capture.sock";
/// The longest path a Unix socket address holds (`sun_path` less its terminating NUL).
const SOCKET_PATH_MAX: usize = 107;
/// Characters of the session id in its directory's name: enough to be unique on a node, short
/// enough to leave room for the runtime directory in the socket path.
const DIR_ID_CHARS: usize = 12;

/// Why a title could not be brought up.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The manifest's command is empty.
    #[error("the title's launch command is empty")]
    EmptyCommand,
    /// The sandbox directory, display or socket could not be set up.
    #[error("cannot set up the session sandbox: {0}")]
    Setup(String),
    /// The program could not be started at all.
    #[error("cannot start the title {program:?}: {error}")]
    Spawn {
        /// `argv[0]`.
        program: String,
        /// What the OS said.
        error: std::io::Error,
    },
    /// The title exited before showing a frame.
    #[error("the title exited ({status}) before showing a frame{log}")]
    ExitedEarly {
        /// How it exited.
        status: String,
        /// The end of its output, prefixed with ": " when there is any.
        log: String,
    },
    /// The title ran but presented nothing in time.
    #[error("the title showed no frame within {timeout:?} (is it a Vulkan title?){log}")]
    NoFirstFrame {
        /// The wait.
        timeout: Duration,
        /// The end of its output, prefixed with ": " when there is any.
        log: String,
    },
    /// Reading the capture ring failed.
    #[error("capture failed while waiting for the first frame: {0}")]
    Capture(#[from] CaptureError),
}

/// What to run and how.
#[derive(Debug, Clone)]
pub struct SandboxSpec {
    /// The session, for names and the title's environment.
    pub session_id: String,
    /// The manifest's command. `{width}`, `{height}` and `{fps}` in any argument are replaced
    /// with the stream's.
    pub argv: Vec<String>,
    /// Stream width; also the display's.
    pub width: u32,
    /// Stream height; also the display's.
    pub height: u32,
    /// Stream frame rate, for `{fps}`.
    pub fps: u32,
    /// How long the title has to show its first frame.
    pub first_frame_timeout: Duration,
    /// Extra environment for the title (its sound sink).
    pub env: Vec<(String, String)>,
}

impl SandboxSpec {
    /// The command line with the placeholders filled in.
    pub fn expanded_argv(&self) -> Vec<String> {
        self.argv
            .iter()
            .map(|a| {
                a.replace("{width}", &self.width.to_string())
                    .replace("{height}", &self.height.to_string())
                    .replace("{fps}", &self.fps.to_string())
            })
            .collect()
    }
}

/// A running title in its sandbox. Dropping it tears everything down.
#[derive(Debug)]
pub struct Sandbox {
    title: Option<Child>,
    exit: Option<ExitStatus>,
    xvfb: Option<Xvfb>,
    dir: PathBuf,
}

impl Sandbox {
    /// Sets up the sandbox under `root`, starts the title and waits for its first frame.
    /// Returns the sandbox and the capture source, which yields that first frame first.
    pub fn start(
        root: &Path,
        layer: &LayerInstall,
        spec: &SandboxSpec,
    ) -> Result<(Sandbox, FirstFrameSource), SandboxError> {
        let argv = spec.expanded_argv();
        let program = argv.first().ok_or(SandboxError::EmptyCommand)?.clone();
        let dir = root.join(format!("session-{}", sanitize(&spec.session_id)));
        let socket = dir.join(SOCKET_FILE);
        let socket_len = socket.as_os_str().len();
        if socket_len > SOCKET_PATH_MAX {
            return Err(SandboxError::Setup(format!(
                "the capture socket {} would be {socket_len} bytes long, and a Unix socket path \
                 takes at most {SOCKET_PATH_MAX}: give the node a shorter --runtime-dir",
                socket.display()
            )));
        }
        std::fs::create_dir_all(root)
            .and_then(|()| std::fs::create_dir(&dir))
            .map_err(|e| SandboxError::Setup(format!("{}: {e}", dir.display())))?;
        // From here on, dropping `sandbox` cleans up whatever was started.
        let mut sandbox = Sandbox {
            title: None,
            exit: None,
            xvfb: None,
            dir,
        };
        let xvfb = Xvfb::start_sized(spec.width, spec.height)
            .map_err(|e| SandboxError::Setup(format!("display: {e}")))?;
        let x_display = xvfb.display.clone();
        sandbox.xvfb = Some(xvfb);
        let mut source = RingSource::listen(socket)
            .map_err(|e| SandboxError::Setup(format!("capture socket: {e}")))?;
        let log = std::fs::File::create(sandbox.log_path())
            .map_err(|e| SandboxError::Setup(format!("title log: {e}")))?;
        let log_err = log
            .try_clone()
            .map_err(|e| SandboxError::Setup(format!("title log: {e}")))?;
        let mut command = Command::new(&program);
        command
            .args(&argv[1..])
            .current_dir(&sandbox.dir)
            .env("DISPLAY", &x_display)
            .env("STRATUS_SESSION_ID", &spec.session_id)
            .env("STRATUS_WIDTH", spec.width.to_string())
            .env("STRATUS_HEIGHT", spec.height.to_string())
            .env("STRATUS_FPS", spec.fps.to_string())
            .envs(layer.env_paced(source.socket_path(), spec.fps))
            .envs(spec.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        // Its own process group, so teardown reaches everything the title starts.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command.spawn().map_err(|error| SandboxError::Spawn {
            program: program.clone(),
            error,
        })?;
        tracing::info!(session_id = %spec.session_id, pid = child.id(), display = %x_display, ?argv, "title started");
        sandbox.title = Some(child);

        let deadline = Instant::now() + spec.first_frame_timeout;
        loop {
            if let Some(status) = sandbox.exit_status() {
                return Err(SandboxError::ExitedEarly {
                    status: status.to_string(),
                    log: sandbox.log_tail(),
                });
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(SandboxError::NoFirstFrame {
                    timeout: spec.first_frame_timeout,
                    log: sandbox.log_tail(),
                });
            }
            let slice = (deadline - now).min(Duration::from_millis(100));
            if let Some(frame) = source.next_frame_timeout(slice)? {
                tracing::info!(
                    session_id = %spec.session_id,
                    width = frame.width,
                    height = frame.height,
                    "the title showed its first frame"
                );
                return Ok((
                    sandbox,
                    FirstFrameSource {
                        first: Some(frame),
                        inner: source,
                    },
                ));
            }
        }
    }

    /// The title's exit status once it has exited (reaped here).
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none()
            && let Some(child) = &mut self.title
            && let Ok(Some(status)) = child.try_wait()
        {
            self.exit = Some(status);
        }
        self.exit
    }

    /// The session's X display, `:N`.
    pub fn display(&self) -> Option<&str> {
        self.xvfb.as_ref().map(|x| x.display.as_str())
    }

    /// The title's process id.
    pub fn title_pid(&self) -> Option<u32> {
        self.title.as_ref().map(Child::id)
    }

    /// The display server's process id.
    pub fn display_pid(&self) -> Option<u32> {
        self.xvfb.as_ref().map(Xvfb::pid)
    }

    /// The sandbox directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join(LOG_FILE)
    }

    /// The last lines of the title's output, as `": …"`, or empty.
    pub fn log_tail(&self) -> String {
        let Ok(bytes) = std::fs::read(self.log_path()) else {
            return String::new();
        };
        let start = bytes.len().saturating_sub(LOG_TAIL);
        let text = String::from_utf8_lossy(&bytes[start..]);
        let text = text.trim();
        if text.is_empty() {
            String::new()
        } else {
            format!(": {}", text.lines().collect::<Vec<_>>().join(" | "))
        }
    }

    fn stop_title(&mut self) {
        let Some(mut child) = self.title.take() else {
            return;
        };
        let pgid = child.id() as libc::pid_t;
        // SAFETY: kill(2) on the process group we created for the title.
        unsafe { libc::kill(-pgid, libc::SIGTERM) };
        let deadline = Instant::now() + TERM_GRACE;
        while Instant::now() < deadline && group_alive(pgid) {
            let _ = child.try_wait();
            std::thread::sleep(Duration::from_millis(10));
        }
        // SAFETY: as above; the group may be gone already, which kill reports harmlessly.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = child.wait();
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.stop_title();
        // The display after the title, so the title does not die of a lost X connection first.
        self.xvfb.take();
        if let Err(e) = std::fs::remove_dir_all(&self.dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %self.dir.display(), "cannot remove the sandbox directory: {e}");
        }
    }
}

/// Whether any process of group `pgid` is still alive (zombies of ours included).
fn group_alive(pgid: libc::pid_t) -> bool {
    // SAFETY: signal 0 only checks for existence and permission.
    unsafe { libc::kill(-pgid, 0) == 0 }
}

/// Keeps `[A-Za-z0-9_-]` of a session id, for file names.
fn sanitize(id: &str) -> String {
    let s: String = id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(DIR_ID_CHARS)
        .collect();
    if s.is_empty() { "anon".into() } else { s }
}

/// The capture ring as a [`Source`], starting with the frame [`Sandbox::start`] waited for.
#[derive(Debug)]
pub struct FirstFrameSource {
    first: Option<Frame>,
    inner: RingSource,
}

impl FirstFrameSource {
    /// The size of the first frame (the title's swapchain).
    pub fn first_size(&self) -> Option<(u32, u32)> {
        self.first.as_ref().map(|f| (f.width, f.height))
    }

    /// The ring's counters.
    pub fn stats(&self) -> capture::layer::RingStats {
        self.inner.stats()
    }
}

impl Source for FirstFrameSource {
    fn next_frame(&mut self) -> Result<Frame, CaptureError> {
        match self.first.take() {
            Some(frame) => Ok(frame),
            None => self.inner.next_frame(),
        }
    }

    fn size(&self) -> (u32, u32) {
        self.first_size().unwrap_or_else(|| self.inner.size())
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_in() {
        let spec = SandboxSpec {
            session_id: "s".into(),
            argv: vec![
                "vkcube".into(),
                "--width".into(),
                "{width}".into(),
                "--height={height}".into(),
                "{fps}fps".into(),
            ],
            width: 1280,
            height: 720,
            fps: 60,
            first_frame_timeout: Duration::from_secs(1),
            env: vec![],
        };
        assert_eq!(
            spec.expanded_argv(),
            ["vkcube", "--width", "1280", "--height=720", "60fps"]
        );
    }

    #[test]
    fn session_ids_become_safe_file_names() {
        assert_eq!(sanitize("ab12-_x"), "ab12-_x");
        assert_eq!(sanitize("../../etc"), "etc");
        assert_eq!(sanitize("/"), "anon");
        assert_eq!(sanitize(&"a".repeat(100)).len(), DIR_ID_CHARS);
    }
}
