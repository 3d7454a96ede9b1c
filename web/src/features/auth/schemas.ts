import { z } from "zod";

export const loginSchema = z.object({
  email: z.email("Enter a valid email address"),
  password: z.string().min(1, "Enter your password"),
});
export type LoginForm = z.infer<typeof loginSchema>;

export const signupSchema = z.object({
  email: z.email("Enter a valid email address"),
  password: z.string().min(10, "Use at least 10 characters (a few words work well)"),
  organization: z.string().trim().min(1, "Name your organization").max(100, "At most 100 characters"),
});
export type SignupForm = z.infer<typeof signupSchema>;

/** Only same-origin console paths are followed after login (no open redirect). */
export function safeRedirect(target: string | undefined): string {
  if (!target || !target.startsWith("/") || target.startsWith("//") || target.startsWith("/api/")) return "/";
  return target;
}
