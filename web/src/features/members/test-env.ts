/* Import first in a test file, before anything that loads the API client. */
/**
 * The API client uses a relative base URL (same origin in the browser); Node's `Request` refuses
 * relative URLs, so tests resolve them against jsdom's origin. (Belongs in src/test/setup.ts;
 * kept here so this feature does not edit a shared file. Idempotent.)
 */
const NativeRequest = globalThis.Request;
if (!(NativeRequest as unknown as { __relative?: boolean }).__relative) {
  class RelativeRequest extends NativeRequest {
    static __relative = true;
    constructor(input: RequestInfo | URL, init?: RequestInit) {
      super(typeof input === "string" && input.startsWith("/") ? new URL(input, window.location.origin).toString() : input, init);
    }
  }
  globalThis.Request = RelativeRequest as typeof Request;
}

/** jsdom has no ResizeObserver; Radix (Switch, …) measures with it. */
if (typeof globalThis.ResizeObserver === "undefined") {
  globalThis.ResizeObserver = class {
    observe() {}
    unobserve() {}
    disconnect() {}
  } as unknown as typeof ResizeObserver;
}
