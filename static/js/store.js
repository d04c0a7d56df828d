// The documents the page knows, keyed by document id, and the rules that merge news into them:
// an event or a record never moves a stage backwards unless its attempt is higher.

export const STAGES = ["parse", "chunk", "embed"];
const TERMINAL = new Set(["done", "failed"]);
const ENDED = new Set(["done", "failed", "cancelled"]); // a document's states that end it
const RANK = { pending: 0, queued: 1, running: 2, retrying: 2, done: 3, failed: 3 };

function emptyStage(stage) {
  return {
    stage, state: "pending", progress: 0, attempt: 0, jobId: null,
    startedAt: null, finishedAt: null, error: null, samples: [],
  };
}

export function newDocument(id, fields = {}) {
  const doc = { id, filename: "", state: "queued", createdAt: null, error: null,
    chunkCount: null, vectorDim: null, stages: {}, events: [] };
  for (const s of STAGES) doc.stages[s] = emptyStage(s);
  return Object.assign(doc, fields);
}

// Whether an update (attempt, state, progress) may replace what the stage shows now.
function newer(cur, attempt, state, progress) {
  if (attempt !== cur.attempt) return attempt > cur.attempt;
  if (TERMINAL.has(cur.state)) return false;
  if (RANK[state] !== RANK[cur.state]) return RANK[state] > RANK[cur.state];
  return progress >= cur.progress;
}

function time(value) {
  return value ? Date.parse(value) : null;
}

function sample(stage, now) {
  if (stage.state !== "running") { stage.samples = []; return; }
  stage.samples.push([now, stage.progress]);
  if (stage.samples.length > 20) stage.samples.shift();
}

export function docState(doc) {
  const states = STAGES.map((s) => doc.stages[s].state);
  const failed = STAGES.find((s) => doc.stages[s].state === "failed");
  if (failed) return doc.stages[failed].error === "cancelled" ? "cancelled" : "failed";
  if (states[2] === "done") return "done";
  if (states.some((s) => s === "running" || s === "retrying" || s === "done")) return "running";
  if (states.includes("queued")) return "queued"; // a retried stage waits for a worker
  return ENDED.has(doc.state) ? doc.state : "queued";
}

export class Store {
  constructor() {
    this.docs = new Map();
  }

  get(id) {
    return this.docs.get(id);
  }

  ensure(id, fields) {
    let doc = this.docs.get(id);
    if (!doc) {
      doc = newDocument(id, fields);
      this.docs.set(id, doc);
    } else if (fields) {
      for (const [k, v] of Object.entries(fields)) if (v !== undefined && v !== null) doc[k] = v;
    }
    return doc;
  }

  // A document record from GET /api/documents.
  putRecord(rec) {
    const doc = this.ensure(rec.document_id, {
      filename: rec.filename, createdAt: rec.created_at, chunkCount: rec.chunk_count,
      vectorDim: rec.vector_dim,
    });
    doc.error = rec.error || (ENDED.has(rec.state) ? doc.error : null);
    if (ENDED.has(rec.state) || doc.state === "queued") doc.state = rec.state;
    return doc;
  }

  // A document as GET /api/documents/{id} (and cancel, retry) answers: its record and stages.
  putView(view) {
    const doc = this.putRecord(view.document);
    for (const s of view.stages) this.putStage(doc.id, s);
    return doc;
  }

  // A stage from GET /api/documents/{id}, or a job from GET /api/jobs (polling).
  putStage(docId, v) {
    const doc = this.docs.get(docId);
    if (!doc) return null;
    const stage = doc.stages[v.stage];
    const attempt = v.attempt || (v.state === "pending" ? 0 : 1);
    if (!newer(stage, attempt, v.state, v.progress)) return null;
    Object.assign(stage, {
      state: v.state, progress: v.state === "done" ? 100 : v.progress, attempt,
      jobId: v.job_id ?? stage.jobId, startedAt: time(v.started_at) ?? stage.startedAt,
      finishedAt: time(v.finished_at), error: v.error || null,
    });
    sample(stage, Date.now());
    doc.state = docState(doc);
    return doc;
  }

  // A job event from /ws; returns the document when it changed, else null.
  putEvent(ev) {
    const doc = this.docs.get(ev.document_id);
    if (!doc) return null;
    doc.events.push(ev);
    if (doc.events.length > 500) doc.events.shift();
    const stage = doc.stages[ev.type];
    const phase = ev.event.slice(ev.type.length + 1);
    const state = { started: "running", progress: "running", done: "done", failed: "failed" }[phase];
    const progress = phase === "done" ? 100 : ev.progress;
    const attempt = ev.attempt || 1;
    if (!newer(stage, attempt, state, progress)) return null;
    const at = time(ev.ts);
    if (attempt !== stage.attempt) { stage.startedAt = null; stage.finishedAt = null; stage.error = null; }
    Object.assign(stage, { state, progress, attempt, jobId: ev.job_id });
    if (phase === "started" || stage.startedAt === null) stage.startedAt = stage.startedAt ?? at;
    if (TERMINAL.has(state)) stage.finishedAt = at;
    if (phase === "failed") stage.error = ev.error || "failed";
    sample(stage, Date.now());
    doc.state = docState(doc);
    if (phase === "failed") doc.error = stage.error;
    return doc;
  }
}

// Seconds a stage has taken (so far, while it runs), or null.
export function duration(stage, now = Date.now()) {
  if (stage.startedAt === null) return null;
  const end = stage.finishedAt ?? (TERMINAL.has(stage.state) ? null : now);
  return end === null ? null : Math.max(0, (end - stage.startedAt) / 1000);
}

// Seconds left at the progress rate seen so far, or null when it cannot be told.
export function eta(stage) {
  const s = stage.samples;
  if (stage.state !== "running" || s.length < 2) return null;
  const [t0, p0] = s[0];
  const [t1, p1] = s[s.length - 1];
  if (p1 <= p0 || t1 <= t0) return null;
  return ((100 - p1) * (t1 - t0)) / (p1 - p0) / 1000;
}
