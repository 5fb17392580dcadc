//! The browser's predictor (`client/web/predict.js`) matches the Rust one: every golden vector
//! in `client/web/predict_vectors.json` (produced by `input::predict::golden_vectors`, kept
//! current by the input crate's tests) is replayed in headless Chromium.

use benches::chromium::{Chromium, LaunchOptions};
use serde_json::Value;

const PREDICT_JS: &str = include_str!("../../../client/web/predict.js");
const VECTORS: &str = include_str!("../../../client/web/predict_vectors.json");
/// The largest distance allowed between the JavaScript and Rust predictions, pixels.
const TOLERANCE_PX: f64 = 0.5;

/// Imports predict.js as a module from a blob URL and replays every case; returns the number
/// of queries checked, the worst distance and the first mismatches.
const REPLAY: &str = r#"(async (source, golden, tolerance) => {
  const url = URL.createObjectURL(new Blob([source], { type: 'text/javascript' }));
  const { KalmanPredictor, Horizon } = await import(url);
  let checked = 0, worst = 0;
  const mismatches = [];
  for (const c of golden.cases) {
    const p = new KalmanPredictor();
    c.observations.forEach(([t, x, y], i) => {
      p.observe(t, x, y);
      const [qt, ex, ey] = c.queries[i];
      const got = p.predict(qt);
      const d = Math.hypot(got.x - ex, got.y - ey);
      if (!(d <= tolerance) && mismatches.length < 5) {
        mismatches.push({ case: c.name, step: i, got, expected: [ex, ey] });
      }
      worst = Math.max(worst, Number.isFinite(d) ? d : Infinity);
      checked += 1;
    });
  }
  // reset() forgets, and Horizon smooths like the Rust one.
  const p = new KalmanPredictor();
  p.observe(0, 5, 6);
  p.reset();
  const afterReset = p.predict(1000);
  const h = new Horizon(20, 5, 8);
  h.observeOneWayMs(100);
  return { checked, worst: Number.isFinite(worst) ? worst : 1e9, mismatches, afterReset,
           horizon: [h.oneWayMs, h.ms(), h.us()] };
})"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn javascript_predictor_matches_the_rust_golden_vectors() {
    // Chromium is heavy; wait for the streaming tests to finish with the machine.
    let _turn = crate::support::turn().await;
    let golden: Value = serde_json::from_str(VECTORS).expect("golden vectors are json");
    let expected_queries: usize = golden["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| c["queries"].as_array().map_or(0, Vec::len))
        .sum();
    assert!(expected_queries > 500, "{expected_queries} queries");

    let mut browser = Chromium::launch("about:blank", &LaunchOptions::default())
        .await
        .expect("launch headless chromium");
    let source = serde_json::to_string(PREDICT_JS).expect("a string");
    let result = browser
        .eval(&format!("{REPLAY}({source}, {VECTORS}, {TOLERANCE_PX})"))
        .await
        .expect("replay the golden vectors in the page");

    assert_eq!(
        result["checked"].as_u64(),
        Some(expected_queries as u64),
        "{result}"
    );
    let worst = result["worst"].as_f64().expect("worst");
    println!("{expected_queries} predictions compared, worst difference {worst:.4} px");
    assert!(
        worst <= TOLERANCE_PX,
        "predict.js differs from Rust by {worst} px: {}",
        result["mismatches"]
    );
    assert_eq!(result["afterReset"], serde_json::json!({ "x": 0, "y": 0 }));
    // Horizon: 20 + (100 - 20) / 8 = 30 ms one-way, + 13 ms decode and present.
    assert_eq!(result["horizon"], serde_json::json!([30, 43, 43000]));
}
