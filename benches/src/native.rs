//! Driving the native client (`stratus-client`) from tests and benchmarks: launch it on an X
//! display, read the JSON report it writes (`--report`), take screenshots of its window, and
//! type and click into it through XTEST, as a player's hands would.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{ConnectionExt, ImageFormat, Window};

/// The `stratus-client` binary built next to the running test or benchmark
/// (`target/<profile>/stratus-client`).
pub fn client_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("where is this executable")?;
    // Tests run from target/<profile>/deps, benchmarks from target/<profile>.
    for dir in [exe.parent(), exe.parent().and_then(Path::parent)]
        .into_iter()
        .flatten()
    {
        let candidate = dir.join("stratus-client");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "stratus-client is not built next to {} (cargo build -p client, with the same profile)",
        exe.display()
    )
}

/// A running native client; killed when dropped.
#[derive(Debug)]
pub struct NativeClient {
    child: Child,
    report: PathBuf,
    log: PathBuf,
    _dir: TempDir,
}

/// A directory removed when dropped.
#[derive(Debug)]
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl NativeClient {
    /// Starts the client on X display `display` against the signaling service at `signaling`,
    /// with extra arguments (`--title demo`, `--size 960x540`…).
    pub fn launch(display: &str, signaling: SocketAddr, args: &[&str]) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "stratus-client-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&dir).context("a directory for the client's report")?;
        let dir = TempDir(dir);
        let report = dir.0.join("report.json");
        let log = dir.0.join("client.log");
        let log_file = std::fs::File::create(&log).context("the client's log")?;
        let child = Command::new(client_binary()?)
            .env("DISPLAY", display)
            .env(
                "RUST_LOG",
                std::env::var("STRATUS_CLIENT_LOG")
                    .unwrap_or_else(|_| "info,webrtc=warn,rtc=warn".into()),
            )
            .arg("--signaling")
            .arg(signaling.to_string())
            .arg("--report")
            .arg(&report)
            .args(args)
            .current_dir(&dir.0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .context("start stratus-client")?;
        Ok(NativeClient {
            child,
            report,
            log,
            _dir: dir,
        })
    }

    /// The client's process id (for its CPU time).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The client's working directory (removed when this is dropped).
    pub fn dir(&self) -> &Path {
        &self._dir.0
    }

    /// The latest report, if one was written.
    pub fn report(&self) -> Option<Value> {
        let text = std::fs::read_to_string(&self.report).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// The end of the client's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Waits until `ready` holds for the report; returns it. Fails after `limit`, or at once
    /// if the client exits, with its report and log.
    pub async fn wait_for(
        &mut self,
        what: &str,
        limit: Duration,
        ready: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let deadline = Instant::now() + limit;
        loop {
            let report = self.report();
            if let Some(r) = &report
                && ready(r)
            {
                return Ok(r.clone());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!(
                    "{what}: the client exited ({status}); report {report:?}; log:\n{}",
                    self.log_tail()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{what}: not within {limit:?}; report {}; log:\n{}",
                    summary(report.as_ref()),
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Asks the client to quit (SIGTERM) and waits up to 5 s.
    pub fn stop(&mut self) {
        // SAFETY: kill(2) on our own child's pid, which is not reaped yet.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NativeClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The report without its long sample lists.
pub fn summary(report: Option<&Value>) -> String {
    let Some(Value::Object(map)) = report else {
        return "none".into();
    };
    let mut short = map.clone();
    for (_, v) in short.iter_mut() {
        if let Value::Array(a) = v
            && a.len() > 4
        {
            *v = Value::String(format!("[{} samples]", a.len()));
        }
    }
    Value::Object(short).to_string()
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A screenshot: `width`×`height` packed RGBA.
#[derive(Debug, Clone)]
pub struct Shot {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// RGBA rows.
    pub rgba: Vec<u8>,
}

impl Shot {
    /// The RGB of the pixel at `(x, y)`.
    pub fn rgb(&self, x: usize, y: usize) -> [u8; 3] {
        let i = (y * self.width + x) * 4;
        [self.rgba[i], self.rgba[i + 1], self.rgba[i + 2]]
    }

    /// Mean RGB of the rectangle `(x, y, w, h)`.
    pub fn mean(&self, x: usize, y: usize, w: usize, h: usize) -> [f64; 3] {
        let mut sum = [0.0; 3];
        for yy in y..y + h {
            for xx in x..x + w {
                let p = self.rgb(xx, yy);
                for c in 0..3 {
                    sum[c] += f64::from(p[c]);
                }
            }
        }
        sum.map(|s| s / (w * h) as f64)
    }

    /// Writes the shot as a PNG.
    pub fn save_png(&self, path: &Path) -> anyhow::Result<()> {
        let file = std::fs::File::create(path)?;
        let mut enc = png::Encoder::new(
            std::io::BufWriter::new(file),
            self.width as u32,
            self.height as u32,
        );
        enc.set_color(png::ColorType::Rgba);
        enc.set_depth(png::BitDepth::Eight);
        enc.write_header()?.write_image_data(&self.rgba)?;
        Ok(())
    }
}

/// The top-level window titled `title` on `display`, if there is one.
fn find_window(
    conn: &impl Connection,
    root: Window,
    title: &str,
) -> anyhow::Result<Option<Window>> {
    let tree = conn.query_tree(root)?.reply()?;
    for w in tree.children {
        let name = conn
            .get_property(
                false,
                w,
                x11rb::protocol::xproto::AtomEnum::WM_NAME,
                x11rb::protocol::xproto::AtomEnum::ANY,
                0,
                256,
            )?
            .reply()?;
        if name.value == title.as_bytes() {
            return Ok(Some(w));
        }
    }
    Ok(None)
}

/// Screenshot of the window titled `title` on `display` (the client's is "Stratus").
pub fn screenshot_window(display: &str, title: &str) -> anyhow::Result<Shot> {
    let (conn, screen) = x11rb::connect(Some(display)).context("connect to the X display")?;
    let root = conn.setup().roots[screen].root;
    let window = find_window(&conn, root, title)?
        .with_context(|| format!("no window titled {title:?} on {display}"))?;
    let geo = conn.get_geometry(window)?.reply()?;
    let image = conn
        .get_image(
            ImageFormat::Z_PIXMAP,
            window,
            0,
            0,
            geo.width,
            geo.height,
            !0,
        )?
        .reply()
        .context("read the window's pixels")?;
    let (width, height) = (usize::from(geo.width), usize::from(geo.height));
    if image.data.len() < width * height * 4 {
        bail!(
            "the window's image has {} bytes for {width}x{height} (depth {})",
            image.data.len(),
            image.depth
        );
    }
    // 24-bit TrueColor in 32-bit units: B, G, R, pad.
    let mut rgba = Vec::with_capacity(width * height * 4);
    for p in image.data.chunks_exact(4).take(width * height) {
        rgba.extend_from_slice(&[p[2], p[1], p[0], 255]);
    }
    Ok(Shot {
        width,
        height,
        rgba,
    })
}

/// Where the window titled `title` is on the screen: `(x, y, width, height)`.
pub fn window_rect(display: &str, title: &str) -> anyhow::Result<(i16, i16, u16, u16)> {
    let (conn, screen) = x11rb::connect(Some(display)).context("connect to the X display")?;
    let root = conn.setup().roots[screen].root;
    let window = find_window(&conn, root, title)?
        .with_context(|| format!("no window titled {title:?} on {display}"))?;
    let geo = conn.get_geometry(window)?.reply()?;
    Ok((geo.x, geo.y, geo.width, geo.height))
}

/// Gives the window titled `title` the keyboard focus, as a window manager would when the
/// player clicks it (Xvfb runs none, and winit only reports keys to a focused window).
pub fn focus_window(display: &str, title: &str) -> anyhow::Result<()> {
    let (conn, screen) = x11rb::connect(Some(display)).context("connect to the X display")?;
    let root = conn.setup().roots[screen].root;
    let window = find_window(&conn, root, title)?
        .with_context(|| format!("no window titled {title:?} on {display}"))?;
    conn.set_input_focus(
        x11rb::protocol::xproto::InputFocus::PARENT,
        window,
        x11rb::CURRENT_TIME,
    )?
    .check()
    .context("focus the window")?;
    Ok(())
}
