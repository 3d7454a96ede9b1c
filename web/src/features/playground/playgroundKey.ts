/**
 * The playground's temporary API key. Created through the control API on the first send
 * ("Playground (console)", chat only, expiring an hour later), kept in this module's memory only
 * (never localStorage/sessionStorage: a reload forgets it and the next send makes a new one), and
 * reused for every later send of this page session.
 */
import { api } from "@/api/client";

export const PLAYGROUND_KEY_NAME = "Playground (console)";
const TTL_MS = 60 * 60 * 1000;
/** Make a new key when the current one has less than this left. */
const MARGIN_MS = 2 * 60 * 1000;

export interface PlaygroundKey {
  id: string;
  secret: string;
  prefix: string;
  expiresAt: number;
}

let current: PlaygroundKey | null = null;
let pending: Promise<PlaygroundKey> | null = null;

export function currentPlaygroundKey(): PlaygroundKey | null {
  return current && current.expiresAt - Date.now() > MARGIN_MS ? current : null;
}

/** The key to send with; creates it on first use (concurrent callers share one creation). */
export function playgroundKey(teamId?: string): Promise<PlaygroundKey> {
  const k = currentPlaygroundKey();
  if (k) return Promise.resolve(k);
  pending ??= (async () => {
    try {
      const expires = Date.now() + TTL_MS;
      const { data } = await api.POST("/api/v1/keys", {
        body: {
          name: PLAYGROUND_KEY_NAME,
          expires_at: new Date(expires).toISOString(),
          endpoints: ["chat"],
          ...(teamId ? { team_id: teamId } : {}),
        },
      });
      if (!data) throw new Error("The key was not created");
      current = { id: data.id, secret: data.key, prefix: data.prefix, expiresAt: data.expires_at ? new Date(data.expires_at).getTime() : expires };
      return current;
    } finally {
      pending = null;
    }
  })();
  return pending;
}

/** Drops the key (the gateway refused it): the next send creates a new one. */
export function forgetPlaygroundKey() {
  current = null;
}
