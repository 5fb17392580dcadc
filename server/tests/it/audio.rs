//! The session sound path against a real PulseAudio server: a tone played into a session sink
//! comes out of capture as Opus at its frequency, sinks are isolated, and everything is gone
//! after teardown.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use server::audio::{
    AudioCapture, AudioError, AudioPacket, DEMO_TONE_HZ, FRAME_DURATION, FRAME_SAMPLES,
    SAMPLE_RATE, SessionSink, SoundServer, TonePlayer,
};
use tokio::sync::mpsc;

mod spectrum;

use spectrum::dominant_frequency;

/// Whether the PulseAudio programs are installed; prints why the test skips when not.
fn have_pulse(test: &str) -> bool {
    for (program, package) in [("pulseaudio", "pulseaudio"), ("pactl", "pulseaudio-utils")] {
        let ok = Command::new(program)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            eprintln!("SKIP {test}: `{program}` not found (apt-get install {package})");
            return false;
        }
    }
    true
}

/// A fresh path for a server's runtime directory; not created, so the server makes it and
/// removes it again.
fn runtime_dir(tag: &str) -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    std::env::temp_dir().join(format!(
        "stratus-audio-{}-{tag}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

fn pactl(server: &str, args: &[&str]) -> String {
    let out = Command::new("pactl")
        .arg("--server")
        .arg(server)
        .args(args)
        .output()
        .expect("run pactl");
    assert!(out.status.success(), "pactl {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Receives packets until they hold `audio` worth of sound, failing after `timeout`.
async fn collect(
    rx: &mut mpsc::Receiver<AudioPacket>,
    audio: Duration,
    timeout: Duration,
) -> Vec<AudioPacket> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut packets = Vec::new();
    let mut held = Duration::ZERO;
    while held < audio {
        let packet = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "only {held:?} of audio in {timeout:?} ({} packets)",
                    packets.len()
                )
            })
            .expect("capture stopped sending");
        held += packet.duration;
        packets.push(packet);
    }
    packets
}

/// Decodes `packets` and returns the left channel.
fn decode_left(packets: &[AudioPacket]) -> Vec<f32> {
    let mut decoder = opus::Decoder::new(SAMPLE_RATE, opus::Channels::Stereo).expect("decoder");
    let mut frame = vec![0f32; FRAME_SAMPLES * 2];
    let mut left = Vec::new();
    for packet in packets {
        let n = decoder
            .decode_float(&packet.data, &mut frame, false)
            .expect("a valid Opus packet");
        assert_eq!(n, FRAME_SAMPLES, "one packet is 20 ms");
        left.extend(frame[..n * 2].iter().step_by(2));
    }
    left
}

fn rms(samples: &[f32]) -> f64 {
    (samples.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / samples.len().max(1) as f64)
        .sqrt()
}

/// Power of `freq` in `samples` (Hann-windowed Goertzel), for comparing two tones.
fn tone_power(samples: &[f32], freq: f64) -> f64 {
    let n = samples.len();
    let coeff = 2.0 * (2.0 * std::f64::consts::PI * freq / f64::from(SAMPLE_RATE)).cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for (i, &x) in samples.iter().enumerate() {
        let w = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / (n - 1) as f64).cos();
        let s0 = f64::from(x) * w + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    s1 * s1 + s2 * s2 - coeff * s1 * s2
}

/// Checks what a receiver relies on: 20 ms per packet, sane sizes, capture times that advance
/// by about the audio they hold.
fn check_packets(packets: &[AudioPacket]) {
    for p in packets {
        assert_eq!(p.duration, FRAME_DURATION);
        assert!(
            (3..=1275).contains(&p.data.len()),
            "packet of {} bytes",
            p.data.len()
        );
    }
    let mean = packets.iter().map(|p| p.data.len()).sum::<usize>() / packets.len();
    // 96 kbit/s is 240 bytes per 20 ms; VBR on a steady tone stays well inside this.
    assert!((60..=500).contains(&mean), "mean packet {mean} bytes");
    for pair in packets.windows(2) {
        assert!(
            pair[1].captured_ns >= pair[0].captured_ns,
            "capture times go backwards"
        );
    }
    let (first, last) = (
        packets[0].captured_ns,
        packets[packets.len() - 1].captured_ns,
    );
    let spanned = Duration::from_nanos(last - first);
    let held = FRAME_DURATION * (packets.len() as u32 - 1);
    assert!(
        spanned + Duration::from_millis(200) >= held
            && spanned <= held + Duration::from_millis(300),
        "{} packets holding {held:?} were captured over {spanned:?}",
        packets.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tone_in_the_session_sink_comes_out_of_capture_as_opus_at_its_frequency() {
    if !have_pulse("audio tone test") {
        return;
    }
    let t0 = Instant::now();
    let pulse = SoundServer::start(&runtime_dir("tone")).expect("start pulseaudio");
    let started = t0.elapsed();
    let sink = SessionSink::create(&pulse, "stratus-tone").expect("sink");
    assert_eq!(sink.monitor(), "stratus-tone.monitor");
    let mut tone = TonePlayer::start(&pulse, &sink, DEMO_TONE_HZ).expect("tone");
    let (tx, mut rx) = mpsc::channel(64);
    let capture = AudioCapture::start(&pulse, &sink, tx).expect("capture");
    let t1 = Instant::now();

    // 1.5 s of audio; the first 0.5 s may hold the silence before the tone's stream connects.
    let packets = collect(
        &mut rx,
        Duration::from_millis(1500),
        Duration::from_secs(10),
    )
    .await;
    let first_packet_wall = t1.elapsed();
    check_packets(&packets);
    let left = decode_left(&packets[25..]);
    let freq = dominant_frequency(&left, f64::from(SAMPLE_RATE));
    let level = rms(&left);
    eprintln!(
        "server up in {started:?}; 1.5 s of audio in {first_packet_wall:?}; \
         {freq:.1} Hz at RMS {level:.3}; packets {} dropped {}",
        capture.packets(),
        capture.dropped()
    );
    assert!(
        (freq - DEMO_TONE_HZ).abs() <= 10.0,
        "heard {freq:.1} Hz, played {DEMO_TONE_HZ} Hz"
    );
    // A sine at half volume has an RMS of 0.35; Opus keeps it near that.
    assert!((0.2..0.5).contains(&level), "RMS {level}");
    assert_eq!(capture.failure(), None);
    assert_eq!(tone.failure(), None);
    assert!(capture.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_session_sinks_on_one_server_each_hear_only_their_own_title() {
    if !have_pulse("audio isolation test") {
        return;
    }
    let pulse = SoundServer::start(&runtime_dir("iso")).expect("start pulseaudio");
    let (freq_a, freq_b) = (DEMO_TONE_HZ, 1100.0);
    let sink_a = SessionSink::create(&pulse, "stratus-a").expect("sink a");
    let sink_b = SessionSink::create(&pulse, "stratus-b").expect("sink b");
    let _tone_a = TonePlayer::start(&pulse, &sink_a, freq_a).expect("tone a");
    let _tone_b = TonePlayer::start(&pulse, &sink_b, freq_b).expect("tone b");
    let (tx_a, mut rx_a) = mpsc::channel(64);
    let (tx_b, mut rx_b) = mpsc::channel(64);
    let _capture_a = AudioCapture::start(&pulse, &sink_a, tx_a).expect("capture a");
    let _capture_b = AudioCapture::start(&pulse, &sink_b, tx_b).expect("capture b");

    let want = Duration::from_millis(1500);
    let (a, b) = tokio::join!(
        collect(&mut rx_a, want, Duration::from_secs(10)),
        collect(&mut rx_b, want, Duration::from_secs(10)),
    );
    for (name, packets, own, other) in [("a", &a, freq_a, freq_b), ("b", &b, freq_b, freq_a)] {
        check_packets(packets);
        let left = decode_left(&packets[25..]);
        let heard = dominant_frequency(&left, f64::from(SAMPLE_RATE));
        let crosstalk_db = 10.0 * (tone_power(&left, other) / tone_power(&left, own)).log10();
        eprintln!("sink {name}: heard {heard:.1} Hz; the other tone at {crosstalk_db:.1} dB");
        assert!(
            (heard - own).abs() <= 10.0,
            "sink {name} heard {heard:.1} Hz, its title played {own} Hz"
        );
        assert!(
            crosstalk_db < -40.0,
            "sink {name} hears the other session's {other} Hz tone at {crosstalk_db:.1} dB"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teardown_unloads_the_sink_and_stops_the_server_leaving_nothing() {
    if !have_pulse("audio teardown test") {
        return;
    }
    let dir = runtime_dir("down");
    let pulse = SoundServer::start(&dir).expect("start pulseaudio");
    let address = pulse.server();
    assert_eq!(address, format!("unix:{}/native", dir.display()));
    let pid = pulse.pid().expect("a server we started has a pid");

    let sink = SessionSink::create(&pulse, "stratus-down").expect("sink");
    let env = sink.env();
    assert!(
        env.contains(&("PULSE_SERVER".into(), address.clone())),
        "{env:?}"
    );
    assert!(
        env.contains(&("PULSE_SINK".into(), "stratus-down".into())),
        "{env:?}"
    );
    // PulseAudio would rename a second sink of the same name; we refuse it instead.
    let err = SessionSink::create(&pulse, "stratus-down").expect_err("duplicate sink");
    assert!(matches!(err, AudioError::SinkExists { .. }), "{err}");
    let err = SessionSink::create(&pulse, "bad name").expect_err("invalid name");
    assert!(matches!(err, AudioError::InvalidSinkName { .. }), "{err}");

    let module = sink.module_index().to_string();
    let tone = TonePlayer::start(&pulse, &sink, DEMO_TONE_HZ).expect("tone");
    let (tx, mut rx) = mpsc::channel(64);
    let capture = AudioCapture::start(&pulse, &sink, tx).expect("capture");
    collect(&mut rx, Duration::from_millis(200), Duration::from_secs(10)).await;
    let inputs = pactl(&address, &["list", "short", "sink-inputs"]);
    let outputs = pactl(&address, &["list", "short", "source-outputs"]);
    assert_eq!(inputs.lines().count(), 1, "the tone plays: {inputs}");
    assert_eq!(outputs.lines().count(), 1, "capture records: {outputs}");

    let t0 = Instant::now();
    drop(capture);
    drop(tone);
    drop(sink);
    let dropped_in = t0.elapsed();
    let modules = pactl(&address, &["list", "short", "modules"]);
    assert!(
        !modules
            .lines()
            .any(|l| l.split('\t').next() == Some(module.as_str())),
        "module {module} still loaded: {modules}"
    );
    assert!(!modules.contains("module-null-sink"), "{modules}");
    let inputs = pactl(&address, &["list", "short", "sink-inputs"]);
    let outputs = pactl(&address, &["list", "short", "source-outputs"]);
    assert!(
        inputs.trim().is_empty() && outputs.trim().is_empty(),
        "{inputs}{outputs}"
    );
    rx.close();

    let t1 = Instant::now();
    drop(pulse);
    let stopped_in = t1.elapsed();
    eprintln!("capture, tone and sink dropped in {dropped_in:?}; server stopped in {stopped_in:?}");
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    assert!(
        !comm.starts_with("pulseaudio"),
        "pulseaudio {pid} still runs after the server dropped"
    );
    assert!(!dir.exists(), "{} is left behind", dir.display());
    assert!(
        stopped_in < Duration::from_secs(2),
        "pulseaudio took {stopped_in:?} to stop on SIGTERM"
    );
}

#[test]
fn connecting_uses_a_running_server_and_leaves_it_running() {
    if !have_pulse("audio connect test") {
        return;
    }
    let owner = SoundServer::start(&runtime_dir("conn")).expect("start pulseaudio");
    let connected = SoundServer::connect(&owner.server()).expect("connect");
    assert_eq!(connected.pid(), None);
    assert_eq!(connected.server(), owner.server());
    let sink = SessionSink::create(&connected, "stratus-conn").expect("sink via connection");
    drop(sink);
    drop(connected);
    pactl(&owner.server(), &["info"]); // still answers

    let nowhere = format!("unix:{}/nowhere/native", std::env::temp_dir().display());
    let err = SoundServer::connect(&nowhere).expect_err("no server there");
    assert!(
        err.to_string().contains("unset PULSE_SERVER or start one"),
        "{err}"
    );

    // The node's start: the configured server when it answers, else its own, and its own when
    // none is configured.
    let configured = SoundServer::connect_or_start(Some(&owner.server()), &runtime_dir("cfg"))
        .expect("configured server");
    assert_eq!(
        (configured.pid(), configured.server()),
        (None, owner.server())
    );
    for address in [Some(nowhere.as_str()), Some(""), None] {
        let own = SoundServer::connect_or_start(address, &runtime_dir("own")).expect("own server");
        assert!(own.pid().is_some(), "{address:?}: starts its own");
        assert_ne!(own.server(), owner.server());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sound_reaches_capture_soon_after_the_title_starts_playing() {
    if !have_pulse("audio latency test") {
        return;
    }
    let pulse = SoundServer::start(&runtime_dir("lat")).expect("start pulseaudio");
    let sink = SessionSink::create(&pulse, "stratus-lat").expect("sink");
    let (tx, mut rx) = mpsc::channel(256);
    let capture = AudioCapture::start(&pulse, &sink, tx).expect("capture");
    // Silence first: the sink runs at capture's latency before the title makes a sound.
    let silent = collect(&mut rx, Duration::from_millis(300), Duration::from_secs(10)).await;
    assert!(rms(&decode_left(&silent)) < 1e-3, "the sink is silent");

    let mut decoder = opus::Decoder::new(SAMPLE_RATE, opus::Channels::Stereo).expect("decoder");
    let mut frame = vec![0f32; FRAME_SAMPLES * 2];
    let played_ns = capture::clock::monotonic_ns();
    let _tone = TonePlayer::start(&pulse, &sink, DEMO_TONE_HZ).expect("tone");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let heard_ns = loop {
        let packet = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("the tone within 10 s")
            .expect("capture runs");
        let n = decoder
            .decode_float(&packet.data, &mut frame, false)
            .expect("decode");
        if rms(&frame[..n * 2]) > 0.05 {
            break packet.captured_ns;
        }
    };
    let latency = Duration::from_nanos(heard_ns.saturating_sub(played_ns));
    eprintln!(
        "first loud packet {latency:?} after the tone started (dropped {})",
        capture.dropped()
    );
    assert!(
        latency < Duration::from_millis(500),
        "the title's sound reached capture {latency:?} after it started playing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_reports_its_sink_going_away() {
    if !have_pulse("audio sink-gone test") {
        return;
    }
    let pulse = SoundServer::start(&runtime_dir("gone")).expect("start pulseaudio");
    let sink = SessionSink::create(&pulse, "stratus-gone").expect("sink");
    let (tx, mut rx) = mpsc::channel(64);
    let capture = AudioCapture::start(&pulse, &sink, tx).expect("capture");
    collect(&mut rx, Duration::from_millis(100), Duration::from_secs(10)).await;
    drop(sink);
    let deadline = Instant::now() + Duration::from_secs(5);
    while capture.is_running() {
        assert!(
            Instant::now() < deadline,
            "capture still runs 5 s after its sink went"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let failure = capture.failure().expect("a failure reason");
    eprintln!("capture failure: {failure}");
    assert!(failure.contains("pulsesrc"), "{failure}");
}
