// The operator's page: polls GET /api/operator/overview every data-poll-ms and redraws the queue,
// the bus, the workers, the tenants and the last failures. Text from Redis goes in as text only.

const POLL_MS = Number(document.body.dataset.pollMs) || 2000;

function text(id, value) {
  document.getElementById(id).textContent = String(value);
}

function seconds(s) {
  if (s === null || s === undefined) return "–";
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${(s / 3600).toFixed(1)} h`;
}

function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

function since(iso) {
  if (!iso) return "–";
  const at = new Date(iso);
  return `${at.toLocaleString()} (${seconds((Date.now() - at.getTime()) / 1000)} ago)`;
}

// Replace a table's rows: one <tr> per item, its cells from `cells(item)`, keyed by `key`.
function rows(tableId, items, key, cells, empty) {
  const body = document.querySelector(`#${tableId} tbody`);
  const labels = [...document.querySelectorAll(`#${tableId} thead th`)].map((th) => th.textContent);
  const fresh = items.map((item) => {
    const tr = document.createElement("tr");
    tr.dataset.key = key(item);
    cells(item).forEach((value, i) => {
      const td = document.createElement("td");
      td.dataset.label = labels[i];  // a phone shows each row as a card of labelled values
      td.textContent = String(value);
      tr.append(td);
    });
    return tr;
  });
  if (fresh.length === 0) {
    const tr = document.createElement("tr");
    const td = document.createElement("td");
    td.colSpan = labels.length;
    td.className = "help";
    td.textContent = empty;
    tr.append(td);
    fresh.push(tr);
  }
  body.replaceChildren(...fresh);
}

function render(view) {
  const q = view.queue;
  text("q-jobs", q.jobs);
  text("q-running", q.running);
  text("q-waiting", q.waiting);
  text("q-deferred", q.deferred);
  text("q-oldest", seconds(q.oldest_waiting_s));
  const bus = view.bus;
  text("bus-state", bus.degraded ? "degraded" : "live");
  document.getElementById("bus-state").dataset.state = bus.degraded ? "degraded" : "live";
  text("bus-repairs", bus.repairs);
  text("bus-reconnects", bus.subscription_reconnects);
  text("bus-deaf", bus.deaf_reconnects);
  text("bus-process", `pid ${bus.process}`);
  rows("workers", view.workers, (w) => w.worker_id,
    (w) => [w.worker_id, "alive", `${seconds(w.last_beat_s)} ago`, w.running, since(w.started_at)],
    "no worker alive");
  text("health-check", view.worker_health_check ? `last arq heartbeat: ${view.worker_health_check}` : "");
  rows("tenants", view.tenants, (t) => t.tenant_id,
    (t) => [t.tenant_id, t.in_flight, t.uploads_last_minute, t.sockets, t.documents, bytes(t.stored_bytes)],
    "no tenant yet");
  rows("failures", view.failures, (f) => `${f.tenant_id}/${f.job_id}`,
    (f) => [f.finished_at ? new Date(f.finished_at).toLocaleString() : "–", f.tenant_id,
      f.document_id, f.stage, f.error],
    "no failure");
}

function status(state, label) {
  const el = document.getElementById("op-status");
  el.dataset.state = state;
  el.textContent = label;
}

async function poll() {
  try {
    const resp = await fetch("/api/operator/overview", { credentials: "same-origin" });
    if (resp.status === 401) {
      location.assign("/operator");  // the sign-in form
      return;
    }
    if (!resp.ok) throw new Error(`${resp.status}`);
    const view = await resp.json();
    render(view);
    status("live", `live · ${new Date(view.at).toLocaleTimeString()}`);
  } catch {
    status("offline", "offline: retrying");
  }
  setTimeout(poll, POLL_MS);
}

poll();
