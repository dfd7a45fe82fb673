// The ondata HTTP API as the playground uses it: JSON calls, SSE chat streams, uploads with
// progress, and errors turned into messages a person can act on.

const KEY_STORAGE = "ondata.apiKey";

/** The API key kept in this browser (localStorage), or "". */
export function getApiKey() {
  try { return localStorage.getItem(KEY_STORAGE) || ""; } catch { return ""; }
}

/** Keep (or, with "", forget) the API key in this browser. */
export function setApiKey(key) {
  if (key) localStorage.setItem(KEY_STORAGE, key);
  else localStorage.removeItem(KEY_STORAGE);
}

/** An error the server answered (OpenAI shape) or a failure to reach it (status 0). */
export class ApiError extends Error {
  constructor(status, { message, type = null, code = null, param = null } = {}, retryAfter = null) {
    super(message || `HTTP ${status}`);
    this.name = "ApiError";
    this.status = status;
    this.type = type;
    this.code = code;
    this.param = param;
    this.retryAfter = retryAfter;
  }

  /** The endpoint does not exist on this server (an older or smaller deployment). */
  get missingRoute() {
    return (this.status === 404 && (this.code === "not_found" || !this.code)) || this.status === 405;
  }
}

function headers(extra = {}) {
  const key = getApiKey();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

async function errorFrom(response) {
  let detail = {};
  try {
    const body = await response.json();
    detail = body && typeof body.error === "object" ? body.error : { message: JSON.stringify(body) };
  } catch {
    detail = { message: response.statusText || `HTTP ${response.status}` };
  }
  return new ApiError(response.status, detail, response.headers.get("Retry-After"));
}

async function send(method, path, { json, signal } = {}) {
  const init = { method, signal, headers: headers(json === undefined ? {} : { "Content-Type": "application/json" }) };
  if (json !== undefined) init.body = JSON.stringify(json);
  try {
    return await fetch(path, init);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, { message: "Could not reach the ondata server.", code: "network_error" });
  }
}

/** One JSON call; resolves to the parsed body (null for 204), rejects with ApiError. */
export async function api(method, path, options = {}) {
  const response = await send(method, path, options);
  if (!response.ok) throw await errorFrom(response);
  if (response.status === 204) return null;
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

/** Fetch a document's original (sending the API key) and hand it to the browser as a download. */
export async function downloadDocument(index, docId, filename) {
  const path = `/v1/indexes/${encodeURIComponent(index)}/documents/${encodeURIComponent(docId)}/content`;
  const response = await send("GET", path);
  if (!response.ok) throw await errorFrom(response);
  const url = URL.createObjectURL(await response.blob());
  const link = document.createElement("a");
  link.href = url;
  link.download = filename || docId;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/** The events of one Server-Sent Events body, as parsed `data:` payloads (not "[DONE]"). */
export async function* sseData(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    buffer += decoder.decode(value || new Uint8Array(), { stream: !done });
    const events = buffer.split(/\r?\n\r?\n/);
    buffer = done ? "" : events.pop();
    for (const event of events) {
      const data = event.split(/\r?\n/).filter((l) => l.startsWith("data:"))
        .map((l) => l.slice(5).replace(/^ /, "")).join("\n");
      if (data && data !== "[DONE]") yield JSON.parse(data);
    }
    if (done) return;
  }
}

/**
 * Stream a chat completion. Calls `onStart({id, conversationId, messageId})` once, then
 * `onContext(context)` for the OYD context and `onDelta(text)` per content piece.
 */
export async function streamChat(body, { signal, onStart, onContext, onDelta }) {
  const response = await send("POST", "/v1/chat/completions", { json: { ...body, stream: true }, signal });
  if (!response.ok) throw await errorFrom(response);
  let started = false;
  for await (const chunk of sseData(response.body)) {
    if (chunk.error) throw new ApiError(502, chunk.error);
    if (!started) {
      started = true;
      onStart?.({
        id: chunk.id,
        conversationId: response.headers.get("x-ondata-conversation-id"),
        messageId: response.headers.get("x-ondata-message-id") || chunk.id,
      });
    }
    const delta = chunk.choices?.[0]?.delta;
    if (delta?.context) onContext?.(delta.context);
    if (delta?.content) onDelta?.(delta.content);
  }
}

/**
 * Upload files as multipart (`files`, plus string form fields) with byte progress;
 * resolves to the JSON body (202 {job_id}).
 */
export function uploadFiles(path, files, fields, onProgress) {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    for (const file of files) form.append("files", file, file.name);
    for (const [name, value] of Object.entries(fields)) if (value) form.append(name, value);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    const key = getApiKey();
    if (key) xhr.setRequestHeader("Authorization", `Bearer ${key}`);
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress?.(e.loaded / e.total); };
    xhr.onerror = () => reject(new ApiError(0, { message: "Could not reach the ondata server.", code: "network_error" }));
    xhr.onload = () => {
      let body = null;
      try { body = xhr.responseText ? JSON.parse(xhr.responseText) : null; } catch { body = null; }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else reject(new ApiError(xhr.status, body?.error || { message: xhr.statusText || `HTTP ${xhr.status}` }, xhr.getResponseHeader("Retry-After")));
    };
    xhr.send(form);
  });
}

/** A title and a sentence saying what to do, for any error the API can answer. */
export function describeError(err) {
  if (!(err instanceof ApiError)) return { title: "Something went wrong", detail: String(err?.message || err) };
  const said = /[.!?)]$/.test(err.message.trim()) ? err.message.trim() : `${err.message.trim()}.`;
  switch (err.status) {
    case 0: return { title: "The server cannot be reached", detail: "Check that `ondata serve` is running, then try again." };
    case 401: return { title: "Authentication failed", detail: `${said} Enter a valid API key with the “API key” button.`, action: "key" };
    case 403: return { title: "Not allowed", detail: `${said} Your API key's role or index scope does not permit this.`, action: "key" };
    case 413: return { title: "Too large", detail: said };
    case 415: return { title: "Unsupported file type", detail: said };
    case 429: return { title: "Rate limited", detail: `${said}${err.retryAfter ? ` Try again in ${err.retryAfter} s.` : ""}` };
    case 502: return { title: "The chat model failed", detail: `The upstream model is down or returned an error: ${said}` };
    case 503: return { title: "Service unavailable", detail: said };
    case 504: return { title: "The chat model timed out", detail: `The upstream model did not answer in time: ${said}` };
    default:
      if (err.code === "index_not_found") return { title: "Index not found", detail: `${said} Create it or pick another index on the Data page.` };
      return { title: err.status >= 500 ? "Server error" : "Request refused", detail: said };
  }
}
