//! Injection backends: where decoded [`InputEvent`]s enter the game.
//!
//! Each backend implements [`Injector`]. The node picks one per session by probing at run time
//! ([`probe`]): XTest into the session's own X display, uinput where `/dev/uinput` exists, or
//! (in the node, not here) the channel into the built-in demo title. A backend that cannot run
//! on this machine says why in its [`InjectError`].

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
}
