//! The baseline: one-row INSERT commits with plain rusqlite, WAL mode, no
//! ShopDesk code at all. FULL is what one durable commit costs on this disk
//! (an fsync of the WAL); NORMAL is SQLite's ceiling for small commits.

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

/// `n` autocommit one-row INSERTs into a fresh WAL database.
pub fn commits(sync: Sync, n: usize) -> BenchResult<RawCommits> {
    let dir = tempfile::tempdir()?;
    let conn = Connection::open(dir.path().join("raw.db"))?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", sync.pragma())?;
    conn.execute_batch(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, created_at TEXT NOT NULL, body TEXT NOT NULL)",
    )?;
    let body = "x".repeat(200);
    let mut insert = conn.prepare("INSERT INTO t (created_at, body) VALUES (?1, ?2)")?;
    // A few untimed commits: the first ones also create the WAL file.
    for _ in 0..10 {
        insert.execute(rusqlite::params!["warm-up", body])?;
    }
    let mut samples = Vec::with_capacity(n);
    let started = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        insert.execute(rusqlite::params![i.to_string(), body])?;
        samples.push(t.elapsed());
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
