/**
 * The browser session. The access token (a 15-minute JWT) lives only in this module's memory;
 * the refresh token is an HttpOnly, SameSite=Strict cookie scoped to `/api/v1/auth` that
 * scripts cannot read. Refreshing echoes the readable `switchyard_csrf` cookie in the
 * `x-switchyard-csrf` header (double submit), so another site cannot refresh on our behalf.
 * Nothing is ever written to localStorage or sessionStorage.
 */
import type { components } from "@/api/schema";

export type Role = components["schemas"]["Role"];
export type TokenResponse = components["schemas"]["TokenResponse"];

export interface SessionState {
  accessToken: string | null;
  expiresAt: number;
  tenant: { id: string; name: string } | null;
  role: Role | null;
}

const EMPTY: SessionState = { accessToken: null, expiresAt: 0, tenant: null, role: null };
let state: SessionState = EMPTY;
const listeners = new Set<() => void>();

export const COOKIE_SESSION_HEADER = { "x-switchyard-session": "cookie" } as const;

export function getSession(): SessionState {
  return state;
}

export function subscribe(listener: () => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

function set(next: SessionState) {
  state = next;
  for (const l of listeners) l();
}

/** Stores the tokens of a login, signup, switch, refresh or accepted invitation. */
export function setTokens(t: { access_token: string; expires_in: number; tenant: { id: string; name: string }; role: Role }) {
  set({
    accessToken: t.access_token,
    expiresAt: Date.now() + t.expires_in * 1000,
    tenant: { id: t.tenant.id, name: t.tenant.name },
    role: t.role,
  });
}

export function clearSession() {
  set(EMPTY);
}

export function csrfToken(): string | null {
  const m = /(?:^|;\s*)switchyard_csrf=([^;]+)/.exec(document.cookie);
  return m?.[1] ? decodeURIComponent(m[1]) : null;
}

let inflight: Promise<boolean> | null = null;

/**
 * Trades the refresh cookie for a new access token. Concurrent callers in this tab share one
 * request, and tabs take turns (a refresh token works once: two parallel refreshes would look
 * like token theft to the server).
 * Resolves false when there is no session to restore.
 */
export function refreshSession(): Promise<boolean> {
  inflight ??= withRefreshLock(async () => {
    try {
      // Read inside the lock: another tab may just have rotated the cookies.
      const csrf = csrfToken();
      if (!csrf) return false;
      const res = await fetch("/api/v1/auth/refresh", {
        method: "POST",
        credentials: "same-origin",
        headers: { "content-type": "application/json", "x-switchyard-csrf": csrf, ...COOKIE_SESSION_HEADER },
        body: "{}",
      });
      if (!res.ok) {
        clearSession();
        return false;
      }
      setTokens((await res.json()) as TokenResponse);
      return true;
    } catch {
      return false;
    } finally {
      inflight = null;
    }
  });
  return inflight;
}

/**
 * Runs `refresh` while holding a lock shared by every tab of this origin (Web Locks). Tabs share
 * the refresh cookie, and it works once: two tabs refreshing at the same moment would present
 * the same cookie twice, which the server takes for theft (it ends every session). With the
 * lock the second tab refreshes after the first, with the cookie the first one received.
 */
async function withRefreshLock(refresh: () => Promise<boolean>): Promise<boolean> {
  const locks = globalThis.navigator?.locks;
  return locks ? await locks.request("switchyard-session-refresh", refresh) : refresh();
}

let restored: Promise<boolean> | null = null;

/** On page load: restores the session from the refresh cookie once. */
export function restoreSession(): Promise<boolean> {
  if (state.accessToken) return Promise.resolve(true);
  restored ??= refreshSession().finally(() => {
    restored = null;
  });
  return restored;
}

let expiredHandler: (() => void) | null = null;

/** Called once when a refresh fails mid-session; the router sends the user to the login page. */
export function onSessionExpired(handler: () => void) {
  expiredHandler = handler;
}

export function sessionExpired() {
  clearSession();
  expiredHandler?.();
}
