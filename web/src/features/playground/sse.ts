/**
 * A streaming Server-Sent Events parser (the WHATWG event-stream grammar, the part the gateway
 * uses): feed it the raw bytes as they arrive, get back complete events.
 *
 * - bytes are decoded with one `TextDecoder` in `{stream: true}` mode, so a multi-byte UTF-8
 *   character split across two network chunks is not mangled into U+FFFD;
 * - lines end with `\n`, `\r\n` or `\r`, and may be split anywhere across chunks (a trailing `\r`
 *   waits for the next chunk to see whether a `\n` follows);
 * - `data:` lines accumulate (joined with `\n`), a blank line dispatches the event, comments
 *   (`:`) and unknown fields are ignored.
 */
export interface SseEvent {
  /** The `event:` field, `"message"` when absent. */
  event: string;
  data: string;
  id?: string;
}

export class SseParser {
  private readonly decoder = new TextDecoder("utf-8");
  private buffer = "";
  private data: string[] = [];
  private event = "";
  private id: string | undefined;

  /** Feeds one chunk of bytes (or already-decoded text); returns the events it completed. */
  push(chunk: Uint8Array | string): SseEvent[] {
    this.buffer += typeof chunk === "string" ? chunk : this.decoder.decode(chunk, { stream: true });
    return this.drain(false);
  }

  /** The stream ended: flushes the decoder and dispatches a last event left without a blank line. */
  end(): SseEvent[] {
    this.buffer += this.decoder.decode();
    const out = this.drain(true);
    if (this.buffer) {
      this.line(this.buffer, out);
      this.buffer = "";
    }
    this.dispatch(out);
    return out;
  }

  private drain(final: boolean): SseEvent[] {
    const out: SseEvent[] = [];
    let start = 0;
    for (let i = 0; i < this.buffer.length; i++) {
      const c = this.buffer.charCodeAt(i);
      if (c !== 10 && c !== 13) continue;
      if (c === 13 && i === this.buffer.length - 1 && !final) break; // maybe \r\n split: wait
      this.line(this.buffer.slice(start, i), out);
      if (c === 13 && this.buffer.charCodeAt(i + 1) === 10) i++;
      start = i + 1;
    }
    this.buffer = this.buffer.slice(start);
    return out;
  }

  private line(line: string, out: SseEvent[]) {
    if (line === "") {
      this.dispatch(out);
      return;
    }
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.data.push(value);
    else if (field === "event") this.event = value;
    else if (field === "id") this.id = value;
  }

  private dispatch(out: SseEvent[]) {
    if (this.data.length > 0) {
      out.push({ event: this.event || "message", data: this.data.join("\n"), ...(this.id !== undefined ? { id: this.id } : {}) });
    }
    this.data = [];
    this.event = "";
  }
}
