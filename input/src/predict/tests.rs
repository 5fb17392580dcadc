//! Unit tests of the parent module.
use super::*;

fn feed(p: &mut dyn PointerPredictor, samples: impl IntoIterator<Item = (u64, f64, f64)>) {
    for (t, x, y) in samples {
        p.observe(t, x, y);
    }
}

#[test]
fn baselines() {
    let mut none = NoPrediction::default();
    let mut lin = LinearExtrapolation::default();
    assert_eq!(none.predict(5), (0.0, 0.0));
    assert_eq!(lin.predict(5), (0.0, 0.0));
    for p in [&mut none as &mut dyn PointerPredictor, &mut lin] {
        feed(p, [(1000, 10.0, 20.0), (2000, 12.0, 19.0)]);
    }
    assert_eq!(none.predict(10_000), (12.0, 19.0));
    assert_eq!(lin.predict(4000), (16.0, 17.0));
    lin.observe(2000, 13.0, 19.0); // same time: no velocity, hold the last sample
    assert_eq!(lin.predict(4000), (13.0, 19.0));
    lin.reset();
    assert_eq!(lin.predict(4000), (0.0, 0.0));
    assert_eq!((none.name(), lin.name()), ("none", "linear"));
}

#[test]
fn leads_a_steady_move_by_speed_times_horizon() {
    let mut p = Predictor::new(PredictorConfig::default());
    // 800 px/s to the right, 400 px/s down, at 500 Hz.
    feed(
        &mut p,
        (0..200u64).map(|i| (i * 2000, i as f64 * 1.6, i as f64 * 0.8)),
    );
    let (x, y) = p.predict(398_000 + 50_000);
    assert!((x - (318.4 + 40.0)).abs() < 1.0, "x {x}");
    assert!((y - (159.2 + 20.0)).abs() < 1.0, "y {y}");
    let [_, (vx, vy), _] = p.estimate().expect("seen samples");
    assert!(
        (vx - 800.0).abs() < 5.0 && (vy - 400.0).abs() < 5.0,
        "{vx} {vy}"
    );
    // Asking for the past or the present gives the filtered position.
    let (x0, _) = p.predict(0);
    assert!((x0 - 318.4).abs() < 0.5);
}

#[test]
fn resting_pointer_stays_put() {
    let mut p = Predictor::new(PredictorConfig::default());
    // Sub-pixel tremor at 10 Hz, quantised: the prediction stays within a pixel.
    feed(
        &mut p,
        (0..1000u64).map(|i| {
            let t = i as f64 * 1e-3;
            let x = (500.0 + 0.6 * (62.8 * t).sin()).round();
            (i * 1000, x, 300.0)
        }),
    );
    let (x, y) = p.predict(999_000 + 50_000);
    assert!(
        (x - 500.0).abs() < 1.0 && (y - 300.0).abs() < 1e-6,
        "{x} {y}"
    );
}

#[test]
fn restarts_on_gap_and_jump_and_ignores_garbage() {
    let mut p = Predictor::new(PredictorConfig::default());
    feed(&mut p, (0..50u64).map(|i| (i * 1000, i as f64 * 2.0, 0.0)));
    assert_eq!(p.auto_resets(), 0);
    p.observe(200_000, 98.0, 0.0); // 151 ms after the last sample
    assert_eq!(p.auto_resets(), 1);
    assert_eq!(
        p.predict(250_000),
        (98.0, 0.0),
        "no velocity survives a gap"
    );
    p.observe(201_000, 98.0, 0.0);
    p.observe(202_000, 1000.0, 500.0); // a teleport
    assert_eq!(p.auto_resets(), 2);
    assert_eq!(p.predict(260_000), (1000.0, 500.0));
    p.observe(203_000, f64::NAN, 1.0);
    p.observe(204_000, 1.0, f64::INFINITY);
    assert_eq!(p.predict(260_000), (1000.0, 500.0));
    p.reset();
    assert_eq!(p.predict(260_000), (0.0, 0.0));
    assert!(p.estimate().is_none());
}

#[test]
fn deceleration_stops_short_and_extrapolation_is_capped() {
    let mut p = Predictor::new(PredictorConfig::default());
    // 100 ms at 2000 px/s, then braking at 20000 px/s²: at 160 ms the pointer is at 284 px
    // doing 800 px/s, and it will stop at 300 px, 16 px ahead, 40 ms later.
    let x_at = |t: f64| {
        let b = (t - 0.1).max(0.0);
        2000.0 * t - 10_000.0 * b * b
    };
    feed(
        &mut p,
        (0..=160u64).map(|i| (i * 1000, x_at(i as f64 * 1e-3), 0.0)),
    );
    for horizon_ms in [50, 100, 150, 1000] {
        let (x, _) = p.predict(160_000 + horizon_ms * 1000);
        // Velocity extrapolation would say 324 px at 50 ms and 364 px at 100 ms.
        assert!(x <= 302.0, "h {horizon_ms} ms: {x} passes the stop");
    }
    let mut fast = Predictor::new(PredictorConfig {
        max_speed_px_s: 1000.0,
        ..PredictorConfig::default()
    });
    feed(
        &mut fast,
        (0..100u64).map(|i| (i * 1000, i as f64 * 5.0, 0.0)),
    );
    let (x, _) = fast.predict(99_000 + 100_000);
    assert!(x - 495.0 <= 100.0 + 0.5, "capped at 1000 px/s: {x}");
    let (far, _) = fast.predict(99_000 + 10_000_000);
    assert!((far - x).abs() < 60.0, "horizon capped at 150 ms: {far}");
}

#[test]
fn horizon_follows_latency_smoothly() {
    let mut h = Horizon::new(20.0, 5.0, 8.0);
    assert_eq!(h.ms(), 33.0);
    assert_eq!(h.us(), 33_000);
    h.observe_one_way_ms(100.0);
    assert_eq!(h.one_way_ms(), 30.0);
    for _ in 0..100 {
        h.observe_one_way_ms(40.0);
    }
    assert!((h.ms() - 53.0).abs() < 0.01);
    h.observe_one_way_ms(f64::NAN);
    h.observe_one_way_ms(-5.0);
    assert!((h.ms() - 53.0).abs() < 0.01);
    h.set_decode_present_ms(500.0, f64::INFINITY);
    assert_eq!(h.ms(), MAX_HORIZON_MS);
    assert_eq!(Horizon::new(f64::NAN, -1.0, 2.0).ms(), 2.0);
}

#[test]
fn stats_summarise() {
    let s = ErrorSamples {
        errors_px: (1..=20).map(f64::from).collect(),
        overshoots_px: vec![1.0, 3.0],
    }
    .stats();
    assert_eq!(s.p95_px, 19.0);
    assert!((s.rms_px - (2870.0f64 / 20.0).sqrt()).abs() < 1e-9);
    assert_eq!((s.overshoot_px_at_stops, s.stops, s.samples), (2.0, 2, 20));
    assert_eq!(ErrorSamples::default().stats(), ErrorStats::default());
}

#[test]
fn golden_vectors_are_json_shaped() {
    let g = golden_vectors();
    assert!(g.starts_with('{') && g.ends_with("}\n"));
    assert_eq!(g.matches("\"observations\"").count(), 7);
    assert!(g.len() < 300_000, "{} bytes", g.len());
}
