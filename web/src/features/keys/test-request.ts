/**
 * Test-only: Node's `Request` (which jsdom tests use) refuses the relative URLs the console
 * uses (`/api/v1/...`, resolved against the page in a browser). Import this first in a component
 * test, before anything loads `src/api/client.ts` (openapi-fetch reads `globalThis.Request` when
 * the client is created), so relative URLs resolve against jsdom's origin as in a browser.
 * (The shared test setup could do this once for every test.)
 */
const NativeRequest = globalThis.Request;

class RelativeRequest extends NativeRequest {
  constructor(input: RequestInfo | URL, init?: RequestInit) {
    super(typeof input === "string" && input.startsWith("/") ? new URL(input, window.location.origin) : input, init);
  }
}

if (NativeRequest.name !== "RelativeRequest") {
  globalThis.Request = RelativeRequest as typeof Request;
}
