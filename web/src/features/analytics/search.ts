import { z } from "zod";
import { rangeSearch } from "./range";

export const GROUP_BYS = ["model", "provider", "team", "key", "tag"] as const;
export type GroupBy = (typeof GROUP_BYS)[number];
export const GROUP_LABEL: Record<GroupBy, string> = { model: "Model", provider: "Provider", team: "Team", key: "API key", tag: "Tag" };

const text = z.string().trim().min(1).max(200).optional().catch(undefined);

/** `/usage` search params: the range, the grouping, the filters and the breakdown's page. */
export const usageSearch = z.object({
  ...rangeSearch,
  group_by: z.enum(GROUP_BYS).optional().catch(undefined),
  /** The tag key when grouping by tag. */
  group_tag: text,
  model: text,
  provider: text,
  team_id: text,
  key_id: text,
  /** One tag, as the API takes it: `key:value`. */
  tag: text,
  page: z.coerce.number().int().min(1).optional().catch(undefined),
});
export type UsageSearch = z.infer<typeof usageSearch>;

/** Filters as the analytics endpoints take them. */
export function analyticsFilters(s: UsageSearch) {
  return { model: s.model, provider: s.provider, team_id: s.team_id, key_id: s.key_id, tag: s.tag };
}

export function hasFilters(s: UsageSearch): boolean {
  return Boolean(s.model || s.provider || s.team_id || s.key_id || s.tag);
}

/** `group_by` for the API; a tag grouping needs its key (`tag:<key>`). */
export function apiGroupBy(s: UsageSearch): string {
  const g = s.group_by ?? "model";
  if (g === "tag") return s.group_tag ? `tag:${s.group_tag}` : "model";
  return g;
}

/** `team=search`, `team:search` → `team:search`; null when it is not `key=value`. */
export function parseTagFilter(input: string): string | null {
  const m = /^\s*([^=:\s]+)\s*[=:]\s*(.+?)\s*$/.exec(input);
  return m ? `${m[1]}:${m[2]}` : null;
}

/** Drops empty values so the URL only carries what is set. */
export function compact<T extends Record<string, unknown>>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined && v !== "" && v !== null)) as T;
}
