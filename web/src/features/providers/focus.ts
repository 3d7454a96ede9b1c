import type { FieldValues, Path, UseFormReturn } from "react-hook-form";
import { ApiError } from "@/api/errors";

/**
 * Moves focus to the field the API's validation error names (after `applyServerErrors` put the
 * message next to it), so a refusal of a field scrolled out of view is not missed.
 */
export function focusServerError<T extends FieldValues>(form: UseFormReturn<T>, err: unknown) {
  if (!(err instanceof ApiError)) return;
  const [field] = Object.keys(err.fieldErrors);
  if (!field) return;
  const path = field.replace(/\[(\d+)\]$/, "").replace(/\[(\d+)\]/g, ".$1");
  try {
    form.setFocus(path as Path<T>);
  } catch {
    // not a focusable field (e.g. the candidate list itself)
  }
}
