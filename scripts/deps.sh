#!/usr/bin/env bash
# Installs what building, running and testing ShopDesk needs on Debian 12 /
# Ubuntu: system packages (only the missing ones, so a second run is quick
# and needs no network), Node/npm, and tauri-driver. Rust itself is expected
# to be installed with rustup already.
set -euo pipefail

log() { printf 'deps: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Build: compiler, pkg-config and the WebKitGTK/OpenSSL headers.
# Run: the tray's appindicator library, Mesa's software GL (WebKit aborts
# without it), Xvfb + xauth for headless machines, D-Bus and a notification
# daemon. End-to-end: WebKitWebDriver, screenshots (imagemagick), xdotool.
packages=(
    build-essential pkg-config libwebkit2gtk-4.1-dev libssl-dev
    libayatana-appindicator3-1 libgl1-mesa-dri
    xvfb xauth dbus dbus-x11 dunst
    webkit2gtk-driver imagemagick xdotool curl
)
command -v node >/dev/null 2>&1 || packages+=(nodejs)
command -v npm >/dev/null 2>&1 || packages+=(npm)

if [[ "$(id -u)" == 0 ]]; then
    sudo=()
else
    command -v sudo >/dev/null 2>&1 || die "not root and no sudo: run as root"
    sudo=(sudo)
fi

missing=()
for p in "${packages[@]}"; do
    if ! dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed'; then
        missing+=("$p")
    fi
done
if ((${#missing[@]})); then
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install by hand: ${missing[*]}"
    log "installing ${missing[*]}"
    "${sudo[@]}" apt-get update
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
else
    log "system packages present"
fi

if ! command -v cargo >/dev/null 2>&1; then
    die "cargo not found. Install Rust with rustup (https://rustup.rs), then open a new \
shell or run: . \"\$HOME/.cargo/env\""
fi
# make test runs rustfmt and clippy.
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    command -v rustup >/dev/null 2>&1 || die "cargo fmt / cargo clippy missing and no rustup to add them"
    log "adding rustfmt and clippy"
    rustup component add rustfmt clippy
fi

# tauri-driver 3.x on crates.io is an alpha: stay on 2.x.
if ! command -v tauri-driver >/dev/null 2>&1; then
    log "installing tauri-driver 2"
    cargo install tauri-driver --version '^2' --locked
fi
log "ok"
