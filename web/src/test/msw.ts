import { http, HttpResponse, type DefaultBodyType } from "msw";
import { setupServer } from "msw/node";
import type { paths } from "@/api/client";

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

type Method = "get" | "post" | "put" | "patch" | "delete";

/** The JSON body of the success answer (200, 201 or 202) of `method` on `path`. */
export type Ok<P extends keyof paths, M extends keyof paths[P]> = paths[P][M] extends { responses: infer R }
  ? R extends { 200: { content: { "application/json": infer T } } }
    ? T
    : R extends { 201: { content: { "application/json": infer T } } }
      ? T
      : R extends { 202: { content: { "application/json": infer T } } }
        ? T
        : never
  : never;

/** An MSW handler whose answer must match the API's success type for that path and method. */
export function on<P extends keyof paths, M extends Method & keyof paths[P]>(
  method: M,
  path: P,
  answer: (info: { request: Request; params: Record<string, string | readonly string[] | undefined> }) =>
    | NoInfer<Ok<P, M>>
    | Response
    | Promise<NoInfer<Ok<P, M>> | Response>,
  status = 200,
) {
  const url = apiUrl((path as string).replace(/\{(\w+)\}/g, ":$1"));
  return http[method](url, async (info) => {
    const out = await answer(info);
    if (out instanceof Response) return out;
    return HttpResponse.json(out as DefaultBodyType, { status });
  });
}

/** An API error answer (`{"error": {...}}`). */
export function apiError(status: number, code: string, message: string) {
  return HttpResponse.json({ error: { code, message } }, { status });
}
