// Stratus browser input: turns DOM keyboard, mouse and wheel events into the binary
// InputEvent wire format (see the `input` crate's docs) and sends them on the input data
// channel.

import { KEY_CODES } from './keys.js';
import { Horizon, KalmanPredictor } from './predict.js';

const WIRE_VERSION = 1;
const TAG = { key: 1, mouseMove: 2, mouseMoveRel: 3, button: 4, wheel: 5, gamepadButton: 6, gamepadAxis: 7, touch: 8 };
const SIZE = { 1: 15, 2: 16, 3: 16, 4: 14, 5: 16, 6: 16, 7: 16, 8: 18 };

const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
const i16 = (v) => clamp(Math.round(v), -32768, 32767);

/** Encodes events; each gets the next sequence number and the page clock in microseconds. */
export class InputEncoder {
  constructor(clock = () => performance.now()) { this.seq = 0; this.clock = clock; }

  frame(tag) {
    const bytes = new Uint8Array(SIZE[tag]);
    const view = new DataView(bytes.buffer);
    const tUs = Math.max(0, Math.round(this.clock() * 1000)) % 2 ** 48;
    view.setUint8(0, WIRE_VERSION);
    view.setUint8(1, tag);
    view.setUint32(2, this.seq, true);
    this.seq = (this.seq + 1) >>> 0;
    view.setUint32(6, tUs % 2 ** 32, true);
    view.setUint16(10, Math.floor(tUs / 2 ** 32), true);
    return { bytes, view };
  }

  key(code, down) { const f = this.frame(TAG.key); f.view.setUint16(12, code, true); f.view.setUint8(14, down ? 1 : 0); return f.bytes; }
  mouseMove(x, y) { const f = this.frame(TAG.mouseMove); f.view.setUint16(12, x, true); f.view.setUint16(14, y, true); return f.bytes; }
  mouseMoveRel(dx, dy) { const f = this.frame(TAG.mouseMoveRel); f.view.setInt16(12, i16(dx), true); f.view.setInt16(14, i16(dy), true); return f.bytes; }
  button(button, down) { const f = this.frame(TAG.button); f.view.setUint8(12, button); f.view.setUint8(13, down ? 1 : 0); return f.bytes; }
  wheel(dx, dy) { const f = this.frame(TAG.wheel); f.view.setInt16(12, i16(dx), true); f.view.setInt16(14, i16(dy), true); return f.bytes; }
  gamepadButton(pad, button, value) { const f = this.frame(TAG.gamepadButton); f.view.setUint8(12, pad); f.view.setUint8(13, button); f.view.setUint16(14, clamp(Math.round(value * 65535), 0, 65535), true); return f.bytes; }
  gamepadAxis(pad, axis, value) { const f = this.frame(TAG.gamepadAxis); f.view.setUint8(12, pad); f.view.setUint8(13, axis); f.view.setInt16(14, i16(value * 32767), true); return f.bytes; }
  touch(id, phase, x, y) { const f = this.frame(TAG.touch); f.view.setUint8(12, id & 0xff); f.view.setUint8(13, phase); f.view.setUint16(14, x, true); f.view.setUint16(16, y, true); return f.bytes; }
}

/** Touch phases on the wire. */
export const TOUCH = { start: 0, move: 1, end: 2, cancel: 3 };

/** W3C Standard Gamepad button indices used by the on-screen controls. */
export const PAD = { a: 0, b: 1, x: 2, y: 3, up: 12, down: 13, left: 14, right: 15 };

/**
 * Polls the Gamepad API every animation frame and sends changes (Standard Gamepad mapping:
 * 17 buttons, 4 axes, pads 0–3). `window.__stratusTestGamepads`, when set to an array shaped
 * like `navigator.getGamepads()`, replaces the real pads (a test hook: headless browsers have
 * no gamepads).
 */
function pollGamepads(enc, send, counters) {
  const last = new Map();
  const step = () => {
    const pads = window.__stratusTestGamepads || (navigator.getGamepads ? navigator.getGamepads() : []);
    for (const pad of pads) {
      if (!pad || pad.index > 3) continue;
      const prev = last.get(pad.index) || { buttons: [], axes: [] };
      const now = { buttons: [], axes: [] };
      (pad.buttons || []).slice(0, 17).forEach((b, i) => {
        const v = typeof b === 'number' ? b : (b.value || (b.pressed ? 1 : 0));
        now.buttons[i] = v;
        if (Math.abs(v - (prev.buttons[i] || 0)) > 0.01) { send(enc.gamepadButton(pad.index, i, v)); counters.gamepad++; }
      });
      (pad.axes || []).slice(0, 4).forEach((a, i) => {
        now.axes[i] = a;
        if (Math.abs(a - (prev.axes[i] || 0)) > 0.01) { send(enc.gamepadAxis(pad.index, i, a)); counters.gamepad++; }
      });
      last.set(pad.index, now);
    }
    requestAnimationFrame(step);
  };
  requestAnimationFrame(step);
}

/**
 * Wires the on-screen touch controls (elements with `data-pad="<button>"` inside `root`) to pad 0:
 * pressing one sends that Standard Gamepad button, as a phone has no keyboard or gamepad.
 */
function attachTouchControls(root, enc, send, counters) {
  if (!root) return;
  root.querySelectorAll('[data-pad]').forEach((el) => {
    const button = PAD[el.dataset.pad];
    if (button === undefined) return;
    const press = (down) => (e) => {
      e.preventDefault();
      el.classList.toggle('down', down);
      send(enc.gamepadButton(0, button, down ? 1 : 0));
      counters.touchControls++;
    };
    el.addEventListener('touchstart', press(true), { passive: false });
    el.addEventListener('touchend', press(false), { passive: false });
    el.addEventListener('touchcancel', press(false), { passive: false });
    el.addEventListener('mousedown', press(true));
    el.addEventListener('mouseup', press(false));
  });
}

/**
 * Records pointer samples in the stratus-trace v1 text format (the `input` crate's `trace`
 * module documents it), in frame pixels with the page clock in microseconds; the recordings
 * feed `stratus-bench predict --traces`.
 */
export class TraceRecorder {
  constructor() { this.lines = null; this.buttons = 0; }
  get recording() { return this.lines !== null; }
  start() { this.lines = []; }
  add(tUs, x, y) {
    if (!this.lines || this.lines.length >= 1000000) return;
    const last = this.lines.length ? this.lines[this.lines.length - 1].t : 0;
    const t = Math.max(Math.round(tUs), last);
    this.lines.push({ t, text: `${t} ${x.toFixed(2)} ${y.toFixed(2)} ${this.buttons}` });
  }
  /** The recording so far as trace text. */
  text() {
    const header = `# stratus-trace v1 rate_hz=0 source=browser ${navigator.userAgent.replace(/\s+/g, ' ')}`;
    return [header, ...(this.lines || []).map((l) => l.text)].join('\n') + '\n';
  }
  /** Stops and offers the recording as a download. */
  stopAndSave() {
    const blob = new Blob([this.text()], { type: 'text/plain' });
    const a = document.createElement('a');
    a.href = URL.createObjectURL(blob);
    a.download = `stratus-${new Date().toISOString().replace(/[:.]/g, '-')}.trace`;
    a.click();
    this.lines = null;
  }
}

/**
 * Sends the page's input for `video` on `channel`. Double-click locks the pointer (relative
 * motion for games); otherwise moves are absolute frame pixels, letterboxing accounted for, and
 * predicted `horizon` ahead by the Kalman predictor so the node renders where the pointer will
 * be when that frame is shown. Returns counters and the horizon for the stats overlay and tests.
 */
export function attachInput({ video, channel, touchControls = null, horizon = new Horizon(10, 5, 8), predict = true }) {
  const enc = new InputEncoder();
  const predictor = new KalmanPredictor();
  const recorder = new TraceRecorder();
  const counters = { sent: 0, dropped: 0, predicted: 0, gamepad: 0, touch: 0, touchControls: 0, horizon, recorder };
  // `channel` is the data channel, or a function returning the current one (it changes when the
  // page reconnects).
  const send = (bytes) => {
    const ch = typeof channel === 'function' ? channel() : channel;
    if (ch && ch.readyState === 'open') { ch.send(bytes); counters.sent++; } else { counters.dropped++; }
  };
  const toFrame = (clientX, clientY) => {
    const vw = video.videoWidth, vh = video.videoHeight;
    if (!vw || !vh) return null;
    const r = video.getBoundingClientRect();
    const scale = Math.min(r.width / vw, r.height / vh);
    const ox = r.left + (r.width - vw * scale) / 2, oy = r.top + (r.height - vh * scale) / 2;
    return [clamp(Math.round((clientX - ox) / scale), 0, vw - 1), clamp(Math.round((clientY - oy) / scale), 0, vh - 1)];
  };
  const locked = () => document.pointerLockElement === video;

  const onKey = (down) => (e) => {
    // F9 starts a pointer recording, and a second F9 saves it (not sent to the game).
    if (e.code === 'F9') {
      if (down) { if (recorder.recording) recorder.stopAndSave(); else recorder.start(); }
      e.preventDefault();
      return;
    }
    // F2 (stats overlay) is the page's own hotkey too; it is not sent to the game.
    if (e.code === 'F2') return;
    const code = KEY_CODES[e.code];
    if (code === undefined || e.repeat) return;
    e.preventDefault();
    send(enc.key(code, down));
  };
  window.addEventListener('keydown', onKey(true));
  window.addEventListener('keyup', onKey(false));
  video.addEventListener('mousemove', (e) => {
    if (locked()) { send(enc.mouseMoveRel(e.movementX, e.movementY)); return; }
    const p = toFrame(e.clientX, e.clientY);
    if (!p) return;
    if (recorder.recording) {
      // Every sample the browser saw, not only the ones it dispatched.
      const all = e.getCoalescedEvents ? e.getCoalescedEvents() : [e];
      for (const c of all.length ? all : [e]) {
        const q = toFrame(c.clientX, c.clientY);
        if (q) recorder.add(c.timeStamp * 1000, q[0], q[1]);
      }
    }
    if (!predict) { send(enc.mouseMove(p[0], p[1])); return; }
    const tUs = Math.round(e.timeStamp * 1000);
    predictor.observe(tUs, p[0], p[1]);
    const q = predictor.predict(tUs + horizon.us());
    const [w, h] = [video.videoWidth, video.videoHeight];
    send(enc.mouseMove(clamp(Math.round(q.x), 0, w - 1), clamp(Math.round(q.y), 0, h - 1)));
    counters.predicted++;
  });
  const onButton = (down) => (e) => {
    if (e.button > 4) return;
    e.preventDefault();
    // A click is where the hand is now, not where it was heading: send the true position and
    // restart the predictor (a press is a discontinuity in intent).
    predictor.restart();
    recorder.buttons = e.buttons;
    if (!locked()) { const p = toFrame(e.clientX, e.clientY); if (p) send(enc.mouseMove(p[0], p[1])); }
    send(enc.button(e.button, down));
  };
  video.addEventListener('mousedown', onButton(true));
  video.addEventListener('mouseup', onButton(false));
  video.addEventListener('contextmenu', (e) => e.preventDefault());
  video.addEventListener('dblclick', () => { if (video.requestPointerLock) video.requestPointerLock(); });
  // Touches on the picture are touches in the game, in frame pixels.
  const onTouch = (phase) => (e) => {
    e.preventDefault();
    for (const t of e.changedTouches) {
      const p = toFrame(t.clientX, t.clientY);
      if (p) { send(enc.touch(t.identifier, phase, p[0], p[1])); counters.touch++; }
    }
  };
  video.addEventListener('touchstart', onTouch(TOUCH.start), { passive: false });
  video.addEventListener('touchmove', onTouch(TOUCH.move), { passive: false });
  video.addEventListener('touchend', onTouch(TOUCH.end), { passive: false });
  video.addEventListener('touchcancel', onTouch(TOUCH.cancel), { passive: false });
  pollGamepads(enc, send, counters);
  attachTouchControls(touchControls, enc, send, counters);
  video.addEventListener('wheel', (e) => {
    e.preventDefault();
    // To 1/120 notch: Chromium reports 100 px per notch in pixel mode; lines are ~40 px.
    const unit = e.deltaMode === 1 ? 48 : e.deltaMode === 2 ? 960 : 1.2;
    send(enc.wheel(e.deltaX * unit, e.deltaY * unit));
  }, { passive: false });
  return counters;
}
