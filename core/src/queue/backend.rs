//! The apalis [`Backend`] over [`super::store`].
//!
//! One worker launch owns one [`QueueDb`]: a thread with its own SQLite
//! connection that runs every statement for that worker, so SQLite never
//! blocks the async executor and acknowledgements that arrive together are
//! committed together. It also renews the leases of the jobs the worker
//! holds and reaps the expired leases of workers that died.
//!
//! [`SqliteBackend`] claims due jobs in batches, decodes their payloads
//! (a payload that cannot be decoded is marked dead with the reason; the
//! worker goes on) and hands them to apalis one by one. Its middleware,
//! [`AckLayer`], wraps the whole handler stack and records each attempt's
//! final result in the job's row.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use apalis_core::backend::finalize::Ephemeral;
use apalis_core::backend::{Backend, BackendConfig};
use apalis_core::error::{AbortError, BoxDynError};
use apalis_core::task::builder::TaskBuilder;
use apalis_core::task::status::Status;
use apalis_core::task::task_id::TaskId;
use apalis_core::task::Task;
use apalis_core::worker::context::WorkerContext;
use futures::future::BoxFuture;
use futures::FutureExt;
use rusqlite::Connection;
use tokio::sync::{oneshot, Notify};
use tower::{Layer, Service};

use super::store::{self, Ack, Backoff, ClaimedJob};
use super::{Job, JobError, JobStatus};
use crate::db::{self, Durability};
use crate::error::{Error, Result};

/// How the queue's worker claims and holds jobs.
#[derive(Clone)]
pub struct QueueSettings {
    /// Lock owner written to `lock_by`: unique per worker launch.
    pub worker_id: String,
    /// A claimed job is reclaimable this long after its worker stops renewing.
    pub lease: Duration,
    /// How often to look for due jobs without a wake (retries coming due,
    /// jobs written by other processes, expired leases).
    pub poll_interval: Duration,
    /// Most jobs claimed at once.
    pub batch: usize,
    pub backoff: Backoff,
    /// Finish (end the job stream) once nothing is due and nothing runs.
    pub stop_when_idle: bool,
    /// Called (at most every [`CHANGE_THROTTLE`]) after job states changed.
    pub on_change: Option<Arc<dyn Fn() + Send + Sync>>,
}

impl std::fmt::Debug for QueueSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueSettings")
            .field("worker_id", &self.worker_id)
            .field("lease", &self.lease)
            .field("poll_interval", &self.poll_interval)
            .field("batch", &self.batch)
            .field("backoff", &self.backoff)
            .field("stop_when_idle", &self.stop_when_idle)
            .finish_non_exhaustive()
    }
}

/// Minimum time between two `on_change` calls.
pub const CHANGE_THROTTLE: Duration = Duration::from_millis(100);

/// Outcomes counted since the worker started.
#[derive(Debug, Default)]
pub struct Counts {
    pub done: AtomicU64,
    /// Failed attempts that will be retried.
    pub failed: AtomicU64,
    /// Jobs that became dead (permanent failure, out of attempts,
    /// undecodable, lost on their last attempt).
    pub dead: AtomicU64,
}

/// Jobs this worker holds: claimed and neither acknowledged nor released.
/// `true` once handed to the handler.
type Held = Arc<Mutex<HashMap<String, bool>>>;

enum Command {
    Claim {
        reply: oneshot::Sender<Result<Vec<Job>>>,
    },
    /// A job was handed to its handler: count its attempt (no reply; a
    /// failure to write it only means the ack counts it).
    Start { id: String, attempt: u32 },
    Ack {
        ack: Ack,
        reply: oneshot::Sender<Result<Option<JobStatus>>>,
    },
    /// Give back every held job (unstarted ones with their attempt restored).
    ReleaseHeld {
        reply: oneshot::Sender<Result<usize>>,
    },
    IsIdle {
        reply: oneshot::Sender<Result<bool>>,
    },
}

/// Handle to a worker's database thread. Cheap to clone; the thread ends
/// when the last handle is dropped.
#[derive(Clone)]
pub struct QueueDb {
    commands: mpsc::Sender<Command>,
    settings: Arc<QueueSettings>,
    held: Held,
    counts: Arc<Counts>,
    /// Signalled after acknowledgements (an idle check may now succeed).
    acked: Arc<Notify>,
}

impl std::fmt::Debug for QueueDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueDb")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl QueueDb {
    /// Opens a dedicated connection (migrating the file if needed), reaps
    /// expired leases and starts the database thread.
    pub fn start(path: &Path, settings: QueueSettings) -> Result<QueueDb> {
        let mut conn = db::open(path, Durability::Normal)?;
        let reaped = db::write(&mut conn, store::reap)?;
        if reaped > 0 {
            tracing::info!(reaped, "jobs of a stopped worker are claimable again");
        }
        let (commands, rx) = mpsc::channel();
        let db = QueueDb {
            commands,
            settings: Arc::new(settings),
            held: Arc::default(),
            counts: Arc::default(),
            acked: Arc::default(),
        };
        let mut thread = DbThread {
            conn,
            rx,
            settings: db.settings.clone(),
            held: db.held.clone(),
            counts: db.counts.clone(),
            acked: db.acked.clone(),
            last_reap: Instant::now(),
            last_renew: Instant::now(),
            last_change: None,
            changed: reaped > 0,
        };
        std::thread::Builder::new()
            .name("shopdesk-queue-db".into())
            .spawn(move || thread.run())?;
        Ok(db)
    }

    pub fn settings(&self) -> &QueueSettings {
        &self.settings
    }

    pub fn counts(&self) -> &Counts {
        &self.counts
    }

    async fn call<T>(&self, make: impl FnOnce(oneshot::Sender<Result<T>>) -> Command) -> Result<T> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(make(reply))
            .map_err(|_| Error::Other("the job queue's database thread stopped".into()))?;
        rx.await
            .map_err(|_| Error::Other("the job queue's database thread stopped".into()))?
    }

    /// Claims a batch of due jobs (decoded; undecodable ones are killed).
    pub async fn claim(&self) -> Result<Vec<Job>> {
        self.call(|reply| Command::Claim { reply }).await
    }

    /// Records an attempt's result.
    pub async fn ack(&self, ack: Ack) -> Result<Option<JobStatus>> {
        self.call(|reply| Command::Ack { ack, reply }).await
    }

    /// Gives back every job this worker holds; see [`store::release`].
    pub async fn release_held(&self) -> Result<usize> {
        self.call(|reply| Command::ReleaseHeld { reply }).await
    }

    pub async fn is_idle(&self) -> Result<bool> {
        self.call(|reply| Command::IsIdle { reply }).await
    }

    /// Notes that a job was handed to its handler, and has its attempt
    /// counted in the row (written with the next batch of acks).
    fn mark_started(&self, id: &str, attempt: u32) {
        if let Some(started) = lock(&self.held).get_mut(id) {
            *started = true;
        }
        let _ = self.commands.send(Command::Start {
            id: id.to_string(),
            attempt,
        });
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

struct DbThread {
    conn: Connection,
    rx: mpsc::Receiver<Command>,
    settings: Arc<QueueSettings>,
    held: Held,
    counts: Arc<Counts>,
    acked: Arc<Notify>,
    last_reap: Instant,
    last_renew: Instant,
    last_change: Option<Instant>,
    changed: bool,
}

/// Most commands handled in one go (acks among them share a transaction).
const MAX_BATCH: usize = 512;

impl DbThread {
    fn run(&mut self) {
        let renew_every = (self.settings.lease / 3).max(Duration::from_millis(5));
        loop {
            let mut wait = renew_every.saturating_sub(self.last_renew.elapsed());
            if self.changed {
                let since = self.last_change.map_or(CHANGE_THROTTLE, |t| t.elapsed());
                wait = wait.min(CHANGE_THROTTLE.saturating_sub(since));
            }
            let mut batch = Vec::new();
            match self.rx.recv_timeout(wait) {
                Ok(cmd) => {
                    batch.push(cmd);
                    while batch.len() < MAX_BATCH {
                        match self.rx.try_recv() {
                            Ok(cmd) => batch.push(cmd),
                            Err(_) => break,
                        }
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            self.handle(batch);
            if self.last_renew.elapsed() >= renew_every {
                self.renew();
            }
            self.emit_change();
        }
        // The last change still gets its call, after the usual spacing.
        if self.changed {
            if let Some(t) = self.last_change {
                std::thread::sleep(CHANGE_THROTTLE.saturating_sub(t.elapsed()));
            }
            self.emit_change();
        }
    }

    fn handle(&mut self, batch: Vec<Command>) {
        let mut starts = Vec::new();
        let mut acks = Vec::new();
        let mut others = Vec::new();
        for cmd in batch {
            match cmd {
                Command::Start { id, attempt } => starts.push((id, attempt)),
                Command::Ack { ack, reply } => acks.push((ack, reply)),
                other => others.push(other),
            }
        }
        // A start whose ack is in the same batch needs no write of its own
        // (the ack counts the attempt).
        starts.retain(|(id, _)| !acks.iter().any(|(ack, _)| ack.id == *id));
        if !starts.is_empty() || !acks.is_empty() {
            self.starts_and_acks(starts, acks);
        }
        for cmd in others {
            match cmd {
                Command::Claim { reply } => self.claim(reply),
                Command::ReleaseHeld { reply } => {
                    let _ = reply.send(self.release_held());
                }
                Command::IsIdle { reply } => {
                    let _ = reply.send(store::is_idle(&self.conn));
                }
                Command::Start { .. } | Command::Ack { .. } => {
                    unreachable!("starts and acks were taken out above")
                }
            }
        }
    }

    /// Counts the attempts of jobs that started and records the results of
    /// those that finished, in one transaction.
    fn starts_and_acks(
        &mut self,
        starts: Vec<(String, u32)>,
        acks: Vec<(Ack, oneshot::Sender<Result<Option<JobStatus>>>)>,
    ) {
        let worker_id = self.settings.worker_id.clone();
        let backoff = self.settings.backoff;
        let result = db::write(&mut self.conn, |tx| {
            for (id, attempt) in &starts {
                store::start(tx, &worker_id, id, *attempt)?;
            }
            acks.iter()
                .map(|(ack, _)| store::ack(tx, &worker_id, ack, &backoff))
                .collect::<Result<Vec<_>>>()
        });
        if !starts.is_empty() {
            self.changed = true;
        }
        if acks.is_empty() {
            if let Err(e) = result {
                tracing::warn!(error = %e, "could not count the attempts of started jobs");
            }
            return;
        }
        {
            let mut held = lock(&self.held);
            for (ack, _) in &acks {
                // Even if the write failed: the lease then lapses and the
                // job is reaped, rather than being renewed forever.
                held.remove(&ack.id);
            }
        }
        match result {
            Ok(statuses) => {
                for ((_, reply), status) in acks.into_iter().zip(statuses) {
                    match status {
                        Some(JobStatus::Done) => self.counts.done.fetch_add(1, Ordering::Relaxed),
                        Some(JobStatus::Failed) => {
                            self.counts.failed.fetch_add(1, Ordering::Relaxed)
                        }
                        Some(JobStatus::Killed) => self.counts.dead.fetch_add(1, Ordering::Relaxed),
                        _ => 0,
                    };
                    let _ = reply.send(Ok(status));
                }
                self.changed = true;
            }
            Err(e) => {
                tracing::error!(error = %e, "could not record job results");
                let message = e.to_string();
                for (_, reply) in acks {
                    let _ = reply.send(Err(Error::Other(message.clone())));
                }
            }
        }
        self.acked.notify_waiters();
    }

    fn claim(&mut self, reply: oneshot::Sender<Result<Vec<Job>>>) {
        let settings = self.settings.clone();
        let reap_every =
            (settings.lease / 4).clamp(Duration::from_millis(10), Duration::from_secs(5));
        let reap = self.last_reap.elapsed() >= reap_every;
        if reap {
            self.last_reap = Instant::now();
        }
        let result = db::write(&mut self.conn, |tx| {
            let reaped = if reap { store::reap(tx)? } else { 0 };
            let claimed = store::claim(tx, &settings.worker_id, settings.batch, settings.lease)?;
            let mut jobs = Vec::with_capacity(claimed.len());
            let mut dead = 0;
            for c in claimed {
                match decode(c) {
                    Ok(job) => jobs.push(job),
                    Err((id, reason)) => {
                        tracing::warn!(job = %id, %reason, "job payload cannot be decoded; marked dead");
                        store::kill_undecodable(tx, &settings.worker_id, &id, &reason)?;
                        dead += 1;
                    }
                }
            }
            Ok((reaped, jobs, dead))
        });
        match result {
            Ok((reaped, jobs, dead)) => {
                if reaped > 0 {
                    tracing::info!(reaped, "jobs of a stopped worker are claimable again");
                }
                self.counts.dead.fetch_add(dead, Ordering::Relaxed);
                if reaped > 0 || dead > 0 || !jobs.is_empty() {
                    self.changed = true;
                }
                {
                    let mut held = lock(&self.held);
                    for job in &jobs {
                        held.insert(job.id.clone(), false);
                    }
                }
                if let Err(Ok(jobs)) = reply.send(Ok(jobs)) {
                    // The worker stopped waiting (shutdown): give them back.
                    for job in jobs {
                        self.release_one(&job.id, false);
                    }
                }
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        }
    }

    fn release_one(&mut self, id: &str, started: bool) {
        let worker_id = self.settings.worker_id.clone();
        if let Err(e) = db::write(&mut self.conn, |tx| {
            store::release(tx, &worker_id, id, started)
        }) {
            tracing::warn!(job = %id, error = %e, "could not release a job; its lease will lapse");
        }
        lock(&self.held).remove(id);
        self.changed = true;
    }

    fn release_held(&mut self) -> Result<usize> {
        let held: Vec<(String, bool)> = lock(&self.held).drain().collect();
        if held.is_empty() {
            return Ok(0);
        }
        let worker_id = self.settings.worker_id.clone();
        let n = db::write(&mut self.conn, |tx| {
            let mut n = 0;
            for (id, started) in &held {
                if store::release(tx, &worker_id, id, *started)? {
                    n += 1;
                }
            }
            Ok(n)
        })?;
        self.changed = true;
        Ok(n)
    }

    fn renew(&mut self) {
        self.last_renew = Instant::now();
        let ids: Vec<String> = lock(&self.held).keys().cloned().collect();
        if ids.is_empty() {
            return;
        }
        let worker_id = self.settings.worker_id.clone();
        let lease = self.settings.lease;
        if let Err(e) = db::write(&mut self.conn, |tx| {
            store::renew(tx, &worker_id, &ids, lease)
        }) {
            tracing::warn!(error = %e, "could not renew job leases");
        }
    }

    fn emit_change(&mut self) {
        if !self.changed {
            return;
        }
        let due = self
            .last_change
            .is_none_or(|t| t.elapsed() >= CHANGE_THROTTLE);
        if !due {
            return;
        }
        self.changed = false;
        self.last_change = Some(Instant::now());
        if let Some(on_change) = &self.settings.on_change {
            let on_change = on_change.clone();
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| on_change())).is_err() {
                tracing::error!("the job change callback panicked");
            }
        }
    }
}

/// Decodes a claimed row's payload, or says why it cannot be.
fn decode(c: ClaimedJob) -> std::result::Result<Job, (String, String)> {
    match serde_json::from_slice(&c.job) {
        Ok(payload) => Ok(Job {
            id: c.id,
            job_type: c.job_type,
            payload,
            attempt: c.attempts,
            max_attempts: c.max_attempts,
            idempotency_key: c.idempotency_key,
        }),
        Err(e) => Err((c.id, e.to_string())),
    }
}

type SyncFuture<T> = Mutex<BoxFuture<'static, T>>;

/// The apalis backend: yields this worker's claimed jobs as `Task<Job>`.
pub struct SqliteBackend {
    db: QueueDb,
    /// Jobs claimed and not yet handed to apalis.
    buffer: VecDeque<Task<Job>>,
    fetch: Option<SyncFuture<Result<Option<Vec<Job>>>>>,
    close: Option<SyncFuture<Result<usize>>>,
    /// First fetch of this backend: give back what an earlier (restarted)
    /// incarnation of the worker still held, after `restart_delay`.
    fresh: bool,
    restart_delay: Duration,
    /// Claim the next batch when at most this many jobs are buffered.
    low_water: usize,
    exhausted: bool,
    /// A failed claim, reported once the buffer is used up.
    error: Option<Error>,
}

impl std::fmt::Debug for SqliteBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteBackend")
            .field("db", &self.db)
            .field("buffered", &self.buffer.len())
            .finish_non_exhaustive()
    }
}

impl SqliteBackend {
    /// `restarts`: how often this worker was restarted after an error (the
    /// backend then waits a little before claiming again).
    pub fn new(db: QueueDb, restarts: usize) -> Self {
        let restart_delay = Duration::from_millis(200)
            .saturating_mul(u32::try_from(restarts).unwrap_or(u32::MAX))
            .min(Duration::from_secs(10));
        Self {
            low_water: db.settings.batch / 2,
            db,
            buffer: VecDeque::new(),
            fetch: None,
            close: None,
            fresh: true,
            restart_delay,
            exhausted: false,
            error: None,
        }
    }

    /// Polls the claim in flight (starting one if needed) and files its
    /// result: jobs into the buffer, idleness, or an error to report once
    /// the buffer is used up.
    fn poll_fetch(&mut self, cx: &mut Context<'_>, worker: &WorkerContext) {
        let fresh = std::mem::replace(&mut self.fresh, false);
        let db = self.db.clone();
        let delay = self.restart_delay;
        let fut = self
            .fetch
            .get_or_insert_with(|| Mutex::new(fetch(db, fresh, delay).boxed()));
        let polled = fut
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .poll_unpin(cx);
        let Poll::Ready(result) = polled else {
            return;
        };
        self.fetch = None;
        match result {
            Ok(Some(jobs)) => {
                let tasks: Vec<_> = jobs.into_iter().map(|j| self.to_task(j)).collect();
                self.buffer.extend(tasks);
                if self.buffer.len() <= self.low_water {
                    // Claim again (the fetch returns only non-empty batches
                    // at once, so this cannot spin).
                    cx.waker().wake_by_ref();
                }
            }
            Ok(None) => {
                // Idle: stop the worker (apalis then closes the backend once
                // no task is in flight).
                self.exhausted = true;
                if let Err(e) = worker.stop() {
                    tracing::debug!(error = %e, "stopping the idle worker");
                }
            }
            Err(e) => self.error = Some(e),
        }
    }

    fn to_task(&self, job: Job) -> Task<Job> {
        let mut b = TaskBuilder::new(job.clone())
            .task_id(TaskId::from_string(job.id.clone()))
            // apalis adds one when the attempt starts.
            .attempt(job.attempt.saturating_sub(1) as usize)
            .max_attempts(job.max_attempts as usize)
            .status(Status::Queued)
            .lock_by(Some(self.db.settings.worker_id.clone()));
        if let Some(key) = &job.idempotency_key {
            b = b.idempotency_key(key);
        }
        b.build()
    }
}

/// Waits for due jobs: claims at once, then after every wake, every
/// acknowledgement (for the idle check) and every poll interval.
/// `Ok(None)`: idle and asked to stop when idle.
async fn fetch(db: QueueDb, fresh: bool, restart_delay: Duration) -> Result<Option<Vec<Job>>> {
    if fresh {
        if !restart_delay.is_zero() {
            tokio::time::sleep(restart_delay).await;
        }
        let released = db.release_held().await?;
        if released > 0 {
            tracing::info!(released, "gave back jobs held before the worker restarted");
        }
    }
    loop {
        let woken = store::wake_signal().notified();
        let acked = db.acked.notified();
        let jobs = db.claim().await?;
        if !jobs.is_empty() {
            return Ok(Some(jobs));
        }
        if db.settings.stop_when_idle && db.is_idle().await? {
            return Ok(None);
        }
        tokio::select! {
            _ = woken => {}
            _ = acked, if db.settings.stop_when_idle => {}
            _ = tokio::time::sleep(db.settings.poll_interval) => {}
        }
    }
}

impl Backend for SqliteBackend {
    type Task = Task<Job>;
    type Error = Error;

    fn poll_ready(&mut self, _: &mut Context<'_>, _: &WorkerContext) -> Poll<Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        worker: &WorkerContext,
    ) -> Poll<Option<Result<Task<Job>>>> {
        // Keep one claim in flight while the buffer runs low, so the next
        // batch is ready when this one is used up.
        if !self.exhausted && self.error.is_none() && self.buffer.len() <= self.low_water {
            self.poll_fetch(cx, worker);
        }
        if let Some(task) = self.buffer.pop_front() {
            return Poll::Ready(Some(Ok(task)));
        }
        if let Some(e) = self.error.take() {
            return Poll::Ready(Some(Err(e)));
        }
        if self.exhausted {
            return Poll::Ready(None);
        }
        Poll::Pending
    }

    /// Gives back the jobs claimed but not started (all handlers have
    /// finished by the time apalis closes the backend).
    fn poll_close(&mut self, cx: &mut Context<'_>, _: &WorkerContext) -> Poll<Result<()>> {
        // A claim in flight: its jobs are given back by the database thread
        // (or below, if the reply was already delivered).
        self.fetch = None;
        self.buffer.clear();
        let db = self.db.clone();
        let fut = self
            .close
            .get_or_insert_with(|| Mutex::new(async move { db.release_held().await }.boxed()));
        let polled = fut
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .poll_unpin(cx);
        match polled {
            Poll::Pending => Poll::Pending,
            Poll::Ready(result) => {
                self.close = None;
                match result {
                    Ok(released) => {
                        if released > 0 {
                            tracing::info!(released, "gave back unstarted jobs on shutdown");
                        }
                        Poll::Ready(Ok(()))
                    }
                    Err(e) => Poll::Ready(Err(e)),
                }
            }
        }
    }
}

impl BackendConfig for SqliteBackend {
    type Args = Job;
    type Id = String;
    /// Payloads are decoded here, not by apalis: see [`decode`].
    type Kind = Ephemeral;
    type Config = QueueSettings;
    type Layer = AckLayer;

    fn config(&self) -> &QueueSettings {
        &self.db.settings
    }

    fn middleware(&mut self, _: &mut WorkerContext) -> AckLayer {
        AckLayer {
            db: self.db.clone(),
        }
    }
}

/// Records each attempt's final result (after every user layer: timeout,
/// panic catching, …) in the job's row.
#[derive(Clone, Debug)]
pub struct AckLayer {
    db: QueueDb,
}

impl<S> Layer<S> for AckLayer {
    type Service = AckService<S>;

    fn layer(&self, inner: S) -> AckService<S> {
        AckService {
            inner,
            db: self.db.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct AckService<S> {
    inner: S,
    db: QueueDb,
}

impl<S> Service<Task<Job>> for AckService<S>
where
    S: Service<Task<Job>>,
    S::Future: Send + 'static,
    S::Error: Into<BoxDynError>,
    S::Response: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxDynError;
    type Future = BoxFuture<'static, std::result::Result<S::Response, BoxDynError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::result::Result<(), BoxDynError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, task: Task<Job>) -> Self::Future {
        let id = task.args.id.clone();
        let attempt = task.args.attempt;
        let job_type = task.args.job_type.clone();
        self.db.mark_started(&id, attempt);
        let fut = self.inner.call(task);
        let db = self.db.clone();
        async move {
            let result = fut.await.map_err(Into::into);
            let outcome = classify(&result);
            if let Err(e) = &outcome {
                tracing::warn!(job = %id, %job_type, attempt, error = %e, "job attempt failed");
            }
            let ack = Ack {
                id: id.clone(),
                attempt,
                result: outcome,
            };
            match db.ack(ack).await {
                Ok(Some(JobStatus::Killed)) => {
                    tracing::error!(job = %id, %job_type, attempt, "job is dead");
                }
                Ok(Some(_)) => {}
                Ok(None) => {
                    tracing::warn!(job = %id, "job result not recorded: the claim was lost");
                }
                Err(e) => {
                    tracing::error!(job = %id, error = %e, "job result not recorded");
                }
            }
            result
        }
        .boxed()
    }
}

/// What an attempt's result means for the job: a handler's [`JobError`] as
/// is; a timeout, a panic or any other error is retryable.
pub fn classify<T>(
    result: &std::result::Result<T, BoxDynError>,
) -> std::result::Result<(), JobError> {
    let e = match result {
        Ok(_) => return Ok(()),
        Err(e) => e,
    };
    if let Some(e) = e.downcast_ref::<JobError>() {
        return Err(e.clone());
    }
    if e.downcast_ref::<tower::timeout::error::Elapsed>().is_some() {
        return Err(JobError::Retryable("timed out".into()));
    }
    if let Some(p) = e.downcast_ref::<apalis::layers::catch_panic::PanicError>() {
        return Err(JobError::Retryable(format!("panicked: {}", p.0)));
    }
    if let Some(abort) = e.downcast_ref::<AbortError>() {
        use std::error::Error as _;
        let reason = abort
            .source()
            .map_or_else(|| abort.to_string(), |s| s.to_string());
        return Err(JobError::Retryable(format!("aborted: {reason}")));
    }
    Err(JobError::Retryable(e.to_string()))
}
