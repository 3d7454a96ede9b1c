import { useQueryClient } from "@tanstack/react-query";
import { Controller, useForm } from "react-hook-form";
import { zodResolver } from "@hookform/resolvers/zod";
import { useId, useState } from "react";
import { toast } from "sonner";
import { KeyRound, RefreshCw, ShieldAlert } from "lucide-react";
import { $api, type Schemas } from "@/api/client";
import { applyServerErrors, errorMessage } from "@/api/errors";
import { canManage, useSession } from "@/auth/useSession";
import { PageHeader } from "@/components/ui/page-header";
import { Card, CardBody, CardHeader } from "@/components/ui/card";
import { Button } from "@/components/ui/button";
import { CopyButton } from "@/components/ui/copy-button";
import { ConfirmDialog } from "@/components/ui/confirm-dialog";
import { Field, FormError } from "@/components/ui/field";
import { Input } from "@/components/ui/input";
import { Switch } from "@/components/ui/switch";
import { ErrorState, Loading } from "@/components/states";
import { formatDate } from "@/lib/format";
import { RegionPolicyField } from "@/features/teams/RegionPolicyField";
import { settingsPatch, settingsSchema, settingsToForm, type SettingsForm } from "./schemas";

type Org = Schemas["OrganizationDetails"];
export const ORGANIZATION_KEY = ["get", "/api/v1/organization"] as const;

/** A signing secret, shown once. */
function SecretReveal({ secret, onDismiss }: { secret: string; onDismiss: () => void }) {
  return (
    <div role="status" className="space-y-2 rounded-md border border-amber-200 bg-amber-50 p-3">
      <p className="flex items-center gap-2 text-sm font-medium text-amber-900">
        <KeyRound className="size-4" aria-hidden /> Your webhook signing secret — copy it now, it is not shown again.
      </p>
      <div className="flex flex-col gap-2 sm:flex-row">
        <Input readOnly value={secret} aria-label="Webhook signing secret" className="font-mono text-xs" onFocus={(e) => e.currentTarget.select()} />
        <CopyButton value={secret} label="Copy secret" className="shrink-0" />
      </div>
      <p className="text-xs text-amber-900">
        Alerts carry an <code>x-switchyard-signature</code> header: the HMAC-SHA256 of the body with this secret. Verify it in your receiver.
      </p>
      <Button variant="link" size="sm" onClick={onDismiss}>
        I saved it
      </Button>
    </div>
  );
}

function Row({ label, children }: { label: string; children: React.ReactNode }) {
  return (
    <div className="grid gap-1 py-2 sm:grid-cols-3">
      <dt className="text-sm text-slate-500">{label}</dt>
      <dd className="min-w-0 text-sm text-slate-900 sm:col-span-2">{children}</dd>
    </div>
  );
}

function SettingsFormView({ org, manage }: { org: Org; manage: boolean }) {
  const queryClient = useQueryClient();
  const storeId = useId();
  const [formError, setFormError] = useState<string | null>(null);
  const [secret, setSecret] = useState<string | null>(null);
  const form = useForm<SettingsForm>({ resolver: zodResolver(settingsSchema), values: settingsToForm(org) });
  const update = $api.useMutation("patch", "/api/v1/organization");
  const rotate = $api.useMutation("post", "/api/v1/organization/webhook-secret");
  const errors = form.formState.errors;
  const disabled = !manage;

  const onSubmit = form.handleSubmit(async (v) => {
    setFormError(null);
    const body = settingsPatch(org, v);
    if (Object.keys(body).length === 0) {
      toast.info("Nothing to save");
      return;
    }
    try {
      const next = await update.mutateAsync({ body });
      if (next.alert_webhook_secret) setSecret(next.alert_webhook_secret);
      const { alert_webhook_secret: _omit, ...stored } = next;
      void _omit;
      queryClient.setQueryData(ORGANIZATION_KEY, stored);
      // The organization switcher shows the name from `GET /me`.
      if (body.name) void queryClient.invalidateQueries({ queryKey: ["get", "/api/v1/me"] });
      form.reset(settingsToForm(stored));
      toast.success("Settings saved");
    } catch (err) {
      setFormError(applyServerErrors(form, err));
    }
  });

  const onRotate = async () => {
    try {
      const res = await rotate.mutateAsync({});
      setSecret(res.alert_webhook_secret);
      await queryClient.invalidateQueries({ queryKey: ORGANIZATION_KEY });
      toast.success("A new signing secret was generated");
    } catch (err) {
      toast.error(errorMessage(err));
      throw err;
    }
  };

  return (
    <form onSubmit={onSubmit} noValidate className="space-y-6" aria-label="Organization settings">
      <FormError message={formError} />
      <fieldset disabled={disabled} className="contents">
        <Card>
          <CardHeader title="General" description="How the organization is named in the console and in invitations." />
          <CardBody>
            <Field label="Organization name" error={errors.name?.message}>
              <Input autoComplete="organization" {...form.register("name")} />
            </Field>
          </CardBody>
        </Card>
        <Card>
          <CardHeader
            title="Region policy"
            description="Where this organization's requests may be served. It applies to every key, on top of team and route policies."
          />
          <CardBody>
            <Controller
              control={form.control}
              name="allowed_regions"
              render={({ field, fieldState }) => (
                <RegionPolicyField
                  label="Allowed regions"
                  description="Requests only go to deployments in these regions; a deployment without a region never serves them. An entry matches a region exactly or as a prefix: eu allows eu-west-1. Leave empty for no policy."
                  value={field.value}
                  onChange={field.onChange}
                  disabled={disabled}
                  error={fieldState.error?.message}
                />
              )}
            />
          </CardBody>
        </Card>

        <Card>
          <CardHeader title="Rate limits" description="Over every key of the organization together, on top of team and key limits." />
          <CardBody className="grid gap-4 sm:grid-cols-2">
            <Field label="Requests per minute" error={errors.rpm_limit?.message} description="Empty: no limit.">
              <Input inputMode="numeric" placeholder="No limit" {...form.register("rpm_limit")} />
            </Field>
            <Field label="Tokens per minute" error={errors.tpm_limit?.message} description="Empty: no limit.">
              <Input inputMode="numeric" placeholder="No limit" {...form.register("tpm_limit")} />
            </Field>
          </CardBody>
        </Card>

        <Card>
          <CardHeader title="Budget alerts" description="Budget alerts are POSTed to this URL, signed with the organization's secret." />
          <CardBody className="space-y-4">
            <Field
              label="Alert webhook URL"
              error={errors.alert_webhook_url?.message}
              description="Setting the first URL generates a signing secret, shown once. Empty: alerts are only listed in the console."
            >
              <Input type="url" inputMode="url" placeholder="https://hooks.example.com/switchyard" autoComplete="off" {...form.register("alert_webhook_url")} />
            </Field>
            {secret ? <SecretReveal secret={secret} onDismiss={() => setSecret(null)} /> : null}
            <div className="flex flex-wrap items-center justify-between gap-3 rounded-md bg-slate-50 px-3 py-2">
              <p className="text-sm text-slate-700">
                Signing secret: {org.alert_webhook_secret_set ? <span className="font-medium">set</span> : <span className="text-slate-500">none yet</span>}
              </p>
              {manage && org.alert_webhook_secret_set ? (
                <ConfirmDialog
                  trigger={
                    <Button variant="secondary" size="sm">
                      <RefreshCw aria-hidden /> Rotate secret
                    </Button>
                  }
                  title="Rotate the webhook signing secret?"
                  description="The current secret stops working at once: alerts are signed with the new one, so update your receiver right after."
                  confirmLabel="Rotate secret"
                  onConfirm={onRotate}
                />
              ) : null}
            </div>
          </CardBody>
        </Card>

        <Card>
          <CardHeader title="Data and privacy" description="What Switchyard keeps about your requests, and for how long." />
          <CardBody className="space-y-5">
            <div className="flex items-start justify-between gap-4">
              <div>
                <label htmlFor={storeId} className="text-sm font-medium text-slate-800">
                  Store prompts and answers
                </label>
                <p id={`${storeId}-desc`} className="mt-0.5 max-w-2xl text-xs text-slate-500">
                  On: each request's prompt and answer are kept with its usage, so you can inspect them in the request log. They may contain
                  personal or confidential data, and anyone in the organization who can read the request log sees them. Off (the default): only
                  counts, costs, latency and tags are kept. Only requests after a change are affected.
                </p>
              </div>
              <Controller
                control={form.control}
                name="store_payloads"
                render={({ field }) => (
                  <Switch id={storeId} aria-describedby={`${storeId}-desc`} checked={field.value} onCheckedChange={field.onChange} disabled={disabled} />
                )}
              />
            </div>
            {form.watch("store_payloads") && !org.store_payloads ? (
              <p className="flex gap-2 rounded-md border border-amber-200 bg-amber-50 px-3 py-2 text-sm text-amber-900">
                <ShieldAlert className="mt-0.5 size-4 shrink-0" aria-hidden />
                Make sure your users and your data agreements allow storing their prompts before you save this.
              </p>
            ) : null}
            <Field
              label="Usage retention (days)"
              error={errors.usage_retention_days?.message}
              description="How long raw usage rows and stored payloads are kept, 1–3650. Empty: the server default (30 days unless configured). Aggregated analytics are kept longer."
            >
              <Input inputMode="numeric" placeholder="Server default" className="max-w-40" {...form.register("usage_retention_days")} />
            </Field>
          </CardBody>
        </Card>
      </fieldset>

      {manage ? (
        <div className="sticky bottom-0 z-10 -mx-3 flex items-center justify-end gap-2 border-t border-slate-200 bg-white/95 px-3 py-3 backdrop-blur sm:mx-0 sm:rounded-lg sm:border">
          <p className="mr-auto text-sm text-slate-500" aria-live="polite">
            {form.formState.isDirty ? "You have unsaved changes." : "All changes saved."}
          </p>
          <Button variant="secondary" disabled={!form.formState.isDirty || form.formState.isSubmitting} onClick={() => form.reset(settingsToForm(org))}>
            Discard
          </Button>
          <Button type="submit" loading={form.formState.isSubmitting} disabled={!form.formState.isDirty}>
            Save changes
          </Button>
        </div>
      ) : null}
    </form>
  );
}

export function SettingsPage() {
  const { role } = useSession();
  const manage = canManage(role);
  const org = $api.useQuery("get", "/api/v1/organization");
  return (
    <>
      <PageHeader
        title="Settings"
        description={
          manage
            ? "Organization-wide policies: regions, rate limits, alerts and what is stored."
            : "Organization-wide policies. Only owners and admins can change them."
        }
      />
      {org.isPending ? (
        <Card>
          <Loading label="Loading settings" rows={6} />
        </Card>
      ) : org.isError ? (
        <Card>
          <ErrorState error={org.error} onRetry={() => void org.refetch()} title="Could not load the settings" />
        </Card>
      ) : (
        <div className="space-y-6">
          <Card>
            <CardHeader title="Organization" />
            <CardBody>
              <dl className="divide-y divide-slate-100">
                <Row label="Name">{org.data.name}</Row>
                <Row label="Organization ID">
                  <span className="flex flex-wrap items-center gap-2">
                    <code className="break-all font-mono text-xs">{org.data.id}</code>
                    <CopyButton value={org.data.id} label="Copy ID" aria-label="Copy the organization ID" />
                  </span>
                </Row>
                <Row label="Created">{formatDate(org.data.created_at)}</Row>
                <Row label="Your role">{role}</Row>
              </dl>
            </CardBody>
          </Card>
          <SettingsFormView org={org.data} manage={manage} />
        </div>
      )}
    </>
  );
}
