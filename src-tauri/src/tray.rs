//! The tray icon: live queue counts, open the window, pause or resume the
//! queue, quit. Linux trays ignore tooltips, so the counts are a menu item.

use std::sync::Arc;

use shopdesk_core::queue::admin::QueueState;
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

/// What closing the main window does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnClose {
    /// Hide it: the tray icon is shown and can bring it back.
    Hide,
    /// Quit: there is no tray icon.
    QuitNoTray,
    /// Quit: the icon exists, but nothing on this desktop shows tray icons,
    /// so a hidden window could never be brought back.
    QuitNoHost,
}

/// Decides what closing the window does. `host_present` (which asks the
/// desktop) is only called when there is a tray icon to fall back on.
pub fn on_close(has_tray: bool, host_present: impl FnOnce() -> bool) -> OnClose {
    if !has_tray {
        OnClose::QuitNoTray
    } else if host_present() {
        OnClose::Hide
    } else {
        OnClose::QuitNoHost
    }
}

/// The D-Bus name of the StatusNotifier watcher, which tray icons register
/// with and which desktops that show them (KDE, GNOME with the AppIndicator
/// extension, XFCE, waybar…) provide.
#[cfg(target_os = "linux")]
const WATCHER: &str = "org.kde.StatusNotifierWatcher";
/// How long to wait for the session bus to say whether a tray is shown;
/// past this, the answer is no.
#[cfg(target_os = "linux")]
const HOST_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);

/// Whether the desktop shows tray icons right now: a StatusNotifier watcher
/// owns its name on the session bus and has a host (the panel that draws
/// the icons) registered. Any failure to find out, or no answer in time,
/// counts as no.
#[cfg(target_os = "linux")]
pub fn host_present() -> bool {
    host_present_on(None)
}

/// [`host_present`] on the bus at `address`, or the session bus when `None`.
#[cfg(target_os = "linux")]
fn host_present_on(address: Option<String>) -> bool {
    let (tx, rx) = std::sync::mpsc::channel();
    // On a thread of its own: a bus that never answers must not keep the
    // window from closing.
    let spawned = std::thread::Builder::new()
        .name("shopdesk-tray-host".into())
        .spawn(move || {
            let _ = tx.send(ask_for_host(address.as_deref()));
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "could not ask the session bus for a tray");
        return false;
    }
    match rx.recv_timeout(HOST_CHECK_TIMEOUT) {
        Ok(Ok(present)) => present,
        Ok(Err(e)) => {
            tracing::info!(error = %e, "could not ask the session bus for a tray");
            false
        }
        Err(_) => {
            tracing::warn!(
                "the session bus did not say within {HOST_CHECK_TIMEOUT:?} whether a tray is shown"
            );
            false
        }
    }
}

#[cfg(target_os = "linux")]
fn ask_for_host(address: Option<&str>) -> zbus::Result<bool> {
    use zbus::blocking::connection::Builder;
    use zbus::zvariant::OwnedValue;

    let builder = match address {
        Some(address) => Builder::address(address)?,
        None => Builder::session()?,
    };
    let conn = builder.method_timeout(HOST_CHECK_TIMEOUT).build()?;
    let owned: bool = conn
        .call_method(
            Some("org.freedesktop.DBus"),
            "/org/freedesktop/DBus",
            Some("org.freedesktop.DBus"),
            "NameHasOwner",
            &(WATCHER,),
        )?
        .body()
        .deserialize()?;
    if !owned {
        return Ok(false);
    }
    // A watcher with no host registered has nobody to draw the icon. One
    // that cannot say is taken at its word that it is there.
    let registered = conn
        .call_method(
            Some(WATCHER),
            "/StatusNotifierWatcher",
            Some("org.freedesktop.DBus.Properties"),
            "Get",
            &(WATCHER, "IsStatusNotifierHostRegistered"),
        )
        .and_then(|reply| reply.body().deserialize::<OwnedValue>())
        .ok()
        .and_then(|value| bool::try_from(value).ok());
    Ok(registered.unwrap_or(true))
}

/// Trays elsewhere are part of the desktop and always shown.
#[cfg(not(target_os = "linux"))]
pub fn host_present() -> bool {
    true
}

/// The status line: `3 pending · 0 failed`, then `· paused` when every
/// queue is paused, or the queues paused alone by name (`· email paused`),
/// as `shopdesk jobs stats` and the Jobs page say it.
pub fn status_text(stats: &JobStats, queues: &[QueueState]) -> String {
    let mut text = format!(
        "{} pending · {} failed",
        stats.pending + stats.running,
        stats.failed + stats.dead
    );
    let paused: Vec<&str> = queues
        .iter()
        .filter(|q| q.paused)
        .map(|q| q.queue.as_str())
        .collect();
    if stats.paused {
        text.push_str(" · paused");
    } else if !paused.is_empty() {
        text.push_str(&format!(" · {} paused", paused.join(", ")));
    }
    text
}

/// The pause item flips every queue at once: with some queues paused, it
/// pauses the rest too, so it says "all".
pub fn toggle_text(stats: &JobStats, queues: &[QueueState]) -> &'static str {
    if stats.paused {
        "Resume queue"
    } else if queues.iter().any(|q| q.paused) {
        "Pause all queues"
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
    pub fn update(&self, stats: &JobStats, queues: &[QueueState]) {
        if let Err(e) = self.status.set_text(status_text(stats, queues)) {
            tracing::warn!(error = %e, "could not update the tray status");
        }
        if let Err(e) = self.toggle.set_text(toggle_text(stats, queues)) {
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

    fn queues(email: bool, notify: bool) -> Vec<QueueState> {
        [("email", email), ("notify", notify)]
            .into_iter()
            .map(|(queue, paused)| QueueState {
                queue: queue.to_string(),
                paused,
            })
            .collect()
    }

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
        let running = queues(false, false);
        assert_eq!(status_text(&stats, &running), "3 pending · 2 failed");
        assert_eq!(toggle_text(&stats, &running), "Pause queue");
        let paused = JobStats {
            paused: true,
            ..stats
        };
        let all = queues(true, true);
        assert_eq!(status_text(&paused, &all), "3 pending · 2 failed · paused");
        assert_eq!(toggle_text(&paused, &all), "Resume queue");
    }

    #[test]
    fn status_line_names_the_queues_paused_alone() {
        let stats = JobStats {
            pending: 3,
            ..JobStats::default()
        };
        let email = queues(true, false);
        assert_eq!(
            status_text(&stats, &email),
            "3 pending · 0 failed · email paused"
        );
        assert_eq!(toggle_text(&stats, &email), "Pause all queues");
        assert_eq!(
            status_text(&stats, &queues(false, true)),
            "3 pending · 0 failed · notify paused"
        );
        // Both paused alone while a queue outside the known ones still has
        // jobs: not "all paused", so each is named.
        assert_eq!(
            status_text(&stats, &queues(true, true)),
            "3 pending · 0 failed · email, notify paused"
        );
    }

    #[test]
    fn closing_hides_only_when_a_shown_tray_can_bring_the_window_back() {
        assert_eq!(on_close(true, || true), OnClose::Hide);
        assert_eq!(on_close(true, || false), OnClose::QuitNoHost);
        // With no tray icon the desktop is not even asked.
        assert_eq!(
            on_close(false, || panic!("asked for a host without a tray")),
            OnClose::QuitNoTray
        );
    }

    /// A private D-Bus daemon of the test's own, stopped when dropped.
    #[cfg(target_os = "linux")]
    struct Bus {
        daemon: std::process::Child,
        address: String,
        _dir: tempfile::TempDir,
    }

    #[cfg(target_os = "linux")]
    impl Bus {
        fn start() -> Bus {
            use std::io::BufRead;
            let dir = tempfile::tempdir().unwrap();
            let mut daemon = std::process::Command::new("dbus-daemon")
                .arg("--session")
                .arg("--nofork")
                .arg("--nopidfile")
                .arg("--print-address")
                .arg(format!(
                    "--address=unix:path={}",
                    dir.path().join("bus").display()
                ))
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("start dbus-daemon (package dbus; scripts/deps.sh installs it)");
            let mut address = String::new();
            std::io::BufReader::new(daemon.stdout.take().unwrap())
                .read_line(&mut address)
                .unwrap();
            let address = address.trim().to_string();
            assert!(!address.is_empty(), "dbus-daemon printed no address");
            Bus {
                daemon,
                address,
                _dir: dir,
            }
        }

        /// A connection that owns the watcher's name and says whether a
        /// host is registered.
        fn watcher(&self, host_registered: bool) -> zbus::blocking::Connection {
            zbus::blocking::connection::Builder::address(self.address.as_str())
                .unwrap()
                .name(WATCHER)
                .unwrap()
                .serve_at(
                    "/StatusNotifierWatcher",
                    FakeWatcher {
                        host: host_registered,
                    },
                )
                .unwrap()
                .build()
                .unwrap()
        }
    }

    #[cfg(target_os = "linux")]
    impl Drop for Bus {
        fn drop(&mut self) {
            let _ = self.daemon.kill();
            let _ = self.daemon.wait();
        }
    }

    #[cfg(target_os = "linux")]
    struct FakeWatcher {
        host: bool,
    }

    #[cfg(target_os = "linux")]
    #[zbus::interface(name = "org.kde.StatusNotifierWatcher")]
    impl FakeWatcher {
        #[zbus(property)]
        fn is_status_notifier_host_registered(&self) -> bool {
            self.host
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_tray_is_shown_only_while_a_watcher_with_a_host_is_on_the_bus() {
        let bus = Bus::start();
        let present = || host_present_on(Some(bus.address.clone()));
        assert!(!present(), "a bare session bus has no tray");

        let watcher = bus.watcher(true);
        assert!(present(), "a watcher with a host shows icons");
        watcher.release_name(WATCHER).unwrap();
        assert!(!present(), "the watcher left: no tray again");

        let _hostless = bus.watcher(false);
        assert!(!present(), "a watcher with no host shows nothing");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn no_session_bus_means_no_tray() {
        let dir = tempfile::tempdir().unwrap();
        let address = format!("unix:path={}", dir.path().join("no-bus").display());
        assert!(!host_present_on(Some(address)));
    }
}
