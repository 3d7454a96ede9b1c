import type { QueryClient } from "@tanstack/react-query";
import { api } from "@/api/client";
import { clearSession, setTokens } from "./session";

/** Signs in (cookie mode: the refresh token becomes an HttpOnly cookie). */
export async function login(email: string, password: string, organizationId?: string) {
  const { data } = await api.POST("/api/v1/auth/login", {
    body: { email, password, ...(organizationId ? { organization_id: organizationId } : {}) },
  });
  if (data) setTokens(data);
}

export async function signup(email: string, password: string, organization: string) {
  const { data } = await api.POST("/api/v1/auth/signup", { body: { email, password, organization } });
  if (data) setTokens(data);
}

/** Opens a session in another organization of the user and drops every cached answer. */
export async function switchOrganization(tenantId: string, queryClient: QueryClient) {
  const { data } = await api.POST("/api/v1/auth/switch", { body: { tenant_id: tenantId } });
  if (data) {
    queryClient.clear();
    setTokens(data);
  }
}

/** Ends the session on the server (its access tokens stop working at once) and here. */
export async function logout(queryClient: QueryClient) {
  try {
    // In cookie mode the server reads the refresh cookie (the body names no token).
    await api.POST("/api/v1/auth/logout", { body: {} });
  } catch {
    // Already expired or the server is unreachable: the local session still ends.
  }
  clearSession();
  queryClient.clear();
}
