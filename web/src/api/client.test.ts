import { describe, expect, it, vi, beforeEach } from "vitest";
import { http, HttpResponse } from "msw";
import { server, apiUrl } from "@/test/msw";
import { api } from "./client";
import { ApiError } from "./errors";
import { clearSession, getSession, onSessionExpired, setTokens } from "@/auth/session";

const tenant = { id: "00000000-0000-7000-8000-000000000001", name: "Acme", created_at: "2026-12-01T00:00:00Z" };
const pair = (token: string) => ({ access_token: token, refresh_token: "", token_type: "Bearer", expires_in: 900, tenant, role: "owner" as const });

describe("the API client", () => {
  beforeEach(() => {
    clearSession();
    document.cookie = "switchyard_csrf=csrf-123; path=/";
  });

  it("refreshes once through the cookie on a 401 and retries with the new token", async () => {
    setTokens(pair("old"));
    const seen: string[] = [];
    let refreshes = 0;
    server.use(
      http.get(apiUrl("/api/v1/keys"), ({ request }) => {
        const auth = request.headers.get("authorization") ?? "";
        seen.push(auth);
        return auth === "Bearer new"
          ? HttpResponse.json({ data: [], next_cursor: null })
          : HttpResponse.json({ error: { code: "unauthorized", message: "expired" } }, { status: 401 });
      }),
      http.post(apiUrl("/api/v1/auth/refresh"), ({ request }) => {
        refreshes += 1;
        expect(request.headers.get("x-switchyard-csrf")).toBe("csrf-123");
        expect(request.headers.get("x-switchyard-session")).toBe("cookie");
        return HttpResponse.json(pair("new"));
      }),
    );
    // Two concurrent calls share one refresh (a refresh token works once).
    const [a, b] = await Promise.all([api.GET("/api/v1/keys"), api.GET("/api/v1/keys")]);
    expect(a.data).toBeDefined();
    expect(b.data).toBeDefined();
    expect(refreshes).toBe(1);
    expect(seen.filter((s) => s === "Bearer old")).toHaveLength(2);
    expect(getSession().accessToken).toBe("new");
  });

  it("ends the session once when the refresh fails", async () => {
    setTokens(pair("old"));
    const expired = vi.fn();
    onSessionExpired(expired);
    server.use(
      http.get(apiUrl("/api/v1/me"), () => HttpResponse.json({ error: { code: "unauthorized", message: "expired" } }, { status: 401 })),
      http.post(apiUrl("/api/v1/auth/refresh"), () =>
        HttpResponse.json({ error: { code: "unauthorized", message: "invalid or expired refresh token" } }, { status: 401 }),
      ),
    );
    await expect(api.GET("/api/v1/me")).rejects.toBeInstanceOf(ApiError);
    expect(expired).toHaveBeenCalledTimes(1);
    expect(getSession().accessToken).toBeNull();
  });

  it("turns a validation error into field errors", async () => {
    setTokens(pair("t"));
    server.use(
      http.post(apiUrl("/api/v1/keys"), () =>
        HttpResponse.json({ error: { code: "validation_failed", message: "name: must not be empty" } }, { status: 400 }),
      ),
    );
    const err = await api.POST("/api/v1/keys", { body: { name: "" } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).status).toBe(400);
    expect((err as ApiError).fieldErrors).toEqual({ name: "must not be empty" });
  });
});
