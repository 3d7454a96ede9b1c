/**
 * The OpenAI-compatible base URL clients use (`…/v1`): this console's own origin (the zero-setup
 * default serves the gateway on the same port). Replaced by `GET /api/v1/meta`'s
 * `gateway_base_url` once that endpoint is in the spec.
 */
export function useGatewayBaseUrl(): string {
  return `${window.location.origin}/v1`;
}
