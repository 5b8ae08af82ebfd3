//! Measures, on this machine and in one run, what ShopDesk's design promises:
//! checkout answers about as fast as one durable SQLite commit, whatever the
//! background jobs are doing, and the embedded queue keeps up with it.
//!
//! Every measurement uses a fresh database in its own temporary directory
//! (`tempfile`, so under `$TMPDIR`: point it at the disk you care about).
//! [`run`] takes the sizes ([`Sizes::full`], [`Sizes::quick`]) and returns
//! [`Figures`]; `main.rs` prints them as JSON or as a table.

pub mod checkout;
pub mod queue;
pub mod raw;
pub mod report;

use std::time::Duration;

pub use report::{Figures, Targets};

/// Errors of a measurement (any failure stops the run).
pub type BenchError = Box<dyn std::error::Error + Send + Sync>;
pub type BenchResult<T> = Result<T, BenchError>;

/// How much of everything to do.
#[derive(Debug, Clone)]
pub struct Sizes {
    pub name: &'static str,
    /// One-row commits with synchronous=NORMAL (throughput).
    pub raw_normal_commits: usize,
    /// One-row commits with synchronous=FULL (latency samples).
    pub raw_full_commits: usize,
    /// Orders already in the database when checkout is timed.
    pub seeded_orders: usize,
    /// Timed checkouts, with the worker alongside (normal and slow email).
    pub checkout_samples: usize,
    /// Pause after each order.
    pub checkout_gap: Duration,
    /// Turns each checkout till takes (normal, slow email, no worker).
    pub checkout_blocks: usize,
    /// Orders placed with synchronous=OFF to see where checkout's time goes.
    pub anatomy_orders: usize,
    /// What "a slow email" takes: how long the email provider (a mail sink
    /// on loopback) takes to answer each email, on the slow-email till and
    /// for the checkouts that send the email before answering.
    pub email_latency: Duration,
    /// Timed checkouts that send the email before answering.
    pub sync_email_samples: usize,
    /// Jobs enqueued one transaction each.
    pub enqueue_jobs: usize,
    /// Jobs enqueued in one transaction.
    pub enqueue_batch_jobs: usize,
    /// No-op jobs drained by `run_until_idle`.
    pub drain_jobs: usize,
    /// Drains of each kind (the median counts).
    pub drain_rounds: usize,
    /// Done jobs already in the table for the second drain.
    pub history_jobs: usize,
    /// Enqueue → handler start samples on an idle queue.
    pub pickup_samples: usize,
}

impl Sizes {
    /// The real measurement (about two minutes on 2 cores).
    pub fn full() -> Self {
        Self {
            name: "full",
            raw_normal_commits: 20_000,
            raw_full_commits: 1_000,
            seeded_orders: 100_000,
            checkout_samples: 2_000,
            checkout_gap: Duration::from_millis(10),
            checkout_blocks: 10,
            anatomy_orders: 500,
            email_latency: Duration::from_millis(500),
            sync_email_samples: 20,
            enqueue_jobs: 20_000,
            enqueue_batch_jobs: 100_000,
            drain_jobs: 20_000,
            drain_rounds: 3,
            history_jobs: 1_000_000,
            pickup_samples: 200,
        }
    }

    /// A smoke run: the same measurements, smaller (about half a minute).
    pub fn quick() -> Self {
        Self {
            name: "quick",
            raw_normal_commits: 2_000,
            raw_full_commits: 200,
            seeded_orders: 5_000,
            checkout_samples: 300,
            checkout_gap: Duration::from_millis(10),
            checkout_blocks: 4,
            anatomy_orders: 200,
            email_latency: Duration::from_millis(500),
            sync_email_samples: 5,
            enqueue_jobs: 2_000,
            enqueue_batch_jobs: 10_000,
            drain_jobs: 2_000,
            drain_rounds: 2,
            history_jobs: 100_000,
            pickup_samples: 50,
        }
    }

    /// For the test: every code path, in seconds, even in a debug build.
    pub fn tiny() -> Self {
        Self {
            name: "tiny",
            raw_normal_commits: 50,
            raw_full_commits: 20,
            seeded_orders: 100,
            checkout_samples: 20,
            checkout_gap: Duration::from_millis(1),
            checkout_blocks: 2,
            anatomy_orders: 10,
            email_latency: Duration::from_millis(20),
            sync_email_samples: 3,
            enqueue_jobs: 100,
            enqueue_batch_jobs: 500,
            drain_jobs: 200,
            drain_rounds: 1,
            history_jobs: 1_000,
            pickup_samples: 10,
        }
    }
}

/// Runs every measurement in turn; `progress` hears what is being measured.
pub fn run(sizes: &Sizes, progress: &mut dyn FnMut(&str)) -> BenchResult<Figures> {
    let load_at_start = report::load_average();
    progress("raw SQLite commits, synchronous=NORMAL");
    let normal = raw::commits(raw::Sync::Normal, sizes.raw_normal_commits)?;
    progress("raw SQLite commits, synchronous=FULL");
    let full = raw::commits(raw::Sync::Full, sizes.raw_full_commits)?;

    progress("enqueue, one job per transaction");
    let enqueue = queue::enqueue_one_per_tx(sizes.enqueue_jobs)?;
    progress("enqueue, one transaction");
    let enqueue_batch = queue::enqueue_batch(sizes.enqueue_batch_jobs)?;
    progress("drain no-op jobs, in turn without and with a long history");
    let drains = queue::drains(sizes.drain_jobs, sizes.history_jobs, sizes.drain_rounds)?;
    progress("pickup on an idle queue");
    let pickup = queue::pickup(sizes.pickup_samples)?;

    progress("checkout with the worker alongside (normal, slow email) and without it");
    let checkout = checkout::compare(
        checkout_pace(sizes),
        sizes.email_latency,
        sizes.anatomy_orders,
    )?;
    progress("checkout that sends the email before answering");
    let sync_email = checkout::sync_email(
        checkout::Pace {
            samples: sizes.sync_email_samples,
            ..checkout_pace(sizes)
        },
        sizes.email_latency,
    )?;

    Ok(Figures {
        sizes: sizes.clone(),
        machine: report::Machine::detect(load_at_start),
        raw_normal: normal,
        raw_full: full,
        checkout: checkout.normal,
        checkout_slow_email: checkout.slow_email,
        checkout_no_worker: checkout.no_worker,
        checkout_anatomy: checkout.anatomy,
        sync_email_checkout: sync_email,
        enqueue,
        enqueue_batch,
        drains,
        pickup,
    })
}

fn checkout_pace(sizes: &Sizes) -> checkout::Pace {
    checkout::Pace {
        seeded: sizes.seeded_orders,
        samples: sizes.checkout_samples,
        gap: sizes.checkout_gap,
        blocks: sizes.checkout_blocks,
    }
}

/// The measurements [`run_one`] knows, by name.
pub const MEASUREMENTS: &[&str] = &[
    "raw-normal",
    "raw-full",
    "enqueue",
    "enqueue-batch",
    "drains",
    "pickup",
    "checkout",
    "sync-email",
];

/// Runs one measurement alone (to profile it, or to repeat it): its main
/// figures as (key, value) pairs, keys as in the full report.
pub fn run_one(name: &str, sizes: &Sizes) -> BenchResult<Vec<(&'static str, f64)>> {
    Ok(match name {
        "raw-normal" => {
            let r = raw::commits(raw::Sync::Normal, sizes.raw_normal_commits)?;
            vec![("raw_commit_normal_per_s", r.rate.per_s())]
        }
        "raw-full" => {
            let r = raw::commits(raw::Sync::Full, sizes.raw_full_commits)?;
            vec![
                ("raw_commit_full_p50_ms", r.latencies.p50_ms()),
                ("raw_commit_full_p99_ms", r.latencies.p99_ms()),
            ]
        }
        "enqueue" => vec![(
            "enqueue_per_s",
            queue::enqueue_one_per_tx(sizes.enqueue_jobs)?.per_s(),
        )],
        "enqueue-batch" => vec![(
            "enqueue_batch_per_s",
            queue::enqueue_batch(sizes.enqueue_batch_jobs)?.per_s(),
        )],
        "drains" => {
            let d = queue::drains(sizes.drain_jobs, sizes.history_jobs, sizes.drain_rounds)?;
            vec![
                ("drain_per_s", d.fresh_per_s()),
                ("drain_per_s_1m_history", d.history_per_s()),
            ]
        }
        "pickup" => {
            let p = queue::pickup(sizes.pickup_samples)?;
            vec![
                ("pickup_p50_ms", p.from_enqueue.p50_ms()),
                ("pickup_p99_ms", p.from_enqueue.p99_ms()),
            ]
        }
        "checkout" => {
            let checkout::Comparison {
                normal: c,
                slow_email: s,
                no_worker: n,
                anatomy: a,
            } = checkout::compare(
                checkout_pace(sizes),
                sizes.email_latency,
                sizes.anatomy_orders,
            )?;
            vec![
                ("checkout_sync_off_p50_ms", a.sync_off.p50_ms()),
                ("checkout_wal_pages_per_order", a.wal_pages_per_order),
                ("checkout_no_worker_p50_ms", n.latencies.p50_ms()),
                ("checkout_no_worker_p99_ms", n.latencies.p99_ms()),
                ("checkout_p50_ms", c.latencies.p50_ms()),
                ("checkout_p99_ms", c.latencies.p99_ms()),
                ("checkout_raw_full_p50_ms", c.raw_full.p50_ms()),
                ("checkout_slow_email_p50_ms", s.latencies.p50_ms()),
                ("checkout_slow_email_p99_ms", s.latencies.p99_ms()),
                ("checkout_slow_email_raw_full_p50_ms", s.raw_full.p50_ms()),
            ]
        }
        "sync-email" => {
            let run = checkout::sync_email(
                checkout::Pace {
                    samples: sizes.sync_email_samples,
                    ..checkout_pace(sizes)
                },
                sizes.email_latency,
            )?;
            vec![("sync_email_checkout_p50_ms", run.latencies.p50_ms())]
        }
        other => {
            return Err(format!(
                "unknown measurement {other:?} (one of: {})",
                MEASUREMENTS.join(", ")
            )
            .into())
        }
    })
}

/// Latency samples.
#[derive(Debug, Clone, Default)]
pub struct Latencies(Vec<Duration>);

impl Latencies {
    pub fn new(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        Self(samples)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Nearest-rank percentile (`q` in 0..=1), in milliseconds.
    pub fn percentile_ms(&self, q: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        let rank = (q * self.0.len() as f64).ceil() as usize;
        let i = rank.clamp(1, self.0.len()) - 1;
        ms(self.0[i])
    }

    pub fn p50_ms(&self) -> f64 {
        self.percentile_ms(0.50)
    }

    pub fn p99_ms(&self) -> f64 {
        self.percentile_ms(0.99)
    }

    pub fn max_ms(&self) -> f64 {
        self.0.last().map_or(f64::NAN, |d| ms(*d))
    }
}

/// `count` things in `elapsed`, per second.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rate {
    pub count: u64,
    pub elapsed: Duration,
}

impl Rate {
    pub fn per_s(&self) -> f64 {
        self.count as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A multi-threaded runtime with as many threads as cores (what the app's
/// Tauri runtime has).
pub(crate) fn runtime() -> BenchResult<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("bench-rt")
        .build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let l = Latencies::new((1..=100).rev().map(Duration::from_millis).collect());
        assert_eq!(l.p50_ms(), 50.0);
        assert_eq!(l.p99_ms(), 99.0);
        assert_eq!(l.max_ms(), 100.0);
        assert_eq!(Latencies::new(vec![Duration::from_millis(3)]).p99_ms(), 3.0);
    }

    /// Every measurement at tiny sizes: each key is present and positive.
    /// No timing is asserted (this runs on busy machines, in debug builds).
    #[test]
    fn a_tiny_run_reports_every_key() {
        let figures = run(&Sizes::tiny(), &mut |_| {}).unwrap();
        let json = figures.to_json();
        let obj = json.as_object().unwrap();
        for key in report::NUMERIC_KEYS {
            let v = obj
                .get(*key)
                .unwrap_or_else(|| panic!("missing {key}"))
                .as_f64()
                .unwrap_or_else(|| panic!("{key} is not a number: {}", obj[*key]));
            assert!(v > 0.0 && v.is_finite(), "{key} = {v}");
        }
        let targets = obj["targets"].as_object().unwrap();
        assert_eq!(targets.len(), report::TARGET_KEYS.len());
        for key in report::TARGET_KEYS {
            assert!(targets[*key].is_boolean(), "{key}");
        }
        assert!(obj["machine"]["cores"].as_u64().unwrap() >= 1);
        assert!(obj["sqlite_version"].as_str().unwrap().starts_with('3'));
        assert_eq!(
            figures.drains.fresh[0].jobs_done,
            Sizes::tiny().drain_jobs as u64
        );
        assert_eq!(
            figures.drains.history[0].history,
            Sizes::tiny().history_jobs as u64
        );
        let orders = (Sizes::tiny().checkout_samples + checkout::WARMUP) as u64;
        let (normal, slow) = (&figures.checkout, &figures.checkout_slow_email);
        assert_eq!(normal.emails_written + normal.emails_pending, orders);
        assert_eq!(slow.emails_written + slow.emails_pending, orders);
        // The normal till writes to the outbox; every email job done on the
        // slow one was accepted by the HTTP provider.
        assert_eq!(normal.emails_accepted_by_provider, 0);
        assert!(
            slow.emails_written > 0 && slow.emails_written <= slow.emails_accepted_by_provider,
            "{slow:?}"
        );
        // Each checkout of the comparison mode sent its email over HTTP.
        let sync = &figures.sync_email_checkout;
        assert_eq!(
            sync.emails_accepted_by_provider,
            (Sizes::tiny().sync_email_samples + checkout::WARMUP) as u64,
        );
        assert!(
            sync.latencies.p50_ms() >= ms(Sizes::tiny().email_latency),
            "{sync:?}"
        );
        // The table renders every figure too.
        let table = figures.to_table();
        assert!(table.contains("checkout_p99_ms"), "{table}");
    }

    #[test]
    fn one_measurement_runs_alone_by_name() {
        let figures = run_one("drains", &Sizes::tiny()).unwrap();
        let keys: Vec<_> = figures.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["drain_per_s", "drain_per_s_1m_history"]);
        assert!(figures.iter().all(|(_, v)| *v > 0.0), "{figures:?}");
        let err = run_one("nope", &Sizes::tiny()).unwrap_err().to_string();
        assert!(err.contains("sync-email"), "{err}");
    }
}
