/**
 * The SafeWork HTTP API as the chat page uses it: JSON calls and streamed completions.
 *
 * Every call carries `Authorization: Bearer <key>` (none when the key is empty: an open
 * server). Failures become one of two errors the page can put into words:
 * - `ApiError`: the server answered with an error (its `error.message` and HTTP status,
 *   401 for a refused key), before a stream or as an error event inside one;
 * - `ConnectionLost`: no answer at all, or a stream that ended before `data: [DONE]`.
 * A cancelled request rejects with the browser's own `AbortError` (see `isAbort`).
 *
 * Streams are read with fetch + ReadableStream + TextDecoder rather than EventSource,
 * which can neither POST nor send headers.
 */

export class ApiError extends Error {
  constructor(message, status, code = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
  }
}

export class ConnectionLost extends Error {
  constructor(message) {
    super(message);
    this.name = "ConnectionLost";
  }
}

const UNREACHABLE = "Could not reach the server. Is it running?";
const CUT_OFF = "Connection lost — the answer may be incomplete.";

export function isAbort(error) {
  return error?.name === "AbortError";
}

/** Words for any error a call can end with: the server's message, else a short summary. */
export function describe(error) {
  if (error instanceof ApiError || error instanceof ConnectionLost) return error.message;
  return `Something went wrong: ${error.message}`;
}

export class Api {
  constructor(key) {
    this.key = key;
  }

  models() {
    return this.json("GET", "/v1/models");
  }

  memories(limit = 20) {
    return this.json("GET", `/v1/memory?limit=${limit}`);
  }

  /** Store `text` as a standing preference: it guides every later answer of this key. */
  prefer(text) {
    return this.json("POST", "/v1/memory", { kind: "preference", text });
  }

  deleteMemory(id) {
    return this.json("DELETE", `/v1/memory/${encodeURIComponent(id)}`);
  }

  /** POST `body` to `path` as a stream and call `onChunk` with each JSON event until `[DONE]`. */
  async stream(path, body, onChunk, signal) {
    const response = await this.request("POST", path, { ...body, stream: true }, signal);
    for await (const data of sseData(response.body)) {
      if (data === "[DONE]") return;
      const event = JSON.parse(data);
      if (event.error) throw new ApiError(event.error.message, response.status, event.error.code);
      onChunk(event);
    }
    throw new ConnectionLost(CUT_OFF);
  }

  async json(method, path, body) {
    const response = await this.request(method, path, body);
    const text = await response.text();
    return text ? JSON.parse(text) : null;
  }

  async request(method, path, body, signal) {
    const init = { method, headers: this.headers(body !== undefined), signal };
    if (body !== undefined) init.body = JSON.stringify(body);
    let response;
    try {
      response = await fetch(path, init);
    } catch (error) {
      if (isAbort(error)) throw error;
      throw new ConnectionLost(UNREACHABLE);
    }
    if (!response.ok) throw await errorFrom(response);
    return response;
  }

  headers(hasBody) {
    const headers = {};
    if (this.key) headers.Authorization = `Bearer ${this.key}`;
    if (hasBody) headers["Content-Type"] = "application/json";
    return headers;
  }
}

/** The `ApiError` an error response describes (its JSON `error.message`, else its status). */
async function errorFrom(response) {
  const fallback = `The server answered ${response.status} ${response.statusText}`.trim();
  try {
    const { error } = await response.json();
    return new ApiError(error?.message || fallback, response.status, error?.code ?? null);
  } catch {
    return new ApiError(fallback, response.status);
  }
}

/** The `data:` payload of each Server-Sent Event in `body`, as text, in order. */
async function* sseData(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await readOrLose(reader);
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      const blocks = buffer.split(/\r\n\r\n|\n\n|\r\r/);
      buffer = blocks.pop();
      for (const block of blocks) {
        const data = dataOf(block);
        if (data !== null) yield data;
      }
    }
  } finally {
    reader.cancel().catch(() => {}); // frees the connection when we stop early
  }
}

async function readOrLose(reader) {
  try {
    return await reader.read();
  } catch (error) {
    if (isAbort(error)) throw error;
    throw new ConnectionLost(CUT_OFF);
  }
}

/** The joined `data:` lines of one event block; `null` for a block without data (a comment). */
function dataOf(block) {
  const lines = block.split(/\r\n|\r|\n/).filter((line) => line.startsWith("data:"));
  if (!lines.length) return null;
  return lines.map((line) => line.slice(5).replace(/^ /, "")).join("\n");
}
