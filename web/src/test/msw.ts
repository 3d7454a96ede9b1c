import { setupServer } from "msw/node";

/** One MSW server for every component test; each test adds its handlers with `server.use(...)`. */
export const server = setupServer();

/** Absolute URL for an API path (jsdom's origin), for MSW handlers. */
export const apiUrl = (path: string) => new URL(path, window.location.origin).toString();
