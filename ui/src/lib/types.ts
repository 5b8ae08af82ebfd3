// Mirrors of the JSON the desktop commands send and receive (snake_case,
// as serialised by the core). Keep in step with `shopdesk_core`.

export interface ShopInfo {
  shop_name: string;
  currency: string;
  data_dir: string;
  outbox_dir: string;
}

/** The Settings page's fields; the API key only ever comes back masked. */
export interface SettingsForm {
  shop_name: string;
  shop_email: string;
  email_provider: EmailProvider;
  email_api_url: string;
  /** e.g. "re_…a1b2", or null when no key is stored. */
  email_api_key: string | null;
}

export type EmailProvider = "outbox" | "resend";

/** What the Settings page saves; a null or blank key keeps the stored one. */
export interface SettingsUpdate {
  shop_name: string;
  shop_email: string;
  email_provider: EmailProvider;
  email_api_url: string;
  email_api_key: string | null;
}

export interface Product {
  sku: string;
  handle: string;
  title: string;
  price_cents: number;
  stock: number;
  allow_oversell: boolean;
  barcode: string | null;
}

export interface SkippedRow {
  row: number;
  handle: string;
  reason: string;
}

export interface ImportSummary {
  source: string;
  imported: number;
  updated: number;
  skipped: SkippedRow[];
}

export interface OrderLineRequest {
  sku: string;
  quantity: number;
}

export type Payment =
  | { method: "cash"; tendered_cents: number }
  | { method: "card"; reference: string };

export interface OrderRequest {
  idempotency_key: string;
  customer_name: string | null;
  customer_email: string | null;
  lines: OrderLineRequest[];
  payment: Payment;
}

export interface PlacedOrder {
  order_id: string;
  receipt_number: string;
  total_cents: number;
  change_due_cents: number | null;
  created_at: string;
  duplicate: boolean;
}

export type EmailStatus = "none" | "queued" | "sent" | "failed";

export interface OrderSummary {
  order_id: string;
  receipt_number: string;
  created_at: string;
  customer_name: string | null;
  customer_email: string | null;
  total_cents: number;
  currency: string;
  payment_method: "cash" | "card";
  line_count: number;
  email_status: EmailStatus;
  email_error: string | null;
  /** The email's job while the queue has it. */
  email_job_id: string | null;
}

export interface JobStats {
  pending: number;
  running: number;
  failed: number;
  done: number;
  dead: number;
  paused: boolean;
}

export type JobStatus = "Pending" | "Running" | "Done" | "Failed" | "Killed";

export interface JobInfo {
  id: string;
  job_type: string;
  status: JobStatus;
  attempts: number;
  max_attempts: number;
  run_at: string | null;
  last_error: string | null;
  idempotency_key: string | null;
  lock_by: string | null;
  done_at: string | null;
  /** The receipt number of the order the job is for, if any. */
  receipt_number: string | null;
}

/** `get_job`: a job with its decoded payload. */
export interface JobDetail extends JobInfo {
  payload: unknown;
  lock_at: string | null;
}

export interface QueueState {
  queue: string;
  paused: boolean;
}

/** What every failed command rejects with. */
export interface PublicError {
  code: string;
  message: string;
  field?: string;
}
