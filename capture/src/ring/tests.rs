//! Unit tests of the parent module.
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::fds::send_fds;
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
