//! Golden vectors that pin other implementations of [`Predictor`] (the browser's
//! `predict.js`) to this one.

use super::{PointerPredictor, Predictor, PredictorConfig};

/// Horizons the golden vectors cycle through, milliseconds.
pub const GOLDEN_HORIZONS_MS: [u64; 3] = [16, 50, 100];

/// A golden case's samples, `(t_us, x, y)`.
type Observations = Vec<(u64, f64, f64)>;

/// The observation sequences of the golden vectors, with their names.
fn golden_cases() -> Vec<(&'static str, Observations)> {
    use crate::corpus::{Device, Family, FamilyTrace, MotionConfig, synthesize};
    let take = |rate: u32, seed: u64, n: usize| -> Observations {
        synthesize(&MotionConfig::new(rate, 5_000), seed)
            .samples
            .iter()
            .take(n)
            .map(|s| (s.t_us, s.x, s.y))
            .collect()
    };
    // A 250 Hz stretch with a 500 px jump and then a 150 ms gap, so both automatic resets are
    // exercised.
    let mut jumps = take(250, 0x5EED_0250, 320);
    for (i, (t, x, _)) in jumps.iter_mut().enumerate() {
        if i >= 150 {
            *x += 500.0;
        }
        if i >= 230 {
            *t += 150_000;
        }
    }
    // Motion families through their devices: the calibration learns, the regimes and the line
    // model take part, coarse stamps repeat.
    let family = |family: Family, device: &str, seed: u64, n: usize| -> Observations {
        let device = Device::named(device).expect("a preset");
        FamilyTrace::new(family, device, seed, 6_000)
            .observed
            .samples
            .iter()
            .take(n)
            .map(|s| (s.t_us, s.x, s.y))
            .collect()
    };
    vec![
        (
            "flicks on a Windows timer",
            family(Family::Flick, "windows-timer-64hz", 7, 380),
        ),
        (
            "stick at 60 Hz",
            family(Family::Stick, "gamepad-60hz", 8, 360),
        ),
        (
            "random walk at 1 kHz",
            family(Family::RandomWalk, "mouse-1000hz", 9, 3000),
        ),
        ("125 Hz", take(125, 0x5EED_0125, 400)),
        ("500 Hz", take(500, 0x5EED_0500, 600)),
        ("1000 Hz", take(1000, 0x5EED_1000, 600)),
        ("250 Hz with a jump and a gap", jumps),
    ]
}

/// Golden vectors for other implementations of [`Predictor`] (the browser's `predict.js`), as
/// JSON: `{"cases": [{"name", "observations": [[t_us, x, y], ...], "queries": [[t_us, x, y],
/// ...]}]}`. Each case starts from a fresh predictor with the default config; `queries[i]` is
/// asked right after `observations[i]` is fed, for that sample's time plus 16, 50 or 100 ms in
/// turn ([`GOLDEN_HORIZONS_MS`]), and holds the expected prediction to 1/1000 px.
pub fn golden_vectors() -> String {
    let mut out = String::from(
        "{\n\"generator\": \"input::predict::golden_vectors, default PredictorConfig\",\n\"cases\": [\n",
    );
    for (k, (name, obs)) in golden_cases().into_iter().enumerate() {
        let mut p = Predictor::new(PredictorConfig::default());
        let mut observations = Vec::with_capacity(obs.len());
        let mut queries = Vec::with_capacity(obs.len());
        for (i, &(t, x, y)) in obs.iter().enumerate() {
            p.observe(t, x, y);
            let target = t + GOLDEN_HORIZONS_MS[i % GOLDEN_HORIZONS_MS.len()] * 1000;
            let (px, py) = p.predict(target);
            observations.push(format!("[{t},{x},{y}]"));
            queries.push(format!("[{target},{px:.3},{py:.3}]"));
        }
        let sep = if k == 0 { "" } else { ",\n" };
        out.push_str(&format!(
            "{sep}{{\"name\": \"{name}\",\n\"observations\": [\n{}\n],\n\"queries\": [\n{}\n]}}",
            observations.join(",\n"),
            queries.join(",\n")
        ));
    }
    out.push_str("\n]\n}\n");
    out
}
