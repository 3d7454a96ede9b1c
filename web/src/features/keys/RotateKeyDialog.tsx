import { useState } from "react";
import { useForm } from "react-hook-form";
import { zodResolver } from "@hookform/resolvers/zod";
import { useQueryClient } from "@tanstack/react-query";
import { toast } from "sonner";
import { z } from "zod";
import { $api, type Schemas } from "@/api/client";
import { applyServerErrors } from "@/api/errors";
import { Dialog } from "@/components/ui/dialog";
import { Field, FormError } from "@/components/ui/field";
import { Input } from "@/components/ui/input";
import { Button } from "@/components/ui/button";
import { SecretReveal } from "./SecretReveal";

const rotateSchema = z.object({
  grace_hours: z
    .string()
    .trim()
    .regex(/^\d+(\.\d+)?$/, "Enter a number of hours (0 ends the old secret at once)")
    .refine((v) => Number(v) <= 168, "At most 168 hours (7 days)"),
});
type RotateForm = z.infer<typeof rotateSchema>;

/** Rotates a key: a new secret (shown once); the old one keeps working for the grace period. */
export function RotateKeyDialog({ apiKey, open, onOpenChange }: { apiKey: Schemas["KeyDto"] | null; open: boolean; onOpenChange: (o: boolean) => void }) {
  const [secret, setSecret] = useState<string | null>(null);
  const queryClient = useQueryClient();
  const rotate = $api.useMutation("post", "/api/v1/keys/{id}/rotate");
  const form = useForm<RotateForm>({ resolver: zodResolver(rotateSchema), defaultValues: { grace_hours: "24" } });
  const [formError, setFormError] = useState<string | null>(null);
  const close = (o: boolean) => {
    onOpenChange(o);
    if (!o) {
      setSecret(null);
      setFormError(null);
      form.reset({ grace_hours: "24" });
    }
  };
  const onSubmit = form.handleSubmit(async (v) => {
    if (!apiKey) return;
    setFormError(null);
    try {
      const res = await rotate.mutateAsync({
        params: { path: { id: apiKey.id } },
        body: { grace_seconds: Math.round(Number(v.grace_hours) * 3600) },
      });
      setSecret(res.key);
      toast.success(`Rotated “${apiKey.name}”`);
      await queryClient.invalidateQueries({ queryKey: ["get", "/api/v1/keys"] });
    } catch (err) {
      const msg = applyServerErrors(form, err);
      // The API names the field `grace_seconds`; show it next to our hours input.
      if (msg?.startsWith("grace_seconds")) form.setError("grace_hours", { message: msg });
      else setFormError(msg);
    }
  });
  return (
    <Dialog
      open={open}
      onOpenChange={close}
      title={secret ? "Key rotated" : `Rotate “${apiKey?.name ?? ""}”`}
      description={secret ? undefined : "You get a new secret for the same key: same limits, budgets and usage history."}
      footer={
        secret ? (
          <Button onClick={() => close(false)}>I have saved it</Button>
        ) : (
          <>
            <Button variant="secondary" onClick={() => close(false)}>
              Cancel
            </Button>
            <Button type="submit" form="rotate-key-form" loading={form.formState.isSubmitting}>
              Rotate key
            </Button>
          </>
        )
      }
    >
      {secret ? (
        <SecretReveal secret={secret} label="The new secret" />
      ) : (
        <form id="rotate-key-form" onSubmit={onSubmit} noValidate className="space-y-4">
          <FormError message={formError} />
          <Field
            label="Grace period (hours)"
            error={form.formState.errors.grace_hours?.message}
            description="How long the old secret keeps working while you deploy the new one (never past the key's expiry). 0 refuses it at once."
          >
            <Input inputMode="decimal" {...form.register("grace_hours")} />
          </Field>
        </form>
      )}
    </Dialog>
  );
}
