#!/usr/bin/env bash
# Starts the built app. On a machine without a display (no $DISPLAY or
# $WAYLAND_DISPLAY) it runs on a virtual X screen (Xvfb) instead, with a
# private session bus if there is none, so it still starts and works.
# Arguments are passed to the app.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
app="${SHOPDESK_BIN:-${repo_root}/target/debug/shopdesk}"
[[ -x "$app" ]] || { echo "run.sh: ${app} is not built: run 'make build'" >&2; exit 1; }

if [[ -n "${DISPLAY:-}" || -n "${WAYLAND_DISPLAY:-}" ]]; then
    exec "$app" "$@"
fi

echo "run.sh: no display found (DISPLAY and WAYLAND_DISPLAY are unset):" \
    "running ShopDesk on a virtual screen with xvfb-run (1280x800)." >&2
with_bus=()
if [[ -z "${DBUS_SESSION_BUS_ADDRESS:-}" ]] && command -v dbus-run-session >/dev/null 2>&1; then
    with_bus=(dbus-run-session --)
fi
# shellcheck disable=SC2016 # expanded by the inner shell
exec xvfb-run -a -s "-screen 0 1280x800x24" "${with_bus[@]}" \
    bash -c 'echo "run.sh: virtual display ${DISPLAY}; to see it:" \
        "DISPLAY=${DISPLAY} XAUTHORITY=${XAUTHORITY} import -window root shot.png" >&2
        exec "$@"' run.sh "$app" "$@"
