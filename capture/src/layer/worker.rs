//! The layer's own thread: keeps the connection to the node and moves frames from the GPU into
//! the ring — converted I420 on the GPU path, packed pixels it converts straight into the ring
//! slot on the CPU path — so the game's thread never waits for a fence, a copy, a conversion or
//! a socket.
//!
//! The present hook hands each submitted [`Grab`] over as a [`Job`]; this thread waits for its
//! fence, writes the frame into a free ring slot (or drops and counts it), and gives the grab
//! back by clearing its busy flag. While no node is connected, the hook does no GPU work at all
//! and only counts the frames it skips; this thread retries the connection twice a second.

use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::grab::Grab;
use crate::ring::{self, FrameMeta, Publish, RingWriter};

/// How long the worker waits for one frame's conversion before calling it lost.
const FENCE_WAIT: Duration = Duration::from_secs(2);
/// Pause between connection attempts while no node listens.
const RETRY: Duration = Duration::from_millis(500);

/// One frame in flight.
pub(crate) struct Job {
    pub(crate) grab: Arc<Grab>,
    /// Cleared once the worker no longer touches `grab` (after it dropped its reference).
    pub(crate) busy: Arc<AtomicBool>,
    pub(crate) meta: FrameMeta,
    /// Set when the fence wait fails with a lost device, so the hook stops capturing.
    pub(crate) failed: Arc<AtomicBool>,
}

/// Counters and the channel the hooks see.
pub(crate) struct Worker {
    jobs: Mutex<Sender<Job>>,
    connected: AtomicBool,
    /// Drops the hook counted that the worker has not yet added to the ring's header.
    pending_drops: AtomicU64,
    /// Frames skipped because no node was connected.
    skipped: AtomicU64,
    /// Frames written into the ring.
    published: AtomicU64,
    /// Frames dropped for any reason while a node was connected.
    dropped: AtomicU64,
}

static WORKER: OnceLock<Option<Worker>> = OnceLock::new();

/// The worker, started on first use. `None` when the thread could not be started (capture is
/// then off for the process).
pub(crate) fn get() -> Option<&'static Worker> {
    WORKER
        .get_or_init(|| {
            let (tx, rx) = mpsc::channel::<Job>();
            let spawned = std::thread::Builder::new()
                .name("stratus-capture".into())
                .spawn(move || run(rx));
            match spawned {
                Ok(_) => Some(Worker {
                    jobs: Mutex::new(tx),
                    connected: AtomicBool::new(false),
                    pending_drops: AtomicU64::new(0),
                    skipped: AtomicU64::new(0),
                    published: AtomicU64::new(0),
                    dropped: AtomicU64::new(0),
                }),
                Err(e) => {
                    tracing::error!(error = %e, "stratus capture: cannot start the worker thread; capture is off");
                    None
                }
            }
        })
        .as_ref()
}

impl Worker {
    /// True while a node holds the ring.
    pub(crate) fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Counts a frame the hook dropped (no free grab).
    pub(crate) fn count_drop(&self) {
        self.pending_drops.fetch_add(1, Ordering::Relaxed);
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a frame skipped because no node is connected.
    pub(crate) fn count_skip(&self) {
        self.skipped.fetch_add(1, Ordering::Relaxed);
    }

    /// (published, skipped without a node, dropped while a node was connected).
    pub(crate) fn counters(&self) -> (u64, u64, u64) {
        (
            self.published.load(Ordering::Relaxed),
            self.skipped.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed),
        )
    }

    /// Hands a submitted frame to the thread. On failure the job's busy flag is cleared here.
    pub(crate) fn send(&self, job: Job) {
        let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(mpsc::SendError(job)) = jobs.send(job) {
            self.count_drop();
            let busy = job.busy.clone();
            drop(job);
            busy.store(false, Ordering::Release);
        }
    }
}

struct Connection {
    stream: UnixStream,
    ring: RingWriter,
}

fn socket_path() -> Option<PathBuf> {
    std::env::var_os(ring::SOCKET_ENV)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
}

fn connect(path: &PathBuf) -> Option<Connection> {
    let stream = UnixStream::connect(path).ok()?;
    let ring = match RingWriter::create(ring::DEFAULT_SLOTS, ring::DEFAULT_SLOT_CAPACITY) {
        Ok(ring) => ring,
        Err(e) => {
            tracing::error!(error = %e, "stratus capture: cannot make the frame ring");
            return None;
        }
    };
    if let Err(e) = ring.send(&stream) {
        tracing::warn!(error = %e, path = %path.display(), "stratus capture: cannot hand the ring to the node");
        return None;
    }
    tracing::info!(path = %path.display(), "stratus capture: connected to the node");
    Some(Connection { stream, ring })
}

fn run(rx: mpsc::Receiver<Job>) {
    let path = socket_path();
    if path.is_none() {
        tracing::warn!(
            "stratus capture: {} is not set; frames are not captured",
            ring::SOCKET_ENV
        );
    }
    let mut conn: Option<Connection> = None;
    let mut last_attempt: Option<Instant> = None;
    loop {
        let Some(worker) = WORKER.get().and_then(Option::as_ref) else {
            // `get` stores the worker right after spawning us; wait for it.
            std::thread::sleep(Duration::from_millis(1));
            continue;
        };
        if conn.as_ref().is_some_and(|c| ring::hung_up(&c.stream)) {
            tracing::info!("stratus capture: the node went away");
            conn = None;
            worker.connected.store(false, Ordering::Relaxed);
        }
        if conn.is_none()
            && let Some(path) = &path
            && last_attempt.is_none_or(|t| t.elapsed() >= RETRY)
        {
            last_attempt = Some(Instant::now());
            conn = connect(path);
            worker.connected.store(conn.is_some(), Ordering::Relaxed);
        }
        let job = match rx.recv_timeout(RETRY / 2) {
            Ok(job) => job,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let Job {
            grab,
            busy,
            meta,
            failed,
        } = job;
        match grab.wait(FENCE_WAIT) {
            Ok(()) => match &mut conn {
                Some(c) => {
                    c.ring
                        .add_dropped(worker.pending_drops.swap(0, Ordering::Relaxed));
                    let mut written = 0;
                    match c.ring.publish(meta, |dst| written = grab.read_into(dst)) {
                        Publish::Published if written > 0 => {
                            worker.published.fetch_add(1, Ordering::Relaxed);
                        }
                        Publish::Published => {
                            tracing::warn!(?meta, "stratus capture: frame size mismatch");
                        }
                        Publish::Full => {
                            worker.dropped.fetch_add(1, Ordering::Relaxed);
                            tracing::trace!(id = meta.frame_id, "ring full; frame dropped")
                        }
                        Publish::TooLarge => {
                            worker.dropped.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(?meta, "stratus capture: frame too large for the ring")
                        }
                    }
                }
                None => worker.count_skip(),
            },
            Err(e) => {
                tracing::error!(error = %e, "stratus capture: conversion did not finish; capture stops on this device");
                failed.store(true, Ordering::Relaxed);
                worker.count_drop();
            }
        }
        drop(grab);
        busy.store(false, Ordering::Release);
    }
}
