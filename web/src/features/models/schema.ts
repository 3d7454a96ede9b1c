import { z } from "zod";
import type { Schemas } from "@/api/client";
import { PRICE_PATTERN } from "./price";

const price = (label: string) =>
  z
    .string()
    .trim()
    .refine((s) => s === "" || PRICE_PATTERN.test(s), `${label}: USD per 1M tokens, e.g. 2.5 (at most 6 decimals)`);

export const REGION_PATTERN = /^[A-Za-z0-9_.](?:[A-Za-z0-9_.-]{0,62}[A-Za-z0-9_.])?$/;

export const deploymentSchema = z
  .object({
    catalog_id: z.string(),
    provider_id: z.string().min(1, "Choose the provider credential"),
    name: z.string().trim().min(1, "The name clients send as model").max(200, "At most 200 characters"),
    upstream_model: z.string().trim().max(200, "At most 200 characters"),
    input_price: price("Input price"),
    output_price: price("Output price"),
    cached_input_price: price("Cached input price"),
    region: z
      .string()
      .trim()
      .refine((s) => s === "" || REGION_PATTERN.test(s), "Letters, digits, -, _ and . (e.g. eu-west-1)"),
    mode: z.enum(["chat", "embedding"]),
    context_window: z
      .string()
      .trim()
      .refine((s) => s === "" || (/^\d+$/.test(s) && Number(s) >= 1 && Number(s) <= 100_000_000), "A whole number of tokens (1 to 100,000,000)"),
  })
  .superRefine((v, ctx) => {
    if (v.catalog_id) return;
    if (!v.upstream_model) ctx.addIssue({ code: "custom", path: ["upstream_model"], message: "Required for a custom deployment" });
    if (!v.input_price) ctx.addIssue({ code: "custom", path: ["input_price"], message: "Required for a custom deployment" });
    if (!v.output_price) ctx.addIssue({ code: "custom", path: ["output_price"], message: "Required for a custom deployment" });
  });

export type DeploymentForm = z.infer<typeof deploymentSchema>;

export const emptyDeployment: DeploymentForm = {
  catalog_id: "",
  provider_id: "",
  name: "",
  upstream_model: "",
  input_price: "",
  output_price: "",
  cached_input_price: "",
  region: "",
  mode: "chat",
  context_window: "",
};

export function toModelRequest(v: DeploymentForm): Schemas["CreateModelRequest"] {
  const body: Schemas["CreateModelRequest"] = { name: v.name, provider_id: v.provider_id, mode: v.mode };
  if (v.catalog_id) body.catalog_id = v.catalog_id;
  if (v.upstream_model) body.upstream_model = v.upstream_model;
  if (v.input_price) body.input_price_per_mtok = v.input_price;
  if (v.output_price) body.output_price_per_mtok = v.output_price;
  if (v.cached_input_price) body.cached_input_price_per_mtok = v.cached_input_price;
  if (v.region) body.region = v.region;
  if (v.context_window) body.context_window = Number(v.context_window);
  return body;
}
