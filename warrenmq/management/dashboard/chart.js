// Line charts with axes, drawn as SVG from the broker-kept history (RabbitMQ's
// "samples": newest first, {sample, timestamp ms}). The x axis is wall-clock time over
// the window (10 minutes), the y axis starts at 0 with round ticks and names its unit.
"use strict";

const NS = "http://www.w3.org/2000/svg";
const W = 640;
const H = 220;
const PAD = { left: 58, right: 12, top: 12, bottom: 28 };
export const WINDOW_MS = 10 * 60 * 1000;

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function niceStep(max, ticks) {
  const raw = max / ticks;
  const power = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * power >= raw) return m * power;
  return 10 * power;
}

function shortNumber(v) {
  if (v >= 1e6) return `${+(v / 1e6).toFixed(1)}M`;
  if (v >= 1e4) return `${+(v / 1e3).toFixed(1)}k`;
  return `${+v.toFixed(2)}`;
}

function clock(t) {
  const d = new Date(t);
  return `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
}

// Samples of a gauge (depth) as points [t, value], oldest first.
export function gauge(details) {
  return ((details && details.samples) || []).map((s) => [s.timestamp, s.sample]).reverse();
}

// Samples of a counter as per-second rates between neighbours, oldest first.
export function perSecond(details) {
  const s = (details && details.samples) || [];
  const out = [];
  for (let i = s.length - 2; i >= 0; i -= 1) {
    const dt = (s[i].timestamp - s[i + 1].timestamp) / 1000;
    if (dt > 0) out.push([s[i].timestamp, Math.max(0, (s[i].sample - s[i + 1].sample) / dt)]);
  }
  return out;
}

// series: [{label, cls, points: [[t, v], ...]}]; unit: the y axis' name.
export function lineChart({ id, title, unit, series }) {
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", id });
  const all = series.flatMap((s) => s.points);
  const end = all.length ? Math.max(...all.map((p) => p[0])) : Date.now();
  const start = end - WINDOW_MS;
  const top = Math.max(1, ...all.map((p) => p[1]));
  const step = niceStep(top, 4);
  const ymax = Math.ceil(top / step) * step;
  const x = (t) => PAD.left + ((t - start) / WINDOW_MS) * (W - PAD.left - PAD.right);
  const y = (v) => H - PAD.bottom - (v / ymax) * (H - PAD.top - PAD.bottom);
  const axes = svg("g", { class: "axes" });
  for (let v = 0; v <= ymax + step / 2; v += step) {
    axes.append(svg("line", { x1: PAD.left, x2: W - PAD.right, y1: y(v), y2: y(v), class: "grid" }));
    axes.append(svg("text", { x: PAD.left - 6, y: y(v) + 4, "text-anchor": "end", class: "tick y" }, shortNumber(v)));
  }
  for (let t = Math.ceil(start / 120000) * 120000; t <= end; t += 120000) {
    axes.append(svg("line", { x1: x(t), x2: x(t), y1: H - PAD.bottom, y2: H - PAD.bottom + 4, class: "axis" }));
    axes.append(svg("text", { x: x(t), y: H - 8, "text-anchor": "middle", class: "tick x" }, clock(t)));
  }
  axes.append(svg("line", { x1: PAD.left, x2: PAD.left, y1: PAD.top, y2: H - PAD.bottom, class: "axis" }));
  axes.append(svg("line", { x1: PAD.left, x2: W - PAD.right, y1: H - PAD.bottom, y2: H - PAD.bottom, class: "axis" }));
  axes.append(svg("text", { x: 12, y: (H - PAD.bottom + PAD.top) / 2, transform: `rotate(-90 12 ${(H - PAD.bottom + PAD.top) / 2})`, "text-anchor": "middle", class: "unit" }, unit));
  root.append(axes);
  for (const s of series) {
    const pts = s.points.filter((p) => p[0] >= start);
    const line = svg("polyline", { class: `series ${s.cls}`, points: pts.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ") });
    line.dataset.points = String(pts.length);
    root.append(line);
    if (pts.length === 1) root.append(svg("circle", { cx: x(pts[0][0]), cy: y(pts[0][1]), r: 2.5, class: `series ${s.cls}` }));
  }
  const legend = document.createElement("div");
  legend.className = "legend";
  for (const s of series) {
    const last = s.points.length ? s.points[s.points.length - 1][1] : 0;
    const key = document.createElement("span");
    key.innerHTML = `<i class="key ${s.cls}"></i>`;
    key.append(`${s.label} ${shortNumber(last)}`);
    legend.append(key);
  }
  const figure = document.createElement("figure");
  figure.className = "chart-box";
  const caption = document.createElement("figcaption");
  caption.textContent = `${title} — last 10 minutes, every 5 s (kept by the broker)`;
  figure.append(caption, root, legend);
  return figure;
}
