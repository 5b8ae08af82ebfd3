//! Builds and runs the desktop app: the window, the commands, the tray, and
//! the job worker running beside the UI on Tauri's async runtime.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use shopdesk_core::queue::admin::QueueState;
use shopdesk_core::queue::JobStats;
use shopdesk_core::{worker, Shop};
use tauri::async_runtime::JoinHandle;
use tauri::{AppHandle, Emitter, Manager, RunEvent, Window, WindowEvent};
use tokio::sync::{watch, Notify};

use crate::commands;
use crate::signals::QuitSignals;
use crate::tray::{self, OnClose, Tray};

/// Event with the current `JobStats`, sent whenever a job changes state.
pub const JOBS_CHANGED: &str = "jobs-changed";
/// Event sent after an order is placed or the catalog is imported, and when
/// another process changed the database.
pub const ORDERS_CHANGED: &str = "orders-changed";

const MAIN_WINDOW: &str = "main";
/// How long quitting lets a running job finish before the worker gives it
/// back to the queue (the next start runs it again).
const JOB_GRACE: Duration = Duration::from_secs(4);
/// How long quitting waits for the worker as a whole: the job grace plus
/// time to write the given-back jobs, so none is left claimed until its
/// lease runs out.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(6);
/// Job changes come in bursts; publish counts at most this often.
const PUBLISH_EVERY: Duration = Duration::from_millis(100);
/// How often to look for commits this process was not told of.
const LOOK_OUTSIDE_EVERY: Duration = Duration::from_secs(2);

/// What the commands share.
pub struct AppState {
    pub shop: Arc<Shop>,
    /// Signalled when job counts may have changed; one task publishes them.
    pub jobs_changed: Arc<Notify>,
}

/// The tray, when this desktop has one.
struct TrayHandle(Option<Tray>);

pub fn run(shop: Shop) -> Result<(), Box<dyn std::error::Error>> {
    check_display()?;
    let shop = Arc::new(shop);
    let jobs_changed = Arc::new(Notify::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    let worker_task: Arc<Mutex<Option<JoinHandle<()>>>> = Arc::default();
    // Listen from the start, so that a stop request (Ctrl-C, or SIGTERM from
    // `kill`, systemd or the end of the desktop session) is a normal quit
    // whenever it comes: the worker below stops with its grace.
    let signals = tauri::async_runtime::block_on(async { QuitSignals::listen() })
        .inspect_err(|e| {
            tracing::warn!(error = %e, "cannot listen for stop signals; they end ShopDesk at once")
        })
        .ok();

    let app = tauri::Builder::default()
        .manage(AppState {
            shop: Arc::clone(&shop),
            jobs_changed: Arc::clone(&jobs_changed),
        })
        .invoke_handler(tauri::generate_handler![
            commands::shop_info,
            commands::list_products,
            commands::import_products_csv,
            commands::place_order,
            commands::list_orders,
            commands::job_stats,
            commands::list_jobs,
            commands::set_queue_paused,
            commands::get_job,
            commands::retry_job,
            commands::cancel_job,
            commands::queue_states,
            commands::set_queue_paused_by_name,
            commands::purge_dead_jobs,
            commands::get_settings,
            commands::save_settings,
        ])
        .on_window_event(on_window_event)
        .setup({
            let worker_task = Arc::clone(&worker_task);
            move |app| {
                let handle = app.handle().clone();
                if let Some(signals) = signals {
                    let handle = handle.clone();
                    tauri::async_runtime::spawn(async move {
                        let signal = signals.recv().await;
                        tracing::info!("{signal} received: quitting");
                        handle.exit(0);
                    });
                }
                let tray = if tray::available() {
                    match tray::create(&handle) {
                        Ok(tray) => Some(tray),
                        Err(e) => {
                            tracing::warn!(error = %e, "could not create the tray icon; closing the window quits");
                            None
                        }
                    }
                } else {
                    None
                };
                app.manage(TrayHandle(tray));

                tauri::async_runtime::spawn(publish_job_stats(
                    handle,
                    Arc::clone(&shop),
                    Arc::clone(&jobs_changed),
                    stop_rx.clone(),
                ));
                let task = start_worker(&shop, &jobs_changed, stop_rx);
                *worker_task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
                // First counts for the tray and any page already listening.
                jobs_changed.notify_one();
                Ok(())
            }
        })
        .build(tauri::generate_context!("../tauri.conf.json"))?;

    let exit_code = app.run_return(|_app, event| {
        if let RunEvent::ExitRequested { code, .. } = event {
            tracing::info!(?code, "exit requested");
        }
    });

    // Tell the worker to stop taking jobs and give a running one a moment to
    // finish; what does not finish goes back to the queue for the next start.
    let _ = stop_tx.send(true);
    let task = worker_task.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(task) = task {
        // The timer must be created inside the runtime, hence the async block.
        let waited = tauri::async_runtime::block_on(async move {
            tokio::time::timeout(SHUTDOWN_GRACE, task).await
        });
        match waited {
            Ok(_) => tracing::info!("worker stopped"),
            Err(_) => tracing::warn!(
                "worker still busy after {}s; its job will run again on next start",
                SHUTDOWN_GRACE.as_secs()
            ),
        }
    }

    if exit_code == 0 {
        Ok(())
    } else {
        Err(format!("the app exited with code {exit_code}").into())
    }
}

/// Runs the job worker until `stop` turns true.
fn start_worker(
    shop: &Shop,
    changed: &Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let mut config = shop.worker_config();
    config.shutdown_grace = JOB_GRACE;
    let changed = Arc::clone(changed);
    config.on_change = Some(Arc::new(move || changed.notify_one()));
    let handler = shop.job_handler();
    let shutdown = async move {
        let _ = stop.wait_for(|stop| *stop).await;
    };
    tauri::async_runtime::spawn(async move {
        tracing::info!("worker started");
        if let Err(e) = worker::run(config, handler, shutdown).await {
            tracing::error!(error = %e, "the job worker stopped with an error");
        }
    })
}

/// What one look publishes: the counts, and for the tray which queues are
/// paused.
#[derive(PartialEq)]
struct Published {
    stats: JobStats,
    queues: Vec<QueueState>,
}

/// Publishes job counts (event for the pages, text for the tray) each time
/// they may have changed, coalescing bursts. Every few seconds it also looks
/// for commits made elsewhere (the CLI, a headless worker, another till):
/// when there are any, the pages are told that jobs and orders changed, as
/// a job retried elsewhere or an order placed from the command line may
/// leave every count as it was. (The watch cannot tell this process's own
/// commits from others': while this app's worker is busy, the pages get at
/// most one extra refresh per look.)
async fn publish_job_stats(
    app: AppHandle,
    shop: Arc<Shop>,
    changed: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let commits = match shop.watch_commits() {
        Ok(watch) => Some(Arc::new(Mutex::new(watch))),
        Err(e) => {
            tracing::warn!(
                error = %e,
                "cannot watch the database for outside changes; comparing job counts instead"
            );
            None
        }
    };
    let mut outside = tokio::time::interval(LOOK_OUTSIDE_EVERY);
    outside.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Option<Published> = None;
    loop {
        let signalled = tokio::select! {
            _ = changed.notified() => true,
            _ = outside.tick() => false,
            _ = stop.changed() => return,
        };
        let shop = Arc::clone(&shop);
        let commits = commits.clone();
        let looked = tauri::async_runtime::spawn_blocking(move || {
            // Look for commits before reading the counts, so that one
            // landing in between is seen on the next look, not missed.
            let committed = match &commits {
                Some(watch) if !signalled => {
                    Some(watch.lock().unwrap_or_else(|p| p.into_inner()).changed()?)
                }
                _ => None,
            };
            if committed == Some(false) {
                return Ok(None);
            }
            // The tray names queues paused alone, which the counts do not
            // tell: one more read of the (tiny) paused-queues table.
            let stats = shop.job_stats()?;
            let queues = shop.queue_states()?;
            Ok(Some((Published { stats, queues }, committed)))
        })
        .await
        .map_err(|e| shopdesk_core::Error::Other(e.to_string()))
        .and_then(|r| r);
        let (now, outside_commit) = match looked {
            Ok(Some((now, committed))) => {
                // Without a watch, changed counts (or pauses) are the only sign.
                let outside_commit = committed.unwrap_or(!signalled && last.as_ref() != Some(&now));
                (now, outside_commit)
            }
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "could not look for job changes");
                tokio::time::sleep(PUBLISH_EVERY).await;
                continue;
            }
        };
        if signalled || outside_commit {
            if let Some(handle) = app.try_state::<TrayHandle>() {
                if let Some(tray) = &handle.0 {
                    tray.update(&now.stats, &now.queues);
                }
            }
            if let Err(e) = app.emit(JOBS_CHANGED, &now.stats) {
                tracing::warn!(error = %e, "could not emit {JOBS_CHANGED}");
            }
            last = Some(now);
        }
        if outside_commit {
            if let Err(e) = app.emit(ORDERS_CHANGED, ()) {
                tracing::warn!(error = %e, "could not emit {ORDERS_CHANGED}");
            }
        }
        tokio::time::sleep(PUBLISH_EVERY).await;
    }
}

/// Closing the window hides it when the tray can bring it back: there is a
/// tray icon and the desktop shows tray icons right now. Otherwise closing
/// quits as usual, since a hidden window could never be found again.
fn on_window_event(window: &Window, event: &WindowEvent) {
    if let WindowEvent::CloseRequested { api, .. } = event {
        if window.label() != MAIN_WINDOW {
            return;
        }
        let has_tray = window
            .app_handle()
            .try_state::<TrayHandle>()
            .is_some_and(|t| t.0.is_some());
        match tray::on_close(has_tray, tray::host_present) {
            OnClose::Hide => {
                api.prevent_close();
                if let Err(e) = window.hide() {
                    tracing::warn!(error = %e, "could not hide the window");
                } else {
                    tracing::info!("window hidden; ShopDesk keeps running in the tray");
                }
            }
            OnClose::QuitNoHost => tracing::info!(
                "window closed and this desktop shows no tray icons \
                 (no StatusNotifier host on the session bus): quitting"
            ),
            OnClose::QuitNoTray => tracing::info!("window closed; no tray icon: quitting"),
        }
    }
}

pub fn show_main_window(app: &AppHandle) {
    if let Some(window) = app.get_webview_window(MAIN_WINDOW) {
        let _ = window.show();
        let _ = window.unminimize();
        let _ = window.set_focus();
    }
}

/// The window library panics when no display can be opened (an SSH session,
/// a service, a console). Ask GTK first and say what to do instead.
#[cfg(target_os = "linux")]
fn check_display() -> Result<(), String> {
    gtk::init().map_err(|_| {
        let display = std::env::var("WAYLAND_DISPLAY")
            .or_else(|_| std::env::var("DISPLAY"))
            .map(|d| format!("cannot open the display {d:?}"))
            .unwrap_or_else(|_| "no display (neither DISPLAY nor WAYLAND_DISPLAY is set)".into());
        format!(
            "the desktop app needs a graphical session: {display}. \
             Run it from the desktop, or use a subcommand (see shopdesk --help); \
             `shopdesk worker` runs the queue without a window"
        )
    })
}

#[cfg(not(target_os = "linux"))]
fn check_display() -> Result<(), String> {
    Ok(())
}
