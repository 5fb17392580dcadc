//! The shared-memory frame ring between the capture layer (inside a game) and the node.
//!
//! The layer (the **writer**) creates the ring: a memfd holding a header page and
//! `slot_count` slots of `slot_capacity` bytes, plus an eventfd for wake-ups. It connects to the
//! node's Unix socket (path in [`SOCKET_ENV`]) and sends [`HELLO`] with both descriptors
//! attached (`SCM_RIGHTS`). The node (the **reader**, [`RingReader`]) maps the memfd. Nothing
//! else crosses the socket; the layer closing it (the game exited) is the only other signal.
//!
//! # Layout (version 1, little-endian, all offsets in bytes)
//!
//! Header, at 0 (one 4096-byte page):
//!
//! | offset | field | |
//! |---|---|---|
//! | 0 | `magic: [u8; 8]` | `STRATUSR` |
//! | 8 | `version: u32` | [`VERSION`] |
//! | 12 | `slot_count: u32` | ≤ [`MAX_SLOTS`] |
//! | 16 | `slot_capacity: u64` | bytes of pixels a slot holds, a multiple of 4096 |
//! | 24 | `data_offset: u64` | where slot 0's pixels start: [`HEADER_LEN`] |
//! | 32 | `dropped: u64` (atomic) | frames the producer dropped since it made the ring |
//! | 40 | `published: u64` (atomic) | frames published into the ring |
//! | 48 | `producer_pid: u32` | |
//!
//! Slot *i*'s header, at 64 + 64·*i*: `state: u32` (atomic: [`SlotState`]), `format: u32`
//! (1 = I420, BT.601 limited range, tightly packed), `frame_id: u64`, `present_ns: u64`
//! (CLOCK_MONOTONIC at the game's present), `width: u32`, `height: u32`, `len: u64` (bytes of
//! pixels), `seq: u64` (publication order), `hook_ns: u64` (time the layer spent in the game's
//! present call for this frame), `published_ns: u64` (CLOCK_MONOTONIC when the frame was
//! written). Slot *i*'s pixels start at
//! `data_offset + i · slot_capacity`.
//!
//! # Protocol
//!
//! The writer takes a `Free` slot (compare-and-swap to `Writing`), fills pixels and fields,
//! stores `Ready` with release ordering and adds 1 to the eventfd. With no `Free` slot it drops
//! the frame and adds 1 to `dropped`: it never waits for the reader. The reader takes the
//! `Ready` slot with the lowest `seq` (compare-and-swap to `Reading`, acquire), copies it, and
//! stores `Free`. Frame ids count every frame the game presented on the captured swapchain, so
//! a gap in the ids the reader sees is a drop, and the gaps add up to at most `dropped`.
//!
//! The reader trusts nothing in the mapping: sizes are checked against the file size and the
//! slot capacity, and a slot with impossible fields is freed and skipped.

use std::ffi::c_void;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;

use crate::{Frame, PixelFormat};

/// The environment variable that tells the capture layer where the node's socket is.
pub const SOCKET_ENV: &str = "STRATUS_CAPTURE_SOCKET";
/// First bytes of the ring file.
pub const MAGIC: [u8; 8] = *b"STRATUSR";
/// Protocol version in the header.
pub const VERSION: u32 = 1;
/// The message the layer sends with the two descriptors.
pub const HELLO: &[u8] = b"stratus-ring/1";
/// Bytes of the header page.
pub const HEADER_LEN: usize = 4096;
/// Most slots a ring may have (their headers must fit in the header page).
pub const MAX_SLOTS: u32 = 16;
/// Slots the layer makes.
pub const DEFAULT_SLOTS: u32 = 4;
/// Largest slot a reader accepts (an 8192×8192 I420 frame).
pub const MAX_SLOT_CAPACITY: u64 = 8192 * 8192 * 3 / 2;
/// Bytes a slot holds by default: one I420 frame of 4096×2160. The memfd is sparse, so only
/// the pages frames touch are ever allocated.
pub const DEFAULT_SLOT_CAPACITY: usize = 4096 * 2160 * 3 / 2;
/// Value of a slot's `format` field for tightly packed I420.
pub const FORMAT_I420: u32 = 1;

const SLOT_HEADERS_AT: usize = 64;
const SLOT_HEADER_LEN: usize = 64;
const PAGE: usize = 4096;

/// What a slot is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum SlotState {
    /// Empty; the writer may take it.
    Free = 0,
    /// The writer is filling it.
    Writing = 1,
    /// Holds a frame the reader has not taken.
    Ready = 2,
    /// The reader is copying it out.
    Reading = 3,
}

/// Ring and socket errors.
#[derive(Debug, thiserror::Error)]
pub enum RingError {
    /// A system call failed.
    #[error("{call} failed: {source}")]
    Io {
        /// What was called.
        call: &'static str,
        /// The error.
        source: io::Error,
    },
    /// The peer sent something that is not a ring of this version.
    #[error("invalid frame ring from the capture layer: {0}")]
    Invalid(String),
}

fn io_err(call: &'static str) -> impl FnOnce(io::Error) -> RingError {
    move |source| RingError::Io { call, source }
}

fn last_err(call: &'static str) -> RingError {
    RingError::Io {
        call,
        source: io::Error::last_os_error(),
    }
}

#[repr(C)]
struct Header {
    magic: [u8; 8],
    version: u32,
    slot_count: u32,
    slot_capacity: u64,
    data_offset: u64,
    dropped: AtomicU64,
    published: AtomicU64,
    producer_pid: u32,
}

#[repr(C)]
struct SlotHeader {
    state: AtomicU32,
    format: AtomicU32,
    frame_id: AtomicU64,
    present_ns: AtomicU64,
    width: AtomicU32,
    height: AtomicU32,
    len: AtomicU64,
    seq: AtomicU64,
    hook_ns: AtomicU64,
    published_ns: AtomicU64,
}

/// A shared mapping, unmapped on drop.
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is shared memory accessed only through atomics (headers) or under the
// slot protocol (pixels); the pointer itself may move between threads.
unsafe impl Send for Mapping {}
// SAFETY: as above; `&Mapping` only hands out atomics and protocol-guarded slices.
unsafe impl Sync for Mapping {}

impl Mapping {
    fn new(fd: BorrowedFd<'_>, len: usize) -> Result<Self, RingError> {
        // SAFETY: mapping a file descriptor we hold; the kernel checks the length and access.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(last_err("mmap"));
        }
        Ok(Self {
            ptr: ptr.cast(),
            len,
        })
    }

    fn header(&self) -> &Header {
        // SAFETY: the mapping is at least HEADER_LEN bytes (checked at creation), page-aligned,
        // and Header is plain data and atomics that any bit pattern makes valid.
        unsafe { &*(self.ptr as *const Header) }
    }

    fn slot(&self, index: usize) -> &SlotHeader {
        debug_assert!(index < MAX_SLOTS as usize);
        // SAFETY: slot headers lie inside the header page for index < MAX_SLOTS; alignment is 8.
        unsafe { &*(self.ptr.add(SLOT_HEADERS_AT + index * SLOT_HEADER_LEN) as *const SlotHeader) }
    }

    /// The pixel bytes of `range` inside the mapping.
    ///
    /// # Safety
    /// The caller must own the slot that contains `range` under the slot protocol, so nobody
    /// else writes it meanwhile, and `offset + len` must lie within the mapping.
    #[allow(clippy::mut_from_ref)]
    unsafe fn bytes_mut(&self, offset: usize, len: usize) -> &mut [u8] {
        debug_assert!(offset + len <= self.len);
        // SAFETY: the caller guarantees bounds and exclusive ownership.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(offset), len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` came from a successful mmap and nothing borrows the mapping now.
        unsafe { libc::munmap(self.ptr.cast::<c_void>(), self.len) };
    }
}

fn eventfd() -> Result<OwnedFd, RingError> {
    // SAFETY: plain syscall; the returned descriptor is owned at once.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(last_err("eventfd"));
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// What the writer knows about a frame it publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameMeta {
    /// The frame's id (presents on the captured swapchain, counted from 0).
    pub frame_id: u64,
    /// CLOCK_MONOTONIC ns at the game's present.
    pub present_ns: u64,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Time the layer spent in the game's present call for this frame.
    pub hook_ns: u64,
}

/// Timing the layer recorded for one frame, besides its present time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameTiming {
    /// CLOCK_MONOTONIC ns at the game's present.
    pub present_ns: u64,
    /// Time the layer spent inside the game's present call.
    pub hook_ns: u64,
    /// CLOCK_MONOTONIC ns when the converted frame was in the ring.
    pub published_ns: u64,
}

/// What happened to a frame offered to [`RingWriter::publish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publish {
    /// The frame is in the ring and the reader was woken.
    Published,
    /// Every slot was busy: dropped and counted.
    Full,
    /// The frame does not fit in a slot: dropped and counted.
    TooLarge,
}

/// The writer's end: owns the memfd and eventfd, and publishes frames without ever waiting.
pub struct RingWriter {
    map: Mapping,
    memfd: OwnedFd,
    eventfd: OwnedFd,
    slot_count: u32,
    capacity: usize,
    seq: u64,
}

impl std::fmt::Debug for RingWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingWriter")
            .field("slot_count", &self.slot_count)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl RingWriter {
    /// Makes a ring of `slot_count` slots of at least `capacity` bytes each.
    pub fn create(slot_count: u32, capacity: usize) -> Result<Self, RingError> {
        if slot_count == 0 || slot_count > MAX_SLOTS || capacity as u64 > MAX_SLOT_CAPACITY {
            return Err(RingError::Invalid(format!(
                "{slot_count} slots of {capacity} bytes"
            )));
        }
        let capacity = capacity.next_multiple_of(PAGE);
        let total = HEADER_LEN + slot_count as usize * capacity;
        // SAFETY: plain syscall with a NUL-terminated name.
        let fd = unsafe { libc::memfd_create(c"stratus-frame-ring".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(last_err("memfd_create"));
        }
        // SAFETY: fresh descriptor owned from here on.
        let memfd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: plain syscall on our descriptor.
        if unsafe { libc::ftruncate(memfd.as_raw_fd(), total as libc::off_t) } != 0 {
            return Err(last_err("ftruncate"));
        }
        let map = Mapping::new(memfd.as_fd(), total)?;
        // SAFETY: nobody else has the mapping yet; the header page is ours to initialise.
        unsafe {
            let h = map.ptr as *mut Header;
            (*h).magic = MAGIC;
            (*h).version = VERSION;
            (*h).slot_count = slot_count;
            (*h).slot_capacity = capacity as u64;
            (*h).data_offset = HEADER_LEN as u64;
            (*h).producer_pid = std::process::id();
        }
        Ok(Self {
            map,
            memfd,
            eventfd: eventfd()?,
            slot_count,
            capacity,
            seq: 0,
        })
    }

    /// Sends the ring to a reader over `stream` ([`HELLO`] + memfd + eventfd).
    pub fn send(&self, stream: &UnixStream) -> Result<(), RingError> {
        send_fds(
            stream,
            HELLO,
            &[self.memfd.as_raw_fd(), self.eventfd.as_raw_fd()],
        )
        .map_err(io_err("sendmsg"))
    }

    /// Bytes a slot holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Counts `n` frames dropped before they reached the ring.
    pub fn add_dropped(&self, n: u64) {
        self.map.header().dropped.fetch_add(n, Ordering::Relaxed);
    }

    /// Frames counted as dropped so far.
    pub fn dropped(&self) -> u64 {
        self.map.header().dropped.load(Ordering::Relaxed)
    }

    /// Publishes one I420 frame of `meta.width`×`meta.height`: `fill` gets the slot's bytes
    /// (exactly the frame's length) and must write the tight planes into them. Never waits: a
    /// full ring or an oversized frame is dropped and counted.
    pub fn publish(&mut self, meta: FrameMeta, fill: impl FnOnce(&mut [u8])) -> Publish {
        let len = PixelFormat::I420.frame_len(meta.width, meta.height);
        if len > self.capacity || len == 0 {
            self.add_dropped(1);
            return Publish::TooLarge;
        }
        let Some(index) = (0..self.slot_count as usize).find(|&i| {
            self.map
                .slot(i)
                .state
                .compare_exchange(
                    SlotState::Free as u32,
                    SlotState::Writing as u32,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                )
                .is_ok()
        }) else {
            self.add_dropped(1);
            return Publish::Full;
        };
        // SAFETY: we own slot `index` (state Writing) and its bytes lie within the mapping.
        let data = unsafe { self.map.bytes_mut(HEADER_LEN + index * self.capacity, len) };
        fill(data);
        let slot = self.map.slot(index);
        self.seq += 1;
        slot.format.store(FORMAT_I420, Ordering::Relaxed);
        slot.frame_id.store(meta.frame_id, Ordering::Relaxed);
        slot.present_ns.store(meta.present_ns, Ordering::Relaxed);
        slot.width.store(meta.width, Ordering::Relaxed);
        slot.height.store(meta.height, Ordering::Relaxed);
        slot.len.store(len as u64, Ordering::Relaxed);
        slot.seq.store(self.seq, Ordering::Relaxed);
        slot.hook_ns.store(meta.hook_ns, Ordering::Relaxed);
        slot.published_ns
            .store(crate::clock::monotonic_ns(), Ordering::Relaxed);
        slot.state.store(SlotState::Ready as u32, Ordering::Release);
        self.map.header().published.fetch_add(1, Ordering::Relaxed);
        let one = 1u64.to_ne_bytes();
        // SAFETY: writing 8 bytes from a valid buffer to our eventfd; a full counter (EAGAIN)
        // only means the reader has plenty of wake-ups pending.
        unsafe { libc::write(self.eventfd.as_raw_fd(), one.as_ptr().cast(), 8) };
        Publish::Published
    }
}

/// The reader's end, made from the descriptors the layer sent.
pub struct RingReader {
    map: Mapping,
    eventfd: OwnedFd,
    slot_count: usize,
    capacity: usize,
    producer_pid: u32,
    invalid: u64,
    last_timing: FrameTiming,
}

impl std::fmt::Debug for RingReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingReader")
            .field("slot_count", &self.slot_count)
            .field("capacity", &self.capacity)
            .field("producer_pid", &self.producer_pid)
            .finish_non_exhaustive()
    }
}

impl RingReader {
    /// Receives a ring from a writer on `stream` (waits at most `timeout`).
    pub fn receive(stream: &UnixStream, timeout: Duration) -> Result<Self, RingError> {
        stream
            .set_read_timeout(Some(timeout))
            .map_err(io_err("setsockopt"))?;
        let (message, mut fds) = recv_fds(stream).map_err(io_err("recvmsg"))?;
        if message != HELLO {
            return Err(RingError::Invalid(format!(
                "unexpected hello {:?}",
                String::from_utf8_lossy(&message)
            )));
        }
        if fds.len() != 2 {
            return Err(RingError::Invalid(format!(
                "expected 2 descriptors, got {}",
                fds.len()
            )));
        }
        let eventfd = fds.pop().expect("two descriptors");
        let memfd = fds.pop().expect("two descriptors");
        Self::open(memfd, eventfd)
    }

    /// Maps a ring from its memfd and eventfd, checking the header against the file.
    pub fn open(memfd: OwnedFd, eventfd: OwnedFd) -> Result<Self, RingError> {
        // SAFETY: fstat into a zeroed, writable struct.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: valid descriptor and out-pointer.
        if unsafe { libc::fstat(memfd.as_raw_fd(), &mut st) } != 0 {
            return Err(last_err("fstat"));
        }
        let size = st.st_size as u64;
        if size < HEADER_LEN as u64 {
            return Err(RingError::Invalid(format!("file of {size} bytes")));
        }
        let head = Mapping::new(memfd.as_fd(), HEADER_LEN)?;
        let h = head.header();
        let (slot_count, capacity, data_offset) = (h.slot_count, h.slot_capacity, h.data_offset);
        if h.magic != MAGIC || h.version != VERSION {
            return Err(RingError::Invalid(format!(
                "magic {:?} version {}",
                h.magic, h.version
            )));
        }
        if slot_count == 0
            || slot_count > MAX_SLOTS
            || capacity == 0
            || capacity > MAX_SLOT_CAPACITY.next_multiple_of(PAGE as u64)
            || data_offset != HEADER_LEN as u64
            || size != HEADER_LEN as u64 + slot_count as u64 * capacity
        {
            return Err(RingError::Invalid(format!(
                "{slot_count} slots of {capacity} bytes at {data_offset} in a file of {size}"
            )));
        }
        let producer_pid = h.producer_pid;
        drop(head);
        let map = Mapping::new(memfd.as_fd(), size as usize)?;
        Ok(Self {
            map,
            eventfd,
            slot_count: slot_count as usize,
            capacity: capacity as usize,
            producer_pid,
            invalid: 0,
            last_timing: FrameTiming::default(),
        })
    }

    /// Takes the oldest ready frame, if any, copying it out and freeing its slot.
    pub fn try_read(&mut self) -> Option<Frame> {
        loop {
            let index = (0..self.slot_count)
                .filter(|&i| {
                    self.map.slot(i).state.load(Ordering::Acquire) == SlotState::Ready as u32
                })
                .min_by_key(|&i| self.map.slot(i).seq.load(Ordering::Relaxed))?;
            let slot = self.map.slot(index);
            if slot
                .state
                .compare_exchange(
                    SlotState::Ready as u32,
                    SlotState::Reading as u32,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                )
                .is_err()
            {
                continue;
            }
            let (w, h) = (
                slot.width.load(Ordering::Relaxed),
                slot.height.load(Ordering::Relaxed),
            );
            let len = slot.len.load(Ordering::Relaxed);
            let valid = slot.format.load(Ordering::Relaxed) == FORMAT_I420
                && w > 0
                && h > 0
                && w <= 8192
                && h <= 8192
                && len == PixelFormat::I420.frame_len(w, h) as u64
                && len <= self.capacity as u64;
            let frame = valid.then(|| {
                // SAFETY: we own the slot (state Reading) and `len` fits in it (checked).
                let data = unsafe {
                    self.map
                        .bytes_mut(HEADER_LEN + index * self.capacity, len as usize)
                };
                Frame {
                    id: slot.frame_id.load(Ordering::Relaxed),
                    captured_ns: slot.present_ns.load(Ordering::Relaxed),
                    width: w,
                    height: h,
                    format: PixelFormat::I420,
                    data: Bytes::copy_from_slice(data),
                }
            });
            self.last_timing = FrameTiming {
                present_ns: slot.present_ns.load(Ordering::Relaxed),
                hook_ns: slot.hook_ns.load(Ordering::Relaxed),
                published_ns: slot.published_ns.load(Ordering::Relaxed),
            };
            slot.state.store(SlotState::Free as u32, Ordering::Release);
            match frame {
                Some(frame) => return Some(frame),
                None => {
                    self.invalid += 1;
                    tracing::warn!(w, h, len, "skipping an invalid slot in the frame ring");
                }
            }
        }
    }

    /// The layer's timing of the frame [`RingReader::try_read`] returned last.
    pub fn last_timing(&self) -> FrameTiming {
        self.last_timing
    }

    /// Clears pending wake-ups (call before scanning so none is lost).
    pub fn clear_wakeups(&self) {
        let mut buf = [0u8; 8];
        // SAFETY: reading 8 bytes into a valid buffer from our non-blocking eventfd.
        unsafe { libc::read(self.eventfd.as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
    }

    /// The eventfd the writer signals after each published frame.
    pub fn eventfd(&self) -> BorrowedFd<'_> {
        self.eventfd.as_fd()
    }

    /// Frames the producer dropped since it made the ring.
    pub fn dropped(&self) -> u64 {
        self.map.header().dropped.load(Ordering::Relaxed)
    }

    /// Frames the producer published.
    pub fn published(&self) -> u64 {
        self.map.header().published.load(Ordering::Relaxed)
    }

    /// Slots skipped because their fields were impossible.
    pub fn invalid(&self) -> u64 {
        self.invalid
    }

    /// The producer's process id, as it wrote it.
    pub fn producer_pid(&self) -> u32 {
        self.producer_pid
    }
}

/// Sends `message` with `fds` attached as `SCM_RIGHTS`.
fn send_fds(stream: &UnixStream, message: &[u8], fds: &[RawFd]) -> io::Result<()> {
    let fd_bytes = std::mem::size_of_val(fds);
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(fd_bytes as u32) } as usize;
    let mut control = vec![0u64; space.div_ceil(8)];
    let mut iov = libc::iovec {
        iov_base: message.as_ptr() as *mut c_void,
        iov_len: message.len(),
    };
    // SAFETY: msghdr is plain data; zero is a valid starting value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: `msg` points at a control buffer of `space` bytes, enough for one header with
    // `fds`; the iovec points at `message`, which outlives the call.
    let sent = unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(fd_bytes as u32) as _;
        std::ptr::copy_nonoverlapping(
            fds.as_ptr(),
            libc::CMSG_DATA(cmsg).cast::<RawFd>(),
            fds.len(),
        );
        libc::sendmsg(stream.as_raw_fd(), &msg, libc::MSG_NOSIGNAL)
    };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    if sent as usize != message.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "short sendmsg"));
    }
    Ok(())
}

/// Receives one message and the descriptors attached to it (at most 4).
fn recv_fds(stream: &UnixStream) -> io::Result<(Vec<u8>, Vec<OwnedFd>)> {
    const MAX_FDS: usize = 4;
    let mut buf = [0u8; 64];
    // SAFETY: pure size computation.
    let space =
        unsafe { libc::CMSG_SPACE((MAX_FDS * std::mem::size_of::<RawFd>()) as u32) } as usize;
    let mut control = vec![0u64; space.div_ceil(8)];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; zero is a valid starting value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: buffers outlive the call and their sizes are in `msg`.
    let n = unsafe { libc::recvmsg(stream.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut fds = Vec::new();
    // SAFETY: walking the control messages the kernel wrote, within `msg_controllen`; every
    // descriptor in an SCM_RIGHTS message is ours to own (the kernel installed it for us).
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                let count = ((*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize)
                    / std::mem::size_of::<RawFd>();
                for i in 0..count {
                    fds.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "too many descriptors in the hello",
        ));
    }
    Ok((buf[..n as usize].to_vec(), fds))
}

/// Waits until one of `fds` is readable or hung up, or `timeout` passes. Returns each fd's
/// `revents`.
pub(crate) fn poll_fds(fds: &[RawFd], timeout: Duration) -> Vec<i16> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: `pfds` is a valid array of pollfd of the given length.
    let rc = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
    if rc <= 0 {
        return vec![0; fds.len()];
    }
    pfds.iter().map(|p| p.revents).collect()
}

/// True when the peer of `stream` closed it (a read would return end of file) or it failed.
/// Neither side sends anything after the hello, so readable means closed.
pub(crate) fn hung_up(stream: &UnixStream) -> bool {
    poll_fds(&[stream.as_raw_fd()], Duration::ZERO)[0] != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(id: u64, w: u32, h: u32) -> FrameMeta {
        FrameMeta {
            frame_id: id,
            present_ns: 1000 + id,
            width: w,
            height: h,
            hook_ns: 7,
        }
    }

    #[test]
    fn frames_cross_a_socket_in_order_and_full_rings_drop() {
        let (a, b) = UnixStream::pair().expect("socketpair");
        let mut writer = RingWriter::create(3, 64 * 64 * 3 / 2).expect("ring");
        writer.send(&a).expect("send");
        let mut reader = RingReader::receive(&b, Duration::from_secs(1)).expect("receive");
        assert_eq!(reader.producer_pid(), std::process::id());
        for id in 0..5 {
            let outcome = writer.publish(meta(id, 64, 64), |d| d.fill(id as u8));
            let expect = if id < 3 {
                Publish::Published
            } else {
                Publish::Full
            };
            assert_eq!(outcome, expect, "frame {id}");
        }
        assert_eq!(reader.dropped(), 2);
        assert_eq!(
            writer.publish(meta(9, 8192, 8192), |_| ()),
            Publish::TooLarge
        );
        assert_eq!(
            poll_fds(&[reader.eventfd().as_raw_fd()], Duration::ZERO)[0],
            libc::POLLIN
        );
        reader.clear_wakeups();
        let ids: Vec<u64> = std::iter::from_fn(|| reader.try_read())
            .map(|f| {
                assert_eq!((f.width, f.height, f.captured_ns), (64, 64, 1000 + f.id));
                assert!(f.data.iter().all(|&b| b == f.id as u8));
                f.id
            })
            .collect();
        assert_eq!(ids, vec![0, 1, 2]);
        let timing = reader.last_timing();
        assert_eq!((timing.present_ns, timing.hook_ns), (1002, 7));
        assert!(timing.published_ns > 0 && timing.published_ns <= crate::clock::monotonic_ns());
        // Slots are free again.
        assert_eq!(writer.publish(meta(10, 64, 64), |_| ()), Publish::Published);
        assert_eq!(reader.try_read().map(|f| f.id), Some(10));
        assert!(!hung_up(&b));
        drop(a);
        assert!(hung_up(&b));
    }

    #[test]
    fn readers_refuse_bad_rings_and_skip_bad_slots() {
        let (a, b) = UnixStream::pair().expect("socketpair");
        send_fds(&a, b"hello", &[]).expect("send");
        let err = RingReader::receive(&b, Duration::from_secs(1)).expect_err("no fds");
        assert!(err.to_string().contains("unexpected hello"), "{err}");

        let mut writer = RingWriter::create(2, 4096).expect("ring");
        writer.send(&a).expect("send");
        let mut reader = RingReader::receive(&b, Duration::from_secs(1)).expect("receive");
        writer.publish(meta(1, 16, 16), |_| ());
        // A misbehaving producer writes an impossible size into a ready slot.
        writer.map.slot(0).width.store(100_000, Ordering::Relaxed);
        writer
            .map
            .slot(1)
            .state
            .store(SlotState::Free as u32, Ordering::Relaxed);
        assert!(reader.try_read().is_none());
        assert_eq!(reader.invalid(), 1);
    }
}
