//! First light: the demo title, rendered on lavapipe, encoded with x264, streamed with
//! webrtc-rs, decoded and shown by headless Chromium.

use std::time::{Duration, Instant};

use benches::chromium::{Chromium, LaunchOptions};
use benches::e2e::INBOUND_VIDEO;
use capture::offscreen::swatch_rgb;
use serde_json::Value;
use server::config::NodeConfig;

fn num(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_plays_the_demo_title() {
    let mut config = NodeConfig::loopback("");
    config.video.fps = 30;
    // Our ROI element, with the regions on: its output must play in a browser.
    config.video.prefer_encoders = vec![encoder::x264::ELEMENT_NAME.into()];
    config.video.roi = true;
    let stack = crate::support::start(config).await;
    let url = format!("http://{}/", stack.addr);
    let mut browser = Chromium::launch(&url, &LaunchOptions::default())
        .await
        .expect("launch headless chromium");

    browser
        .wait_for(
            "window.stratus && window.stratus.connectionState === 'connected'",
            Duration::from_secs(30),
            "the peer connection to reach connected",
        )
        .await
        .expect("connected");
    browser
        .wait_for(
            &format!("({INBOUND_VIDEO}).then(s => s && s.framesDecoded > 0)"),
            Duration::from_secs(20),
            "the first decoded frame",
        )
        .await
        .expect("first frame");

    // Decode rate over a 5-second window, after a second for the stream to settle.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let first = browser.eval(INBOUND_VIDEO).await.expect("stats");
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let last = browser.eval(INBOUND_VIDEO).await.expect("stats");
    let frames = num(&last, "framesDecoded");
    let window_s = (num(&last, "timestamp") - num(&first, "timestamp")) / 1000.0;
    let fps = (frames - num(&first, "framesDecoded")) / window_s;
    eprintln!(
        "decoded {frames} frames; {fps:.1} fps over {window_s:.2} s ({:?} wall)",
        started.elapsed()
    );
    // A liveness floor, not the rate target: the stream must keep flowing at a third of its
    // 30 fps even on a loaded 2-core machine (CI saw 23 fps while other suites ran). The rate
    // itself is measured side by side in `stratus-bench e2e`.
    assert!(frames >= 60.0, "only {frames} frames decoded");
    assert!(fps >= 10.0, "decoding at {fps:.1} fps, want >= 10");
    assert_eq!(
        (num(&last, "frameWidth"), num(&last, "frameHeight")),
        (1280.0, 720.0)
    );

    // The picture itself: each sampled frame's id is read from its code, and the swatch must
    // have the colour the demo title draws for that id.
    let mut matched = 0;
    let mut samples = Vec::new();
    for _ in 0..10 {
        let f = browser
            .eval("window.stratus.inspectFrame()")
            .await
            .expect("inspect");
        let id = f["frameId"]
            .as_u64()
            .unwrap_or_else(|| panic!("frame id code unreadable: {f}"));
        let got: Vec<i64> = f["swatch"]
            .as_array()
            .expect("swatch")
            .iter()
            .filter_map(Value::as_i64)
            .collect();
        let want = swatch_rgb(id);
        let close = got.len() == 3
            && got
                .iter()
                .zip(want)
                .all(|(g, w)| (g - w as i64).abs() <= 40);
        matched += close as u32;
        samples.push(format!("id {id}: got {got:?} want {want:?}"));
        tokio::time::sleep(Duration::from_millis(120)).await;
    }
    assert!(
        matched >= 8,
        "swatch colour matched in {matched}/10 frames: {samples:#?}"
    );

    // Loss recovery as negotiated with Chromium: NACK, and retransmissions on their own RTX
    // stream (RFC 4588) tied to the media stream.
    let answer = browser
        .eval("window.stratus.pc.remoteDescription.sdp")
        .await
        .expect("answer");
    let sdp = answer.as_str().expect("sdp text");
    let video = &sdp[sdp.find("m=video").expect("a video section")..];
    for want in [
        " rtx/90000",
        "a=ssrc-group:FID ",
        " nack\r\n",
        " nack pli",
        " ccm fir",
        " transport-cc",
    ] {
        assert!(video.contains(want), "the answer lacks {want:?}:\n{sdp}");
    }
    drop(browser);
    drop(stack);
}
