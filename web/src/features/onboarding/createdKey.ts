/**
 * The secret of the key created in the checklist, kept in this module's memory only (never in
 * storage) so the snippets still show it after visiting another console page. A reload forgets
 * it, and the snippets fall back to `$SWITCHYARD_API_KEY`.
 */
import { useSyncExternalStore } from "react";

export interface CreatedKey {
  id: string;
  name: string;
  secret: string;
}

let current: CreatedKey | null = null;
const listeners = new Set<() => void>();

export function rememberCreatedKey(k: CreatedKey | null) {
  current = k;
  for (const l of listeners) l();
}

export function useCreatedKey(): CreatedKey | null {
  return useSyncExternalStore(
    (l) => {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    () => current,
    () => current,
  );
}
