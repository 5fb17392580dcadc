//! The writer's end, [`RingWriter`]: made by the capture layer, it publishes frames without
//! ever waiting for the reader.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;

use super::fds::{eventfd, send_fds};
use super::mapping::{Header, Mapping};
use super::{
    FORMAT_I420, FrameMeta, HEADER_LEN, HELLO, MAGIC, MAX_SLOT_CAPACITY, MAX_SLOTS, PAGE, Publish,
    RingError, SlotState, VERSION, io_err, last_err,
};
use crate::PixelFormat;

/// The writer's end: owns the memfd and eventfd, and publishes frames without ever waiting.
pub struct RingWriter {
    pub(super) map: Mapping,
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
