// Typed wrappers over the desktop commands and events.

import { invoke } from "@tauri-apps/api/core";
import { listen, type UnlistenFn } from "@tauri-apps/api/event";
import type {
  ImportSummary,
  JobDetail,
  JobInfo,
  JobStats,
  JobStatus,
  OrderRequest,
  OrderSummary,
  PlacedOrder,
  Product,
  PublicError,
  QueueState,
  SettingsForm,
  SettingsUpdate,
  ShopInfo,
} from "./types";

/** Turns whatever a rejected command gave us into a `PublicError`. */
export function toPublicError(err: unknown): PublicError {
  if (err && typeof err === "object" && "message" in err) {
    const e = err as { code?: unknown; message?: unknown; field?: unknown };
    return {
      code: typeof e.code === "string" ? e.code : "internal",
      message: String(e.message),
      ...(typeof e.field === "string" ? { field: e.field } : {}),
    };
  }
  return { code: "internal", message: typeof err === "string" ? err : String(err) };
}

async function call<T>(cmd: string, args?: Record<string, unknown>): Promise<T> {
  try {
    return await invoke<T>(cmd, args);
  } catch (err) {
    throw toPublicError(err);
  }
}

export const api = {
  shopInfo: () => call<ShopInfo>("shop_info"),
  getSettings: () => call<SettingsForm>("get_settings"),
  saveSettings: (settings: SettingsUpdate) => call<SettingsForm>("save_settings", { settings }),
  listProducts: (query: string | null, limit: number) =>
    call<Product[]>("list_products", { query, limit }),
  importProductsCsv: (name: string, content: string) =>
    call<ImportSummary>("import_products_csv", { name, content }),
  placeOrder: (request: OrderRequest) => call<PlacedOrder>("place_order", { request }),
  listOrders: (limit: number) => call<OrderSummary[]>("list_orders", { limit }),
  jobStats: () => call<JobStats>("job_stats"),
  listJobs: (status: JobStatus | null, limit: number) =>
    call<JobInfo[]>("list_jobs", { status, limit }),
  setQueuePaused: (paused: boolean) => call<void>("set_queue_paused", { paused }),
  getJob: (id: string) => call<JobDetail>("get_job", { id }),
  retryJob: (id: string) => call<JobInfo>("retry_job", { id }),
  cancelJob: (id: string) => call<JobInfo>("cancel_job", { id }),
  queueStates: () => call<QueueState[]>("queue_states"),
  /** `queue` null: every queue. Returns each queue's state afterwards. */
  setQueuePausedByName: (queue: string | null, paused: boolean) =>
    call<QueueState[]>("set_queue_paused_by_name", { queue, paused }),
  purgeDeadJobs: (olderThanDays: number | null = null) =>
    call<number>("purge_dead_jobs", { olderThanDays }),
};

export function onJobsChanged(handler: (stats: JobStats) => void): Promise<UnlistenFn> {
  return listen<JobStats>("jobs-changed", (event) => handler(event.payload));
}

export function onOrdersChanged(handler: () => void): Promise<UnlistenFn> {
  return listen("orders-changed", () => handler());
}

/** Subscribes for the lifetime of a component: call from `$effect` and return the result. */
export function subscribe(...subs: Promise<UnlistenFn>[]): () => void {
  let disposed = false;
  const unlisteners: UnlistenFn[] = [];
  for (const sub of subs) {
    sub
      .then((unlisten) => {
        if (disposed) unlisten();
        else unlisteners.push(unlisten);
      })
      .catch(() => {
        // Outside the desktop shell there are no events to listen to.
      });
  }
  return () => {
    disposed = true;
    for (const unlisten of unlisteners.splice(0)) unlisten();
  };
}
