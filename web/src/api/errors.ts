import type { FieldValues, Path, UseFormReturn } from "react-hook-form";
import type { components } from "./schema";

export type ErrorDetail = components["schemas"]["ErrorDetail"];

/**
 * Every failed API call becomes one `ApiError`: the HTTP status, the server's error body
 * (`{"error": {"code", "message"}}`) and, for validation failures, the field the message names.
 * The control API phrases a field error as `"<field>: <problem>"` (e.g. `candidates[0].weight: must be
 * positive`) and may also send it as `error.field`.
 */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly requestId: string | null;
  readonly fieldErrors: Record<string, string>;

  constructor(status: number, detail: Partial<ErrorDetail> & { field?: string | null }, requestId: string | null) {
    const message = detail.message ?? `request failed (${status})`;
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = detail.code ?? "unknown";
    this.requestId = requestId;
    this.fieldErrors = {};
    if (this.code === "validation_failed") {
      const field = detail.field ?? fieldOf(message);
      if (field) this.fieldErrors[field] = problemOf(message, field);
    }
  }
}

const FIELD = /^([a-z_][a-z0-9_]*(?:\[\d+\])?(?:\.[a-z_][a-z0-9_]*(?:\[\d+\])?)*): (.+)$/s;

/** `"name: must not be empty"` → `"name"`; `null` when the message names no field. */
export function fieldOf(message: string): string | null {
  return FIELD.exec(message)?.[1] ?? null;
}

function problemOf(message: string, field: string): string {
  return message.startsWith(`${field}: `) ? message.slice(field.length + 2) : message;
}

/** Turns a network failure or an unexpected body into an `ApiError` (status 0 = no answer). */
export async function toApiError(response: Response): Promise<ApiError> {
  const requestId = response.headers.get("x-switchyard-request-id");
  let detail: Partial<ErrorDetail> & { field?: string | null } = {};
  try {
    const body: unknown = await response.clone().json();
    if (body && typeof body === "object" && "error" in body && body.error && typeof body.error === "object") {
      detail = body.error as typeof detail;
    }
  } catch {
    detail = { code: "unknown", message: `${response.status} ${response.statusText}`.trim() };
  }
  return new ApiError(response.status, detail, requestId);
}

/**
 * Shows a server validation error next to its field when the form has that field (the API's
 * dotted paths map to react-hook-form's), and returns the message for a form-level alert otherwise.
 */
export function applyServerErrors<T extends FieldValues>(form: UseFormReturn<T>, err: unknown): string | null {
  if (!(err instanceof ApiError)) return err instanceof Error ? err.message : "Something went wrong";
  const values = form.getValues() as Record<string, unknown>;
  let unplaced: string | null = null;
  for (const [field, message] of Object.entries(err.fieldErrors)) {
    const path = field.replace(/\[(\d+)\]/g, ".$1");
    const root = path.split(".")[0] ?? path;
    if (root in values) {
      form.setError(path as Path<T>, { type: "server", message });
    } else {
      unplaced = `${field}: ${message}`;
    }
  }
  if (Object.keys(err.fieldErrors).length === 0) return err.message;
  return unplaced;
}

export function errorMessage(err: unknown): string {
  if (err instanceof ApiError) return err.message;
  if (err instanceof Error) return err.message;
  return "Something went wrong";
}
