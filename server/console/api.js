// Calls to the ragblend API: the API key, error messages, and the /generate event stream.

import { requestKey } from "./key_dialog.js";

const KEY_STORAGE = "ragblend.apiKey";
const MAX_KEY_ATTEMPTS = 3;

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// The key lives in sessionStorage only: it is gone when the tab closes and never written elsewhere.
export function getKey() {
  return sessionStorage.getItem(KEY_STORAGE) || "";
}

export function setKey(key) {
  if (key) sessionStorage.setItem(KEY_STORAGE, key);
  else sessionStorage.removeItem(KEY_STORAGE);
  document.dispatchEvent(new CustomEvent("ragblend:key-changed"));
}

export async function errorMessage(response) {
  const text = await response.text();
  try {
    const message = JSON.parse(text).error.message;
    if (message) return String(message);
  } catch {
    // not our error shape: fall through to the status line
  }
  return `${response.status} ${response.statusText || "error"}${text ? `: ${text.slice(0, 200)}` : ""}`;
}

// fetch with the key. On 401 it asks for a key (when `prompt`) and tries again; background pollers
// pass prompt=false and get the 401 back, so a dismissed dialog does not pop up again by itself.
export async function apiFetch(path, init = {}, { prompt = true } = {}) {
  for (let attempt = 0; ; attempt += 1) {
    const headers = new Headers(init.headers || {});
    const key = getKey();
    if (key) headers.set("Authorization", `Bearer ${key}`);
    const response = await fetch(path, { ...init, headers });
    if (response.status !== 401 || !prompt || attempt >= MAX_KEY_ATTEMPTS) return response;
    const reason = await errorMessage(response);
    setKey("");
    await requestKey(`The server needs an API key: ${reason}`); // ApiError(401) on cancel
  }
}

export async function apiJson(path, init = {}, options = {}) {
  const response = await apiFetch(path, init, options);
  if (!response.ok) throw new ApiError(response.status, await errorMessage(response));
  return response.json();
}

export function postJson(path, body) {
  return apiJson(path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
}

function parseEvent(block) {
  let event = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith("event:")) event = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
  }
  return { event, data: data.length ? JSON.parse(data.join("\n")) : null };
}

// POST /generate with stream:true and hand each Server-Sent Event to `handlers` (citations, token,
// done, error) as it arrives. Resolves with the `done` payload; throws ApiError on a refused request
// or an `error` event.
export async function streamGenerate(body, handlers, signal) {
  const response = await apiFetch("/generate", {
    method: "POST",
    headers: { "content-type": "application/json", accept: "text/event-stream" },
    body: JSON.stringify({ ...body, stream: true }),
    signal,
  });
  if (!response.ok) throw new ApiError(response.status, await errorMessage(response));
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const { event, data } = parseEvent(buffer.slice(0, end));
      buffer = buffer.slice(end + 2);
      if (event === "error") throw new ApiError(500, data?.message || "the server reported an error");
      handlers[event]?.(data);
      if (event === "done") return data;
    }
  }
  throw new ApiError(0, "the answer stream ended before the answer was complete");
}
