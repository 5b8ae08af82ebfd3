//! The tray icon: live queue counts, open the window, pause or resume the
//! queue, quit. Linux trays ignore tooltips, so the counts are a menu item.

use std::sync::Arc;

use shopdesk_core::queue::JobStats;
use tauri::menu::{Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::{TrayIcon, TrayIconBuilder};
use tauri::{AppHandle, Manager, Wry};

use crate::app::{self, AppState};

const OPEN: &str = "open";
const TOGGLE_QUEUE: &str = "toggle-queue";
const QUIT: &str = "quit";

/// Set to any non-empty value to run without a tray icon.
pub const NO_TRAY_ENV: &str = "SHOPDESK_NO_TRAY";

/// The menu items that change, kept to update them as the queue moves.
pub struct Tray {
    status: MenuItem<Wry>,
    toggle: MenuItem<Wry>,
    _icon: TrayIcon<Wry>,
}

/// Whether a tray icon can be created. On Linux the tray needs the
/// appindicator library at run time, and creating the icon without it
/// panics inside the library instead of returning an error: check first.
pub fn available() -> bool {
    if std::env::var_os(NO_TRAY_ENV).is_some_and(|v| !v.is_empty()) {
        tracing::info!("{NO_TRAY_ENV} is set: running without a tray icon");
        return false;
    }
    appindicator_loadable()
}

#[cfg(target_os = "linux")]
fn appindicator_loadable() -> bool {
    const CANDIDATES: [&str; 4] = [
        "libayatana-appindicator3.so.1",
        "libappindicator3.so.1",
        "libayatana-appindicator3.so",
        "libappindicator3.so",
    ];
    for name in CANDIDATES {
        // SAFETY: these are the system's appindicator libraries, which the
        // tray loads anyway; loading one runs only its ordinary initialisers.
        if unsafe { libloading::Library::new(name) }.is_ok() {
            return true;
        }
    }
    tracing::warn!(
        "no appindicator library (libayatana-appindicator3 or libappindicator3) found: \
         running without a tray icon; closing the window quits"
    );
    false
}

#[cfg(not(target_os = "linux"))]
fn appindicator_loadable() -> bool {
    true
}

/// The status line: `3 pending · 0 failed`, `· paused` when paused.
pub fn status_text(stats: &JobStats) -> String {
    let mut text = format!(
        "{} pending · {} failed",
        stats.pending + stats.running,
        stats.failed + stats.dead
    );
    if stats.paused {
        text.push_str(" · paused");
    }
    text
}

pub fn toggle_text(stats: &JobStats) -> &'static str {
    if stats.paused {
        "Resume queue"
    } else {
        "Pause queue"
    }
}

pub fn create(app: &AppHandle) -> tauri::Result<Tray> {
    let status = MenuItem::with_id(app, "status", "Queue: starting…", false, None::<&str>)?;
    let open = MenuItem::with_id(app, OPEN, "Open ShopDesk", true, None::<&str>)?;
    let toggle = MenuItem::with_id(app, TOGGLE_QUEUE, "Pause queue", true, None::<&str>)?;
    let quit = MenuItem::with_id(app, QUIT, "Quit", true, None::<&str>)?;
    let menu = Menu::with_items(
        app,
        &[
            &status,
            &PredefinedMenuItem::separator(app)?,
            &open,
            &toggle,
            &PredefinedMenuItem::separator(app)?,
            &quit,
        ],
    )?;
    let icon = TrayIconBuilder::with_id("main")
        .icon(tauri::include_image!("icons/tray.png"))
        .tooltip("ShopDesk")
        .title("ShopDesk")
        .menu(&menu)
        .show_menu_on_left_click(true)
        .on_menu_event(|app, event| match event.id().as_ref() {
            OPEN => app::show_main_window(app),
            TOGGLE_QUEUE => toggle_queue(app),
            QUIT => app.exit(0),
            _ => {}
        })
        .build(app)?;
    Ok(Tray {
        status,
        toggle,
        _icon: icon,
    })
}

impl Tray {
    pub fn update(&self, stats: &JobStats) {
        if let Err(e) = self.status.set_text(status_text(stats)) {
            tracing::warn!(error = %e, "could not update the tray status");
        }
        if let Err(e) = self.toggle.set_text(toggle_text(stats)) {
            tracing::warn!(error = %e, "could not update the tray pause item");
        }
    }
}

/// Flips the queue between paused and running, from its stored state (the
/// Jobs page may have changed it since the menu was drawn).
fn toggle_queue(app: &AppHandle) {
    let state = app.state::<AppState>();
    let shop = Arc::clone(&state.shop);
    let changed = Arc::clone(&state.jobs_changed);
    tauri::async_runtime::spawn(async move {
        let result = tauri::async_runtime::spawn_blocking(move || {
            let paused = shop.job_stats()?.paused;
            shop.set_queue_paused(!paused).map(|()| !paused)
        })
        .await;
        match result {
            Ok(Ok(paused)) => tracing::info!(paused, "queue toggled from the tray"),
            Ok(Err(e)) => tracing::error!(error = %e, "could not toggle the queue"),
            Err(e) => tracing::error!(error = %e, "could not toggle the queue"),
        }
        changed.notify_one();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_line_counts_waiting_and_failing_jobs() {
        let stats = JobStats {
            pending: 2,
            running: 1,
            failed: 1,
            done: 9,
            dead: 1,
            paused: false,
        };
        assert_eq!(status_text(&stats), "3 pending · 2 failed");
        assert_eq!(toggle_text(&stats), "Pause queue");
        let paused = JobStats {
            paused: true,
            ..stats
        };
        assert_eq!(status_text(&paused), "3 pending · 2 failed · paused");
        assert_eq!(toggle_text(&paused), "Resume queue");
    }
}
