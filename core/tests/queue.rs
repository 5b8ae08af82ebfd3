//! The job queue end to end: real SQLite files, a real worker.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::FutureExt;
use rusqlite::{params, Connection};
use serde_json::json;
use shopdesk_core::db::{self, Durability};
use shopdesk_core::queue::{self, Backoff, Job, JobError, JobHandler, JobStatus, NewJob};
use shopdesk_core::worker::{self, RunSummary, WorkerConfig};

type HandleFn = dyn Fn(Job) -> BoxFuture<'static, Result<(), JobError>> + Send + Sync;

/// A handler made of a closure; remembers the jobs it saw.
struct TestHandler {
    run: Box<HandleFn>,
    seen: Mutex<Vec<Job>>,
}

impl TestHandler {
    fn new(
        run: impl Fn(Job) -> BoxFuture<'static, Result<(), JobError>> + Send + Sync + 'static,
    ) -> Arc<TestHandler> {
        Arc::new(TestHandler {
            run: Box::new(run),
            seen: Mutex::new(Vec::new()),
        })
    }

    fn ok() -> Arc<TestHandler> {
        Self::new(|_| async { Ok(()) }.boxed())
    }

    fn seen(&self) -> Vec<Job> {
        self.seen.lock().unwrap().clone()
    }
}

impl JobHandler for TestHandler {
    fn handle(&self, job: Job) -> BoxFuture<'static, Result<(), JobError>> {
        self.seen.lock().unwrap().push(job.clone());
        (self.run)(job)
    }
}

struct Shop {
    _dir: tempfile::TempDir,
    path: PathBuf,
    conn: Connection,
}

fn shop() -> Shop {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shop.db");
    let conn = db::open(&path, Durability::Full).unwrap();
    Shop {
        _dir: dir,
        path,
        conn,
    }
}

impl Shop {
    fn enqueue(&mut self, job: NewJob) -> String {
        let id = db::write(&mut self.conn, |tx| queue::enqueue(tx, &job)).unwrap();
        queue::wake();
        id
    }

    /// Many jobs in one transaction.
    fn enqueue_many(&mut self, jobs: impl IntoIterator<Item = NewJob>) -> Vec<String> {
        let jobs: Vec<NewJob> = jobs.into_iter().collect();
        let ids = db::write(&mut self.conn, |tx| {
            jobs.iter().map(|j| queue::enqueue(tx, j)).collect()
        })
        .unwrap();
        queue::wake();
        ids
    }

    fn job(&self, id: &str) -> queue::JobInfo {
        queue::get(&self.conn, id).unwrap().unwrap()
    }

    fn run_at_ms(&self, id: &str) -> i64 {
        self.conn
            .query_row("SELECT run_at_ms FROM Jobs WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .unwrap()
    }
}

/// Short timings so that every test takes well under a second.
fn config(path: &Path) -> WorkerConfig {
    let mut c = WorkerConfig::new(path);
    c.poll_interval = Duration::from_millis(20);
    c.lease = Duration::from_millis(500);
    c.job_timeout = Duration::from_secs(2);
    c.backoff = Backoff {
        base: Duration::from_millis(5),
        cap: Duration::from_millis(50),
    };
    c.shutdown_grace = Duration::from_secs(2);
    c
}

fn email(n: i64) -> NewJob {
    NewJob::new("email.order_confirmation", json!({ "order": n }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_until_idle_drains_the_queue() {
    let mut shop = shop();
    shop.enqueue_many((0..200).map(email));
    let handler = TestHandler::ok();
    let summary = worker::run_until_idle(config(&shop.path), handler.clone())
        .await
        .unwrap();
    assert_eq!(
        summary,
        RunSummary {
            done: 200,
            failed: 0,
            dead: 0
        }
    );
    let stats = queue::stats(&shop.conn).unwrap();
    assert_eq!((stats.done, stats.pending, stats.running), (200, 0, 0));
    let seen = handler.seen();
    assert_eq!(seen.len(), 200);
    assert!(seen.iter().all(|j| j.attempt == 1 && j.max_attempts == 25));
    assert_eq!(seen[0].payload, json!({ "order": 0 }), "oldest first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_enqueue_is_picked_up_within_milliseconds_of_wake() {
    let mut shop = shop();
    let (started_tx, mut started_rx) = tokio::sync::mpsc::unbounded_channel();
    let handler = TestHandler::new(move |_| {
        let _ = started_tx.send(Instant::now());
        async { Ok(()) }.boxed()
    });
    let mut cfg = config(&shop.path);
    // Only a wake can find the jobs quickly.
    cfg.poll_interval = Duration::from_secs(10);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(worker::run(cfg, handler, async {
        let _ = stop_rx.await;
    }));
    tokio::time::sleep(Duration::from_millis(100)).await;

    let mut latencies = Vec::new();
    for n in 0..20 {
        let committed = Instant::now();
        shop.enqueue(email(n));
        let started = tokio::time::timeout(Duration::from_secs(2), started_rx.recv())
            .await
            .expect("job picked up")
            .unwrap();
        latencies.push(started - committed);
    }
    latencies.sort();
    let p50 = latencies[latencies.len() / 2];
    assert!(p50 < Duration::from_millis(20), "pickup p50 {p50:?}");
    stop_tx.send(()).unwrap();
    worker.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retryable_failure_is_retried_later_and_then_succeeds() {
    let mut shop = shop();
    let id = shop.enqueue(email(1));
    let handler = TestHandler::new(|job| {
        async move {
            if job.attempt == 1 {
                Err(JobError::Retryable("smtp server unreachable".into()))
            } else {
                Ok(())
            }
        }
        .boxed()
    });
    let mut cfg = config(&shop.path);
    cfg.backoff.base = Duration::from_millis(50);
    cfg.backoff.cap = Duration::from_millis(150);
    let before = queue::now_ms();
    let summary = worker::run_until_idle(cfg.clone(), handler.clone())
        .await
        .unwrap();
    assert_eq!(
        summary,
        RunSummary {
            done: 0,
            failed: 1,
            dead: 0
        }
    );
    let job = shop.job(&id);
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(job.attempts, 1);
    assert_eq!(job.last_error.as_deref(), Some("smtp server unreachable"));
    assert!(shop.run_at_ms(&id) > before + 50, "retry is in the future");

    tokio::time::sleep(Duration::from_millis(200)).await;
    let summary = worker::run_until_idle(cfg, handler.clone()).await.unwrap();
    assert_eq!(
        summary,
        RunSummary {
            done: 1,
            failed: 0,
            dead: 0
        }
    );
    let job = shop.job(&id);
    assert_eq!(
        (job.status, job.attempts, job.last_error),
        (JobStatus::Done, 2, None)
    );
    assert_eq!(
        handler.seen().iter().map(|j| j.attempt).collect::<Vec<_>>(),
        [1, 2]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_failure_kills_the_job_with_its_reason() {
    let mut shop = shop();
    let id = shop.enqueue(email(1));
    let handler =
        TestHandler::new(|_| async { Err(JobError::Permanent("no such order".into())) }.boxed());
    let summary = worker::run_until_idle(config(&shop.path), handler.clone())
        .await
        .unwrap();
    assert_eq!(
        summary,
        RunSummary {
            done: 0,
            failed: 0,
            dead: 1
        }
    );
    let job = shop.job(&id);
    assert_eq!(job.status, JobStatus::Killed);
    assert_eq!(job.attempts, 1);
    assert_eq!(job.last_error.as_deref(), Some("no such order"));
    assert!(job.done_at.is_some());
    assert_eq!(handler.seen().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_keeps_failing_dies_after_max_attempts() {
    let mut shop = shop();
    let id = shop.enqueue(email(1).max_attempts(3));
    let handler = TestHandler::new(|_| async { Err(JobError::Retryable("down".into())) }.boxed());
    let mut total = RunSummary::default();
    for _ in 0..50 {
        let s = worker::run_until_idle(config(&shop.path), handler.clone())
            .await
            .unwrap();
        total.failed += s.failed;
        total.dead += s.dead;
        if shop.job(&id).status == JobStatus::Killed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        total,
        RunSummary {
            done: 0,
            failed: 2,
            dead: 1
        }
    );
    let job = shop.job(&id);
    assert_eq!((job.status, job.attempts), (JobStatus::Killed, 3));
    assert_eq!(
        job.last_error.as_deref(),
        Some("gave up after 3 attempts: down")
    );
    assert_eq!(handler.seen().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_row_is_killed_and_the_other_jobs_still_run() {
    let mut shop = shop();
    let a = shop.enqueue(email(1));
    shop.conn
        .execute(
            "INSERT INTO Jobs (job, id, job_type, run_at, run_at_ms)
             VALUES (?1, 'poison', 'email.order_confirmation', 0, 0)",
            params![vec![0xffu8, 0x00, 0x7b]],
        )
        .unwrap();
    let b = shop.enqueue(email(2));
    let handler = TestHandler::ok();
    let summary = worker::run_until_idle(config(&shop.path), handler.clone())
        .await
        .unwrap();
    assert_eq!(
        summary,
        RunSummary {
            done: 2,
            failed: 0,
            dead: 1
        }
    );
    let poison = shop.job("poison");
    assert_eq!(poison.status, JobStatus::Killed);
    assert!(
        poison
            .last_error
            .as_deref()
            .unwrap()
            .starts_with("undecodable payload:"),
        "{:?}",
        poison.last_error
    );
    assert_eq!(shop.job(&a).status, JobStatus::Done);
    assert_eq!(shop.job(&b).status, JobStatus::Done);
    assert_eq!(handler.seen().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_held_by_a_dead_worker_runs_again_after_its_lease() {
    let mut shop = shop();
    let id = shop.enqueue(email(1));
    // A worker claims it, starts it and dies: no ack, no renewal.
    let claimed = db::write(&mut shop.conn, |tx| {
        let claimed = queue::claim(tx, "crashed-worker", 10, Duration::from_millis(150))?;
        queue::start(tx, "crashed-worker", &claimed[0].id, claimed[0].attempts)?;
        Ok(claimed)
    })
    .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(shop.job(&id).status, JobStatus::Running);

    let handler = TestHandler::ok();
    let started = Instant::now();
    let summary = worker::run_until_idle(config(&shop.path), handler.clone())
        .await
        .unwrap();
    assert_eq!(
        summary,
        RunSummary {
            done: 1,
            failed: 0,
            dead: 0
        }
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    let job = shop.job(&id);
    assert_eq!(job.status, JobStatus::Done);
    assert_eq!(job.attempts, 2, "the lost attempt counts");
    assert_ne!(job.lock_by.as_deref(), Some("crashed-worker"));
    assert_eq!(handler.seen()[0].attempt, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_queue_does_not_run_until_resumed_and_the_pause_persists() {
    let mut shop = shop();
    queue::set_paused(&shop.conn, Some("email"), true).unwrap();
    let mail = shop.enqueue(email(1));
    let note = shop.enqueue(NewJob::new("notify.order_placed", json!({})));
    let handler = TestHandler::ok();
    let summary = worker::run_until_idle(config(&shop.path), handler.clone())
        .await
        .unwrap();
    assert_eq!(summary.done, 1);
    assert_eq!(shop.job(&note).status, JobStatus::Done);
    assert_eq!(shop.job(&mail).status, JobStatus::Pending);

    // Reopen: still paused.
    let conn = db::open(&shop.path, Durability::Normal).unwrap();
    assert_eq!(queue::paused_queues(&conn).unwrap(), ["email"]);
    let summary = worker::run_until_idle(config(&shop.path), handler.clone())
        .await
        .unwrap();
    assert_eq!(summary.done, 0);

    queue::set_paused(&conn, Some("email"), false).unwrap();
    let summary = worker::run_until_idle(config(&shop.path), handler.clone())
        .await
        .unwrap();
    assert_eq!(summary.done, 1);
    assert_eq!(shop.job(&mail).status, JobStatus::Done);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pausing_all_queues_stops_a_running_worker_and_resuming_wakes_it() {
    let mut shop = shop();
    queue::set_paused(&shop.conn, None, true).unwrap();
    assert!(queue::stats(&shop.conn).unwrap().paused);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let handler = TestHandler::ok();
    let mut cfg = config(&shop.path);
    cfg.poll_interval = Duration::from_secs(10);
    let worker = tokio::spawn(worker::run(cfg, handler.clone(), async {
        let _ = stop_rx.await;
    }));
    let id = shop.enqueue(email(1));
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(shop.job(&id).status, JobStatus::Pending);

    queue::set_paused(&shop.conn, None, false).unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while shop.job(&id).status != JobStatus::Done {
        assert!(Instant::now() < deadline, "job did not run after resume");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop_tx.send(()).unwrap();
    worker.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_the_running_job_finish_and_gives_back_unstarted_claims() {
    let mut shop = shop();
    let ids: Vec<String> = (0..5).map(|n| shop.enqueue(email(n))).collect();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let started_tx = Mutex::new(Some(started_tx));
    let handler = TestHandler::new(move |_| {
        if let Some(tx) = started_tx.lock().unwrap().take() {
            let _ = tx.send(());
        }
        async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok(())
        }
        .boxed()
    });
    let mut cfg = config(&shop.path);
    cfg.concurrency = 1;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(worker::run(cfg, handler.clone(), async {
        let _ = stop_rx.await;
    }));
    started_rx.await.unwrap();
    // The worker has claimed all five (a batch) and started one.
    let stats = queue::stats(&shop.conn).unwrap();
    assert_eq!(stats.running, 5);
    stop_tx.send(()).unwrap();
    worker.await.unwrap().unwrap();

    assert_eq!(handler.seen().len(), 1);
    let infos: Vec<_> = ids.iter().map(|id| shop.job(id)).collect();
    assert_eq!(infos[0].status, JobStatus::Done, "the running job finished");
    for info in &infos[1..] {
        assert_eq!(info.status, JobStatus::Pending);
        assert_eq!(info.attempts, 0, "an unstarted claim costs no attempt");
        assert_eq!(info.lock_by, None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_cut_off_by_the_shutdown_grace_goes_back_to_the_queue() {
    let mut shop = shop();
    let id = shop.enqueue(email(1));
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let started_tx = Mutex::new(Some(started_tx));
    let handler = TestHandler::new(move |_| {
        if let Some(tx) = started_tx.lock().unwrap().take() {
            let _ = tx.send(());
        }
        async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(())
        }
        .boxed()
    });
    let mut cfg = config(&shop.path);
    cfg.shutdown_grace = Duration::from_millis(100);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(worker::run(cfg, handler, async {
        let _ = stop_rx.await;
    }));
    started_rx.await.unwrap();
    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(2), worker)
        .await
        .expect("shutdown within the grace period")
        .unwrap()
        .unwrap();
    let job = shop.job(&id);
    assert_eq!(job.status, JobStatus::Pending);
    assert_eq!(job.attempts, 1, "the interrupted attempt counts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_or_a_timeout_is_a_retryable_failure_with_a_reason() {
    let mut shop = shop();
    let panics = shop.enqueue(email(1));
    let hangs = shop.enqueue(NewJob::new("notify.order_placed", json!({})));
    let handler = TestHandler::new(|job| {
        if job.job_type.starts_with("email") {
            panic!("template missing");
        }
        async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(())
        }
        .boxed()
    });
    let mut cfg = config(&shop.path);
    cfg.job_timeout = Duration::from_millis(100);
    // No retry within this run.
    cfg.backoff.base = Duration::from_secs(5);
    cfg.backoff.cap = Duration::from_secs(5);
    let summary = worker::run_until_idle(cfg, handler).await.unwrap();
    assert_eq!(
        summary,
        RunSummary {
            done: 0,
            failed: 2,
            dead: 0
        }
    );
    let p = shop.job(&panics);
    assert_eq!(p.status, JobStatus::Failed);
    assert_eq!(p.last_error.as_deref(), Some("panicked: template missing"));
    let t = shop.job(&hangs);
    assert_eq!(t.status, JobStatus::Failed);
    assert_eq!(t.last_error.as_deref(), Some("timed out"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_inside_the_job_future_is_caught_too() {
    let mut shop = shop();
    let id = shop.enqueue(email(1));
    let handler = TestHandler::new(|_| {
        async {
            tokio::task::yield_now().await;
            panic!("boom after await");
        }
        .boxed()
    });
    let mut cfg = config(&shop.path);
    // One attempt only: a retry within this run would count twice.
    cfg.backoff.base = Duration::from_secs(5);
    cfg.backoff.cap = Duration::from_secs(5);
    let summary = worker::run_until_idle(cfg, handler).await.unwrap();
    assert_eq!(summary.failed, 1);
    let job = shop.job(&id);
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(job.attempts, 1);
    assert_eq!(
        job.last_error.as_deref(),
        Some("panicked: boom after await")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_until_idle_gives_up_with_the_error_when_the_queue_cannot_be_written() {
    let mut shop = shop();
    let id = shop.enqueue(email(1));
    // Every claim fails, as it does when the disk is full.
    shop.conn
        .execute_batch(
            "CREATE TRIGGER no_claims BEFORE UPDATE OF status ON Jobs
             WHEN NEW.status = 'Running'
             BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;",
        )
        .unwrap();
    let started = Instant::now();
    let result = tokio::time::timeout(
        Duration::from_secs(30),
        worker::run_until_idle(config(&shop.path), TestHandler::ok()),
    )
    .await
    .expect("gives up instead of retrying for ever");
    let error = result.expect_err("the error is reported").to_string();
    assert!(error.contains("database or disk is full"), "{error}");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "restarted a few times first"
    );
    // The same with a stop signal that never comes (as the CLI runs it).
    let result = tokio::time::timeout(
        Duration::from_secs(30),
        worker::run_until_idle_or(
            config(&shop.path),
            TestHandler::ok(),
            std::future::pending::<()>(),
        ),
    )
    .await
    .expect("gives up instead of retrying for ever");
    let error = result.expect_err("the error is reported").to_string();
    assert!(error.contains("database or disk is full"), "{error}");
    let job = shop.job(&id);
    assert_eq!(job.status, JobStatus::Pending);
    assert_eq!(job.attempts, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_job_keeps_its_lease() {
    let mut shop = shop();
    let id = shop.enqueue(email(1));
    let runs = Arc::new(AtomicU32::new(0));
    let r = runs.clone();
    let handler = TestHandler::new(move |_| {
        r.fetch_add(1, Ordering::SeqCst);
        async {
            tokio::time::sleep(Duration::from_millis(400)).await;
            Ok(())
        }
        .boxed()
    });
    let mut cfg = config(&shop.path);
    cfg.lease = Duration::from_millis(100);
    // Another worker polling the same file must not steal it.
    let other = tokio::spawn(worker::run_until_idle(
        config(&shop.path),
        TestHandler::ok(),
    ));
    let summary = worker::run_until_idle(cfg, handler).await.unwrap();
    let other = other.await.unwrap().unwrap();
    assert_eq!(summary.done + other.done, 1);
    assert_eq!(runs.load(Ordering::SeqCst) as u64, summary.done);
    assert_eq!(shop.job(&id).attempts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_change_is_called_after_jobs_change_at_most_every_100_ms() {
    let mut shop = shop();
    shop.enqueue_many((0..100).map(email));
    let calls = Arc::new(Mutex::new(Vec::new()));
    let c = calls.clone();
    let mut cfg = config(&shop.path);
    cfg.concurrency = 1;
    cfg.on_change = Some(Arc::new(move || c.lock().unwrap().push(Instant::now())));
    let handler = TestHandler::new(|_| {
        async {
            tokio::time::sleep(Duration::from_millis(1)).await;
            Ok(())
        }
        .boxed()
    });
    worker::run_until_idle(cfg, handler).await.unwrap();
    let calls = calls.lock().unwrap().clone();
    assert!(calls.len() >= 2, "{} calls", calls.len());
    for pair in calls.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap >= Duration::from_millis(95), "two calls {gap:?} apart");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_never_run_the_same_job_twice() {
    let mut shop = shop();
    shop.enqueue_many((0..300).map(email));
    let a = TestHandler::ok();
    let b = TestHandler::ok();
    let (ra, rb) = tokio::join!(
        worker::run_until_idle(config(&shop.path), a.clone()),
        worker::run_until_idle(config(&shop.path), b.clone()),
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra.done + rb.done, 300);
    let mut ids: Vec<String> = a.seen().into_iter().chain(b.seen()).map(|j| j.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 300);
}

/// The till's own connection only checkpoints after thousands of WAL pages;
/// a running worker moves its commits into the database file meanwhile, so
/// checkouts do not pay for checkpoints and the WAL stays small.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_worker_checkpoints_the_tills_commits_in_the_background() {
    let mut shop = shop();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    // A worker with nothing to do: no polls, prunes or lease renewals that
    // could checkpoint as a side effect of their own commits.
    let mut cfg = config(&shop.path);
    cfg.poll_interval = Duration::from_secs(60);
    cfg.lease = Duration::from_secs(60);
    cfg.prune_every = None;
    let worker = tokio::spawn(worker::run(cfg, TestHandler::ok(), async {
        let _ = stop_rx.await;
    }));
    // Let the worker start, then measure from an empty WAL.
    tokio::time::sleep(Duration::from_millis(200)).await;
    shop.conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    let db_size = || std::fs::metadata(&shop.path).unwrap().len();
    let before = db_size();
    let threshold: i64 = shop
        .conn
        .query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
        .unwrap();
    assert_eq!(threshold, db::TILL_AUTOCHECKPOINT_PAGES);
    // About 2 MB of commits through the till's connection (far below its
    // own checkpoint threshold of 4000 pages, about 16 MB).
    shop.conn
        .execute_batch("CREATE TABLE filler (n INTEGER, pad BLOB)")
        .unwrap();
    for n in 0..200 {
        db::write(&mut shop.conn, |tx| {
            tx.execute(
                "INSERT INTO filler VALUES (?1, zeroblob(10000))",
                params![n],
            )?;
            Ok(())
        })
        .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while db_size() < before + 1_500_000 {
        assert!(
            Instant::now() < deadline,
            "nothing moved the till's commits into the database file ({} → {} bytes)",
            before,
            db_size()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop_tx.send(()).unwrap();
    worker.await.unwrap().unwrap();
}
