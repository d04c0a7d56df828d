// The tenant's live events: a ticket, then /ws; resume with since/epoch; backoff with full
// jitter; app-level pings; and polling GET /api/jobs when the socket cannot connect at all.

const BASE_S = 0.5;
const MAX_S = 20;
const STABLE_MS = 10_000;
const PING_MS = 20_000;
const PONG_MS = 10_000;
const POLL_MS = 2_000;
const FAILURES_BEFORE_POLLING = 3;
// a restart (1001, 1012) sends everyone away at once: backoff starts at a 16 s cap (app/client.py)
const RESTART_ATTEMPT = 5;
const RESTART_CODES = [1001, 1012];

export class Live {
  // handlers: onEvent(ev), onResync(), onJobs(jobs), onStatus(state, detail), onSignedOut()
  constructor(handlers, { since = null } = {}) {
    this.h = handlers;
    this.seq = since;
    this.epoch = "";
    this.ws = null;
    this.attempt = 0; // reconnects since the last stable connection
    this.failures = 0; // connections in a row that never became ready
    this.timers = {};
    this.cursor = 0;
    this.polling = false;
    this.stopped = false;
    this.onOnline = () => this.reconnectNow();
    window.addEventListener("online", this.onOnline);
  }

  start() {
    this.connect();
  }

  stop() {
    this.stopped = true;
    window.removeEventListener("online", this.onOnline);
    for (const name of Object.keys(this.timers)) this.clear(name);
    this.stopPolling();
    if (this.ws) this.ws.close(1000, "page closed");
    this.ws = null;
  }

  clear(name) {
    clearTimeout(this.timers[name]);
    clearInterval(this.timers[name]);
    delete this.timers[name];
  }

  status(state, detail = "") {
    this.h.onStatus(this.polling && state !== "live" ? "polling" : state, detail);
  }

  async connect() {
    if (this.stopped) return;
    if (!navigator.onLine) { this.status("offline"); return; }
    let ticket;
    try {
      const resp = await fetch("/api/ws-tickets", { method: "POST", credentials: "same-origin" });
      if (resp.status === 401) { this.h.onSignedOut(); return; }
      if (!resp.ok) throw new Error(`ticket: ${resp.status}`);
      ticket = (await resp.json()).ticket;
    } catch {
      this.failed();
      return;
    }
    if (this.stopped) return;
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    let url = `${proto}//${location.host}/ws?ticket=${encodeURIComponent(ticket)}`;
    if (this.seq !== null) url += `&since=${this.seq}&epoch=${encodeURIComponent(this.epoch)}`;
    const ws = new WebSocket(url);
    this.ws = ws;
    let ready = false;
    ws.onmessage = (msg) => {
      if (this.ws !== ws) return;
      this.alive();
      let frame;
      try { frame = JSON.parse(msg.data); } catch { return; }
      if (frame.op === "ready") { ready = true; this.ready(frame); } else this.frame(frame);
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.clear("ping"); this.clear("pong"); this.clear("stable");
      if (RESTART_CODES.includes(event.code)) this.attempt = Math.max(this.attempt, RESTART_ATTEMPT);
      if (ready) this.reconnect(); else this.failed();
    };
  }

  ready(frame) {
    const first = this.seq === null;
    this.epoch = frame.epoch;
    if (first) this.seq = frame.head;
    this.failures = 0;
    this.stopPolling();
    this.status("live");
    this.timers.stable = setTimeout(() => { this.attempt = 0; }, STABLE_MS);
    this.timers.ping = setInterval(() => this.ping(), PING_MS);
    if (first) this.h.onResync();
  }

  frame(frame) {
    if (frame.op === "pong") return;
    if (frame.op === "resync") {
      this.epoch = frame.epoch;
      this.seq = frame.head;
      this.h.onResync();
      return;
    }
    if (frame.op === "degraded") { this.status("degraded"); return; }
    if (frame.op === "live") { this.status("live"); return; }
    if (typeof frame.seq !== "number") { this.h.onEvent(frame); return; }
    if (this.seq !== null && frame.seq <= this.seq) return; // seen already
    if (this.seq !== null && frame.seq > this.seq + 1) {
      this.ws.close(4000, "gap"); // reconnect with since: the server fills the gap from history
      return;
    }
    this.seq = frame.seq;
    this.h.onEvent(frame);
  }

  ping() {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return;
    this.ws.send('{"op":"ping"}');
    if (!this.timers.pong) this.timers.pong = setTimeout(() => this.dead(), PONG_MS);
  }

  alive() {
    this.clear("pong");
  }

  dead() {
    const ws = this.ws;
    if (!ws) return;
    this.ws = null;
    this.clear("ping"); this.clear("stable");
    ws.close(4000, "no pong");
    this.reconnect();
  }

  failed() {
    this.failures += 1;
    if (this.failures >= FAILURES_BEFORE_POLLING) this.startPolling();
    this.reconnect();
  }

  reconnect() {
    if (this.stopped) return;
    this.clear("retry");
    const cap = Math.min(MAX_S, BASE_S * 2 ** this.attempt);
    const delay = Math.random() * cap * 1000; // full jitter
    this.attempt += 1;
    const at = new Date(Date.now() + delay);
    this.status(navigator.onLine ? "reconnecting" : "offline", at.toLocaleTimeString());
    this.timers.retry = setTimeout(() => this.connect(), delay);
  }

  reconnectNow() {
    if (this.stopped || this.ws) return;
    this.clear("retry");
    this.connect();
  }

  startPolling() {
    if (this.polling) return;
    this.polling = true;
    this.cursor = 0;
    this.h.onResync();
    this.poll();
    this.timers.poll = setInterval(() => this.poll(), POLL_MS);
  }

  stopPolling() {
    if (!this.polling) return;
    this.polling = false;
    this.clear("poll");
  }

  async poll() {
    try {
      const resp = await fetch(`/api/jobs?since=${this.cursor}`, { credentials: "same-origin" });
      if (resp.status === 401) { this.h.onSignedOut(); return; }
      if (!resp.ok || !this.polling) return;
      const page = await resp.json();
      this.cursor = page.next_since;
      this.h.onJobs(page.jobs);
    } catch {
      // the next poll tries again; the indicator already says polling
    }
  }
}
