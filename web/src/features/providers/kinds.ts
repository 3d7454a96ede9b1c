import type { Schemas } from "@/api/client";

export type ProviderKind = Schemas["CreateProviderRequest"]["kind"];

type Need = "required" | "optional" | "refused";

export interface KindInfo {
  kind: ProviderKind;
  label: string;
  group: "Hosted" | "OpenAI-compatible hosts" | "Cloud" | "Self-hosted" | "Testing";
  /** What it talks to (README's provider table). */
  blurb: string;
  baseUrl: Need;
  apiKey: Need;
  /** The default the gateway calls when no base URL is given. */
  defaultUrl?: string;
  keyPlaceholder?: string;
}

/**
 * Every kind `CreateProviderRequest.kind` accepts, with the fields each needs (README "Providers",
 * mirrored by the control plane's per-kind rules). Bedrock takes its own secret fields instead of
 * `api_key`; Azure takes `api_version`.
 */
export const KINDS: KindInfo[] = [
  { kind: "openai", label: "OpenAI", group: "Hosted", blurb: "api.openai.com", baseUrl: "optional", apiKey: "required", defaultUrl: "https://api.openai.com/v1", keyPlaceholder: "sk-…" },
  { kind: "anthropic", label: "Anthropic", group: "Hosted", blurb: "Anthropic Messages API", baseUrl: "optional", apiKey: "required", keyPlaceholder: "sk-ant-…" },
  { kind: "gemini", label: "Google Gemini", group: "Hosted", blurb: "Gemini API (generateContent)", baseUrl: "optional", apiKey: "required", keyPlaceholder: "AIza…" },
  { kind: "azure_openai", label: "Azure OpenAI", group: "Cloud", blurb: "Azure OpenAI resource; the deployment name is the upstream model", baseUrl: "required", apiKey: "required" },
  { kind: "bedrock", label: "AWS Bedrock", group: "Cloud", blurb: "Bedrock Converse / ConverseStream (SigV4)", baseUrl: "optional", apiKey: "refused" },
  { kind: "mistral", label: "Mistral", group: "OpenAI-compatible hosts", blurb: "Mistral's OpenAI-compatible API", baseUrl: "optional", apiKey: "required" },
  { kind: "groq", label: "Groq", group: "OpenAI-compatible hosts", blurb: "Groq's OpenAI-compatible API", baseUrl: "optional", apiKey: "required", keyPlaceholder: "gsk_…" },
  { kind: "deepseek", label: "DeepSeek", group: "OpenAI-compatible hosts", blurb: "DeepSeek's OpenAI-compatible API", baseUrl: "optional", apiKey: "required", keyPlaceholder: "sk-…" },
  { kind: "together", label: "Together AI", group: "OpenAI-compatible hosts", blurb: "Together's OpenAI-compatible API", baseUrl: "optional", apiKey: "required" },
  { kind: "fireworks", label: "Fireworks AI", group: "OpenAI-compatible hosts", blurb: "Fireworks' OpenAI-compatible API", baseUrl: "optional", apiKey: "required", keyPlaceholder: "fw_…" },
  { kind: "xai", label: "xAI", group: "OpenAI-compatible hosts", blurb: "xAI's OpenAI-compatible API", baseUrl: "optional", apiKey: "required", keyPlaceholder: "xai-…" },
  { kind: "openrouter", label: "OpenRouter", group: "OpenAI-compatible hosts", blurb: "OpenRouter's OpenAI-compatible API", baseUrl: "optional", apiKey: "required", keyPlaceholder: "sk-or-…" },
  { kind: "openai_compatible", label: "Other OpenAI-compatible server", group: "Self-hosted", blurb: "Any OpenAI-compatible server", baseUrl: "required", apiKey: "optional" },
  { kind: "vllm", label: "vLLM", group: "Self-hosted", blurb: "A vLLM server", baseUrl: "optional", apiKey: "optional", defaultUrl: "http://localhost:8000/v1" },
  { kind: "ollama", label: "Ollama", group: "Self-hosted", blurb: "An Ollama server", baseUrl: "optional", apiKey: "optional", defaultUrl: "http://localhost:11434/v1" },
  { kind: "llamacpp", label: "llama.cpp", group: "Self-hosted", blurb: "A llama.cpp server", baseUrl: "optional", apiKey: "optional", defaultUrl: "http://localhost:8080/v1" },
  { kind: "mock", label: "Mock (offline)", group: "Testing", blurb: "Built in and offline: echoes the last user message", baseUrl: "refused", apiKey: "refused" },
];

export const KIND_GROUPS = ["Hosted", "Cloud", "OpenAI-compatible hosts", "Self-hosted", "Testing"] as const;

export function kindInfo(kind: string): KindInfo | undefined {
  return KINDS.find((k) => k.kind === kind);
}

export function kindLabel(kind: string): string {
  return kindInfo(kind)?.label ?? kind;
}
