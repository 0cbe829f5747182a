// The node's status page: polls the node's JSON endpoints every second and draws what they
// hold. Plain browser JavaScript, no library and nothing fetched from outside the node.
"use strict";

const POLL_MS = 1000;
const STALE_S = 5;  // no sample for longer: the board or its line has stopped
const CLASS_COLORS = { noise: "#8a8a8a", P: "--p", S: "--s" };
const OTHER_COLORS = ["#2e7d32", "#8e24aa", "#ef6c00", "#00838f"];

const state = {
  components: [], binUs: 100000, keepS: 300, restarts: null,
  bins: [], lo: [], hi: [],
  classes: [], centers: [], probs: [],
  eventsVersion: -1, events: [], picks: [], seenEvents: null,
  status: null, online: null,
};

const $ = (id) => document.getElementById(id);
const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
const utc = (us) => new Date(us / 1000).toISOString().slice(11, 23);
const utcDay = (us) => new Date(us / 1000).toISOString().slice(0, 10);
const fmt = (v, digits = 3) => (v === null || v === undefined ? "–" :
  typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toPrecision(digits)) : String(v));

function classColor(name, k) {
  const c = CLASS_COLORS[name];
  if (c) return c.startsWith("--") ? css(c) : c;
  return OTHER_COLORS[k % OTHER_COLORS.length];
}

async function getJSON(path) {
  const answer = await fetch(path, { cache: "no-store" });
  if (!answer.ok) throw new Error(`${path}: HTTP ${answer.status}`);
  return answer.json();
}

// ------------------------------------------------------------------ merging what came
function mergeTraces(data) {
  const sameStream = data.restarts === state.restarts &&
    data.components.join() === state.components.join() && data.bin_us === state.binUs;
  if (!sameStream) {  // first answer, or the board's clock went back: start again
    state.components = data.components; state.binUs = data.bin_us; state.restarts = data.restarts;
    state.bins = []; state.lo = data.components.map(() => []); state.hi = data.components.map(() => []);
  }
  state.keepS = data.span_s;
  const last = state.bins.length ? state.bins[state.bins.length - 1] : -Infinity;
  data.bins.forEach((bin, i) => {
    if (bin < last) return;
    if (bin === last) {  // the bin that was still filling: its final envelope
      const k = state.bins.length - 1;
      state.components.forEach((_, c) => { state.lo[c][k] = data.min[c][i]; state.hi[c][k] = data.max[c][i]; });
      return;
    }
    state.bins.push(bin);
    state.components.forEach((_, c) => { state.lo[c].push(data.min[c][i]); state.hi[c].push(data.max[c][i]); });
  });
  const first = state.bins.length ? state.bins[state.bins.length - 1] - state.keepS * 1e6 / state.binUs : 0;
  let drop = 0;
  while (drop < state.bins.length && state.bins[drop] < first) drop++;
  if (drop) {
    state.bins.splice(0, drop);
    state.components.forEach((_, c) => { state.lo[c].splice(0, drop); state.hi[c].splice(0, drop); });
  }
}

function mergeWindows(data) {
  if (data.classes.join() !== state.classes.join()) {
    state.classes = data.classes; state.centers = []; state.probs = [];
  }
  const last = state.centers.length ? state.centers[state.centers.length - 1] : -Infinity;
  data.center_us.forEach((t, i) => {
    if (t > last) { state.centers.push(t); state.probs.push(data.probs[i]); }
  });
  const first = state.centers.length ? state.centers[state.centers.length - 1] - 600e6 : 0;
  let drop = 0;
  while (drop < state.centers.length && state.centers[drop] < first) drop++;
  state.centers.splice(0, drop); state.probs.splice(0, drop);
}

// ------------------------------------------------------------------ drawing
function fitCanvas(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  if (canvas.width !== Math.round(w * ratio) || canvas.height !== Math.round(h * ratio)) {
    canvas.width = Math.round(w * ratio); canvas.height = Math.round(h * ratio);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, w, h);
  ctx.font = "12px system-ui, sans-serif";
  return { ctx, w, h };
}

function timeSpan() {
  const spanUs = Number($("span").value) * 1e6;
  let end = state.bins.length ? (state.bins[state.bins.length - 1] + 1) * state.binUs : null;
  if (end === null && state.centers.length) end = state.centers[state.centers.length - 1];
  return end === null ? null : { start: end - spanUs, end, spanUs };
}

function drawTimeAxis(ctx, span, w, y) {
  // Ticks every 5 s to 2 min, at least 70 px apart; the right end names the time (UTC).
  ctx.fillStyle = css("--muted");
  const pxPerS = (w * 1e6) / span.spanUs;
  const stepS = [5, 10, 20, 30, 60, 120].find((s) => s * pxPerS >= 70) || 300;
  ctx.textAlign = "right";
  ctx.fillText(utc(span.end).slice(0, 8), w, y + 10);
  ctx.textAlign = "center";
  for (let s = 0; s * 1e6 <= span.spanUs; s += stepS) {
    const x = w - s * pxPerS;
    ctx.fillRect(x, y - 4, 1, 4);
    if (s > 0 && x < w - 80 && x > 20) ctx.fillText(`−${s} s`, x, y + 10);
  }
}

function envelope(c, i0, span, w) {
  // Per pixel column: the lowest minimum and the highest maximum of its bins.
  const lo = new Float64Array(w).fill(NaN), hi = new Float64Array(w).fill(NaN);
  for (let i = i0; i < state.bins.length; i++) {
    const x = Math.floor(((state.bins[i] * state.binUs - span.start) / span.spanUs) * w);
    const a = state.lo[c][i], b = state.hi[c][i];
    if (x < 0 || x >= w || a === null || b === null) continue;
    lo[x] = Number.isNaN(lo[x]) ? a : Math.min(lo[x], a);
    hi[x] = Number.isNaN(hi[x]) ? b : Math.max(hi[x], b);
  }
  return { lo, hi };
}

function drawLane(ctx, c, top, laneH, span, w, i0) {
  const { lo, hi } = envelope(c, i0, span, w);
  let min = Infinity, max = -Infinity;
  lo.forEach((v) => { if (!Number.isNaN(v)) min = Math.min(min, v); });
  hi.forEach((v) => { if (!Number.isNaN(v)) max = Math.max(max, v); });
  if (min === Infinity) return 0;
  const mid = (min + max) / 2, half = Math.max((max - min) / 2, 1e-6);
  const y = (v) => top + laneH / 2 - ((v - mid) / half) * (laneH / 2 - 4);
  ctx.fillStyle = css("--trace");
  let drawn = 0, prev = -2;
  for (let x = 0; x < w; x++) {
    if (Number.isNaN(lo[x])) continue;
    let a = lo[x], b = hi[x];
    if (prev === x - 1) { a = Math.min(a, hi[prev]); b = Math.max(b, lo[prev]); }  // joined to the last column
    const yTop = y(b), yBottom = y(a);
    ctx.fillRect(x, yTop, 1, Math.max(1, yBottom - yTop));
    prev = x; drawn++;
  }
  const decimals = Math.min(9, Math.max(0, 1 - Math.floor(Math.log10(half))));  // the offset to the range's digits
  const label = `${state.components[c]}  ${mid.toFixed(decimals)} ± ${half.toPrecision(2)} m/s²`;
  ctx.globalAlpha = 0.8;  // readable over the trace
  ctx.fillStyle = css("--panel");
  ctx.fillRect(2, top + 1, ctx.measureText(label).width + 4, 14);
  ctx.globalAlpha = 1;
  ctx.fillStyle = css("--muted");
  ctx.textAlign = "left";
  ctx.fillText(label, 4, top + 12);
  return drawn;
}

function drawMarks(ctx, span, w, h) {
  const x = (t) => ((t - span.start) / span.spanUs) * w;
  ctx.fillStyle = css("--event");
  state.events.forEach((e) => {
    const end = e.type === "trigger" ? span.end : e.end_us;
    if (end >= span.start && e.start_us <= span.end) ctx.fillRect(x(e.start_us), 0, Math.max(2, x(end) - x(e.start_us)), h);
  });
  ctx.textAlign = "center";
  state.picks.forEach((p) => {
    if (p.time_us < span.start || p.time_us > span.end) return;
    ctx.fillStyle = css(p.phase === "P" ? "--p" : "--s");
    ctx.fillRect(x(p.time_us), 0, 1.5, h);
    ctx.fillText(p.phase, x(p.time_us) + 6, 11);
  });
}

function drawTraces() {
  const canvas = $("traces");
  const { ctx, w, h } = fitCanvas(canvas);
  const span = timeSpan();
  if (!span || !state.bins.length) {
    ctx.fillStyle = css("--muted"); ctx.textAlign = "center";
    ctx.fillText("waiting for samples…", w / 2, h / 2);
    canvas.dataset.columns = "0";
    return;
  }
  const axisH = 16, lanes = state.components.length, laneH = (h - axisH) / lanes;
  drawMarks(ctx, span, w, h - axisH);
  const firstBin = span.start / state.binUs;
  let i0 = 0;
  while (i0 < state.bins.length && state.bins[i0] < firstBin) i0++;
  let columns = 0;
  for (let c = 0; c < lanes; c++) columns += drawLane(ctx, c, c * laneH, laneH, span, w, i0);
  drawTimeAxis(ctx, span, w, h - axisH + 4);
  canvas.dataset.columns = String(columns);
}

function drawProbs() {
  const canvas = $("probs");
  const { ctx, w, h } = fitCanvas(canvas);
  const span = timeSpan();
  const axisH = 14, plotH = h - axisH;
  ctx.fillStyle = css("--line");
  [0, 0.5, 1].forEach((p) => ctx.fillRect(0, 2 + (1 - p) * (plotH - 4), w, 1));
  if (!span || !state.centers.length) { canvas.dataset.points = "0"; return; }
  const x = (t) => ((t - span.start) / span.spanUs) * w;
  state.classes.forEach((name, k) => {
    ctx.strokeStyle = classColor(name, k);
    ctx.lineWidth = name === "noise" ? 1 : 2;
    ctx.beginPath();
    let last = null;
    state.centers.forEach((t, i) => {
      if (t < span.start) return;
      const px = x(t), py = 2 + (1 - state.probs[i][k]) * (plotH - 4);
      if (last !== null && t - last > 2 * 60e6) ctx.moveTo(px, py);  // a gap: no line across it
      else if (last === null) ctx.moveTo(px, py); else ctx.lineTo(px, py);
      last = t;
    });
    ctx.stroke();
  });
  drawTimeAxis(ctx, span, w, h - axisH + 2);
  canvas.dataset.points = String(state.centers.length);
}

// ------------------------------------------------------------------ lists and tables
function renderLatest() {
  const list = $("latest");
  const probs = state.probs[state.probs.length - 1];
  list.replaceChildren(...state.classes.map((name, k) => {
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = "swatch"; swatch.style.background = classColor(name, k);
    item.append(swatch, `${name} ${probs ? probs[k].toFixed(2) : "–"}`);
    return item;
  }));
}

function eventState(e) {
  if (e.closed_by) return `closed by ${e.closed_by}`;
  return e.type === "trigger" ? "open" : "closed";
}

function pickCell(e, phase) {
  const t = e[`${phase}_time_us`];
  return t === null || t === undefined ? "–" : `${utc(t)} (${fmt(e[`${phase}_prob`], 2)})`;
}

function renderEvents() {
  const body = $("events").tBodies[0];
  const seen = state.seenEvents;
  body.replaceChildren(...state.events.map((e) => {
    const row = document.createElement("tr");
    row.dataset.startUs = String(e.start_us);
    if (seen && !seen.has(e.start_us)) row.className = "new";
    const source = e.source_class ? `${e.source_class} (${fmt(e.source_prob, 2)})` : "–";
    row.title = `${e.event_id || e.station || ""} ${utcDay(e.start_us)}`;
    [utc(e.start_us), eventState(e), pickCell(e, "p"), pickCell(e, "s"),
      fmt(e.pga_mps2), source].forEach((text) => {
      const cell = document.createElement("td"); cell.textContent = text; row.append(cell);
    });
    return row;
  }));
  state.seenEvents = new Set(state.events.map((e) => e.start_us));
  $("no-events").hidden = state.events.length > 0;
  $("picks").replaceChildren(...state.picks.slice(0, 20).map((p) => {
    const item = document.createElement("li");
    const mark = document.createElement("span");
    mark.className = `mark ${p.phase.toLowerCase()}`; mark.textContent = p.phase;
    item.append(mark, ` ${utcDay(p.time_us)} ${utc(p.time_us)}  p = ${fmt(p.prob, 2)}`);
    return item;
  }));
}

function flatten(value, prefix, out) {
  if (value !== null && typeof value === "object" && !Array.isArray(value)) {
    Object.entries(value).forEach(([k, v]) => flatten(v, prefix ? `${prefix}.${k}` : k, out));
  } else {
    out.push([prefix, Array.isArray(value) ? JSON.stringify(value) : value]);
  }
  return out;
}

function duration(s) {
  if (s === undefined || s === null) return "–";
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.floor(s % 60)} s`;
  if (s < 172800) return `${(s / 3600).toFixed(1)} h`;
  return `${(s / 86400).toFixed(1)} days`;
}

function renderStatus() {
  const s = state.status, node = (s && s.node) || {};
  const pipeline = node.pipeline || {}, decoder = node.decoder || {};
  const faults = Object.values(node.faults || {}).reduce((n, v) => n + (typeof v === "number" ? v : 0), 0);
  $("station").textContent = node.station || "";
  const cards = [
    ["uptime", duration(node.uptime_s)],
    ["time fix", node.time_fix], ["port", node.port_open === undefined ? "–" : node.port_open ? "open" : "closed"],
    ["frames", pipeline.frames], ["frames lost", pipeline.frames_lost], ["windows", pipeline.windows],
    ["triggers", pipeline.triggers], ["events", pipeline.events], ["errors", pipeline.errors],
    ["reconnects", node.reconnects], ["CRC errors", decoder.crc_errors], ["faults", faults],
    ["model", node.model_version || node.model],
  ];
  $("cards").replaceChildren(...cards.map(([name, value]) => {
    const div = document.createElement("div");
    const dt = document.createElement("dt"), dd = document.createElement("dd");
    dt.textContent = name; dd.textContent = fmt(value);
    div.append(dt, dd);
    return div;
  }));
  const details = $("counters").tBodies[0];
  details.replaceChildren(...flatten(node, "", []).map(([k, v]) => {
    const row = document.createElement("tr");
    const a = document.createElement("td"), b = document.createElement("td");
    a.textContent = k; b.textContent = fmt(v, 6);
    row.append(a, b);
    return row;
  }));
}

function renderState() {
  const badge = $("state"), s = state.status;
  let text, kind;
  if (!state.online) { text = "node not answering"; kind = "offline"; }
  else if (!s || s.last_sample_age_s === null) { text = "no samples yet"; kind = "unknown"; }
  else if (s.last_sample_age_s > STALE_S) { text = `no samples for ${Math.round(s.last_sample_age_s)} s`; kind = "stale"; }
  else { text = "receiving"; kind = "ok"; }
  badge.textContent = text; badge.className = `state ${kind}`;
  $("clock").textContent = s && s.last_sample_us ? `last sample ${utcDay(s.last_sample_us)} ${utc(s.last_sample_us)} UTC` : "";
}

// ------------------------------------------------------------------ the loop
function lastOf(list) { return list.length ? list[list.length - 1] : null; }

async function poll() {
  try {
    const lastBin = lastOf(state.bins), lastCenter = lastOf(state.centers);
    const query = [];  // one request a second: what is new since the last answer
    if (lastBin !== null) query.push(`traces_after_us=${(lastBin - 1) * state.binUs}`);  // the last again
    if (lastCenter !== null) query.push(`windows_after_us=${lastCenter}`);
    query.push(`events_version=${state.eventsVersion}`);  // the events only when they changed (-1: never)
    const { traces, windows, events, status } = await getJSON(`api/poll?${query.join("&")}`);
    mergeTraces(traces); mergeWindows(windows);
    state.status = status; state.online = true;
    if (events.version !== state.eventsVersion) {
      state.events = events.events; state.picks = events.picks; state.eventsVersion = events.version;
      renderEvents();
    }
    draw();
  } catch (error) {
    state.online = false;
  }
  renderState();
}

function draw() {
  drawTraces(); drawProbs(); renderLatest(); renderStatus();
}

async function loop() {
  if (!document.hidden) await poll();
  setTimeout(loop, POLL_MS);
}

if (window.innerWidth < 600) $("span").value = "60";  // a phone: a minute is readable
window.addEventListener("resize", draw);
$("span").addEventListener("change", draw);
document.addEventListener("visibilitychange", () => { if (!document.hidden) poll(); });
loop();
