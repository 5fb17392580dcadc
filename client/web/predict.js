// Stratus pointer predictor for the browser: the same adaptive constant-acceleration Kalman
// filter as the Rust `input::predict::Predictor` (see input/src/predict/ for the model and
// its tuning). It is checked against golden vectors produced by the Rust code
// (predict_vectors.json) by benches/tests/it/predict_js.rs, so keep the two in step: change
// both, then regenerate the vectors.
//
// Usage (time is an argument, in microseconds, e.g. Math.round(event.timeStamp * 1000)):
//
//   import { KalmanPredictor, Horizon } from './predict.js';
//   const predictor = new KalmanPredictor();
//   const horizon = new Horizon(20, 8, 8); // one-way latency, decode, present (ms)
//   onpointermove = (e) => {
//     const tUs = Math.round(e.timeStamp * 1000);
//     predictor.observe(tUs, e.offsetX, e.offsetY);
//     const { x, y } = predictor.predict(tUs + horizon.us());
//     send(x, y);
//   };
//   onpointerdown = () => predictor.reset();

/** Defaults, identical to the Rust `PredictorConfig::default()`. */
export const DEFAULT_CONFIG = Object.freeze({
  measurementNoisePx: 1.0,
  jerkPsd: 2.0e7,
  adaptMs: 20.0,
  adaptGain: 3.0,
  maxQScale: 30.0,
  accelWeight: 0.5,
  restSpeedPxS: 100.0,
  initialSpeedPxS: 300.0,
  initialAccelPxS2: 3000.0,
  jumpPx: 300.0,
  maxGapMs: 100.0,
  maxHorizonMs: 150.0,
  maxSpeedPxS: 20000.0,
});

/** A single surprise counts at most this much in the noise adaptation. */
const NIS_CAP = 10.0;

/** The adaptive constant-acceleration Kalman pointer predictor. */
export class KalmanPredictor {
  /** @param {Partial<typeof DEFAULT_CONFIG>} config overrides of DEFAULT_CONFIG */
  constructor(config = {}) {
    this.config = { ...DEFAULT_CONFIG, ...config };
    this.autoResets = 0;
    this.reset();
  }

  /** Forgets everything (call it on a button press). */
  reset() {
    this.state = null;
  }

  /** The filter restarted from the sample at tUs. */
  start(tUs, x, y) {
    const c = this.config;
    const r = c.measurementNoisePx * c.measurementNoisePx;
    return {
      // Rows position, velocity, acceleration; one column per axis.
      sx: [x, 0, 0],
      sy: [y, 0, 0],
      // Covariance shared by both axes, row-major 3 x 3.
      p: [
        [r, 0, 0],
        [0, c.initialSpeedPxS * c.initialSpeedPxS, 0],
        [0, 0, c.initialAccelPxS2 * c.initialAccelPxS2],
      ],
      tUs,
      logQScale: 0,
    };
  }

  /** Feeds the sample taken at tUs (microseconds, non-decreasing). */
  observe(tUs, x, y) {
    const c = this.config;
    if (!(Number.isFinite(x) && Number.isFinite(y))) return;
    const s = this.state;
    if (s === null) {
      this.state = this.start(tUs, x, y);
      return;
    }
    // A sample older than the last one is taken as simultaneous with it.
    const dt = Math.max(tUs - s.tUs, 0) * 1e-6;
    if (dt * 1e3 > c.maxGapMs) {
      this.autoResets += 1;
      this.state = this.start(tUs, x, y);
      return;
    }
    const dt2 = dt * dt;
    const dt3 = dt * dt * dt;
    const f = [
      [1, dt, dt2 / 2],
      [0, 1, dt],
      [0, 0, 1],
    ];
    const q = c.jerkPsd * Math.exp(s.logQScale);
    const qm = [
      [(dt3 * dt2) / 20, (dt2 * dt2) / 8, dt3 / 6],
      [(dt2 * dt2) / 8, dt3 / 3, dt2 / 2],
      [dt3 / 6, dt2 / 2, dt],
    ];
    const xp = mulVec(f, s.sx);
    const yp = mulVec(f, s.sy);
    const fp = mul(f, s.p);
    const pp = [[0, 0, 0], [0, 0, 0], [0, 0, 0]];
    for (let i = 0; i < 3; i++) {
      for (let j = 0; j < 3; j++) {
        // (F P) F^T + Q
        pp[i][j] = fp[i][0] * f[j][0] + fp[i][1] * f[j][1] + fp[i][2] * f[j][2] + qm[i][j] * q;
      }
    }
    const ex = x - xp[0];
    const ey = y - yp[0];
    if (Math.hypot(ex, ey) > c.jumpPx) {
      this.autoResets += 1;
      this.state = this.start(tUs, x, y);
      return;
    }
    const r = c.measurementNoisePx * c.measurementNoisePx;
    const sv = pp[0][0] + r;
    const nis = (ex * ex + ey * ey) / (2 * sv);
    const alpha = 1 - Math.exp((-dt * 1e3) / c.adaptMs);
    const next = s.logQScale + alpha * c.adaptGain * (Math.min(nis, NIS_CAP) - 1);
    s.logQScale = Math.min(Math.max(next, 0), Math.log(Math.max(c.maxQScale, 1)));
    const k = [pp[0][0] / sv, pp[1][0] / sv, pp[2][0] / sv];
    for (let i = 0; i < 3; i++) {
      s.sx[i] = xp[i] + k[i] * ex;
      s.sy[i] = yp[i] + k[i] * ey;
      for (let j = 0; j < 3; j++) {
        s.p[i][j] = pp[i][j] - k[i] * k[j] * sv;
      }
    }
    s.tUs = Math.max(s.tUs, tUs);
  }

  /** The predicted position at tUs; {x: 0, y: 0} before the first sample. */
  predict(tUs) {
    const s = this.state;
    if (s === null) return { x: 0, y: 0 };
    const c = this.config;
    let h = Math.min(Math.max(tUs - s.tUs, 0) * 1e-6, c.maxHorizonMs * 1e-3);
    const [px, vx] = s.sx;
    const [py, vy] = s.sy;
    let ax = s.sx[2];
    let ay = s.sy[2];
    const along = ax * vx + ay * vy;
    if (along < 0) {
      // Braking: stop where this deceleration brings the speed to 0, never beyond.
      h = Math.min(h, -(vx * vx + vy * vy) / along);
    } else {
      // Speeding up: a min-jerk move's acceleration fades, so use only part of it.
      ax *= c.accelWeight;
      ay *= c.accelWeight;
    }
    const dx = vx * h + 0.5 * ax * h * h;
    const dy = vy * h + 0.5 * ay * h * h;
    const speed2 = vx * vx + vy * vy;
    const rest2 = c.restSpeedPxS * c.restSpeedPxS;
    let gain = speed2 > 0 ? speed2 / (speed2 + rest2) : 0;
    const len = Math.hypot(dx, dy) * gain;
    const limit = c.maxSpeedPxS * h;
    if (len > limit) gain *= limit / len;
    return { x: px + dx * gain, y: py + dy * gain };
  }
}

/** Horizon never asks for more than this, milliseconds. */
export const MAX_HORIZON_MS = 150.0;
/** Gain of the latency average (as TCP's smoothed RTT). */
export const HORIZON_GAIN = 0.125;

/** How far ahead to predict: smoothed one-way latency + decode + present time (ms). */
export class Horizon {
  constructor(oneWayMs, decodeMs, presentMs) {
    const ok = (v) => (Number.isFinite(v) ? Math.max(v, 0) : 0);
    this.oneWayMs = ok(oneWayMs);
    this.decodeMs = ok(decodeMs);
    this.presentMs = ok(presentMs);
  }

  /** Folds in a new one-way latency measurement, milliseconds. */
  observeOneWayMs(ms) {
    if (Number.isFinite(ms) && ms >= 0) {
      this.oneWayMs += HORIZON_GAIN * (Math.min(ms, 10 * MAX_HORIZON_MS) - this.oneWayMs);
    }
  }

  /** Updates the decode and present times, milliseconds. */
  setDecodePresentMs(decodeMs, presentMs) {
    const fresh = new Horizon(this.oneWayMs, decodeMs, presentMs);
    this.decodeMs = fresh.decodeMs;
    this.presentMs = fresh.presentMs;
  }

  /** The horizon, milliseconds. */
  ms() {
    return Math.min(Math.max(this.oneWayMs + this.decodeMs + this.presentMs, 0), MAX_HORIZON_MS);
  }

  /** The horizon, microseconds. */
  us() {
    return Math.round(this.ms() * 1000);
  }
}

function mul(a, b) {
  const out = [[0, 0, 0], [0, 0, 0], [0, 0, 0]];
  for (let i = 0; i < 3; i++) {
    for (let j = 0; j < 3; j++) {
      out[i][j] = a[i][0] * b[0][j] + a[i][1] * b[1][j] + a[i][2] * b[2][j];
    }
  }
  return out;
}

function mulVec(a, v) {
  return [
    a[0][0] * v[0] + a[0][1] * v[1] + a[0][2] * v[2],
    a[1][0] * v[0] + a[1][1] * v[1] + a[1][2] * v[2],
    a[2][0] * v[0] + a[2][1] * v[1] + a[2][2] * v[2],
  ];
}
