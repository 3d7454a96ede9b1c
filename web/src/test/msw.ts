import { http, HttpResponse } from "msw";
import { setupServer } from "msw/node";

/** Absolute URL for an API path (jsdom's origin), for MSW handlers. */
export const apiUrl = (path: string) => new URL(path, window.location.origin).toString();

/**
 * One MSW server for every component test; each test adds its handlers with `server.use(...)`.
 * Always answered: `GET /api/v1/meta` (no published gateway URL: same origin).
 */
export const server = setupServer(
  http.get(apiUrl("/api/v1/meta"), () =>
    HttpResponse.json({ version: "test", gateway_base_url: null, billing_enabled: false, embedded_gateway: true }),
  ),
);
