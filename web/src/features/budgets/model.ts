import { z } from "zod";
import type { Schemas } from "@/api/client";

export type Budget = Schemas["BudgetDto"];
export type Team = Schemas["TeamDto"];
export type ApiKey = Schemas["KeyDto"];

export const SCOPES = ["tenant", "team", "key"] as const;
export const PERIODS = ["daily", "weekly", "monthly", "lifetime"] as const;
export type Scope = (typeof SCOPES)[number];
export type Period = (typeof PERIODS)[number];

export const SCOPE_LABEL: Record<Scope, string> = { tenant: "Organization", team: "Team", key: "API key" };
export const PERIOD_LABEL: Record<Period, string> = { daily: "Daily", weekly: "Weekly", monthly: "Monthly", lifetime: "Lifetime" };

export const MAX_THRESHOLDS = 10;
export const MAX_THRESHOLD_PERCENT = 1000;

/** A decimal USD string from the API ("3.25") → integer micro-dollars, for meters and comparisons. */
export function usdToMicros(usd: string | null | undefined): number {
  if (!usd) return 0;
  const n = Number(usd);
  return Number.isFinite(n) ? Math.round(n * 1_000_000) : 0;
}

/** "50, 80 100" → [50, 80, 100]; null when a part is not a whole number. */
export function parseThresholds(text: string): number[] | null {
  const parts = text.split(/[\s,;%]+/).filter(Boolean);
  const out: number[] = [];
  for (const p of parts) {
    if (!/^\d+$/.test(p)) return null;
    out.push(Number(p));
  }
  return [...new Set(out)].sort((a, b) => a - b);
}

export function formatThresholds(values: readonly number[]): string {
  return values.join(", ");
}

/** What the budget caps, in words: "Organization", "Team search", "API key backend". */
export function scopeName(b: Pick<Budget, "scope" | "scope_id">, teams: readonly Team[], keys: readonly ApiKey[]): string {
  if (b.scope === "tenant") return "Whole organization";
  if (b.scope === "team") return teams.find((t) => t.id === b.scope_id)?.name ?? `Team ${b.scope_id.slice(0, 8)}`;
  if (b.scope === "key") return keys.find((k) => k.id === b.scope_id)?.name ?? `Key ${b.scope_id.slice(0, 8)}`;
  return b.scope;
}

export function scopeKind(scope: string): string {
  return (SCOPE_LABEL as Record<string, string>)[scope] ?? scope;
}

export function periodLabel(period: string): string {
  return (PERIOD_LABEL as Record<string, string>)[period] ?? period;
}

/** The browser's IANA time zone (the default for new budgets), or UTC. */
export function browserTimeZone(): string {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  } catch {
    return "UTC";
  }
}

export function timeZones(): string[] {
  try {
    return ["UTC", ...Intl.supportedValuesOf("timeZone").filter((z) => z !== "UTC")];
  } catch {
    return ["UTC"];
  }
}

const amount = z
  .string()
  .trim()
  .min(1, "Enter an amount")
  .regex(/^\d+(\.\d{1,6})?$/, "Use a positive amount such as 25 or 12.50 (at most 6 decimals)")
  .refine((v) => Number(v) > 0, "Must be more than $0")
  .refine((v) => Number(v) <= 1_000_000, "At most $1,000,000");

export const budgetSchema = z
  .object({
    scope: z.enum(SCOPES),
    scope_id: z.string(),
    period: z.enum(PERIODS),
    limit_usd: amount,
    hard: z.enum(["hard", "soft"]),
    alert_thresholds: z.string().superRefine((v, ctx) => {
      const list = parseThresholds(v);
      if (list === null) {
        ctx.addIssue({ code: "custom", message: "List whole percentages separated by commas, e.g. 50, 80, 100" });
      } else if (list.length > MAX_THRESHOLDS) {
        ctx.addIssue({ code: "custom", message: `At most ${MAX_THRESHOLDS} thresholds` });
      } else if (list.some((t) => t < 1 || t > MAX_THRESHOLD_PERCENT)) {
        ctx.addIssue({ code: "custom", message: `Each threshold is a percentage from 1 to ${MAX_THRESHOLD_PERCENT}` });
      }
    }),
    timezone: z.string().trim().min(1, "Choose a time zone"),
  })
  .superRefine((v, ctx) => {
    if (v.scope !== "tenant" && !v.scope_id) {
      ctx.addIssue({ code: "custom", path: ["scope_id"], message: v.scope === "team" ? "Choose a team" : "Choose an API key" });
    }
  });
export type BudgetForm = z.infer<typeof budgetSchema>;

export function formFromBudget(b: Budget): BudgetForm {
  return {
    scope: (SCOPES as readonly string[]).includes(b.scope) ? (b.scope as Scope) : "tenant",
    scope_id: b.scope === "tenant" ? "" : b.scope_id,
    period: (PERIODS as readonly string[]).includes(b.period) ? (b.period as Period) : "monthly",
    limit_usd: b.limit_usd,
    hard: b.hard ? "hard" : "soft",
    alert_thresholds: formatThresholds(b.alert_thresholds),
    timezone: b.timezone,
  };
}

export function emptyBudgetForm(): BudgetForm {
  return { scope: "tenant", scope_id: "", period: "monthly", limit_usd: "", hard: "hard", alert_thresholds: "50, 80, 100", timezone: "UTC" };
}

/** Rate limit inputs: empty = no limit. */
export function limitSchema(max: number) {
  return z
    .string()
    .trim()
    .refine((v) => v === "" || /^\d+$/.test(v), "A whole number, or empty for no limit")
    .refine((v) => v === "" || Number(v) >= 1, "At least 1 (leave empty for no limit)")
    .refine((v) => v === "" || Number(v) <= max, `At most ${max.toLocaleString("en-US")}`);
}
export const RPM_MAX = 4_294_967_295;
export const TPM_MAX = 1_000_000_000_000;
export const limitsSchema = z.object({ rpm_limit: limitSchema(RPM_MAX), tpm_limit: limitSchema(TPM_MAX) });
export type LimitsForm = z.infer<typeof limitsSchema>;
export const toLimit = (v: string): number | null => (v.trim() === "" ? null : Number(v));
