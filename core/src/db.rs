//! The one SQLite file: opening it, its pragmas, migrations, and write
//! transactions (always `BEGIN IMMEDIATE`, so a writer waits for the lock up
//! front instead of failing half-way through).

use std::path::Path;
use std::sync::LazyLock;
use std::time::Duration;

use include_dir::{include_dir, Dir};
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};
use rusqlite_migration::{Migrations, MigrationsBuilder};

use crate::error::{is_busy, Error, Result};

static MIGRATIONS_DIR: Dir = include_dir!("$CARGO_MANIFEST_DIR/../migrations");

static MIGRATIONS: LazyLock<Migrations<'static>> = LazyLock::new(|| {
    MigrationsBuilder::from_directory(&MIGRATIONS_DIR)
        .expect("migrations folder is well-formed (checked by a test)")
        .finalize()
});

/// How long a connection waits for another writer before SQLite says busy.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Prepared statements each connection keeps for reuse.
const STATEMENT_CACHE: usize = 64;

/// Durability of a connection's commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `synchronous=FULL`: a committed order survives power loss. Checkout.
    Full,
    /// `synchronous=NORMAL`: safe against crashes of the app (WAL); used by
    /// the queue worker and readers, whose writes can be redone.
    Normal,
}

/// WAL pages after which the till's own connection checkpoints. The
/// worker checkpoints in the background every 100 ms, so a checkout's commit
/// only pays for a checkpoint when no worker is running (the default, 1000,
/// put one on every ~50th order); the WAL stays bounded either way.
pub const TILL_AUTOCHECKPOINT_PAGES: i64 = 4000;

/// Opens (creating if needed) the database and brings its schema up to date.
pub fn open(path: &Path, durability: Durability) -> Result<Connection> {
    let mut conn = open_raw(path, durability)?;
    MIGRATIONS.to_latest(&mut conn)?;
    Ok(conn)
}

/// Opens without migrating: for connections opened after [`open`] has run
/// once in this process (worker, readers).
pub fn open_raw(path: &Path, durability: Durability) -> Result<Connection> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Checkout alone prepares a dozen statements, and the till's connection
    // also answers the pages' queries: keep them all prepared (the default
    // keeps 16).
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(
        None,
        "synchronous",
        match durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        },
    )?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    if durability == Durability::Full {
        conn.pragma_update(None, "wal_autocheckpoint", TILL_AUTOCHECKPOINT_PAGES)?;
    }
    Ok(conn)
}

/// Notices commits made by other connections: those of other processes (the
/// CLI, a headless worker, another till) as well as this process's own
/// other connections. It reads SQLite's `PRAGMA data_version` on a
/// connection of its own that never writes, so asking is a read of a few
/// bytes, with no table touched.
pub struct CommitWatch {
    conn: Connection,
    seen: i64,
}

impl CommitWatch {
    /// Starts watching the database at `path` (already created by [`open`]).
    pub fn open(path: &Path) -> Result<CommitWatch> {
        let conn = open_raw(path, Durability::Normal)?;
        let seen = data_version(&conn)?;
        Ok(CommitWatch { conn, seen })
    }

    /// Whether another connection committed since the last call (the first
    /// time: since the watch was opened).
    pub fn changed(&mut self) -> Result<bool> {
        let now = data_version(&self.conn)?;
        let changed = now != self.seen;
        self.seen = now;
        Ok(changed)
    }
}

fn data_version(conn: &Connection) -> Result<i64> {
    Ok(conn.pragma_query_value(None, "data_version", |r| r.get(0))?)
}

/// Runs `f` in a `BEGIN IMMEDIATE` transaction and commits if it returns Ok.
/// When SQLite reports busy even after the busy timeout, the whole
/// transaction is retried a few times (SQLite's lock waiting is not fair).
pub fn write<T>(conn: &mut Connection, mut f: impl FnMut(&Transaction) -> Result<T>) -> Result<T> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = (|| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = f(&tx)?;
            tx.commit()?;
            Ok(value)
        })();
        match result {
            Err(Error::Db(e)) if is_busy(&e) && attempt < 4 => {
                tracing::warn!(attempt, "database busy, retrying the transaction");
                continue;
            }
            other => return other,
        }
    }
}

/// A list's `limit` as SQL's `LIMIT` takes it: as asked, and "all" when it
/// does not fit an i64.
pub fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// Current time as RFC 3339 UTC text with milliseconds (sorts as text).
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    now.format(&time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    ))
    .expect("fixed format always formats")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_valid() {
        MIGRATIONS.validate().unwrap();
    }

    #[test]
    fn opens_a_real_file_in_wal_mode_with_foreign_keys() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("shop.db"), Durability::Full).unwrap();
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let fk: i64 = conn
            .pragma_query_value(None, "foreign_keys", |r| r.get(0))
            .unwrap();
        assert_eq!(fk, 1);
        let sync: i64 = conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 2, "FULL");
    }

    #[test]
    fn a_commit_watch_sees_other_connections_commits_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shop.db");
        let mut writer = open(&path, Durability::Full).unwrap();
        let mut watch = CommitWatch::open(&path).unwrap();
        assert!(!watch.changed().unwrap(), "nothing committed yet");

        // A commit that leaves every count as it was still counts.
        settings_write(&mut writer, "shop_name", "Before");
        assert!(watch.changed().unwrap(), "a commit on another connection");
        assert!(!watch.changed().unwrap(), "seen once, not again");

        // Reading, and a write transaction that is rolled back, commit nothing.
        let reader = open_raw(&path, Durability::Normal).unwrap();
        let _: i64 = reader
            .query_row("SELECT count(*) FROM settings", [], |r| r.get(0))
            .unwrap();
        let r: Result<()> = write(&mut writer, |tx| {
            tx.execute(
                "UPDATE settings SET value = 'Never' WHERE key = 'shop_name'",
                [],
            )?;
            Err(Error::Other("changed my mind".into()))
        });
        assert!(r.is_err());
        assert!(
            !watch.changed().unwrap(),
            "reads and rollbacks are no change"
        );

        // Commits from two connections between two looks: one change seen.
        settings_write(&mut writer, "shop_name", "After");
        let mut other = open_raw(&path, Durability::Normal).unwrap();
        settings_write(&mut other, "shop_name", "Later");
        assert!(watch.changed().unwrap());
        assert!(!watch.changed().unwrap());
    }

    fn settings_write(conn: &mut Connection, key: &str, value: &str) {
        write(conn, |tx| crate::settings::set(tx, key, value)).unwrap();
    }

    /// Waits for a lock that `write` ran into: one per transaction that
    /// found the database busy (SQLite calls the handler with count 0 when a
    /// wait begins).
    static BUSY_WAITS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    /// A busy handler that counts each wait and gives up after about 150 ms
    /// (instead of the 10 s timeout), so SQLite answers busy in a test.
    fn count_and_give_up(count: i32) -> bool {
        if count == 0 {
            BUSY_WAITS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        std::thread::sleep(Duration::from_millis(1));
        count < 150
    }

    /// Another connection takes the write lock (`BEGIN IMMEDIATE`) and
    /// holds it until `release` says so.
    fn hold_write_lock(
        path: &Path,
        release: impl Fn() -> bool + Send + 'static,
    ) -> std::thread::JoinHandle<()> {
        let conn = open_raw(path, Durability::Normal).unwrap();
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        std::thread::spawn(move || {
            while !release() {
                std::thread::sleep(Duration::from_millis(1));
            }
            conn.execute_batch("COMMIT").unwrap();
        })
    }

    #[test]
    fn a_write_that_finds_the_database_busy_is_retried_a_few_times() {
        use std::sync::atomic::Ordering::SeqCst;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shop.db");
        let mut conn = open(&path, Durability::Normal).unwrap();
        conn.busy_handler(Some(count_and_give_up)).unwrap();
        let insert = |tx: &Transaction, key: &str| -> Result<()> {
            tx.execute("INSERT INTO settings (key, value) VALUES (?1, 'x')", [key])?;
            Ok(())
        };

        // The lock is held throughout: after a few tries, busy (a retryable
        // error for the caller), and nothing written.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let holder = hold_write_lock(&path, move || rx.try_recv().is_ok());
        let err = write(&mut conn, |tx| insert(tx, "never")).unwrap_err();
        tx.send(()).unwrap();
        holder.join().unwrap();
        assert_eq!(err.code(), "busy", "{err}");
        assert_eq!(BUSY_WAITS.load(SeqCst), 4, "one wait per try, 4 tries");

        // The lock is let go once the first try gave up and the second
        // waits: the transaction is run again and commits.
        BUSY_WAITS.store(0, SeqCst);
        let holder = hold_write_lock(&path, || BUSY_WAITS.load(SeqCst) >= 2);
        write(&mut conn, |tx| insert(tx, "retried")).unwrap();
        holder.join().unwrap();
        let waits = BUSY_WAITS.load(SeqCst);
        assert!((2..=4).contains(&waits), "{waits} waits");
        let keys: Vec<String> = conn
            .prepare("SELECT key FROM settings WHERE value = 'x'")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(keys, ["retried"]);
    }

    #[test]
    fn a_failed_write_rolls_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open(&dir.path().join("shop.db"), Durability::Normal).unwrap();
        let r: Result<()> = write(&mut conn, |tx| {
            tx.execute("INSERT INTO settings (key, value) VALUES ('a', 'b')", [])?;
            Err(Error::Other("boom".into()))
        });
        assert!(r.is_err());
        let n: i64 = conn
            .query_row("SELECT count(*) FROM settings", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
    }
}
