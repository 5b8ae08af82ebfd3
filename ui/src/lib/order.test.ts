import { describe, expect, it } from "vitest";
import { buildRequest, changeDue, draftTotal, validateDraft, type Draft } from "./order";
import type { Product } from "./types";

const shirt: Product = {
  sku: "ocean-blue-shirt",
  handle: "ocean-blue-shirt",
  title: "Ocean Blue Shirt",
  price_cents: 5000,
  stock: 3,
  allow_oversell: false,
  barcode: null,
};
const mug: Product = { ...shirt, sku: "mug", handle: "mug", title: "Mug", price_cents: 1250 };

function draft(over: Partial<Draft> = {}): Draft {
  return {
    lines: [
      { product: shirt, quantity: 1 },
      { product: mug, quantity: 2 },
    ],
    customerName: "",
    customerEmail: "",
    method: "cash",
    tendered: "100.00",
    cardRef: "",
    ...over,
  };
}

describe("totals", () => {
  it("adds price times quantity in cents", () => {
    expect(draftTotal(draft().lines)).toBe(7500);
  });

  it("leaves out lines whose quantity is not a whole number yet", () => {
    expect(draftTotal([{ product: shirt, quantity: null }, { product: mug, quantity: 1.5 }])).toBe(0);
  });

  it("gives change only when the cash covers the total", () => {
    expect(changeDue(draft())).toBe(2500);
    expect(changeDue(draft({ tendered: "75" }))).toBe(0);
    expect(changeDue(draft({ tendered: "74.99" }))).toBeNull();
    expect(changeDue(draft({ method: "card" }))).toBeNull();
  });
});

describe("validateDraft", () => {
  it("accepts a complete cash order", () => {
    expect(validateDraft(draft(), "EUR")).toEqual({});
  });

  it("names each problem by the shop's field name", () => {
    const errors = validateDraft(
      draft({
        lines: [
          { product: shirt, quantity: 1 },
          { product: mug, quantity: 0 },
        ],
        customerEmail: "not-an-email",
        tendered: "5",
      }),
      "EUR",
    );
    expect(Object.keys(errors).sort()).toEqual(["customer_email", "lines[1].quantity", "payment.tendered_cents"]);
    expect(errors["payment.tendered_cents"]).toContain("€50.00");
  });

  it("wants at least one line, and a reference for card payments", () => {
    const errors = validateDraft(draft({ lines: [], method: "card" }), "EUR");
    expect(Object.keys(errors).sort()).toEqual(["lines", "payment.reference"]);
  });

  it("refuses tendered text that is not an amount", () => {
    expect(validateDraft(draft({ tendered: "sixty" }), "EUR")).toHaveProperty("payment.tendered_cents");
  });
});

describe("buildRequest", () => {
  it("sends blank customer fields as null and cash in cents", () => {
    expect(buildRequest(draft({ customerName: "  ", customerEmail: " ada@example.com " }), "k-1")).toEqual({
      idempotency_key: "k-1",
      customer_name: null,
      customer_email: "ada@example.com",
      lines: [
        { sku: "ocean-blue-shirt", quantity: 1 },
        { sku: "mug", quantity: 2 },
      ],
      payment: { method: "cash", tendered_cents: 10000 },
    });
  });

  it("sends the card reference for card payments", () => {
    const req = buildRequest(draft({ method: "card", cardRef: " AUTH-42 " }), "k-2");
    expect(req.payment).toEqual({ method: "card", reference: "AUTH-42" });
  });
});
