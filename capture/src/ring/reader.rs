//! The reader's end, [`RingReader`]: the node maps the ring the layer sent and copies frames
//! out, trusting nothing in the mapping.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;

use super::fds::recv_fds;
use super::mapping::Mapping;
use super::{
    FORMAT_I420, FrameTiming, HEADER_LEN, HELLO, MAGIC, MAX_SLOT_CAPACITY, MAX_SLOTS, PAGE,
    RingError, SlotState, VERSION, io_err, last_err,
};
use crate::{Frame, PixelFormat};

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
