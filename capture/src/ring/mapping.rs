//! The shared mapping of a ring and the `repr(C)` headers laid out at its start.

use std::ffi::c_void;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicU32, AtomicU64};

use super::{MAX_SLOTS, RingError, SLOT_HEADER_LEN, SLOT_HEADERS_AT, last_err};

#[repr(C)]
pub(super) struct Header {
    pub(super) magic: [u8; 8],
    pub(super) version: u32,
    pub(super) slot_count: u32,
    pub(super) slot_capacity: u64,
    pub(super) data_offset: u64,
    pub(super) dropped: AtomicU64,
    pub(super) published: AtomicU64,
    pub(super) producer_pid: u32,
}

#[repr(C)]
pub(super) struct SlotHeader {
    pub(super) state: AtomicU32,
    pub(super) format: AtomicU32,
    pub(super) frame_id: AtomicU64,
    pub(super) present_ns: AtomicU64,
    pub(super) width: AtomicU32,
    pub(super) height: AtomicU32,
    pub(super) len: AtomicU64,
    pub(super) seq: AtomicU64,
    pub(super) hook_ns: AtomicU64,
    pub(super) published_ns: AtomicU64,
}

/// A shared mapping, unmapped on drop.
pub(super) struct Mapping {
    pub(super) ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is shared memory accessed only through atomics (headers) or under the
// slot protocol (pixels); the pointer itself may move between threads.
unsafe impl Send for Mapping {}
// SAFETY: as above; `&Mapping` only hands out atomics and protocol-guarded slices.
unsafe impl Sync for Mapping {}

impl Mapping {
    pub(super) fn new(fd: BorrowedFd<'_>, len: usize) -> Result<Self, RingError> {
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

    pub(super) fn header(&self) -> &Header {
        // SAFETY: the mapping is at least HEADER_LEN bytes (checked at creation), page-aligned,
        // and Header is plain data and atomics that any bit pattern makes valid.
        unsafe { &*(self.ptr as *const Header) }
    }

    pub(super) fn slot(&self, index: usize) -> &SlotHeader {
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
    pub(super) unsafe fn bytes_mut(&self, offset: usize, len: usize) -> &mut [u8] {
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
