import { describe, expect, it } from "vitest";
import { fieldSlug, newIdempotencyKey } from "./format";

describe("fieldSlug", () => {
  it("turns the shop's field names into test ids", () => {
    expect(fieldSlug("customer_email")).toBe("customer_email");
    expect(fieldSlug("lines")).toBe("lines");
    expect(fieldSlug("lines[0].quantity")).toBe("lines-0-quantity");
    expect(fieldSlug("lines[12].sku")).toBe("lines-12-sku");
    expect(fieldSlug("payment.tendered_cents")).toBe("payment-tendered_cents");
  });
});

describe("newIdempotencyKey", () => {
  it("is a fresh UUID each time", () => {
    const a = newIdempotencyKey();
    const b = newIdempotencyKey();
    expect(a).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(a).not.toBe(b);
  });
});
