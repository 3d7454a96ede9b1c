import { z } from "zod";

/** An optional whole-number limit typed as text: "" means "no limit" (sent as null). */
export const optionalLimit = z
  .string()
  .trim()
  .regex(/^\d*$/, "Use a whole number, or leave empty for no limit")
  .refine((v) => v === "" || Number(v) <= Number.MAX_SAFE_INTEGER, "That number is too large");

export function limitToApi(v: string): number | null {
  const t = v.trim();
  return t === "" ? null : Number(t);
}

export function limitToForm(v: number | null | undefined): string {
  return v == null ? "" : String(v);
}

export const teamSchema = z.object({
  name: z.string().trim().min(1, "Name the team").max(100, "At most 100 characters"),
  rpm_limit: optionalLimit,
  tpm_limit: optionalLimit,
  allowed_regions: z.array(z.string()),
});
export type TeamForm = z.infer<typeof teamSchema>;

export const TEAM_REGION_HELP =
  "Requests from this team's keys only go to deployments in these regions (on top of the organization's policy). " +
  "An entry matches a region exactly or as a prefix: eu allows eu-west-1. Leave empty for no team policy.";
