// The order being rung up, as plain data: its total, the checks worth doing
// before asking the shop, and the request sent to it.

import { formatMoney, parseCents } from "./money";
import type { OrderRequest, Product } from "./types";

export interface DraftLine {
  product: Product;
  /** `null` while the quantity box is empty. */
  quantity: number | null;
}

export interface Draft {
  lines: DraftLine[];
  customerName: string;
  customerEmail: string;
  method: "cash" | "card";
  /** Decimal text as typed, e.g. `"60.00"`. */
  tendered: string;
  cardRef: string;
}

export function isValidQuantity(q: number | null): q is number {
  return typeof q === "number" && Number.isInteger(q) && q >= 1;
}

/** Sum of the lines whose quantity makes sense, in cents. */
export function draftTotal(lines: DraftLine[]): number {
  return lines.reduce((sum, l) => sum + (isValidQuantity(l.quantity) ? l.product.price_cents * l.quantity : 0), 0);
}

/** Change for a cash payment, or `null` while the tendered amount does not cover the total. */
export function changeDue(draft: Draft): number | null {
  if (draft.method !== "cash") return null;
  const tendered = parseCents(draft.tendered);
  const total = draftTotal(draft.lines);
  return tendered !== null && tendered >= total ? tendered - total : null;
}

/**
 * Obvious mistakes, keyed by the field names the shop uses in its errors
 * (`lines[0].quantity`, `payment.tendered_cents`, …). The shop checks again and
 * has the last word; this only saves a round trip and shows the hint sooner.
 */
export function validateDraft(draft: Draft, currency: string): Record<string, string> {
  const found: Record<string, string> = {};
  if (draft.lines.length === 0) found["lines"] = "Add at least one product.";
  draft.lines.forEach((l, i) => {
    if (!isValidQuantity(l.quantity)) found[`lines[${i}].quantity`] = "Enter a whole number of at least 1.";
  });
  const email = draft.customerEmail.trim();
  if (email !== "" && !/^[^\s@]+@[^\s@]+$/.test(email)) {
    found["customer_email"] = `“${email}” is not an email address.`;
  }
  if (draft.method === "cash") {
    const tendered = parseCents(draft.tendered);
    const total = draftTotal(draft.lines);
    if (draft.tendered.trim() === "") found["payment.tendered_cents"] = "Enter the cash handed over, e.g. 60.00.";
    else if (tendered === null) found["payment.tendered_cents"] = `“${draft.tendered.trim()}” is not an amount.`;
    else if (draft.lines.length > 0 && tendered < total)
      found["payment.tendered_cents"] = `Less than the total of ${formatMoney(total, currency)}.`;
  } else if (draft.cardRef.trim() === "") {
    found["payment.reference"] = "Enter the card terminal's reference.";
  }
  return found;
}

/** The request for a draft that passed `validateDraft`. */
export function buildRequest(draft: Draft, idempotencyKey: string): OrderRequest {
  const name = draft.customerName.trim();
  const email = draft.customerEmail.trim();
  return {
    idempotency_key: idempotencyKey,
    customer_name: name === "" ? null : name,
    customer_email: email === "" ? null : email,
    lines: draft.lines.map((l) => ({ sku: l.product.sku, quantity: l.quantity ?? 0 })),
    payment:
      draft.method === "cash"
        ? { method: "cash", tendered_cents: parseCents(draft.tendered) ?? 0 }
        : { method: "card", reference: draft.cardRef.trim() },
  };
}
