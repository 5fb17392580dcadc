//! The browser client beyond keyboard and mouse: gamepads (through the page's test hook, as
//! headless Chromium has none) and, in a phone-sized viewport, the on-screen touch controls.

use std::time::Duration;

use base64::Engine;
use benches::chromium::{Chromium, LaunchOptions};
use benches::e2e::INBOUND_VIDEO;
use capture::offscreen::indicator_rgb;
use serde_json::json;
use server::config::NodeConfig;
use server::title::demo::gamepad_key;

/// A screenshot of the page, decoded: (width, height, RGBA pixels).
async fn screenshot(page: &mut Chromium) -> (u32, u32, Vec<u8>) {
    let shot = page
        .call("Page.captureScreenshot", json!({ "format": "png" }))
        .await
        .expect("shot");
    let png_bytes = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().expect("data"))
        .expect("base64");
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().expect("png header");
    let mut buf = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut buf).expect("png frame");
    let channels = info.color_type.samples();
    let rgba = buf[..info.buffer_size()]
        .chunks(channels)
        .flat_map(|p| [p[0], p[1], p[2], 255])
        .collect();
    (info.width, info.height, rgba)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gamepad_and_phone_touch_controls_reach_the_node() {
    let mut config = NodeConfig::loopback("");
    config.video.fps = 30;
    let lab = crate::support::start(config).await;
    let mut page = Chromium::launch(&lab.page_url(), &LaunchOptions::default())
        .await
        .expect("chromium");
    page.wait_for(
        "window.stratus && window.stratus.inspectFrame && (window.stratus.inspectFrame() || {}).frameId != null",
        Duration::from_secs(30),
        "the first decoded frame",
    )
    .await
    .expect("playing");

    // A desktop window shows no touch controls.
    let shown = page
        .eval("getComputedStyle(document.getElementById('touch')).display")
        .await
        .expect("css");
    assert_eq!(shown, "none", "touch controls are hidden on a desktop");

    // Gamepad: Y (Standard Gamepad button 3) held on pad 0.
    page.eval(
        "window.__stratusTestGamepads = [{ index: 0, mapping: 'standard', axes: [0, 0, 0, 0], \
         buttons: Array.from({ length: 17 }, (_, i) => ({ value: i === 3 ? 1 : 0, pressed: i === 3 })) }]",
    )
    .await
    .expect("hook");
    crate::support::wait_for_indicator(&mut page, indicator_rgb(gamepad_key(0, 3), 0), "gamepad Y")
        .await;
    page.eval("window.__stratusTestGamepads = []")
        .await
        .expect("hook");

    // A phone: 390x844 CSS px, touch.
    page.call(
        "Emulation.setDeviceMetricsOverride",
        json!({ "width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": true }),
    )
    .await
    .expect("metrics");
    page.call(
        "Emulation.setTouchEmulationEnabled",
        json!({ "enabled": true, "maxTouchPoints": 5 }),
    )
    .await
    .expect("touch");
    page.wait_for(
        "getComputedStyle(document.getElementById('touch')).display === 'flex'",
        Duration::from_secs(5),
        "the touch controls to show",
    )
    .await
    .expect("touch controls");
    let rect = page
        .eval("(() => { const r = document.querySelector('[data-pad=a]').getBoundingClientRect(); return { x: r.x + r.width / 2, y: r.y + r.height / 2, w: r.width }; })()")
        .await
        .expect("rect");
    let (ax, ay) = (
        rect["x"].as_f64().expect("x"),
        rect["y"].as_f64().expect("y"),
    );
    assert!(
        rect["w"].as_f64().unwrap_or(0.0) >= 40.0,
        "a thumb-sized button: {rect}"
    );

    // The screenshot shows the A button (the controls' blue) where the page says it is.
    let (w, h, rgba) = screenshot(&mut page).await;
    assert_eq!((w, h), (390, 844), "phone-sized screenshot");
    let px = |x: f64, y: f64| {
        let i = 4 * (y as usize * w as usize + x as usize);
        [rgba[i], rgba[i + 1], rgba[i + 2]]
    };
    let [r, g, b] = px(ax - 15.0, ay);
    assert!(
        b > 150 && b > r + 40 && g < 200,
        "A button is blue in the screenshot, got {r},{g},{b}"
    );
    let dump = std::env::temp_dir().join("stratus-phone.png");
    let _ = std::fs::write(&dump, {
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Rgba);
        if let Ok(mut writer) = enc.write_header() {
            let _ = writer.write_image_data(&rgba);
        }
        out
    });

    // Thumb on A: pad 0 button 0 reaches the demo title.
    for (kind, points) in [
        ("touchStart", json!([{ "x": ax, "y": ay }])),
        ("touchEnd", json!([])),
    ] {
        page.call(
            "Input.dispatchTouchEvent",
            json!({ "type": kind, "touchPoints": points }),
        )
        .await
        .expect("touch");
    }
    crate::support::wait_for_indicator(
        &mut page,
        indicator_rgb(gamepad_key(0, 0), 0),
        "touch button A",
    )
    .await;
    let counters = page
        .eval("({ gamepad: window.stratus.input.gamepad, touchControls: window.stratus.input.touchControls })")
        .await
        .expect("counters");
    assert!(counters["gamepad"].as_u64().unwrap_or(0) >= 1, "{counters}");
    assert!(
        counters["touchControls"].as_u64().unwrap_or(0) >= 2,
        "{counters}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_reconnects_to_another_node_when_its_node_dies() {
    let mut config = NodeConfig::loopback("");
    config.video.fps = 30;
    config.video.width = 640;
    config.video.height = 360;
    config.capacity = 1;
    let lab = crate::support::start(config.clone()).await;
    // "b" sorts before "local", so the hub gives the first session to it.
    config.node_id = "b".into();
    let doomed = lab.add_node(config).await.expect("second node");
    let mut page = Chromium::launch(&lab.page_url(), &LaunchOptions::default())
        .await
        .expect("chromium");
    page.wait_for(
        "window.stratus && window.stratus.connectionState === 'connected' && window.stratus.nodeId === 'b'",
        Duration::from_secs(30),
        "playing from node b",
    )
    .await
    .expect("on b");

    doomed.kill();
    let status = page
        .wait_for(
            "window.stratus.status.includes('reconnecting in') ? window.stratus.status : ''",
            Duration::from_secs(15),
            "a reconnect countdown",
        )
        .await
        .expect("countdown");
    assert!(
        status.as_str().unwrap_or_default().contains("lost"),
        "the page says why: {status}"
    );
    page.wait_for(
        &format!(
            "window.stratus.connectionState === 'connected' && window.stratus.nodeId === 'local' \
             && ({INBOUND_VIDEO}).then((s) => !!s && s.framesDecoded > 10)"
        ),
        Duration::from_secs(30),
        "playing again from node local",
    )
    .await
    .expect("resumed");
    let reconnects = page
        .eval("window.stratus.reconnects")
        .await
        .expect("reconnects");
    assert!(reconnects.as_u64().unwrap_or(0) >= 1, "{reconnects}");
}
