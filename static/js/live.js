// The tenant's live events: a ticket, then /ws; resume with since/epoch; backoff with full
// jitter; app-level pings; and polling GET /api/jobs when the socket cannot connect at all.
// The reconnect policy (backoff, restart codes, when to poll) is docpulse/reconnect.py's, the one
// `docpulse submit --url` follows: app/pages.py renders it into the page, pagePolicy() reads it.
// The indicator says "offline" while the server cannot be reached (the browser is offline, or
// the last request to the server failed), "polling" while polls get answers.

const PING_MS = 20_000;
const PONG_MS = 10_000;

export function pagePolicy(doc = document) {
  return JSON.parse(doc.getElementById("reconnect-policy").textContent);
}

// Full jitter: uniform over [0, min(max_s, base_s * 2**attempt)) seconds, in milliseconds.
export function reconnectDelay(policy, attempt, random = Math.random) {
  const cap = Math.min(policy.max_s, policy.base_s * 2 ** Math.min(attempt, 32));
  return random() * cap * 1000;
}

export class Live {
  // handlers: onEvent(ev), onResync(), onJobs(jobs), onStatus(state, detail), onSignedOut()
  constructor(handlers, { since = null, policy = pagePolicy() } = {}) {
    this.h = handlers;
    this.policy = policy;
    this.seq = since;
    this.epoch = "";
    this.ws = null;
    this.attempt = 0; // reconnects since the last stable connection
    this.failures = 0; // connections in a row that never became ready
    this.timers = {};
    this.cursor = 0;
    this.polling = false;
    this.unreachable = false; // the last request to the server got no answer (or a 5xx)
    this.shown = ["connecting", ""]; // what the indicator says: state, detail
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
    this.shown = [state, detail];
    let shown = state;
    if (state !== "live" && state !== "degraded") {
      if (this.unreachable || !navigator.onLine) shown = "offline";
      else if (this.polling) shown = "polling";
    }
    this.h.onStatus(shown, detail);
  }

  // Whether the server answered the last request; the indicator follows when that changes.
  reached(answered) {
    if (this.unreachable === !answered) return;
    this.unreachable = !answered;
    this.status(...this.shown);
  }

  async connect() {
    if (this.stopped) return;
    if (!navigator.onLine) { this.status("offline"); return; }
    const ticket = await this.ticket();
    if (this.stopped) return;
    if (ticket === null) { this.failed(); return; }
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
      if (this.policy.restart_codes.includes(event.code)) {
        this.attempt = Math.max(this.attempt, this.policy.restart_attempt);
      }
      if (ready) this.reconnect(); else this.failed();
    };
  }

  // A ticket for /ws, or null: the server could not be reached, refused, or signed us out (stop).
  async ticket() {
    let resp;
    try {
      resp = await fetch("/api/ws-tickets", { method: "POST", credentials: "same-origin" });
    } catch {
      this.reached(false);
      return null;
    }
    if (resp.status === 401) { this.stop(); this.h.onSignedOut(); return null; }
    this.reached(resp.status < 500);
    if (!resp.ok) return null;
    try {
      return (await resp.json()).ticket;
    } catch {
      return null;
    }
  }

  ready(frame) {
    const first = this.seq === null;
    this.epoch = frame.epoch;
    if (first) this.seq = frame.head;
    this.failures = 0;
    this.unreachable = false;
    this.stopPolling();
    this.status("live");
    this.timers.stable = setTimeout(() => { this.attempt = 0; }, this.policy.stable_s * 1000);
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
    if (this.failures >= this.policy.failures_before_polling) this.startPolling();
    this.reconnect();
  }

  reconnect() {
    if (this.stopped) return;
    this.clear("retry");
    const delay = reconnectDelay(this.policy, this.attempt);
    this.attempt += 1;
    const at = new Date(Date.now() + delay);
    this.status("reconnecting", at.toLocaleTimeString());
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
    this.timers.poll = setInterval(() => this.poll(), this.policy.poll_s * 1000);
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
      if (!this.polling) return;
      this.reached(resp.status < 500);
      if (!resp.ok) return;
      const page = await resp.json();
      this.cursor = page.next_since;
      this.h.onJobs(page.jobs);
    } catch {
      if (this.polling) this.reached(false); // the next poll tries again
    }
  }
}
