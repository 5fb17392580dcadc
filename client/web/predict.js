// Stratus pointer predictor for the browser: the same predictor as the Rust
// `input::predict::Predictor` (see input/src/predict/ for the model and its tuning): an
// adaptive constant-acceleration Kalman filter and a line through the last samples, weighted
// by a calibration that learns from how past predictions turned out (calibration.rs). It is checked against golden vectors produced by the Rust code
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
//   onpointerdown = () => predictor.restart(); // keeps what was learned about the player

/** Defaults, identical to the Rust `PredictorConfig::default()`. */
export const DEFAULT_CONFIG = Object.freeze({
  measurementNoisePx: 1.0,
  jerkPsd: 2.0e7,
  adaptMs: 20.0,
  adaptGain: 3.0,
  maxQScale: 1000.0,
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
/** Predictions from a (re)started filter's first 30 ms are not scored (its transient). */
export const WARMUP_US = 30000;
/** The line model's velocity is measured over at least this long, microseconds. */
export const LINE_BASE_US = 8000;

// Calibration (input/src/predict/calibration.rs).
/** The horizons whose outcome is checked, milliseconds. */
export const CHECK_HORIZONS_MS = [16, 33, 50, 100];
/** Time constant of the fits' forgetting, milliseconds. */
export const CALIBRATION_MS = 3000.0;
/** Prior weight on the filter's weight, squared pixels. */
export const PRIOR_WEIGHT_PX2 = 100.0;
/** Prior weight that the line adds nothing, squared pixels. */
export const LINE_PRIOR_WEIGHT_PX2 = 1.0e5;
/** Weights stay within ±MAX_GAIN. */
export const MAX_GAIN = 1.2;
/** The weights before any evidence: the filter whole, no line. */
export const MODEL_PRIOR = Object.freeze([1.0, 0.0]);
const PRIOR_ERROR = 0.25;
const MAX_GAP_US = 100000;
const MAX_PENDING = 4096;
/** Upper bounds of the speed regimes (rest, moving, fast), px/s. */
export const REGIME_SPEEDS_PX_S = [150.0, 1500.0];

/** The speed regime of a speed in px/s: 0 resting, 1 moving, 2 fast. */
export function regime(speed) {
  const i = REGIME_SPEEDS_PX_S.findIndex((s) => speed < s);
  return i < 0 ? REGIME_SPEEDS_PX_S.length : i;
}

/** One (regime, horizon) fit: the normal equations of A ≈ g0·D0 + g1·D1. */
class Fit {
  constructor() {
    this.dd = [[0, 0], [0, 0]];
    this.da = [0, 0];
    this.aa = 0;
  }

  decay(k) {
    for (let i = 0; i < 2; i++) {
      for (let j = 0; j < 2; j++) this.dd[i][j] *= k;
      this.da[i] *= k;
    }
    this.aa *= k;
  }

  add(d, ax, ay) {
    for (let i = 0; i < 2; i++) {
      for (let j = 0; j < 2; j++) this.dd[i][j] += d[i][0] * d[j][0] + d[i][1] * d[j][1];
      this.da[i] += d[i][0] * ax + d[i][1] * ay;
    }
    this.aa += ax * ax + ay * ay;
  }

  /** [weights, relative error]. */
  solve() {
    const prior = MODEL_PRIOR;
    const p = [PRIOR_WEIGHT_PX2, LINE_PRIOR_WEIGHT_PX2];
    const m = [
      [this.dd[0][0] + p[0], this.dd[0][1]],
      [this.dd[1][0], this.dd[1][1] + p[1]],
    ];
    const b = [this.da[0] + p[0] * prior[0], this.da[1] + p[1] * prior[1]];
    const det = m[0][0] * m[1][1] - m[0][1] * m[1][0];
    let g = Math.abs(det) > 1e-12
      ? [(b[0] * m[1][1] - m[0][1] * b[1]) / det, (m[0][0] * b[1] - m[1][0] * b[0]) / det]
      : [prior[0], prior[1]];
    g = g.map((v) => Math.min(Math.max(v, -MAX_GAIN), MAX_GAIN));
    let resid = this.aa + PRIOR_ERROR * PRIOR_ERROR * p[0];
    for (let i = 0; i < 2; i++) {
      resid -= 2 * g[i] * this.da[i];
      for (let j = 0; j < 2; j++) resid += g[i] * g[j] * this.dd[i][j];
    }
    return [g, Math.sqrt(Math.max(resid, 0) / m[0][0])];
  }
}

/** A FIFO queue without O(n) shifts. */
class Queue {
  constructor() {
    this.items = [];
    this.head = 0;
  }
  get length() {
    return this.items.length - this.head;
  }
  front() {
    return this.items[this.head];
  }
  at(i) {
    return this.items[this.head + i];
  }
  push(v) {
    this.items.push(v);
  }
  shift() {
    const v = this.items[this.head++];
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return v;
  }
  clear() {
    this.items = [];
    this.head = 0;
  }
}

/** How far to trust each model, learned from outcomes (see calibration.rs). */
export class Calibration {
  constructor() {
    this.clear();
  }

  clear() {
    this.pending = CHECK_HORIZONS_MS.map(() => new Queue());
    this.fits = [0, 1, 2].map(() => CHECK_HORIZONS_MS.map(() => new Fit()));
    this.last = null;
    this.decayedAtUs = null;
  }

  /** Drops the checks in flight, keeping what was learned. */
  restart() {
    for (const q of this.pending) q.clear();
    this.last = null;
  }

  observe(tUs, x, y) {
    if (this.last !== null) {
      const [t0, x0, y0] = this.last;
      const gapOk = Math.max(tUs - t0, 0) <= MAX_GAP_US;
      const decay = this.decayedAtUs === null
        ? 1.0
        : Math.exp(-Math.max(tUs - this.decayedAtUs, 0) / (CALIBRATION_MS * 1e3));
      this.decayedAtUs = tUs;
      for (const fits of this.fits) for (const fit of fits) fit.decay(decay);
      this.pending.forEach((queue, k) => {
        while (queue.length > 0) {
          const p = queue.front();
          if (p.dueUs > tUs) break;
          queue.shift();
          if (!gapOk || p.dueUs < t0) continue;
          const f = tUs > t0 ? (p.dueUs - t0) / (tUs - t0) : 1.0;
          const ax = x0 + (x - x0) * f - p.base[0];
          const ay = y0 + (y - y0) * f - p.base[1];
          this.fits[p.regime][k].add(p.disp, ax, ay);
        }
      });
    }
    this.last = [tUs, x, y];
  }

  schedule(tUs, reg, base, disps) {
    const r = Math.min(reg, 2);
    this.pending.forEach((queue, k) => {
      if (queue.length >= MAX_PENDING) queue.shift();
      queue.push({ dueUs: tUs + CHECK_HORIZONS_MS[k] * 1000, regime: r, base, disp: disps[k] });
    });
  }

  weights(reg, horizonMs) {
    const fits = this.fits[Math.min(reg, 2)];
    return this.interpolate(horizonMs, (k) => fits[k].solve()[0]);
  }

  relativeError(reg, horizonMs) {
    const fits = this.fits[Math.min(reg, 2)];
    return this.interpolate(horizonMs, (k) => {
      const e = fits[k].solve()[1];
      return [e, e];
    })[0];
  }

  interpolate(horizonMs, value) {
    const hs = CHECK_HORIZONS_MS;
    const last = hs.length - 1;
    if (horizonMs <= hs[0]) return value(0);
    for (let i = 0; i < last; i++) {
      if (horizonMs <= hs[i + 1]) {
        const f = (horizonMs - hs[i]) / (hs[i + 1] - hs[i]);
        const a = value(i);
        const b = value(i + 1);
        return [a[0] * (1 - f) + b[0] * f, a[1] * (1 - f) + b[1] * f];
      }
    }
    return value(last);
  }
}

/** The adaptive constant-acceleration Kalman pointer predictor. */
export class KalmanPredictor {
  /** @param {Partial<typeof DEFAULT_CONFIG>} config overrides of DEFAULT_CONFIG */
  constructor(config = {}) {
    this.config = { ...DEFAULT_CONFIG, ...config };
    this.autoResets = 0;
    this.calibration = new Calibration();
    this.history = new Queue();
    this.reset();
  }

  /** Forgets everything, including what was learned about the player. */
  reset() {
    this.state = null;
    this.calibration.clear();
  }

  /** Forgets the motion (call it on a button press), keeping what was learned. */
  restart() {
    this.state = null;
    this.calibration.restart();
  }

  /** Restarts the filter from a sample, keeping the calibration. */
  restartAt(tUs, x, y) {
    this.autoResets += 1;
    this.calibration.restart();
    this.state = this.start(tUs, x, y);
    this.calibration.observe(tUs, x, y);
    this.history.clear();
    this.history.push([tUs, x, y]);
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
      last: [tUs, x, y],
      anchor: null,
      startedUs: tUs,
    };
  }

  /** Feeds the sample taken at tUs (microseconds, non-decreasing). */
  observe(tUs, x, y) {
    const c = this.config;
    if (!(Number.isFinite(x) && Number.isFinite(y))) return;
    const s = this.state;
    if (s === null) {
      this.state = this.start(tUs, x, y);
      this.calibration.observe(tUs, x, y);
      this.history.clear();
      this.history.push([tUs, x, y]);
      return;
    }
    // A sample older than the last one is taken as simultaneous with it.
    const dt = Math.max(tUs - s.tUs, 0) * 1e-6;
    if (dt * 1e3 > c.maxGapMs) {
      this.restartAt(tUs, x, y);
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
      this.restartAt(tUs, x, y);
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
    s.last = [Math.max(tUs, s.last[0]), x, y];
    this.history.push(s.last);
    while (this.history.length > 1 && this.history.at(1)[0] + LINE_BASE_US <= s.last[0]) {
      this.history.shift();
    }
    const front = this.history.front();
    s.anchor = front !== undefined && front[0] < s.last[0] ? front : null;
    // Score the predictions that fall due, then record this sample's.
    this.calibration.observe(tUs, x, y);
    if (s.tUs >= s.startedUs + WARMUP_US) {
      const base = [s.last[1], s.last[2]];
      const disps = CHECK_HORIZONS_MS.map((h) => this.displacements(s, h * 1e-3).disps);
      this.calibration.schedule(s.tUs, this.regime(s), base, disps);
    }
  }

  /** The speed regime of the filter's state. */
  regime(s) {
    return regime(Math.hypot(s.sx[1], s.sy[1]));
  }

  /** The last sample and the filter's and the line's displacements from it h s ahead. */
  displacements(s, h) {
    const c = this.config;
    const hh = Math.min(Math.max(h, 0), c.maxHorizonMs * 1e-3);
    const e = this.extrapolate(s, hh);
    const [lt, lx, ly] = s.last;
    const kalman = [e.px + e.dx - lx, e.py + e.dy - ly];
    let linear = [0, 0];
    if (s.anchor !== null && lt > s.anchor[0]) {
      const [pt, ax, ay] = s.anchor;
      const dt = (lt - pt) * 1e-6;
      const vx = (lx - ax) / dt;
      const vy = (ly - ay) / dt;
      const speed = Math.hypot(vx, vy);
      const k = speed > c.maxSpeedPxS ? c.maxSpeedPxS / speed : 1.0;
      linear = [vx * hh * k, vy * hh * k];
    }
    return { base: [lx, ly], disps: [kalman, linear] };
  }

  /** The filter's position and the displacement it extrapolates h s ahead. */
  extrapolate(s, hIn) {
    const c = this.config;
    let h = Math.min(Math.max(hIn, 0), c.maxHorizonMs * 1e-3);
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
    return { px, py, dx: dx * gain, dy: dy * gain };
  }

  /**
   * The prediction for tUs with its expected error in pixels and the models' weights;
   * null before the first sample.
   */
  predictWithError(tUs) {
    const s = this.state;
    if (s === null) return null;
    const hMs = Math.max(tUs - s.tUs, 0) * 1e-3;
    const { base, disps } = this.displacements(s, hMs * 1e-3);
    const reg = this.regime(s);
    const w = this.calibration.weights(reg, hMs);
    const dx = w[0] * disps[0][0] + w[1] * disps[1][0];
    const dy = w[0] * disps[0][1] + w[1] * disps[1][1];
    const len = Math.hypot(disps[0][0], disps[0][1]);
    return {
      x: base[0] + dx,
      y: base[1] + dy,
      errorPx: this.calibration.relativeError(reg, hMs) * len,
      weights: w,
    };
  }

  /** The predicted position at tUs; {x: 0, y: 0} before the first sample. */
  predict(tUs) {
    const p = this.predictWithError(tUs);
    return p === null ? { x: 0, y: 0 } : { x: p.x, y: p.y };
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
