import { createFileRoute, Link, useNavigate } from "@tanstack/react-router";
import { useForm } from "react-hook-form";
import { zodResolver } from "@hookform/resolvers/zod";
import { useState } from "react";
import { z } from "zod";
import { AuthLayout } from "@/features/auth/AuthLayout";
import { loginSchema, safeRedirect, type LoginForm } from "@/features/auth/schemas";
import { Field, FormError } from "@/components/ui/field";
import { Input } from "@/components/ui/input";
import { Button } from "@/components/ui/button";
import { applyServerErrors } from "@/api/errors";
import { login } from "@/auth/actions";

const search = z.object({ redirect: z.string().optional(), expired: z.boolean().optional() });

export const Route = createFileRoute("/login")({
  validateSearch: search,
  component: LoginPage,
});

function LoginPage() {
  const { redirect, expired } = Route.useSearch();
  const navigate = useNavigate();
  const [formError, setFormError] = useState<string | null>(null);
  const form = useForm<LoginForm>({ resolver: zodResolver(loginSchema), defaultValues: { email: "", password: "" } });
  const onSubmit = form.handleSubmit(async (v) => {
    setFormError(null);
    try {
      await login(v.email, v.password);
      await navigate({ to: safeRedirect(redirect) });
    } catch (err) {
      setFormError(applyServerErrors(form, err));
    }
  });
  return (
    <AuthLayout
      title="Sign in"
      subtitle={expired ? "Your session ended. Sign in again to continue where you were." : "Welcome back to Switchyard."}
      footer={
        <>
          New here?{" "}
          <Link to="/signup" search={{ redirect }} className="font-medium text-brand-700 hover:underline">
            Create an account
          </Link>
        </>
      }
    >
      <form onSubmit={onSubmit} noValidate className="space-y-4">
        <FormError message={formError} />
        <Field label="Email" error={form.formState.errors.email?.message}>
          <Input type="email" autoComplete="email" autoFocus {...form.register("email")} />
        </Field>
        <Field label="Password" error={form.formState.errors.password?.message}>
          <Input type="password" autoComplete="current-password" {...form.register("password")} />
        </Field>
        <Button type="submit" className="w-full" loading={form.formState.isSubmitting}>
          Sign in
        </Button>
      </form>
    </AuthLayout>
  );
}
