import { useState } from "react";
import { useForm, useWatch } from "react-hook-form";
import { zodResolver } from "@hookform/resolvers/zod";
import { useQueryClient } from "@tanstack/react-query";
import { toast } from "sonner";
import { focusServerError } from "@/features/providers/focus";
import { $api } from "@/api/client";
import { applyServerErrors } from "@/api/errors";
import { Dialog } from "@/components/ui/dialog";
import { Field, FormError } from "@/components/ui/field";
import { Input, NativeSelect } from "@/components/ui/input";
import { Button } from "@/components/ui/button";
import { KINDS, KIND_GROUPS, kindInfo } from "./kinds";
import { emptyProvider, providerSchema, toProviderRequest, type ProviderForm } from "./schema";

export const PROVIDERS_KEY = ["get", "/api/v1/providers"] as const;

/** "Add provider": the kind decides which fields show; secrets are write-only. */
export function CreateProviderDialog({ open, onOpenChange }: { open: boolean; onOpenChange: (o: boolean) => void }) {
  const queryClient = useQueryClient();
  const [formError, setFormError] = useState<string | null>(null);
  const form = useForm<ProviderForm>({ resolver: zodResolver(providerSchema), defaultValues: emptyProvider });
  const kind = useWatch({ control: form.control, name: "kind" });
  const info = kindInfo(kind);
  const create = $api.useMutation("post", "/api/v1/providers");
  const errors = form.formState.errors;

  const close = (o: boolean) => {
    if (!o) {
      form.reset(emptyProvider);
      setFormError(null);
    }
    onOpenChange(o);
  };

  const onSubmit = form.handleSubmit(async (v) => {
    setFormError(null);
    try {
      const created = await create.mutateAsync({ body: toProviderRequest(v) });
      await queryClient.invalidateQueries({ queryKey: PROVIDERS_KEY });
      toast.success(`Provider ${created.name} added`);
      close(false);
    } catch (err) {
      setFormError(applyServerErrors(form, err));
      focusServerError(form, err);
    }
  });

  return (
    <Dialog
      open={open}
      onOpenChange={close}
      title="Add a provider"
      description="A credential the gateway uses to call one provider. Secrets are encrypted at rest and never shown again."
      footer={
        <>
          <Button variant="secondary" onClick={() => close(false)}>
            Cancel
          </Button>
          <Button type="submit" form="create-provider" loading={form.formState.isSubmitting}>
            Add provider
          </Button>
        </>
      }
    >
      <form id="create-provider" onSubmit={onSubmit} noValidate className="space-y-4" autoComplete="off">
        <FormError message={formError} />
        <Field label="Kind" error={errors.kind?.message} description={info?.blurb}>
          <NativeSelect {...form.register("kind")}>
            {KIND_GROUPS.map((g) => (
              <optgroup key={g} label={g}>
                {KINDS.filter((k) => k.group === g).map((k) => (
                  <option key={k.kind} value={k.kind}>
                    {k.label}
                  </option>
                ))}
              </optgroup>
            ))}
          </NativeSelect>
        </Field>
        <Field label="Name" error={errors.name?.message} description="Unique in your organization, e.g. openai-prod.">
          <Input autoComplete="off" {...form.register("name")} />
        </Field>
        {info && info.baseUrl !== "refused" ? (
          <Field
            label={info.baseUrl === "required" ? "Base URL" : "Base URL (optional)"}
            error={errors.base_url?.message}
            description={
              kind === "azure_openai"
                ? "The resource endpoint, e.g. https://my-resource.openai.azure.com."
                : kind === "bedrock"
                  ? "A VPC endpoint or proxy; default: the region's Bedrock endpoint."
                  : info.defaultUrl
                    ? `Including the version path. Default: ${info.defaultUrl}`
                    : info.baseUrl === "required"
                      ? "Including the version path, e.g. http://10.0.0.5:8000/v1."
                      : "Overrides the provider's public endpoint."
            }
          >
            <Input type="url" inputMode="url" autoComplete="off" spellCheck={false} placeholder={info.defaultUrl ?? (kind === "azure_openai" ? "https://my-resource.openai.azure.com" : "https://…")} {...form.register("base_url")} />
          </Field>
        ) : null}
        {info && info.apiKey !== "refused" ? (
          <Field label={info.apiKey === "required" ? "API key" : "API key (optional)"} error={errors.api_key?.message} description="Write-only: stored sealed, never returned.">
            <Input type="password" autoComplete="off" spellCheck={false} placeholder={info.keyPlaceholder} {...form.register("api_key")} />
          </Field>
        ) : null}
        {kind === "azure_openai" ? (
          <Field label="API version (optional)" error={errors.api_version?.message} description="The api-version query parameter. Default: 2024-10-21.">
            <Input autoComplete="off" placeholder="2024-10-21" {...form.register("api_version")} />
          </Field>
        ) : null}
        {kind === "bedrock" ? (
          <>
            <Field label="AWS region" error={errors.region?.message}>
              <Input autoComplete="off" placeholder="us-east-1" {...form.register("region")} />
            </Field>
            <Field label="Access key id" error={errors.access_key_id?.message} description="Not secret; shown on the provider.">
              <Input autoComplete="off" spellCheck={false} placeholder="AKIAIOSFODNN7EXAMPLE" {...form.register("access_key_id")} />
            </Field>
            <Field label="Secret access key" error={errors.secret_access_key?.message} description="Write-only: stored sealed, never returned.">
              <Input type="password" autoComplete="off" spellCheck={false} {...form.register("secret_access_key")} />
            </Field>
          </>
        ) : null}
        {kind === "mock" ? <p className="rounded-md bg-slate-50 px-3 py-2 text-sm text-slate-600">The mock provider needs nothing: it answers offline by echoing the last user message. Use it to try routes and keys.</p> : null}
      </form>
    </Dialog>
  );
}
