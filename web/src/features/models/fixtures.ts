/** Test data for the providers, models and routes pages, typed by the API's response shapes. */
import { http, HttpResponse } from "msw";
import { apiError, apiUrl, type Ok } from "@/test/msw";

export const PROVIDER_ID = "0190a000-0000-7000-8000-000000000001";
export const MODEL_A = "0190a000-0000-7000-8000-0000000000a1";
export const MODEL_B = "0190a000-0000-7000-8000-0000000000b2";
export const ROUTE_ID = "0190a000-0000-7000-8000-0000000000c3";

export const providers: Ok<"/api/v1/providers", "get"> = {
  data: [
    {
      id: PROVIDER_ID,
      name: "openai-prod",
      kind: "openai",
      base_url: null,
      effective_base_url: "https://api.openai.com/v1",
      has_api_key: true,
      options: {},
      created_at: "2026-11-02T10:00:00Z",
    },
    {
      id: "0190a000-0000-7000-8000-000000000002",
      name: "bedrock-eu",
      kind: "bedrock",
      base_url: null,
      effective_base_url: "https://bedrock-runtime.eu-central-1.amazonaws.com",
      has_api_key: true,
      options: { region: "eu-central-1", access_key_id: "AKIAIOSFODNN7EXAMPLE" },
      created_at: "2026-11-03T10:00:00Z",
    },
  ],
};

const model = (id: string, name: string, region: string, input: number, output: number) => ({
  id,
  name,
  provider_id: PROVIDER_ID,
  upstream_model: "gpt-4o-mini",
  catalog_id: "openai/gpt-4o-mini",
  region,
  mode: "chat" as const,
  capabilities: ["tools" as const, "json_mode" as const],
  context_window: 128000,
  input_price_micros_per_mtok: input,
  output_price_micros_per_mtok: output,
  input_price_per_mtok: input / 1e6,
  output_price_per_mtok: output / 1e6,
  created_at: "2026-11-04T10:00:00Z",
});

export const models: Ok<"/api/v1/models", "get"> = {
  data: [model(MODEL_A, "mini-eu", "eu-west-1", 150_000, 600_000), model(MODEL_B, "mini-us", "us-east-1", 75_000, 2_500_000)],
};

export const routes: Ok<"/api/v1/routes", "get"> = {
  data: [
    {
      id: ROUTE_ID,
      name: "support",
      strategy: "weighted",
      sticky: false,
      candidates: [
        { model_id: MODEL_A, weight: 3, priority: null },
        { model_id: MODEL_B, weight: 1, priority: null },
      ],
      allowed_regions: ["eu", "us"],
      retry_on: null,
      max_attempts: null,
      hedge_after_ms: null,
      timeouts: { connect_ms: null, first_token_ms: null, total_ms: 60000 },
      created_at: "2026-11-05T10:00:00Z",
      updated_at: "2026-11-05T10:00:00Z",
    },
  ],
};

export const catalog: Ok<"/api/v1/catalog", "get"> = {
  as_of: "2026-11",
  data: [
    {
      id: "openai/gpt-4o-mini",
      provider: "openai",
      upstream_model: "gpt-4o-mini",
      display_name: "GPT-4o mini",
      mode: "chat",
      context_window: 128000,
      max_output_tokens: 16384,
      input_price_per_mtok: 0.15,
      output_price_per_mtok: 0.6,
      input_price_micros_per_mtok: 150000,
      output_price_micros_per_mtok: 600000,
      cached_input_price_per_mtok: 0.075,
      cached_input_price_micros_per_mtok: 75000,
      capabilities: { tools: true, json_mode: true, vision: true, streaming: true, embeddings: false },
      source: "https://openai.com/api/pricing/",
      source_kind: "builtin",
    },
    {
      id: "openai/text-embedding-3-small",
      provider: "openai",
      upstream_model: "text-embedding-3-small",
      display_name: "Text Embedding 3 Small",
      mode: "embedding",
      context_window: 8191,
      max_output_tokens: null,
      input_price_per_mtok: 0.02,
      output_price_per_mtok: 0,
      input_price_micros_per_mtok: 20000,
      output_price_micros_per_mtok: 0,
      capabilities: { embeddings: true },
      source: null,
      source_kind: "builtin",
    },
  ],
};

/** The three list endpoints (and the catalog) answering with the data above. */
export const listHandlers = [
  http.get(apiUrl("/api/v1/providers"), () => HttpResponse.json(providers)),
  http.get(apiUrl("/api/v1/models"), () => HttpResponse.json(models)),
  http.get(apiUrl("/api/v1/routes"), () => HttpResponse.json(routes)),
  http.get(apiUrl("/api/v1/catalog"), () => HttpResponse.json(catalog)),
];

/** A `400 validation_failed` as the control API sends it. */
export function validationError(message: string) {
  return apiError(400, "validation_failed", message);
}
