// Stratus browser client: lists the catalog, gets a session token, times the nearest nodes,
// asks the signaling service for a session, receives the node's video over WebRTC and shows it
// with the lowest playout delay the browser allows.
//
// URL parameters: `title=<id>` starts that title without the picker; `relay=1` forces
// relay-only ICE (through the TURN server signaling hands out).
//
// `window.stratus` exposes the session state for people and tests: `status`,
// `connectionState`, `sessionId`, `nodeId`, `error`, `pc`, `lastEnd` (why the last session
// ended), `audioStream` (the title's sound, once it arrives), and `inspectFrame()`, which reads
// the latency and frame-id codes and the swatch colour from the frame on screen.

import { attachInput } from './input.js';
import { Horizon } from './predict.js';

export const PROTOCOL_VERSION = 1;

// Reasons a node without the `permanent` flag gives when the title itself is over (exited,
// crashed, never started).
const TITLE_OVER = /^(the title |cannot start the title|this node (cannot|has no) )/;

// Latency code geometry (DESIGN.md).
const CELL_W = 16, CELL_H = 32, CELLS = 57;
const START = [1, 0, 1, 0], STOP = [0, 1, 1, 0];

/** Reads the 48-bit code in `row` (0 = epoch ms, 1 = frame id) from RGBA ImageData, or null. */
export function readCode(image, row) {
  if (image.width < CELL_W * CELLS || image.height < 2 * CELL_H) return null;
  const top = row * CELL_H;
  const bits = [];
  for (let i = 0; i < CELLS; i++) {
    let sum = 0;
    for (let y = top + 8; y < top + 24; y++) {
      for (let x = CELL_W * i + 4; x < CELL_W * i + 12; x++) {
        const p = 4 * (y * image.width + x);
        sum += 0.299 * image.data[p] + 0.587 * image.data[p + 1] + 0.114 * image.data[p + 2];
      }
    }
    bits.push(sum / 128 > 125.5 ? 1 : 0);
  }
  for (let i = 0; i < 4; i++) {
    if (bits[i] !== START[i] || bits[53 + i] !== STOP[i]) return null;
  }
  let value = 0, ones = 0;
  for (let i = 4; i < 52; i++) { value = value * 2 + bits[i]; ones += bits[i]; }
  return (ones % 2) === bits[52] ? value : null;
}

const state = {
  status: 'idle',
  connectionState: 'new',
  sessionId: null,
  nodeId: null,
  error: null,
  pc: null,
  input: null,
  inspectFrame: null,
  lastEnd: null,
  audioStream: null,
};
window.stratus = state;

/** Asks the signaling service for a session token (see its `POST /api/token`). */
export async function fetchToken(title) {
  const res = await fetch('/api/token', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(title ? { title } : {}),
    credentials: 'same-origin',
  });
  let body = {};
  try { body = await res.json(); } catch { /* not JSON */ }
  if (!res.ok) {
    const err = new Error(body.error || `token request failed (${res.status})`);
    err.status = res.status;
    throw err;
  }
  return body.token;
}

/** Times `GET url` (best of `tries`), in ms; null when it fails or takes over `limitMs`. */
async function timeProbe(url, tries = 3, limitMs = 1000) {
  let best = null;
  for (let i = 0; i < tries; i++) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), limitMs);
    const t0 = performance.now();
    try {
      await fetch(url, { cache: 'no-store', mode: 'cors', signal: ctl.signal });
      const ms = performance.now() - t0;
      best = best === null ? ms : Math.min(best, ms);
    } catch { /* unreachable from here */ } finally { clearTimeout(timer); }
  }
  return best;
}

/** Round trips to the nearest candidate nodes for `title`, by node id (may be empty). */
export async function measureRtts(title) {
  const rtts = {};
  try {
    const res = await fetch('/api/probe' + (title ? `?title=${encodeURIComponent(title)}` : ''));
    if (!res.ok) return rtts;
    const targets = await res.json();
    await Promise.all(targets.map(async (t) => {
      const ms = await timeProbe(t.url);
      if (ms !== null) rtts[t.node_id] = Math.round(ms * 10) / 10;
    }));
  } catch { /* probing is an optimisation; assignment falls back to distance */ }
  state.rtts = rtts;
  return rtts;
}

/** Shows the catalog in `picker` and resolves with the chosen title id. */
export async function pickTitle(picker) {
  const res = await fetch('/api/titles');
  if (!res.ok) throw new Error(`cannot load the catalog (${res.status})`);
  // Instruments (the pattern title, for checkers and labs) are not for players to pick.
  const titles = (await res.json()).filter((t) => !t.instrument);
  state.titles = titles;
  if (titles.length <= 1) return titles.length ? titles[0].id : null;
  picker.replaceChildren();
  const heading = document.createElement('h1');
  heading.textContent = 'Choose a game';
  picker.append(heading);
  return new Promise((resolve) => {
    for (const t of titles) {
      const b = document.createElement('button');
      b.dataset.title = t.id;
      b.disabled = !t.available;
      b.textContent = t.name;
      const sub = document.createElement('small');
      sub.textContent = t.available ? `${t.studio}` : `${t.studio} · no node online`;
      b.append(sub);
      b.addEventListener('click', () => { picker.classList.remove('on'); resolve(t.id); });
      picker.append(b);
    }
    picker.classList.add('on');
  });
}

export function start({ video, status, stats, audio = null, touch = null, fullscreen = null, picker = null }) {
  // Browsers may refuse to play sound before the player touches the page: then the first
  // click or key turns it on.
  const playSound = (stream) => {
    if (!audio) return;
    audio.srcObject = stream;
    audio.play().catch(() => {
      const resume = () => { audio.play().catch(() => {}); };
      document.addEventListener('pointerdown', resume, { once: true });
      document.addEventListener('keydown', resume, { once: true });
    });
  };
  if (fullscreen) {
    fullscreen.addEventListener('click', () => {
      const stage = video.parentElement;
      if (document.fullscreenElement) document.exitFullscreen();
      else if (stage.requestFullscreen) stage.requestFullscreen().catch(() => {});
    });
  }
  const canvas = document.createElement('canvas');
  const say = (text, isError = false) => {
    state.status = text;
    if (isError) state.error = text;
    status.textContent = text;
    status.classList.toggle('error', isError);
  };

  state.inspectFrame = () => {
    const w = video.videoWidth, h = video.videoHeight;
    if (!w || !h) return null;
    canvas.width = w; canvas.height = h;
    const ctx = canvas.getContext('2d', { willReadFrequently: true });
    ctx.drawImage(video, 0, 0, w, h);
    const image = ctx.getImageData(0, 0, w, h);
    // Mean colour of a 64x64 square at (x0, y0).
    const mean = (x0, y0) => {
      const sum = [0, 0, 0];
      for (let y = y0; y < y0 + 64; y++) {
        for (let x = x0; x < x0 + 64; x++) {
          const p = 4 * (y * w + x);
          sum[0] += image.data[p]; sum[1] += image.data[p + 1]; sum[2] += image.data[p + 2];
        }
      }
      return sum.map(v => Math.round(v / 4096));
    };
    return {
      width: w, height: h,
      epochMs: readCode(image, 0), frameId: readCode(image, 1), now: Date.now(),
      // The inner part of the 192x192 swatch 32 px from the bottom-right corner, and of the
      // 128x128 input indicator in the bottom-left corner.
      swatch: mean(w - 32 - 128, h - 32 - 128),
      indicator: mean(32, h - 96),
    };
  };

  // Prediction horizon: one-way latency (half the ICE round trip) + decode + half a display
  // refresh, refreshed from getStats every second.
  const horizon = new Horizon(10, 5, 8);
  const params = new URLSearchParams(location.search);
  let title = params.get('title');
  const relayOnly = params.get('relay') === '1';
  const wsBase = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws';
  let iceServers = [];
  let pc = null;
  let ws = null;
  let channel = null;
  let attempt = 0;
  let retryTimer = null;
  state.reconnects = 0;
  // Input is attached once; it always sends on the current session's channel.
  state.input = attachInput({ video, channel: () => channel, touchControls: touch, horizon });

  const teardown = () => {
    if (pc) { pc.onconnectionstatechange = null; pc.close(); }
    if (ws) { ws.onclose = null; ws.onerror = null; ws.close(); }
    pc = null; ws = null; channel = null;
    state.pc = null;
    state.connectionState = 'new';
  };

  // Ends the session and tries again after a visible countdown (1, 2, 4, 8, 10, 10… s).
  const retry = (why) => {
    if (retryTimer) return;
    teardown();
    let left = Math.min(10, 2 ** Math.min(attempt, 4));
    attempt++;
    const tick = () => {
      if (left <= 0) { retryTimer = null; state.reconnects++; connect(); return; }
      say(`${why} — reconnecting in ${left} s`, true);
      left--;
      retryTimer = setTimeout(tick, 1000);
    };
    tick();
  };

  async function connect() {
    say('signing in…');
    let token;
    try {
      token = await fetchToken(title);
    } catch (e) {
      if (e.status === 401 || e.status === 403) { say(`cannot get a session token: ${e.message}`, true); return; }
      retry(`cannot get a session token (${e.message})`);
      return;
    }
    say('finding the nearest node…');
    const rtts = await measureRtts(title);
    say('connecting to signaling…');
    const sock = new WebSocket(`${wsBase}?token=${encodeURIComponent(token)}`);
    ws = sock;
    const send = (msg) => { if (sock.readyState === WebSocket.OPEN) sock.send(JSON.stringify(msg)); };
    sock.onopen = () => {
      const hello = { type: 'hello', version: PROTOCOL_VERSION };
      if (title) hello.title = title;
      if (Object.keys(rtts).length) hello.rtt_ms = rtts;
      send(hello);
      say('waiting for a node…');
    };
    sock.onclose = () => {
      // The stream is peer to peer: once playing, losing signaling does not stop it.
      if (state.connectionState === 'connected') say(`playing from node ${state.nodeId} (signaling lost)`);
      else retry('cannot reach the signaling service');
    };
    sock.onmessage = async (event) => {
      let msg;
      try { msg = JSON.parse(event.data); } catch { return; }
      switch (msg.type) {
        case 'welcome':
          state.sessionId = msg.session_id;
          state.nodeId = msg.node_id;
          iceServers = msg.ice_servers || [];
          say(`node ${msg.node_id}: negotiating…`);
          pc = await negotiate(send);
          break;
        case 'answer':
          if (pc) await pc.setRemoteDescription({ type: 'answer', sdp: msg.sdp });
          break;
        case 'ice':
          try { if (pc) await pc.addIceCandidate(msg.candidate); } catch (e) { console.warn('bad candidate', e); }
          break;
        case 'session_ended':
          state.lastEnd = msg.reason;
          // The game ended, crashed, could not start or cannot be streamed: starting it again
          // would end the same way (the node says so; older nodes only by their words).
          if (msg.permanent || TITLE_OVER.test(msg.reason)) { teardown(); say(`session ended: ${msg.reason}`, true); }
          else retry(`session ended: ${msg.reason}`);
          break;
        case 'error':
          if (msg.code === 'version_mismatch') { teardown(); say(`${msg.message}; reload the page`, true); }
          else if (msg.code === 'no_node_available' || msg.code === 'unavailable') retry(msg.message || 'no node is available');
          else if (msg.code === 'forbidden' || msg.code === 'unknown_title') { teardown(); say(msg.message, true); }
          else say(`${msg.code.replaceAll('_', ' ')}: ${msg.message}`, true);
          break;
      }
    };
  }

  async function negotiate(send) {
    const pc = new RTCPeerConnection({ iceServers, iceTransportPolicy: relayOnly ? 'relay' : 'all' });
    state.pc = pc;
    const transceiver = pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addTransceiver('audio', { direction: 'recvonly' });
    // Reliable and ordered: a lost key-up would leave a key stuck in the game.
    channel = pc.createDataChannel('input', { ordered: true });
    // Render each frame as soon as it is decoded.
    if ('jitterBufferTarget' in transceiver.receiver) transceiver.receiver.jitterBufferTarget = 0;
    if ('playoutDelayHint' in transceiver.receiver) transceiver.receiver.playoutDelayHint = 0;
    pc.ontrack = (e) => {
      if (e.track.kind === 'audio') {
        state.audioStream = new MediaStream([e.track]);
        playSound(state.audioStream);
        return;
      }
      video.srcObject = new MediaStream([e.track]);
      video.play().catch(() => {});
    };
    pc.onicecandidate = (e) => { if (e.candidate) send({ type: 'ice', candidate: e.candidate.toJSON() }); };
    pc.onconnectionstatechange = () => {
      state.connectionState = pc.connectionState;
      if (pc.connectionState === 'connected') { attempt = 0; say(`playing from node ${state.nodeId}`); }
      if (pc.connectionState === 'disconnected') say('the connection to the node was interrupted…', true);
      if (pc.connectionState === 'failed') retry('the connection to the node failed');
    };
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    send({ type: 'offer', sdp: offer.sdp });
    return pc;
  }

  // Stats overlay, toggled with F2.
  let last = null;
  let lastPc = null;
  document.addEventListener('keydown', (e) => { if (e.code === 'F2') stats.classList.toggle('on'); });
  setInterval(async () => {
    if (!pc) return;
    if (pc !== lastPc) { last = null; lastPc = pc; }
    const report = await pc.getStats();
    report.forEach((s) => {
      if (s.type === 'candidate-pair' && s.nominated && s.currentRoundTripTime !== undefined) {
        horizon.observeOneWayMs(s.currentRoundTripTime * 1000 / 2);
      }
    });
    report.forEach((s) => {
      if (s.type !== 'inbound-rtp' || s.kind !== 'video') return;
      const now = s.timestamp;
      let fps = 0, kbps = 0;
      if (last) {
        const dt = (now - last.timestamp) / 1000;
        fps = (s.framesDecoded - last.framesDecoded) / dt;
        kbps = 8 * (s.bytesReceived - last.bytesReceived) / dt / 1000;
      }
      const decodeMs = last && s.framesDecoded > last.framesDecoded
        ? 1000 * (s.totalDecodeTime - last.totalDecodeTime) / (s.framesDecoded - last.framesDecoded) : 5;
      horizon.setDecodePresentMs(decodeMs, 8);
      last = s;
      stats.textContent = `${s.frameWidth || 0}x${s.frameHeight || 0}  ${fps.toFixed(1)} fps\n` +
        `${kbps.toFixed(0)} kbit/s  lost ${s.packetsLost || 0}\n` +
        `decoded ${s.framesDecoded || 0}  dropped ${s.framesDropped || 0}\n` +
        `prediction ${horizon.ms().toFixed(0)} ms ahead`;
    });
  }, 1000);

  const begin = async () => {
    if (!title && picker) {
      say('loading the catalog…');
      try { title = await pickTitle(picker); } catch (e) { say(e.message, true); return; }
    }
    state.title = title;
    connect();
  };
  begin();
}
