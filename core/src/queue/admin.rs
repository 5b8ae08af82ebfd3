//! What the shop owner does to the queue from the Jobs page and the CLI:
//! inspect, retry and cancel jobs, pause and resume queues, delete dead jobs,
//! and the retention that prunes old finished jobs.
//!
//! Every change is one conditional `UPDATE`/`DELETE` in a `BEGIN IMMEDIATE`
//! transaction, so an action never races a worker: a job a worker claimed in
//! the meantime is `Running`, and the action reports that instead of touching
//! it.
//!
//! Rules chosen here:
//!
//! - **Retry** (a dead or retrying job): back to `Pending`, due now, attempts
//!   reset to 0 so it gets a full set of tries. `last_result` is kept: the
//!   Jobs page keeps showing why it failed until the next attempt replaces it
//!   (success clears it).
//! - **Cancel** (a pending or retrying job): `Killed` with the reason
//!   [`CANCELLED`]. apalis-sql has no cancelled state; a dead job with a
//!   reason keeps the apalis layout, and can be retried like any dead job.
//! - **Pause/resume** by queue name: see [`set_queue_paused`].
//! - **Retention**: only `Done` jobs are pruned automatically (see
//!   [`prune_done`]). Dead jobs are work that did not happen; they stay on the
//!   Jobs page until the owner deletes them ([`purge_dead`]).

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use serde::Serialize;

use super::{store, JobInfo, JobStatus, KNOWN_QUEUES};
use crate::error::{Error, Result};

/// `last_result` of a job the owner cancelled.
pub const CANCELLED: &str = "cancelled by the shop owner";

/// Default retention of finished jobs, in days (setting `job_retention_days`).
pub const DEFAULT_RETENTION_DAYS: u32 = 30;

/// Rows deleted per transaction when pruning, so the write lock is held for
/// a few milliseconds at a time and checkouts never wait long behind it.
pub const PRUNE_BATCH: usize = 500;

const DAY_SECONDS: i64 = 86_400;

/// A job with its payload, for the Jobs page's detail view.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobDetail {
    #[serde(flatten)]
    pub info: JobInfo,
    /// The decoded JSON payload; for a row that is not valid JSON, its bytes
    /// as (lossy) text.
    pub payload: serde_json::Value,
    /// When the current or last claim was taken, RFC 3339 UTC.
    pub lock_at: Option<String>,
}

/// A job by id with its payload. Unknown id → `not_found`.
pub fn get_detail(conn: &Connection, id: &str) -> Result<JobDetail> {
    let info = store::get(conn, id)?.ok_or_else(|| not_found(id))?;
    let (job, lock_at): (Vec<u8>, Option<i64>) =
        conn.query_row("SELECT job, lock_at FROM Jobs WHERE id = ?1", [id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    let payload = serde_json::from_slice(&job)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&job).into_owned()));
    Ok(JobDetail {
        info,
        payload,
        lock_at: lock_at.map(rfc3339_s),
    })
}

fn not_found(id: &str) -> Error {
    Error::NotFound(format!("no job with id {id}"))
}

fn friendly(status: JobStatus) -> &'static str {
    match status {
        JobStatus::Pending => "pending",
        JobStatus::Running => "running",
        JobStatus::Done => "done",
        JobStatus::Failed => "waiting to retry",
        JobStatus::Killed => "dead",
    }
}

/// The job's current status, or `not_found`.
fn status_of(tx: &Transaction, id: &str) -> Result<JobStatus> {
    let status: Option<String> = tx
        .query_row("SELECT status FROM Jobs WHERE id = ?1", [id], |r| r.get(0))
        .optional()?;
    let status = status.ok_or_else(|| not_found(id))?;
    JobStatus::parse(&status)
        .ok_or_else(|| Error::Other(format!("job {id} has an unknown status {status:?}")))
}

fn immediate(conn: &Connection) -> Result<Transaction<'_>> {
    Ok(Transaction::new_unchecked(
        conn,
        TransactionBehavior::Immediate,
    )?)
}

/// Runs a dead (`Killed`) or retrying (`Failed`) job again: `Pending`, due
/// now, attempts reset. Wakes this process's workers. Any other state →
/// `invalid_input` naming it; unknown id → `not_found`.
pub fn retry(conn: &Connection, id: &str, now_ms: i64) -> Result<JobInfo> {
    let tx = immediate(conn)?;
    let changed = tx.execute(
        "UPDATE Jobs
         SET status = 'Pending', attempts = 0, run_at_ms = ?1, run_at = ?2, done_at = NULL,
             lock_by = NULL, lock_at = NULL, lease_expires_ms = NULL
         WHERE id = ?3 AND status IN ('Killed', 'Failed')",
        params![now_ms, now_ms.div_euclid(1000), id],
    )?;
    if changed == 0 {
        let status = status_of(&tx, id)?;
        return Err(Error::invalid(
            "id",
            format!(
                "job {id} is {}: only dead or retrying jobs can be retried",
                friendly(status)
            ),
        ));
    }
    tx.commit()?;
    store::wake();
    store::get(conn, id)?.ok_or_else(|| not_found(id))
}

/// Cancels a pending or retrying job: it becomes dead with the reason
/// [`CANCELLED`] and is never run. A running, done or dead job →
/// `invalid_input` naming its state; unknown id → `not_found`.
pub fn cancel(conn: &Connection, id: &str, now_ms: i64) -> Result<JobInfo> {
    let tx = immediate(conn)?;
    let changed = tx.execute(
        "UPDATE Jobs
         SET status = 'Killed', done_at = ?1, last_result = ?2, lease_expires_ms = NULL
         WHERE id = ?3 AND status IN ('Pending', 'Failed')",
        params![now_ms.div_euclid(1000), CANCELLED, id],
    )?;
    if changed == 0 {
        let status = status_of(&tx, id)?;
        return Err(Error::invalid(
            "id",
            format!(
                "job {id} is {}: only pending or retrying jobs can be cancelled",
                friendly(status)
            ),
        ));
    }
    tx.commit()?;
    store::get(conn, id)?.ok_or_else(|| not_found(id))
}

/// A queue and whether it is paused, for the per-queue toggles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueState {
    pub queue: String,
    pub paused: bool,
}

/// The known queues, each with its paused state (paused alone or by "all").
pub fn queue_states(conn: &Connection) -> Result<Vec<QueueState>> {
    let paused = store::paused_queues(conn)?;
    let all = paused.iter().any(|q| q == "*");
    Ok(KNOWN_QUEUES
        .iter()
        .map(|q| QueueState {
            queue: q.to_string(),
            paused: all || paused.iter().any(|p| p == q),
        })
        .collect())
}

/// Checks a queue name given by the owner: one of [`KNOWN_QUEUES`].
pub fn known_queue(name: &str) -> Result<&'static str> {
    let name = name.trim();
    KNOWN_QUEUES
        .iter()
        .find(|q| q.eq_ignore_ascii_case(name))
        .copied()
        .ok_or_else(|| {
            Error::invalid(
                "queue",
                format!(
                    "unknown queue \"{name}\" (known queues: {})",
                    KNOWN_QUEUES.join(", ")
                ),
            )
        })
}

/// Pauses or resumes one queue by name, or every queue (`None`). Stored in
/// `paused_queues`, so it holds across restarts.
///
/// The rules:
/// - Pausing all stores the single row `*`, which also covers queues that
///   get jobs later. Resuming all clears every row.
/// - Pausing one queue adds its row (while all are paused this changes
///   nothing: resuming all clears it with the rest).
/// - Resuming one queue while all are paused replaces `*` with every other
///   queue spelled out (the known queues and any queue that has jobs), so
///   "everything except `email`" stays paused. Afterwards, a queue that gets
///   its first jobs later is not covered.
/// - Resuming a queue that is not paused is a no-op.
///
/// An unknown queue name → `invalid_input` listing the known queues.
pub fn set_queue_paused(conn: &Connection, queue: Option<&str>, paused: bool) -> Result<()> {
    let queue = queue.map(known_queue).transpose()?;
    store::set_paused(conn, queue, paused)
}

/// Deletes dead jobs; with `older_than_days`, only those that died at least
/// that many days before `now_s` (unix seconds). Returns how many.
///
/// Deleting a dead confirmation email also deletes the record that it
/// failed: its order then reads like one whose job was pruned.
pub fn purge_dead(conn: &Connection, older_than_days: Option<u32>, now_s: i64) -> Result<u64> {
    let cutoff = older_than_days.map(|days| now_s.saturating_sub(i64::from(days) * DAY_SECONDS));
    let mut total = 0;
    loop {
        let tx = immediate(conn)?;
        let n = tx.execute(
            "DELETE FROM Jobs WHERE id IN (
                 SELECT id FROM Jobs
                 WHERE status = 'Killed' AND (?1 IS NULL OR done_at <= ?1) LIMIT ?2)",
            params![cutoff, PRUNE_BATCH as i64],
        )?;
        tx.commit()?;
        total += n as u64;
        if n < PRUNE_BATCH {
            return Ok(total);
        }
    }
}

/// The retention setting, in days.
pub fn retention_days(conn: &Connection) -> Result<u32> {
    let value = crate::settings::get(conn, "job_retention_days")?;
    Ok(value.trim().parse().unwrap_or(DEFAULT_RETENTION_DAYS))
}

/// Deletes at most `batch` `Done` jobs that finished at or before
/// `now_s − retention_days` (unix seconds). Returns how many went; call again
/// while it returns `batch`.
///
/// Only `Done` rows go: never pending, running, retrying or dead ones. An
/// order whose confirmation job was pruned reads its email as sent (see
/// [`crate::orders`]).
///
/// The candidates are read without the write lock, then deleted in one short
/// transaction that checks the conditions again. They are looked up through
/// the `(status, id)` index below the id a job created at the cutoff would
/// have (ids are ULIDs, which start with their creation time), so a large
/// history with nothing to prune costs little: a job finishes after it was
/// created, so a job created after the cutoff cannot have finished before
/// it. (Should the clock have gone back, such a job waits for a later run.)
pub fn prune_done(
    conn: &Connection,
    retention_days: u32,
    now_s: i64,
    batch: usize,
) -> Result<usize> {
    let cutoff = now_s.saturating_sub(i64::from(retention_days) * DAY_SECONDS);
    let id_bound = ulid_floor(cutoff.saturating_add(1).saturating_mul(1000));
    let ids: Vec<String> = conn
        .prepare_cached(
            "SELECT id FROM Jobs INDEXED BY jobs_status
             WHERE status = 'Done' AND id < ?1 AND done_at <= ?2
             ORDER BY id LIMIT ?3",
        )?
        .query_map(params![id_bound, cutoff, batch as i64], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    if ids.is_empty() {
        return Ok(0);
    }
    let ids = serde_json::to_string(&ids).map_err(|e| Error::Other(e.to_string()))?;
    let tx = immediate(conn)?;
    let n = tx.execute(
        "DELETE FROM Jobs
         WHERE id IN (SELECT value FROM json_each(?1)) AND status = 'Done' AND done_at <= ?2",
        params![ids, cutoff],
    )?;
    tx.commit()?;
    Ok(n)
}

/// Prunes in batches until nothing is left to prune. Returns how many went.
pub fn prune_all(conn: &Connection, retention_days: u32, now_s: i64) -> Result<u64> {
    let mut total = 0u64;
    loop {
        let n = prune_done(conn, retention_days, now_s, PRUNE_BATCH)?;
        total += n as u64;
        if n < PRUNE_BATCH {
            return Ok(total);
        }
    }
}

/// The smallest ULID (as text) created at unix millisecond `ms`.
fn ulid_floor(ms: i64) -> String {
    let ms = u64::try_from(ms.max(0)).unwrap_or(0);
    ulid::Ulid::from_parts(ms, 0).to_string()
}

/// Unix seconds as RFC 3339 UTC, spelled like the other job times.
fn rfc3339_s(s: i64) -> String {
    let t =
        time::OffsetDateTime::from_unix_timestamp(s).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    ))
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{self, Durability};
    use crate::queue::{claim, enqueue, now_ms, NewJob};
    use std::time::Duration;

    fn open() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = db::open(&dir.path().join("shop.db"), Durability::Normal).unwrap();
        (dir, conn)
    }

    fn add(conn: &mut Connection, job_type: &str) -> String {
        db::write(conn, |tx| {
            enqueue(tx, &NewJob::new(job_type, serde_json::json!({"n": 1})))
        })
        .unwrap()
    }

    /// Puts a job straight into a state, as the worker would leave it.
    fn force(conn: &Connection, id: &str, status: &str, attempts: u32, done_at: Option<i64>) {
        conn.execute(
            "UPDATE Jobs SET status = ?1, attempts = ?2, done_at = ?3,
                             last_result = CASE WHEN ?1 IN ('Failed', 'Killed') THEN 'smtp down' END
             WHERE id = ?4",
            params![status, attempts, done_at, id],
        )
        .unwrap();
    }

    fn status(conn: &Connection, id: &str) -> JobStatus {
        store::get(conn, id).unwrap().unwrap().status
    }

    fn code(e: Error) -> (String, String) {
        (e.code().to_string(), e.to_string())
    }

    #[test]
    fn retry_gives_a_dead_or_retrying_job_a_fresh_set_of_attempts_now() {
        let (_dir, mut conn) = open();
        let later = now_ms() + 3_600_000;
        for from in ["Killed", "Failed"] {
            let id = add(&mut conn, "email.a");
            force(&conn, &id, from, 25, Some(1));
            conn.execute(
                "UPDATE Jobs SET run_at_ms = ?1, run_at = ?1 / 1000, lock_by = 'w' WHERE id = ?2",
                params![later, id],
            )
            .unwrap();
            let before = now_ms();
            let info = retry(&conn, &id, before).unwrap();
            assert_eq!(info.status, JobStatus::Pending, "{from}");
            assert_eq!(info.attempts, 0);
            assert_eq!(info.done_at, None);
            assert_eq!(info.lock_by, None);
            assert_eq!(info.last_error.as_deref(), Some("smtp down"), "kept");
            let claimed =
                db::write(&mut conn, |tx| claim(tx, "w2", 10, Duration::from_secs(30))).unwrap();
            assert_eq!(claimed.len(), 1, "due now");
            assert_eq!(claimed[0].id, id);
            assert_eq!(claimed[0].attempts, 1);
        }
    }

    #[test]
    fn retry_refuses_jobs_that_are_not_dead_or_retrying() {
        let (_dir, mut conn) = open();
        for (state, word) in [
            ("Pending", "pending"),
            ("Running", "running"),
            ("Done", "done"),
        ] {
            let id = add(&mut conn, "email.a");
            force(&conn, &id, state, 1, None);
            let (code, message) = code(retry(&conn, &id, now_ms()).unwrap_err());
            assert_eq!(code, "invalid_input");
            assert!(message.contains(&format!("is {word}")), "{message}");
            assert_eq!(status(&conn, &id).as_str(), state);
        }
        let (code, _) = self::code(retry(&conn, "nope", now_ms()).unwrap_err());
        assert_eq!(code, "not_found");
    }

    #[test]
    fn cancel_kills_a_pending_or_retrying_job_with_a_reason() {
        let (_dir, mut conn) = open();
        for from in ["Pending", "Failed"] {
            let id = add(&mut conn, "email.a");
            force(&conn, &id, from, 1, None);
            let now = now_ms();
            let info = cancel(&conn, &id, now).unwrap();
            assert_eq!(info.status, JobStatus::Killed);
            assert_eq!(info.last_error.as_deref(), Some(CANCELLED));
            assert!(info.done_at.is_some());
        }
        assert!(
            db::write(&mut conn, |tx| claim(tx, "w", 10, Duration::from_secs(30)))
                .unwrap()
                .is_empty(),
            "a cancelled job never runs"
        );
        // And it can be retried like any dead job.
        let id = add(&mut conn, "notify.a");
        cancel(&conn, &id, now_ms()).unwrap();
        assert_eq!(
            retry(&conn, &id, now_ms()).unwrap().status,
            JobStatus::Pending
        );
    }

    #[test]
    fn cancel_refuses_running_done_and_dead_jobs() {
        let (_dir, mut conn) = open();
        for (state, word) in [("Running", "running"), ("Done", "done"), ("Killed", "dead")] {
            let id = add(&mut conn, "email.a");
            force(&conn, &id, state, 1, Some(5));
            let (code, message) = code(cancel(&conn, &id, now_ms()).unwrap_err());
            assert_eq!(code, "invalid_input");
            assert!(message.contains(&format!("is {word}")), "{message}");
            assert_eq!(status(&conn, &id).as_str(), state);
        }
        let (code, _) = self::code(cancel(&conn, "nope", now_ms()).unwrap_err());
        assert_eq!(code, "not_found");
    }

    #[test]
    fn a_job_claimed_first_is_not_cancelled() {
        let (_dir, mut conn) = open();
        let id = add(&mut conn, "email.a");
        db::write(&mut conn, |tx| claim(tx, "w", 10, Duration::from_secs(30))).unwrap();
        assert!(cancel(&conn, &id, now_ms()).is_err());
        assert_eq!(status(&conn, &id), JobStatus::Running);
    }

    #[test]
    fn detail_has_the_payload_even_when_it_is_not_json() {
        let (_dir, mut conn) = open();
        let id = add(&mut conn, "email.a");
        let d = get_detail(&conn, &id).unwrap();
        assert_eq!(d.payload, serde_json::json!({"n": 1}));
        assert_eq!(d.info.id, id);
        assert_eq!(d.lock_at, None);
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["job_type"], "email.a", "info is flattened");
        assert_eq!(json["payload"]["n"], 1);

        conn.execute("UPDATE Jobs SET job = X'FF6869' WHERE id = ?1", [&id])
            .unwrap();
        assert_eq!(
            get_detail(&conn, &id).unwrap().payload,
            serde_json::json!("\u{FFFD}hi")
        );
        assert_eq!(get_detail(&conn, "nope").unwrap_err().code(), "not_found");
    }

    fn paused(conn: &Connection) -> Vec<(String, bool)> {
        queue_states(conn)
            .unwrap()
            .into_iter()
            .map(|q| (q.queue, q.paused))
            .collect()
    }

    fn states(email: bool, notify: bool) -> Vec<(String, bool)> {
        vec![("email".into(), email), ("notify".into(), notify)]
    }

    #[test]
    fn queues_pause_and_resume_by_name_or_all() {
        let (_dir, conn) = open();
        assert_eq!(paused(&conn), states(false, false));
        set_queue_paused(&conn, Some("email"), true).unwrap();
        assert_eq!(paused(&conn), states(true, false));
        set_queue_paused(&conn, Some("Notify "), true).unwrap();
        assert_eq!(paused(&conn), states(true, true));
        set_queue_paused(&conn, Some("email"), false).unwrap();
        assert_eq!(paused(&conn), states(false, true));
        // Resuming a queue that runs is a no-op.
        set_queue_paused(&conn, Some("email"), false).unwrap();
        assert_eq!(paused(&conn), states(false, true));
        set_queue_paused(&conn, None, true).unwrap();
        assert_eq!(store::paused_queues(&conn).unwrap(), ["*"]);
        assert_eq!(paused(&conn), states(true, true));
        set_queue_paused(&conn, None, false).unwrap();
        assert_eq!(paused(&conn), states(false, false));
        assert!(store::paused_queues(&conn).unwrap().is_empty());
    }

    #[test]
    fn resuming_one_queue_while_all_are_paused_keeps_the_others_paused() {
        let (_dir, mut conn) = open();
        // A queue outside the known ones that has jobs stays paused too.
        let other = add(&mut conn, "report.daily");
        let email = add(&mut conn, "email.a");
        let notify = add(&mut conn, "notify.a");
        set_queue_paused(&conn, None, true).unwrap();
        set_queue_paused(&conn, Some("email"), false).unwrap();
        assert_eq!(paused(&conn), states(false, true));
        assert_eq!(store::paused_queues(&conn).unwrap(), ["notify", "report"]);
        let claimed: Vec<String> =
            db::write(&mut conn, |tx| claim(tx, "w", 10, Duration::from_secs(30)))
                .unwrap()
                .into_iter()
                .map(|c| c.id)
                .collect();
        assert_eq!(claimed, [email]);
        assert_eq!(status(&conn, &notify), JobStatus::Pending);
        assert_eq!(status(&conn, &other), JobStatus::Pending);
        // Pausing one queue while all are paused changes nothing.
        set_queue_paused(&conn, None, true).unwrap();
        set_queue_paused(&conn, Some("notify"), true).unwrap();
        assert_eq!(paused(&conn), states(true, true));
        set_queue_paused(&conn, None, false).unwrap();
        assert_eq!(paused(&conn), states(false, false));
    }

    #[test]
    fn an_unknown_queue_name_lists_the_known_ones() {
        let (_dir, conn) = open();
        for name in ["emails", "", "*", "email.order_confirmation"] {
            let e = set_queue_paused(&conn, Some(name), true).unwrap_err();
            assert_eq!(e.code(), "invalid_input");
            assert!(e.to_string().contains("email, notify"), "{e}");
        }
        assert!(store::paused_queues(&conn).unwrap().is_empty());
    }

    const NOW: i64 = 2_000_000_000;

    #[test]
    fn purge_dead_deletes_dead_jobs_only_and_by_age() {
        let (_dir, mut conn) = open();
        let mut ids = std::collections::HashMap::new();
        for (name, state, days) in [
            ("dead_old", "Killed", 10),
            ("dead_edge", "Killed", 7),
            ("dead_new", "Killed", 6),
            ("done_old", "Done", 100),
            ("failed", "Failed", 100),
            ("pending", "Pending", 100),
            ("running", "Running", 100),
        ] {
            let id = add(&mut conn, "email.a");
            force(&conn, &id, state, 1, Some(NOW - days * DAY_SECONDS));
            ids.insert(name, id);
        }
        assert_eq!(purge_dead(&conn, Some(7), NOW).unwrap(), 2);
        assert!(store::get(&conn, &ids["dead_old"]).unwrap().is_none());
        assert!(store::get(&conn, &ids["dead_edge"]).unwrap().is_none());
        assert!(store::get(&conn, &ids["dead_new"]).unwrap().is_some());
        assert_eq!(purge_dead(&conn, None, NOW).unwrap(), 1);
        assert_eq!(purge_dead(&conn, None, NOW).unwrap(), 0);
        let left: i64 = conn
            .query_row("SELECT count(*) FROM Jobs", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 4);
    }

    #[test]
    fn purge_dead_goes_in_batches() {
        let (_dir, mut conn) = open();
        let n = PRUNE_BATCH + 7;
        db::write(&mut conn, |tx| {
            for _ in 0..n {
                enqueue(tx, &NewJob::new("email.a", serde_json::json!(1)))?;
            }
            Ok(())
        })
        .unwrap();
        conn.execute("UPDATE Jobs SET status = 'Killed', done_at = 1", [])
            .unwrap();
        assert_eq!(purge_dead(&conn, None, NOW).unwrap(), n as u64);
    }

    /// Jobs created now and finished at `NOW − age`, with `NOW` well in the
    /// future of the real clock (the injected clock).
    #[test]
    fn prune_deletes_exactly_the_done_jobs_past_retention() {
        let (_dir, mut conn) = open();
        let now = now_ms() / 1000 + 400 * DAY_SECONDS;
        let cutoff = now - 30 * DAY_SECONDS;
        let mut cases = Vec::new();
        for (state, done_at, goes) in [
            ("Done", cutoff - 90 * DAY_SECONDS, true),
            ("Done", cutoff - 1, true),
            ("Done", cutoff, true),
            ("Done", cutoff + 1, false),
            ("Done", now, false),
            ("Killed", cutoff - 90 * DAY_SECONDS, false),
            ("Failed", cutoff - 90 * DAY_SECONDS, false),
            ("Pending", cutoff - 90 * DAY_SECONDS, false),
            ("Running", cutoff - 90 * DAY_SECONDS, false),
        ] {
            let id = add(&mut conn, "email.a");
            force(&conn, &id, state, 1, Some(done_at));
            cases.push((id, state, done_at, goes));
        }
        assert_eq!(prune_done(&conn, 30, now, 2).unwrap(), 2, "one batch");
        assert_eq!(prune_all(&conn, 30, now).unwrap(), 1);
        assert_eq!(prune_all(&conn, 30, now).unwrap(), 0);
        for (id, state, done_at, goes) in cases {
            assert_eq!(
                store::get(&conn, &id).unwrap().is_none(),
                goes,
                "{state} done_at {}",
                done_at - cutoff
            );
        }
    }

    #[test]
    fn prune_skips_jobs_created_after_the_cutoff() {
        // Read with the real clock: a job created now cannot have finished
        // 30 days ago, whatever its done_at says.
        let (_dir, mut conn) = open();
        let id = add(&mut conn, "email.a");
        let now = now_ms() / 1000;
        force(&conn, &id, "Done", 1, Some(now - 31 * DAY_SECONDS));
        assert_eq!(prune_all(&conn, 30, now).unwrap(), 0);
        assert_eq!(prune_all(&conn, 30, now + 31 * DAY_SECONDS).unwrap(), 1);
    }

    #[test]
    fn retention_comes_from_the_settings() {
        let (_dir, conn) = open();
        assert_eq!(retention_days(&conn).unwrap(), DEFAULT_RETENTION_DAYS);
        crate::settings::set(&conn, "job_retention_days", "7").unwrap();
        assert_eq!(retention_days(&conn).unwrap(), 7);
        for bad in ["0", "3651", "-1", "week", ""] {
            let e = crate::settings::set(&conn, "job_retention_days", bad).unwrap_err();
            assert_eq!(e.code(), "invalid_input", "{bad}");
        }
        crate::settings::set(&conn, "job_retention_days", "3650").unwrap();
        assert_eq!(retention_days(&conn).unwrap(), 3650);
    }
}
