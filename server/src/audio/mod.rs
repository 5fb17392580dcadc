//! The session's sound path.
//!
//! Each node runs one private PulseAudio server ([`SoundServer`]), or uses the running one its
//! configuration names ([`SoundServer::connect_or_start`]); each session gets its own
//! null sink on it ([`SessionSink`]), which the title plays into because its environment names
//! that sink ([`SessionSink::env`]). [`AudioCapture`] records the sink's monitor with GStreamer
//! (`pulsesrc`), cuts the stream into 20 ms stereo frames at 48 kHz and encodes each with Opus
//! (in-band FEC on), ready for the WebRTC audio track. [`TonePlayer`] is the built-in demo
//! title's sound.
//!
//! ```no_run
//! # async fn demo() -> Result<(), server::audio::AudioError> {
//! use server::audio::{AudioCapture, DEMO_TONE_HZ, SessionSink, SoundServer, TonePlayer};
//! let pulse = SoundServer::start(std::path::Path::new("/run/stratus/pulse"))?;
//! let sink = SessionSink::create(&pulse, "session-42")?;
//! let _tone = TonePlayer::start(&pulse, &sink, DEMO_TONE_HZ)?;
//! let (tx, mut rx) = tokio::sync::mpsc::channel(16);
//! let _capture = AudioCapture::start(&pulse, &sink, tx)?;
//! while let Some(packet) = rx.recv().await {
//!     // packet.data is one Opus packet of packet.duration (20 ms)
//! #   let _ = packet;
//! }
//! # Ok(()) }
//! ```
//!
//! Boundary: knows nothing about WebRTC; the session hands the packets to its audio track.
//! Sessions are isolated by sink, not by server: every title on a node can reach the node's
//! sound server, and nothing here stops one title from playing into another's sink.

mod pipeline;
mod pulse;

use std::time::Duration;

pub use pipeline::{AudioCapture, AudioPacket, TonePlayer};
pub use pulse::{SessionSink, SoundServer, validate_sink_name};

/// Sample rate of the session sink, the capture and the Opus stream, in Hz.
pub const SAMPLE_RATE: u32 = 48_000;
/// Channels of the session sink and the Opus stream (interleaved stereo).
pub const CHANNELS: usize = 2;
/// Samples per channel in one Opus frame: 20 ms at 48 kHz.
pub const FRAME_SAMPLES: usize = 960;
/// Duration of one Opus frame, and so of one [`AudioPacket`].
pub const FRAME_DURATION: Duration = Duration::from_millis(20);
/// Target Opus bitrate in bit/s: transparent for game audio in stereo.
pub const OPUS_BITRATE: i32 = 96_000;
/// Packet loss the Opus encoder plans its in-band FEC for, in percent.
pub const EXPECTED_LOSS_PERCENT: i32 = 10;
/// Frequency of the demo title's tone in Hz: clearly not a harmonic of 50 or 60 Hz mains hum,
/// so a test that finds it knows it heard the title.
pub const DEMO_TONE_HZ: f64 = 660.0;

/// What can go wrong on the sound path. Each message names the fix where there is one.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// A program the sound path runs is not installed.
    #[error("`{program}` not found; install it with apt-get install {package}")]
    MissingProgram {
        /// The program, e.g. `pulseaudio`.
        program: &'static str,
        /// The Debian package that provides it.
        package: &'static str,
    },
    /// A program could not be started for another reason.
    #[error("cannot run `{program}`: {source}")]
    Spawn {
        /// The program.
        program: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// The sound server's runtime directory could not be made or used.
    #[error("cannot prepare the sound server's runtime directory {path}: {source}")]
    RuntimeDir {
        /// The directory.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The server's socket path does not fit in a Unix socket address.
    #[error(
        "the sound server's socket path {path} is {len} bytes, over the {max}-byte limit of Unix \
         sockets; use a shorter runtime directory"
    )]
    SocketPathTooLong {
        /// The socket path.
        path: String,
        /// Its length in bytes.
        len: usize,
        /// The longest path that fits.
        max: usize,
    },
    /// `pulseaudio` exited before it answered.
    #[error("pulseaudio exited during start-up ({status}); its log ends: {log}")]
    ServerExited {
        /// The exit status.
        status: String,
        /// The last lines of its log.
        log: String,
    },
    /// `pulseaudio` did not answer in time.
    #[error("pulseaudio did not answer on {server} within {waited:?}; its log ends: {log}")]
    ServerTimeout {
        /// The address that was tried.
        server: String,
        /// How long the start waited.
        waited: Duration,
        /// The last lines of its log.
        log: String,
    },
    /// No sound server answers at an address given to [`SoundServer::connect`].
    #[error("no sound server answers at {server}: {message}; unset PULSE_SERVER or start one")]
    Unreachable {
        /// The address.
        server: String,
        /// What pactl said.
        message: String,
    },
    /// A `pactl` command failed or did not finish in time.
    #[error("pactl {args} failed: {message}")]
    Pactl {
        /// The command's arguments after `--server`.
        args: String,
        /// What went wrong (pactl's own message when it gave one).
        message: String,
    },
    /// A sink name would be unsafe or ambiguous as a module argument.
    #[error("invalid sink name {name:?}: {reason}; use 1 to 64 characters from A-Z a-z 0-9 _ . -")]
    InvalidSinkName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The server already has a sink of that name (PulseAudio would silently rename ours).
    #[error("the sound server already has a sink named {name}; give each session its own name")]
    SinkExists {
        /// The name.
        name: String,
    },
    /// A GStreamer element the pipeline needs is not installed.
    #[error("GStreamer element `{element}` not found; install it with apt-get install {package}")]
    MissingElement {
        /// The element factory.
        element: &'static str,
        /// The Debian package that provides it.
        package: &'static str,
    },
    /// A GStreamer pipeline could not be built or started.
    #[error("the {what} pipeline failed: {message}")]
    Pipeline {
        /// Which pipeline (`capture` or `tone`).
        what: &'static str,
        /// GStreamer's reason.
        message: String,
    },
    /// The Opus encoder refused its set-up.
    #[error("cannot set up the Opus encoder ({step}): {source}; check that libopus0 is installed")]
    Opus {
        /// The failing call.
        step: &'static str,
        /// libopus's error.
        source: opus::Error,
    },
}
