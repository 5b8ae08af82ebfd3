// What the Jobs page may offer for a job, and how it names things. Mirrors
// the rules in `shopdesk_core::queue::admin`.

import type { JobStatus } from "./types";

/** Dead and retrying jobs can be run again. */
export function canRetry(status: JobStatus): boolean {
  return status === "Killed" || status === "Failed";
}

/** Pending and retrying jobs can be cancelled. */
export function canCancel(status: JobStatus): boolean {
  return status === "Pending" || status === "Failed";
}

const FAMILY: Record<string, string> = { email: "Email", notify: "Notification" };

/** `email` → `Email`, `notify` → `Notification`. */
export function queueLabel(queue: string): string {
  return FAMILY[queue] ?? queue;
}

/** `email.order_confirmation` → `Email · order confirmation`. */
export function jobTypeLabel(t: string): string {
  const dot = t.indexOf(".");
  const family = dot === -1 ? "" : t.slice(0, dot);
  const name = (dot === -1 ? t : t.slice(dot + 1)).replace(/[_-]+/g, " ");
  if (family === "") return name;
  return `${queueLabel(family)} · ${name}`;
}

/** A payload as indented JSON for the detail view. */
export function prettyPayload(payload: unknown): string {
  if (typeof payload === "string") return payload;
  return JSON.stringify(payload, null, 2) ?? String(payload);
}
