//! The node's PulseAudio server and the sessions' null sinks, driven through `pactl`.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{AudioError, CHANNELS, SAMPLE_RATE};

/// How long [`SoundServer::start`] waits for the new server to answer.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one `pactl` command may take; the server answers in milliseconds when it is up.
const PACTL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the server gets to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// Longest path a Unix socket address holds (`sun_path` is 108 bytes with its NUL).
const SOCKET_PATH_MAX: usize = 107;
/// Longest sink name accepted.
const SINK_NAME_MAX: usize = 64;
/// The entries a server creates in its runtime directory, removed when it stops.
const SOCKET: &str = "native";
const HOME: &str = "home";
const LOG: &str = "pulseaudio.log";
const PULSE_RUNTIME: &str = "pulse";

/// Runs `pactl` against one server, with the environment that keeps it off the user's session.
#[derive(Debug, Clone)]
struct Pactl {
    address: String,
    /// Variables set for each run: a private HOME and XDG directories for a server we own,
    /// nothing for one we only connect to.
    env: Vec<(&'static str, OsString)>,
}

impl Pactl {
    /// Runs `pactl --server <address> <args>` and returns its standard output. Bounded by
    /// [`PACTL_TIMEOUT`]: a hung pactl is killed.
    fn run(&self, args: &[&str]) -> Result<String, AudioError> {
        let failed = |message: String| AudioError::Pactl {
            args: args.join(" "),
            message,
        };
        let mut command = Command::new("pactl");
        command
            .arg("--server")
            .arg(&self.address)
            .args(args)
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in &self.env {
            command.env(key, value);
        }
        let mut child = command.spawn().map_err(|e| spawn_error("pactl", e))?;
        let (mut stdout, mut stderr) = (child.stdout.take(), child.stderr.take());
        // The pipes are read on their own threads so that the wait below can time out even if
        // pactl never closes them.
        let (status, out, err) = std::thread::scope(|scope| {
            let out = scope.spawn(move || read_all(stdout.as_mut()));
            let err = scope.spawn(move || read_all(stderr.as_mut()));
            let status = wait_bounded(&mut child, PACTL_TIMEOUT);
            if status.is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
            (
                status,
                out.join().unwrap_or_default(),
                err.join().unwrap_or_default(),
            )
        });
        match status {
            None => Err(failed(format!("no answer within {PACTL_TIMEOUT:?}"))),
            Some(Err(e)) => Err(failed(e.to_string())),
            Some(Ok(status)) if status.success() => Ok(out),
            Some(Ok(status)) => {
                let message = err.trim();
                Err(failed(if message.is_empty() {
                    status.to_string()
                } else {
                    message.to_owned()
                }))
            }
        }
    }
}

fn read_all(pipe: Option<&mut impl Read>) -> String {
    let mut bytes = Vec::new();
    if let Some(pipe) = pipe {
        let _ = pipe.read_to_end(&mut bytes);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn spawn_error(program: &'static str, source: std::io::Error) -> AudioError {
    if source.kind() == std::io::ErrorKind::NotFound {
        AudioError::MissingProgram {
            program,
            package: match program {
                "pactl" => "pulseaudio-utils",
                _ => "pulseaudio",
            },
        }
    } else {
        AudioError::Spawn { program, source }
    }
}

/// Polls `child` until it exits or `timeout` passes (`None`).
fn wait_bounded(
    child: &mut Child,
    timeout: Duration,
) -> Option<std::io::Result<std::process::ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(Ok(status)),
            Ok(None) if Instant::now() >= deadline => return None,
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Some(Err(e)),
        }
    }
}

/// The daemon a [`SoundServer`] started, and the files it made.
#[derive(Debug)]
struct Daemon {
    child: Child,
    dir: PathBuf,
    /// Whether the runtime directory was made by us, and so is removed with the server.
    created_dir: bool,
}

/// A PulseAudio server the node plays and records session audio through.
///
/// [`SoundServer::start`] runs the node's own private daemon, which stops (and whose files go)
/// when this value drops. [`SoundServer::connect`] uses one that already runs and leaves it
/// running.
#[derive(Debug)]
pub struct SoundServer {
    pactl: Pactl,
    daemon: Option<Daemon>,
}

impl SoundServer {
    /// Starts a private `pulseaudio` daemon with its socket, state and log in `runtime_dir`
    /// (made if missing), and waits up to 10 s until it answers.
    ///
    /// The daemon loads nothing but the native protocol on `<runtime_dir>/native` with
    /// anonymous access (the directory's permissions are the access control), runs with a
    /// cleared environment (no D-Bus, no X11, HOME and XDG directories inside `runtime_dir`),
    /// never exits when idle and does not ask for real-time scheduling. It runs as root too
    /// (it warns that it is not meant to, and works).
    pub fn start(runtime_dir: &Path) -> Result<SoundServer, AudioError> {
        let dir_error = |source| AudioError::RuntimeDir {
            path: runtime_dir.display().to_string(),
            source,
        };
        let created_dir = !runtime_dir.exists();
        std::fs::create_dir_all(runtime_dir).map_err(dir_error)?;
        let dir = std::fs::canonicalize(runtime_dir).map_err(dir_error)?;
        let socket = dir.join(SOCKET);
        let socket_len = socket.as_os_str().len();
        if socket_len > SOCKET_PATH_MAX {
            if created_dir {
                let _ = std::fs::remove_dir(&dir);
            }
            return Err(AudioError::SocketPathTooLong {
                path: socket.display().to_string(),
                len: socket_len,
                max: SOCKET_PATH_MAX,
            });
        }
        let home = dir.join(HOME);
        std::fs::create_dir_all(&home).map_err(dir_error)?;
        let log = std::fs::File::create(dir.join(LOG)).map_err(dir_error)?;
        let env: Vec<(&'static str, OsString)> = vec![
            ("HOME", home.clone().into()),
            ("XDG_RUNTIME_DIR", dir.clone().into()),
            ("XDG_CONFIG_HOME", home.join(".config").into()),
            ("XDG_STATE_HOME", home.join(".local/state").into()),
            ("XDG_CACHE_HOME", home.join(".cache").into()),
            ("PULSE_RUNTIME_PATH", dir.join(PULSE_RUNTIME).into()),
            ("PULSE_STATE_PATH", home.join(".config/pulse").into()),
        ];
        let mut command = Command::new("pulseaudio");
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("LC_ALL", "C")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .args([
                "--daemonize=no",
                "--system=false",
                // No default.pa: the sinks are ours to make, and X11, D-Bus, udev and ALSA
                // modules have no place on a headless node.
                "-n",
                "--exit-idle-time=-1",
                "--use-pid-file=false",
                "--realtime=false",
                "--high-priority=false",
                "--disallow-exit=true",
                "--log-target=stderr",
                "--log-level=notice",
            ])
            .arg("-L")
            .arg(format!(
                "module-native-protocol-unix socket={} auth-anonymous=1 auth-cookie-enabled=0",
                socket.display()
            ))
            // A null sink renders in blocks as long as the longest latency anyone asked for, 2 s
            // while it has no streams, and keeps its already-armed 2 s timer when a stream then
            // asks for 10 ms: the first audio would come up to 2 s late. A suspended sink starts
            // afresh at the latency its first stream asks for, so sinks are suspended as soon as
            // nothing plays into or records from them.
            .args(["-L", "module-suspend-on-idle timeout=0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let child = command.spawn().map_err(|e| {
            remove_files(&dir, created_dir);
            spawn_error("pulseaudio", e)
        })?;
        tracing::debug!(pid = child.id(), dir = %dir.display(), "pulseaudio started");
        let mut server = SoundServer {
            pactl: Pactl {
                address: format!("unix:{}", socket.display()),
                env,
            },
            daemon: Some(Daemon {
                child,
                dir,
                created_dir,
            }),
        };
        // From here on an error drops `server`, which stops the daemon and removes its files.
        server.wait_ready(&socket)?;
        Ok(server)
    }

    fn wait_ready(&mut self, socket: &Path) -> Result<(), AudioError> {
        let started = Instant::now();
        loop {
            let daemon = self
                .daemon
                .as_mut()
                .expect("wait_ready is only called on a server we started");
            if let Ok(Some(status)) = daemon.child.try_wait() {
                return Err(AudioError::ServerExited {
                    status: status.to_string(),
                    log: log_tail(&daemon.dir),
                });
            }
            if socket.exists() && self.pactl.run(&["info"]).is_ok() {
                tracing::info!(
                    server = %self.pactl.address,
                    ms = started.elapsed().as_millis() as u64,
                    "sound server ready"
                );
                return Ok(());
            }
            if started.elapsed() >= START_TIMEOUT {
                return Err(AudioError::ServerTimeout {
                    server: self.pactl.address.clone(),
                    waited: START_TIMEOUT,
                    log: log_tail(&daemon.dir),
                });
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Uses the server that answers at `address` (a PulseAudio server string such as
    /// `unix:/run/user/1000/pulse/native`); dropping the value leaves that server running.
    pub fn connect(address: &str) -> Result<SoundServer, AudioError> {
        let server = SoundServer {
            pactl: Pactl {
                address: address.to_owned(),
                env: Vec::new(),
            },
            daemon: None,
        };
        server
            .pactl
            .run(&["info"])
            .map_err(|e| AudioError::Unreachable {
                server: address.to_owned(),
                message: match e {
                    AudioError::Pactl { message, .. } => message,
                    other => other.to_string(),
                },
            })?;
        Ok(server)
    }

    /// Uses the server at `address` (the node's configured sound server,
    /// [`crate::config::SessionConfig::pulse_server`]) if one is given and answers, else starts
    /// a private one in `runtime_dir` like [`SoundServer::start`]. Reads no environment: the
    /// caller's configuration says which server.
    pub fn connect_or_start(
        address: Option<&str>,
        runtime_dir: &Path,
    ) -> Result<SoundServer, AudioError> {
        if let Some(address) = address.filter(|a| !a.is_empty()) {
            match SoundServer::connect(address) {
                Ok(server) => return Ok(server),
                Err(e) => tracing::warn!(
                    error = %e,
                    "the configured sound server is unusable; starting our own"
                ),
            }
        }
        SoundServer::start(runtime_dir)
    }

    /// The server's address for PulseAudio clients (`PULSE_SERVER`, `pulsesrc server=`), e.g.
    /// `unix:/run/stratus/pulse/native`.
    pub fn server(&self) -> String {
        self.pactl.address.clone()
    }

    /// The process id of the daemon this value started, `None` for a connected server.
    pub fn pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(|d| d.child.id())
    }

    /// The runtime directory of the daemon this value started, `None` for a connected server.
    pub fn runtime_dir(&self) -> Option<&Path> {
        self.daemon.as_ref().map(|d| d.dir.as_path())
    }

    /// Whether some client is playing into the sink named `sink` now.
    pub(crate) fn has_input(&self, sink: &str) -> Result<bool, AudioError> {
        let sinks = self.pactl().run(&["list", "short", "sinks"])?;
        let Some(index) = sinks.lines().find_map(|l| {
            let mut f = l.split('\t');
            let index = f.next()?;
            (f.next()? == sink).then(|| index.to_owned())
        }) else {
            return Ok(false);
        };
        let inputs = self.pactl().run(&["list", "short", "sink-inputs"])?;
        Ok(inputs
            .lines()
            .any(|l| l.split('\t').nth(1) == Some(index.as_str())))
    }

    fn pactl(&self) -> &Pactl {
        &self.pactl
    }
}

impl Drop for SoundServer {
    fn drop(&mut self) {
        let Some(mut daemon) = self.daemon.take() else {
            return;
        };
        if let Ok(pid) = i32::try_from(daemon.child.id())
            && matches!(daemon.child.try_wait(), Ok(None))
        {
            // SAFETY: kill(2) has no memory-safety preconditions. The pid is our child's and it
            // has not been reaped (try_wait just said it runs), so it cannot name another
            // process.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
            if wait_bounded(&mut daemon.child, STOP_GRACE).is_none() {
                tracing::warn!(pid, "pulseaudio ignored SIGTERM for 2 s; killing it");
                let _ = daemon.child.kill();
            }
        }
        let _ = daemon.child.wait();
        remove_files(&daemon.dir, daemon.created_dir);
        tracing::debug!(dir = %daemon.dir.display(), "pulseaudio stopped");
    }
}

/// Removes what a server of ours made in `dir`, and `dir` itself if we made it and nothing else
/// is left in it.
fn remove_files(dir: &Path, created_dir: bool) {
    for file in [SOCKET, LOG] {
        let _ = std::fs::remove_file(dir.join(file));
    }
    for sub in [HOME, PULSE_RUNTIME] {
        let _ = std::fs::remove_dir_all(dir.join(sub));
    }
    if created_dir {
        // Only if empty: anything else in it is not ours.
        let _ = std::fs::remove_dir(dir);
    }
}

/// The last few lines of the daemon's log, for start-up errors.
fn log_tail(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join(LOG)).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(5)..].join(" | ");
    if tail.is_empty() {
        "(empty)".into()
    } else {
        tail
    }
}

/// Checks that `name` can be a sink name: 1 to 64 characters from `A-Z a-z 0-9 _ . -`. Names go
/// into `pactl load-module` arguments, where a space, `=` or quote would change their meaning.
pub fn validate_sink_name(name: &str) -> Result<(), AudioError> {
    let invalid = |reason| {
        Err(AudioError::InvalidSinkName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return invalid("it is empty");
    }
    if name.len() > SINK_NAME_MAX {
        return invalid("it is longer than 64 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return invalid("it has a character outside A-Z a-z 0-9 _ . -");
    }
    Ok(())
}

/// One sink as `pactl -f json list sinks` describes it.
#[derive(Debug)]
struct SinkInfo {
    name: String,
    owner_module: Option<u32>,
    monitor: Option<String>,
}

fn list_sinks(pactl: &Pactl) -> Result<Vec<SinkInfo>, AudioError> {
    let args = ["-f", "json", "list", "sinks"];
    let text = pactl.run(&args)?;
    let bad = |message: String| AudioError::Pactl {
        args: args.join(" "),
        message,
    };
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        bad(format!(
            "unexpected output ({e}); pactl 16 or newer is needed for JSON output"
        ))
    })?;
    let sinks = value
        .as_array()
        .ok_or_else(|| bad("unexpected output: not a JSON array".into()))?;
    Ok(sinks
        .iter()
        .filter_map(|s| {
            Some(SinkInfo {
                name: s.get("name")?.as_str()?.to_owned(),
                owner_module: s
                    .get("owner_module")
                    .and_then(|m| m.as_u64())
                    .and_then(|m| u32::try_from(m).ok()),
                monitor: s
                    .get("monitor_source")
                    .and_then(|m| m.as_str())
                    .map(str::to_owned),
            })
        })
        .collect())
}

/// One session's null sink on a [`SoundServer`]: the title plays into it, [`AudioCapture`]
/// records its monitor. Dropping the value unloads the sink's module.
///
/// [`AudioCapture`]: super::AudioCapture
#[derive(Debug)]
pub struct SessionSink {
    pactl: Pactl,
    name: String,
    monitor: String,
    module: u32,
}

impl SessionSink {
    /// Loads `module-null-sink` named `name` (48 kHz stereo) on `server`. Fails if the name is
    /// not valid ([`validate_sink_name`]) or a sink of that name already exists.
    pub fn create(server: &SoundServer, name: &str) -> Result<SessionSink, AudioError> {
        validate_sink_name(name)?;
        let pactl = server.pactl().clone();
        if list_sinks(&pactl)?.iter().any(|s| s.name == name) {
            return Err(AudioError::SinkExists { name: name.into() });
        }
        let args = [
            "load-module".to_owned(),
            "module-null-sink".to_owned(),
            format!("sink_name={name}"),
            format!("rate={SAMPLE_RATE}"),
            format!("channels={CHANNELS}"),
            format!("sink_properties=device.description={name}"),
        ];
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = pactl.run(&args)?;
        let module: u32 = out.trim().parse().map_err(|_| AudioError::Pactl {
            args: args.join(" "),
            message: format!("expected a module index, got {:?}", out.trim()),
        })?;
        // From here on an error drops `sink`, which unloads the module.
        let mut sink = SessionSink {
            pactl,
            name: name.to_owned(),
            monitor: format!("{name}.monitor"),
            module,
        };
        // PulseAudio renames a sink whose name is taken ("name.2") instead of failing, so a
        // sink made at the same moment by someone else shows here.
        let ours = list_sinks(&sink.pactl)?
            .into_iter()
            .find(|s| s.owner_module == Some(module));
        match ours {
            Some(info) if info.name == name => {
                if let Some(monitor) = info.monitor {
                    sink.monitor = monitor;
                }
            }
            _ => return Err(AudioError::SinkExists { name: name.into() }),
        }
        tracing::debug!(sink = name, module, "session sink created");
        Ok(sink)
    }

    /// The sink's name, which titles play into (`PULSE_SINK`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The sink's monitor source (`<name>.monitor`), which capture records.
    pub fn monitor(&self) -> &str {
        &self.monitor
    }

    /// The index of the `module-null-sink` instance that holds the sink.
    pub fn module_index(&self) -> u32 {
        self.module
    }

    /// The environment a title process needs to play into this sink: `PULSE_SERVER` and
    /// `PULSE_SINK`.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("PULSE_SERVER".into(), self.pactl.address.clone()),
            ("PULSE_SINK".into(), self.name.clone()),
        ]
    }
}

impl Drop for SessionSink {
    fn drop(&mut self) {
        let module = self.module.to_string();
        match self.pactl.run(&["unload-module", &module]) {
            Ok(_) => {
                tracing::debug!(sink = %self.name, module = self.module, "session sink removed")
            }
            Err(e) => tracing::warn!(sink = %self.name, error = %e, "cannot remove session sink"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sink_names_are_checked_before_they_reach_pactl() {
        for good in ["session-42", "a", "S_1.left", &"x".repeat(64)] {
            assert!(validate_sink_name(good).is_ok(), "{good}");
        }
        for (bad, why) in [
            ("", "empty"),
            ("two words", "character"),
            ("a=b", "character"),
            ("x sink_properties=device.description=evil", "character"),
            ("quote\"d", "character"),
            ("tab\t", "character"),
            ("ünï", "character"),
            (&"x".repeat(65), "longer"),
        ] {
            let err = validate_sink_name(bad).expect_err(bad).to_string();
            assert!(err.contains(why), "{bad:?}: {err}");
            assert!(err.contains("A-Z a-z 0-9 _ . -"), "{err}");
        }
    }

    #[test]
    fn a_missing_program_names_its_package() {
        let err = spawn_error("pactl", std::io::ErrorKind::NotFound.into()).to_string();
        assert_eq!(
            err,
            "`pactl` not found; install it with apt-get install pulseaudio-utils"
        );
        let err = spawn_error("pulseaudio", std::io::ErrorKind::NotFound.into()).to_string();
        assert!(err.ends_with("apt-get install pulseaudio"), "{err}");
    }

    #[test]
    fn a_runtime_dir_too_long_for_a_socket_is_refused() {
        let long = std::env::temp_dir().join("s".repeat(120));
        let err = SoundServer::start(&long).expect_err("path too long");
        assert!(
            err.to_string().contains("use a shorter runtime directory"),
            "{err}"
        );
        assert!(!long.exists(), "the directory made for the check is gone");
    }
}
