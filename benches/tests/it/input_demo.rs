//! Input end to end: keys and buttons pressed in the browser page travel as binary
//! InputEvents over the data channel, through the node's gate, into the demo title, and show
//! in the pixels the browser decodes.

use std::time::Duration;

use benches::chromium::{Chromium, LaunchOptions};
use capture::offscreen::indicator_rgb;
use input::KeyCode;
use serde_json::json;
use server::config::NodeConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_and_buttons_in_the_page_change_the_demo_scene() {
    let mut config = NodeConfig::loopback("");
    config.video.fps = 30;
    let stack = crate::support::start(config).await;
    let mut browser = Chromium::launch(
        &format!("http://{}/", stack.addr),
        &LaunchOptions::default(),
    )
    .await
    .expect("chromium");
    browser
        .wait_for(
            "window.stratus && window.stratus.inspectFrame && (window.stratus.inspectFrame() || {}).frameId != null",
            Duration::from_secs(30),
            "the first decoded frame",
        )
        .await
        .expect("playing");
    crate::support::wait_for_indicator(&mut browser, indicator_rgb(0, 0), "before any input").await;

    // A real key press through Chromium's input pipeline (DevTools Input domain).
    for kind in ["keyDown", "keyUp"] {
        browser
            .call(
                "Input.dispatchKeyEvent",
                json!({"type": kind, "code": "KeyW", "key": "w", "windowsVirtualKeyCode": 87}),
            )
            .await
            .expect("key");
    }
    let w = KeyCode::KeyW as u32;
    crate::support::wait_for_indicator(&mut browser, indicator_rgb(w, 0), "after pressing W").await;

    // Hold the right button over the video: the indicator's blue follows the button mask.
    browser
        .call(
            "Input.dispatchMouseEvent",
            json!({"type": "mousePressed", "x": 640, "y": 400, "button": "right", "clickCount": 1}),
        )
        .await
        .expect("mouse");
    crate::support::wait_for_indicator(
        &mut browser,
        indicator_rgb(w, 1 << 2),
        "while the right button is held",
    )
    .await;
    browser
        .call("Input.dispatchMouseEvent", json!({"type": "mouseReleased", "x": 640, "y": 400, "button": "right", "clickCount": 1}))
        .await
        .expect("mouse");
    crate::support::wait_for_indicator(
        &mut browser,
        indicator_rgb(w, 0),
        "after releasing the button",
    )
    .await;

    let sent = browser
        .eval("window.stratus.input.sent")
        .await
        .expect("counters");
    assert!(
        sent.as_u64().unwrap_or(0) >= 4,
        "the page sent {sent} events"
    );
    drop(browser);
    drop(stack);
}
