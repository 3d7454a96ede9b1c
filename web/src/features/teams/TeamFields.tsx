import { Controller, type UseFormReturn } from "react-hook-form";
import { Field } from "@/components/ui/field";
import { Input } from "@/components/ui/input";
import { RegionPolicyField } from "./RegionPolicyField";
import { TEAM_REGION_HELP, type TeamForm } from "./schemas";

/** The team's editable settings, shared by the create dialog and the team page. */
export function TeamFields({ form, disabled = false }: { form: UseFormReturn<TeamForm>; disabled?: boolean }) {
  const errors = form.formState.errors;
  return (
    <div className="space-y-4">
      <Field label="Name" error={errors.name?.message} description="Unique within the organization.">
        <Input autoComplete="off" disabled={disabled} {...form.register("name")} />
      </Field>
      <div className="grid gap-4 sm:grid-cols-2">
        <Field label="Requests per minute" error={errors.rpm_limit?.message} description="Over all the team's keys together. Empty: no limit.">
          <Input inputMode="numeric" placeholder="No limit" disabled={disabled} {...form.register("rpm_limit")} />
        </Field>
        <Field label="Tokens per minute" error={errors.tpm_limit?.message} description="Over all the team's keys together. Empty: no limit.">
          <Input inputMode="numeric" placeholder="No limit" disabled={disabled} {...form.register("tpm_limit")} />
        </Field>
      </div>
      <Controller
        control={form.control}
        name="allowed_regions"
        render={({ field, fieldState }) => (
          <RegionPolicyField
            label="Allowed regions"
            description={TEAM_REGION_HELP}
            value={field.value}
            onChange={field.onChange}
            disabled={disabled}
            error={fieldState.error?.message ?? (fieldState.error as { root?: { message?: string } } | undefined)?.root?.message}
          />
        )}
      />
    </div>
  );
}
