//! Fault tests: the real `shopdesk` binary in real processes, against a real
//! SQLite file in a temp dir and (for email) a real HTTP mail sink on
//! loopback. Each test proves one part of the promise "the till answers at
//! once; the slow work happens later and is never lost nor done twice".
//!
//! The binary is `$SHOPDESK_BIN` when set, else it is built once with
//! `cargo build -p shopdesk`. Every child process is killed when its test
//! ends, whatever the outcome.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use shopdesk_tests::sink::{Behavior, MailSink, Request};

const EMAIL_JOB: &str = "email.order_confirmation";
const EMAIL_KEY_PREFIX: &str = "order-confirmation/";
/// The API key the shop is given for the sink.
const API_KEY: &str = "re_fault_test_key_123456";

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
        let mut build = Command::new(cargo);
        build
            .args([
                "build",
                "-p",
                "shopdesk",
                "--message-format=json-render-diagnostics",
            ])
            .current_dir(workspace_root())
            .stderr(Stdio::inherit());
        // Not with the variables cargo gives this test binary (the tests
        // crate's name, folder, version): ring's build script asks to be
        // rerun when they change, so they would make this build compile
        // ring, rustls and reqwest again, and the next `cargo test` too.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("CARGO_PKG_")
                || name.starts_with("CARGO_MANIFEST_")
                || [
                    "CARGO_CRATE_NAME",
                    "CARGO_PRIMARY_PACKAGE",
                    "CARGO_TARGET_TMPDIR",
                ]
                .contains(&name.as_ref())
            {
                build.env_remove(name.as_ref());
            }
        }
        let out = build.output().expect("run cargo build -p shopdesk");
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
    fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    /// Sends `signal` (libc::SIGINT, ...) without waiting.
    fn signal(&mut self, signal: i32) {
        if self.exited().is_none() {
            // SAFETY: kill(2) on a child we spawned and have not reaped.
            unsafe {
                libc::kill(self.pid(), signal);
            }
        }
    }

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
        let stderr = self.stderr.clone();
        wait_until(
            timeout,
            || {
                let log = std::fs::read_to_string(&stderr).unwrap_or_default();
                format!("{name} to exit; its stderr so far:\n{log}")
            },
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
    /// Environment of every process, over the usual one: a value, or
    /// `None` to leave the variable unset.
    env: std::cell::RefCell<Vec<(String, Option<String>)>>,
}

impl Shop {
    /// A new shop with the shared catalog and a few well-stocked products.
    fn new() -> Shop {
        Shop::with_env(&[])
    }

    /// A new shop whose processes all run with these variables set (or,
    /// for `None`, unset).
    fn with_env(env: &[(&str, Option<&str>)]) -> Shop {
        let tmp = tempfile::tempdir().expect("temp dir");
        let data = tmp.path().join("data");
        std::fs::create_dir_all(tmp.path().join("home")).unwrap();
        std::fs::create_dir_all(tmp.path().join("logs")).unwrap();
        let shop = Shop {
            tmp,
            data,
            spawned: std::cell::Cell::new(0),
            env: Default::default(),
        };
        for (name, value) in env {
            shop.set_env(name, *value);
        }
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

    /// Processes started from now on run with `name` set to `value` (or
    /// unset, for `None`).
    fn set_env(&self, name: &str, value: Option<&str>) {
        let mut env = self.env.borrow_mut();
        env.retain(|(n, _)| n != name);
        env.push((name.to_string(), value.map(str::to_string)));
    }

    /// A session bus address where nothing listens.
    fn no_bus(&self) -> String {
        format!("unix:path={}", self.tmp.path().join("no-bus").display())
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
            .env("DBUS_SESSION_BUS_ADDRESS", self.no_bus())
            .stdin(Stdio::null());
        for (name, value) in self.env.borrow().iter() {
            match value {
                Some(v) => cmd.env(name, v),
                None => cmd.env_remove(name),
            };
        }
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

    /// Sends confirmation emails through the HTTP provider at `sink`.
    /// Returns what setting the API key printed.
    fn use_provider(&self, sink: &MailSink) -> Output {
        // Not before the shop has its own from-address and a key.
        let refused = self.run(&["config", "set", "email_provider", "resend"]);
        assert!(!refused.status.success());
        assert!(
            String::from_utf8_lossy(&refused.stderr).contains("address your emails come from"),
            "{}",
            String::from_utf8_lossy(&refused.stderr)
        );
        self.ok(&["config", "set", "shop_email", "orders@fault-shop.example"]);
        self.ok(&["config", "set", "email_api_url", &sink.url()]);
        let out = self.set_api_key(API_KEY);
        assert!(
            out.status.success(),
            "config set email_api_key - failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.ok(&["config", "set", "email_provider", "resend"]);
        out
    }

    /// `shopdesk config set email_api_key -` with `key` on standard input,
    /// as a careful owner gives it (not in the process list). The key is
    /// echoed back only masked, and is nowhere in what the command printed.
    fn set_api_key(&self, key: &str) -> Output {
        let mut child = self
            .command()
            .args(["config", "set", "email_api_key", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn shopdesk config set");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{key}\n").as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let echoed = String::from_utf8_lossy(&out.stdout);
        assert!(
            !out.status.success() || echoed.starts_with("email_api_key = "),
            "{echoed}"
        );
        assert_key_not_in("config set email_api_key's output", &out.stdout, key);
        assert_key_not_in("config set email_api_key's stderr", &out.stderr, key);
        out
    }

    /// `shopdesk worker --until-idle`; returns its summary.
    fn drain(&self) -> Value {
        self.json(&["worker", "--until-idle"])
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

/// Fails the test when `haystack` shows the API `key`, or even the part of
/// it that its mask hides (all but the first 3 and last 4 characters).
fn assert_key_not_in(what: &str, haystack: &[u8], key: &str) {
    let hidden = &key.as_bytes()[3..key.len() - 4];
    if let Some(at) = haystack.windows(hidden.len()).position(|w| w == hidden) {
        let from = at.saturating_sub(120);
        let to = (at + hidden.len() + 40).min(haystack.len());
        panic!(
            "{what} shows the API key: …{}…",
            String::from_utf8_lossy(&haystack[from..to])
        );
    }
}

/// Every file under `dir`, however deep.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
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

/// Waits until every email job is Done (none may die on the way).
fn wait_all_emails_done(shop: &Shop, expected: usize, timeout: Duration) -> Vec<Value> {
    wait_until(
        timeout,
        || {
            format!(
                "{expected} email jobs done; jobs:\n{}",
                describe_jobs(&shop.jobs())
            )
        },
        || {
            let jobs = shop.email_jobs();
            assert_nothing_dead(&jobs);
            (jobs.len() == expected && jobs.iter().all(|j| j["status"] == "Done")).then_some(jobs)
        },
    )
}

/// What the sink saw, checked against the orders in the shop: every order's
/// email accepted (at least once; exactly once if `exactly_once`), to its
/// customer, under its own key and the shop's API key; no email for an order
/// that does not exist; a repeated key always answered with the same id.
/// Returns (accepted requests, distinct keys).
fn check_deliveries(sink: &MailSink, orders: &[Value], exactly_once: bool) -> (usize, usize) {
    let by_key: HashMap<String, &Value> = orders
        .iter()
        .map(|o| {
            (
                format!("{EMAIL_KEY_PREFIX}{}", o["order_id"].as_str().unwrap()),
                o,
            )
        })
        .collect();
    let requests = sink.requests();
    let accepted: Vec<&Request> = requests.iter().filter(|r| r.accepted()).collect();
    let mut ids: HashMap<&str, HashSet<String>> = HashMap::new();
    for r in &accepted {
        let key = r
            .idempotency_key()
            .expect("every request has an Idempotency-Key");
        let order = by_key
            .get(key)
            .unwrap_or_else(|| panic!("an email was sent for no existing order: key {key}"));
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {API_KEY}").as_str())
        );
        assert_eq!(r.recipients(), [order["customer_email"].as_str().unwrap()]);
        let subject = r.json()["subject"].as_str().unwrap_or_default().to_string();
        assert!(
            subject.contains(order["receipt_number"].as_str().unwrap()),
            "{key}: subject \"{subject}\" does not name the order"
        );
        if let shopdesk_tests::sink::Outcome::Answered { id: Some(id), .. } = &r.outcome {
            ids.entry(key).or_default().insert(id.clone());
        }
    }
    for (key, order) in &by_key {
        let n = ids.get(key.as_str()).map_or(0, |_| {
            accepted
                .iter()
                .filter(|r| r.idempotency_key() == Some(key))
                .count()
        });
        assert!(
            n >= 1,
            "order {} ({key}) was never delivered",
            order["receipt_number"]
        );
        if exactly_once {
            assert_eq!(n, 1, "order {} was sent {n} times", order["receipt_number"]);
        }
        assert_eq!(
            ids[key.as_str()].len(),
            1,
            "{key}: answered with different ids"
        );
    }
    (accepted.len(), ids.len())
}

/// A small xorshift generator: the soak's moments to kill, reproducible
/// from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn millis(&mut self, max: u64) -> Duration {
        Duration::from_millis(self.below(max + 1))
    }
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

// ---------------------------------------------------------------------------
// 1. Kill -9 soak.
// ---------------------------------------------------------------------------

#[test]
fn kill_9_soak_loses_no_order_and_no_email() {
    let cycles = env_number("SOAK_CYCLES").unwrap_or(50);
    let seed = env_number("SOAK_SEED").unwrap_or_else(|| now_ms() as u64 | 1);
    eprintln!("soak: {cycles} cycles, SOAK_SEED={seed}");
    let mut rng = Rng(seed);

    let sink = MailSink::start();
    // A little latency, so that some kills land while a request is in flight.
    sink.set_delay(Duration::from_millis(40));
    let shop = Shop::new();
    shop.use_provider(&sink);

    let started = Instant::now();
    let mut placed: HashMap<String, String> = HashMap::new();
    let mut unsure = 0usize;
    let (mut worker_kills, mut placer_kills, mut n) = (0usize, 0usize, 0usize);
    let email = |n: usize| format!("customer{n}@example.com");
    for _ in 0..cycles {
        // Now and then the provider fails a request too (the answer lost, or
        // a 500): retried later under the same key.
        match rng.below(20) {
            0 => sink.script(Behavior::Close),
            1 => sink.script(Behavior::ServerError),
            _ => {}
        }
        let mut worker = shop.worker();
        let mut placers: Vec<(String, usize, Proc, bool)> = (0..1 + rng.below(3))
            .map(|_| {
                n += 1;
                let key = format!("soak-{n}");
                let p = shop.spawn_place(&key, &email(n), n);
                (key, n, p, false)
            })
            .collect();
        if rng.below(4) == 0 {
            std::thread::sleep(rng.millis(150));
            let (_, _, p, killed) = &mut placers[0];
            if p.exited().is_none() {
                p.kill9();
                *killed = true;
                placer_kills += 1;
            }
        }
        for (key, i, mut p, killed) in placers {
            if killed {
                // The till never heard back. Half the time it tries again
                // with the same key (and must get the order, once); the
                // other half it walks away (the order may or may not exist).
                if rng.below(2) == 0 {
                    let again = shop.place(&key, &email(i), i);
                    placed.insert(key, again["order_id"].as_str().unwrap().to_string());
                } else {
                    unsure += 1;
                }
                continue;
            }
            let status = p.wait_exit(Duration::from_secs(60));
            assert!(status.success(), "order place failed:\n{}", p.stderr_text());
            let answer: Value = serde_json::from_str(&p.stdout_text()).unwrap();
            assert_eq!(answer["duplicate"], false);
            placed.insert(key, answer["order_id"].as_str().unwrap().to_string());
        }
        std::thread::sleep(rng.millis(400));
        worker.kill9();
        worker_kills += 1;
    }
    let soaked = started.elapsed();

    // A last worker, run until nothing is left (the leases of the killed
    // workers lapse first).
    let drained = Instant::now();
    wait_until(
        Duration::from_secs(120),
        || {
            format!(
                "every email job done; jobs:\n{}",
                describe_jobs(&shop.jobs())
            )
        },
        || {
            shop.drain();
            let jobs = shop.email_jobs();
            jobs.iter().all(|j| j["status"] == "Done").then_some(())
        },
    );
    let drain_time = drained.elapsed();

    let orders = shop.orders();
    let order_ids: HashSet<&str> = orders
        .iter()
        .map(|o| o["order_id"].as_str().unwrap())
        .collect();
    for (key, id) in &placed {
        assert!(
            order_ids.contains(id.as_str()),
            "order {id} (key {key}) was reported placed but does not exist"
        );
    }
    assert!(orders.len() >= placed.len() && orders.len() <= placed.len() + unsure);
    assert_eq!(
        shop.email_jobs().len(),
        orders.len(),
        "one email job per order"
    );
    let (accepted, keys) = check_deliveries(&sink, &orders, false);
    assert_eq!(keys, orders.len());
    // Nothing stuck: no job left running, and every job not done says why.
    for j in shop.jobs() {
        assert_ne!(j["status"], "Running", "{j:#}");
        if j["status"] != "Done" {
            assert!(
                j["last_error"].as_str().is_some_and(|e| !e.is_empty()),
                "{j:#}"
            );
        }
    }
    eprintln!(
        "soak: {cycles} cycles in {soaked:.1?} (+ {drain_time:.1?} final drain): \
         {} orders ({} reported placed, {unsure} placers killed and not retried), \
         {worker_kills} worker kills, {placer_kills} placer kills; \
         sink: {} requests, {accepted} accepted, {keys} distinct keys, {} repeated sends",
        orders.len(),
        placed.len(),
        sink.request_count(),
        accepted - keys
    );
}

/// A worker claims a few jobs ahead of its free slots. Killed with -9, it
/// spends the attempts of the jobs it had started, and of no other.
#[test]
fn a_killed_worker_spends_no_attempt_of_the_jobs_it_had_not_started() {
    let sink = MailSink::start();
    sink.set_delay(Duration::from_secs(5));
    let shop = Shop::new();
    shop.use_provider(&sink);
    // Only emails: the worker runs four at a time and holds the rest.
    shop.ok(&["jobs", "pause", "notify"]);
    for i in 0..10 {
        shop.place(&format!("ahead-{i}"), &format!("ahead{i}@example.com"), i);
    }
    let mut worker = shop.worker();
    assert!(
        sink.wait_arrived(4, Duration::from_secs(20)),
        "the worker sent nothing"
    );
    let attempts_of_running = || {
        let mut a: Vec<u64> = shop
            .email_jobs()
            .iter()
            .filter(|j| j["status"] == "Running")
            .map(|j| j["attempts"].as_u64().unwrap())
            .collect();
        a.sort();
        a
    };
    let expected = [0, 0, 0, 0, 0, 0, 1, 1, 1, 1];
    wait_until(
        Duration::from_secs(5),
        || format!("four started, six held: {:?}", attempts_of_running()),
        || (attempts_of_running() == expected).then_some(()),
    );
    worker.kill9();
    assert_eq!(attempts_of_running(), expected);

    // Their leases lapse (made to lapse now rather than in 30 s); the next
    // worker runs all ten.
    shop.db()
        .execute(
            "UPDATE Jobs SET lease_expires_ms = 0 WHERE status = 'Running'",
            [],
        )
        .unwrap();
    sink.set_delay(Duration::ZERO);
    let summary = shop.drain();
    assert_eq!(summary["done"], 10, "{summary}");
    let mut attempts: Vec<u64> = shop
        .email_jobs()
        .iter()
        .map(|j| j["attempts"].as_u64().unwrap())
        .collect();
    attempts.sort();
    assert_eq!(attempts, [1, 1, 1, 1, 1, 1, 2, 2, 2, 2]);
    check_deliveries(&sink, &shop.orders(), false);
}

// ---------------------------------------------------------------------------
// 2. The provider is down for a while, then back.
// ---------------------------------------------------------------------------

#[test]
fn emails_wait_for_a_provider_that_is_down_and_go_once_it_is_back() {
    let sink = MailSink::start();
    sink.down();
    let shop = Shop::new();
    shop.use_provider(&sink);
    let _worker = shop.worker();
    let down_since = Instant::now();
    for i in 0..5 {
        shop.place(&format!("down-{i}"), &format!("down{i}@example.com"), i);
    }
    // Every email has tried and found the provider unreachable.
    wait_until(
        Duration::from_secs(15),
        || {
            format!(
                "every email tried once; jobs:\n{}",
                describe_jobs(&shop.jobs())
            )
        },
        || {
            let jobs = shop.email_jobs();
            (jobs.len() == 5
                && jobs
                    .iter()
                    .all(|j| j["status"] == "Failed" && !j["last_error"].is_null()))
            .then_some(())
        },
    );
    std::thread::sleep(Duration::from_secs(3).saturating_sub(down_since.elapsed()));
    let jobs = shop.email_jobs();
    assert_nothing_dead(&jobs);
    eprintln!(
        "provider down for {:.1?}; an email job meanwhile: {}",
        down_since.elapsed(),
        describe_jobs(&jobs[..1]).trim()
    );

    let up = Instant::now();
    sink.up();
    let jobs = wait_all_emails_done(&shop, 5, Duration::from_secs(45));
    eprintln!(
        "provider back: every email delivered {:.1?} later",
        up.elapsed()
    );
    for j in &jobs {
        assert!(
            j["attempts"].as_u64().unwrap() <= 3,
            "attempts were burnt while the provider was down: {j:#}"
        );
    }
    let orders = shop.orders();
    check_deliveries(&sink, &orders, true);
    assert!(
        orders.iter().all(|o| o["email_status"] == "sent"),
        "{orders:#?}"
    );
}

// ---------------------------------------------------------------------------
// 3. 429 with Retry-After.
// ---------------------------------------------------------------------------

#[test]
fn a_429_with_retry_after_is_waited_out() {
    let sink = MailSink::start();
    sink.script(Behavior::TooManyRequests {
        retry_after_secs: 2,
    });
    let shop = Shop::new();
    shop.use_provider(&sink);
    let _worker = shop.worker();
    shop.place("busy", "busy@example.com", 0);

    assert!(
        sink.wait_for(Duration::from_secs(20), |r| r.iter().any(Request::accepted)),
        "never accepted; the sink saw {:?}",
        sink.requests()
            .iter()
            .map(Request::status)
            .collect::<Vec<_>>()
    );
    let requests = sink.requests();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    let (first, second) = (&requests[0], &requests[1]);
    assert_eq!(first.status(), Some(429));
    assert_eq!(first.idempotency_key(), second.idempotency_key());
    let waited = second.at.duration_since(first.answered_at.unwrap());
    eprintln!("429 Retry-After: 2 → next attempt {waited:.2?} after the answer");
    assert!(
        waited >= Duration::from_secs(2),
        "retried {waited:?} after a 429 asking for 2 s"
    );
    assert!(waited < Duration::from_secs(6), "retried late: {waited:?}");
    let jobs = wait_all_emails_done(&shop, 1, Duration::from_secs(10));
    assert_eq!(jobs[0]["attempts"], 2);
    check_deliveries(&sink, &shop.orders(), true);
}

// ---------------------------------------------------------------------------
// 4. A permanent 4xx, then a retry from the monitor.
// ---------------------------------------------------------------------------

#[test]
fn a_rejected_email_dies_at_once_with_the_reason_and_can_be_retried() {
    let sink = MailSink::start();
    sink.reject_recipient("nobody@example.com");
    let shop = Shop::new();
    shop.use_provider(&sink);
    let _worker = shop.worker();
    let bad = shop.place("bad", "nobody@example.com", 0);
    let good = shop.place("good", "somebody@example.com", 1);
    let bad_key = format!("{EMAIL_KEY_PREFIX}{}", bad["order_id"].as_str().unwrap());
    let good_key = format!("{EMAIL_KEY_PREFIX}{}", good["order_id"].as_str().unwrap());

    let job_by_key = |key: &str| {
        shop.email_jobs()
            .into_iter()
            .find(|j| j["idempotency_key"] == key)
            .expect("the order's email job")
    };
    let dead = wait_until(
        Duration::from_secs(20),
        || {
            format!(
                "the rejected email dead; jobs:\n{}",
                describe_jobs(&shop.jobs())
            )
        },
        || {
            let j = job_by_key(&bad_key);
            let g = job_by_key(&good_key);
            (j["status"] == "Killed" && g["status"] == "Done").then_some(j)
        },
    );
    assert_eq!(
        dead["attempts"], 1,
        "a permanent failure is not retried: {dead:#}"
    );
    let reason = dead["last_error"].as_str().unwrap_or_default();
    assert!(reason.contains("invalid recipient"), "{dead:#}");
    let order = |id: &Value| {
        shop.orders()
            .into_iter()
            .find(|o| o["order_id"] == *id)
            .unwrap()
    };
    let shown = order(&bad["order_id"]);
    assert_eq!(shown["email_status"], "failed", "{shown:#}");
    assert!(
        shown["email_error"]
            .as_str()
            .is_some_and(|e| e.contains("invalid recipient")),
        "{shown:#}"
    );
    assert_eq!(
        shown["email_job_id"], dead["id"],
        "the order names its email's job, for the Orders page's Retry"
    );
    assert_eq!(order(&good["order_id"])["email_status"], "sent");
    let tries = |key: &str| {
        sink.requests()
            .iter()
            .filter(|r| r.idempotency_key() == Some(key))
            .count()
    };
    assert_eq!(tries(&bad_key), 1);

    // The shop fixes the cause (here: the provider now accepts the
    // address) and retries from the monitor.
    sink.accept_all_recipients();
    shop.ok(&["jobs", "retry", shown["email_job_id"].as_str().unwrap()]);
    wait_all_emails_done(&shop, 2, Duration::from_secs(20));
    assert_eq!(order(&bad["order_id"])["email_status"], "sent");
    assert_eq!(tries(&bad_key), 2);
    check_deliveries(&sink, &shop.orders(), true);
}

// ---------------------------------------------------------------------------
// A provider that takes the request and never answers.
// ---------------------------------------------------------------------------

/// The provider reads the request and then says nothing for longer than
/// the client waits: the attempt fails, retryably, with a plain reason that
/// the order shows while it waits; the next attempt sends the email, under
/// the same Idempotency-Key, and it is accepted once.
#[test]
fn a_provider_that_hangs_past_the_timeout_is_retried_and_sends_once() {
    let timeout = shopdesk_core::email_api::REQUEST_TIMEOUT;
    let sink = MailSink::start();
    // Still hanging (not closed) when the client gives up.
    sink.script(Behavior::Hang(timeout * 3));
    let shop = Shop::new();
    shop.use_provider(&sink);
    let _worker = shop.worker();
    let placed = shop.place("hang", "hang@example.com", 0);
    let order_id = placed["order_id"].as_str().unwrap();
    let key = format!("{EMAIL_KEY_PREFIX}{order_id}");
    assert!(
        sink.wait_for(Duration::from_secs(20), |r| !r.is_empty()),
        "the worker sent nothing"
    );
    let hung_at = sink.requests()[0].at;
    // The retry waits until the failed attempt has been looked at: the
    // email queue is paused while that attempt still waits for an answer.
    shop.ok(&["jobs", "pause", "email"]);

    let job = wait_until(
        timeout + Duration::from_secs(20),
        || {
            format!(
                "the hung attempt to fail; jobs:\n{}",
                describe_jobs(&shop.jobs())
            )
        },
        || {
            shop.email_jobs()
                .into_iter()
                .find(|j| j["idempotency_key"] == key.as_str() && j["status"] != "Running")
        },
    );
    let failed_after = hung_at.elapsed();
    assert_eq!(job["status"], "Failed", "{job:#}");
    assert_eq!(job["attempts"], 1, "{job:#}");
    let reason = job["last_error"].as_str().unwrap_or_default();
    assert!(reason.contains("did not answer in time"), "{job:#}");
    assert!(
        failed_after >= timeout,
        "the attempt failed {failed_after:?} after the request arrived, before the \
         {timeout:?} timeout: it was not the timeout"
    );
    let shown = shop.ok(&["jobs", "show", job["id"].as_str().unwrap()]);
    assert!(shown.contains("retrying"), "{shown}");
    let order = shop
        .orders()
        .into_iter()
        .find(|o| o["order_id"] == order_id)
        .unwrap();
    assert_eq!(order["email_status"], "queued", "{order:#}");
    assert!(
        order["email_error"]
            .as_str()
            .is_some_and(|e| e.contains("did not answer in time")),
        "the order does not say why its email is late: {order:#}"
    );
    assert_eq!(sink.arrived(), 1, "retried while the queue was paused");

    shop.ok(&["jobs", "resume", "email"]);
    let jobs = wait_all_emails_done(&shop, 1, Duration::from_secs(30));
    assert_eq!(jobs[0]["attempts"], 2, "{:#}", jobs[0]);
    let requests = sink.requests();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    assert_eq!(requests[0].outcome, shopdesk_tests::sink::Outcome::NoAnswer);
    assert!(requests[1].accepted());
    for r in &requests {
        assert_eq!(r.idempotency_key(), Some(key.as_str()));
    }
    let orders = shop.orders();
    check_deliveries(&sink, &orders, true);
    assert_eq!(orders[0]["email_status"], "sent");
    assert!(orders[0]["email_error"].is_null(), "{:#}", orders[0]);
}

// ---------------------------------------------------------------------------
// The API key goes to the provider and nowhere else.
// ---------------------------------------------------------------------------

/// Sends that fail in every way the provider answers (500, 429, a 422
/// rejection) and one that succeeds, with every log turned up to `trace`
/// (the HTTP client's own events included, where a careless client would
/// print its request headers): the key is in no log, no output, no command
/// that shows settings, jobs or orders, and not in the database. Only the
/// provider receives it, in the Authorization header, and only the 0600
/// secrets file keeps it.
#[test]
fn the_api_key_is_never_logged_nor_shown_even_when_sends_fail() {
    let sink = MailSink::start();
    sink.script(Behavior::ServerError);
    sink.script(Behavior::TooManyRequests {
        retry_after_secs: 1,
    });
    sink.reject_recipient("nobody@example.com");
    let shop = Shop::with_env(&[("SHOPDESK_LOG", Some("trace"))]);
    shop.use_provider(&sink);
    let mut worker = shop.worker();
    let good = shop.place("good", "somebody@example.com", 0);
    let bad = shop.place("bad", "nobody@example.com", 1);
    let key_of = |o: &Value| format!("{EMAIL_KEY_PREFIX}{}", o["order_id"].as_str().unwrap());
    let (good_key, bad_key) = (key_of(&good), key_of(&bad));
    wait_until(
        Duration::from_secs(30),
        || {
            format!(
                "one email sent and the rejected one dead; jobs:\n{}",
                describe_jobs(&shop.jobs())
            )
        },
        || {
            let jobs = shop.email_jobs();
            let status = |key: &str| {
                jobs.iter()
                    .find(|j| j["idempotency_key"] == key)
                    .map(|j| j["status"].clone())
            };
            (status(&good_key) == Some("Done".into()) && status(&bad_key) == Some("Killed".into()))
                .then_some(())
        },
    );
    // A graceful stop, so that the worker's logs are all written out.
    worker.signal(libc::SIGINT);
    assert!(worker.wait_exit(Duration::from_secs(20)).success());

    let requests = sink.requests();
    let statuses: HashSet<Option<u16>> = requests.iter().map(Request::status).collect();
    for status in [500, 429, 422, 200] {
        assert!(
            statuses.contains(&Some(status)),
            "the provider never answered {status}: {statuses:?}"
        );
    }
    // The one place the key goes: to the provider, with every request.
    for r in &requests {
        assert_eq!(
            r.header("authorization"),
            Some(format!("Bearer {API_KEY}").as_str())
        );
    }

    // Nothing that shows settings, jobs or orders shows the key.
    let mut shown = vec![
        vec!["config", "get"],
        vec!["config", "get", "--json"],
        vec!["config", "get", "email_api_key"],
        vec!["config", "get", "email_api_key", "--json"],
        vec!["jobs", "list", "--json"],
        vec!["jobs", "list"],
        vec!["orders", "list", "--json"],
        vec!["orders", "list"],
        vec!["jobs", "stats", "--json"],
    ];
    let jobs = shop.jobs();
    let ids: Vec<&str> = jobs.iter().map(|j| j["id"].as_str().unwrap()).collect();
    for id in &ids {
        shown.push(vec!["jobs", "show", id, "--json"]);
        shown.push(vec!["jobs", "show", id]);
    }
    for args in &shown {
        let out = shop.run(args);
        assert!(
            out.status.success(),
            "shopdesk {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_key_not_in(
            &format!("shopdesk {}", args.join(" ")),
            &out.stdout,
            API_KEY,
        );
        assert_key_not_in(
            &format!("shopdesk {}'s stderr", args.join(" ")),
            &out.stderr,
            API_KEY,
        );
    }
    assert_eq!(
        shop.ok(&["config", "get", "email_api_key"]).trim(),
        shopdesk_core::secrets::mask(API_KEY)
    );

    // The logs were really verbose: the HTTP client's own events are in
    // the worker's stderr, and the sends in the data folder's log.
    let worker_log = worker.stderr_text();
    assert!(
        worker_log.contains("reqwest") && worker_log.contains("hyper"),
        "the HTTP client logged nothing at trace level:\n{worker_log}"
    );
    let logs: Vec<PathBuf> = files_under(&shop.data.join("logs"));
    let logged: String = logs
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    for what in ["accepted by the provider", "invalid recipient", "429"] {
        assert!(
            logged.contains(what),
            "no \"{what}\" in the logs:\n{logged}"
        );
    }

    // No file in the data folder has it (logs, database, its WAL, the
    // outbox), nor the output of any process run here; only the secrets
    // file, which is for it.
    let secrets = shop.data.join("secrets");
    let mut scanned = 0;
    for file in files_under(&shop.data)
        .into_iter()
        .chain(files_under(&shop.tmp.path().join("logs")))
    {
        let bytes = std::fs::read(&file).unwrap();
        if file.starts_with(&secrets) {
            assert_eq!(bytes, API_KEY.as_bytes(), "{}", file.display());
            continue;
        }
        assert_key_not_in(&file.display().to_string(), &bytes, API_KEY);
        scanned += 1;
    }
    assert!(
        shop.database().exists() && scanned > logs.len() + 2,
        "only {scanned} files scanned"
    );
}

// ---------------------------------------------------------------------------
// 7. Quitting the worker while jobs run.
// ---------------------------------------------------------------------------

#[test]
fn a_graceful_quit_finishes_or_gives_back_running_jobs() {
    let sink = MailSink::start();
    sink.set_delay(Duration::from_millis(1500));
    let shop = Shop::new();
    shop.use_provider(&sink);
    for i in 0..8 {
        shop.place(&format!("quit-{i}"), &format!("quit{i}@example.com"), i);
    }
    let mut worker = shop.worker();
    assert!(
        sink.wait_arrived(2, Duration::from_secs(20)),
        "the worker sent nothing"
    );
    // `shopdesk worker` stops on SIGINT (Ctrl-C).
    let quit = Instant::now();
    worker.signal(libc::SIGINT);
    let status = worker.wait_exit(Duration::from_secs(20));
    let took = quit.elapsed();
    assert!(status.success(), "{status}:\n{}", worker.stderr_text());
    let in_flight = sink.arrived();
    eprintln!("graceful quit took {took:.2?} with {in_flight} emails in flight or sent");

    // Running jobs finished; the others went back to the queue untouched.
    let jobs = shop.email_jobs();
    let done: HashSet<&str> = jobs
        .iter()
        .filter(|j| j["status"] == "Done")
        .map(|j| j["idempotency_key"].as_str().unwrap())
        .collect();
    for j in &jobs {
        match j["status"].as_str().unwrap() {
            "Done" => {}
            "Pending" => assert_eq!(j["attempts"], 0, "an unstarted job lost an attempt: {j:#}"),
            other => panic!("a {other} job after a graceful quit: {j:#}"),
        }
    }
    let sent: HashSet<String> = sink.accepted_keys().into_keys().collect();
    let sent: HashSet<&str> = sent.iter().map(String::as_str).collect();
    assert_eq!(sent, done, "the sent emails are exactly the done jobs");
    assert!(done.len() >= 2, "the emails in flight were not finished");
    assert!(done.len() < 8, "nothing was left to resume (quit too late)");

    // The next start resumes and sends the rest, each once.
    let mut worker = shop.worker();
    wait_all_emails_done(&shop, 8, Duration::from_secs(30));
    worker.signal(libc::SIGINT);
    assert!(worker.wait_exit(Duration::from_secs(20)).success());
    let orders = shop.orders();
    check_deliveries(&sink, &orders, true);
    assert!(
        orders.iter().all(|o| o["email_status"] == "sent"),
        "{orders:#?}"
    );
}

/// Jobs the database shows as claimed: Running, or holding a lease.
fn claimed_jobs(shop: &Shop) -> Vec<String> {
    let conn = shop.db();
    let mut stmt = conn
        .prepare(
            "SELECT id || ' ' || job_type || ' ' || status || ' by ' || coalesce(lock_by, '-')
             FROM Jobs WHERE status = 'Running' OR lease_expires_ms IS NOT NULL ORDER BY id",
        )
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// A plain `kill` (SIGTERM: what systemd, a logout or a shutdown send) stops
/// `shopdesk worker` exactly as Ctrl-C does: running jobs finish, claimed
/// ones go back to the queue, and the exit is a success. Killed outright
/// instead, the worker would leave its jobs Running until their lease ran
/// out.
#[test]
fn sigterm_stops_the_worker_as_gracefully_as_ctrl_c() {
    stop_a_busy_worker(&["worker"], libc::SIGTERM);
}

/// `worker --until-idle` (a script draining the queue) stops as gracefully
/// when interrupted before it is done.
#[test]
fn an_interrupted_worker_until_idle_gives_back_its_jobs() {
    stop_a_busy_worker(&["worker", "--until-idle"], libc::SIGINT);
}

/// Runs `args` over eight slow emails, sends `signal` while two are in
/// flight, and checks the worker stopped cleanly with nothing held.
fn stop_a_busy_worker(args: &[&str], signal: i32) {
    let sink = MailSink::start();
    sink.set_delay(Duration::from_millis(1500));
    let shop = Shop::new();
    shop.use_provider(&sink);
    for i in 0..8 {
        shop.place(&format!("term-{i}"), &format!("term{i}@example.com"), i);
    }
    let mut worker = shop.spawn("worker", args);
    assert!(
        sink.wait_arrived(2, Duration::from_secs(20)),
        "the worker sent nothing"
    );
    // Emails are at the sink (it answers after 1.5 s): their jobs are
    // Running, and more are claimed behind them.
    let claimed = claimed_jobs(&shop);
    assert!(
        claimed.len() >= 2,
        "expected jobs in flight when the signal goes:\n{}",
        claimed.join("\n")
    );

    worker.signal(signal);
    let status = worker.wait_exit(Duration::from_secs(20));
    assert!(
        status.success(),
        "signal {signal} must stop `{}` cleanly, it ended with {status}:\n{}",
        args.join(" "),
        worker.stderr_text()
    );
    let left = claimed_jobs(&shop);
    assert!(
        left.is_empty(),
        "jobs still claimed after the worker exited:\n{}",
        left.join("\n")
    );

    // The emails in flight were sent and are done; the rest wait untouched.
    let jobs = shop.email_jobs();
    for j in &jobs {
        match j["status"].as_str().unwrap() {
            "Done" => {}
            "Pending" => assert_eq!(j["attempts"], 0, "an unstarted job lost an attempt: {j:#}"),
            other => panic!("a {other} job after signal {signal}: {j:#}"),
        }
    }
    let done: HashSet<&str> = jobs
        .iter()
        .filter(|j| j["status"] == "Done")
        .map(|j| j["idempotency_key"].as_str().unwrap())
        .collect();
    let sent: HashSet<String> = sink.accepted_keys().into_keys().collect();
    let sent: HashSet<&str> = sent.iter().map(String::as_str).collect();
    assert_eq!(sent, done, "the sent emails are exactly the done jobs");
    assert!(done.len() >= 2, "the emails in flight were not finished");
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

// ---------------------------------------------------------------------------
// A script that stops reading (`shopdesk products list | head -1`).
// ---------------------------------------------------------------------------

#[test]
fn a_reader_that_goes_away_ends_a_listing_quietly() {
    let shop = Shop::new();
    for args in [
        &["products", "list"][..],
        &["products", "list", "--json"],
        &["jobs", "list", "--json"],
    ] {
        let mut child = shop
            .command()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn shopdesk");
        // Close the read end before the listing is written.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("panicked") && out.status.code() != Some(101),
            "shopdesk {}: {} {stderr}",
            args.join(" "),
            out.status
        );
    }
}

#[test]
fn a_machine_that_cannot_show_a_window_or_keep_a_log_gets_a_plain_answer() {
    let shop = Shop::new();
    // No display: the app says what to do instead of a panic in the
    // window library.
    shop.set_env("DISPLAY", None);
    shop.set_env("WAYLAND_DISPLAY", None);
    let out = shop.run(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error [app]: the desktop app needs a graphical session"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    // With no desktop session (this test's bus address leads nowhere), a
    // headless worker skips the notification instead of retrying it until
    // it dies.
    shop.place("headless", "headless@example.com", 1);
    let summary = shop.json(&["worker", "--until-idle"]);
    assert_eq!(summary["failed"], 0, "{summary}");
    assert_eq!(summary["dead"], 0, "{summary}");
    let notes: Vec<Value> = shop
        .jobs()
        .into_iter()
        .filter(|j| j["job_type"] == "notify.order_placed")
        .collect();
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0]["status"], "Done", "{:#}", notes[0]);
    assert_eq!(notes[0]["attempts"], 1);

    // The log file cannot be created: a warning, and the command still works.
    let logs = shop.data.join("logs");
    std::fs::remove_dir_all(&logs).unwrap();
    std::fs::write(&logs, "not a folder").unwrap();
    let out = shop.run(&["jobs", "stats", "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("cannot write the log file"), "{stderr}");
    serde_json::from_slice::<Value>(&out.stdout).expect("the answer is still JSON");

    // An empty SHOPDESK_DATA_DIR (as systemd units and scripts leave it)
    // is no data folder at all, and --data-dir wins anyway.
    shop.set_env("SHOPDESK_DATA_DIR", Some(""));
    shop.ok(&["jobs", "stats"]);
    shop.set_env("SHOPDESK_DATA_DIR", None);

    // A mistyped command line is an error like any other, with exit code 2.
    let out = shop.run(&["products", "list", "--limit", "0"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("error [usage]: invalid value '0' for '--limit <LIMIT>'"),
        "{stderr}"
    );
}

#[test]
fn stats_name_a_paused_queue_and_the_pause_outlives_the_process() {
    let shop = Shop::new();
    shop.ok(&["jobs", "pause", "email"]);
    // A new process reads the pause back from the database.
    let stats = shop.json(&["jobs", "stats", "--json"]);
    assert_eq!(stats["paused"], false, "not every queue is paused");
    let paused: Vec<&str> = stats["queues"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|q| q["paused"] == true)
        .map(|q| q["queue"].as_str().unwrap())
        .collect();
    assert_eq!(paused, ["email"]);
    assert!(shop
        .ok(&["jobs", "stats"])
        .trim_end()
        .ends_with("· paused: email"));
    shop.ok(&["jobs", "pause"]);
    assert!(shop
        .ok(&["jobs", "stats"])
        .trim_end()
        .ends_with("· all queues paused"));
    shop.ok(&["jobs", "resume"]);
    let stats = shop.json(&["jobs", "stats", "--json"]);
    assert!(stats["queues"]
        .as_array()
        .unwrap()
        .iter()
        .all(|q| q["paused"] == false));
}

// ---------------------------------------------------------------------------
// Where the API key is kept: the OS keyring, or a private file without one.
// ---------------------------------------------------------------------------

/// The secrets file of the API key, checked to be the owner's alone; its
/// content.
fn private_key_file(shop: &Shop) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let dir = shop.data.join("secrets");
    let path = dir.join("email_api_key");
    let key = std::fs::read_to_string(&path).ok()?;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600, "{}", path.display());
    assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    Some(key)
}

/// Places an order, runs the worker until it is sent, and returns the
/// Authorization header the provider got with it.
fn send_one(shop: &Shop, sink: &MailSink, key: &str) -> String {
    let placed = shop.place(key, &format!("{key}@example.com"), 0);
    let idempotency_key = format!("{EMAIL_KEY_PREFIX}{}", placed["order_id"].as_str().unwrap());
    let summary = shop.drain();
    assert!(summary["done"].as_u64() >= Some(1), "{summary}");
    sink.requests()
        .iter()
        .filter(|r| r.accepted() && r.idempotency_key() == Some(idempotency_key.as_str()))
        .map(|r| r.header("authorization").unwrap_or_default().to_string())
        .next()
        .unwrap_or_else(|| {
            panic!(
                "order {key} was not sent; jobs:\n{}",
                describe_jobs(&shop.jobs())
            )
        })
}

/// With no keyring service to reach (the session bus address leads
/// nowhere) and the default secret store, setting the key still works: it
/// goes to a file only the owner can read, the owner is told so (without
/// the key), it is shown masked, and the worker sends with it.
#[test]
fn without_a_keyring_the_api_key_falls_back_to_a_private_file() {
    let sink = MailSink::start();
    let shop = Shop::with_env(&[("SHOPDESK_SECRET_STORE", None)]);
    assert!(
        !shop.tmp.path().join("no-bus").exists(),
        "something listens where no bus should be"
    );
    let out = shop.use_provider(&sink);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("no working OS keyring") && said.contains("secrets/email_api_key"),
        "the owner is not told the key went to a file:\n{said}"
    );
    assert_eq!(private_key_file(&shop).as_deref(), Some(API_KEY));
    assert_eq!(
        shop.ok(&["config", "get", "email_api_key"]).trim(),
        shopdesk_core::secrets::mask(API_KEY)
    );
    let logged: String = files_under(&shop.data.join("logs"))
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    assert!(logged.contains("no working OS keyring"), "{logged}");
    assert_key_not_in("the logs", logged.as_bytes(), API_KEY);

    assert_eq!(
        send_one(&shop, &sink, "fallback"),
        format!("Bearer {API_KEY}")
    );
    check_deliveries(&sink, &shop.orders(), true);
}

/// A private session bus with a real Secret Service on it:
/// gnome-keyring-daemon, its login keyring created and unlocked (as a
/// desktop login does). Both processes are killed when it is dropped.
struct SecretService {
    bus: Child,
    keyring: Child,
    address: String,
    _dir: tempfile::TempDir,
}

impl SecretService {
    fn start() -> SecretService {
        use std::io::BufRead;
        let dir = tempfile::tempdir().unwrap();
        let mut bus = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--nopidfile", "--print-address"])
            .arg(format!(
                "--address=unix:path={}",
                dir.path().join("bus").display()
            ))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dbus-daemon (package dbus; scripts/deps.sh installs it)");
        let mut address = String::new();
        std::io::BufReader::new(bus.stdout.take().unwrap())
            .read_line(&mut address)
            .unwrap();
        let address = address.trim().to_string();
        assert!(!address.is_empty(), "dbus-daemon printed no address");
        let home = dir.path().join("home");
        let run = dir.path().join("run");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::create_dir_all(&run).unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        let mut keyring = Command::new("gnome-keyring-daemon")
            .args(["--foreground", "--unlock", "--components=secrets"])
            .env("DBUS_SESSION_BUS_ADDRESS", &address)
            .env("HOME", &home)
            .env("XDG_DATA_HOME", home.join(".local/share"))
            .env("XDG_RUNTIME_DIR", &run)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "start gnome-keyring-daemon (package gnome-keyring; scripts/deps.sh installs it)",
            );
        // The login keyring's password, then end of input.
        keyring
            .stdin
            .take()
            .unwrap()
            .write_all(b"fault-test-login")
            .unwrap();
        let service = SecretService {
            bus,
            keyring,
            address,
            _dir: dir,
        };
        wait_until(
            Duration::from_secs(20),
            || "gnome-keyring-daemon to own org.freedesktop.secrets".into(),
            || service.has_secret_service().then_some(()),
        );
        service
    }

    fn has_secret_service(&self) -> bool {
        let out = Command::new("dbus-send")
            .arg(format!("--bus={}", self.address))
            .args([
                "--print-reply",
                "--dest=org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus.NameHasOwner",
                "string:org.freedesktop.secrets",
            ])
            .output()
            .expect("run dbus-send");
        String::from_utf8_lossy(&out.stdout).contains("boolean true")
    }
}

impl Drop for SecretService {
    fn drop(&mut self) {
        for child in [&mut self.keyring, &mut self.bus] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The key is found wherever it was stored while a keyring comes and goes:
/// set in the file while there is none, still found once a keyring is
/// there; moved to the keyring by the next change (the file removed); and
/// a key set in the file while the keyring was away again wins over the
/// older one the keyring still holds. Each time, the worker sends with the
/// latest key.
#[test]
fn the_api_key_is_found_wherever_it_was_stored_as_a_keyring_comes_and_goes() {
    let sink = MailSink::start();
    let shop = Shop::with_env(&[("SHOPDESK_SECRET_STORE", None)]);
    let service = SecretService::start();
    let shown = || {
        shop.ok(&["config", "get", "email_api_key"])
            .trim()
            .to_string()
    };
    let in_keyring = || {
        let out = shop
            .command()
            .args(["config", "get", "email_api_key"])
            .env("SHOPDESK_SECRET_STORE", "keyring")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let mask = shopdesk_core::secrets::mask;

    // No keyring: the first key goes to the file.
    shop.use_provider(&sink);
    assert_eq!(private_key_file(&shop).as_deref(), Some(API_KEY));

    // A keyring appears: the key is still read from the file.
    shop.set_env("DBUS_SESSION_BUS_ADDRESS", Some(&service.address));
    assert_eq!(in_keyring(), "(not set)");
    assert_eq!(shown(), mask(API_KEY));
    assert_eq!(
        send_one(&shop, &sink, "file-key"),
        format!("Bearer {API_KEY}")
    );

    // A new key goes to the keyring, and the file is removed.
    let second = "re_keyring_key_22222222";
    let out = shop.set_api_key(second);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("no working OS keyring"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        private_key_file(&shop),
        None,
        "a stale copy left in the file"
    );
    assert_eq!(in_keyring(), mask(second));
    assert_eq!(shown(), mask(second));
    assert_eq!(
        send_one(&shop, &sink, "keyring-key"),
        format!("Bearer {second}")
    );

    // The keyring is away: a newer key goes to the file ...
    shop.set_env("DBUS_SESSION_BUS_ADDRESS", Some(&shop.no_bus()));
    let third = "re_file_key_33333333";
    let out = shop.set_api_key(third);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(private_key_file(&shop).as_deref(), Some(third));
    // ... and stays the key once the keyring, still holding the older
    // one, is back.
    shop.set_env("DBUS_SESSION_BUS_ADDRESS", Some(&service.address));
    assert_eq!(in_keyring(), mask(second));
    assert_eq!(shown(), mask(third));
    assert_eq!(
        send_one(&shop, &sink, "newer-file-key"),
        format!("Bearer {third}")
    );
}
