// The REST API as the pages use it: the session cookie, a 401 sends the browser to sign in, and
// any other refusal is an Error carrying the server's own message.

import { signedOut } from "./ui.js";

export async function errorMessage(resp) {
  try {
    const body = await resp.json();
    return body.error.message;
  } catch {
    return `${resp.status} ${resp.statusText}`;
  }
}

// A POST of the page's own (cancel, retry): the answer's JSON, or an Error with the server's
// message (409: the document cannot be cancelled or retried in its state).
export async function postJSON(url) {
  const resp = await fetch(url, { method: "POST", credentials: "same-origin" });
  if (resp.status === 401) signedOut();
  if (!resp.ok) throw new Error(await errorMessage(resp));
  return resp.json();
}

export async function getJSON(url) {
  const resp = await fetch(url, { credentials: "same-origin" });
  if (resp.status === 401) signedOut();
  if (!resp.ok) throw new Error(await errorMessage(resp));
  return resp.json();
}
