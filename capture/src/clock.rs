//! The clocks frames are stamped with.
//!
//! Frame timestamps are CLOCK_MONOTONIC nanoseconds so that every process on one machine (the
//! capture layer inside a game, the node, a local client) agrees on them. The latency code drawn
//! into frames carries wall-clock milliseconds instead, so that a receiver with no access to our
//! timestamps (a browser page) can still tell when a frame was made.

use std::time::{SystemTime, UNIX_EPOCH};

/// CLOCK_MONOTONIC now, in nanoseconds.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec and CLOCK_MONOTONIC is always supported on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    debug_assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC) cannot fail");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Unix epoch time now, in whole milliseconds (floor), as the latency code carries it.
pub fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn monotonic_advances() {
        let a = super::monotonic_ns();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = super::monotonic_ns();
        assert!(b - a >= 2_000_000, "{a} -> {b}");
    }

    #[test]
    fn epoch_fits_48_bits() {
        let ms = super::epoch_ms();
        assert!(ms > 1_700_000_000_000 && ms < (1 << 48));
    }
}
