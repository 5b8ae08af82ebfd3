//! The job queue on its own: enqueue throughput, drain throughput (also over
//! a long history of finished jobs), and how soon an idle worker starts a
//! job after its commit.

use std::path::Path;
use std::pin::Pin;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection};
use shopdesk_core::db::{self, Durability};
use shopdesk_core::jobs;
use shopdesk_core::queue::{self, Job, JobError, JobHandler, NewJob};
use shopdesk_core::worker::{self, WorkerConfig};

use crate::{runtime, BenchResult, Latencies, Rate};

/// What a [`JobHandler`] returns.
pub(crate) type JobFuture = Pin<Box<dyn std::future::Future<Output = Result<(), JobError>> + Send>>;

/// The job type of the no-op jobs (its own queue, `bench`).
pub const NOOP_JOB: &str = "bench.noop";

/// Succeeds at once.
pub struct NoOp;

impl JobHandler for NoOp {
    fn handle(&self, _job: Job) -> JobFuture {
        Box::pin(async { Ok(()) })
    }
}

/// A worker started with [`worker::run`] on a runtime, stopped on demand.
pub(crate) struct RunningWorker {
    stop: tokio::sync::oneshot::Sender<()>,
    join: tokio::task::JoinHandle<shopdesk_core::Result<()>>,
}

impl RunningWorker {
    pub(crate) fn start(
        rt: &tokio::runtime::Runtime,
        config: WorkerConfig,
        handler: Arc<dyn JobHandler>,
    ) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let join = rt.spawn(worker::run(config, handler, async move {
            let _ = stopped.await;
        }));
        Self { stop, join }
    }

    pub(crate) fn stop(self, rt: &tokio::runtime::Runtime) -> BenchResult<()> {
        let _ = self.stop.send(());
        rt.block_on(self.join)??;
        Ok(())
    }
}

fn open(path: &Path) -> BenchResult<Connection> {
    Ok(db::open(path, Durability::Normal)?)
}

/// Jobs enqueued one per `BEGIN IMMEDIATE` transaction (each with an
/// idempotency key, as checkout's jobs have), synchronous=NORMAL as the
/// worker's connection.
pub fn enqueue_one_per_tx(n: usize) -> BenchResult<Rate> {
    let dir = tempfile::tempdir()?;
    let mut conn = open(&dir.path().join("queue.db"))?;
    let started = Instant::now();
    for i in 0..n {
        let job = NewJob::new(NOOP_JOB, serde_json::json!({ "i": i }))
            .idempotency_key(format!("enqueue/{i}"));
        db::write(&mut conn, |tx| queue::enqueue(tx, &job))?;
    }
    Ok(Rate {
        count: n as u64,
        elapsed: started.elapsed(),
    })
}

/// `n` jobs enqueued in one transaction.
pub fn enqueue_batch(n: usize) -> BenchResult<Rate> {
    let dir = tempfile::tempdir()?;
    let mut conn = open(&dir.path().join("queue.db"))?;
    let started = Instant::now();
    db::write(&mut conn, |tx| {
        for i in 0..n {
            let job = NewJob::new(NOOP_JOB, serde_json::json!({ "i": i }))
                .idempotency_key(format!("enqueue/{i}"));
            queue::enqueue(tx, &job)?;
        }
        Ok(())
    })?;
    Ok(Rate {
        count: n as u64,
        elapsed: started.elapsed(),
    })
}

/// A drain's outcome.
#[derive(Debug, Clone, Default)]
pub struct Drain {
    /// Jobs done over the whole `run_until_idle` (worker start included).
    pub rate: Rate,
    pub jobs_done: u64,
    /// Done jobs in the table before the drain.
    pub history: u64,
}

/// Drains measured in alternation, without and with a long history, so that
/// other work on the machine weighs on both alike.
#[derive(Debug, Clone, Default)]
pub struct Drains {
    pub fresh: Vec<Drain>,
    pub history: Vec<Drain>,
    /// How long inserting the history took (not part of any rate).
    pub history_insert: Duration,
}

impl Drains {
    /// Median jobs/s of the drains on an empty table.
    pub fn fresh_per_s(&self) -> f64 {
        median(self.fresh.iter().map(|d| d.rate.per_s()))
    }

    /// Median jobs/s of the drains over the history.
    pub fn history_per_s(&self) -> f64 {
        median(self.history.iter().map(|d| d.rate.per_s()))
    }
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// `rounds` times, in turn: `jobs` no-op jobs drained from a fresh
/// database, then `jobs` more drained from one database that holds
/// `history` Done jobs (written straight into the table once, before the
/// first round; each round adds its `jobs` to it).
pub fn drains(jobs: usize, history: usize, rounds: usize) -> BenchResult<Drains> {
    let history_dir = tempfile::tempdir()?;
    let history_path = history_dir.path().join("queue.db");
    let started = Instant::now();
    {
        let mut conn = open(&history_path)?;
        insert_done_history(&mut conn, history)?;
    }
    let mut result = Drains {
        history_insert: started.elapsed(),
        ..Drains::default()
    };
    for _ in 0..rounds.max(1) {
        let dir = tempfile::tempdir()?;
        result
            .fresh
            .push(drain_once(&dir.path().join("queue.db"), jobs)?);
        result.history.push(drain_once(&history_path, jobs)?);
    }
    Ok(result)
}

/// Enqueues `jobs` no-op jobs in one transaction into the database at
/// `path` (created if needed), then drains them with
/// [`worker::run_until_idle`] and a default [`WorkerConfig`].
pub fn drain_once(path: &Path, jobs: usize) -> BenchResult<Drain> {
    let mut conn = open(path)?;
    let history: i64 = conn.query_row("SELECT count(*) FROM Jobs", [], |r| r.get(0))?;
    db::write(&mut conn, |tx| {
        for i in 0..jobs {
            queue::enqueue(tx, &NewJob::new(NOOP_JOB, serde_json::json!({ "i": i })))?;
        }
        Ok(())
    })?;
    checkpoint(&conn)?;
    drop(conn);

    let rt = runtime()?;
    let started = Instant::now();
    let summary = rt.block_on(worker::run_until_idle(
        WorkerConfig::new(path),
        Arc::new(NoOp),
    ))?;
    let elapsed = started.elapsed();
    if summary.done != jobs as u64 || summary.failed != 0 || summary.dead != 0 {
        return Err(format!("drain of {jobs} jobs ended with {summary:?}").into());
    }
    Ok(Drain {
        rate: Rate {
            count: summary.done,
            elapsed,
        },
        jobs_done: summary.done,
        history: history as u64,
    })
}

/// Moves everything in the WAL into the database file and empties the WAL,
/// so a measurement does not start with a checkpoint of the set-up's pages.
pub(crate) fn checkpoint(conn: &Connection) -> BenchResult<()> {
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    Ok(())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Twenty days of finished order jobs (email and notification, in turn),
/// written with one SQL INSERT per row in one transaction, as the worker
/// leaves them: Done, one attempt, a worker id in `lock_by`, ids (ULIDs)
/// older than any new job's. Twenty days stays inside the default
/// retention, so the worker's pruning at start leaves them all.
pub(crate) fn insert_done_history(conn: &mut Connection, n: usize) -> BenchResult<()> {
    conn.pragma_update(None, "synchronous", "OFF")?;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    {
        let mut insert = tx.prepare(
            "INSERT INTO Jobs (job, id, job_type, status, attempts, max_attempts, run_at,
                               run_at_ms, lock_at, lock_by, done_at, priority, idempotency_key)
             VALUES (?1, ?2, ?3, 'Done', 1, ?4, ?5, ?6, ?5, ?7, ?5, 0, ?8)",
        )?;
        let span_ms: i64 = 20 * 24 * 3600 * 1000;
        let start_ms = now_ms() - span_ms;
        let step = (span_ms / n.max(1) as i64).max(1);
        let worker_id = format!("shopdesk-{}", ulid::Ulid::new());
        let mut order_id = String::new();
        for i in 0..n {
            let at_ms = start_ms + i as i64 * step;
            // Two jobs per order.
            if i.is_multiple_of(2) {
                order_id = uuid::Uuid::now_v7().to_string();
            }
            let (job_type, prefix, max_attempts) = if i.is_multiple_of(2) {
                (
                    jobs::ORDER_CONFIRMATION_EMAIL,
                    jobs::ORDER_CONFIRMATION_KEY_PREFIX,
                    25,
                )
            } else {
                (
                    jobs::ORDER_NOTIFICATION,
                    jobs::ORDER_NOTIFICATION_KEY_PREFIX,
                    5,
                )
            };
            let id = ulid::Ulid::from_parts(
                at_ms as u64,
                (i as u128).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835),
            )
            .to_string();
            let payload = serde_json::to_vec(&serde_json::json!({ "order_id": order_id }))?;
            insert.execute(params![
                payload,
                id,
                job_type,
                max_attempts,
                at_ms.div_euclid(1000),
                at_ms,
                worker_id,
                format!("{prefix}{order_id}"),
            ])?;
        }
    }
    tx.commit()?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    checkpoint(conn)?;
    Ok(())
}

/// Enqueue → handler start on an idle queue.
#[derive(Debug, Clone, Default)]
pub struct Pickup {
    /// From the start of the enqueue transaction (its commit included).
    pub from_enqueue: Latencies,
    /// From right after the commit, when `queue::wake()` is called.
    pub from_commit: Latencies,
}

/// Tells the bench when each job started.
struct Starts(mpsc::Sender<(u64, Instant)>);

impl JobHandler for Starts {
    fn handle(&self, job: Job) -> JobFuture {
        let now = Instant::now();
        let i = job.payload["i"].as_u64().unwrap_or(u64::MAX);
        let _ = self.0.send((i, now));
        Box::pin(async { Ok(()) })
    }
}

const PICKUP_WARMUP: usize = 5;

/// `samples` times: wait until the worker is idle, enqueue one job, commit,
/// `queue::wake()`, and time until its handler is called. The worker runs
/// with [`WorkerConfig::new`]'s defaults (its 500 ms poll is the fallback).
pub fn pickup(samples: usize) -> BenchResult<Pickup> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("queue.db");
    let mut conn = open(&path)?;
    let rt = runtime()?;
    let (tx, rx) = mpsc::channel();
    let running = RunningWorker::start(&rt, WorkerConfig::new(&path), Arc::new(Starts(tx)));

    let mut from_enqueue = Vec::with_capacity(samples);
    let mut from_commit = Vec::with_capacity(samples);
    let result = (|| -> BenchResult<()> {
        for i in 0..(PICKUP_WARMUP + samples) {
            // Idle gaps of 3–23 ms, varied so they do not beat with the
            // worker's poll interval; the previous job was acknowledged
            // well within the gap.
            std::thread::sleep(Duration::from_millis(3 + (i as u64 * 7) % 21));
            let job = NewJob::new(NOOP_JOB, serde_json::json!({ "i": i }));
            let t0 = Instant::now();
            db::write(&mut conn, |tx| queue::enqueue(tx, &job))?;
            let t1 = Instant::now();
            queue::wake();
            let (started_i, started_at) = rx
                .recv_timeout(Duration::from_secs(10))
                .map_err(|e| format!("pickup sample {i}: no job start within 10 s: {e}"))?;
            if started_i != i as u64 {
                return Err(format!("pickup sample {i}: job {started_i} started instead").into());
            }
            if i >= PICKUP_WARMUP {
                from_enqueue.push(started_at.saturating_duration_since(t0));
                from_commit.push(started_at.saturating_duration_since(t1));
            }
        }
        Ok(())
    })();
    running.stop(&rt)?;
    result?;
    Ok(Pickup {
        from_enqueue: Latencies::new(from_enqueue),
        from_commit: Latencies::new(from_commit),
    })
}
