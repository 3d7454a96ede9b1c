/**
 * The playground's call to the gateway (the data plane, `POST <gateway>/v1/chat/completions`).
 *
 * This is the console's second `fetch` caller, on purpose: `src/api/client.ts` speaks to the
 * control API (`/api/v1`, typed by its OpenAPI spec, authenticated by the user's session, errors
 * as `{"error": {"code", "message"}}`). The gateway is another API: it takes an API key (never
 * the session token, which it does not accept), answers in OpenAI's format (errors with
 * `type`/`code`/`param`), streams Server-Sent Events that openapi-fetch does not parse, may live on
 * another origin (`gateway_base_url`), and must never go through the session's 401 refresh logic.
 * So it gets its own small, single-purpose caller here, and nothing else in the console calls it.
 */
import { SseParser } from "./sse";

export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

export interface ChatRequest {
  model: string;
  messages: ChatMessage[];
  temperature?: number;
  max_tokens?: number;
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

/** Who served the answer, from the gateway's `x-switchyard-*` response headers. */
export interface ServedBy {
  requestId: string | null;
  deployment: string | null;
  provider: string | null;
  region: string | null;
  route: string | null;
  attempts: string | null;
}

export interface StreamResult {
  text: string;
  usage: Usage | null;
  finishReason: string | null;
  servedBy: ServedBy;
  /** Milliseconds from sending to the first content token (browser clock). */
  ttftMs: number | null;
  /** Milliseconds from sending to the end of the stream. */
  totalMs: number;
  /** Stopped by the user before the stream ended. */
  aborted: boolean;
}

/** A refusal of the gateway (OpenAI's error shape), before or during the stream. */
export class GatewayError extends Error {
  readonly status: number;
  readonly code: string | null;
  readonly type: string | null;
  readonly requestId: string | null;
  constructor(status: number, detail: { message?: string; code?: string | null; type?: string | null }, requestId: string | null) {
    super(detail.message || `The gateway answered ${status}`);
    this.name = "GatewayError";
    this.status = status;
    this.code = detail.code ?? null;
    this.type = detail.type ?? null;
    this.requestId = requestId;
  }
}

export interface StreamCallbacks {
  /** The response headers arrived (the request was accepted). */
  onStart?: (servedBy: ServedBy) => void;
  /** A piece of the answer; `text` is everything so far. */
  onDelta?: (delta: string, text: string) => void;
  onUsage?: (usage: Usage) => void;
}

function servedBy(h: Headers): ServedBy {
  return {
    requestId: h.get("x-switchyard-request-id"),
    deployment: h.get("x-switchyard-deployment"),
    provider: h.get("x-switchyard-provider"),
    region: h.get("x-switchyard-region"),
    route: h.get("x-switchyard-route"),
    attempts: h.get("x-switchyard-attempts"),
  };
}

function errorDetail(body: unknown): { message?: string; code?: string | null; type?: string | null } | null {
  if (body && typeof body === "object" && "error" in body) {
    const e = (body as { error: unknown }).error;
    if (e && typeof e === "object") return e as { message?: string; code?: string | null; type?: string | null };
    if (typeof e === "string") return { message: e };
  }
  return null;
}

async function refusal(res: Response): Promise<GatewayError> {
  const requestId = res.headers.get("x-switchyard-request-id");
  let detail: ReturnType<typeof errorDetail> = null;
  try {
    detail = errorDetail(await res.json());
  } catch {
    // not JSON (a proxy's HTML page, say)
  }
  return new GatewayError(res.status, detail ?? { message: `The gateway answered ${res.status} ${res.statusText}`.trim() }, requestId);
}

/**
 * Sends a streaming chat completion and reads it to the end (or until `signal` aborts, which
 * resolves with `aborted: true` and what arrived so far). Rejects with `GatewayError` when the
 * gateway refuses the request or sends an error event mid-stream.
 */
export async function streamChat(
  baseUrl: string,
  apiKey: string,
  request: ChatRequest,
  { signal, ...cb }: StreamCallbacks & { signal?: AbortSignal } = {},
): Promise<StreamResult> {
  const started = performance.now();
  const res = await fetch(`${baseUrl.replace(/\/+$/, "")}/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json", accept: "text/event-stream" },
    body: JSON.stringify({ ...request, stream: true, stream_options: { include_usage: true } }),
    credentials: "omit",
    ...(signal ? { signal } : {}),
  });
  if (!res.ok) throw await refusal(res);
  const by = servedBy(res.headers);
  cb.onStart?.(by);
  const result: StreamResult = { text: "", usage: null, finishReason: null, servedBy: by, ttftMs: null, totalMs: 0, aborted: false };
  if (!res.body) {
    result.totalMs = performance.now() - started;
    return result;
  }
  const parser = new SseParser();
  const reader = res.body.getReader();
  let done = false;
  const handle = (data: string) => {
    if (data === "[DONE]") {
      done = true;
      return;
    }
    let chunk: unknown;
    try {
      chunk = JSON.parse(data);
    } catch {
      return; // a keep-alive or something we do not understand: skip it
    }
    const err = errorDetail(chunk);
    if (err) throw new GatewayError(res.status, err, by.requestId);
    const c = chunk as { choices?: { delta?: { content?: string | null }; finish_reason?: string | null }[]; usage?: Usage | null };
    for (const choice of c.choices ?? []) {
      const delta = choice.delta?.content;
      if (delta) {
        if (result.ttftMs === null) result.ttftMs = performance.now() - started;
        result.text += delta;
        cb.onDelta?.(delta, result.text);
      }
      if (choice.finish_reason) result.finishReason = choice.finish_reason;
    }
    if (c.usage) {
      result.usage = c.usage;
      cb.onUsage?.(c.usage);
    }
  };
  try {
    while (!done) {
      const { value, done: eof } = await reader.read();
      const events = eof ? parser.end() : parser.push(value);
      for (const ev of events) {
        if (ev.event === "error") {
          let detail: ReturnType<typeof errorDetail> = null;
          try {
            detail = errorDetail(JSON.parse(ev.data));
          } catch {
            detail = { message: ev.data };
          }
          throw new GatewayError(res.status, detail ?? { message: ev.data }, by.requestId);
        }
        handle(ev.data);
        if (done) break;
      }
      if (eof) break;
    }
  } catch (err) {
    if (signal?.aborted) {
      result.aborted = true;
    } else {
      throw err;
    }
  } finally {
    reader.cancel().catch(() => undefined);
  }
  result.totalMs = performance.now() - started;
  return result;
}

/** A gateway refusal in words a person can act on. */
export function describeGatewayError(err: unknown): { title: string; detail: string } {
  if (err instanceof GatewayError) {
    const detail = err.message;
    if (err.code === "organization_suspended" || err.status === 402) {
      return { title: "Your organization is suspended", detail: `${detail} Settle the bill on the Billing page to send requests again.` };
    }
    if (err.status === 429) return { title: "Rate limited", detail: `${detail} Wait a moment and send again.` };
    if (err.status === 404) return { title: "Model not found", detail };
    if (err.status === 401) {
      return { title: "The playground key was refused", detail: `${detail} (Revoked or expired?) Send again: a new temporary key is created.` };
    }
    if (err.status === 403) return { title: "Not allowed", detail };
    if (err.status >= 500) return { title: "The provider failed", detail };
    return { title: `The gateway refused the request (${err.status})`, detail };
  }
  if (err instanceof TypeError) {
    return { title: "Could not reach the gateway", detail: "The network request failed. Is the gateway running, and does it allow this origin (CORS)?" };
  }
  return { title: "Something went wrong", detail: err instanceof Error ? err.message : String(err) };
}
