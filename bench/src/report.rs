//! The figures of one run, the targets they are held to, and how they are
//! printed (one JSON object with keys in a stable order, or a table).

use serde_json::{json, Value};

use crate::checkout::CheckoutRun;
use crate::queue::{Drains, Pickup};
use crate::raw::RawCommits;
use crate::{ms, Rate, Sizes};

/// The machine the figures come from.
#[derive(Debug, Clone)]
pub struct Machine {
    pub cores: usize,
    pub cpu_model: Option<String>,
    /// 1-minute load average when the run started and when it ended: other
    /// work on the machine shows in the figures.
    pub load_at_start: Option<f64>,
    pub load_at_end: Option<f64>,
}

/// The 1-minute load average, where the OS tells it.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

impl Machine {
    /// This machine now (`load_at_start` measured earlier).
    pub fn detect(load_at_start: Option<f64>) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            });
        Self {
            cores,
            cpu_model,
            load_at_start,
            load_at_end: load_average(),
        }
    }
}

/// Everything one run measured.
#[derive(Debug, Clone)]
pub struct Figures {
    pub sizes: Sizes,
    pub machine: Machine,
    pub raw_normal: RawCommits,
    pub raw_full: RawCommits,
    pub checkout: CheckoutRun,
    pub checkout_slow_email: CheckoutRun,
    pub checkout_no_worker: CheckoutRun,
    pub checkout_anatomy: crate::checkout::Anatomy,
    pub sync_email_checkout: CheckoutRun,
    pub enqueue: Rate,
    pub enqueue_batch: Rate,
    pub drains: Drains,
    pub pickup: Pickup,
}

/// Whether each target is met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Targets {
    /// checkout p50 ≤ 1.5 × one raw FULL commit (p50 of the commits paired
    /// with the orders).
    pub checkout_p50_le_1_5x_raw_full: bool,
    /// checkout p99 ≤ 3 × one raw FULL commit (the same p50).
    pub checkout_p99_le_3x_raw_full: bool,
    /// A slow email provider does not slow checkout: its p99 is at most 10%
    /// above the p99 with the email written to the outbox.
    pub checkout_slow_email_p99_within_10pct: bool,
    /// drain ≥ 0.5 × raw NORMAL commits/s.
    pub drain_ge_0_5x_raw_normal: bool,
    /// drain over the long history ≥ 0.9 × drain on an empty table
    /// (medians).
    pub drain_1m_history_ge_0_9x_drain: bool,
    pub pickup_p50_le_1ms: bool,
    pub pickup_p99_le_5ms: bool,
}

/// The keys of [`Targets`] in the JSON, in order.
pub const TARGET_KEYS: &[&str] = &[
    "checkout_p50_le_1_5x_raw_full",
    "checkout_p99_le_3x_raw_full",
    "checkout_slow_email_p99_within_10pct",
    "drain_ge_0_5x_raw_normal",
    "drain_1m_history_ge_0_9x_drain",
    "pickup_p50_le_1ms",
    "pickup_p99_le_5ms",
];

/// Numeric keys that every run has, each a positive number.
pub const NUMERIC_KEYS: &[&str] = &[
    "raw_commit_normal_per_s",
    "raw_commit_full_p50_ms",
    "raw_commit_full_p99_ms",
    "checkout_p50_ms",
    "checkout_p99_ms",
    "checkout_max_ms",
    "checkout_raw_full_p50_ms",
    "checkout_slow_email_p50_ms",
    "checkout_slow_email_p99_ms",
    "checkout_no_worker_p50_ms",
    "checkout_no_worker_p99_ms",
    "checkout_sync_off_p50_ms",
    "checkout_wal_pages_per_order",
    "sync_email_checkout_p50_ms",
    "email_latency_ms",
    "enqueue_per_s",
    "enqueue_batch_per_s",
    "drain_per_s",
    "drain_per_s_1m_history",
    "pickup_p50_ms",
    "pickup_p99_ms",
    "pickup_after_commit_p50_ms",
    "pickup_after_commit_p99_ms",
];

/// A JSON value whose object keys keep their order when printed.
enum Field {
    V(Value),
    Obj(Vec<(&'static str, Field)>),
}

impl Field {
    fn to_value(&self) -> Value {
        match self {
            Field::V(v) => v.clone(),
            Field::Obj(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, f)| (k.to_string(), f.to_value()))
                    .collect(),
            ),
        }
    }

    fn write(&self, out: &mut String, indent: usize) {
        match self {
            Field::V(v) => out.push_str(&v.to_string()),
            Field::Obj(fields) => {
                out.push_str("{\n");
                for (i, (k, f)) in fields.iter().enumerate() {
                    out.push_str(&" ".repeat(indent + 2));
                    out.push_str(&Value::from(*k).to_string());
                    out.push_str(": ");
                    f.write(out, indent + 2);
                    if i + 1 < fields.len() {
                        out.push(',');
                    }
                    out.push('\n');
                }
                out.push_str(&" ".repeat(indent));
                out.push('}');
            }
        }
    }
}

/// Rounded for reading (the JSON is for people and scripts, not for
/// sub-microsecond comparisons).
fn num(x: f64, decimals: i32) -> Field {
    let scale = 10f64.powi(decimals);
    let rounded = (x * scale).round() / scale;
    Field::V(serde_json::Number::from_f64(rounded).map_or(Value::Null, Value::Number))
}

fn int(x: u64) -> Field {
    Field::V(json!(x))
}

impl Figures {
    pub fn targets(&self) -> Targets {
        let baseline = self.checkout.raw_full.p50_ms();
        let checkout_p99 = self.checkout.latencies.p99_ms();
        let drain = self.drains.fresh_per_s();
        Targets {
            checkout_p50_le_1_5x_raw_full: self.checkout.latencies.p50_ms() <= 1.5 * baseline,
            checkout_p99_le_3x_raw_full: checkout_p99 <= 3.0 * baseline,
            checkout_slow_email_p99_within_10pct: self.checkout_slow_email.latencies.p99_ms()
                <= 1.1 * checkout_p99,
            drain_ge_0_5x_raw_normal: drain >= 0.5 * self.raw_normal.rate.per_s(),
            drain_1m_history_ge_0_9x_drain: self.drains.history_per_s() >= 0.9 * drain,
            pickup_p50_le_1ms: self.pickup.from_enqueue.p50_ms() <= 1.0,
            pickup_p99_le_5ms: self.pickup.from_enqueue.p99_ms() <= 5.0,
        }
    }

    fn fields(&self) -> Vec<(&'static str, Field)> {
        let t = self.targets();
        let target_values = [
            t.checkout_p50_le_1_5x_raw_full,
            t.checkout_p99_le_3x_raw_full,
            t.checkout_slow_email_p99_within_10pct,
            t.drain_ge_0_5x_raw_normal,
            t.drain_1m_history_ge_0_9x_drain,
            t.pickup_p50_le_1ms,
            t.pickup_p99_le_5ms,
        ];
        let targets: Vec<(&'static str, Field)> = TARGET_KEYS
            .iter()
            .zip(target_values)
            .map(|(k, v)| (*k, Field::V(Value::Bool(v))))
            .collect();
        let met = target_values.iter().filter(|v| **v).count() as u64;

        let raw_full_p50 = self.raw_full.latencies.p50_ms();
        let drain = self.drains.fresh_per_s();
        let drain_history = self.drains.history_per_s();
        let c = &self.checkout;
        let s = &self.checkout_slow_email;
        let y = &self.sync_email_checkout;
        let n = &self.checkout_no_worker;
        let baseline = c.raw_full.p50_ms();
        let rates = |drains: &[crate::queue::Drain]| {
            Field::V(json!(drains
                .iter()
                .map(|d| d.rate.per_s().round())
                .collect::<Vec<_>>()))
        };
        vec![
            ("mode", Field::V(json!(self.sizes.name))),
            (
                "machine",
                Field::Obj(vec![
                    ("cores", int(self.machine.cores as u64)),
                    ("cpu_model", Field::V(json!(self.machine.cpu_model))),
                    (
                        "load_avg_1m_at_start",
                        Field::V(json!(self.machine.load_at_start)),
                    ),
                    (
                        "load_avg_1m_at_end",
                        Field::V(json!(self.machine.load_at_end)),
                    ),
                ]),
            ),
            ("sqlite_version", Field::V(json!(rusqlite::version()))),
            (
                "raw_commit_normal_per_s",
                num(self.raw_normal.rate.per_s(), 0),
            ),
            (
                "raw_commit_normal_p50_ms",
                num(self.raw_normal.latencies.p50_ms(), 3),
            ),
            ("raw_commit_full_p50_ms", num(raw_full_p50, 3)),
            (
                "raw_commit_full_p99_ms",
                num(self.raw_full.latencies.p99_ms(), 3),
            ),
            ("raw_commit_full_per_s", num(self.raw_full.rate.per_s(), 0)),
            ("checkout_p50_ms", num(c.latencies.p50_ms(), 3)),
            ("checkout_p99_ms", num(c.latencies.p99_ms(), 3)),
            ("checkout_max_ms", num(c.latencies.max_ms(), 3)),
            ("checkout_raw_full_p50_ms", num(baseline, 3)),
            ("checkout_raw_full_p99_ms", num(c.raw_full.p99_ms(), 3)),
            ("checkout_samples", int(c.latencies.len() as u64)),
            ("checkout_gap_ms", num(ms(self.sizes.checkout_gap), 1)),
            ("checkout_seeded_orders", int(c.seeded_orders)),
            ("checkout_seed_s", num(c.seed_elapsed.as_secs_f64(), 2)),
            ("checkout_jobs_backlog_at_end", int(c.backlog_at_end)),
            ("checkout_emails_written", int(c.emails_written)),
            ("checkout_slow_email_p50_ms", num(s.latencies.p50_ms(), 3)),
            ("checkout_slow_email_p99_ms", num(s.latencies.p99_ms(), 3)),
            ("checkout_slow_email_max_ms", num(s.latencies.max_ms(), 3)),
            (
                "checkout_slow_email_raw_full_p50_ms",
                num(s.raw_full.p50_ms(), 3),
            ),
            (
                "checkout_slow_email_raw_full_p99_ms",
                num(s.raw_full.p99_ms(), 3),
            ),
            (
                "checkout_slow_email_jobs_backlog_at_end",
                int(s.backlog_at_end),
            ),
            ("checkout_slow_email_emails_sent", int(s.emails_written)),
            ("checkout_no_worker_p50_ms", num(n.latencies.p50_ms(), 3)),
            ("checkout_no_worker_p99_ms", num(n.latencies.p99_ms(), 3)),
            ("checkout_no_worker_max_ms", num(n.latencies.max_ms(), 3)),
            (
                "checkout_no_worker_raw_full_p50_ms",
                num(n.raw_full.p50_ms(), 3),
            ),
            (
                "checkout_no_worker_raw_full_p99_ms",
                num(n.raw_full.p99_ms(), 3),
            ),
            (
                "checkout_sync_off_p50_ms",
                num(self.checkout_anatomy.sync_off.p50_ms(), 3),
            ),
            (
                "checkout_sync_off_p99_ms",
                num(self.checkout_anatomy.sync_off.p99_ms(), 3),
            ),
            (
                "checkout_wal_pages_per_order",
                num(self.checkout_anatomy.wal_pages_per_order, 1),
            ),
            ("sync_email_checkout_p50_ms", num(y.latencies.p50_ms(), 3)),
            ("sync_email_checkout_max_ms", num(y.latencies.max_ms(), 3)),
            ("sync_email_checkout_samples", int(y.latencies.len() as u64)),
            ("email_latency_ms", num(ms(self.sizes.email_latency), 0)),
            ("enqueue_per_s", num(self.enqueue.per_s(), 0)),
            ("enqueue_batch_per_s", num(self.enqueue_batch.per_s(), 0)),
            ("enqueue_batch_jobs", int(self.enqueue_batch.count)),
            ("drain_per_s", num(drain, 0)),
            ("drain_per_s_runs", rates(&self.drains.fresh)),
            ("drain_jobs", int(self.sizes.drain_jobs as u64)),
            ("drain_per_s_1m_history", num(drain_history, 0)),
            ("drain_per_s_1m_history_runs", rates(&self.drains.history)),
            (
                "drain_history_done_jobs",
                int(self.drains.history.first().map_or(0, |d| d.history)),
            ),
            (
                "drain_history_insert_s",
                num(self.drains.history_insert.as_secs_f64(), 2),
            ),
            ("pickup_p50_ms", num(self.pickup.from_enqueue.p50_ms(), 3)),
            ("pickup_p99_ms", num(self.pickup.from_enqueue.p99_ms(), 3)),
            ("pickup_max_ms", num(self.pickup.from_enqueue.max_ms(), 3)),
            (
                "pickup_after_commit_p50_ms",
                num(self.pickup.from_commit.p50_ms(), 3),
            ),
            (
                "pickup_after_commit_p99_ms",
                num(self.pickup.from_commit.p99_ms(), 3),
            ),
            ("pickup_samples", int(self.pickup.from_enqueue.len() as u64)),
            (
                "ratios",
                Field::Obj(vec![
                    (
                        "checkout_p50_over_paired_raw_full_p50",
                        num(c.latencies.p50_ms() / baseline, 2),
                    ),
                    (
                        "checkout_p99_over_paired_raw_full_p50",
                        num(c.latencies.p99_ms() / baseline, 2),
                    ),
                    (
                        "checkout_no_worker_p50_over_paired_raw_full_p50",
                        num(n.latencies.p50_ms() / n.raw_full.p50_ms(), 2),
                    ),
                    (
                        "checkout_no_worker_p99_over_paired_raw_full_p50",
                        num(n.latencies.p99_ms() / n.raw_full.p50_ms(), 2),
                    ),
                    (
                        "checkout_p50_over_raw_full_p50",
                        num(c.latencies.p50_ms() / raw_full_p50, 2),
                    ),
                    (
                        "checkout_p99_over_raw_full_p50",
                        num(c.latencies.p99_ms() / raw_full_p50, 2),
                    ),
                    (
                        "checkout_slow_email_p99_over_checkout_p99",
                        num(s.latencies.p99_ms() / c.latencies.p99_ms(), 2),
                    ),
                    (
                        "drain_over_raw_normal",
                        num(drain / self.raw_normal.rate.per_s(), 3),
                    ),
                    ("drain_history_over_drain", num(drain_history / drain, 2)),
                    (
                        "sync_email_checkout_p50_over_checkout_p50",
                        num(y.latencies.p50_ms() / c.latencies.p50_ms(), 0),
                    ),
                ]),
            ),
            ("targets", Field::Obj(targets)),
            ("targets_met", int(met)),
            ("targets_total", int(TARGET_KEYS.len() as u64)),
        ]
    }

    /// The figures as a JSON value (keys sorted).
    pub fn to_json(&self) -> Value {
        Field::Obj(self.fields()).to_value()
    }

    /// The figures as one pretty JSON object, keys in a stable order.
    pub fn to_json_string(&self) -> String {
        let mut out = String::new();
        Field::Obj(self.fields()).write(&mut out, 0);
        out
    }

    /// A table for reading in a terminal.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let mut rows: Vec<(String, String)> = Vec::new();
        fn flatten(
            prefix: &str,
            fields: &[(&'static str, Field)],
            rows: &mut Vec<(String, String)>,
        ) {
            for (k, f) in fields {
                let key = if prefix.is_empty() {
                    k.to_string()
                } else {
                    format!("{prefix}.{k}")
                };
                match f {
                    Field::Obj(inner) => flatten(&key, inner, rows),
                    Field::V(Value::Bool(b)) => {
                        rows.push((key, if *b { "PASS" } else { "FAIL" }.into()))
                    }
                    Field::V(Value::String(s)) => rows.push((key, s.clone())),
                    Field::V(v) => rows.push((key, v.to_string())),
                }
            }
        }
        flatten("", &self.fields(), &mut rows);
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (k, v) in rows {
            out.push_str(&format!("{k:<width$}  {v}\n"));
        }
        out
    }
}
