//! A session's X display. [`Xvfb`] starts a virtual X server on a free display for titles that
//! run without a screen: the node's sandboxed titles, the capture layer's tests, the benchmarks
//! and the native client's tests. A source that captures the display itself belongs next to
//! it.

use std::time::Duration;

/// An Xvfb server on a free display (`-displayfd`), for running titles without a screen;
/// killed when dropped.
#[derive(Debug)]
pub struct Xvfb {
    child: std::process::Child,
    /// The display, `:N`.
    pub display: String,
}

impl Xvfb {
    /// Starts Xvfb with a 1920x1080x24 screen and waits (at most 20 s) until it names its
    /// display, which it does once it accepts clients.
    pub fn start() -> std::io::Result<Xvfb> {
        Self::start_sized(1920, 1080)
    }

    /// Like [`Xvfb::start`] with a `width`x`height`x24 screen.
    pub fn start_sized(width: u32, height: u32) -> std::io::Result<Xvfb> {
        use std::io::{BufRead, BufReader};
        use std::process::{Command, Stdio};
        let screen = format!("{width}x{height}x24");
        let mut child = Command::new("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-screen",
                "0",
                &screen,
                "-nolisten",
                "tcp",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                std::io::Error::new(e.kind(), format!("start Xvfb (apt-get install xvfb): {e}"))
            })?;
        let fail = |child: &mut std::process::Child, what: &str| {
            let _ = child.kill();
            let _ = child.wait();
            std::io::Error::other(what.to_string())
        };
        let Some(stdout) = child.stdout.take() else {
            return Err(fail(&mut child, "Xvfb's stdout is not piped"));
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let Ok(line) = rx.recv_timeout(Duration::from_secs(20)) else {
            return Err(fail(
                &mut child,
                "Xvfb did not report its display within 20 s",
            ));
        };
        let Ok(number) = line.trim().parse::<u32>() else {
            return Err(fail(&mut child, "Xvfb printed no display number"));
        };
        Ok(Xvfb {
            child,
            display: format!(":{number}"),
        })
    }
}

impl Xvfb {
    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Xvfb {
    /// Asks Xvfb to exit (SIGTERM, so it removes its lock file and socket), and kills it if it
    /// has not within 2 s.
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid, which is not reaped yet.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
