//! `stratus-bench lab` end to end, short and at 960×540 (the latency code needs 912 pixels of
//! width): our node and the reference `webrtcbin` sender into headless Chromium through the
//! same page, and our node into the native client; every case must present frames whose
//! latency codes read back, and the report must carry every field the latency issue names.

use std::time::Duration;

use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lab_plays_every_case_and_reports_every_field() {
    if benches::chromium::binary().is_none() {
        panic!("chromium is missing; scripts/setup.sh installs it");
    }
    let _turn = crate::support::turn().await;
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_stratus-bench"))
        .args(["lab", "--runs", "1", "--seconds", "2", "--size", "960x540"])
        .args(["--fps", "30", "--kbps", "1500", "--json"])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(240), run)
        .await
        .expect("the lab finishes within 4 minutes")
        .expect("run stratus-bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the lab failed: {stderr}");
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("the lab printed no JSON ({e}): {stderr}"));
    for case in ["stratus_browser", "reference_browser", "stratus_native"] {
        let c = &report[case];
        for field in [
            "g2g_ms_p50",
            "g2g_ms_p95",
            "g2g_ms_p99",
            "sender_ms_p50",
            "jitter_buffer_ms_mean",
            "decode_ms_mean",
            "fps",
            "freezes",
            "sender_cpu_pct",
        ] {
            assert!(c[field].is_number(), "{case} has no {field}: {report}");
        }
        assert!(c["samples"].as_u64().unwrap_or(0) > 0, "{case}: {report}");
        let g2g = c["g2g_ms_p50"].as_f64().unwrap_or(0.0);
        assert!(
            g2g > 0.0 && g2g < 2000.0,
            "{case}'s glass-to-glass: {report}"
        );
        assert!(
            c["fps"].as_f64().unwrap_or(0.0) > 5.0,
            "{case}'s frame rate: {report}"
        );
        assert!(
            c["sender_cpu_pct"].as_f64().unwrap_or(0.0) > 0.0,
            "{case}: {report}"
        );
    }
    for ratio in [
        "browser_g2g_ratio",
        "sender_ms_ratio",
        "sender_cpu_ratio",
        "native_over_reference_g2g",
    ] {
        assert!(
            report[ratio].as_f64().unwrap_or(0.0) > 0.0,
            "{ratio}: {report}"
        );
    }
    assert_eq!(report["runs"], 1);
}
