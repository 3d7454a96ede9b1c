/**
 * The console's only `fetch` caller for the control API: one openapi-fetch client typed by the
 * generated `schema.d.ts` (from `openapi/control-plane.json`; `npm run gen:api`), and
 * `$api`, its TanStack Query binding.
 *
 * Every request carries the in-memory access token. A 401 triggers one shared silent refresh
 * (the HttpOnly refresh cookie) and one retry; when the refresh fails the session is over and
 * the router sends the user to `/login?redirect=<page>` once. Any non-2xx answer is thrown as
 * an `ApiError`.
 */
import createFetchClient, { type Middleware } from "openapi-fetch";
import createClient from "openapi-react-query";
import type { paths } from "./schema";
import { toApiError } from "./errors";
import { COOKIE_SESSION_HEADER, getSession, refreshSession, sessionExpired } from "@/auth/session";

/** Auth endpoints answer 401 for wrong credentials: never refresh-and-retry those. */
const NO_RETRY = /\/api\/v1\/(auth\/(login|signup|refresh)|meta)$/;
/** These set or rotate the session cookie: ask for cookie mode. */
const COOKIE_MODE = /\/api\/v1\/(auth\/(login|signup|switch|refresh|logout)|invitations\/[^/]+\/accept)$/;

export async function authFetch(input: Request): Promise<Response> {
  const retry = input.clone();
  const send = (req: Request) => {
    const token = getSession().accessToken;
    if (token) req.headers.set("authorization", `Bearer ${token}`);
    if (COOKIE_MODE.test(new URL(req.url).pathname)) {
      for (const [k, v] of Object.entries(COOKIE_SESSION_HEADER)) req.headers.set(k, v);
    }
    return fetch(req);
  };
  const res = await send(input);
  if (res.status !== 401 || NO_RETRY.test(new URL(input.url).pathname) || !getSession().accessToken) {
    return res;
  }
  if (await refreshSession()) return send(retry);
  sessionExpired();
  return res;
}

const throwOnError: Middleware = {
  async onResponse({ response }) {
    if (!response.ok) throw await toApiError(response);
    return undefined;
  },
};

// Same origin as the console (absolute, because `Request` outside a browser needs a base).
export const api = createFetchClient<paths>({ baseUrl: globalThis.location?.origin ?? "", fetch: authFetch });
api.use(throwOnError);

export const $api = createClient(api);

export type { paths } from "./schema";
export type Schemas = import("./schema").components["schemas"];
