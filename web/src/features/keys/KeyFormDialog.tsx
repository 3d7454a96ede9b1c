import { useState } from "react";
import { useForm } from "react-hook-form";
import { zodResolver } from "@hookform/resolvers/zod";
import { useQueryClient } from "@tanstack/react-query";
import { toast } from "sonner";
import { $api, type Schemas } from "@/api/client";
import { applyServerErrors } from "@/api/errors";
import { useSession } from "@/auth/useSession";
import { Dialog } from "@/components/ui/dialog";
import { Field, FormError } from "@/components/ui/field";
import { Input, NativeSelect, Textarea } from "@/components/ui/input";
import { Button } from "@/components/ui/button";
import { SecretReveal } from "./SecretReveal";
import {
  ENDPOINTS, emptyKeyForm, keyFormSchemaFor, keyToForm, toCreateBody, toUpdateBody, type KeyForm,
} from "./schema";
import { TeamOptions } from "@/features/teams/TeamOptions";

type KeyDto = Schemas["KeyDto"];

/** The message of a field error, or of the first nested one (`allowed_cidrs[1]: …` from the server). */
export function messageOf(err: unknown): string | undefined {
  if (!err || typeof err !== "object") return undefined;
  if ("message" in err && typeof err.message === "string") return err.message;
  for (const [k, v] of Object.entries(err)) {
    if (k === "ref" || k === "types") continue;
    const m = messageOf(v);
    if (m) return m;
  }
  return undefined;
}

interface Props {
  open: boolean;
  onOpenChange: (open: boolean) => void;
  /** Edit this key; create a new one when absent. */
  editing?: KeyDto | null;
}

/** Create (then show the secret once) or edit a key's scopes and limits. */
export function KeyFormDialog({ open, onOpenChange, editing }: Props) {
  const [secret, setSecret] = useState<string | null>(null);
  const close = (o: boolean) => {
    onOpenChange(o);
    if (!o) setSecret(null);
  };
  return (
    <Dialog
      open={open}
      onOpenChange={close}
      size="lg"
      title={secret ? "Key created" : editing ? `Edit “${editing.name}”` : "Create an API key"}
      description={secret ? undefined : editing ? "Scopes and limits apply to new requests at once." : "Clients send the key as a bearer token to the gateway."}
      footer={secret ? <Button onClick={() => close(false)}>I have saved it</Button> : undefined}
    >
      {secret ? (
        <SecretReveal secret={secret} />
      ) : open ? (
        <KeyFormBody key={editing?.id ?? "new"} editing={editing ?? null} onDone={(s) => (s ? setSecret(s) : close(false))} onCancel={() => close(false)} />
      ) : null}
    </Dialog>
  );
}

function KeyFormBody({ editing, onDone, onCancel }: { editing: KeyDto | null; onDone: (secret: string | null) => void; onCancel: () => void }) {
  const { role } = useSession();
  const queryClient = useQueryClient();
  const teams = $api.useQuery("get", "/api/v1/teams");
  const models = $api.useQuery("get", "/api/v1/models");
  const routes = $api.useQuery("get", "/api/v1/routes");
  const defaults = editing ? keyToForm(editing) : emptyKeyForm;
  const form = useForm<KeyForm>({ resolver: zodResolver(keyFormSchemaFor(defaults.expires_at)), defaultValues: defaults });
  const [formError, setFormError] = useState<string | null>(null);
  const create = $api.useMutation("post", "/api/v1/keys");
  const update = $api.useMutation("patch", "/api/v1/keys/{id}");
  const errors = form.formState.errors;
  const isMember = role === "member";

  // Model names clients may send: deployments (one name may have several) and routes.
  const names = [...new Set([...(models.data?.data ?? []).map((m) => m.name), ...(routes.data?.data ?? []).map((r) => r.name), ...defaults.models])].sort();

  const onSubmit = form.handleSubmit(async (v) => {
    setFormError(null);
    if (!editing && isMember && !v.team_id) {
      form.setError("team_id", { message: "Members create keys for one of their teams" });
      return;
    }
    try {
      if (editing) {
        await update.mutateAsync({ params: { path: { id: editing.id } }, body: toUpdateBody(v) });
        toast.success(`Saved “${v.name}”`);
        onDone(null);
      } else {
        const created = await create.mutateAsync({ body: toCreateBody(v) });
        toast.success(`Created “${created.name}”`);
        onDone(created.key);
      }
      await queryClient.invalidateQueries({ queryKey: ["get", "/api/v1/keys"] });
    } catch (err) {
      setFormError(applyServerErrors(form, err));
    }
  });

  return (
    <form onSubmit={onSubmit} noValidate className="space-y-4" aria-label={editing ? "Edit key" : "Create key"}>
      <FormError message={formError} />
      <Field label="Name" error={messageOf(errors.name)}>
        <Input autoFocus placeholder="search backend" {...form.register("name")} />
      </Field>
      {editing ? null : (
        <Field
          label="Team"
          error={messageOf(errors.team_id)}
          description={isMember ? "Required: the team's budgets and limits apply to the key." : "Optional: the team's budgets and limits apply to the key."}
        >
          <NativeSelect {...form.register("team_id")} disabled={teams.isLoading}>
            <option value="">{isMember ? "Choose a team…" : "No team"}</option>
            <TeamOptions teams={teams.data?.data} />
          </NativeSelect>
        </Field>
      )}
      <fieldset className="space-y-1.5">
        <legend className="text-sm font-medium text-slate-800">Models</legend>
        <p className="text-xs text-slate-500">Leave all unchecked to allow every model and route of the organization.</p>
        {names.length === 0 ? (
          <p className="text-sm text-slate-500">{models.isLoading ? "Loading models…" : "No models yet: the key will allow every model you add."}</p>
        ) : (
          <div className="grid max-h-40 grid-cols-1 gap-1 overflow-y-auto rounded-md border border-slate-200 p-2 sm:grid-cols-2">
            {names.map((n) => (
              <label key={n} className="flex items-center gap-2 text-sm">
                <input type="checkbox" value={n} className="size-4 accent-brand-600" {...form.register("models")} />
                <span className="truncate font-mono text-xs">{n}</span>
              </label>
            ))}
          </div>
        )}
        {messageOf(errors.models) ? <p role="alert" className="text-xs font-medium text-red-600">{messageOf(errors.models)}</p> : null}
      </fieldset>
      <fieldset className="space-y-1.5">
        <legend className="text-sm font-medium text-slate-800">Endpoints</legend>
        <p className="text-xs text-slate-500">Leave all unchecked to allow every API (GET /v1/models is always allowed).</p>
        <div className="flex flex-wrap gap-x-5 gap-y-1">
          {ENDPOINTS.map((e) => (
            <label key={e.value} className="flex items-center gap-2 text-sm">
              <input type="checkbox" value={e.value} className="size-4 accent-brand-600" {...form.register("endpoints")} />
              {e.label} <span className="font-mono text-xs text-slate-500">{e.hint}</span>
            </label>
          ))}
        </div>
        {messageOf(errors.endpoints) ? <p role="alert" className="text-xs font-medium text-red-600">{messageOf(errors.endpoints)}</p> : null}
      </fieldset>
      <div className="grid grid-cols-1 gap-4 sm:grid-cols-3">
        <Field label="Requests / minute" error={messageOf(errors.rpm_limit)}>
          <Input inputMode="numeric" placeholder="No limit" {...form.register("rpm_limit")} />
        </Field>
        <Field label="Tokens / minute" error={messageOf(errors.tpm_limit)}>
          <Input inputMode="numeric" placeholder="No limit" {...form.register("tpm_limit")} />
        </Field>
        <Field label="Max output tokens" error={messageOf(errors.max_tokens_per_request)}>
          <Input inputMode="numeric" placeholder="No limit" {...form.register("max_tokens_per_request")} />
        </Field>
      </div>
      <Field label="Expires" error={messageOf(errors.expires_at)} description="In your time zone. Leave empty for a key that does not expire.">
        <Input type="datetime-local" {...form.register("expires_at")} />
      </Field>
      <Field label="Allowed client networks" error={messageOf(errors.allowed_cidrs)} description="One address or CIDR per line (e.g. 203.0.113.0/24). Empty: any.">
        <Textarea rows={2} className="font-mono" {...form.register("allowed_cidrs")} />
      </Field>
      <Field label="Tags" error={messageOf(errors.metadata)} description="key=value, one per line. Added to every usage event of the key.">
        <Textarea rows={2} className="font-mono" placeholder="env=prod" {...form.register("metadata")} />
      </Field>
      <div className="flex justify-end gap-2 border-t border-slate-100 pt-4">
        <Button variant="secondary" onClick={onCancel}>
          Cancel
        </Button>
        <Button type="submit" loading={form.formState.isSubmitting}>
          {editing ? "Save changes" : "Create key"}
        </Button>
      </div>
    </form>
  );
}
