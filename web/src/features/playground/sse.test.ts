import { afterEach, describe, expect, it, vi } from "vitest";
import { SseParser } from "./sse";
import { GatewayError, describeGatewayError, streamChat } from "./gateway";

const enc = new TextEncoder();

describe("SseParser", () => {
  it("joins lines split mid-line across chunks", () => {
    const p = new SseParser();
    expect(p.push(enc.encode('data: {"a"'))).toEqual([]);
    expect(p.push(enc.encode(':1}\n'))).toEqual([]);
    expect(p.push(enc.encode("\ndata: two\n\n"))).toEqual([
      { event: "message", data: '{"a":1}' },
      { event: "message", data: "two" },
    ]);
  });

  it("keeps a multi-byte UTF-8 character split across chunks intact", () => {
    const bytes = enc.encode("data: héllo 👋 wörld\n\n");
    const p = new SseParser();
    const out = [];
    // one byte at a time: every multi-byte character is cut
    for (const b of bytes) out.push(...p.push(new Uint8Array([b])));
    expect(out).toEqual([{ event: "message", data: "héllo 👋 wörld" }]);
    expect(out[0]?.data).not.toContain("\uFFFD");
  });

  it("handles CRLF split between chunks, comments, multi-line data and [DONE]", () => {
    const p = new SseParser();
    const out = [
      ...p.push(": keep-alive\r"),
      ...p.push("\ndata: line1\r"),
      ...p.push("\ndata: line2\r\n\r\n"),
      ...p.push("data: [DONE]\n\n"),
    ];
    expect(out).toEqual([
      { event: "message", data: "line1\nline2" },
      { event: "message", data: "[DONE]" },
    ]);
  });

  it("reads named error events and flushes a last event without a blank line at the end", () => {
    const p = new SseParser();
    expect(p.push('event: error\ndata: {"error":{"message":"boom"}}\n\n')).toEqual([
      { event: "error", data: '{"error":{"message":"boom"}}' },
    ]);
    expect(p.push("data: tail")).toEqual([]);
    expect(p.end()).toEqual([{ event: "message", data: "tail" }]);
  });
});

function sseResponse(chunks: string[], headers: Record<string, string> = {}, status = 200) {
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      for (const c of chunks) controller.enqueue(enc.encode(c));
      controller.close();
    },
  });
  return new Response(body, { status, headers: { "content-type": "text/event-stream", ...headers } });
}

describe("streamChat", () => {
  afterEach(() => vi.unstubAllGlobals());

  it("streams deltas, reads the usage chunk and the served-by headers", async () => {
    const fetchMock = vi.fn(async () =>
      sseResponse(
        [
          'data: {"choices":[{"delta":{"content":"Hel"}}]}\n\n',
          'data: {"choices":[{"delta":{"content":"lo"},"finish_reason":"stop"}]}\n\ndata: {"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}\n\n',
          "data: [DONE]\n\n",
        ],
        { "x-switchyard-request-id": "r1", "x-switchyard-deployment": "d1", "x-switchyard-provider": "mock" },
      ),
    );
    vi.stubGlobal("fetch", fetchMock);
    const deltas: string[] = [];
    const res = await streamChat("http://gw/v1/", "sk-1", { model: "echo", messages: [{ role: "user", content: "Hello" }] }, { onDelta: (d) => deltas.push(d) });
    expect(deltas).toEqual(["Hel", "lo"]);
    expect(res.text).toBe("Hello");
    expect(res.usage?.total_tokens).toBe(5);
    expect(res.servedBy).toMatchObject({ requestId: "r1", deployment: "d1", provider: "mock" });
    expect(res.ttftMs).not.toBeNull();
    const [url, init] = fetchMock.mock.calls[0] as unknown as [string, RequestInit];
    expect(url).toBe("http://gw/v1/chat/completions");
    expect(JSON.parse(init.body as string)).toMatchObject({ stream: true, stream_options: { include_usage: true } });
    expect((init.headers as Record<string, string>).authorization).toBe("Bearer sk-1");
  });

  it("turns an error event mid-stream into a GatewayError", async () => {
    vi.stubGlobal("fetch", async () =>
      sseResponse(['data: {"choices":[{"delta":{"content":"a"}}]}\n\n', 'data: {"error":{"message":"The upstream provider ended the stream","type":"api_error","code":"stream_truncated"}}\n\n']),
    );
    await expect(streamChat("/v1", "k", { model: "m", messages: [] })).rejects.toMatchObject({ name: "GatewayError", code: "stream_truncated" });
  });

  it("reads OpenAI's error shape from a refusal", async () => {
    vi.stubGlobal("fetch", async () =>
      Response.json({ error: { message: "Organization suspended", type: "billing_error", code: "organization_suspended" } }, { status: 402 }),
    );
    const err = await streamChat("/v1", "k", { model: "m", messages: [] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GatewayError);
    expect(describeGatewayError(err).title).toBe("Your organization is suspended");
  });
});
