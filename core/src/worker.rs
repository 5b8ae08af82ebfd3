//! Runs the job queue: an apalis worker over [`crate::queue::backend`], with
//! a job timeout, panic catching and a concurrency limit.
//!
//! Each launch has its own worker id (a ULID, written to `lock_by`), so two
//! processes, or a quick relaunch, never confuse their claims.

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use apalis::layers::catch_panic::{CatchPanicLayer, PanicError};
use apalis::layers::limit::ConcurrencyLimitLayer;
use apalis::layers::TimeoutLayer;
use apalis_core::monitor::Monitor;
use apalis_core::task::Task;
use apalis_core::worker::builder::WorkerBuilder;
use apalis_core::worker::event::Event;
use futures::future::BoxFuture;
use futures::FutureExt;
use serde::Serialize;
use tower::Service;

use crate::db::{self, Durability};
use crate::error::{Error, Result};
use crate::queue::admin;
use crate::queue::backend::{QueueDb, QueueSettings, SqliteBackend};
use crate::queue::{self, Backoff, Job, JobError, JobHandler};

/// How the worker runs.
#[derive(Clone)]
pub struct WorkerConfig {
    pub db_path: PathBuf,
    /// Jobs run at the same time.
    pub concurrency: usize,
    /// A job whose worker stops renewing its claim (crashed, hung) is
    /// claimable again after this long. Renewed every third of it.
    pub lease: Duration,
    /// How often to look for due jobs without a wake: retries coming due,
    /// jobs enqueued by other processes.
    pub poll_interval: Duration,
    /// An attempt running longer fails (retryably) with "timed out".
    pub job_timeout: Duration,
    /// Called after job states changed (claimed, finished, failed, given
    /// back), at most every 100 ms, from the worker's database thread.
    pub on_change: Option<Arc<dyn Fn() + Send + Sync>>,
    /// Delay before a failed job's next attempt.
    pub backoff: Backoff,
    /// On shutdown, running jobs get this long to finish; unfinished ones
    /// are given back to the queue (their attempt counts).
    pub shutdown_grace: Duration,
    /// How often finished jobs past their retention (setting
    /// `job_retention_days`) are pruned, first at start; `None`: never.
    pub prune_every: Option<Duration>,
}

impl std::fmt::Debug for WorkerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerConfig")
            .field("db_path", &self.db_path)
            .field("concurrency", &self.concurrency)
            .field("lease", &self.lease)
            .field("poll_interval", &self.poll_interval)
            .field("job_timeout", &self.job_timeout)
            .field("on_change", &self.on_change.is_some())
            .field("backoff", &self.backoff)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("prune_every", &self.prune_every)
            .finish()
    }
}

impl WorkerConfig {
    pub fn new(db_path: impl Into<PathBuf>) -> Self {
        Self {
            db_path: db_path.into(),
            concurrency: 4,
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_millis(500),
            job_timeout: Duration::from_secs(60),
            on_change: None,
            backoff: Backoff::default(),
            shutdown_grace: Duration::from_secs(10),
            prune_every: Some(Duration::from_secs(3600)),
        }
    }

    fn settings(&self, stop_when_idle: bool) -> Result<QueueSettings> {
        if self.concurrency == 0 {
            return Err(Error::invalid(
                "concurrency",
                "concurrency must be at least 1",
            ));
        }
        if self.lease < Duration::from_millis(30) {
            return Err(Error::invalid("lease", "the lease must be at least 30 ms"));
        }
        Ok(QueueSettings {
            worker_id: format!("shopdesk-{}", ulid::Ulid::new()),
            lease: self.lease,
            poll_interval: self.poll_interval.max(Duration::from_millis(1)),
            // Claim a few jobs ahead of the free slots, not more: claimed
            // jobs are invisible to other workers.
            batch: (self.concurrency * 16).clamp(32, 256),
            backoff: self.backoff,
            stop_when_idle,
            on_change: self.on_change.clone(),
        })
    }
}

/// What a [`run_until_idle`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RunSummary {
    /// Jobs that succeeded.
    pub done: u64,
    /// Failed attempts that will be retried later.
    pub failed: u64,
    /// Jobs that became dead.
    pub dead: u64,
}

/// Runs jobs until `shutdown` completes. Then running jobs get
/// `shutdown_grace` to finish, and claimed jobs that did not start are given
/// back to the queue.
pub async fn run(
    config: WorkerConfig,
    handler: Arc<dyn JobHandler>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    run_worker(config, handler, false, Some(Box::pin(shutdown))).await?;
    Ok(())
}

/// Runs jobs until nothing is due (no claimable job with `run_at` ≤ now and
/// nothing running), then returns what happened. Jobs retried later are
/// left for a later run.
pub async fn run_until_idle(
    config: WorkerConfig,
    handler: Arc<dyn JobHandler>,
) -> Result<RunSummary> {
    run_worker(config, handler, true, None).await
}

/// As [`run_until_idle`], but `shutdown` completing stops it early, as
/// [`run`] stops: running jobs get `shutdown_grace`, claimed ones go back.
pub async fn run_until_idle_or(
    config: WorkerConfig,
    handler: Arc<dyn JobHandler>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<RunSummary> {
    run_worker(config, handler, true, Some(Box::pin(shutdown))).await
}

async fn run_worker(
    config: WorkerConfig,
    handler: Arc<dyn JobHandler>,
    stop_when_idle: bool,
    shutdown: Option<BoxFuture<'static, ()>>,
) -> Result<RunSummary> {
    let settings = config.settings(stop_when_idle)?;
    let path = config.db_path.clone();
    let db = tokio::task::spawn_blocking(move || QueueDb::start(&path, settings))
        .await
        .map_err(|e| Error::Other(format!("starting the job queue: {e}")))??;
    let worker_id = db.settings().worker_id.clone();
    tracing::info!(worker = %worker_id, concurrency = config.concurrency, "job worker started");

    let factory_db = db.clone();
    let concurrency = config.concurrency;
    let timeout = config.job_timeout;
    let gave_up: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    let gave_up_on = Arc::clone(&gave_up);
    let monitor = Monitor::new()
        .register(move |restarts| {
            WorkerBuilder::new("shopdesk-jobs")
                .backend(SqliteBackend::new(factory_db.clone(), restarts))
                .layer(ConcurrencyLimitLayer::new(concurrency))
                .layer(CatchPanicLayer::with_panic_handler(panic_error))
                .layer(TimeoutLayer::new(timeout))
                .build(HandlerService(handler.clone()))
        })
        .should_restart(move |worker, error| {
            // A worker that runs for the app retries for as long as it
            // lives (the backend waits longer after each restart), as a
            // full disk or a locked file may clear. A run until idle is a
            // script's step: it gives up and reports the error instead.
            let restart = !worker.is_shutting_down()
                && (!stop_when_idle || worker.restarts() < UNTIL_IDLE_RESTARTS);
            tracing::error!(%error, restarts = worker.restarts(), restart, "job worker stopped on an error");
            if !restart {
                *gave_up_on.lock().unwrap_or_else(|p| p.into_inner()) = Some(error.to_string());
            }
            restart
        })
        .on_event(|_, event| {
            if let Event::Error(e) = event {
                tracing::debug!(error = %e, "job attempt ended with an error");
            }
        });

    let pruner = config
        .prune_every
        .map(|every| tokio::spawn(prune_periodically(config.clone(), every)));
    let checkpointer = Checkpointer::start(&config.db_path, CHECKPOINT_EVERY)
        .inspect_err(
            |e| tracing::warn!(error = %e, "no background checkpoints; commits will checkpoint"),
        )
        .ok();

    let result = match shutdown {
        Some(signal) => {
            monitor
                .shutdown_timeout(config.shutdown_grace)
                .run_with_signal(async move {
                    signal.await;
                    Ok(())
                })
                .await
        }
        None => monitor.run().await,
    };

    if let Some(pruner) = pruner {
        pruner.abort();
    }
    if let Some(checkpointer) = checkpointer {
        let _ = tokio::task::spawn_blocking(move || drop(checkpointer)).await;
    }

    // Jobs still held were cut off by the grace period (or their worker
    // failed): give them back now instead of waiting for their leases.
    match db.release_held().await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(released = n, "gave back jobs that did not finish in time"),
        Err(e) => {
            tracing::warn!(error = %e, "could not give back held jobs; their leases will lapse")
        }
    }
    let counts = db.counts();
    let summary = RunSummary {
        done: counts.done.load(Ordering::Relaxed),
        failed: counts.failed.load(Ordering::Relaxed),
        dead: counts.dead.load(Ordering::Relaxed),
    };
    tracing::info!(worker = %worker_id, ?summary, "job worker stopped");
    // With a shutdown signal, apalis drops the workers' errors: the error
    // the worker gave up on is kept here for that case.
    let gave_up = gave_up.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(error) = gave_up {
        return Err(Error::Other(format!("job worker stopped: {error}")));
    }
    result.map_err(|e| Error::Other(format!("job worker: {e}")))?;
    Ok(summary)
}

/// How often a run until idle restarts its worker after an error before it
/// gives up with that error (about 3 s of waiting in all).
const UNTIL_IDLE_RESTARTS: usize = 5;

/// How often the worker moves committed pages from the WAL into the
/// database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// Checkpoints the database (PASSIVE: it never waits for, nor blocks, a
/// writer) from a thread and connection of its own while the worker runs.
/// So the till's commits almost never pay for a checkpoint themselves (see
/// [`db::TILL_AUTOCHECKPOINT_PAGES`]), and neither do the worker's acks.
struct Checkpointer {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    fn start(path: &std::path::Path, every: Duration) -> Result<Checkpointer> {
        let conn = db::open_raw(path, Durability::Normal)?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("shopdesk-checkpoint".into())
            .spawn(move || {
                while !stopping.load(Ordering::Relaxed) {
                    std::thread::sleep(every);
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::debug!(error = %e, "background checkpoint did not run");
                    }
                }
            })?;
        Ok(Checkpointer {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Prunes finished jobs past their retention now and then every `every`,
/// on its own connection, in small batches (see [`admin::prune_done`]).
async fn prune_periodically(config: WorkerConfig, every: Duration) {
    loop {
        let path = config.db_path.clone();
        let pruned = tokio::task::spawn_blocking(move || {
            let conn = db::open_raw(&path, Durability::Normal)?;
            let days = admin::retention_days(&conn)?;
            admin::prune_all(&conn, days, queue::now_ms().div_euclid(1000))
        })
        .await;
        match pruned {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => {
                tracing::info!(pruned = n, "pruned finished jobs past their retention");
                if let Some(on_change) = &config.on_change {
                    on_change();
                }
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "could not prune finished jobs"),
            Err(e) => tracing::warn!(error = %e, "could not prune finished jobs"),
        }
        tokio::time::sleep(every).await;
    }
}

fn panic_error(panic: &Box<dyn std::any::Any + Send>) -> PanicError {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    PanicError(message)
}

/// The tower service that hands each job to the [`JobHandler`].
#[derive(Clone)]
struct HandlerService(Arc<dyn JobHandler>);

impl Service<Task<Job>> for HandlerService {
    type Response = ();
    type Error = JobError;
    type Future = BoxFuture<'static, std::result::Result<(), JobError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::result::Result<(), JobError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, task: Task<Job>) -> Self::Future {
        // Call the handler on the first poll, not here: a handler that
        // panics before returning its future must panic inside the task's
        // future (where the panic layer catches it and apalis still counts
        // the task as finished).
        let handler = self.0.clone();
        async move { handler.handle(task.args).await }.boxed()
    }
}
