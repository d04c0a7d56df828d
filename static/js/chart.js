// A small live chart from the events this page received: events per second over the last
// minute (a line), documents finished in the last minute, and the mean duration of each stage.

import { STAGES } from "./store.js";

const SVG = "http://www.w3.org/2000/svg";
const WINDOW_S = 60;
const W = 300;
const H = 60;

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

export class Chart {
  constructor(root) {
    this.root = root;
    this.events = []; // arrival times (ms)
    this.finished = []; // embed_done times (ms)
    this.durations = Object.fromEntries(STAGES.map((s) => [s, []]));
    this.line = svg("polyline", { class: "rate", fill: "none", points: "" });
    const box = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "spark", "aria-hidden": "true",
      preserveAspectRatio: "none" });
    box.append(svg("line", { x1: 0, y1: H - 1, x2: W, y2: H - 1, class: "axis" }), this.line);
    root.querySelector(".spark-box").append(box);
    this.timer = setInterval(() => this.draw(), 1000);
    this.frame = null;
  }

  add(ev, stage) {
    const now = Date.now();
    this.events.push(now);
    if (ev.event === "embed_done") this.finished.push(now);
    const phase = ev.event.slice(ev.type.length + 1);
    if (phase === "done" && stage && stage.startedAt !== null && stage.finishedAt !== null) {
      const list = this.durations[ev.type];
      list.push((stage.finishedAt - stage.startedAt) / 1000);
      if (list.length > 50) list.shift();
    }
    this.frame ??= requestAnimationFrame(() => { this.frame = null; this.draw(); });
  }

  draw() {
    const now = Date.now();
    const from = now - WINDOW_S * 1000;
    this.events = this.events.filter((t) => t >= from);
    this.finished = this.finished.filter((t) => t >= from);
    const buckets = new Array(WINDOW_S).fill(0);
    for (const t of this.events) buckets[Math.min(WINDOW_S - 1, Math.floor((t - from) / 1000))] += 1;
    const top = Math.max(1, ...buckets);
    const points = buckets.map((n, i) => `${(i * W) / (WINDOW_S - 1)},${H - 2 - (n / top) * (H - 6)}`);
    this.line.setAttribute("points", points.join(" "));
    const last5 = buckets.slice(-5).reduce((a, b) => a + b, 0) / 5;
    this.root.querySelector(".eps").textContent = last5.toFixed(1);
    this.root.querySelector(".dpm").textContent = String(this.finished.length);
    for (const s of STAGES) {
      const list = this.durations[s];
      const mean = list.length ? list.reduce((a, b) => a + b, 0) / list.length : null;
      const out = this.root.querySelector(`.dur-${s}`);
      out.textContent = mean === null ? "–" : `${mean.toFixed(2)} s`;
      const bar = this.root.querySelector(`.durbar-${s}`);
      const longest = Math.max(0.001, ...STAGES.flatMap((x) => this.durations[x]));
      bar.style.width = mean === null ? "0" : `${Math.round((mean / longest) * 100)}%`;
    }
  }

  stop() {
    clearInterval(this.timer);
  }
}
