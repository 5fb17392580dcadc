//! From winit's events to [`input::InputEvent`]s, as the browser page does from DOM events:
//! physical keys by their DOM `code` name, pointer positions in frame pixels (through the
//! letterbox the picture is shown in), predicted ahead by the Kalman filter, wheel in 1/120
//! notches, touches in frame pixels.

use input::{
    EventKind, Horizon, InputEvent, KeyCode, MouseButton, PointerPredictor, Predictor,
    PredictorConfig,
};
use winit::event::MouseScrollDelta;
use winit::keyboard::KeyCode as WinitKey;

/// The physical key as our [`KeyCode`]. winit names its key codes after the DOM's `code`
/// values, so the name is the mapping; the few it spells differently are listed.
pub fn key_code(key: WinitKey) -> Option<KeyCode> {
    let name = match key {
        WinitKey::SuperLeft => "MetaLeft".to_owned(),
        WinitKey::SuperRight => "MetaRight".to_owned(),
        other => format!("{other:?}"),
    };
    KeyCode::from_dom_code(&name)
}

/// Where the picture sits in the window: scale and offset of the letterbox.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    /// Window pixels per frame pixel.
    pub scale: f64,
    /// Left edge of the picture in the window.
    pub x: f64,
    /// Top edge of the picture in the window.
    pub y: f64,
    /// Frame width in pixels.
    pub frame_w: u32,
    /// Frame height in pixels.
    pub frame_h: u32,
}

impl Letterbox {
    /// The largest picture of `frame` size that fits `window`, centred.
    pub fn fit(window: (u32, u32), frame: (u32, u32)) -> Letterbox {
        let (ww, wh) = (f64::from(window.0.max(1)), f64::from(window.1.max(1)));
        let (fw, fh) = (f64::from(frame.0.max(1)), f64::from(frame.1.max(1)));
        let scale = (ww / fw).min(wh / fh);
        Letterbox {
            scale,
            x: ((ww - fw * scale) / 2.0).floor(),
            y: ((wh - fh * scale) / 2.0).floor(),
            frame_w: frame.0.max(1),
            frame_h: frame.1.max(1),
        }
    }

    /// A window position in frame pixels (unclamped).
    pub fn to_frame(&self, x: f64, y: f64) -> (f64, f64) {
        ((x - self.x) / self.scale, (y - self.y) / self.scale)
    }

    /// A frame position in window pixels.
    pub fn to_window(&self, x: f64, y: f64) -> (f64, f64) {
        (x * self.scale + self.x, y * self.scale + self.y)
    }

    /// Clamps a frame position to the frame and rounds it to wire coordinates.
    pub fn clamp(&self, x: f64, y: f64) -> (u16, u16) {
        let c = |v: f64, max: u32| v.round().clamp(0.0, f64::from(max - 1)).min(65535.0) as u16;
        (c(x, self.frame_w), c(y, self.frame_h))
    }
}

/// Turns window input into wire events, numbering and timestamping them.
#[derive(Debug)]
pub struct InputMapper {
    seq: u32,
    predictor: Predictor,
    /// How far ahead to predict.
    pub horizon: Horizon,
    /// Predict pointer positions (off: send them as they are).
    pub predict: bool,
    /// The last predicted position, in frame pixels, for the local cursor.
    pub predicted: Option<(f64, f64)>,
}

impl InputMapper {
    /// A mapper predicting `horizon` ahead.
    pub fn new(horizon: Horizon, predict: bool) -> Self {
        Self {
            seq: 0,
            predictor: Predictor::new(PredictorConfig::default()),
            horizon,
            predict,
            predicted: None,
        }
    }

    fn event(&mut self, t_us: u64, kind: EventKind) -> InputEvent {
        self.seq = self.seq.wrapping_add(1);
        InputEvent {
            seq: self.seq,
            t_us: t_us.min(input::MAX_TIMESTAMP_US),
            kind,
        }
    }

    /// A key went down or up.
    pub fn key(&mut self, t_us: u64, code: KeyCode, down: bool) -> InputEvent {
        self.event(t_us, EventKind::Key { code, down })
    }

    /// The pointer moved to window position `(x, y)`: the predicted frame position.
    pub fn pointer(&mut self, t_us: u64, x: f64, y: f64, letterbox: &Letterbox) -> InputEvent {
        let (fx, fy) = letterbox.to_frame(x, y);
        let (px, py) = if self.predict {
            self.predictor.observe(t_us, fx, fy);
            self.predictor.predict(t_us + self.horizon.us())
        } else {
            (fx, fy)
        };
        let (wx, wy) = letterbox.clamp(px, py);
        self.predicted = Some((f64::from(wx), f64::from(wy)));
        self.event(t_us, EventKind::MouseMove { x: wx, y: wy })
    }

    /// A relative move (pointer locked).
    pub fn relative(&mut self, t_us: u64, dx: f64, dy: f64) -> InputEvent {
        let c = |v: f64| v.round().clamp(-32768.0, 32767.0) as i16;
        self.event(
            t_us,
            EventKind::MouseMoveRel {
                dx: c(dx),
                dy: c(dy),
            },
        )
    }

    /// A button went down or up at window position `at` (if the pointer is not locked): the
    /// true position first (a press is where the hand is, not where it was heading), then the
    /// button. The predictor starts over.
    pub fn button(
        &mut self,
        t_us: u64,
        button: MouseButton,
        down: bool,
        at: Option<((f64, f64), &Letterbox)>,
    ) -> Vec<InputEvent> {
        self.predictor.restart();
        let mut out = Vec::with_capacity(2);
        if let Some(((x, y), lb)) = at {
            let (fx, fy) = lb.to_frame(x, y);
            let (wx, wy) = lb.clamp(fx, fy);
            out.push(self.event(t_us, EventKind::MouseMove { x: wx, y: wy }));
        }
        out.push(self.event(t_us, EventKind::Button { button, down }));
        out
    }

    /// A wheel turn, in 1/120 notches (a line is a notch; pixels count as they are).
    pub fn wheel(&mut self, t_us: u64, delta: MouseScrollDelta) -> InputEvent {
        let (dx, dy) = match delta {
            MouseScrollDelta::LineDelta(x, y) => (f64::from(x) * 120.0, f64::from(y) * 120.0),
            MouseScrollDelta::PixelDelta(p) => (p.x, p.y),
        };
        let c = |v: f64| v.round().clamp(-32768.0, 32767.0) as i16;
        // DOM wheel deltas are positive downwards; winit's are positive upwards.
        self.event(
            t_us,
            EventKind::Wheel {
                dx: c(-dx),
                dy: c(-dy),
            },
        )
    }

    /// A touch at window position `(x, y)`.
    pub fn touch(
        &mut self,
        t_us: u64,
        id: u64,
        phase: input::TouchPhase,
        (x, y): (f64, f64),
        letterbox: &Letterbox,
    ) -> InputEvent {
        let (fx, fy) = letterbox.to_frame(x, y);
        let (wx, wy) = letterbox.clamp(fx, fy);
        self.event(
            t_us,
            EventKind::Touch {
                id: (id % 256) as u8,
                phase,
                x: wx,
                y: wy,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn winit_key_names_are_dom_codes() {
        for (k, dom) in [
            (WinitKey::KeyW, "KeyW"),
            (WinitKey::Digit1, "Digit1"),
            (WinitKey::ArrowLeft, "ArrowLeft"),
            (WinitKey::Space, "Space"),
            (WinitKey::Enter, "Enter"),
            (WinitKey::ShiftLeft, "ShiftLeft"),
            (WinitKey::ControlRight, "ControlRight"),
            (WinitKey::SuperLeft, "MetaLeft"),
            (WinitKey::F5, "F5"),
            (WinitKey::Numpad7, "Numpad7"),
        ] {
            assert_eq!(key_code(k), KeyCode::from_dom_code(dom), "{k:?}");
            assert!(key_code(k).is_some(), "{k:?} has no KeyCode");
        }
    }

    #[test]
    fn letterbox_maps_both_ways_and_clamps() {
        let lb = Letterbox::fit((1000, 1000), (1280, 720));
        assert!((lb.scale - 1000.0 / 1280.0).abs() < 1e-9);
        assert_eq!((lb.x, lb.y), (0.0, 218.0));
        let (fx, fy) = lb.to_frame(500.0, 500.0);
        let (wx, wy) = lb.to_window(fx, fy);
        assert!((wx - 500.0).abs() < 1e-9 && (wy - 500.0).abs() < 1e-9);
        assert_eq!(lb.clamp(-5.0, 9999.0), (0, 719));
        let same = Letterbox::fit((1280, 720), (1280, 720));
        assert_eq!((same.scale, same.x, same.y), (1.0, 0.0, 0.0));
    }

    #[test]
    fn a_steady_move_is_sent_ahead_and_a_click_at_the_true_position() {
        let lb = Letterbox::fit((1280, 720), (1280, 720));
        let mut m = InputMapper::new(Horizon::new(20.0, 5.0, 5.0), true);
        let mut last = None;
        for i in 0..60u64 {
            // 1 px/ms to the right.
            last = Some(m.pointer(i * 4000, 100.0 + 4.0 * i as f64, 300.0, &lb));
        }
        let Some(InputEvent {
            kind: EventKind::MouseMove { x, .. },
            ..
        }) = last
        else {
            panic!("{last:?}")
        };
        let true_x = 100.0 + 4.0 * 59.0;
        assert!(f64::from(x) > true_x + 15.0, "predicted {x}, true {true_x}");
        let events = m.button(
            240_000,
            MouseButton::Left,
            true,
            Some(((true_x, 300.0), &lb)),
        );
        assert_eq!(
            events[0].kind,
            EventKind::MouseMove {
                x: true_x as u16,
                y: 300
            }
        );
        assert!(events[1].seq > events[0].seq);
        assert_eq!(
            m.wheel(0, MouseScrollDelta::LineDelta(0.0, -1.0)).kind,
            EventKind::Wheel { dx: 0, dy: 120 }
        );
    }
}
