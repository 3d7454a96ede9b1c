import { useSyncExternalStore } from "react";
import { getSession, subscribe } from "./session";

export function useSession() {
  return useSyncExternalStore(subscribe, getSession, getSession);
}

/** Owners and admins manage the organization; members use it; viewers read. */
export function canManage(role: string | null | undefined): boolean {
  return role === "owner" || role === "admin";
}
export function canWrite(role: string | null | undefined): boolean {
  return role === "owner" || role === "admin" || role === "member";
}
