import { createFileRoute, Link, useNavigate } from "@tanstack/react-router";
import { useForm } from "react-hook-form";
import { zodResolver } from "@hookform/resolvers/zod";
import { useState } from "react";
import { z } from "zod";
import { AuthLayout } from "@/features/auth/AuthLayout";
import { signupSchema, safeRedirect, type SignupForm } from "@/features/auth/schemas";
import { Field, FormError } from "@/components/ui/field";
import { Input } from "@/components/ui/input";
import { Button } from "@/components/ui/button";
import { applyServerErrors } from "@/api/errors";
import { signup } from "@/auth/actions";

export const Route = createFileRoute("/signup")({
  validateSearch: z.object({ redirect: z.string().optional() }),
  component: SignupPage,
});

function SignupPage() {
  const { redirect } = Route.useSearch();
  const navigate = useNavigate();
  const [formError, setFormError] = useState<string | null>(null);
  const form = useForm<SignupForm>({
    resolver: zodResolver(signupSchema),
    defaultValues: { email: "", password: "", organization: "" },
  });
  const onSubmit = form.handleSubmit(async (v) => {
    setFormError(null);
    try {
      await signup(v.email, v.password, v.organization);
      // New accounts land on the onboarding checklist unless they came to accept an invitation.
      await navigate({ to: redirect ? safeRedirect(redirect) : "/" });
    } catch (err) {
      setFormError(applyServerErrors(form, err));
    }
  });
  return (
    <AuthLayout
      title="Create your account"
      subtitle="One endpoint for every model provider, with keys, budgets and analytics."
      footer={
        <>
          Already have an account?{" "}
          <Link to="/login" search={{ redirect }} className="font-medium text-brand-700 hover:underline">
            Sign in
          </Link>
        </>
      }
    >
      <form onSubmit={onSubmit} noValidate className="space-y-4">
        <FormError message={formError} />
        <Field label="Work email" error={form.formState.errors.email?.message}>
          <Input type="email" autoComplete="email" autoFocus {...form.register("email")} />
        </Field>
        <Field label="Password" error={form.formState.errors.password?.message} description="Weak or common passwords are refused.">
          <Input type="password" autoComplete="new-password" {...form.register("password")} />
        </Field>
        <Field label="Organization name" error={form.formState.errors.organization?.message}>
          <Input autoComplete="organization" {...form.register("organization")} />
        </Field>
        <Button type="submit" className="w-full" loading={form.formState.isSubmitting}>
          Create account
        </Button>
      </form>
    </AuthLayout>
  );
}
