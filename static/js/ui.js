// What every page shares: the connection indicator, the polite announcer, and sign-out.

const LABELS = {
  connecting: "connecting…",
  live: "live",
  reconnecting: "reconnecting",
  degraded: "live (server catching up)",
  offline: "offline",
  polling: "polling",
};

export function showStatus(state, detail = "") {
  const el = document.getElementById("conn");
  el.dataset.state = state;
  const label = LABELS[state] || state;
  const next = detail ? ` (next socket attempt ${detail})` : "";
  el.textContent = state === "live" ? label : label + next;
}

export function announce(text) {
  const el = document.getElementById("announcer");
  const line = document.createElement("p");
  line.textContent = text;
  el.append(line);
  while (el.childElementCount > 5) el.firstElementChild.remove();
}

export function signedOut() {
  location.assign("/signin");
}

// Sign-out closes the socket first, then posts the form (which clears the cookie).
export function wireSignout(live) {
  const form = document.getElementById("signout");
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    live.stop();
    showStatus("offline");
    fetch("/signout", { method: "POST", credentials: "same-origin" }).finally(signedOut);
  });
}

export function el(tag, attrs = {}, text = null) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== null) node.textContent = text;
  return node;
}

export function seconds(s) {
  if (s === null || s === undefined) return "";
  if (s < 10) return `${s.toFixed(1)} s`;
  if (s < 120) return `${Math.round(s)} s`;
  return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}
