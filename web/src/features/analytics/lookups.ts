import { useMemo } from "react";
import { $api } from "@/api/client";

/**
 * Names for the ids the analytics and the request log carry (teams, keys, deployments), from
 * one list query each — never one request per row. A list the caller may not read just leaves
 * the ids as they are.
 */
export function useLookups() {
  const teams = $api.useQuery("get", "/api/v1/teams", {}, { staleTime: 60_000, retry: false });
  const keys = $api.useQuery("get", "/api/v1/keys", {}, { staleTime: 60_000, retry: false });
  const models = $api.useQuery("get", "/api/v1/models", {}, { staleTime: 60_000, retry: false });
  const providers = $api.useQuery("get", "/api/v1/providers", {}, { staleTime: 60_000, retry: false });
  return useMemo(() => {
    const teamName = new Map((teams.data?.data ?? []).map((t) => [t.id, t.name]));
    const keyName = new Map((keys.data?.data ?? []).map((k) => [k.id, k.name]));
    const deploymentName = new Map((models.data?.data ?? []).map((m) => [m.id, m.name]));
    const modelNames = [...new Set((models.data?.data ?? []).map((m) => m.name))].sort();
    const providerKinds = [...new Set((providers.data?.data ?? []).map((p) => p.kind))].sort();
    return {
      teams: teams.data?.data ?? [],
      keys: keys.data?.data ?? [],
      modelNames,
      providerKinds,
      teamName: (id: string | null | undefined) => (id ? (teamName.get(id) ?? shortId(id)) : "—"),
      keyName: (id: string | null | undefined) => (id ? (keyName.get(id) ?? shortId(id)) : "—"),
      deploymentName: (id: string | null | undefined) => (id ? (deploymentName.get(id) ?? shortId(id)) : "—"),
    };
  }, [teams.data, keys.data, models.data, providers.data]);
}

export type Lookups = ReturnType<typeof useLookups>;

/** The first block of a UUID: enough to tell rows apart, short enough for a cell. */
export function shortId(id: string): string {
  return id.length > 8 ? `${id.slice(0, 8)}…` : id;
}
