/**
 * Test-only: jsdom has no `Request` of its own and Node's refuses the relative URLs the console
 * uses (`/api/v1/...`). Import first in a component test, before `src/api/client.ts` loads, so
 * relative URLs resolve against jsdom's origin as in a browser. (The shared test setup could do
 * this once; it is not this feature's file to edit.)
 */
const NativeRequest = globalThis.Request;

class RelativeRequest extends NativeRequest {
  constructor(input: RequestInfo | URL, init?: RequestInit) {
    super(typeof input === "string" && input.startsWith("/") ? new URL(input, window.location.origin) : input, init);
  }
}

if (globalThis.Request === NativeRequest) globalThis.Request = RelativeRequest as typeof Request;

// jsdom lays nothing out: give elements a size so the virtualized request list renders rows.
for (const [prop, value] of [["offsetHeight", 800], ["offsetWidth", 1200], ["clientHeight", 800], ["clientWidth", 1200]] as const) {
  Object.defineProperty(HTMLElement.prototype, prop, { configurable: true, get: () => value });
}
// jsdom does not implement scrolling.
Element.prototype.scrollTo = function scrollTo() {};
