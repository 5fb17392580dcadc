//! The window: winit on the main thread, frames blitted with softbuffer, the status screens,
//! the stats overlay, the local cursor, and input from the window to the session.
//!
//! Keys the client keeps for itself (not sent to the game): F2 stats overlay, F3 pointer lock
//! (relative mouse for games), F9 start/stop recording a pointer trace, F11 fullscreen; on the
//! picker, arrows and Enter; on a problem screen, Enter tries again and Esc quits.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use input::{Horizon, MouseButton as WireButton, TouchPhase, Trace};
use tokio::sync::watch;
use winit::application::ApplicationHandler;
use winit::dpi::{PhysicalPosition, PhysicalSize};
use winit::event::{DeviceEvent, DeviceId, ElementState, MouseButton, WindowEvent};
use winit::event_loop::{ActiveEventLoop, ControlFlow, EventLoop};
use winit::keyboard::{KeyCode, PhysicalKey};
use winit::window::{CursorGrabMode, Fullscreen, Window, WindowId};

use crate::audio::AudioOut;
use crate::controller::{self, Screen, Shared};
use crate::depacketize::AccessUnit;
use crate::draw::{blit, draw_cursor, panel, ui_scale};
use crate::font::{CELL_H, Canvas, text_width};
use crate::input_map::{InputMapper, Letterbox, key_code};
use crate::measure::{Measure, epoch_ms_now, percentile};
use crate::session::{MediaSink, SessionOptions};
use crate::video::{DecodedFrame, RecoveringDecoder};

/// How the client runs.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Signaling service, title, timeouts.
    pub session: SessionOptions,
    /// Only this decoder element (else the best that works).
    pub decoder: Option<String>,
    /// Sound output element (`none` for no playback).
    pub audio_sink: Option<String>,
    /// Initial window size in physical pixels.
    pub size: (u32, u32),
    /// Start fullscreen.
    pub fullscreen: bool,
    /// Show the stats overlay from the start.
    pub stats: bool,
    /// Predict the pointer.
    pub predict: bool,
    /// Write a JSON report of the measurements here, twice a second and at exit.
    pub report: Option<PathBuf>,
    /// Record pointer traces from the start into this directory (F9 toggles).
    pub record: Option<PathBuf>,
    /// Quit after this long (tests, benchmarks).
    pub quit_after: Option<Duration>,
}

/// Wakes the window thread.
#[derive(Debug, Clone, Copy)]
enum Wake {
    /// Something to show.
    Redraw,
    /// SIGTERM or SIGINT: quit as if the window were closed (report and recording saved).
    Quit,
}

/// Where decoded frames and sound go: the decoder and the audio output.
struct Sink {
    decoder: RecoveringDecoder,
    audio: AudioOut,
}

impl MediaSink for Sink {
    fn video(&self, unit: AccessUnit, arrived: Instant) -> bool {
        self.decoder.push(&unit, arrived)
    }

    fn audio(&self, payload: &[u8]) {
        self.audio.packet(payload);
    }
}

/// Runs the client until the window closes. Must be called on the main thread.
pub fn run(options: ClientOptions) -> anyhow::Result<()> {
    let launched = Instant::now();
    let event_loop = EventLoop::<Wake>::with_user_event()
        .build()
        .context("open the display (is DISPLAY set?)")?;
    let proxy = event_loop.create_proxy();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("stratus-net")
        .enable_all()
        .build()
        .context("start the async runtime")?;
    let wake_proxy = proxy.clone();
    let shared = Shared::new(move || {
        let _ = wake_proxy.send_event(Wake::Redraw);
    });
    let latest: Arc<Mutex<Option<DecodedFrame>>> = Arc::default();
    let (quit_tx, quit_rx) = watch::channel(false);

    let frame_slot = latest.clone();
    let frame_proxy = proxy.clone();
    let decoder = RecoveringDecoder::start(options.decoder.as_deref(), move |frame| {
        *frame_slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(frame);
        let _ = frame_proxy.send_event(Wake::Redraw);
    });
    let decoder_name;
    let sink = match decoder {
        Ok(decoder) => {
            decoder_name = decoder.element().to_owned();
            let audio = AudioOut::new(options.audio_sink.as_deref())
                .map_err(|e| anyhow::anyhow!("sound: {e}"))?;
            Some(Arc::new(Sink { decoder, audio }))
        }
        Err(e) => {
            tracing::error!("{e}");
            decoder_name = String::new();
            shared.show(Screen::Problem {
                problem: controller::Problem::DecoderMissing,
                detail: e.to_string(),
                retry_at: None,
            });
            None
        }
    };
    if let Some(sink) = &sink {
        let media: Arc<dyn MediaSink> = sink.clone();
        runtime.spawn(controller::run(
            shared.clone(),
            options.session.clone(),
            media,
            quit_rx,
        ));
    }
    let quit_proxy = proxy.clone();
    runtime.spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        let _ = quit_proxy.send_event(Wake::Quit);
    });
    let started = Instant::now();
    let gamepads = match crate::gamepad::spawn(shared.clone(), started) {
        Ok(reader) => Some(reader),
        Err(why) => {
            tracing::warn!("{why}; playing without gamepads");
            None
        }
    };
    let mut app = App {
        recording: options.record.as_ref().map(|_| Recording::new()),
        show_stats: options.stats,
        mapper: InputMapper::new(Horizon::new(10.0, 5.0, 8.0), options.predict),
        options,
        shared: shared.clone(),
        sink,
        decoder_name,
        latest,
        window: None,
        surface: None,
        current: None,
        measure: Measure::default(),
        letterbox: None,
        cursor: None,
        buttons: 0,
        locked: false,
        started,
        last_report: started,
        launched,
        first_frame: None,
        rate_mark: std::cell::Cell::new((started, 0)),
        last_rate: std::cell::Cell::new(0.0),
        error: None,
    };
    let result = event_loop.run_app(&mut app);
    let window_error = app.error.take();
    let _ = quit_tx.send(true);
    app.write_report();
    app.save_recording();
    // Give the session a moment to say goodbye.
    runtime.block_on(async {
        let session = shared
            .session
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(session) = session.and_then(|s| Arc::try_unwrap(s).ok()) {
            session.close().await;
        }
    });
    drop(app);
    drop(gamepads);
    runtime.shutdown_timeout(Duration::from_secs(2));
    result.context("the window's event loop failed")?;
    match window_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// A pointer trace being recorded.
struct Recording {
    trace: Trace,
    started: Instant,
}

impl Recording {
    fn new() -> Self {
        let mut trace = Trace::default();
        trace.meta.source = "stratus-client pointer recording".into();
        Recording {
            trace,
            started: Instant::now(),
        }
    }
}

type Surface = softbuffer::Surface<Arc<Window>, Arc<Window>>;

struct App {
    options: ClientOptions,
    shared: Arc<Shared>,
    sink: Option<Arc<Sink>>,
    decoder_name: String,
    latest: Arc<Mutex<Option<DecodedFrame>>>,
    window: Option<Arc<Window>>,
    surface: Option<Surface>,
    /// The frame on screen (redrawn on resize and over overlays).
    current: Option<DecodedFrame>,
    measure: Measure,
    letterbox: Option<Letterbox>,
    /// The pointer in window pixels.
    cursor: Option<(f64, f64)>,
    buttons: u32,
    locked: bool,
    mapper: InputMapper,
    recording: Option<Recording>,
    show_stats: bool,
    started: Instant,
    last_report: Instant,
    /// The bitrate's last sample: when, and the byte count then.
    rate_mark: std::cell::Cell<(Instant, u64)>,
    /// The bitrate over the last completed window, kbit/s.
    last_rate: std::cell::Cell<f64>,
    /// When `run` was called, for the time to the first picture.
    launched: Instant,
    /// From `launched` to the first picture presented.
    first_frame: Option<Duration>,
    error: Option<anyhow::Error>,
}

impl App {
    fn t_us(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }

    fn send(&self, events: impl IntoIterator<Item = input::InputEvent>) {
        let Some(session) = self.shared.session() else {
            return;
        };
        let mut datagram = Vec::with_capacity(input::MAX_EVENT_BYTES * 2);
        for e in events {
            if let Err(err) = e.encode(&mut datagram) {
                tracing::debug!("input not encodable: {err}");
            }
        }
        if !datagram.is_empty() {
            session.send_input(datagram);
        }
    }

    fn playing(&self) -> bool {
        matches!(self.shared.screen(), Screen::Playing)
    }

    fn set_locked(&mut self, lock: bool) {
        let Some(window) = &self.window else { return };
        if lock {
            let grabbed = window
                .set_cursor_grab(CursorGrabMode::Locked)
                .or_else(|_| window.set_cursor_grab(CursorGrabMode::Confined));
            if let Err(e) = grabbed {
                tracing::warn!("pointer lock refused: {e}");
                return;
            }
            window.set_cursor_visible(false);
        } else {
            let _ = window.set_cursor_grab(CursorGrabMode::None);
            window.set_cursor_visible(true);
        }
        self.locked = lock;
    }

    fn save_recording(&mut self) {
        let Some(rec) = self.recording.take() else {
            return;
        };
        if rec.trace.samples.is_empty() {
            return;
        }
        let dir = self
            .options
            .record
            .clone()
            .unwrap_or_else(|| PathBuf::from("."));
        let path = dir.join(format!(
            "pointer-{}.trace",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0)
        ));
        let mut text = String::new();
        if rec.trace.write(&mut text).is_ok() {
            match std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&path, text)) {
                Ok(()) => tracing::info!(
                    "saved {} pointer samples to {}",
                    rec.trace.samples.len(),
                    path.display()
                ),
                Err(e) => tracing::error!("cannot save the recording to {}: {e}", path.display()),
            }
        }
    }

    fn key(&mut self, event_loop: &ActiveEventLoop, code: KeyCode, down: bool, repeat: bool) {
        let screen = self.shared.screen();
        if down && !repeat {
            match code {
                KeyCode::F2 => {
                    self.show_stats = !self.show_stats;
                    self.redraw();
                    return;
                }
                KeyCode::F3 => {
                    let lock = !self.locked;
                    self.set_locked(lock);
                    return;
                }
                KeyCode::F9 => {
                    if self.recording.is_some() {
                        self.save_recording();
                    } else {
                        self.recording = Some(Recording::new());
                    }
                    return;
                }
                KeyCode::F11 => {
                    if let Some(w) = &self.window {
                        let full = w.fullscreen().is_none();
                        w.set_fullscreen(full.then_some(Fullscreen::Borderless(None)));
                    }
                    return;
                }
                _ => {}
            }
        }
        if matches!(code, KeyCode::F2 | KeyCode::F3 | KeyCode::F9 | KeyCode::F11) {
            return;
        }
        match screen {
            Screen::Playing => {
                if repeat {
                    return;
                }
                if let Some(k) = key_code(code) {
                    if down {
                        self.measure
                            .key_pressed(u32::from(k.as_u16()), Instant::now());
                    }
                    let e = self.mapper.key(self.t_us(), k, down);
                    self.send([e]);
                }
            }
            Screen::Picker { titles, selected } if down => {
                let n = titles.len().max(1);
                let selected = match code {
                    KeyCode::ArrowDown => (selected + 1) % n,
                    KeyCode::ArrowUp => (selected + n - 1) % n,
                    KeyCode::Enter | KeyCode::NumpadEnter => {
                        if let Some((id, _)) = titles.get(selected) {
                            self.shared.pick(id.clone());
                        }
                        return;
                    }
                    KeyCode::Escape => {
                        event_loop.exit();
                        return;
                    }
                    _ => return,
                };
                self.shared.show(Screen::Picker { titles, selected });
            }
            Screen::Problem { retry_at, .. } if down => match code {
                KeyCode::Enter | KeyCode::NumpadEnter => self.shared.retry_now(),
                KeyCode::Escape if retry_at.is_none() => event_loop.exit(),
                _ => {}
            },
            _ => {}
        }
    }

    fn redraw(&self) {
        if let Some(w) = &self.window {
            w.request_redraw();
        }
    }

    fn draw(&mut self) -> anyhow::Result<()> {
        let lines = if self.show_stats {
            self.stats_lines()
        } else {
            Vec::new()
        };
        let (Some(window), Some(surface)) = (self.window.clone(), self.surface.as_mut()) else {
            return Ok(());
        };
        let size = window.inner_size();
        let (Some(w), Some(h)) = (
            std::num::NonZeroU32::new(size.width),
            std::num::NonZeroU32::new(size.height),
        ) else {
            return Ok(());
        };
        surface
            .resize(w, h)
            .map_err(|e| anyhow::anyhow!("resize the window buffer: {e}"))?;
        let fresh = self.latest.lock().unwrap_or_else(|p| p.into_inner()).take();
        let new_frame = fresh.is_some();
        if let Some(f) = fresh {
            self.current = Some(f);
        }
        let screen = self.shared.screen();
        let mut buffer = surface
            .buffer_mut()
            .map_err(|e| anyhow::anyhow!("the window buffer: {e}"))?;
        let (ww, wh) = (w.get() as usize, h.get() as usize);
        // Text and marks grow with the display's scale factor (HiDPI).
        let ui = ui_scale(window.scale_factor());
        let mut canvas = Canvas {
            pixels: &mut buffer,
            width: ww,
            height: wh,
        };
        let show_picture = matches!(screen, Screen::Playing | Screen::Problem { .. });
        match (&self.current, show_picture) {
            (Some(frame), true) => {
                let lb = Letterbox::fit((w.get(), h.get()), (frame.width, frame.height));
                self.letterbox = Some(lb);
                blit(&mut canvas, frame, &lb);
            }
            _ => canvas.fill(0, 0, ww, wh, 0x0010_1418),
        }
        match &screen {
            Screen::Playing => {
                if !self.locked
                    && let (Some(lb), Some((px, py))) = (self.letterbox, self.mapper.predicted)
                    && self.cursor.is_some()
                {
                    let (cx, cy) = lb.to_window(px, py);
                    draw_cursor(&mut canvas, cx, cy, ui);
                }
            }
            Screen::Picker { titles, selected } => {
                let scale = 3 * ui;
                let (left, mut y) = (60 * ui, PICKER_TOP * ui);
                canvas.text(left, y, "Stratus — pick a game", scale, 0x00ff_ffff);
                y += CELL_H * scale * 2;
                for (i, (id, name)) in titles.iter().enumerate() {
                    let colour = if i == *selected {
                        0x00ff_d040
                    } else {
                        0x00c0_c0c0
                    };
                    let marker = if i == *selected { ">" } else { " " };
                    canvas.text(left, y, &format!("{marker} {name} ({id})"), scale, colour);
                    y += (CELL_H * 3 + PICKER_GAP) * ui;
                }
                canvas.text(
                    left,
                    y + 20 * ui,
                    "Up/Down, Enter to play",
                    2 * ui,
                    0x0080_8080,
                );
            }
            Screen::Connecting(what) => {
                panel(&mut canvas, "Connecting", what, None, ui);
            }
            Screen::Problem {
                problem,
                detail,
                retry_at,
            } => {
                let countdown = retry_at.map(|at| {
                    let left = at.saturating_duration_since(Instant::now());
                    format!("Reconnecting in {} s", left.as_secs_f64().ceil() as u64)
                });
                canvas.shade(0, 0, ww, wh);
                panel(
                    &mut canvas,
                    problem.headline(),
                    detail,
                    countdown.as_deref(),
                    ui,
                );
            }
        }
        if !lines.is_empty() {
            let text = 2 * ui;
            let height = lines.len() * CELL_H * text + 16 * ui;
            let width = lines.iter().map(|l| text_width(l, text)).max().unwrap_or(0) + 16 * ui;
            canvas.shade(ww.saturating_sub(width + 8 * ui), 8 * ui, width, height);
            for (i, l) in lines.iter().enumerate() {
                canvas.text(
                    ww.saturating_sub(width),
                    16 * ui + i * CELL_H * text,
                    l,
                    text,
                    0x00e0_ffe0,
                );
            }
        }
        buffer
            .present()
            .map_err(|e| anyhow::anyhow!("present: {e}"))?;
        if new_frame
            && matches!(screen, Screen::Playing)
            && let Some(frame) = &self.current
        {
            let presented_epoch_ms = epoch_ms_now();
            let now = Instant::now();
            if self.first_frame.is_none() {
                self.first_frame = Some(now.duration_since(self.launched));
                tracing::info!(
                    "first picture {:?} after start",
                    now.duration_since(self.launched)
                );
            }
            let measure = &mut self.measure;
            frame.with_pixels(|px| {
                measure.presented(
                    px,
                    frame.stride,
                    frame.height as usize,
                    frame.decode,
                    frame.decoded_at,
                    presented_epoch_ms,
                    now,
                )
            });
        }
        Ok(())
    }

    fn stats_lines(&self) -> Vec<String> {
        let c = &self.shared.counters;
        let m = &self.measure;
        let recent = |q: &std::collections::VecDeque<f64>| {
            percentile(q.iter().rev().take(120).copied(), 50.0)
        };
        let bitrate_kbps = self.bitrate_kbps();
        let packets = c.video_packets.load(Ordering::Relaxed);
        let lost = c.lost_packets.load(Ordering::Relaxed);
        let loss = if packets + lost > 0 {
            100.0 * lost as f64 / (packets + lost) as f64
        } else {
            0.0
        };
        let mut lines = vec![
            format!("fps {}", m.fps()),
            format!("bitrate {:.0} kbit/s", bitrate_kbps),
            format!(
                "rtt {:.1} ms",
                c.rtt_us.load(Ordering::Relaxed) as f64 / 1000.0
            ),
            format!("loss {loss:.2}% ({lost})"),
            format!(
                "decode {:.1} ms ({})",
                recent(&m.decode_ms),
                self.decoder_name
            ),
            format!("glass-to-glass {:.1} ms", recent(&m.g2g_ms)),
        ];
        if let Some(session) = self.shared.session() {
            lines.push(format!("node {}", session.node_id()));
        }
        if self.recording.is_some() {
            lines.push("recording pointer (F9 to save)".into());
        }
        lines
    }

    /// Video bitrate over the last second or so (since the previous sample a second old).
    fn bitrate_kbps(&self) -> f64 {
        let bytes = self.shared.counters.video_bytes.load(Ordering::Relaxed);
        let (then, then_bytes) = self.rate_mark.get();
        let secs = then.elapsed().as_secs_f64();
        if secs >= 1.0 {
            self.rate_mark.set((Instant::now(), bytes));
            self.last_rate
                .set(bytes.saturating_sub(then_bytes) as f64 * 8.0 / secs / 1000.0);
        }
        self.last_rate.get()
    }

    fn write_report(&self) {
        let Some(path) = &self.options.report else {
            return;
        };
        let c = &self.shared.counters;
        let m = &self.measure;
        let screen = self.shared.screen();
        let (problem, detail) = match &screen {
            Screen::Problem {
                problem, detail, ..
            } => (Some(problem.name()), Some(detail.clone())),
            _ => (None, None),
        };
        let session = self.shared.session();
        let audio = self.sink.as_ref().map(|s| s.audio.level());
        let window = self
            .window
            .as_ref()
            .map(|w| (w.inner_size().width, w.inner_size().height));
        let frame = self.current.as_ref().map(|f| (f.width, f.height));
        let report = serde_json::json!({
            "screen": screen.name(),
            "problem": problem,
            "detail": detail,
            "session_id": session.as_ref().map(|s| s.session_id().to_owned()),
            "node_id": session.as_ref().map(|s| s.node_id().to_owned()),
            "reconnects": self.shared.reconnects.load(Ordering::Relaxed),
            "decoder": self.decoder_name,
            "window": window,
            "frame": frame,
            "frames_presented": m.presented,
            "first_frame_ms": self.first_frame.map(|d| d.as_secs_f64() * 1000.0),
            "fps": m.fps(),
            "last_frame_id": m.last_frame_id,
            "glass_to_glass_ms": m.g2g_ms,
            "decode_ms": m.decode_ms,
            "client_ms": m.client_ms,
            "input_to_photon_ms": m.i2p_ms,
            "video_packets": c.video_packets.load(Ordering::Relaxed),
            "video_bytes": c.video_bytes.load(Ordering::Relaxed),
            "lost_packets": c.lost_packets.load(Ordering::Relaxed),
            "keyframe_requests": c.keyframe_requests.load(Ordering::Relaxed),
            "units": c.units.load(Ordering::Relaxed),
            "audio_packets": c.audio_packets.load(Ordering::Relaxed),
            "audio": audio.map(|a| serde_json::json!({
                "packets": a.packets, "bad_packets": a.bad_packets, "samples": a.samples,
                "peak": a.peak, "rms": a.rms,
            })),
            "audio_output": self.sink.as_ref().map(|s| s.audio.silent_because().map_or("playing".to_owned(), str::to_owned)),
            "input_sent": c.input_sent.load(Ordering::Relaxed),
            "input_dropped": c.input_dropped.load(Ordering::Relaxed),
            "rtt_ms": c.rtt_us.load(Ordering::Relaxed) as f64 / 1000.0,
            "stats_overlay": self.show_stats,
            "pointer_locked": self.locked,
        });
        let tmp = path.with_extension("tmp");
        let written =
            std::fs::write(&tmp, report.to_string()).and_then(|_| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            tracing::warn!("cannot write the report to {}: {e}", path.display());
        }
    }
}

impl ApplicationHandler<Wake> for App {
    fn resumed(&mut self, event_loop: &ActiveEventLoop) {
        if self.window.is_some() {
            return;
        }
        let attrs = Window::default_attributes()
            .with_title("Stratus")
            .with_inner_size(PhysicalSize::new(self.options.size.0, self.options.size.1))
            .with_resizable(true)
            .with_fullscreen(
                self.options
                    .fullscreen
                    .then_some(Fullscreen::Borderless(None)),
            );
        let window = match event_loop.create_window(attrs) {
            Ok(w) => Arc::new(w),
            Err(e) => {
                self.error = Some(anyhow::anyhow!("cannot open the window: {e}"));
                event_loop.exit();
                return;
            }
        };
        let surface = softbuffer::Context::new(window.clone())
            .and_then(|ctx| Surface::new(&ctx, window.clone()));
        match surface {
            Ok(s) => self.surface = Some(s),
            Err(e) => {
                self.error = Some(anyhow::anyhow!("cannot draw into the window: {e}"));
                event_loop.exit();
                return;
            }
        }
        self.window = Some(window);
        self.redraw();
    }

    fn user_event(&mut self, event_loop: &ActiveEventLoop, event: Wake) {
        match event {
            Wake::Redraw => self.redraw(),
            Wake::Quit => event_loop.exit(),
        }
    }

    fn window_event(&mut self, event_loop: &ActiveEventLoop, _id: WindowId, event: WindowEvent) {
        match event {
            WindowEvent::CloseRequested => event_loop.exit(),
            WindowEvent::RedrawRequested => {
                if let Err(e) = self.draw() {
                    tracing::error!("{e:#}");
                }
            }
            WindowEvent::Resized(_) | WindowEvent::ScaleFactorChanged { .. } => self.redraw(),
            WindowEvent::Focused(false) if self.locked => self.set_locked(false),
            WindowEvent::KeyboardInput { event, .. } => {
                tracing::debug!(key = ?event.physical_key, state = ?event.state, "key");
                if let PhysicalKey::Code(code) = event.physical_key {
                    self.key(
                        event_loop,
                        code,
                        event.state == ElementState::Pressed,
                        event.repeat,
                    );
                }
            }
            WindowEvent::CursorMoved {
                position: PhysicalPosition { x, y },
                ..
            } => {
                self.cursor = Some((x, y));
                if self.locked || !self.playing() {
                    return;
                }
                let Some(lb) = self.letterbox else { return };
                let t = self.t_us();
                if let Some(rec) = &mut self.recording {
                    let (fx, fy) = lb.to_frame(x, y);
                    rec.trace.samples.push(input::trace::Sample {
                        t_us: rec.started.elapsed().as_micros() as u64,
                        x: fx,
                        y: fy,
                        buttons: self.buttons,
                    });
                }
                let e = self.mapper.pointer(t, x, y, &lb);
                self.send([e]);
                self.redraw();
            }
            WindowEvent::MouseInput { state, button, .. } => {
                tracing::debug!(?button, ?state, "button");
                let down = state == ElementState::Pressed;
                if let Screen::Picker { titles, .. } = self.shared.screen()
                    && down
                    && let Some((_, y)) = self.cursor
                {
                    let ui = self
                        .window
                        .as_ref()
                        .map_or(1, |w| ui_scale(w.scale_factor()));
                    // Rows start below the heading (two rows of scale 3).
                    let first = (PICKER_TOP + CELL_H * 6) * ui;
                    let row = (y as usize).saturating_sub(first) / ((CELL_H * 3 + PICKER_GAP) * ui);
                    if let Some((id, _)) = titles.get(row) {
                        self.shared.pick(id.clone());
                    }
                    return;
                }
                if !self.playing() {
                    return;
                }
                let Some(b) = wire_button(button) else { return };
                let bit = 1 << (b as u32);
                if down {
                    self.buttons |= bit;
                } else {
                    self.buttons &= !bit;
                }
                let at = match (self.locked, self.cursor, self.letterbox.as_ref()) {
                    (false, Some(pos), Some(lb)) => Some((pos, lb)),
                    _ => None,
                };
                let t = self.t_us();
                let events = self.mapper.button(t, b, down, at);
                self.send(events);
            }
            WindowEvent::MouseWheel { delta, .. } if self.playing() => {
                let e = self.mapper.wheel(self.t_us(), delta);
                self.send([e]);
            }
            WindowEvent::Touch(touch) if self.playing() => {
                let Some(lb) = self.letterbox else { return };
                let phase = match touch.phase {
                    winit::event::TouchPhase::Started => TouchPhase::Start,
                    winit::event::TouchPhase::Moved => TouchPhase::Move,
                    winit::event::TouchPhase::Ended => TouchPhase::End,
                    winit::event::TouchPhase::Cancelled => TouchPhase::Cancel,
                };
                let e = self.mapper.touch(
                    self.t_us(),
                    touch.id,
                    phase,
                    (touch.location.x, touch.location.y),
                    &lb,
                );
                self.send([e]);
            }
            _ => {}
        }
    }

    fn device_event(&mut self, _event_loop: &ActiveEventLoop, _id: DeviceId, event: DeviceEvent) {
        if let DeviceEvent::MouseMotion { delta: (dx, dy) } = event
            && self.locked
            && self.playing()
        {
            let e = self.mapper.relative(self.t_us(), dx, dy);
            self.send([e]);
        }
    }

    fn about_to_wait(&mut self, event_loop: &ActiveEventLoop) {
        let now = Instant::now();
        if now.duration_since(self.last_report) >= Duration::from_millis(500) {
            self.last_report = now;
            self.write_report();
        }
        if let Some(limit) = self.options.quit_after
            && now.duration_since(self.started) >= limit
        {
            event_loop.exit();
            return;
        }
        // Tick for countdowns, reports and the overlay even when no frame arrives.
        let tick = if matches!(
            self.shared.screen(),
            Screen::Problem {
                retry_at: Some(_),
                ..
            }
        ) {
            self.redraw();
            Duration::from_millis(250)
        } else {
            Duration::from_millis(500)
        };
        event_loop.set_control_flow(ControlFlow::WaitUntil(now + tick));
    }
}

fn wire_button(b: MouseButton) -> Option<WireButton> {
    Some(match b {
        MouseButton::Left => WireButton::Left,
        MouseButton::Middle => WireButton::Middle,
        MouseButton::Right => WireButton::Right,
        MouseButton::Back => WireButton::Back,
        MouseButton::Forward => WireButton::Forward,
        MouseButton::Other(_) => return None,
    })
}

/// Where the picker's heading starts, and the gap between its rows, at scale factor 1.
const PICKER_TOP: usize = 60;
const PICKER_GAP: usize = 8;
