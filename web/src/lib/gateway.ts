/**
 * The OpenAI-compatible base URL clients use (`…/v1`): the server's published gateway URL
 * (`GET /api/v1/meta` → `gateway_base_url`, from `SWITCHYARD_PUBLIC_GATEWAY_URL`) when it has one,
 * otherwise this console's own origin (the zero-setup default serves the gateway on the same port).
 */
import { $api } from "@/api/client";

export function gatewayBaseUrl(published: string | null | undefined): string {
  const base = published ?? globalThis.location?.origin ?? "";
  return `${base.replace(/\/+$/, "")}/v1`;
}

export function useGatewayBaseUrl(): string {
  const { data } = $api.useQuery("get", "/api/v1/meta", {}, { staleTime: Infinity });
  return gatewayBaseUrl(data?.gateway_base_url);
}
