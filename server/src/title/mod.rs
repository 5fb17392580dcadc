//! Starting a session's title: the built-in demo (rendered in the node's process) or a
//! catalog program run in its own [`Sandbox`] with the capture layer, each with its sound in
//! the session's own sink, and input going to the title's display.

pub mod demo;
pub mod pattern;
pub mod sandbox;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use capture::Source;
use capture::layer::LayerInstall;
use input::inject::Injector;
use input::inject::xtest::XTestInjector;
use signaling::catalog::Launch;
use tokio::sync::mpsc;

use crate::audio::{AudioCapture, AudioPacket, SessionSink, SoundServer, TonePlayer};
use crate::config::{SessionConfig, VideoConfig};
use crate::metrics::NodeMetrics;
use sandbox::{Sandbox, SandboxSpec};

/// The built-in demo title's name in [`Launch::Builtin`].
pub const DEMO_BUILTIN: &str = signaling::catalog::DEMO_TITLE;
/// The built-in pattern title's name in [`Launch::Builtin`]; every node offers it.
pub const PATTERN_BUILTIN: &str = signaling::catalog::PATTERN_TITLE;

/// How a session's title runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TitleKind {
    /// The built-in demo, rendered by the node on Vulkan.
    Demo,
    /// The built-in pattern, made on the CPU ([`pattern`]).
    Pattern,
    /// A program from the catalog, run in a sandbox with the capture layer.
    Command(Vec<String>),
}

impl TitleKind {
    /// What the manifest's launch means on this node; no launch is the demo (older signaling).
    pub fn from_launch(launch: Option<&Launch>) -> Result<TitleKind, String> {
        match launch {
            None => Ok(TitleKind::Demo),
            Some(Launch::Builtin { name }) if name == DEMO_BUILTIN => Ok(TitleKind::Demo),
            Some(Launch::Builtin { name }) if name == PATTERN_BUILTIN => Ok(TitleKind::Pattern),
            Some(Launch::Builtin { name }) => {
                Err(format!("this node has no built-in title {name:?}"))
            }
            Some(Launch::Command { argv }) if argv.is_empty() => {
                Err("the title's launch command is empty".into())
            }
            Some(Launch::Command { argv }) => Ok(TitleKind::Command(argv.clone())),
            Some(Launch::Image { image }) => Err(format!(
                "this node cannot run container images ({image}); publish a command title"
            )),
        }
    }
}

/// What every session of a node shares: its private runtime directory, the capture layer's
/// manifest, the sound server, the metrics and the session settings.
#[derive(Debug)]
pub struct NodeResources {
    /// Session settings.
    pub config: SessionConfig,
    /// The node's metrics.
    pub metrics: Arc<NodeMetrics>,
    // Field order is drop order: the sound server before the directory it lives in.
    sound: Result<SoundServer, String>,
    layer: Result<LayerInstall, String>,
    dir: PathBuf,
}

impl NodeResources {
    /// Makes the node's private directory under `config.runtime_root`, writes the capture
    /// layer's manifest and starts the sound server; sessions report into `metrics`. Blocks (the sound server takes a moment);
    /// never fails: what is missing is reported when a session needs it.
    pub fn prepare(config: SessionConfig, metrics: Arc<NodeMetrics>) -> NodeResources {
        let dir = config.runtime_root.join(format!(
            "stratus-node-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        if let Err(e) = std::fs::create_dir_all(&dir) {
            tracing::error!(dir = %dir.display(), "cannot create the node's runtime directory: {e}");
        }
        let layer = LayerInstall::find_library()
            .and_then(|lib| LayerInstall::write(&dir.join("layer"), lib))
            .map_err(|e| e.to_string());
        if let Err(e) = &layer {
            tracing::warn!("catalog titles cannot be captured: {e}");
        }
        let sound = if config.audio {
            SoundServer::connect_or_start(config.pulse_server.as_deref(), &dir.join("pulse"))
                .map_err(|e| e.to_string())
        } else {
            Err("sound is off in the node's configuration".into())
        };
        // (The sound server logs its own readiness.)
        if let Err(e) = &sound {
            tracing::warn!("sessions will have no sound: {e}");
        }
        NodeResources {
            config,
            metrics,
            sound,
            layer,
            dir,
        }
    }

    /// The node's private directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The sound server, when there is one.
    pub fn sound(&self) -> Option<&SoundServer> {
        self.sound.as_ref().ok()
    }
}

impl Drop for NodeResources {
    fn drop(&mut self) {
        if let Ok(sound) = std::mem::replace(&mut self.sound, Err(String::new())) {
            drop(sound);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A session's sound: its sink, what plays into it, and the capture reading its monitor.
/// Field order is drop order: capture, then the player, then the sink.
#[derive(Debug)]
pub struct TitleAudio {
    _capture: AudioCapture,
    _tone: Option<TonePlayer>,
    _sink: SessionSink,
}

/// A started title. Dropping it stops the title and removes its sandbox and sink.
pub struct RunningTitle {
    /// Its frames, until taken by the media path.
    pub source: Option<Box<dyn Source>>,
    /// Where the player's input goes, until taken by the input path.
    pub injector: Option<Box<dyn Injector>>,
    /// The stream's size (the title's first frame for catalog titles).
    pub size: (u32, u32),
    /// The sandbox of a catalog title; polled for the title's exit.
    pub sandbox: Option<Sandbox>,
    /// Its sound, when the node has a sound server and the player takes audio.
    pub audio: Option<TitleAudio>,
}

impl std::fmt::Debug for RunningTitle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningTitle")
            .field("source", &self.source.as_ref().map(|s| s.describe()))
            .field("injector", &self.injector.as_ref().map(|i| i.name()))
            .field("size", &self.size)
            .field("sandbox", &self.sandbox)
            .field("audio", &self.audio)
            .finish()
    }
}

impl RunningTitle {
    /// Starts `kind` for `session_id`. Blocks until the first frame (catalog titles). With
    /// `audio_out`, the session's sound is captured and encoded into it.
    pub fn start(
        kind: &TitleKind,
        session_id: &str,
        video: &VideoConfig,
        resources: &NodeResources,
        audio_out: Option<mpsc::Sender<AudioPacket>>,
    ) -> Result<RunningTitle, String> {
        // The sink comes first: the title is told to play into it.
        let sink = match (resources.sound(), &audio_out) {
            (Some(server), Some(_)) => {
                let name = format!("stratus_{}", &session_id[..session_id.len().min(24)]);
                match SessionSink::create(server, &name) {
                    Ok(sink) => Some(sink),
                    Err(e) => {
                        tracing::warn!(session_id, "the session will have no sound: {e}");
                        None
                    }
                }
            }
            _ => None,
        };
        let mut title = match kind {
            TitleKind::Pattern => {
                let source = pattern::PatternSource::new(video.width, video.height, video.fps)
                    .map_err(|e| format!("cannot start the pattern title: {e}"))?;
                let injector =
                    demo::DemoInjector::new(source.controls(), video.width, video.height);
                RunningTitle {
                    size: source.size(),
                    source: Some(Box::new(source)),
                    injector: Some(Box::new(injector)),
                    sandbox: None,
                    audio: None,
                }
            }
            TitleKind::Demo => {
                let (source, injector) = demo::start(video)?;
                RunningTitle {
                    source: Some(Box::new(source)),
                    injector: Some(Box::new(injector)),
                    size: (video.width, video.height),
                    sandbox: None,
                    audio: None,
                }
            }
            TitleKind::Command(argv) => {
                let layer = resources
                    .layer
                    .as_ref()
                    .map_err(|e| format!("this node cannot capture catalog titles: {e}"))?;
                let mut env = sink.as_ref().map(SessionSink::env).unwrap_or_default();
                // The capture layer in the title converts on the node's path.
                env.push((
                    capture::path::PATH_ENV.to_string(),
                    video.capture_path.to_string(),
                ));
                let spec = SandboxSpec {
                    session_id: session_id.to_string(),
                    argv: argv.clone(),
                    width: video.width,
                    height: video.height,
                    fps: video.fps,
                    first_frame_timeout: resources.config.first_frame_timeout,
                    env,
                };
                let (sandbox, source) =
                    Sandbox::start(resources.dir(), layer, &spec).map_err(|e| e.to_string())?;
                let size = source.size();
                let injector: Option<Box<dyn Injector>> =
                    match XTestInjector::connect(sandbox.display()) {
                        Ok(x) => Some(Box::new(x)),
                        Err(e) => {
                            tracing::warn!(session_id, "the title will get no input: {e}");
                            None
                        }
                    };
                RunningTitle {
                    source: Some(Box::new(source)),
                    injector,
                    size,
                    sandbox: Some(sandbox),
                    audio: None,
                }
            }
        };
        if let (Some(sink), Some(out), Some(server)) = (sink, audio_out, resources.sound()) {
            // The demo's sound is a steady tone, played into its sink like any title's.
            let tone = match kind {
                TitleKind::Demo | TitleKind::Pattern => demo::start_tone(server, &sink, session_id),
                TitleKind::Command(_) => None,
            };
            match AudioCapture::start(server, &sink, out) {
                Ok(capture) => {
                    title.audio = Some(TitleAudio {
                        _capture: capture,
                        _tone: tone,
                        _sink: sink,
                    });
                }
                Err(e) => tracing::warn!(session_id, "the session will have no sound: {e}"),
            }
        }
        Ok(title)
    }

    /// Why the title is over, if it exited on its own.
    pub fn exited(&mut self) -> Option<String> {
        let sandbox = self.sandbox.as_mut()?;
        let status = sandbox.exit_status()?;
        Some(format!("the title exited ({status}){}", sandbox.log_tail()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launches_map_to_title_kinds() {
        assert_eq!(TitleKind::from_launch(None), Ok(TitleKind::Demo));
        assert_eq!(
            TitleKind::from_launch(Some(&Launch::Builtin {
                name: "demo".into()
            })),
            Ok(TitleKind::Demo)
        );
        assert_eq!(
            TitleKind::from_launch(Some(&Launch::Builtin {
                name: "pattern".into()
            })),
            Ok(TitleKind::Pattern)
        );
        assert_eq!(
            TitleKind::from_launch(Some(&Launch::Command {
                argv: vec!["vkcube".into()]
            })),
            Ok(TitleKind::Command(vec!["vkcube".into()]))
        );
        for bad in [
            Launch::Builtin { name: "x".into() },
            Launch::Command { argv: vec![] },
            Launch::Image {
                image: "r/x:1".into(),
            },
        ] {
            let err = TitleKind::from_launch(Some(&bad)).expect_err("refused");
            assert!(!err.is_empty());
        }
    }
}
