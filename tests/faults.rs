//! Fault tests: the real `shopdesk` binary in real processes, against a real
//! SQLite file in a temp dir and (for email) a real HTTP mail sink on
//! loopback. Each test proves one part of the promise "the till answers at
//! once; the slow work happens later and is never lost nor done twice".
//!
//! The binary is `$SHOPDESK_BIN` when set, else it is built once with
//! `cargo build -p shopdesk`. Every child process is killed when its test
//! ends, whatever the outcome.

use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

const EMAIL_JOB: &str = "email.order_confirmation";

/// Products with plenty of stock, so that many orders never run out.
const STOCK_SKUS: [&str; 4] = ["fault-mug", "fault-cap", "fault-pen", "fault-bag"];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is inside the workspace")
        .to_path_buf()
}

fn catalog() -> PathBuf {
    let path = workspace_root().join("../shared/data/shopify/home-and-garden.csv");
    assert!(path.exists(), "shared catalog missing: {}", path.display());
    path
}

/// The `shopdesk` binary under test.
fn shopdesk_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("SHOPDESK_BIN") {
            let bin = workspace_root().join(bin);
            assert!(
                bin.exists(),
                "SHOPDESK_BIN {} does not exist",
                bin.display()
            );
            return bin;
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let out = Command::new(cargo)
            .args([
                "build",
                "-p",
                "shopdesk",
                "--message-format=json-render-diagnostics",
            ])
            .current_dir(workspace_root())
            .stderr(Stdio::inherit())
            .output()
            .expect("run cargo build -p shopdesk");
        assert!(out.status.success(), "cargo build -p shopdesk failed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "shopdesk")
            .find_map(|m| m["executable"].as_str().map(PathBuf::from))
            .expect("cargo build reported the shopdesk executable")
    })
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// Polls `check` every 50 ms until it gives a value; after `timeout`, fails
/// the test with `explain()` (called then, so it can show the state).
fn wait_until<T>(
    timeout: Duration,
    explain: impl Fn() -> String,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?}: {}", explain());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process that is killed (SIGKILL) and reaped when dropped.
struct Proc {
    name: String,
    child: Option<Child>,
    stdout: PathBuf,
    stderr: PathBuf,
    started: Instant,
}

impl Proc {
    /// SIGKILL, then reap.
    fn kill9(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Its exit status, if it exited.
    fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let name = self.name.clone();
        let log = self.stderr_text();
        wait_until(
            timeout,
            || format!("{name} to exit; its stderr so far:\n{log}"),
            || self.exited(),
        )
    }

    fn stdout_text(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A shop in its own temp data dir, driven through the CLI.
struct Shop {
    tmp: tempfile::TempDir,
    data: PathBuf,
    spawned: std::cell::Cell<usize>,
}

impl Shop {
    /// A new shop with the shared catalog and a few well-stocked products.
    fn new() -> Shop {
        let tmp = tempfile::tempdir().expect("temp dir");
        let data = tmp.path().join("data");
        std::fs::create_dir_all(tmp.path().join("home")).unwrap();
        std::fs::create_dir_all(tmp.path().join("logs")).unwrap();
        let shop = Shop {
            tmp,
            data,
            spawned: std::cell::Cell::new(0),
        };
        shop.ok(&["import", "products", catalog().to_str().unwrap()]);
        let mut csv = String::from(
            "Handle,Title,Variant SKU,Variant Inventory Qty,Variant Inventory Policy,Variant Price\n",
        );
        for sku in STOCK_SKUS {
            writeln!(csv, "{sku},Fault {sku},{sku},1000000,deny,1.00").unwrap();
        }
        let stock = shop.tmp.path().join("stock.csv");
        std::fs::write(&stock, csv).unwrap();
        shop.ok(&["import", "products", stock.to_str().unwrap()]);
        shop
    }

    fn database(&self) -> PathBuf {
        self.data.join("shopdesk.db")
    }

    fn outbox_count(&self) -> usize {
        std::fs::read_dir(self.data.join("outbox"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
                    .count()
            })
            .unwrap_or(0)
    }

    /// A connection of the test's own to the shop's database.
    fn db(&self) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open(self.database()).unwrap();
        conn.busy_timeout(Duration::from_secs(10)).unwrap();
        conn
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(shopdesk_bin());
        let home = self.tmp.path().join("home");
        cmd.arg("--data-dir")
            .arg(&self.data)
            .env_remove("SHOPDESK_DATA_DIR")
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_DATA_HOME", home.join(".local/share"))
            .env("SHOPDESK_SECRET_STORE", "file")
            // No desktop here: notifications fail at once instead of
            // reaching (or waiting for) the session bus of whoever runs this.
            .env(
                "DBUS_SESSION_BUS_ADDRESS",
                format!("unix:path={}", self.tmp.path().join("no-bus").display()),
            )
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command()
            .args(args)
            .output()
            .expect("run the shopdesk binary")
    }

    /// Runs a command that must succeed; returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "shopdesk {} failed ({}):\n{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8 output")
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(args);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("shopdesk {}: not JSON ({e}):\n{out}", args.join(" ")))
    }

    /// Starts a process, its output going to files in the temp dir.
    fn spawn(&self, name: &str, args: &[&str]) -> Proc {
        let n = self.spawned.get() + 1;
        self.spawned.set(n);
        let logs = self.tmp.path().join("logs");
        let stdout = logs.join(format!("{n:05}-{name}.out"));
        let stderr = logs.join(format!("{n:05}-{name}.err"));
        let child = self
            .command()
            .args(args)
            .stdout(File::create(&stdout).unwrap())
            .stderr(File::create(&stderr).unwrap())
            .spawn()
            .expect("spawn the shopdesk binary");
        Proc {
            name: format!("shopdesk {}", args.join(" ")),
            child: Some(child),
            stdout,
            stderr,
            started: Instant::now(),
        }
    }

    /// A long-running `shopdesk worker`.
    fn worker(&self) -> Proc {
        self.spawn("worker", &["worker"])
    }

    fn place_args(key: &str, email: Option<&str>, n: usize) -> Vec<String> {
        let mut args: Vec<String> = ["order", "place", "--customer-name", "Fault Test"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        if let Some(email) = email {
            args.extend(["--customer-email".into(), email.into()]);
        }
        args.extend([
            "--line".into(),
            format!("{}:1", STOCK_SKUS[n % STOCK_SKUS.len()]),
            "--line".into(),
            format!("{}:2", STOCK_SKUS[(n + 1) % STOCK_SKUS.len()]),
            "--pay".into(),
            "cash:100000".into(),
            "--key".into(),
            key.into(),
            "--json".into(),
        ]);
        args
    }

    /// Places an order (with an email to `email`); returns the CLI's answer.
    fn place(&self, key: &str, email: &str, n: usize) -> Value {
        let args = Self::place_args(key, Some(email), n);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.json(&args)
    }

    fn spawn_place(&self, key: &str, email: &str, n: usize) -> Proc {
        let args = Self::place_args(key, Some(email), n);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.spawn("place", &args)
    }

    fn orders(&self) -> Vec<Value> {
        self.json(&["orders", "list", "--limit", "1000000", "--json"])
            .as_array()
            .expect("orders list --json gives a list")
            .clone()
    }

    fn jobs(&self) -> Vec<Value> {
        self.json(&["jobs", "list", "--limit", "1000000", "--json"])
            .as_array()
            .expect("jobs list --json gives a list")
            .clone()
    }

    fn email_jobs(&self) -> Vec<Value> {
        self.jobs()
            .into_iter()
            .filter(|j| j["job_type"] == EMAIL_JOB)
            .collect()
    }
}

/// One line per job: id, type, status, attempts, last error.
fn describe_jobs(jobs: &[Value]) -> String {
    jobs.iter()
        .map(|j| {
            format!(
                "  {} {} {} attempts {} {}\n",
                j["id"].as_str().unwrap_or("?"),
                j["job_type"].as_str().unwrap_or("?"),
                j["status"].as_str().unwrap_or("?"),
                j["attempts"],
                j["last_error"].as_str().unwrap_or("")
            )
        })
        .collect()
}

/// No job failed for good: nothing is Killed. (Notification jobs may be
/// waiting for a retry: there is no desktop session in these tests.)
fn assert_nothing_dead(jobs: &[Value]) {
    let dead: Vec<&Value> = jobs.iter().filter(|j| j["status"] == "Killed").collect();
    assert!(
        dead.is_empty(),
        "jobs died:\n{}",
        describe_jobs(&dead.into_iter().cloned().collect::<Vec<_>>())
    );
}

// ---------------------------------------------------------------------------
// 5. A second connection holds the write lock for 2 s.
// ---------------------------------------------------------------------------

#[test]
fn checkouts_and_jobs_wait_out_a_write_lock_held_for_two_seconds() {
    let shop = Shop::new();
    let mut worker = shop.worker();
    // Orders whose jobs the worker is busy with when the lock is taken.
    for i in 0..3 {
        shop.place(&format!("before-{i}"), &format!("before{i}@example.com"), i);
    }

    let db = shop.database();
    let (locked_tx, locked_rx) = mpsc::channel();
    let holder = std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(db).unwrap();
        conn.busy_timeout(Duration::from_secs(10)).unwrap();
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        locked_tx.send(Instant::now()).unwrap();
        std::thread::sleep(Duration::from_secs(2));
        let releasing = Instant::now();
        conn.execute_batch("COMMIT").unwrap();
        releasing
    });
    let locked_at = locked_rx.recv().unwrap();

    let mut placers: Vec<Proc> = (0..6)
        .map(|i| shop.spawn_place(&format!("during-{i}"), &format!("during{i}@example.com"), i))
        .collect();
    let spawned_by = Instant::now();
    let ended: Vec<(Instant, ExitStatus)> = placers
        .iter_mut()
        .map(|p| {
            let status = p.wait_exit(Duration::from_secs(30));
            (Instant::now(), status)
        })
        .collect();
    let releasing = holder.join().expect("the lock holder");
    assert!(
        spawned_by < releasing,
        "the checkouts started only after the lock was released ({:?} after it was taken): \
         the test proved nothing",
        spawned_by - locked_at
    );
    for (p, (end, status)) in placers.iter().zip(&ended) {
        assert!(
            status.success(),
            "a checkout failed while the lock was held: {status}\n{}",
            p.stderr_text()
        );
        let placed: Value = serde_json::from_str(&p.stdout_text()).expect("order place --json");
        assert_eq!(placed["duplicate"], false);
        assert!(
            *end >= releasing,
            "a checkout finished while another connection held the write lock"
        );
        assert!(end.duration_since(p.started) < Duration::from_secs(15));
    }
    let longest = placers
        .iter()
        .zip(&ended)
        .map(|(p, (end, _))| end.duration_since(p.started))
        .max()
        .unwrap();
    eprintln!("lock held 2 s: 6 checkouts waited, the longest took {longest:?}");

    // Every email goes out; nothing died of the busy database.
    wait_until(
        Duration::from_secs(30),
        || {
            format!(
                "9 emails in the outbox (have {}); jobs:\n{}",
                shop.outbox_count(),
                describe_jobs(&shop.jobs())
            )
        },
        || {
            let jobs = shop.email_jobs();
            (shop.outbox_count() == 9
                && jobs.len() == 9
                && jobs.iter().all(|j| j["status"] == "Done"))
            .then_some(())
        },
    );
    assert_nothing_dead(&shop.jobs());
    assert!(
        worker.exited().is_none(),
        "the worker stopped:\n{}",
        worker.stderr_text()
    );
    let orders = shop.orders();
    assert_eq!(orders.len(), 9);
    assert!(
        orders.iter().all(|o| o["email_status"] == "sent"),
        "{orders:#?}"
    );
}

// ---------------------------------------------------------------------------
// 6. A poison row: a job whose payload cannot be decoded.
// ---------------------------------------------------------------------------

#[test]
fn a_poison_row_is_marked_dead_with_a_reason_and_the_worker_goes_on() {
    let shop = Shop::new();
    shop.place("first", "first@example.com", 0);

    // Two poison rows, due before everything else: bytes that are not JSON,
    // and JSON that is not an order job.
    let conn = shop.db();
    let due = now_ms() - 60_000;
    for (id, key, payload) in [
        (
            "poison-bytes",
            "order-confirmation/poison-bytes",
            &b"\xff\xfe{not json"[..],
        ),
        (
            "poison-shape",
            "order-confirmation/poison-shape",
            &br#"{"order":"nope"}"#[..],
        ),
    ] {
        conn.execute(
            "INSERT INTO Jobs (job, id, job_type, status, attempts, max_attempts, run_at,
                               run_at_ms, priority, idempotency_key)
             VALUES (?1, ?2, ?3, 'Pending', 0, 25, ?4, ?5, 0, ?6)",
            rusqlite::params![payload, id, EMAIL_JOB, due / 1000, due, key],
        )
        .unwrap();
    }

    let mut worker = shop.worker();
    for i in 1..4 {
        shop.place(&format!("after-{i}"), &format!("after{i}@example.com"), i);
    }

    wait_until(
        Duration::from_secs(30),
        || {
            format!(
                "4 emails sent and both poison rows dead (outbox {}); jobs:\n{}",
                shop.outbox_count(),
                describe_jobs(&shop.jobs())
            )
        },
        || {
            let jobs = shop.email_jobs();
            let poison_dead = jobs
                .iter()
                .filter(|j| j["id"].as_str().unwrap().starts_with("poison-"))
                .all(|j| j["status"] == "Killed");
            let sent = jobs
                .iter()
                .filter(|j| !j["id"].as_str().unwrap().starts_with("poison-"))
                .filter(|j| j["status"] == "Done")
                .count();
            (poison_dead && sent == 4 && shop.outbox_count() == 4).then_some(())
        },
    );

    let jobs = shop.email_jobs();
    for id in ["poison-bytes", "poison-shape"] {
        let job = jobs.iter().find(|j| j["id"] == id).unwrap();
        let reason = job["last_error"].as_str().unwrap_or_default();
        assert!(
            reason.contains("payload"),
            "{id} is dead without saying why: {job:#}"
        );
        assert_eq!(job["attempts"], 1, "a poison row is not retried: {job:#}");
    }
    assert!(
        worker.exited().is_none(),
        "the worker stopped on a poison row:\n{}",
        worker.stderr_text()
    );
    let orders = shop.orders();
    assert_eq!(orders.len(), 4);
    assert!(
        orders.iter().all(|o| o["email_status"] == "sent"),
        "{orders:#?}"
    );
}
