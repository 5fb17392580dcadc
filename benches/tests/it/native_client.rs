//! The native client (`stratus-client`) as a player meets it: a real window on Xvfb playing a
//! local node's demo title, checked from screenshots of the window; keys and clicks typed into
//! the window through XTEST reach the game; the sound decodes to something audible; a node that
//! dies mid-session shows the node-lost screen and the client resumes on another node; and
//! each failure before playing has its own screen.

use std::time::Duration;

use benches::native::{NativeClient, Shot, focus_window, screenshot_window, summary, window_rect};
use capture::offscreen::{indicator_rgb, swatch_rect, swatch_rgb};
use client::latency_code::{self, CodeRow};
use input::inject::Injector;
use input::inject::xtest::XTestInjector;
use input::{EventKind, InputEvent, KeyCode, MouseButton};
use serde_json::Value;
use server::config::NodeConfig;

/// The demo's frame size in these tests: wide enough for the 912-pixel latency codes.
const W: u32 = 960;
const H: u32 = 540;

fn num(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or(0.0)
}

fn close(a: [u8; 3], b: [u8; 3], tolerance: i32) -> bool {
    a.iter()
        .zip(b)
        .all(|(x, y)| (i32::from(*x) - i32::from(y)).abs() <= tolerance)
}

fn mean_u8(m: [f64; 3]) -> [u8; 3] {
    m.map(|v| v.round() as u8)
}

/// The indicator's mean colour in a screenshot of a 1:1 window.
fn indicator(shot: &Shot) -> [u8; 3] {
    mean_u8(shot.mean(40, shot.height - 88, 48, 48))
}

/// Takes screenshots until the indicator shows `want`; panics with the last one's colour.
async fn wait_indicator(client: &NativeClient, display: &str, want: [u8; 3], what: &str) -> Shot {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut last = None;
    while tokio::time::Instant::now() < deadline {
        let shot = screenshot_window(display, "Stratus").expect("screenshot");
        let got = indicator(&shot);
        if close(got, want, 40) {
            return shot;
        }
        last = Some(got);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{what}: the indicator never showed {want:?}; last {last:?}; report {}; log:\n{}",
        summary(client.report().as_ref()),
        client.log_tail()
    );
}

fn inject(x: &mut XTestInjector, kind: EventKind) {
    x.inject(&InputEvent {
        seq: 0,
        t_us: 0,
        kind,
    })
    .expect("XTEST input");
    x.sync().expect("sync");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_client_plays_the_demo_with_picture_sound_and_input() {
    let mut config = NodeConfig::loopback("");
    config.video.width = W;
    config.video.height = H;
    config.video.fps = 30;
    let lab = crate::support::start(config).await;
    let xvfb = capture::display::Xvfb::start_sized(1280, 800).expect("Xvfb");
    let size = format!("{W}x{H}");
    let mut client = NativeClient::launch(
        &xvfb.display,
        lab.addr,
        &["--title", "demo", "--size", &size],
    )
    .expect("launch the client");
    let report = client
        .wait_for("60 frames presented", Duration::from_secs(60), |r| {
            r["screen"] == "playing" && num(r, "frames_presented") >= 60.0
        })
        .await
        .expect("playing");
    assert_eq!(
        report["frame"],
        serde_json::json!([W, H]),
        "{}",
        summary(Some(&report))
    );

    // The window shows the demo scene: both code rows read back from the screenshot, the
    // latency code holds a capture time of the last seconds, and the swatch has the colour
    // of the frame id in the same picture.
    let shot = screenshot_window(&xvfb.display, "Stratus").expect("screenshot");
    assert_eq!((shot.width, shot.height), (W as usize, H as usize));
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let _ = shot.save_png(&dir.join("native-client-demo.png"));
    let epoch = latency_code::read_rgba(&shot.rgba, shot.width * 4, shot.height, CodeRow::EpochMs)
        .expect("the latency code is readable in the window");
    let now = client::measure::epoch_ms_now();
    assert!(
        (now - epoch as f64).abs() < 5_000.0,
        "the frame on screen was rendered at {epoch}, now is {now}"
    );
    let id = latency_code::read_rgba(&shot.rgba, shot.width * 4, shot.height, CodeRow::FrameId)
        .expect("the frame id is readable in the window");
    let (sx, sy, sw, sh) = swatch_rect(W, H).expect("swatch");
    let swatch = mean_u8(shot.mean(
        sx as usize + 4,
        sy as usize + 4,
        sw as usize - 8,
        sh as usize - 8,
    ));
    assert!(
        close(swatch, swatch_rgb(id), 40),
        "frame {id}: swatch {swatch:?}, expected {:?}",
        swatch_rgb(id)
    );
    assert!(close(indicator(&shot), indicator_rgb(0, 0), 40));

    // A key typed into the window changes the scene as the demo defines.
    let mut x = XTestInjector::connect(Some(&xvfb.display)).expect("XTEST");
    let (wx, wy, ww, wh) = window_rect(&xvfb.display, "Stratus").expect("window");
    let (cx, cy) = (
        (i32::from(wx) + i32::from(ww) / 2) as u16,
        (i32::from(wy) + i32::from(wh) / 2) as u16,
    );
    inject(&mut x, EventKind::MouseMove { x: cx, y: cy });
    focus_window(&xvfb.display, "Stratus").expect("focus");
    for down in [true, false] {
        inject(
            &mut x,
            EventKind::Key {
                code: KeyCode::KeyW,
                down,
            },
        );
    }
    let w = KeyCode::KeyW as u32;
    wait_indicator(
        &client,
        &xvfb.display,
        indicator_rgb(w, 0),
        "after typing W",
    )
    .await;
    // Holding the right button over the picture shows in the indicator's blue.
    inject(
        &mut x,
        EventKind::Button {
            button: MouseButton::Right,
            down: true,
        },
    );
    wait_indicator(
        &client,
        &xvfb.display,
        indicator_rgb(w, 1 << 2),
        "while the right button is held",
    )
    .await;
    inject(
        &mut x,
        EventKind::Button {
            button: MouseButton::Right,
            down: false,
        },
    );
    wait_indicator(
        &client,
        &xvfb.display,
        indicator_rgb(w, 0),
        "after releasing it",
    )
    .await;

    // The stats overlay (F2) draws its text in the top-right corner; the scene never has that
    // exact colour there, the overlay's text does.
    let overlay_text = |s: &Shot| {
        (8..200)
            .flat_map(|y| (s.width - 420..s.width).map(move |x| (x, y)))
            .filter(|&(x, y)| s.rgb(x, y) == [0xe0, 0xff, 0xe0])
            .count()
    };
    let before = screenshot_window(&xvfb.display, "Stratus").expect("screenshot");
    assert_eq!(overlay_text(&before), 0, "overlay text before F2");
    for down in [true, false] {
        inject(
            &mut x,
            EventKind::Key {
                code: KeyCode::F2,
                down,
            },
        );
    }
    let report = client
        .wait_for("the overlay on", Duration::from_secs(5), |r| {
            r["stats_overlay"] == true
        })
        .await
        .expect("overlay");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = screenshot_window(&xvfb.display, "Stratus").expect("screenshot");
    let _ = after.save_png(&dir.join("native-client-overlay.png"));
    assert!(
        overlay_text(&after) > 300,
        "no overlay text after F2 ({} px)",
        overlay_text(&after)
    );

    // Sound: Opus packets decoded to a clearly non-silent signal (the demo's 660 Hz tone).
    let audio = &report["audio"];
    assert!(num(audio, "packets") >= 50.0, "{audio}");
    assert!(
        num(audio, "peak") > 0.05,
        "decoded sound is silent: {audio}"
    );
    assert!(
        num(&report, "input_sent") >= 4.0,
        "{}",
        summary(Some(&report))
    );
    let g2g = report["glass_to_glass_ms"].as_array().map_or(0, Vec::len);
    assert!(g2g >= 30, "latency samples {g2g}");
    client.stop();
    drop(lab);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_client_shows_node_lost_and_resumes_on_another_node() {
    let mut config = NodeConfig::loopback("");
    config.video.width = W;
    config.video.height = H;
    config.video.fps = 30;
    config.capacity = 1;
    config.sessions.audio = false;
    let lab = crate::support::start(config.clone()).await;
    // "b" sorts before "local", so the first session goes to it.
    config.node_id = "b".into();
    let doomed = lab.add_node(config).await.expect("second node");
    let xvfb = capture::display::Xvfb::start_sized(1280, 800).expect("Xvfb");
    let size = format!("{W}x{H}");
    let mut client = NativeClient::launch(
        &xvfb.display,
        lab.addr,
        &["--title", "demo", "--size", &size, "--audio-sink", "none"],
    )
    .expect("launch the client");
    client
        .wait_for("playing from node b", Duration::from_secs(60), |r| {
            r["screen"] == "playing" && r["node_id"] == "b" && num(r, "frames_presented") >= 30.0
        })
        .await
        .expect("on b");

    doomed.kill();
    let lost = client
        .wait_for("the node-lost screen", Duration::from_secs(20), |r| {
            r["screen"] == "problem" && r["problem"] == "node_lost"
        })
        .await
        .expect("node lost");
    // The screen is drawn: the headline panel brightens the middle of the darkened picture.
    let shot = screenshot_window(&xvfb.display, "Stratus").expect("screenshot");
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let _ = shot.save_png(&dir.join("native-client-node-lost.png"));
    let bright = (0..shot.height)
        .flat_map(|y| (0..shot.width).map(move |x| (x, y)))
        .filter(|&(x, y)| shot.rgb(x, y) == [255, 255, 255])
        .count();
    assert!(
        bright > 500,
        "no headline on the node-lost screen ({bright} white pixels)"
    );
    let frames_before = num(&lost, "frames_presented");
    let resumed = client
        .wait_for(
            "playing again from node local",
            Duration::from_secs(40),
            |r| {
                r["screen"] == "playing"
                    && r["node_id"] == "local"
                    && num(r, "frames_presented") >= frames_before + 30.0
            },
        )
        .await
        .expect("resumed");
    assert!(
        num(&resumed, "reconnects") >= 1.0,
        "{}",
        summary(Some(&resumed))
    );
    client.stop();
    drop(lab);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_client_explains_what_went_wrong() {
    let xvfb = capture::display::Xvfb::start_sized(1280, 800).expect("Xvfb");

    // Nothing listens where the service should be: unreachable, and it keeps trying.
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let nowhere = free.local_addr().expect("addr");
    drop(free);
    let mut client =
        NativeClient::launch(&xvfb.display, nowhere, &["--title", "demo"]).expect("launch");
    let r = problem(&mut client, "signaling_unreachable").await;
    assert!(
        r["detail"]
            .as_str()
            .unwrap_or_default()
            .contains(&nowhere.to_string()),
        "{r}"
    );
    drop(client);

    // A decoder that is not there.
    let mut client = NativeClient::launch(
        &xvfb.display,
        nowhere,
        &["--title", "demo", "--decoder", "nvh264dec"],
    )
    .expect("launch");
    let r = problem(&mut client, "decoder_missing").await;
    assert!(
        r["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("nvh264dec"),
        "{r}"
    );
    drop(client);

    // A service that only gives tokens to signed-in players refuses us.
    let mut config = NodeConfig::loopback("");
    config.video.width = 320;
    config.video.height = 240;
    config.sessions.audio = false;
    let signaling = signaling::config::Config {
        issuer_key: Some("the-identity-provider's-key".into()),
        ..Default::default()
    };
    let lab = crate::support::start_with(config, &signaling).await;
    let mut client =
        NativeClient::launch(&xvfb.display, lab.addr, &["--title", "demo"]).expect("launch");
    problem(&mut client, "auth_refused").await;
    drop(client);
    // A title the catalog does not have.
    let mut client = NativeClient::launch(
        &xvfb.display,
        lab.addr,
        &["--title", "no-such-game", "--token", &lab_token(&lab)],
    )
    .expect("launch");
    let r = problem(&mut client, "refused").await;
    assert!(
        r["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("no-such-game")
            || r["detail"]
                .as_str()
                .unwrap_or_default()
                .to_lowercase()
                .contains("title"),
        "{r}"
    );
    drop(client);
    // The only node drains: no node is available, and the client says so and keeps trying.
    lab.drain();
    let mut client = NativeClient::launch(
        &xvfb.display,
        lab.addr,
        &["--title", "demo", "--token", &lab_token(&lab)],
    )
    .expect("launch");
    problem(&mut client, "no_node").await;
    drop(client);
    drop(lab);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_client_picker_then_recording_of_the_pointer() {
    let mut config = NodeConfig::loopback("");
    config.video.width = 640;
    config.video.height = 360;
    config.video.fps = 30;
    config.sessions.audio = false;
    let lab = crate::support::start(config).await;
    let xvfb = capture::display::Xvfb::start_sized(1280, 800).expect("Xvfb");
    // No --title: the catalog is shown and Enter plays the highlighted title.
    let mut client = NativeClient::launch(
        &xvfb.display,
        lab.addr,
        &[
            "--size",
            "640x360",
            "--record",
            "traces",
            "--audio-sink",
            "none",
        ],
    )
    .expect("launch the client");
    client
        .wait_for("the title picker", Duration::from_secs(30), |r| {
            r["screen"] == "picker"
        })
        .await
        .expect("picker");
    let shot = screenshot_window(&xvfb.display, "Stratus").expect("screenshot");
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let _ = shot.save_png(&dir.join("native-client-picker.png"));
    // The catalog's entry is drawn in the highlight colour.
    let highlighted = (0..shot.height)
        .flat_map(|y| (0..shot.width).map(move |x| (x, y)))
        .filter(|&(x, y)| shot.rgb(x, y) == [0xff, 0xd0, 0x40])
        .count();
    assert!(highlighted > 200, "no highlighted entry ({highlighted} px)");
    focus_window(&xvfb.display, "Stratus").expect("focus");
    let mut x = XTestInjector::connect(Some(&xvfb.display)).expect("XTEST");
    for down in [true, false] {
        inject(
            &mut x,
            EventKind::Key {
                code: KeyCode::Enter,
                down,
            },
        );
    }
    client
        .wait_for("playing the picked title", Duration::from_secs(30), |r| {
            r["screen"] == "playing" && num(r, "frames_presented") >= 10.0
        })
        .await
        .expect("playing");

    // Pointer moves over the picture are recorded (from the start, --record) and sent.
    let (wx, wy, _, _) = window_rect(&xvfb.display, "Stratus").expect("window");
    for i in 0..40u16 {
        let px = (i32::from(wx) + 100 + i32::from(i) * 10) as u16;
        let py = (i32::from(wy) + 200) as u16;
        inject(&mut x, EventKind::MouseMove { x: px, y: py });
        tokio::time::sleep(Duration::from_millis(8)).await;
    }
    let report = client
        .wait_for("the moves sent", Duration::from_secs(5), |r| {
            num(r, "input_sent") >= 30.0
        })
        .await
        .expect("sent");
    // The wheel turns and, with the pointer locked (F3), relative motion are sent too.
    let sent = num(&report, "input_sent");
    inject(&mut x, EventKind::Wheel { dx: 0, dy: 240 });
    let report = client
        .wait_for("the wheel sent", Duration::from_secs(5), |r| {
            num(r, "input_sent") >= sent + 2.0
        })
        .await
        .expect("wheel");
    for down in [true, false] {
        inject(
            &mut x,
            EventKind::Key {
                code: KeyCode::F3,
                down,
            },
        );
    }
    client
        .wait_for("the pointer locked", Duration::from_secs(5), |r| {
            r["pointer_locked"] == true
        })
        .await
        .expect("locked");
    let sent = num(&report, "input_sent");
    for _ in 0..10 {
        inject(&mut x, EventKind::MouseMoveRel { dx: 5, dy: -3 });
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    client
        .wait_for("relative moves sent", Duration::from_secs(5), |r| {
            num(r, "input_sent") >= sent + 5.0
        })
        .await
        .expect("relative");

    // SIGTERM quits like closing the window: the recording is saved.
    client.stop();
    let traces: Vec<_> = std::fs::read_dir(client.dir().join("traces"))
        .expect("the recording directory")
        .filter_map(Result::ok)
        .collect();
    assert_eq!(traces.len(), 1, "{traces:?}");
    let text = std::fs::read_to_string(traces[0].path()).expect("trace");
    let trace = input::Trace::parse(&text).expect("the recording parses as a trace");
    assert!(
        trace.samples.len() >= 30,
        "{} samples; report {}",
        trace.samples.len(),
        summary(Some(&report))
    );
    let xs: Vec<f64> = trace.samples.iter().map(|s| s.x).collect();
    assert!(
        xs.windows(2).all(|w| w[1] >= w[0]),
        "the recorded x goes right as the pointer did: {xs:?}"
    );
    drop(lab);
}

/// Waits for the problem screen `name`; returns the report.
async fn problem(client: &mut NativeClient, name: &str) -> Value {
    client
        .wait_for(
            &format!("the {name} screen"),
            Duration::from_secs(30),
            |r| r["screen"] == "problem" && r["problem"] == name,
        )
        .await
        .expect("problem screen")
}

/// A client token issued the way an identity provider's backend would get one.
fn lab_token(lab: &benches::lab::Lab) -> String {
    let url = lab.client_ws_url().expect("token");
    url.split_once("token=")
        .map(|(_, t)| t.to_owned())
        .expect("token in the URL")
}
