//! The window: winit on the main thread, frames blitted with softbuffer, the status screens,
//! the stats overlay, the local cursor, and input from the window to the session.
//!
//! Keys the client keeps for itself (not sent to the game): F2 stats overlay, F3 pointer lock
//! (relative mouse for games), F9 start/stop recording a pointer trace, F11 fullscreen; on the
//! picker, arrows and Enter; on a problem screen, Enter tries again and Esc quits.
//!
//! Rooms: this file holds the window's state and its event handling; [`render`] draws it;
//! [`report`] writes the pointer recordings and the JSON report.

mod render;
mod report;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use input::{Horizon, MouseButton as WireButton, TouchPhase};
use tokio::sync::watch;
use winit::application::ApplicationHandler;
use winit::dpi::{PhysicalPosition, PhysicalSize};
use winit::event::{DeviceEvent, DeviceId, ElementState, MouseButton, WindowEvent};
use winit::event_loop::{ActiveEventLoop, ControlFlow, EventLoop};
use winit::keyboard::{KeyCode, PhysicalKey};
use winit::window::{CursorGrabMode, Fullscreen, Window, WindowId};

use crate::audio::AudioOut;
use crate::controller::{self, ClientState, Screen};
use crate::depacketize::AccessUnit;
use crate::draw::ui_scale;
use crate::font::CELL_H;
use crate::input_map::{InputMapper, Letterbox, key_code};
use crate::measure::Measure;
use crate::session::{MediaSink, SessionOptions};
use crate::video::{DecodedFrame, RecoveringDecoder};
use render::{PICKER_GAP, PICKER_TOP};
use report::Recording;

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
    let shared = ClientState::new(move || {
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

type Surface = softbuffer::Surface<Arc<Window>, Arc<Window>>;

struct App {
    options: ClientOptions,
    shared: Arc<ClientState>,
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
