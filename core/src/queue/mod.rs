//! The embedded job queue: jobs live in the `Jobs` table (apalis-sql's
//! layout) of the shop's own SQLite file, so a checkout can insert its jobs
//! in the same transaction as the order.
//!
//! - [`store`]: plain SQL functions (enqueue, claim, ack, reschedule, reap,
//!   release, stats, list, pause).
//! - [`admin`]: the owner's actions (retry, cancel, pause by queue, delete
//!   dead jobs) and the retention that prunes old finished jobs.
//! - [`backend`]: the apalis `Backend` over those functions.
//! - [`crate::worker`]: runs apalis workers over the backend.

pub mod admin;
pub mod backend;
pub mod store;

use serde::{Deserialize, Serialize};

pub use store::*;

/// A job as its handler sees it. The payload is already decoded from the row
/// (an undecodable row never reaches a handler: it is marked dead).
#[derive(Debug, Clone)]
pub struct Job {
    pub id: String,
    pub job_type: String,
    pub payload: serde_json::Value,
    /// 1 on the first run.
    pub attempt: u32,
    pub max_attempts: u32,
    pub idempotency_key: Option<String>,
}

/// How a job failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// Try again later (with backoff), until attempts run out.
    #[error("{0}")]
    Retryable(String),
    /// Will never succeed: dead at once, with this reason.
    #[error("{0}")]
    Permanent(String),
    /// The other side asked to be left alone for `delay` (HTTP 429 or 503
    /// with `Retry-After`): like `Retryable` (the attempt counts), but the
    /// next attempt runs no sooner than `delay` from now.
    #[error("{reason}")]
    RetryAfter {
        delay: std::time::Duration,
        reason: String,
    },
    /// The other side cannot be reached at all (connection refused, DNS
    /// failure, connect timeout): the attempt is given back, so a job never
    /// runs out of attempts (nor goes dead) while the network is down, and
    /// it is tried again after a short wait that grows to at most 30 s.
    #[error("{0}")]
    Unavailable(String),
}

/// Runs jobs. The worker calls `handle` for each claimed job and records the
/// outcome in the job's row.
pub trait JobHandler: Send + Sync + 'static {
    fn handle(&self, job: Job) -> futures::future::BoxFuture<'static, Result<(), JobError>>;
}

/// A job's state, spelled as in apalis-sql's `Jobs.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JobStatus {
    /// Waiting for its `run_at`.
    Pending,
    /// Claimed by a worker under a lease.
    Running,
    /// Finished successfully.
    Done,
    /// Its last attempt failed; it will run again at `run_at`.
    Failed,
    /// Dead: failed permanently, ran out of attempts, or could not be decoded.
    Killed,
}

impl JobStatus {
    pub const ALL: [JobStatus; 5] = [
        JobStatus::Pending,
        JobStatus::Running,
        JobStatus::Done,
        JobStatus::Failed,
        JobStatus::Killed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "Pending",
            JobStatus::Running => "Running",
            JobStatus::Done => "Done",
            JobStatus::Failed => "Failed",
            JobStatus::Killed => "Killed",
        }
    }

    /// The word people see (the Jobs page and the CLI's text output):
    /// pending, running, retrying, done, dead.
    pub fn label(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Running => "running",
            JobStatus::Failed => "retrying",
            JobStatus::Done => "done",
            JobStatus::Killed => "dead",
        }
    }

    /// Parses either the stored spelling or a friendly one (`dead`, `retrying`).
    pub fn parse(s: &str) -> Option<JobStatus> {
        Some(match s.to_ascii_lowercase().as_str() {
            "pending" | "queued" => JobStatus::Pending,
            "running" => JobStatus::Running,
            "done" => JobStatus::Done,
            "failed" | "retrying" => JobStatus::Failed,
            "killed" | "dead" => JobStatus::Killed,
            _ => return None,
        })
    }
}
