/**
 * Import first in a component test that renders API calls. The console's client uses a relative
 * base URL (same origin); jsdom's tests run on Node's `Request`, which refuses relative URLs, so
 * resolve them against the page's origin (as a browser does) before `@/api/client` captures it.
 */
const NodeRequest = globalThis.Request;
class PageRequest extends NodeRequest {
  constructor(input: RequestInfo | URL, init?: RequestInit) {
    super(typeof input === "string" && input.startsWith("/") ? new URL(input, window.location.origin) : input, init);
  }
}
globalThis.Request = PageRequest as typeof Request;
