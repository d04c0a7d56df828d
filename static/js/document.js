// A document's page: its stages and timings, its chunks, and its history (job records and the
// events this page received, starting from the tenant's event history when the server has it).

import { getJSON, postJSON } from "./api.js";
import { Live } from "./live.js";
import { buildActions, buildStages, updateActions, updateStages } from "./render.js";
import { STAGES, Store } from "./store.js";
import { announce, el, showStatus, signedOut, wireSignout } from "./ui.js";

const id = Number(document.body.dataset.documentId);
const store = new Store();
const stagesBox = document.getElementById("stages");
const history = document.getElementById("history");
let box = null;
let chunksLoaded = false;

function historyLine(ts, source, what) {
  const row = el("tr");
  const when = ts ? new Date(ts).toLocaleTimeString() : "";
  row.append(el("td", {}, when), el("td", {}, source), el("td", {}, what));
  history.append(row);
}

function eventText(ev) {
  let text = `${ev.event} ${ev.progress}%`;
  if (ev.attempt > 1) text += ` (attempt ${ev.attempt})`;
  if (ev.note) text += ` – ${ev.note}`;
  if (ev.error) text += ` – ${ev.error}`;
  return text;
}

async function loadJobs(view) {
  for (const s of view.stages) {
    if (s.job_id === null) continue;
    const job = await getJSON(`/api/jobs/${s.job_id}`).catch(() => null);
    if (!job) continue;
    let what = `job ${job.job_id} ${job.stage}: ${job.state}, ${job.progress}%, attempt ${job.attempt}`;
    if (job.error) what += ` – ${job.error}`;
    historyLine(job.created_at, "job record", what);
  }
}

async function loadChunks(doc) {
  if (chunksLoaded || doc.stages.chunk.state !== "done") return;
  chunksLoaded = true;
  const page = await getJSON(`/api/documents/${id}/chunks?limit=50`);
  const record = (await getJSON(`/api/documents/${id}`)).document;
  const dims = record.vector_dim ? `${record.vector_dim} dimensions` : "not embedded yet";
  document.getElementById("chunk-info").textContent =
    `${record.chunk_count ?? page.chunks.length} chunks; vectors: ${dims}` +
    (page.chunks.length < (record.chunk_count ?? 0) ? ` (first ${page.chunks.length} shown)` : "");
  const list = document.getElementById("chunks");
  list.replaceChildren();
  for (const c of page.chunks) {
    const item = el("li", { class: "chunk" });
    item.append(el("p", { class: "chunk-meta" }, `#${c.index} · characters ${c.start}–${c.end}`));
    item.append(el("p", { class: "chunk-text" }, c.text));
    list.append(item);
  }
}

let actions = null;

// Cancel or Retry: the answer moves the page at once; the events that follow move the bars.
async function act(button) {
  const result = actions.querySelector(".action-result");
  button.disabled = true;
  try {
    const before = store.get(id).state;
    const doc = store.putView(await postJSON(`/api/documents/${id}/${button.dataset.action}`));
    draw(doc);
    result.textContent = button.dataset.action === "cancel" ? "cancelled" : "retrying";
    if (doc.state !== before) announce(`${doc.filename}: ${doc.state}`);
  } catch (err) {
    result.textContent = err.message;
  } finally {
    button.disabled = false;
  }
}

function draw(doc) {
  if (!box) { box = buildStages(doc); stagesBox.append(box); }
  if (!actions) {
    actions = buildActions(doc);
    document.getElementById("actions").append(actions);
    actions.addEventListener("click", (e) => {
      const button = e.target.closest("button[data-action]");
      if (button) act(button);
    });
  }
  document.getElementById("doc-state").textContent = doc.state;
  updateActions(actions, doc);
  updateStages(box, doc);
  loadChunks(doc).catch(() => { chunksLoaded = false; });
}

async function load() {
  const view = await getJSON(`/api/documents/${id}`);
  const doc = store.putRecord(view.document);
  for (const s of view.stages) store.putStage(id, s);
  draw(doc);
  return view;
}

function onEvent(ev) {
  if (ev.document_id !== id) return;
  const before = store.get(id).state;
  historyLine(ev.ts, "event", eventText(ev));
  const doc = store.putEvent(ev);
  if (!doc) return;
  draw(doc);
  if (doc.state !== before && ["done", "failed", "cancelled"].includes(doc.state)) {
    announce(`${doc.filename}: ${doc.state}${doc.error ? `: ${doc.error}` : ""}`);
  }
}

function onJobs(jobs) {
  for (const job of jobs) {
    if (job.document_id !== id) continue;
    const doc = store.putStage(id, job);
    if (doc) draw(doc);
  }
}

const live = new Live(
  { onEvent, onJobs, onResync: () => load().catch(() => {}), onStatus: showStatus, onSignedOut: signedOut },
  { since: 0 }, // replay what the server's history still holds, then live events
);
wireSignout(live);
store.ensure(id, { filename: "" });
showStatus("connecting");
load().then(loadJobs).catch(() => {});
live.start();
setInterval(() => {
  const doc = store.get(id);
  if (doc && STAGES.some((s) => doc.stages[s].state === "running")) updateStages(box, doc);
}, 1000);
