//! The built-in demo title, gathered in one place: its frames (rendered in the node's process
//! by [`DemoSource`]), its input (the [`DemoInjector`] moving its crosshair and colouring its
//! input indicator) and its sound (a steady tone played into the session's sink).

use std::sync::Arc;

use capture::offscreen::{DemoControls, DemoSource};
use input::inject::{InjectError, Injector};
use input::{EventKind, InputEvent, MouseButton};

use crate::audio::{SessionSink, SoundServer, TonePlayer};
use crate::config::VideoConfig;

/// Frequency of the demo title's tone in Hz: clearly not a harmonic of 50 or 60 Hz mains hum,
/// so a test that finds it knows it heard the title.
pub const TONE_HZ: f64 = crate::audio::DEMO_TONE_HZ;

/// Starts the demo's renderer at the session's size and rate, with the injector that drives it.
pub fn start(video: &VideoConfig) -> Result<(DemoSource, DemoInjector), String> {
    let source = DemoSource::with_path(video.width, video.height, video.fps, video.capture_path)
        .map_err(|e| format!("cannot start the demo title: {e}"))?;
    let injector = DemoInjector::new(source.controls(), video.width, video.height);
    Ok((source, injector))
}

/// Plays the demo's tone into `sink`; `None` (logged) when it cannot.
pub fn start_tone(
    server: &SoundServer,
    sink: &SessionSink,
    session_id: &str,
) -> Option<TonePlayer> {
    match TonePlayer::start(server, sink, TONE_HZ) {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::warn!(session_id, "the demo's tone cannot play: {e}");
            None
        }
    }
}

/// Injects into the built-in demo title: the pointer moves its crosshair, buttons and the last
/// key pressed colour its input indicator.
#[derive(Debug)]
pub struct DemoInjector {
    controls: Arc<DemoControls>,
    width: i32,
    height: i32,
}

impl DemoInjector {
    /// An injector for a demo title of this frame size.
    pub fn new(controls: Arc<DemoControls>, width: u32, height: u32) -> Self {
        Self {
            controls,
            width: width as i32,
            height: height as i32,
        }
    }
}

/// The key code the demo title shows for a gamepad button: above the keyboard's range, with
/// distinct low bits (the indicator's colour depends on them) for every pad and button.
pub fn gamepad_key(pad: u8, button: u8) -> u32 {
    0x1000 | ((pad as u32) << 5) | (button as u32 + 1)
}

fn button_bit(button: MouseButton) -> u32 {
    1 << (button as u32)
}

impl Injector for DemoInjector {
    fn name(&self) -> &'static str {
        "demo"
    }

    fn inject(&mut self, event: &InputEvent) -> Result<(), InjectError> {
        let (px, py, buttons, _) = self.controls.snapshot();
        match event.kind {
            EventKind::MouseMove { x, y } => self.controls.set_pointer(x as i32, y as i32),
            EventKind::MouseMoveRel { dx, dy } => self.controls.set_pointer(
                (px + dx as i32).clamp(0, self.width - 1),
                (py + dy as i32).clamp(0, self.height - 1),
            ),
            EventKind::Button { button, down } => {
                let bit = button_bit(button);
                self.controls
                    .set_buttons(if down { buttons | bit } else { buttons & !bit });
            }
            EventKind::Key { code, down: true } => self.controls.set_key(code as u32),
            EventKind::Key { down: false, .. } => {}
            // A gamepad button shows as a key code above the keyboard's range, so the indicator
            // proves it arrived; see `gamepad_key`.
            EventKind::GamepadButton { pad, button, value } if value > 0 => {
                self.controls.set_key(gamepad_key(pad, button))
            }
            EventKind::GamepadButton { .. } => {}
            EventKind::GamepadAxis { .. } => {
                return Err(InjectError::Unsupported {
                    backend: "demo",
                    what: "gamepad axes",
                });
            }
            EventKind::Wheel { .. } => {
                return Err(InjectError::Unsupported {
                    backend: "demo",
                    what: "the wheel",
                });
            }
            EventKind::Touch { x, y, .. } => self.controls.set_pointer(x as i32, y as i32),
        }
        Ok(())
    }
}
