//! Injection backends: where decoded [`InputEvent`]s enter the game.
//!
//! Each backend implements [`Injector`]. The node picks one per session by probing at run time
//! ([`probe`]): XTest into the session's own X display ([`XTestInjector`]), uinput where
//! `/dev/uinput` exists ([`UinputInjector`]), or (in the node, not here) the channel into the
//! built-in demo title. A backend that cannot run on this machine says why in its
//! [`InjectError`]; nothing is faked.
//!
//! # Choosing a backend
//!
//! XTest is preferred whenever the session has its own X display: its input reaches only that
//! display, so sessions sharing a node stay isolated, and it needs no privileges. uinput creates
//! kernel input devices that every compositor and X server on the machine may pick up, so it
//! suits a node that runs one session on the machine's own seat, and it is the only backend
//! with gamepads. [`Backend::DEFAULT_ORDER`] encodes that preference.
//!
//! ```no_run
//! use input::inject::{Backend, ProbeConfig, probe};
//!
//! let config = ProbeConfig { display: Some(":57".into()), ..ProbeConfig::default() };
//! let probed = probe(Backend::DEFAULT_ORDER, &config);
//! for reason in &probed.unavailable {
//!     eprintln!("skipped: {reason}");
//! }
//! let Some(mut injector) = probed.injector else { return };
//! println!("injecting through {}", injector.name());
//! # let _ = injector.release_all();
//! ```
//!
//! # Wheel units
//!
//! [`EventKind::Wheel`](crate::EventKind::Wheel) carries 1/120 notch units. Backends that can
//! only express whole notches (XTest's buttons 4–7, uinput's legacy `REL_WHEEL`) accumulate the
//! units per axis and emit one click per whole notch, keeping the remainder; reversing
//! direction drops the remainder, as the kernel's HID driver does, so a half notch one way
//! never cancels half of the next notch the other way.

pub mod uinput;
pub mod xtest;

pub use uinput::{UinputConfig, UinputInjector};
pub use xtest::XTestInjector;

use crate::InputEvent;

/// What can go wrong injecting input.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    /// The backend cannot run here (no display, no `/dev/uinput`, …).
    #[error("{backend} input injection is unavailable: {reason}")]
    Unavailable {
        /// Backend name.
        backend: &'static str,
        /// Why, including what would fix it.
        reason: String,
    },
    /// The backend does not support this kind of event.
    #[error("{backend} cannot inject {what}")]
    Unsupported {
        /// Backend name.
        backend: &'static str,
        /// The event kind.
        what: &'static str,
    },
    /// The backend failed while injecting.
    #[error("{backend} injection failed: {reason}")]
    Failed {
        /// Backend name.
        backend: &'static str,
        /// What the OS or server said.
        reason: String,
    },
}

/// A place input can be injected into.
pub trait Injector: Send {
    /// Short backend name for logs and metrics (`xtest`, `uinput`, `demo`).
    fn name(&self) -> &'static str;

    /// Injects one event. Coordinates are already clamped to the frame by [`crate::gate`].
    fn inject(&mut self, event: &InputEvent) -> Result<(), InjectError>;

    /// Releases every key and button this injector is holding down, for when the player leaves
    /// or the input channel drops mid-press. Backends whose devices release on their own when
    /// closed keep this default, which does nothing.
    fn release_all(&mut self) -> Result<(), InjectError> {
        Ok(())
    }
}

/// An injection backend implemented in this crate, for [`open`] and [`probe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// [`XTestInjector`]: the XTEST extension of an X display.
    XTest,
    /// [`UinputInjector`]: virtual kernel devices through `/dev/uinput`.
    Uinput,
}

impl Backend {
    /// The preferred order: XTest (isolated per display, unprivileged), then uinput.
    pub const DEFAULT_ORDER: &'static [Backend] = &[Backend::XTest, Backend::Uinput];

    /// The backend's name, as its [`Injector::name`] and [`InjectError`]s report it.
    pub const fn name(self) -> &'static str {
        match self {
            Backend::XTest => xtest::BACKEND,
            Backend::Uinput => uinput::BACKEND,
        }
    }
}

/// What [`open`] and [`probe`] need to open a backend.
#[derive(Debug, Clone, Default)]
pub struct ProbeConfig {
    /// The X display of the session, e.g. `":57"`; `None` uses `$DISPLAY`.
    pub display: Option<String>,
    /// Settings for the uinput backend.
    pub uinput: UinputConfig,
}

/// Opens one backend.
pub fn open(backend: Backend, config: &ProbeConfig) -> Result<Box<dyn Injector>, InjectError> {
    Ok(match backend {
        Backend::XTest => Box::new(XTestInjector::connect(config.display.as_deref())?),
        Backend::Uinput => Box::new(UinputInjector::open(&config.uinput)?),
    })
}

/// The outcome of [`probe`]: the injector that opened, and why the ones tried before it did not.
pub struct Probe {
    /// The first backend that opened, or `None` when none could.
    pub injector: Option<Box<dyn Injector>>,
    /// Why each backend tried before it (or all of them) could not open, in the order tried.
    pub unavailable: Vec<InjectError>,
}

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probe")
            .field("injector", &self.injector.as_ref().map(|i| i.name()))
            .field("unavailable", &self.unavailable)
            .finish()
    }
}

/// Tries the backends in `order` and keeps the first that opens.
///
/// Backends after the first success are not opened at all, so probing never leaves stray
/// uinput devices behind.
pub fn probe(order: &[Backend], config: &ProbeConfig) -> Probe {
    let mut unavailable = Vec::new();
    for &backend in order {
        match open(backend, config) {
            Ok(injector) => {
                return Probe {
                    injector: Some(injector),
                    unavailable,
                };
            }
            Err(error) => unavailable.push(error),
        }
    }
    Probe {
        injector: None,
        unavailable,
    }
}

/// Turns a stream of 1/120-notch wheel units into whole notches, keeping the remainder.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct NotchAccumulator {
    /// Units not yet emitted, always within `-119..=119`.
    remainder: i32,
}

impl NotchAccumulator {
    /// Wheel units in one notch (Windows' `WHEEL_DELTA`, the kernel's hi-res unit).
    pub(crate) const UNITS_PER_NOTCH: i32 = 120;

    /// Adds `units` and returns how many whole notches are now complete, signed like `units`.
    pub(crate) fn add(&mut self, units: i16) -> i32 {
        let units = i32::from(units);
        if units == 0 {
            return 0;
        }
        if (self.remainder < 0) != (units < 0) {
            // A change of direction starts a fresh notch.
            self.remainder = 0;
        }
        self.remainder += units;
        let notches = self.remainder / Self::UNITS_PER_NOTCH;
        self.remainder -= notches * Self::UNITS_PER_NOTCH;
        notches
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_notches_pass_through() {
        let mut acc = NotchAccumulator::default();
        assert_eq!(acc.add(120), 1);
        assert_eq!(acc.add(-360), -3);
        assert_eq!(acc.add(0), 0);
        assert_eq!(acc, NotchAccumulator::default());
    }

    #[test]
    fn halves_add_up_to_one_notch_and_keep_the_remainder() {
        let mut acc = NotchAccumulator::default();
        assert_eq!(acc.add(60), 0);
        assert_eq!(acc.add(60), 1);
        assert_eq!(acc.add(100), 0);
        assert_eq!(acc.add(100), 1, "200 units: one notch, 80 left");
        assert_eq!(acc.add(40), 1);
        assert_eq!(acc.add(-30), 0);
        assert_eq!(acc.add(-90), -1);
    }

    #[test]
    fn reversing_direction_drops_the_remainder() {
        let mut acc = NotchAccumulator::default();
        assert_eq!(acc.add(90), 0);
        assert_eq!(acc.add(-60), 0);
        assert_eq!(acc.add(-60), -1, "the 90 units down were forgotten");
        assert_eq!(acc.add(30), 0);
        assert_eq!(acc.add(90), 1);
    }

    #[test]
    fn extremes_do_not_overflow() {
        let mut acc = NotchAccumulator::default();
        assert_eq!(acc.add(i16::MAX), 273);
        assert_eq!(acc.add(i16::MAX), 273, "remainder 7 + 32767 = 32774");
        assert_eq!(acc.add(i16::MIN), -273);
    }

    #[test]
    fn probe_reports_every_backend_that_cannot_open() {
        let config = ProbeConfig {
            // Neither a display name x11rb can parse nor an existing uinput node.
            display: Some("not a display".into()),
            uinput: UinputConfig {
                path: "/nonexistent/uinput".into(),
                ..UinputConfig::default()
            },
        };
        let probed = probe(Backend::DEFAULT_ORDER, &config);
        assert!(probed.injector.is_none(), "{probed:?}");
        assert_eq!(probed.unavailable.len(), 2, "{probed:?}");
        for (error, backend) in probed.unavailable.iter().zip(Backend::DEFAULT_ORDER) {
            match error {
                InjectError::Unavailable { backend: name, .. } => {
                    assert_eq!(*name, backend.name());
                }
                other => panic!("expected unavailable, got {other:?}"),
            }
        }
        assert!(probe(&[], &config).injector.is_none());
    }
}
