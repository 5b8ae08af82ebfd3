//! The baseline: one-row INSERT commits with plain rusqlite, WAL mode, no
//! ShopDesk code at all. FULL is what one durable commit costs on this disk
//! (an fsync of the WAL); NORMAL is SQLite's ceiling for small commits.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::{BenchResult, Latencies, Rate};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sync {
    Normal,
    Full,
}

impl Sync {
    fn pragma(self) -> &'static str {
        match self {
            Sync::Normal => "NORMAL",
            Sync::Full => "FULL",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct RawCommits {
    pub rate: Rate,
    pub latencies: Latencies,
}

/// A fresh WAL database for one-row INSERT commits.
pub struct Committer {
    conn: Connection,
    body: String,
    next: u64,
}

impl Committer {
    pub fn open(path: &Path, sync: Sync) -> BenchResult<Self> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", sync.pragma())?;
        conn.execute_batch(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, created_at TEXT NOT NULL, body TEXT NOT NULL)",
        )?;
        let mut committer = Self {
            conn,
            body: "x".repeat(200),
            next: 0,
        };
        // The first commits also create the WAL file.
        for _ in 0..10 {
            committer.commit()?;
        }
        Ok(committer)
    }

    /// One autocommit INSERT of one row; how long it took.
    pub fn commit(&mut self) -> BenchResult<Duration> {
        self.next += 1;
        let mut insert = self
            .conn
            .prepare_cached("INSERT INTO t (created_at, body) VALUES (?1, ?2)")?;
        let t = Instant::now();
        insert.execute(rusqlite::params![self.next.to_string(), self.body])?;
        Ok(t.elapsed())
    }
}

/// `n` autocommit one-row INSERTs into a fresh WAL database.
pub fn commits(sync: Sync, n: usize) -> BenchResult<RawCommits> {
    let dir = tempfile::tempdir()?;
    let mut committer = Committer::open(&dir.path().join("raw.db"), sync)?;
    let mut samples = Vec::with_capacity(n);
    let started = Instant::now();
    for _ in 0..n {
        samples.push(committer.commit()?);
    }
    let elapsed = started.elapsed();
    Ok(RawCommits {
        rate: Rate {
            count: n as u64,
            elapsed,
        },
        latencies: Latencies::new(samples),
    })
}
