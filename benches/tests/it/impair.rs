//! The impairment lab end to end, short: `stratus-bench impair` runs scenarios through the
//! relay into the native client's session and into headless Chromium, and the stream survives
//! them — 5 % loss without long freezes (repaired by FEC for Chromium), blackouts with the picture back within bounds and the
//! session kept — and every row carries the fields the resilience issue names. The bands here
//! are wider than the benchmark's (runs of 12 s on a shared 2-core machine); the full-length
//! figures are in `benches/README.md`.

use std::time::Duration;

use serde_json::Value;

/// Runs `stratus-bench impair` with `args` (at 960×540, 30 fps, 2 Mbit/s, 12 s per scenario)
/// and returns its rows.
async fn impair(args: &[&str]) -> Vec<Value> {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_stratus-bench"))
        .arg("impair")
        .args(args)
        .args(["--size", "960x540", "--fps", "30", "--kbps", "2000"])
        .args(["--seconds", "12", "--json"])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .expect("the impairment lab finishes within 5 minutes")
        .expect("run stratus-bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the impairment lab failed: {stderr}");
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("it printed no JSON ({e}): {stderr}"));
    eprintln!("{stderr}");
    report["rows"].as_array().cloned().unwrap_or_default()
}

fn num(row: &Value, field: &str) -> f64 {
    row[field]
        .as_f64()
        .unwrap_or_else(|| panic!("no {field} in {row}"))
}

fn every_field(row: &Value) {
    for field in [
        "freezes",
        "freeze_ms_total",
        "longest_freeze_ms",
        "rtx_pct",
        "fec_pct",
        "keyframes",
    ] {
        assert!(row[field].is_number(), "no {field}: {row}");
    }
    for field in ["g2g_ms_p50", "g2g_ms_p95", "recover_ms", "rate_error_pct"] {
        assert!(row.get(field).is_some(), "no {field}: {row}");
    }
    assert!(row["session_lost"].is_null(), "the session was lost: {row}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_native_session_survives_loss_and_blackouts() {
    let _turn = crate::support::turn().await;
    let rows = impair(&[
        "--scenario",
        "R3,R6",
        "--clients",
        "native",
        "--reference",
        "none",
    ])
    .await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    for row in &rows {
        every_field(row);
    }
    let (r3, r6) = (&rows[0], &rows[1]);
    // 5 % loss both ways: NACK repairs it, no freeze near the blackout's length. (A keyframe
    // request lost on the way can cost a second; on a CI machine running other tests beside
    // this one the longest freeze reached 1.07 s once. Before the client's recovery it was
    // 6.5 s.)
    assert!(num(r3, "fps") >= 20.0, "R3: {r3}");
    assert!(num(r3, "longest_freeze_ms") <= 1500.0, "R3: {r3}");
    assert!(num(r3, "nacks_sent") > 0.0, "R3 sent no NACK: {r3}");
    // Blackouts of 0.5 s and 2 s: a fresh picture after each, the session kept.
    for r in r6["recover_ms_each"].as_array().expect("recoveries") {
        let ms = r.as_f64().unwrap_or(f64::INFINITY);
        assert!(ms <= 1500.0, "R6 recovered in {r} ms: {r6}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_through_the_relay_gets_repair_under_loss_and_survives_a_blackout() {
    if benches::chromium::binary().is_none() {
        panic!("chromium is missing; scripts/setup.sh installs it");
    }
    let _turn = crate::support::turn().await;
    let rows = impair(&[
        "--scenario",
        "R3,R6",
        "--clients",
        "browser",
        "--reference",
        "none",
    ])
    .await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    let (r3, r6) = (&rows[0], &rows[1]);
    every_field(r3);
    every_field(r6);
    // 5 % loss both ways: Chromium offers FlexFEC-03, the node sends repair sized from the
    // loss Chromium reports, and the picture keeps moving.
    assert!(num(r3, "fec_pct") > 3.0, "R3 carried no FEC: {r3}");
    assert!(num(r3, "fps") >= 15.0, "R3: {r3}");
    assert!(num(r3, "longest_freeze_ms") <= 1500.0, "R3: {r3}");
    // The relay carried the session: it was blacked out, so packets were dropped on the way.
    assert!(
        num(r6, "dropped_by_path") > 0.0,
        "nothing crossed the relay: {r6}"
    );
    for r in r6["recover_ms_each"].as_array().expect("recoveries") {
        let ms = r.as_f64().unwrap_or(f64::INFINITY);
        assert!(ms <= 1500.0, "R6 recovered in {r} ms: {r6}");
    }
}
