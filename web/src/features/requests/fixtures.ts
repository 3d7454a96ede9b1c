/** Test data and MSW handlers typed from the generated `paths` (component tests only). */
import { http, HttpResponse } from "msw";
import { apiUrl, type Ok as Json } from "@/test/msw";

export type RequestListBody = Json<"/api/v1/requests", "get">;
export type RequestBody = Json<"/api/v1/requests/{id}", "get">;
export type Summary = RequestListBody["data"][number];

export const TEAM_ID = "0193a000-0000-7000-8000-0000000000aa";
export const KEY_ID = "0193a000-0000-7000-8000-0000000000bb";
export const DEPLOYMENT_ID = "0193a000-0000-7000-8000-0000000000cc";
export const FALLBACK_ID = "0193a000-0000-7000-8000-0000000000dd";

export function summary(n: number, over: Partial<Summary> = {}): Summary {
  return {
    id: `0193a000-0000-7000-8000-${String(n).padStart(12, "0")}`,
    started_at: new Date(Date.UTC(2026, 11, 6, 12, 0, 0) - n * 1000).toISOString(),
    model: "echo",
    upstream_model: "mock-1",
    provider: "mock",
    deployment_id: DEPLOYMENT_ID,
    key_id: KEY_ID,
    team_id: TEAM_ID,
    route: null,
    region: null,
    endpoint: "chat.completions",
    status: 200,
    outcome: "success",
    error_class: null,
    error_code: null,
    stream: false,
    cache_hit: false,
    prompt_tokens: 12,
    completion_tokens: 30,
    cache_read_tokens: 0,
    cache_write_tokens: 0,
    tokens_estimated: false,
    cost_micros: 72,
    cost_usd: "0.000072",
    latency_ms: 120 + n,
    ttft_ms: null,
    attempt_count: 1,
    tags: {},
    guardrails: [],
    ...over,
  };
}

type Teams = Json<"/api/v1/teams", "get">;
type Keys = Json<"/api/v1/keys", "get">;
type Models = Json<"/api/v1/models", "get">;
type Providers = Json<"/api/v1/providers", "get">;
/** The fields these pages read, typed against the DTO (the rest of a DTO does not matter here). */
const some = <T,>(o: Partial<T>) => o as T;

/** The lists the pages read for names (teams, keys, deployments, providers). */
export const lookupHandlers = [
  http.get(apiUrl("/api/v1/teams"), () => HttpResponse.json<Teams>({ data: [some<Teams["data"][number]>({ id: TEAM_ID, name: "Search" })] })),
  http.get(apiUrl("/api/v1/keys"), () => HttpResponse.json<Keys>({ data: [some<Keys["data"][number]>({ id: KEY_ID, name: "prod-key" })] })),
  http.get(apiUrl("/api/v1/models"), () =>
    HttpResponse.json<Models>({
      data: [some<Models["data"][number]>({ id: DEPLOYMENT_ID, name: "echo" }), some<Models["data"][number]>({ id: FALLBACK_ID, name: "echo-backup" })],
    }),
  ),
  http.get(apiUrl("/api/v1/providers"), () => HttpResponse.json<Providers>({ data: [some<Providers["data"][number]>({ id: "p1", name: "local-mock", kind: "mock" })] })),
];
