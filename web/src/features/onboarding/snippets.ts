/**
 * The ready-to-run first-request snippets (curl, Python and TypeScript with the official OpenAI
 * SDKs). With the key unknown (it is shown once), each reads it from `SWITCHYARD_API_KEY`.
 */
export type SnippetLang = "curl" | "python" | "typescript";

export const KEY_PLACEHOLDER = "$SWITCHYARD_API_KEY";

export interface SnippetInput {
  baseUrl: string;
  /** The plaintext key, or null when it is not known any more. */
  apiKey: string | null;
  model: string;
  prompt?: string;
}

const q = (s: string) => JSON.stringify(s);

export function snippet(lang: SnippetLang, { baseUrl, apiKey, model, prompt = "Hello, Switchyard!" }: SnippetInput): string {
  const body = JSON.stringify({ model, messages: [{ role: "user", content: prompt }] });
  switch (lang) {
    case "curl":
      return [
        `curl ${baseUrl}/chat/completions \\`,
        `  -H "Authorization: Bearer ${apiKey ?? KEY_PLACEHOLDER}" \\`,
        `  -H "Content-Type: application/json" \\`,
        `  -d '${body.replace(/'/g, "'\\''")}'`,
      ].join("\n");
    case "python":
      return [
        ...(apiKey ? [] : ["import os"]),
        "from openai import OpenAI",
        "",
        `client = OpenAI(base_url=${q(baseUrl)}, api_key=${apiKey ? q(apiKey) : 'os.environ["SWITCHYARD_API_KEY"]'})`,
        "",
        "reply = client.chat.completions.create(",
        `    model=${q(model)},`,
        `    messages=[{"role": "user", "content": ${q(prompt)}}],`,
        ")",
        "print(reply.choices[0].message.content)",
      ].join("\n");
    case "typescript":
      return [
        'import OpenAI from "openai";',
        "",
        "const client = new OpenAI({",
        `  baseURL: ${q(baseUrl)},`,
        `  apiKey: ${apiKey ? q(apiKey) : "process.env.SWITCHYARD_API_KEY"},`,
        "});",
        "",
        "const reply = await client.chat.completions.create({",
        `  model: ${q(model)},`,
        `  messages: [{ role: "user", content: ${q(prompt)} }],`,
        "});",
        "console.log(reply.choices[0]?.message.content);",
      ].join("\n");
  }
}
