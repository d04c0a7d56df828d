// Rows and stage bars, built once per document and updated in place (textContent only).

import { STAGES, duration, eta } from "./store.js";
import { el, seconds } from "./ui.js";

function stageBlock(doc, name) {
  const block = el("div", { class: "stage", "data-stage": name });
  block.append(el("span", { class: "stage-name" }, name));
  const bar = el("div", {
    class: "bar", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100",
    "aria-valuenow": "0", "aria-label": `${name} progress for ${doc.filename}`,
  });
  bar.append(el("div", { class: "fill" }));
  block.append(bar);
  const info = el("span", { class: "info" });
  info.append(el("span", { class: "state" }), el("span", { class: "time" }));
  block.append(el("span", { class: "pct" }), info, el("span", { class: "error" }));
  return block;
}

export function updateStage(block, doc, stage) {
  const bar = block.querySelector(".bar");
  bar.setAttribute("aria-valuenow", String(stage.progress));
  bar.setAttribute("aria-label", `${stage.stage} progress for ${doc.filename}`);
  bar.firstElementChild.style.width = `${stage.progress}%`; // CSSOM: allowed by the CSP
  block.dataset.state = stage.state;
  block.querySelector(".pct").textContent = `${stage.progress}%`;
  const attempt = stage.attempt > 1 ? ` (attempt ${stage.attempt})` : "";
  block.querySelector(".state").textContent = stage.state + attempt;
  const took = duration(stage);
  const left = eta(stage);
  let time = took === null ? "" : seconds(took);
  if (left !== null) time += ` · ETA ${seconds(left)}`;
  block.querySelector(".time").textContent = time;
  block.querySelector(".error").textContent = stage.state === "failed" ? stage.error || "" : "";
}

export function buildStages(doc) {
  const box = el("div", { class: "stages" });
  for (const name of STAGES) box.append(stageBlock(doc, name));
  return box;
}

export function updateStages(box, doc) {
  for (const name of STAGES) {
    updateStage(box.querySelector(`[data-stage="${name}"]`), doc, doc.stages[name]);
  }
}

// Cancel and Retry, each shown only while the document's state allows it; a click is the
// page's to handle (data-action names the route: /api/documents/{id}/cancel or /retry).
export function buildActions(doc) {
  const box = el("span", { class: "doc-actions" });
  for (const [action, label] of [["cancel", "Cancel"], ["retry", "Retry"]]) {
    box.append(el("button", {
      type: "button", class: `action action-${action}`, "data-action": action,
      "data-document-id": String(doc.id), "aria-label": `${label} ${doc.filename}`,
    }, label));
  }
  box.append(el("span", { class: "action-result", role: "status" }));
  return box;
}

export function updateActions(box, doc) {
  box.querySelector(".action-cancel").hidden = !["queued", "running"].includes(doc.state);
  box.querySelector(".action-retry").hidden = !["failed", "cancelled"].includes(doc.state);
  for (const button of box.querySelectorAll("button")) {
    const label = button.dataset.action === "cancel" ? "Cancel" : "Retry";
    button.setAttribute("aria-label", `${label} ${doc.filename}`);
  }
}

export function buildRow(doc) {
  const row = el("li", { class: "doc", "data-document-id": String(doc.id) });
  const head = el("div", { class: "doc-head" });
  const link = el("a", { class: "name", href: `/documents/${doc.id}` }, doc.filename);
  head.append(link, el("span", { class: "doc-state" }), el("span", { class: "doc-error" }));
  head.append(buildActions(doc));
  row.append(head, buildStages(doc));
  return row;
}

export function updateRow(row, doc) {
  row.dataset.state = doc.state;
  row.querySelector(".name").textContent = doc.filename;
  row.querySelector(".doc-state").textContent = doc.state;
  const shownByStage = Object.values(doc.stages).some((s) => s.state === "failed" && s.error);
  row.querySelector(".doc-error").textContent =
    doc.state === "failed" && !shownByStage ? doc.error || "" : "";
  updateActions(row.querySelector(".doc-actions"), doc);
  updateStages(row.querySelector(".stages"), doc);
}
