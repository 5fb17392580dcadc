//! The client's session loop, on the async runtime: pick a title, connect, play until the
//! session ends, say what happened, and connect again (to whichever healthy node signaling
//! assigns) after a visible countdown. The window thread reads [`Screen`] and the session
//! handle from [`ClientState`]; the controller wakes it through `wake`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};

use crate::session::{ConnectError, MediaSink, Session, SessionCounters, SessionOptions};

/// Retry delays after failures that may pass by themselves, in seconds.
const BACKOFF_S: [u64; 5] = [1, 2, 4, 8, 10];
/// How long the node-lost screen counts down before reconnecting.
pub const NODE_LOST_COUNTDOWN: Duration = Duration::from_secs(3);

/// Something that went wrong, as a screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// The signaling service does not answer.
    SignalingUnreachable,
    /// The service refused to sign us in.
    AuthRefused,
    /// No node can take a session.
    NoNode,
    /// The node serving us went away (or the session could not be set up on it).
    NodeLost,
    /// No video decoder works here.
    DecoderMissing,
    /// The service refused the session (unknown title, policy).
    Refused,
    /// The session ended in a way that trying again would repeat (the title exited or cannot
    /// be streamed, the time limit).
    SessionOver,
}

impl Problem {
    /// The screen's headline.
    pub fn headline(self) -> &'static str {
        match self {
            Problem::SignalingUnreachable => "Cannot reach the Stratus service",
            Problem::AuthRefused => "Sign-in refused",
            Problem::NoNode => "No game server is available",
            Problem::NodeLost => "Connection to the game server lost",
            Problem::DecoderMissing => "No video decoder",
            Problem::Refused => "The session was refused",
            Problem::SessionOver => "The game session ended",
        }
    }

    /// A stable name for reports and tests.
    pub fn name(self) -> &'static str {
        match self {
            Problem::SignalingUnreachable => "signaling_unreachable",
            Problem::AuthRefused => "auth_refused",
            Problem::NoNode => "no_node",
            Problem::NodeLost => "node_lost",
            Problem::DecoderMissing => "decoder_missing",
            Problem::Refused => "refused",
            Problem::SessionOver => "session_over",
        }
    }

    fn of(e: &ConnectError) -> Problem {
        match e {
            ConnectError::Unreachable(_) => Problem::SignalingUnreachable,
            ConnectError::AuthRefused(_) => Problem::AuthRefused,
            ConnectError::NoNode(_) => Problem::NoNode,
            ConnectError::Refused(_) => Problem::Refused,
            ConnectError::Failed(_) => Problem::NodeLost,
        }
    }
}

/// What the window shows.
#[derive(Debug, Clone, PartialEq)]
pub enum Screen {
    /// Choose a title: `(id, name)` and the highlighted one.
    Picker {
        /// The catalog.
        titles: Vec<(String, String)>,
        /// Highlighted entry.
        selected: usize,
    },
    /// Setting up a session; what it waits for.
    Connecting(String),
    /// The game.
    Playing,
    /// Something went wrong; with a retry time, the client tries again by itself then.
    Problem {
        /// What.
        problem: Problem,
        /// The details.
        detail: String,
        /// When the next attempt starts, if one is planned.
        retry_at: Option<Instant>,
    },
}

impl Screen {
    /// A stable name for reports and tests.
    pub fn name(&self) -> &'static str {
        match self {
            Screen::Picker { .. } => "picker",
            Screen::Connecting(_) => "connecting",
            Screen::Playing => "playing",
            Screen::Problem { .. } => "problem",
        }
    }
}

/// State shared by the controller and the window.
pub struct ClientState {
    /// What the window shows.
    pub screen: Mutex<Screen>,
    /// The session in play, for sending input.
    pub session: Mutex<Option<Arc<Session>>>,
    /// Counters of the current and past sessions.
    pub counters: Arc<SessionCounters>,
    /// Sessions started after the first (reconnects).
    pub reconnects: std::sync::atomic::AtomicU64,
    /// The title the player picked (from the picker).
    picked: watch::Sender<Option<String>>,
    /// The player asked to try again now.
    retry_now: Notify,
    wake: Box<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for ClientState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientState")
            .field(
                "screen",
                &*self.screen.lock().unwrap_or_else(|p| p.into_inner()),
            )
            .finish_non_exhaustive()
    }
}

impl ClientState {
    /// The client's state; `wake` asks the window to redraw.
    pub fn new(wake: impl Fn() + Send + Sync + 'static) -> Arc<ClientState> {
        Arc::new(ClientState {
            screen: Mutex::new(Screen::Connecting("starting".into())),
            session: Mutex::new(None),
            counters: Arc::new(SessionCounters::default()),
            reconnects: Default::default(),
            picked: watch::channel(None).0,
            retry_now: Notify::new(),
            wake: Box::new(wake),
        })
    }

    /// Shows `screen`.
    pub fn show(&self, screen: Screen) {
        tracing::info!(screen = screen.name(), "{screen:?}");
        *self.screen.lock().unwrap_or_else(|p| p.into_inner()) = screen;
        (self.wake)();
    }

    /// The screen now.
    pub fn screen(&self) -> Screen {
        self.screen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The session in play, if any.
    pub fn session(&self) -> Option<Arc<Session>> {
        self.session
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The player picked a title.
    pub fn pick(&self, id: String) {
        self.picked.send_replace(Some(id));
    }

    /// The player asked to try again now.
    pub fn retry_now(&self) {
        self.retry_now.notify_one();
    }
}

/// Runs sessions until `quit` fires. `title` skips the picker.
pub async fn run(
    shared: Arc<ClientState>,
    mut options: SessionOptions,
    sink: Arc<dyn MediaSink>,
    mut quit: watch::Receiver<bool>,
) {
    if options.title.is_none() {
        match pick_title(&shared, &options, &mut quit).await {
            Some(t) => options.title = Some(t),
            None => return,
        }
    }
    let mut failures = 0usize;
    let mut sessions = 0u64;
    loop {
        if *quit.borrow() {
            return;
        }
        shared.show(Screen::Connecting("starting a session".into()));
        let progress = {
            let shared = shared.clone();
            move |what: String| shared.show(Screen::Connecting(what))
        };
        let connect = Session::connect(&options, sink.clone(), shared.counters.clone(), &progress);
        let result = tokio::select! {
            r = connect => r,
            _ = quitting(&mut quit) => return,
        };
        match result {
            Ok(session) => {
                failures = 0;
                if sessions > 0 {
                    shared
                        .reconnects
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                sessions += 1;
                let session = Arc::new(session);
                tracing::info!(
                    session_id = session.session_id(),
                    node_id = session.node_id(),
                    "playing"
                );
                *shared.session.lock().unwrap_or_else(|p| p.into_inner()) = Some(session.clone());
                shared.show(Screen::Playing);
                let why = loop {
                    tokio::select! {
                        why = session.wait_end() => break Some(why),
                        _ = tokio::time::sleep(Duration::from_secs(1)) => session.refresh_rtt().await,
                        _ = quitting(&mut quit) => break None,
                    }
                };
                shared
                    .session
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take();
                let for_good = session.ended_for_good();
                if let Ok(session) = Arc::try_unwrap(session) {
                    session.close().await;
                }
                let Some(why) = why else { return };
                tracing::warn!("the session ended: {why}");
                if for_good {
                    // Starting it again would end the same way: the player decides.
                    shared.show(Screen::Problem {
                        problem: Problem::SessionOver,
                        detail: format!("{why} — press Enter to play again, Esc to quit"),
                        retry_at: None,
                    });
                    tokio::select! {
                        _ = shared.retry_now.notified() => continue,
                        _ = quitting(&mut quit) => return,
                    }
                }
                if !countdown(
                    &shared,
                    Problem::NodeLost,
                    why,
                    NODE_LOST_COUNTDOWN,
                    &mut quit,
                )
                .await
                {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!("{e}");
                let problem = Problem::of(&e);
                let detail = e.to_string();
                if e.worth_retrying() {
                    let wait = Duration::from_secs(BACKOFF_S[failures.min(BACKOFF_S.len() - 1)]);
                    failures += 1;
                    if !countdown(&shared, problem, detail, wait, &mut quit).await {
                        return;
                    }
                } else {
                    shared.show(Screen::Problem {
                        problem,
                        detail: format!("{detail} — press Enter to try again, Esc to quit"),
                        retry_at: None,
                    });
                    tokio::select! {
                        _ = shared.retry_now.notified() => {}
                        _ = quitting(&mut quit) => return,
                    }
                }
            }
        }
    }
}

/// Shows `problem` with a countdown of `wait`; false if the client is quitting.
async fn countdown(
    shared: &ClientState,
    problem: Problem,
    detail: String,
    wait: Duration,
    quit: &mut watch::Receiver<bool>,
) -> bool {
    let retry_at = Instant::now() + wait;
    shared.show(Screen::Problem {
        problem,
        detail,
        retry_at: Some(retry_at),
    });
    tokio::select! {
        _ = tokio::time::sleep(wait) => true,
        _ = shared.retry_now.notified() => true,
        _ = quitting(quit) => false,
    }
}

/// Shows the catalog until the player picks a title; `None` if the client is quitting.
async fn pick_title(
    shared: &ClientState,
    options: &SessionOptions,
    quit: &mut watch::Receiver<bool>,
) -> Option<String> {
    let mut failures = 0usize;
    let titles = loop {
        shared.show(Screen::Connecting(format!(
            "loading the catalog from {}",
            options.signaling
        )));
        match crate::session::fetch_catalog(options.signaling, options.step_timeout).await {
            Ok(t) if !t.is_empty() => break t,
            Ok(_) => {
                let wait = Duration::from_secs(BACKOFF_S[failures.min(BACKOFF_S.len() - 1)]);
                failures += 1;
                if !countdown(
                    shared,
                    Problem::Refused,
                    "the catalog is empty".into(),
                    wait,
                    quit,
                )
                .await
                {
                    return None;
                }
            }
            Err(e) => {
                let wait = Duration::from_secs(BACKOFF_S[failures.min(BACKOFF_S.len() - 1)]);
                failures += 1;
                if !countdown(shared, Problem::of(&e), e.to_string(), wait, quit).await {
                    return None;
                }
            }
        }
    };
    shared.show(Screen::Picker {
        titles,
        selected: 0,
    });
    let mut picked = shared.picked.subscribe();
    tokio::select! {
        p = picked_title(&mut picked) => p,
        _ = quitting(quit) => None,
    }
}

/// Resolves when the client is quitting (or nobody can tell it to any more).
async fn quitting(quit: &mut watch::Receiver<bool>) {
    let _ = quit.wait_for(|q| *q).await;
}

/// Resolves with the title the player picked.
async fn picked_title(picked: &mut watch::Receiver<Option<String>>) -> Option<String> {
    picked
        .wait_for(Option::is_some)
        .await
        .ok()
        .and_then(|p| p.clone())
}
