// App-wide state: the shop's identity (for the currency) and the current page.

import { api } from "./api";
import type { ShopInfo } from "./types";

export type Page = "products" | "new-order" | "orders" | "jobs" | "settings";

export const app = $state<{ info: ShopInfo | null; page: Page; infoError: string | null }>({
  info: null,
  page: "new-order",
  infoError: null,
});

export function currency(): string {
  return app.info?.currency ?? "EUR";
}

export async function loadShopInfo(): Promise<void> {
  try {
    app.info = await api.shopInfo();
    app.infoError = null;
  } catch (err) {
    app.infoError = (err as { message?: string }).message ?? String(err);
  }
}
