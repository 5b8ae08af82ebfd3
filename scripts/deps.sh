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
# Fault tests: a real Secret Service (the OS keyring of a Linux desktop) on
# a private bus. Installed without its recommended packages, which would add
# a PAM module starting a keyring at every login on this machine.
bare_packages=(gnome-keyring)
command -v node >/dev/null 2>&1 || packages+=(nodejs)
command -v npm >/dev/null 2>&1 || packages+=(npm)

if [[ "$(id -u)" == 0 ]]; then
    sudo=()
else
    command -v sudo >/dev/null 2>&1 || die "not root and no sudo: run as root"
    sudo=(sudo)
fi

installed() { dpkg -s "$1" 2>/dev/null | grep -q '^Status: install ok installed'; }
missing=()
for p in "${packages[@]}"; do
    installed "$p" || missing+=("$p")
done
missing_bare=()
for p in "${bare_packages[@]}"; do
    installed "$p" || missing_bare+=("$p")
done
if ((${#missing[@]} + ${#missing_bare[@]})); then
    command -v apt-get >/dev/null 2>&1 ||
        die "apt-get not found; install by hand: ${missing[*]} ${missing_bare[*]}"
    log "installing ${missing[*]} ${missing_bare[*]}"
    "${sudo[@]}" apt-get update
    if ((${#missing[@]})); then
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
    fi
    if ((${#missing_bare[@]})); then
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y --no-install-recommends "${missing_bare[@]}"
    fi
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
