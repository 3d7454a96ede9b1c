import { ShieldAlert } from "lucide-react";
import { CopyButton } from "@/components/ui/copy-button";

/** A new API key's secret, shown once: select-all text, a copy button and a clear warning. */
export function SecretReveal({ secret, label = "Your new API key" }: { secret: string; label?: string }) {
  return (
    <div className="space-y-3">
      <div role="note" className="flex gap-2 rounded-md border border-amber-200 bg-amber-50 px-3 py-2 text-sm text-amber-900">
        <ShieldAlert className="mt-0.5 size-4 shrink-0" aria-hidden />
        <p>
          <strong>Copy it now: you will not see it again.</strong> Switchyard stores only a hash of the key. If you lose it,
          rotate the key to get a new secret.
        </p>
      </div>
      <div className="space-y-1.5">
        <p className="text-sm font-medium text-slate-800">{label}</p>
        <div className="flex flex-col gap-2 sm:flex-row sm:items-center">
          <code
            aria-label={label}
            tabIndex={0}
            className="block min-w-0 flex-1 select-all break-all rounded-md border border-slate-200 bg-slate-50 px-3 py-2 font-mono text-sm text-slate-900"
            data-testid="api-key-secret"
          >
            {secret}
          </code>
          <CopyButton value={secret} label="Copy key" />
        </div>
      </div>
    </div>
  );
}
