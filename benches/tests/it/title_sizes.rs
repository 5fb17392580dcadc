//! Games pick their own window sizes. A Vulkan title that keeps its own window — 500×500,
//! 502×376, 970×546, none a multiple of 16 — in a 1280×720 session streams at its own size:
//! the client session (the native client's) decodes every picture at that size, with the
//! title's colour bars where the title drew them. And a title whose picture cannot be
//! streamed at all ends once, with a sentence, marked so that no client retries it. And the
//! built-in `pattern` title, which every node offers without being told, plays with its codes
//! and swatch readable from the decoded picture.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use client::depacketize::AccessUnit;
use client::latency_code::{self, CodeRow};
use client::session::{MediaSink, Session, SessionCounters, SessionOptions};
use client::video::{DecodedFrame, Decoder};
use server::config::NodeConfig;

use crate::support::{publish, studio};

/// The capture layer's test title, built next to the test programs.
fn testapp() -> PathBuf {
    capture_testapp::binary().unwrap_or_else(|e| panic!("{e}"))
}

/// What the decoder saw.
#[derive(Debug, Default)]
struct Seen {
    pictures: u64,
    size: Option<(u32, u32)>,
    /// RGB at the middle of each bar, a quarter of the way down, in the last picture.
    bars: Vec<[u8; 3]>,
    /// The last picture's frame-id code, latency code and the RGB at the swatch's centre.
    codes: Option<(u64, u64, [u8; 3])>,
}

/// Decodes what the session receives.
struct Decoding(Decoder);

impl MediaSink for Decoding {
    fn video(&self, unit: AccessUnit, arrived: Instant) -> bool {
        self.0.push(&unit, arrived).is_err()
    }

    fn audio(&self, _payload: &[u8]) {}
}

fn look(frame: &DecodedFrame, seen: &Mutex<Seen>) {
    let (w, h) = (frame.width as usize, frame.height as usize);
    let bars = frame
        .with_pixels(|px| {
            (0..8)
                .map(|i| {
                    let (x, y) = (i * w / 8 + w / 16, h / 4);
                    let at = y * frame.stride + x * 4;
                    // BGRx.
                    [px[at + 2], px[at + 1], px[at]]
                })
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let codes = frame
        .with_pixels(|px| {
            // BGRx reads as RGBx with red and blue swapped; the codes are black and white.
            let id = latency_code::read_rgba(px, frame.stride, h, CodeRow::FrameId)?;
            let ms = latency_code::read_rgba(px, frame.stride, h, CodeRow::EpochMs)?;
            let (x, y, sw, sh) = capture::offscreen::swatch_rect(frame.width, frame.height)?;
            let at = (y + sh / 2) as usize * frame.stride + (x + sw / 2) as usize * 4;
            Some((id, ms, [px[at + 2], px[at + 1], px[at]]))
        })
        .flatten();
    let mut s = seen.lock().unwrap_or_else(|p| p.into_inner());
    s.pictures += 1;
    s.codes = codes.or(s.codes);
    s.size = Some((frame.width, frame.height));
    s.bars = bars;
}

async fn play(addr: std::net::SocketAddr, title: &str, pictures: u64) -> Seen {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let decoder = {
        let seen = seen.clone();
        Decoder::start(None, move |f| look(&f, &seen)).expect("a decoder")
    };
    let mut options = SessionOptions::new(addr);
    options.title = Some(title.into());
    options.audio = false;
    options.step_timeout = Duration::from_secs(30);
    let session = Session::connect(
        &options,
        Arc::new(Decoding(decoder)),
        Arc::new(SessionCounters::default()),
        &|_| {},
    )
    .await
    .unwrap_or_else(|e| panic!("{title}: the session does not start: {e}"));
    let deadline = Instant::now() + Duration::from_secs(40);
    while seen.lock().expect("seen").pictures < pictures {
        if let Some(why) = session.ended() {
            panic!("{title}: the session ended: {why}");
        }
        assert!(
            Instant::now() < deadline,
            "{title}: {:?} after 40 s",
            seen.lock().expect("seen")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    session.close().await;
    std::mem::take(&mut *seen.lock().expect("seen"))
}

fn session_config() -> NodeConfig {
    let mut config = NodeConfig::loopback("");
    config.video.width = 1280;
    config.video.height = 720;
    config.video.fps = 30;
    config.sessions.audio = false;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn titles_stream_at_whatever_even_size_they_choose() {
    let sizes = [(500u32, 500u32), (502, 376), (970, 546)];
    let mut config = session_config();
    config.titles = sizes.iter().map(|(w, h)| format!("win-{w}x{h}")).collect();
    let stack = crate::support::start_with(config, &studio()).await;
    let app = testapp();
    for (w, h) in sizes {
        let id = format!("win-{w}x{h}");
        let phase = format!("{w}x{h}:1000000");
        let argv = [
            app.to_str().expect("utf-8 path"),
            "--phase",
            &phase,
            "--interval-ms",
            "30",
        ];
        publish(stack.addr, &id, &argv).await;
        let seen = play(stack.addr, &id, 20).await;
        eprintln!("{id}: {seen:?}");
        assert_eq!(
            seen.size,
            Some((w, h)),
            "{id}: streamed at the title's own size"
        );
        // The title draws `test_pattern`: eight bars across the top half.
        let drawn = capture::synthetic::test_pattern(w, h, 0);
        for (i, got) in seen.bars.iter().enumerate() {
            let want = drawn(i as u32 * w / 8 + w / 16, h / 4);
            assert!(
                got.iter().zip(want).all(|(g, w)| g.abs_diff(w) <= 40),
                "{id}: bar {i} is {got:?}, the title drew {want:?} (all: {:?})",
                seen.bars
            );
        }
        assert_eq!(seen.bars.len(), 8, "{id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_offers_the_pattern_title_and_its_codes_read_back() {
    // The node is configured with the demo only: the pattern comes with every node.
    let mut config = session_config();
    config.titles = vec!["demo".into()];
    let stack = crate::support::start(config).await;
    let seen = play(stack.addr, "pattern", 30).await;
    eprintln!("pattern: {seen:?}");
    assert_eq!(seen.size, Some((1280, 720)));
    let (id, ms, swatch) = seen
        .codes
        .expect("the codes read back from a decoded picture");
    let age = capture::clock::epoch_ms().saturating_sub(ms);
    assert!(
        age < 10_000,
        "the latency code says the frame is {age} ms old"
    );
    let want = capture::offscreen::swatch_rgb(id);
    assert!(
        swatch.iter().zip(want).all(|(g, w)| g.abs_diff(w) <= 40),
        "frame {id}: the swatch is {swatch:?}, frame {id}'s colour is {want:?}"
    );
    // Players' pickers do not offer it: it is an instrument.
    let list = benches::lab::http_raw(
        stack.addr,
        "GET /api/titles HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await
    .expect("the catalog");
    assert!(
        list.contains("\"id\":\"pattern\"") && list.contains("\"instrument\":true"),
        "{list}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_title_that_cannot_be_streamed_ends_once_with_a_sentence_and_is_not_retried() {
    // A window wider than any H.264 encoder here takes (4096): the same failure every time.
    let mut config = session_config();
    config.titles = vec!["too-wide".into()];
    let stack = crate::support::start_with(config, &studio()).await;
    let app = testapp();
    let argv = [
        app.to_str().expect("utf-8 path"),
        "--phase",
        "4100x64:1000000",
        "--interval-ms",
        "30",
    ];
    publish(stack.addr, "too-wide", &argv).await;
    let mut page = crate::support::play_until_the_session_ends(&stack, "too-wide").await;
    // Long enough for the page's retry countdown (3 s) to have run out, had it started one.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let shown = page
        .eval("({ end: window.stratus.lastEnd, status: window.stratus.status, reconnects: window.stratus.reconnects })")
        .await
        .expect("state");
    eprintln!("too-wide: {shown}");
    let end = shown["end"].as_str().unwrap_or_default();
    assert!(
        end.contains("4100x64") && !end.contains("gst") && !end.contains("GStreamer"),
        "the player reads a sentence naming the size: {end:?}"
    );
    assert!(
        shown["status"]
            .as_str()
            .unwrap_or_default()
            .contains("4100x64"),
        "the page says why: {shown}"
    );
    assert_eq!(shown["reconnects"], 0, "the page did not retry: {shown}");
    let records = stack.shared().store.sessions(10).await.expect("records");
    let tries = records.iter().filter(|r| r.title == "too-wide").count();
    assert_eq!(tries, 1, "one session, not a retry loop: {records:?}");
}
