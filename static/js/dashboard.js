// The dashboard: the tenant's documents (newest first), uploads, live bars, the chart, and
// cancel / retry (one document, or all failed ones).

import { errorMessage, getJSON, postJSON } from "./api.js";
import { Chart } from "./chart.js";
import { Live } from "./live.js";
import { buildRow, updateRow } from "./render.js";
import { STAGES, Store } from "./store.js";
import { announce, el, showStatus, signedOut, wireSignout } from "./ui.js";

const LIMIT = 20;
const store = new Store();
const rows = new Map(); // document id -> <li>, so a document never has two rows
const view = { offset: 0, total: 0, order: [], state: "", search: "" };
const list = document.getElementById("documents");
const chart = new Chart(document.getElementById("chart"));
let reloadTimer = null;

async function loadSnapshot() {
  const page = await getJSON(`/api/documents?offset=${view.offset}&limit=${LIMIT}`);
  view.total = page.total;
  const ids = page.documents.map((rec) => store.putRecord(rec).id);
  const details = await Promise.all(
    ids.map((id) => getJSON(`/api/documents/${id}`).catch(() => null)),
  );
  for (const d of details) if (d) for (const s of d.stages) store.putStage(d.document.document_id, s);
  view.order = ids;
  render();
}

// A document the page does not know: a newer one (uploaded elsewhere) shows after a reload of the
// first page; an older one, off this page, is left alone.
function unknown(id) {
  if (view.offset === 0 && id > Math.max(0, ...view.order)) reloadSoon();
}

function reloadSoon() {
  clearTimeout(reloadTimer);
  reloadTimer = setTimeout(() => loadSnapshot().catch(() => {}), 250);
}

function shown(doc) {
  if (view.state && doc.state !== view.state) return false;
  return !view.search || doc.filename.toLowerCase().includes(view.search);
}

function render() {
  const visible = view.order.map((id) => store.get(id)).filter((d) => d && shown(d));
  const wanted = new Set(visible.map((d) => d.id));
  for (const [id, row] of rows) if (!wanted.has(id)) { row.remove(); rows.delete(id); }
  visible.forEach((doc, i) => {
    let row = rows.get(doc.id);
    if (!row) { row = buildRow(doc); rows.set(doc.id, row); }
    updateRow(row, doc);
    if (list.children[i] !== row) list.insertBefore(row, list.children[i] || null);
  });
  document.getElementById("empty").hidden = visible.length > 0;
  const last = Math.min(view.total, view.offset + view.order.length);
  document.getElementById("page-info").textContent =
    view.total ? `${view.offset + 1}–${last} of ${view.total}` : "no documents yet";
  document.getElementById("prev").disabled = view.offset === 0;
  document.getElementById("next").disabled = view.offset + LIMIT >= view.total;
}

function changed(doc, before) {
  if (!doc) return;
  const row = rows.get(doc.id);
  if (row) updateRow(row, doc);
  if (doc.state !== before && doc.state === "done") announce(`${doc.filename}: done`);
  if (doc.state !== before && doc.state === "failed") {
    announce(`${doc.filename}: failed: ${doc.error || ""}`);
  }
  if (doc.state !== before && doc.state === "cancelled") announce(`${doc.filename}: cancelled`);
  if (view.state && doc.state !== before) render();
}

function onEvent(ev) {
  const known = store.get(ev.document_id);
  if (!known) { unknown(ev.document_id); return; }
  const before = known.state;
  const doc = store.putEvent(ev);
  chart.add(ev, known.stages[ev.type]);
  changed(doc, before);
}

function onJobs(jobs) {
  for (const job of jobs) {
    const known = store.get(job.document_id);
    if (!known) { unknown(job.document_id); continue; }
    const before = known.state;
    changed(store.putStage(job.document_id, job), before);
  }
}

async function upload(file) {
  const item = el("li", { class: "upload" });
  const status = el("span", { class: "upload-status" }, "uploading…");
  item.append(el("span", { class: "upload-name" }, file.name), status);
  document.getElementById("uploads").prepend(item);
  const form = new FormData();
  form.append("file", file, file.name);
  let resp;
  try {
    resp = await fetch("/api/documents", { method: "POST", body: form, credentials: "same-origin" });
  } catch {
    item.dataset.state = "error";
    status.textContent = "upload failed: the server could not be reached";
    return;
  }
  if (resp.status !== 202) {
    item.dataset.state = "error";
    status.textContent = `not accepted (${resp.status}): ${await errorMessage(resp)}`;
    return;
  }
  const { document_id: id } = await resp.json();
  item.dataset.state = "ok";
  status.textContent = `queued as document ${id}`;
  const doc = store.ensure(id, { filename: file.name, createdAt: new Date().toISOString() });
  store.putStage(id, { stage: STAGES[0], state: "queued", progress: 0, attempt: 1 });
  if (view.offset === 0 && !view.order.includes(id)) {
    view.order.unshift(id);
    view.order.sort((a, b) => b - a); // newest first, whichever upload answered first
    view.total += 1;
    if (view.order.length > LIMIT) view.order.pop();
  }
  render();
  return doc;
}

function wireUploads() {
  const input = document.getElementById("file-input");
  input.addEventListener("change", () => {
    for (const file of input.files) upload(file);
    input.value = "";
  });
  const drop = document.getElementById("drop");
  drop.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); }
  });
  drop.addEventListener("click", () => input.click());
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    for (const file of e.dataTransfer.files) upload(file);
  });
}

// A row's Cancel or Retry: the answer (the document as it is now) moves the row at once; the
// events that follow move its bars.
async function act(button) {
  const id = Number(button.dataset.documentId);
  const result = button.parentElement.querySelector(".action-result");
  button.disabled = true;
  try {
    const known = store.get(id);
    const before = known ? known.state : null;
    const view = await postJSON(`/api/documents/${id}/${button.dataset.action}`);
    changed(store.putView(view), before);
    result.textContent = button.dataset.action === "cancel" ? "cancelled" : "retrying";
  } catch (err) {
    result.textContent = err.message;
  } finally {
    button.disabled = false;
  }
}

async function retryFailed() {
  const status = document.getElementById("retry-failed-result");
  try {
    const answer = await postJSON("/api/documents/retry?state=failed");
    status.textContent = `retried ${answer.retried} failed document${answer.retried === 1 ? "" : "s"}` +
      (answer.more ? " (more remain: press again)" : "");
    await loadSnapshot();
  } catch (err) {
    status.textContent = err.message;
  }
}

function wireControls() {
  list.addEventListener("click", (e) => {
    const button = e.target.closest("button[data-action]");
    if (button) act(button);
  });
  document.getElementById("retry-failed").addEventListener("click", () => retryFailed());
  document.getElementById("filter-state").addEventListener("change", (e) => {
    view.state = e.target.value;
    render();
  });
  document.getElementById("search").addEventListener("input", (e) => {
    view.search = e.target.value.trim().toLowerCase();
    render();
  });
  document.getElementById("prev").addEventListener("click", () => {
    view.offset = Math.max(0, view.offset - LIMIT);
    loadSnapshot().catch(() => {});
  });
  document.getElementById("next").addEventListener("click", () => {
    view.offset += LIMIT;
    loadSnapshot().catch(() => {});
  });
}

const live = new Live({
  onEvent,
  onJobs,
  onResync: () => loadSnapshot().catch(() => {}),
  onStatus: showStatus,
  onSignedOut: signedOut,
});
wireUploads();
wireControls();
wireSignout(live);
setInterval(() => {
  for (const id of view.order) {
    const doc = store.get(id);
    if (doc && doc.state === "running" && rows.has(id)) updateRow(rows.get(id), doc);
  }
}, 1000);
showStatus("connecting");
loadSnapshot().catch(() => {});
live.start();
