import { z } from "zod";
import type { Schemas } from "@/api/client";
import { limitToApi, limitToForm, optionalLimit } from "@/features/teams/schemas";

type Org = Schemas["OrganizationDetails"];

export const settingsSchema = z.object({
  name: z.string().trim().min(1, "Name your organization").max(100, "At most 100 characters"),
  allowed_regions: z.array(z.string()),
  rpm_limit: optionalLimit,
  tpm_limit: optionalLimit,
  alert_webhook_url: z
    .string()
    .trim()
    .refine((v) => v === "" || /^https?:\/\/[^\s]+$/i.test(v), "Use an http:// or https:// URL, or leave empty for none")
    .refine((v) => {
      if (v === "") return true;
      try {
        new URL(v);
        return true;
      } catch {
        return false;
      }
    }, "This is not a valid URL"),
  store_payloads: z.boolean(),
  usage_retention_days: z
    .string()
    .trim()
    .regex(/^\d*$/, "Use a whole number of days, or leave empty for the server default")
    .refine((v) => v === "" || (Number(v) >= 1 && Number(v) <= 3650), "Between 1 and 3650 days"),
});
export type SettingsForm = z.infer<typeof settingsSchema>;

export function settingsToForm(o: Org): SettingsForm {
  return {
    name: o.name,
    allowed_regions: o.allowed_regions ?? [],
    rpm_limit: limitToForm(o.rpm_limit),
    tpm_limit: limitToForm(o.tpm_limit),
    alert_webhook_url: o.alert_webhook_url ?? "",
    store_payloads: o.store_payloads,
    usage_retention_days: limitToForm(o.usage_retention_days),
  };
}

/** Only the changed fields (left-out fields stay as they are; null clears one). */
export function settingsPatch(o: Org, v: SettingsForm): Schemas["UpdateOrganizationRequest"] {
  const patch: Schemas["UpdateOrganizationRequest"] = {};
  if (v.name.trim() !== o.name) patch.name = v.name.trim();
  const regions = o.allowed_regions ?? [];
  if (regions.length !== v.allowed_regions.length || regions.some((r, i) => r !== v.allowed_regions[i])) {
    patch.allowed_regions = v.allowed_regions.length > 0 ? v.allowed_regions : null;
  }
  const rpm = limitToApi(v.rpm_limit);
  if (rpm !== (o.rpm_limit ?? null)) patch.rpm_limit = rpm;
  const tpm = limitToApi(v.tpm_limit);
  if (tpm !== (o.tpm_limit ?? null)) patch.tpm_limit = tpm;
  const url = v.alert_webhook_url.trim() || null;
  if (url !== (o.alert_webhook_url ?? null)) patch.alert_webhook_url = url;
  if (v.store_payloads !== o.store_payloads) patch.store_payloads = v.store_payloads;
  const days = limitToApi(v.usage_retention_days);
  if (days !== (o.usage_retention_days ?? null)) patch.usage_retention_days = days;
  return patch;
}
