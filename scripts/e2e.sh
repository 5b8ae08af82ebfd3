#!/usr/bin/env bash
# Runs the end-to-end test (tests/e2e.rs) against the built app.
#
# Everything the test needs is started here and isolated in a temp dir: a
# virtual X screen (Xvfb), a private session D-Bus, the dunst notification
# daemon with a capture of every notification, and tauri-driver in front of
# WebKitWebDriver. XDG dirs and the app's data dir point into the temp dir, so
# the run touches nothing of the user's. Screenshots and, on failure, logs go
# to target/e2e/.
#
# Usage: scripts/e2e.sh            (after `make build`; `make e2e` does both)
#        scripts/e2e.sh --services  start and check the services only (no app needed)
# Env:   SHOPDESK_BIN   app binary (default target/debug/shopdesk)
#        CATALOG_CSV    catalog to import (default ../shared/data/shopify/apparel.csv)
#        KEEP_E2E_TMP=1 keep the temp dir for inspection

# Some functions are only reached through traps and `wait_until "$@"`.
# shellcheck disable=SC2317
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
native_driver="${NATIVE_WEBDRIVER:-/usr/bin/WebKitWebDriver}"

log() { printf 'e2e.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# A TCP port on 127.0.0.1 that nothing listens on (a connect attempt fails).
free_port() {
    local port
    for _ in $(seq 1 100); do
        port=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/${port}") 2>/dev/null; then
            printf '%s\n' "$port"
            return 0
        fi
    done
    return 1
}

# Polls a command for up to $1 seconds (tenths of a second granularity).
wait_until() {
    local seconds=$1
    shift
    local i
    for ((i = 0; i < seconds * 10; i++)); do
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

gone() { ! kill -0 "$1" 2>/dev/null; }

# Stops a process group started with setsid (its pid is the group id).
stop_group() {
    local pid=$1
    kill -TERM -- "-${pid}" 2>/dev/null || true
    wait_until 5 gone "$pid" || kill -KILL -- "-${pid}" 2>/dev/null || true
}

# Whether something owns the desktop notification service on the session bus.
notifications_owned() {
    dbus-send --session --print-reply --dest=org.freedesktop.DBus \
        /org/freedesktop/DBus org.freedesktop.DBus.NameHasOwner \
        string:org.freedesktop.Notifications | grep -q 'boolean true'
}

# ---------------------------------------------------------------- inner part
# Runs inside xvfb-run + dbus-run-session: DISPLAY and the session bus are
# private to this run.
started=()
cleanup_inner() {
    local pid
    for pid in "${started[@]}"; do
        stop_group "$pid"
    done
}

inner() {
    trap cleanup_inner EXIT

    log "display ${DISPLAY}, session bus ${DBUS_SESSION_BUS_ADDRESS}"

    # Every call to the notification service, as dbus-monitor prints it (it
    # flushes after each message, so the test can read the file while it grows).
    setsid dbus-monitor --session "interface='org.freedesktop.Notifications'" \
        >"$NOTIFY_LOG" 2>"${E2E_TMP}/dbus-monitor.err" &
    started+=("$!")

    # dunst owns org.freedesktop.Notifications; -print also logs what it shows.
    setsid dunst -print >"${E2E_TMP}/dunst.log" 2>&1 &
    started+=("$!")
    wait_until 10 notifications_owned \
        || die "no notification daemon on the session bus (see ${E2E_TMP}/dunst.log)"

    # Probe: a notification sent now must reach the capture, or the test's
    # notification check would fail for reasons unrelated to the app.
    if command -v gdbus >/dev/null 2>&1; then
        gdbus call --session --dest org.freedesktop.Notifications \
            --object-path /org/freedesktop/Notifications \
            --method org.freedesktop.Notifications.Notify \
            shopdesk-e2e 0 '' 'e2e probe' 'notification capture works' '[]' '{}' 1000 >/dev/null \
            || die "could not send a probe notification"
        wait_until 10 grep -q 'notification capture works' "$NOTIFY_LOG" \
            || die "the probe notification did not reach ${NOTIFY_LOG}"
        log "notification capture works"
    fi

    local port native_port
    port="$(free_port)" || die "no free port for tauri-driver"
    native_port="$(free_port)" || die "no free port for WebKitWebDriver"
    while [[ "$native_port" == "$port" ]]; do
        native_port="$(free_port)" || die "no free port for WebKitWebDriver"
    done
    export WEBDRIVER_URL="http://127.0.0.1:${port}"

    # The app is started by WebKitWebDriver, itself started by tauri-driver:
    # it inherits this environment (SHOPDESK_DATA_DIR, XDG_*, DISPLAY, bus).
    setsid tauri-driver --port "$port" --native-port "$native_port" \
        --native-driver "$native_driver" >"${E2E_TMP}/tauri-driver.log" 2>&1 &
    local driver_pid=$!
    started+=("$driver_pid")
    if ! wait_until 30 curl -sf "${WEBDRIVER_URL}/status"; then
        gone "$driver_pid" && log "tauri-driver exited"
        die "tauri-driver did not answer on ${WEBDRIVER_URL} (see ${E2E_TMP}/tauri-driver.log)"
    fi
    log "tauri-driver ready on ${WEBDRIVER_URL} (native driver on port ${native_port})"

    if [[ "${E2E_SERVICES_ONLY:-0}" == 1 ]]; then
        curl -sf "${WEBDRIVER_URL}/status" >"${E2E_ARTIFACTS_DIR}/webdriver-status.json"
        import -window root "${E2E_ARTIFACTS_DIR}/screenshot.png"
        log "services check passed"
        return 0
    fi

    local rc=0
    (cd "$repo_root" && cargo test -p shopdesk-tests --test e2e -- --nocapture --test-threads=1) || rc=$?

    import -window root "${E2E_ARTIFACTS_DIR}/screenshot.png" \
        || log "warning: could not take the final screenshot"
    return "$rc"
}

if [[ "${1:-}" == "--inner" ]]; then
    inner
    exit
fi

# ---------------------------------------------------------------- outer part
export E2E_SERVICES_ONLY=0
if [[ "${1:-}" == "--services" ]]; then
    E2E_SERVICES_ONLY=1
fi

for tool in xvfb-run dbus-run-session dbus-monitor dbus-send dunst tauri-driver curl import; do
    command -v "$tool" >/dev/null 2>&1 || die "'${tool}' is missing: run 'make deps' first"
done
[[ -x "$native_driver" ]] || die "${native_driver} is missing: run 'make deps' (package webkit2gtk-driver)"

SHOPDESK_BIN="${SHOPDESK_BIN:-${repo_root}/target/debug/shopdesk}"
if [[ "$E2E_SERVICES_ONLY" == 0 ]]; then
    [[ -x "$SHOPDESK_BIN" ]] || die "${SHOPDESK_BIN} is not built: run 'make build' first"
    SHOPDESK_BIN="$(realpath "$SHOPDESK_BIN")"
fi

CATALOG_CSV="${CATALOG_CSV:-${repo_root}/../shared/data/shopify/apparel.csv}"
[[ -f "$CATALOG_CSV" ]] || die "catalog ${CATALOG_CSV} not found (shared/ is expected beside the repo)"
CATALOG_CSV="$(realpath "$CATALOG_CSV")"

E2E_ARTIFACTS_DIR="${repo_root}/target/e2e"
mkdir -p "$E2E_ARTIFACTS_DIR"
rm -rf "${E2E_ARTIFACTS_DIR:?}/"*.png "${E2E_ARTIFACTS_DIR:?}/"*.html "${E2E_ARTIFACTS_DIR:?}/logs"

# Build the test before starting the desktop session, so compile time does
# not count against any wait inside it.
if [[ "$E2E_SERVICES_ONLY" == 0 ]]; then
    log "building the end-to-end test"
    (cd "$repo_root" && cargo test -p shopdesk-tests --test e2e --no-run)
fi

# The desktop's document portal, started on demand by the session bus, can
# leave its FUSE mount under XDG_RUNTIME_DIR for a moment after the bus ends:
# unmount it and try again, and never let tidying up fail the run.
remove_tmp() {
    local mnt
    for _ in 1 2 3 4 5; do
        while read -r mnt; do
            fusermount3 -uz "$mnt" 2>/dev/null || fusermount -uz "$mnt" 2>/dev/null \
                || umount -l "$mnt" 2>/dev/null || true
        done < <(awk -v dir="$E2E_TMP" 'index($2, dir) == 1 { print $2 }' /proc/mounts)
        rm -rf "$E2E_TMP" 2>/dev/null && return 0
        sleep 1
    done
    log "warning: could not remove ${E2E_TMP}"
}

E2E_TMP="$(mktemp -d "${TMPDIR:-/tmp}/shopdesk-e2e.XXXXXX")"
rc=0
cleanup() {
    if [[ "$rc" != 0 ]]; then
        mkdir -p "${E2E_ARTIFACTS_DIR}/logs"
        cp "${E2E_TMP}"/*.log "${E2E_TMP}"/*.err "${E2E_ARTIFACTS_DIR}/logs/" 2>/dev/null || true
        if [[ -d "${E2E_TMP}/data/logs" ]]; then
            cp -r "${E2E_TMP}/data/logs" "${E2E_ARTIFACTS_DIR}/logs/app" 2>/dev/null || true
        fi
        log "logs copied to ${E2E_ARTIFACTS_DIR}/logs"
    fi
    if [[ "${KEEP_E2E_TMP:-}" == 1 ]]; then
        log "kept ${E2E_TMP}"
    else
        remove_tmp
    fi
}
trap cleanup EXIT

mkdir -p "${E2E_TMP}"/{data,cache,config,runtime}
chmod 0700 "${E2E_TMP}/runtime"
export XDG_DATA_HOME="${E2E_TMP}/data-home" XDG_CACHE_HOME="${E2E_TMP}/cache" \
    XDG_CONFIG_HOME="${E2E_TMP}/config" XDG_RUNTIME_DIR="${E2E_TMP}/runtime"
mkdir -p "$XDG_DATA_HOME"
export SHOPDESK_E2E_DATA_DIR="${E2E_TMP}/data"
export SHOPDESK_DATA_DIR="$SHOPDESK_E2E_DATA_DIR"
export NOTIFY_LOG="${E2E_TMP}/notifications.log"
export SHOPDESK_BIN CATALOG_CSV E2E_ARTIFACTS_DIR E2E_TMP
# WebDriver needs no accessibility bus; silence its warnings.
export NO_AT_BRIDGE=1

log "app ${SHOPDESK_BIN}"
log "catalog ${CATALOG_CSV}"
log "temp dir ${E2E_TMP}"
start=$SECONDS
xvfb-run -a -s "-screen 0 1280x800x24" \
    dbus-run-session -- "${repo_root}/scripts/e2e.sh" --inner || rc=$?
log "finished in $((SECONDS - start)) s with status ${rc}; screenshots in ${E2E_ARTIFACTS_DIR}"
exit "$rc"
