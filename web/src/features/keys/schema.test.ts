import { describe, expect, it } from "vitest";
import { emptyKeyForm, keyFormSchemaFor, keyStatus, keyToForm, toCreateBody, toUpdateBody } from "./schema";

const key = {
  id: "00000000-0000-7000-8000-000000000011",
  name: "svc",
  prefix: "sk-sy-AbCd…wxyz",
  created_at: "2026-12-01T10:00:00Z",
  created_by: "00000000-0000-7000-8000-0000000000aa",
  metadata: { env: "prod" },
  rpm_limit: 600,
  allowed_cidrs: ["203.0.113.0/24"],
};

describe("key form ↔ API", () => {
  it("sends only what was set on create", () => {
    expect(toCreateBody({ ...emptyKeyForm, name: " ci ", metadata: "env=prod\nservice = search", allowed_cidrs: "10.0.0.0/8\n" })).toEqual({
      name: "ci",
      metadata: { env: "prod", service: "search" },
      allowed_cidrs: ["10.0.0.0/8"],
    });
  });

  it("clears emptied fields with null on edit", () => {
    const form = keyToForm(key);
    expect(form.metadata).toBe("env=prod");
    expect(toUpdateBody({ ...form, rpm_limit: "", metadata: "", allowed_cidrs: "" })).toMatchObject({
      name: "svc",
      rpm_limit: null,
      metadata: null,
      allowed_cidrs: null,
      models: null,
      endpoints: null,
    });
  });

  it("validates limits, tags and a past expiry", () => {
    const schema = keyFormSchemaFor("");
    const bad = schema.safeParse({ ...emptyKeyForm, name: "x", rpm_limit: "1.5", metadata: "no equals sign", expires_at: "2020-01-01T00:00" });
    expect(bad.success).toBe(false);
    const paths = bad.error?.issues.map((i) => i.path.join(".")).sort();
    expect(paths).toEqual(["expires_at", "metadata", "rpm_limit"]);
    // An unchanged past expiry (editing an expired key) is allowed.
    expect(keyFormSchemaFor("2020-01-01T00:00").safeParse({ ...emptyKeyForm, name: "x", expires_at: "2020-01-01T00:00" }).success).toBe(true);
  });

  it("derives the status", () => {
    const now = Date.parse("2026-12-06T12:00:00Z");
    expect(keyStatus(key, now)).toBe("active");
    expect(keyStatus({ ...key, revoked_at: "2026-12-02T00:00:00Z" }, now)).toBe("revoked");
    expect(keyStatus({ ...key, expires_at: "2026-12-05T00:00:00Z" }, now)).toBe("expired");
    expect(keyStatus({ ...key, previous_expires_at: "2026-12-06T13:00:00Z" }, now)).toBe("rotating");
  });
});
