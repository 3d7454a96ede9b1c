/**
 * Time ranges shared by the usage page and the request log. The URL keeps a preset (`24h`) or a
 * custom pair of UTC ISO timestamps; the page resolves it against an "anchor" instant taken
 * once (on load, on a filter change, on refresh) so query keys stay stable while paging.
 * Everything here is UTC: local time appears only when a value is rendered.
 */
import { z } from "zod";

export const PRESETS = ["1h", "24h", "7d", "30d"] as const;
export type Preset = (typeof PRESETS)[number];
export const RANGES = [...PRESETS, "custom"] as const;
export type RangeKey = (typeof RANGES)[number];

export const PRESET_MS: Record<Preset, number> = {
  "1h": 3_600_000,
  "24h": 86_400_000,
  "7d": 7 * 86_400_000,
  "30d": 30 * 86_400_000,
};

export const PRESET_LABEL: Record<RangeKey, string> = {
  "1h": "Last hour",
  "24h": "Last 24 hours",
  "7d": "Last 7 days",
  "30d": "Last 30 days",
  custom: "Custom",
};

/** An RFC 3339 timestamp (what the API takes); anything else is dropped from the URL. */
export const isoInstant = z
  .string()
  .refine((s) => /^\d{4}-\d{2}-\d{2}T/.test(s) && !Number.isNaN(Date.parse(s)), "not a timestamp");

/** The range part of a page's search params. */
export const rangeSearch = {
  range: z.enum(RANGES).optional().catch(undefined),
  from: isoInstant.optional().catch(undefined),
  to: isoInstant.optional().catch(undefined),
};

export interface RangeParams {
  range?: RangeKey | undefined;
  from?: string | undefined;
  to?: string | undefined;
}

export interface ResolvedRange {
  /** RFC 3339 UTC start (inclusive). */
  from: string;
  /** RFC 3339 UTC end (exclusive). */
  to: string;
  /** False for a preset: the end is "now" and moves on refresh. */
  fixed: boolean;
}

/** The effective range of the search params at `anchor` (epoch ms); an incomplete custom range falls back to 24 h. */
export function resolveRange(p: RangeParams, anchor: number, fallback: Preset = "24h"): ResolvedRange {
  if (p.range === "custom" && p.from && p.to && Date.parse(p.from) < Date.parse(p.to)) {
    return { from: new Date(p.from).toISOString(), to: new Date(p.to).toISOString(), fixed: true };
  }
  const preset: Preset = p.range && p.range !== "custom" ? p.range : fallback;
  return { from: new Date(anchor - PRESET_MS[preset]).toISOString(), to: new Date(anchor).toISOString(), fixed: false };
}

export type Interval = "minute" | "hour" | "day";
export const INTERVAL_MS: Record<Interval, number> = { minute: 60_000, hour: 3_600_000, day: 86_400_000 };

/**
 * The API's grain for a range: minutes up to 6 hours (only while the range is inside the last
 * 48 hours: older minute rollups are gone), hours up to 14 days, days beyond — at most a few
 * hundred points, well under the API's 1500.
 */
export function chooseInterval(from: string, to: string, now: number): Interval {
  const start = Date.parse(from);
  const span = Date.parse(to) - start;
  if (span <= 6 * 3_600_000 && start >= now - 48 * 3_600_000) return "minute";
  if (span <= 14 * 86_400_000) return "hour";
  return "day";
}

/** `datetime-local` value (viewer's local time) → UTC ISO; null when empty or invalid. */
export function localInputToIso(value: string): string | null {
  if (!value) return null;
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? null : d.toISOString();
}

/** UTC ISO → `datetime-local` value in the viewer's time zone. */
export function isoToLocalInput(iso: string | undefined): string {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** The viewer's IANA time zone, for the "times shown in …" note. */
export function viewerTimeZone(): string {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";
}
