import { z } from "zod";
import type { Schemas } from "@/api/client";
import { KINDS, kindInfo, type ProviderKind } from "./kinds";

const kinds = KINDS.map((k) => k.kind) as [ProviderKind, ...ProviderKind[]];
const trimmed = z.string().trim();

/** The create form: every field a string; `toRequest` sends only those the kind uses. */
export const providerSchema = z
  .object({
    name: trimmed.min(1, "Give the credential a name").max(200, "At most 200 characters"),
    kind: z.enum(kinds),
    base_url: trimmed.max(2048, "At most 2048 characters"),
    api_key: z.string(),
    api_version: trimmed,
    region: trimmed,
    access_key_id: trimmed,
    secret_access_key: z.string(),
  })
  .superRefine((v, ctx) => {
    const info = kindInfo(v.kind);
    if (!info) return;
    if (v.base_url) {
      let url: URL | null = null;
      try {
        url = new URL(v.base_url);
      } catch {
        url = null;
      }
      if (!url || (url.protocol !== "http:" && url.protocol !== "https:")) {
        ctx.addIssue({ code: "custom", path: ["base_url"], message: "Enter an http:// or https:// URL" });
      } else if (url.username || url.password || url.search || url.hash) {
        ctx.addIssue({ code: "custom", path: ["base_url"], message: "No credentials, query or fragment in the URL" });
      } else if (v.kind === "azure_openai" && url.protocol !== "https:" && !["localhost", "127.0.0.1", "[::1]"].includes(url.hostname)) {
        ctx.addIssue({ code: "custom", path: ["base_url"], message: "Use the https:// endpoint of the Azure OpenAI resource" });
      }
    } else if (info.baseUrl === "required") {
      ctx.addIssue({ code: "custom", path: ["base_url"], message: `A base URL is required for ${info.label}` });
    }
    if (info.apiKey === "required" && !v.api_key.trim()) {
      ctx.addIssue({ code: "custom", path: ["api_key"], message: `An API key is required for ${info.label}` });
    }
    if (v.kind === "azure_openai" && v.api_version && !/^[A-Za-z0-9.-]{1,64}$/.test(v.api_version)) {
      ctx.addIssue({ code: "custom", path: ["api_version"], message: "An API version such as 2024-10-21" });
    }
    if (v.kind === "bedrock") {
      if (!/^[a-z]{2}(-[a-z]+)+-\d{1,2}$/.test(v.region)) {
        ctx.addIssue({ code: "custom", path: ["region"], message: "An AWS region such as us-east-1" });
      }
      if (!/^[A-Za-z0-9]{4,128}$/.test(v.access_key_id)) {
        ctx.addIssue({ code: "custom", path: ["access_key_id"], message: "An IAM access key id, e.g. AKIAIOSFODNN7EXAMPLE" });
      }
      if (!v.secret_access_key.trim()) {
        ctx.addIssue({ code: "custom", path: ["secret_access_key"], message: "The secret access key is required" });
      }
    }
  });

export type ProviderForm = z.infer<typeof providerSchema>;

export const emptyProvider: ProviderForm = {
  name: "",
  kind: "openai",
  base_url: "",
  api_key: "",
  api_version: "",
  region: "",
  access_key_id: "",
  secret_access_key: "",
};

/** The request body: only the fields this kind uses (the API refuses the others). */
export function toProviderRequest(v: ProviderForm): Schemas["CreateProviderRequest"] {
  const info = kindInfo(v.kind);
  const body: Schemas["CreateProviderRequest"] = { name: v.name, kind: v.kind };
  if (info?.baseUrl !== "refused" && v.base_url) body.base_url = v.base_url;
  if (info?.apiKey !== "refused" && v.api_key.trim()) body.api_key = v.api_key;
  if (v.kind === "azure_openai" && v.api_version) body.api_version = v.api_version;
  if (v.kind === "bedrock") {
    body.region = v.region;
    body.access_key_id = v.access_key_id;
    body.secret_access_key = v.secret_access_key;
  }
  return body;
}
