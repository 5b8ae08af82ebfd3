//! The `Jobs` table: plain SQL, no apalis types.
//!
//! Writers call [`enqueue`] inside their own transaction and [`wake`] after
//! the commit. The worker ([`crate::queue::backend`]) claims due jobs under a
//! lease, acknowledges their results, renews the leases of jobs it still
//! holds, and reaps the leases of workers that died.
//!
//! Timestamps in the apalis columns (`run_at`, `lock_at`, `done_at`) are unix
//! seconds; `run_at_ms` and `lease_expires_ms` are unix milliseconds.

use std::sync::{LazyLock, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension, Row, Transaction, TransactionBehavior};
use serde::Serialize;
use tokio::sync::Notify;

use super::{JobError, JobStatus};
use crate::error::{Error, Result};

/// Queues that exist even before they have jobs (pausing "all queues" covers
/// them too).
pub const KNOWN_QUEUES: [&str; 2] = ["email", "notify"];

/// Default number of attempts before a job is dead.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 25;

/// `last_result` of a job whose worker stopped renewing its lease.
const LEASE_LOST: &str = "the worker running it stopped (lease expired)";

/// A job to insert.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// `queue.kind`, e.g. `email.order_confirmation`; the queue is the part
    /// before the first '.'.
    pub job_type: String,
    pub payload: serde_json::Value,
    /// At most one job per (job_type, key): enqueueing a duplicate returns the
    /// existing job's id.
    pub idempotency_key: Option<String>,
    pub max_attempts: u32,
    /// Unix seconds; `None` = now.
    pub run_at: Option<i64>,
}

impl NewJob {
    pub fn new(job_type: impl Into<String>, payload: serde_json::Value) -> Self {
        Self {
            job_type: job_type.into(),
            payload,
            idempotency_key: None,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            run_at: None,
        }
    }

    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    pub fn max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// Not before this unix time (seconds).
    pub fn run_at(mut self, unix_seconds: i64) -> Self {
        self.run_at = Some(unix_seconds);
        self
    }
}

/// The queue a job type belongs to: the part before the first '.'.
pub fn queue_of(job_type: &str) -> &str {
    job_type.split('.').next().unwrap_or(job_type)
}

static IDS: LazyLock<Mutex<ulid::Generator>> = LazyLock::new(|| Mutex::new(ulid::Generator::new()));

/// A new job id: a ULID, increasing within this process (so "newest first"
/// holds even for jobs enqueued in the same millisecond).
fn new_id() -> String {
    let mut ids = IDS.lock().unwrap_or_else(|e| e.into_inner());
    ids.generate()
        .unwrap_or_else(|_| ulid::Ulid::new())
        .to_string()
}

/// Inserts a job inside the caller's transaction, so the job exists if and
/// only if the caller's data does. Call [`wake`] after the commit.
///
/// A job with the same (job_type, idempotency_key) as an existing one is not
/// inserted; the existing job's id is returned.
pub fn enqueue(tx: &Transaction, job: &NewJob) -> Result<String> {
    if job.job_type.trim().is_empty() {
        return Err(Error::invalid("job_type", "a job needs a type"));
    }
    if job.max_attempts == 0 {
        return Err(Error::invalid(
            "max_attempts",
            "a job needs at least one attempt",
        ));
    }
    let payload = serde_json::to_vec(&job.payload)
        .map_err(|e| Error::Other(format!("job payload is not serialisable: {e}")))?;
    let run_at_ms = match job.run_at {
        Some(s) => s.saturating_mul(1000),
        None => now_ms(),
    };
    let id = new_id();
    let inserted: Option<String> = tx
        .prepare_cached(
            "INSERT INTO Jobs (job, id, job_type, status, attempts, max_attempts, run_at,
                               run_at_ms, priority, idempotency_key)
             VALUES (?1, ?2, ?3, 'Pending', 0, ?4, ?5, ?6, 0, ?7)
             ON CONFLICT (job_type, idempotency_key) DO NOTHING
             RETURNING id",
        )?
        .query_row(
            params![
                payload,
                id,
                job.job_type,
                job.max_attempts,
                run_at_ms.div_euclid(1000),
                run_at_ms,
                job.idempotency_key,
            ],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(id) = inserted {
        return Ok(id);
    }
    let existing: String = tx
        .prepare_cached("SELECT id FROM Jobs WHERE job_type = ?1 AND idempotency_key = ?2")?
        .query_row(params![job.job_type, job.idempotency_key], |r| r.get(0))?;
    Ok(existing)
}

static WAKE: LazyLock<Notify> = LazyLock::new(Notify::new);

/// Wakes this process's workers now (call right after committing jobs).
/// Workers in other processes find the jobs at their next poll.
pub fn wake() {
    WAKE.notify_waiters();
}

/// What [`wake`] signals; a worker creates a `notified()` future before it
/// looks for work so that a wake during the look is not lost.
pub(crate) fn wake_signal() -> &'static Notify {
    &WAKE
}

/// Now, in unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// How long a failed job waits before its next attempt: `base · 2^attempt`,
/// randomised by ±20% (so jobs that failed together do not retry together),
/// at most `cap`. Jobs that reached the cap still spread out, below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Default for Backoff {
    /// 2 s after the first attempt, 4 s after the second, …, at most 1 h.
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(3600),
        }
    }
}

impl Backoff {
    /// The wait after attempt number `attempt` (1 for the first) failed.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(2u32.saturating_pow(attempt.min(31)));
        // Uniform in [0.8, 1.2] × the wait, never above the cap (so at the
        // cap: [0.8, 1] × the cap), from the random part of a fresh ULID.
        let random = (ulid::Ulid::new().random() % 10_000) as f64 / 10_000.0;
        let wait = exp.min(self.cap);
        let low = wait.mul_f64(0.8);
        let high = wait.mul_f64(1.2).min(self.cap);
        low + (high - low).mul_f64(random)
    }
}

impl Backoff {
    /// The wait after the `streak`-th attempt in a row (0 for the first)
    /// found the other side unreachable: the same doubling from `base`, but
    /// capped at 30 s (or `cap`, if lower), so the job is tried again soon
    /// after the network comes back.
    pub fn unavailable_delay(&self, streak: u32) -> Duration {
        Backoff {
            base: self.base,
            cap: self.cap.min(MAX_UNAVAILABLE_DELAY),
        }
        .delay(streak.saturating_add(1))
    }
}

/// The longest wait between attempts while the other side is unreachable.
pub const MAX_UNAVAILABLE_DELAY: Duration = Duration::from_secs(30);

/// The longest `Retry-After` honoured (a provider asking for more gets this).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// A job claimed by a worker, not yet decoded.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub id: String,
    pub job_type: String,
    /// The payload bytes as stored (JSON, unless the row is corrupt).
    pub job: Vec<u8>,
    /// The attempt this run will be (1 on the first run); the row counts
    /// it once the job starts.
    pub attempts: u32,
    pub max_attempts: u32,
    pub idempotency_key: Option<String>,
    pub priority: i64,
    pub run_at_ms: i64,
}

/// Claims up to `limit` due jobs of non-paused queues for `worker_id`:
/// they become Running under a lease of `lease`. The attempt is counted
/// when the job starts ([`start`]), not here: a worker claims a few jobs
/// ahead of its free slots, and a crash must not spend the attempts of
/// jobs that never ran.
pub fn claim(
    tx: &Transaction,
    worker_id: &str,
    limit: usize,
    lease: Duration,
) -> Result<Vec<ClaimedJob>> {
    let now = now_ms();
    // INDEXED BY: without statistics SQLite prefers the status index and
    // sorts every claimable row on each claim.
    let mut stmt = tx.prepare_cached(
        "UPDATE Jobs
         SET status = 'Running', lock_by = ?1, lock_at = ?2, lease_expires_ms = ?3
         WHERE id IN (
             SELECT id FROM Jobs INDEXED BY jobs_claimable
             WHERE status IN ('Pending', 'Failed') AND run_at_ms <= ?4
               AND NOT EXISTS (SELECT 1 FROM paused_queues p
                               WHERE p.queue = '*' OR p.queue = Jobs.queue)
             ORDER BY priority DESC, run_at_ms
             LIMIT ?5)
         RETURNING id, job_type, job, attempts + 1, max_attempts, idempotency_key, priority,
                   run_at_ms",
    )?;
    let mut jobs = stmt
        .query_map(
            params![
                worker_id,
                now.div_euclid(1000),
                now.saturating_add(duration_ms(lease)),
                now,
                limit as i64,
            ],
            |r| {
                Ok(ClaimedJob {
                    id: r.get(0)?,
                    job_type: r.get(1)?,
                    job: r.get(2)?,
                    attempts: r.get(3)?,
                    max_attempts: r.get(4)?,
                    idempotency_key: r.get(5)?,
                    priority: r.get(6)?,
                    run_at_ms: r.get(7)?,
                })
            },
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    // RETURNING does not keep the subquery's order.
    jobs.sort_by(|a, b| {
        b.priority
            .cmp(&a.priority)
            .then(a.run_at_ms.cmp(&b.run_at_ms))
            .then_with(|| a.id.cmp(&b.id))
    });
    Ok(jobs)
}

/// Counts the attempt of a job `worker_id` claimed, as it starts running:
/// from now on a crash of the worker (an expired lease) spends it. Returns
/// false when the job is no longer held by `worker_id` for this attempt.
///
/// Optional before [`ack`]: an ack counts its attempt itself, so a worker
/// whose job finishes before the start was written writes only the ack.
pub fn start(tx: &Transaction, worker_id: &str, id: &str, attempt: u32) -> Result<bool> {
    let n = tx
        .prepare_cached(
            "UPDATE Jobs SET attempts = ?3
             WHERE id = ?1 AND lock_by = ?2 AND status = 'Running' AND attempts = ?3 - 1",
        )?
        .execute(params![id, worker_id, attempt])?;
    Ok(n > 0)
}

/// The result of one attempt, as reported by the worker that ran it.
#[derive(Debug, Clone, PartialEq)]
pub struct Ack {
    pub id: String,
    /// The attempt number the claim returned: a late ack of an attempt whose
    /// lease was reaped (and which another worker may be running again) is
    /// ignored.
    pub attempt: u32,
    pub result: std::result::Result<(), JobError>,
}

/// Records an attempt's result, counting the attempt if [`start`] did not
/// already. Returns the job's new status, or `None` when `worker_id` no
/// longer holds this attempt.
pub fn ack(
    tx: &Transaction,
    worker_id: &str,
    ack: &Ack,
    backoff: &Backoff,
) -> Result<Option<JobStatus>> {
    let now = now_ms();
    let status: Option<String> = match &ack.result {
        Ok(()) => tx
            .prepare_cached(
                "UPDATE Jobs
                 SET status = 'Done', done_at = ?1, last_result = NULL, lease_expires_ms = NULL,
                     attempts = ?4
                 WHERE id = ?2 AND lock_by = ?3 AND attempts IN (?4 - 1, ?4) AND status = 'Running'
                 RETURNING status",
            )?
            .query_row(
                params![now.div_euclid(1000), ack.id, worker_id, ack.attempt],
                |r| r.get(0),
            )
            .optional()?,
        Err(JobError::Permanent(reason)) => tx
            .prepare_cached(
                "UPDATE Jobs
                 SET status = 'Killed', done_at = ?1, last_result = ?2, lease_expires_ms = NULL,
                     attempts = ?5
                 WHERE id = ?3 AND lock_by = ?4 AND attempts IN (?5 - 1, ?5) AND status = 'Running'
                 RETURNING status",
            )?
            .query_row(
                params![now.div_euclid(1000), reason, ack.id, worker_id, ack.attempt],
                |r| r.get(0),
            )
            .optional()?,
        Err(JobError::Unavailable(reason)) => {
            let streak: Option<i64> = tx
                .prepare_cached(
                    "SELECT coalesce(json_extract(metadata, '$.unavailable'), 0) FROM Jobs
                     WHERE id = ?1 AND lock_by = ?2 AND attempts IN (?3 - 1, ?3)
                       AND status = 'Running'",
                )?
                .query_row(params![ack.id, worker_id, ack.attempt], |r| r.get(0))
                .optional()?;
            let Some(streak) = streak else {
                return Ok(None);
            };
            let streak = u32::try_from(streak.max(0)).unwrap_or(u32::MAX);
            let retry_at = now.saturating_add(duration_ms(backoff.unavailable_delay(streak)));
            tx.prepare_cached(
                "UPDATE Jobs
                 SET status = 'Failed', attempts = max(?7 - 1, 0), run_at_ms = ?1,
                     run_at = ?2, last_result = ?3, lease_expires_ms = NULL,
                     metadata = json_set(coalesce(metadata, '{}'), '$.unavailable', ?4)
                 WHERE id = ?5 AND lock_by = ?6 AND attempts IN (?7 - 1, ?7) AND status = 'Running'
                 RETURNING status",
            )?
            .query_row(
                params![
                    retry_at,
                    retry_at.div_euclid(1000),
                    format!("waiting for the network: {reason}"),
                    i64::from(streak.saturating_add(1)),
                    ack.id,
                    worker_id,
                    ack.attempt
                ],
                |r| r.get(0),
            )
            .optional()?
        }
        Err(e @ (JobError::Retryable(_) | JobError::RetryAfter { .. })) => {
            let (reason, delay) = match e {
                JobError::RetryAfter { delay, reason } => {
                    (reason.clone(), (*delay).max(backoff.base))
                }
                other => (other.to_string(), backoff.delay(ack.attempt)),
            };
            let retry_at = now.saturating_add(duration_ms(delay.min(MAX_RETRY_AFTER)));
            tx.prepare_cached(
                "UPDATE Jobs
                 SET status = CASE WHEN ?7 >= max_attempts THEN 'Killed' ELSE 'Failed' END,
                     done_at = CASE WHEN ?7 >= max_attempts THEN ?1 END,
                     run_at_ms = CASE WHEN ?7 >= max_attempts THEN run_at_ms ELSE ?2 END,
                     run_at = CASE WHEN ?7 >= max_attempts THEN run_at ELSE ?3 END,
                     last_result = CASE WHEN ?7 >= max_attempts
                                        THEN 'gave up after ' || ?7 || ' attempts: ' || ?4
                                        ELSE ?4 END,
                     attempts = ?7, lease_expires_ms = NULL, metadata = NULL
                 WHERE id = ?5 AND lock_by = ?6 AND attempts IN (?7 - 1, ?7) AND status = 'Running'
                 RETURNING status",
            )?
            .query_row(
                params![
                    now.div_euclid(1000),
                    retry_at,
                    retry_at.div_euclid(1000),
                    reason,
                    ack.id,
                    worker_id,
                    ack.attempt
                ],
                |r| r.get(0),
            )
            .optional()?
        }
    };
    Ok(status.as_deref().and_then(JobStatus::parse))
}

/// Marks a claimed job dead because its payload cannot be decoded (it would
/// fail the same way on every attempt).
pub fn kill_undecodable(tx: &Transaction, worker_id: &str, id: &str, reason: &str) -> Result<()> {
    tx.prepare_cached(
        "UPDATE Jobs
         SET status = 'Killed', done_at = ?1, last_result = ?2, lease_expires_ms = NULL,
             attempts = attempts + 1
         WHERE id = ?3 AND lock_by = ?4 AND status = 'Running'",
    )?
    .execute(params![
        now_ms().div_euclid(1000),
        format!("undecodable payload: {reason}"),
        id,
        worker_id
    ])?;
    Ok(())
}

/// Extends the leases of jobs `worker_id` still holds. Returns how many.
pub fn renew(tx: &Transaction, worker_id: &str, ids: &[String], lease: Duration) -> Result<usize> {
    if ids.is_empty() {
        return Ok(0);
    }
    let ids = serde_json::to_string(ids).map_err(|e| Error::Other(e.to_string()))?;
    let n = tx
        .prepare_cached(
            "UPDATE Jobs SET lease_expires_ms = ?1
             WHERE status = 'Running' AND lock_by = ?2
               AND id IN (SELECT value FROM json_each(?3))",
        )?
        .execute(params![
            now_ms().saturating_add(duration_ms(lease)),
            worker_id,
            ids
        ])?;
    Ok(n)
}

/// Gives jobs `worker_id` claimed back to the queue, claimable at once.
///
/// `started = false`: the job never ran (claimed ahead, then the worker shut
/// down); no attempt was counted and it goes back as it was. `started =
/// true`: it was interrupted while running; its attempt stays counted.
pub fn release(tx: &Transaction, worker_id: &str, id: &str, started: bool) -> Result<bool> {
    let n = if started {
        tx.prepare_cached(
            "UPDATE Jobs
             SET status = 'Pending', last_result = 'interrupted by a worker shutdown',
                 lease_expires_ms = NULL, lock_at = NULL
             WHERE id = ?1 AND lock_by = ?2 AND status = 'Running'",
        )?
        .execute(params![id, worker_id])?
    } else {
        tx.prepare_cached(
            "UPDATE Jobs
             SET status = 'Pending', lease_expires_ms = NULL, lock_at = NULL, lock_by = NULL
             WHERE id = ?1 AND lock_by = ?2 AND status = 'Running'",
        )?
        .execute(params![id, worker_id])?
    };
    Ok(n > 0)
}

/// Running jobs whose lease expired (their worker died or hung) become
/// claimable again, or dead if that was their last attempt. A job that had
/// started keeps its attempt counted (a job that crashes its worker every
/// time still dies in the end); one only claimed ahead loses nothing.
/// Returns how many.
pub fn reap(tx: &Transaction) -> Result<usize> {
    let now = now_ms();
    let n = tx
        .prepare_cached(
            "UPDATE Jobs
             SET status = CASE WHEN attempts >= max_attempts THEN 'Killed' ELSE 'Pending' END,
                 done_at = CASE WHEN attempts >= max_attempts THEN ?1 END,
                 last_result = ?2, lease_expires_ms = NULL
             WHERE status = 'Running' AND lease_expires_ms < ?3",
        )?
        .execute(params![now.div_euclid(1000), LEASE_LOST, now])?;
    Ok(n)
}

/// True when nothing is left to do now: no job is running and no claimable
/// job (of a non-paused queue) is due.
pub fn is_idle(conn: &Connection) -> Result<bool> {
    let busy: bool = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM Jobs WHERE status = 'Running')
                 OR EXISTS (SELECT 1 FROM Jobs INDEXED BY jobs_claimable
                            WHERE status IN ('Pending', 'Failed') AND run_at_ms <= ?1
                              AND NOT EXISTS (SELECT 1 FROM paused_queues p
                                              WHERE p.queue = '*' OR p.queue = Jobs.queue))",
        )?
        .query_row([now_ms()], |r| r.get(0))?;
    Ok(!busy)
}

/// Job counts by state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct JobStats {
    pub pending: u64,
    pub running: u64,
    /// Failed at least once, waiting for the next attempt.
    pub failed: u64,
    pub done: u64,
    pub dead: u64,
    /// Every queue is paused.
    pub paused: bool,
}

pub fn stats(conn: &Connection) -> Result<JobStats> {
    let mut stats = JobStats::default();
    let mut stmt = conn.prepare_cached("SELECT status, count(*) FROM Jobs GROUP BY status")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    for row in rows {
        let (status, n) = row?;
        let n = n as u64;
        match JobStatus::parse(&status) {
            Some(JobStatus::Pending) => stats.pending += n,
            Some(JobStatus::Running) => stats.running += n,
            Some(JobStatus::Failed) => stats.failed += n,
            Some(JobStatus::Done) => stats.done += n,
            Some(JobStatus::Killed) => stats.dead += n,
            None => {}
        }
    }
    stats.paused = all_paused(conn)?;
    Ok(stats)
}

/// One job, as shown to the shop owner and to scripts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobInfo {
    pub id: String,
    pub job_type: String,
    pub status: JobStatus,
    pub attempts: u32,
    pub max_attempts: u32,
    /// When it runs (next), RFC 3339 UTC.
    pub run_at: String,
    pub last_error: Option<String>,
    pub idempotency_key: Option<String>,
    pub lock_by: Option<String>,
    pub done_at: Option<String>,
    /// The receipt number of the order the job is for, when it is one of
    /// the shop's order jobs. The queue knows nothing of orders: always
    /// `None` here, filled in by [`crate::jobs::add_receipts`].
    pub receipt_number: Option<String>,
}

const INFO_COLUMNS: &str =
    "id, job_type, status, attempts, max_attempts, run_at_ms, last_result, idempotency_key, \
     lock_by, done_at";

fn job_info(r: &Row) -> rusqlite::Result<JobInfo> {
    let status: String = r.get(2)?;
    let status = JobStatus::parse(&status).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            2,
            rusqlite::types::Type::Text,
            format!("unknown job status {status:?}").into(),
        )
    })?;
    let last_result: Option<String> = r.get(6)?;
    let done_at: Option<i64> = r.get(9)?;
    Ok(JobInfo {
        id: r.get(0)?,
        job_type: r.get(1)?,
        status,
        attempts: r.get(3)?,
        max_attempts: r.get(4)?,
        run_at: rfc3339_ms(r.get(5)?),
        last_error: if status == JobStatus::Done {
            None
        } else {
            last_result
        },
        idempotency_key: r.get(7)?,
        lock_by: r.get(8)?,
        done_at: done_at.map(|s| rfc3339_ms(s.saturating_mul(1000))),
        receipt_number: None,
    })
}

/// Jobs, newest first, optionally only those in `status`.
pub fn list(conn: &Connection, status: Option<JobStatus>, limit: usize) -> Result<Vec<JobInfo>> {
    let limit = crate::db::sql_limit(limit);
    let rows = match status {
        Some(status) => conn
            .prepare_cached(&format!(
                "SELECT {INFO_COLUMNS} FROM Jobs WHERE status = ?1 ORDER BY id DESC LIMIT ?2"
            ))?
            .query_map(params![status.as_str(), limit], job_info)?
            .collect::<rusqlite::Result<Vec<_>>>()?,
        None => conn
            .prepare_cached(&format!(
                "SELECT {INFO_COLUMNS} FROM Jobs ORDER BY id DESC LIMIT ?1"
            ))?
            .query_map(params![limit], job_info)?
            .collect::<rusqlite::Result<Vec<_>>>()?,
    };
    Ok(rows)
}

/// The job of this type with this idempotency key, if any.
pub fn get_by_key(conn: &Connection, job_type: &str, key: &str) -> Result<Option<JobInfo>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {INFO_COLUMNS} FROM Jobs WHERE job_type = ?1 AND idempotency_key = ?2"
        ))?
        .query_row(params![job_type, key], job_info)
        .optional()?)
}

/// A job by id, if any.
pub fn get(conn: &Connection, id: &str) -> Result<Option<JobInfo>> {
    Ok(conn
        .prepare_cached(&format!("SELECT {INFO_COLUMNS} FROM Jobs WHERE id = ?1"))?
        .query_row(params![id], job_info)
        .optional()?)
}

/// Pauses or resumes one queue (`Some("email")`) or all (`None`). Paused
/// queues keep their jobs but are not claimed; the state is stored, so it
/// survives restarts. Resuming wakes this process's workers.
pub fn set_paused(conn: &Connection, queue: Option<&str>, paused: bool) -> Result<()> {
    let queue = match queue.map(str::trim) {
        None | Some("*") => None,
        Some("") => return Err(Error::invalid("queue", "queue name is empty")),
        Some(q) => Some(queue_of(q)),
    };
    let now = crate::db::now_rfc3339();
    let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    match (queue, paused) {
        (None, true) => {
            tx.execute("DELETE FROM paused_queues", [])?;
            tx.execute(
                "INSERT INTO paused_queues (queue, paused_at) VALUES ('*', ?1)",
                [&now],
            )?;
        }
        (None, false) => {
            tx.execute("DELETE FROM paused_queues", [])?;
        }
        (Some(q), true) => {
            tx.execute(
                "INSERT OR IGNORE INTO paused_queues (queue, paused_at) VALUES (?1, ?2)",
                params![q, now],
            )?;
        }
        (Some(q), false) => {
            let all: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM paused_queues WHERE queue = '*')",
                [],
                |r| r.get(0),
            )?;
            if all {
                // "Everything but q": spell out every other queue.
                tx.execute("DELETE FROM paused_queues WHERE queue = '*'", [])?;
                for known in KNOWN_QUEUES {
                    tx.execute(
                        "INSERT OR IGNORE INTO paused_queues (queue, paused_at) VALUES (?1, ?2)",
                        params![known, now],
                    )?;
                }
                tx.execute(
                    "INSERT OR IGNORE INTO paused_queues (queue, paused_at)
                     SELECT DISTINCT queue, ?1 FROM Jobs",
                    [&now],
                )?;
            }
            tx.execute("DELETE FROM paused_queues WHERE queue = ?1", [q])?;
        }
    }
    tx.commit()?;
    if !paused {
        wake();
    }
    Ok(())
}

/// Paused queue names; `*` means every queue.
pub fn paused_queues(conn: &Connection) -> Result<Vec<String>> {
    let names = conn
        .prepare_cached("SELECT queue FROM paused_queues ORDER BY queue")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(names)
}

/// Every queue paused: all at once (`*`), or each known queue and each
/// queue that has jobs.
fn all_paused(conn: &Connection) -> Result<bool> {
    let paused = paused_queues(conn)?;
    if paused.iter().any(|q| q == "*") {
        return Ok(true);
    }
    if paused.is_empty() {
        return Ok(false);
    }
    if !KNOWN_QUEUES.iter().all(|k| paused.iter().any(|p| p == k)) {
        return Ok(false);
    }
    let unpaused_with_jobs: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM Jobs
                        WHERE queue NOT IN (SELECT queue FROM paused_queues))",
        [],
        |r| r.get(0),
    )?;
    Ok(!unpaused_with_jobs)
}

/// Unix milliseconds as RFC 3339 UTC with milliseconds (sorts as text).
fn rfc3339_ms(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    ))
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{self, Durability};

    fn open() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = db::open(&dir.path().join("shop.db"), Durability::Normal).unwrap();
        (dir, conn)
    }

    fn enqueue_one(conn: &mut Connection, job: NewJob) -> String {
        db::write(conn, |tx| enqueue(tx, &job)).unwrap()
    }

    #[test]
    fn the_queue_is_the_job_type_up_to_the_first_dot() {
        assert_eq!(queue_of("email.order_confirmation"), "email");
        assert_eq!(queue_of("notify.order_placed.v2"), "notify");
        assert_eq!(queue_of("plain"), "plain");
    }

    #[test]
    fn the_stored_queue_column_matches_queue_of() {
        let (_dir, mut conn) = open();
        enqueue_one(
            &mut conn,
            NewJob::new("email.order_confirmation", serde_json::json!({})),
        );
        enqueue_one(&mut conn, NewJob::new("plain", serde_json::json!({})));
        let queues: Vec<String> = conn
            .prepare("SELECT queue FROM Jobs ORDER BY queue")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(queues, ["email", "plain"]);
    }

    #[test]
    fn a_rolled_back_transaction_leaves_no_job() {
        let (_dir, mut conn) = open();
        let r: Result<()> = db::write(&mut conn, |tx| {
            enqueue(tx, &NewJob::new("email.x", serde_json::json!({"a": 1})))?;
            Err(Error::Other("checkout failed".into()))
        });
        assert!(r.is_err());
        assert_eq!(stats(&conn).unwrap(), JobStats::default());
    }

    #[test]
    fn a_duplicate_idempotency_key_returns_the_existing_job() {
        let (_dir, mut conn) = open();
        let job = NewJob::new("email.x", serde_json::json!({"a": 1})).idempotency_key("order-1");
        let a = enqueue_one(&mut conn, job.clone());
        let b = enqueue_one(&mut conn, job.clone());
        assert_eq!(a, b);
        // Same key, other type: another job.
        let c = enqueue_one(
            &mut conn,
            NewJob {
                job_type: "notify.x".into(),
                ..job
            },
        );
        assert_ne!(a, c);
        // No key: never deduplicated.
        let d = enqueue_one(&mut conn, NewJob::new("email.x", serde_json::json!({})));
        let e = enqueue_one(&mut conn, NewJob::new("email.x", serde_json::json!({})));
        assert_ne!(d, e);
        assert_eq!(stats(&conn).unwrap().pending, 4);
        let info = get_by_key(&conn, "email.x", "order-1").unwrap().unwrap();
        assert_eq!(info.id, a);
        assert_eq!(info.status, JobStatus::Pending);
        assert_eq!(info.attempts, 0);
        assert_eq!(info.max_attempts, DEFAULT_MAX_ATTEMPTS);
        assert!(get_by_key(&conn, "email.x", "order-2").unwrap().is_none());
    }

    #[test]
    fn claim_takes_due_jobs_once_and_ack_records_the_result() {
        let (_dir, mut conn) = open();
        let due = enqueue_one(&mut conn, NewJob::new("email.a", serde_json::json!(1)));
        let later = enqueue_one(
            &mut conn,
            NewJob::new("email.b", serde_json::json!(2)).run_at(now_ms() / 1000 + 3600),
        );
        let lease = Duration::from_secs(30);
        let claimed = db::write(&mut conn, |tx| claim(tx, "w1", 10, lease)).unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].id, due);
        assert_eq!(claimed[0].attempts, 1);
        assert_eq!(claimed[0].job, b"1");
        assert!(db::write(&mut conn, |tx| claim(tx, "w2", 10, lease))
            .unwrap()
            .is_empty());

        let info = get(&conn, &due).unwrap().unwrap();
        assert_eq!(info.status, JobStatus::Running);
        assert_eq!(info.lock_by.as_deref(), Some("w1"));

        // Another worker cannot ack it; the holder can.
        let done = Ack {
            id: due.clone(),
            attempt: 1,
            result: Ok(()),
        };
        assert_eq!(
            db::write(&mut conn, |tx| ack(tx, "w2", &done, &Backoff::default())).unwrap(),
            None
        );
        assert_eq!(
            db::write(&mut conn, |tx| ack(tx, "w1", &done, &Backoff::default())).unwrap(),
            Some(JobStatus::Done)
        );
        let info = get(&conn, &due).unwrap().unwrap();
        assert_eq!(info.status, JobStatus::Done);
        assert!(info.done_at.is_some());
        assert_eq!(
            get(&conn, &later).unwrap().unwrap().status,
            JobStatus::Pending
        );
    }

    #[test]
    fn a_retryable_failure_waits_with_backoff_and_the_last_attempt_kills() {
        let (_dir, mut conn) = open();
        let id = enqueue_one(
            &mut conn,
            NewJob::new("email.a", serde_json::json!(1)).max_attempts(2),
        );
        let lease = Duration::from_secs(30);
        let backoff = Backoff {
            base: Duration::from_millis(5),
            cap: Duration::from_millis(50),
        };
        let c = db::write(&mut conn, |tx| claim(tx, "w", 10, lease)).unwrap();
        let fail = Ack {
            id: id.clone(),
            attempt: c[0].attempts,
            result: Err(JobError::Retryable("smtp down".into())),
        };
        let before = now_ms();
        assert_eq!(
            db::write(&mut conn, |tx| ack(tx, "w", &fail, &backoff)).unwrap(),
            Some(JobStatus::Failed)
        );
        let run_at_ms: i64 = conn
            .query_row("SELECT run_at_ms FROM Jobs WHERE id = ?1", [&id], |r| {
                r.get(0)
            })
            .unwrap();
        assert!(
            run_at_ms >= before + 8 && run_at_ms <= now_ms() + 12,
            "{run_at_ms} vs {before}"
        );
        let info = get(&conn, &id).unwrap().unwrap();
        assert_eq!(info.last_error.as_deref(), Some("smtp down"));
        assert_eq!(info.attempts, 1);

        std::thread::sleep(Duration::from_millis(25));
        let c = db::write(&mut conn, |tx| claim(tx, "w", 10, lease)).unwrap();
        assert_eq!(c[0].attempts, 2);
        let fail = Ack { attempt: 2, ..fail };
        assert_eq!(
            db::write(&mut conn, |tx| ack(tx, "w", &fail, &backoff)).unwrap(),
            Some(JobStatus::Killed)
        );
        let info = get(&conn, &id).unwrap().unwrap();
        assert_eq!(
            info.last_error.as_deref(),
            Some("gave up after 2 attempts: smtp down")
        );
        assert!(info.done_at.is_some());
    }

    fn run_at_ms_of(conn: &Connection, id: &str) -> i64 {
        conn.query_row("SELECT run_at_ms FROM Jobs WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .unwrap()
    }

    #[test]
    fn retry_after_is_honoured_and_counts_the_attempt() {
        let (_dir, mut conn) = open();
        let id = enqueue_one(
            &mut conn,
            NewJob::new("email.a", serde_json::json!(1)).max_attempts(2),
        );
        let lease = Duration::from_secs(30);
        // A backoff far shorter than what the provider asks for.
        let backoff = Backoff {
            base: Duration::from_millis(5),
            cap: Duration::from_millis(50),
        };
        let c = db::write(&mut conn, |tx| claim(tx, "w", 10, lease)).unwrap();
        let before = now_ms();
        let slow_down = Ack {
            id: id.clone(),
            attempt: c[0].attempts,
            result: Err(JobError::RetryAfter {
                delay: Duration::from_secs(2),
                reason: "provider busy (429)".into(),
            }),
        };
        assert_eq!(
            db::write(&mut conn, |tx| ack(tx, "w", &slow_down, &backoff)).unwrap(),
            Some(JobStatus::Failed)
        );
        assert!(run_at_ms_of(&conn, &id) >= before + 2000);
        let info = get(&conn, &id).unwrap().unwrap();
        assert_eq!(info.attempts, 1);
        assert_eq!(info.last_error.as_deref(), Some("provider busy (429)"));
        // Not claimable before then.
        assert!(db::write(&mut conn, |tx| claim(tx, "w", 10, lease))
            .unwrap()
            .is_empty());

        // It counts: on the last attempt the job is dead.
        conn.execute("UPDATE Jobs SET run_at_ms = 0 WHERE id = ?1", [&id])
            .unwrap();
        let c = db::write(&mut conn, |tx| claim(tx, "w", 10, lease)).unwrap();
        let slow_down = Ack {
            attempt: c[0].attempts,
            ..slow_down
        };
        assert_eq!(
            db::write(&mut conn, |tx| ack(tx, "w", &slow_down, &backoff)).unwrap(),
            Some(JobStatus::Killed)
        );
    }

    #[test]
    fn an_unreachable_provider_does_not_use_up_attempts() {
        let (_dir, mut conn) = open();
        let id = enqueue_one(
            &mut conn,
            NewJob::new("email.a", serde_json::json!(1)).max_attempts(2),
        );
        let lease = Duration::from_secs(30);
        let backoff = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(3600),
        };
        let mut delays = Vec::new();
        for _ in 0..8 {
            conn.execute("UPDATE Jobs SET run_at_ms = 0 WHERE id = ?1", [&id])
                .unwrap();
            let c = db::write(&mut conn, |tx| claim(tx, "w", 10, lease)).unwrap();
            assert_eq!(c.len(), 1);
            assert_eq!(c[0].attempts, 1, "the attempt was given back");
            let before = now_ms();
            let down = Ack {
                id: id.clone(),
                attempt: c[0].attempts,
                result: Err(JobError::Unavailable("connection refused".into())),
            };
            assert_eq!(
                db::write(&mut conn, |tx| ack(tx, "w", &down, &backoff)).unwrap(),
                Some(JobStatus::Failed),
                "never dead for being offline"
            );
            delays.push(run_at_ms_of(&conn, &id) - before);
        }
        let info = get(&conn, &id).unwrap().unwrap();
        assert_eq!((info.status, info.attempts), (JobStatus::Failed, 0));
        assert_eq!(
            info.last_error.as_deref(),
            Some("waiting for the network: connection refused")
        );
        // Growing from base·2 (±20%), capped at 30 s.
        assert!((150..=260).contains(&delays[0]), "{delays:?}");
        assert!(delays[1] > delays[0], "{delays:?}");
        assert!(delays
            .iter()
            .all(|d| *d <= MAX_UNAVAILABLE_DELAY.as_millis() as i64 + 5));
        assert!(*delays.last().unwrap() >= 20_000, "{delays:?}");

        // Once the provider answers, a failure counts again and resets the
        // short waits.
        conn.execute("UPDATE Jobs SET run_at_ms = 0 WHERE id = ?1", [&id])
            .unwrap();
        let c = db::write(&mut conn, |tx| claim(tx, "w", 10, lease)).unwrap();
        let fail = Ack {
            id: id.clone(),
            attempt: c[0].attempts,
            result: Err(JobError::Retryable("server error (500)".into())),
        };
        db::write(&mut conn, |tx| ack(tx, "w", &fail, &backoff)).unwrap();
        let metadata: Option<String> = conn
            .query_row("SELECT metadata FROM Jobs WHERE id = ?1", [&id], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(metadata, None);
        assert_eq!(get(&conn, &id).unwrap().unwrap().attempts, 1);
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let b = Backoff::default();
        for _ in 0..50 {
            let d1 = b.delay(1).as_secs_f64();
            assert!((1.6..=2.4).contains(&d1), "{d1}");
            let d3 = b.delay(3).as_secs_f64();
            assert!((6.4..=9.6).contains(&d3), "{d3}");
        }
        // At the cap the waits still differ, and none exceeds it.
        let capped: Vec<Duration> = (0..50)
            .map(|i| b.delay(if i % 2 == 0 { 30 } else { u32::MAX }))
            .collect();
        assert!(capped
            .iter()
            .all(|d| (2880.0..=3600.0).contains(&d.as_secs_f64())));
        let first = capped[0];
        assert!(capped.iter().any(|d| *d != first), "{capped:?}");
    }

    #[test]
    fn release_counts_only_the_attempt_of_a_started_job() {
        let (_dir, mut conn) = open();
        let unstarted = enqueue_one(&mut conn, NewJob::new("email.a", serde_json::json!(1)));
        let started = enqueue_one(&mut conn, NewJob::new("email.b", serde_json::json!(2)));
        db::write(&mut conn, |tx| claim(tx, "w", 10, Duration::from_secs(30))).unwrap();
        db::write(&mut conn, |tx| start(tx, "w", &started, 1)).unwrap();
        assert!(db::write(&mut conn, |tx| release(tx, "w", &unstarted, false)).unwrap());
        assert!(db::write(&mut conn, |tx| release(tx, "w", &started, true)).unwrap());
        let info = get(&conn, &unstarted).unwrap().unwrap();
        assert_eq!(
            (info.status, info.attempts, info.lock_by),
            (JobStatus::Pending, 0, None)
        );
        let info = get(&conn, &started).unwrap().unwrap();
        assert_eq!((info.status, info.attempts), (JobStatus::Pending, 1));
        assert_eq!(
            info.last_error.as_deref(),
            Some("interrupted by a worker shutdown")
        );
    }

    #[test]
    fn an_expired_lease_is_reaped_and_only_a_started_attempt_counts() {
        let (_dir, mut conn) = open();
        let started = enqueue_one(&mut conn, NewJob::new("email.a", serde_json::json!(1)));
        let ahead = enqueue_one(&mut conn, NewJob::new("email.b", serde_json::json!(2)));
        // A worker claims both, starts one, and dies.
        let c = db::write(&mut conn, |tx| {
            claim(tx, "dead", 10, Duration::from_millis(20))
        })
        .unwrap();
        assert_eq!(c.iter().map(|c| c.attempts).collect::<Vec<_>>(), [1, 1]);
        assert!(db::write(&mut conn, |tx| start(tx, "dead", &started, 1)).unwrap());
        assert!(
            !db::write(&mut conn, |tx| start(tx, "other", &ahead, 1)).unwrap(),
            "only the holder starts a job"
        );
        assert_eq!(get(&conn, &started).unwrap().unwrap().attempts, 1);
        assert_eq!(get(&conn, &ahead).unwrap().unwrap().attempts, 0);

        assert_eq!(db::write(&mut conn, reap).unwrap(), 0);
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(db::write(&mut conn, reap).unwrap(), 2);
        for (id, attempts) in [(&started, 1), (&ahead, 0)] {
            let info = get(&conn, id).unwrap().unwrap();
            assert_eq!((info.status, info.attempts), (JobStatus::Pending, attempts));
            assert_eq!(info.last_error.as_deref(), Some(LEASE_LOST));
        }
        let c = db::write(&mut conn, |tx| {
            claim(tx, "alive", 10, Duration::from_secs(30))
        })
        .unwrap();
        let mut attempts: Vec<_> = c.iter().map(|c| (c.id.clone(), c.attempts)).collect();
        attempts.sort();
        let mut expected = vec![(started.clone(), 2), (ahead.clone(), 1)];
        expected.sort();
        assert_eq!(attempts, expected);
    }

    #[test]
    fn a_job_that_kills_its_worker_on_every_start_dies_in_the_end() {
        let (_dir, mut conn) = open();
        let id = enqueue_one(
            &mut conn,
            NewJob::new("email.a", serde_json::json!(1)).max_attempts(2),
        );
        for attempt in 1..=2 {
            let c =
                db::write(&mut conn, |tx| claim(tx, "w", 10, Duration::from_millis(5))).unwrap();
            assert_eq!(c[0].attempts, attempt);
            db::write(&mut conn, |tx| start(tx, "w", &id, attempt)).unwrap();
            std::thread::sleep(Duration::from_millis(10));
            assert_eq!(db::write(&mut conn, reap).unwrap(), 1);
        }
        let info = get(&conn, &id).unwrap().unwrap();
        assert_eq!((info.status, info.attempts), (JobStatus::Killed, 2));
    }

    #[test]
    fn an_ack_counts_an_attempt_whose_start_was_not_written() {
        let (_dir, mut conn) = open();
        let id = enqueue_one(&mut conn, NewJob::new("email.a", serde_json::json!(1)));
        let c = db::write(&mut conn, |tx| claim(tx, "w", 10, Duration::from_secs(30))).unwrap();
        let done = Ack {
            id: id.clone(),
            attempt: c[0].attempts,
            result: Ok(()),
        };
        assert_eq!(
            db::write(&mut conn, |tx| ack(tx, "w", &done, &Backoff::default())).unwrap(),
            Some(JobStatus::Done)
        );
        assert_eq!(get(&conn, &id).unwrap().unwrap().attempts, 1);
    }

    #[test]
    fn a_renewed_lease_is_not_reaped() {
        let (_dir, mut conn) = open();
        let id = enqueue_one(&mut conn, NewJob::new("email.a", serde_json::json!(1)));
        db::write(&mut conn, |tx| {
            claim(tx, "w", 10, Duration::from_millis(20))
        })
        .unwrap();
        let ids = vec![id.clone()];
        assert_eq!(
            db::write(&mut conn, |tx| renew(
                tx,
                "w",
                &ids,
                Duration::from_secs(30)
            ))
            .unwrap(),
            1
        );
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(db::write(&mut conn, reap).unwrap(), 0);
    }

    #[test]
    fn paused_queues_are_not_claimed_and_pause_all_covers_new_queues() {
        let (dir, mut conn) = open();
        let email = enqueue_one(&mut conn, NewJob::new("email.a", serde_json::json!(1)));
        let notify = enqueue_one(&mut conn, NewJob::new("notify.a", serde_json::json!(1)));
        set_paused(&conn, Some("email"), true).unwrap();
        assert_eq!(paused_queues(&conn).unwrap(), ["email"]);
        assert!(!stats(&conn).unwrap().paused);
        let c = db::write(&mut conn, |tx| claim(tx, "w", 10, Duration::from_secs(30))).unwrap();
        assert_eq!(c.iter().map(|c| &c.id).collect::<Vec<_>>(), [&notify]);

        set_paused(&conn, None, true).unwrap();
        assert!(stats(&conn).unwrap().paused);
        enqueue_one(&mut conn, NewJob::new("brand_new.a", serde_json::json!(1)));
        assert!(
            db::write(&mut conn, |tx| claim(tx, "w", 10, Duration::from_secs(30)))
                .unwrap()
                .is_empty()
        );
        assert!(!is_idle(&conn).unwrap(), "the notify job is running");

        // Resume one queue while all are paused: only that one runs.
        set_paused(&conn, Some("email"), false).unwrap();
        let c = db::write(&mut conn, |tx| claim(tx, "w", 10, Duration::from_secs(30))).unwrap();
        assert_eq!(c.iter().map(|c| &c.id).collect::<Vec<_>>(), [&email]);
        let mut paused = paused_queues(&conn).unwrap();
        paused.sort();
        assert_eq!(paused, ["brand_new", "notify"]);

        // Persists across reopen.
        drop(conn);
        let conn = db::open(&dir.path().join("shop.db"), Durability::Normal).unwrap();
        let mut paused = paused_queues(&conn).unwrap();
        paused.sort();
        assert_eq!(paused, ["brand_new", "notify"]);
        set_paused(&conn, None, false).unwrap();
        assert!(paused_queues(&conn).unwrap().is_empty());
    }

    #[test]
    fn list_is_newest_first_and_filters_by_status() {
        let (_dir, mut conn) = open();
        let ids: Vec<String> = (0..5)
            .map(|i| enqueue_one(&mut conn, NewJob::new("email.a", serde_json::json!(i))))
            .collect();
        let all = list(&conn, None, 3).unwrap();
        assert_eq!(
            all.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(),
            [ids[4].as_str(), ids[3].as_str(), ids[2].as_str()]
        );
        assert!(all[0].run_at.ends_with('Z') && all[0].run_at.contains('T'));
        assert_eq!(list(&conn, Some(JobStatus::Pending), 10).unwrap().len(), 5);
        assert!(list(&conn, Some(JobStatus::Done), 10).unwrap().is_empty());
        let json = serde_json::to_value(&all[0]).unwrap();
        assert_eq!(json["status"], "Pending");
        assert_eq!(json["job_type"], "email.a");
    }

    #[test]
    fn a_rolled_back_enqueue_with_a_key_does_not_block_a_later_one() {
        let (_dir, mut conn) = open();
        let job = NewJob::new("email.x", serde_json::json!({})).idempotency_key("k");
        let _ = db::write(&mut conn, |tx| {
            enqueue(tx, &job)?;
            Err::<(), _>(Error::Other("rollback".into()))
        });
        let id = enqueue_one(&mut conn, job);
        assert_eq!(get_by_key(&conn, "email.x", "k").unwrap().unwrap().id, id);
    }
}
