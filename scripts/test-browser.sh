#!/usr/bin/env bash
# The browser suite, on a fresh machine or an old one: installs what it needs when it is
# missing (Node packages from the lockfile, Debian's Chromium), builds ferry, then runs the
# client module's unit tests (MD5 vectors, upload() against the real binary), the
# end-to-end tests in headless Chromium, and Uppy's tus plugin uploading to ferry from
# another origin. Nothing downloads a browser of its own: playwright-core drives the
# system Chromium through its executablePath.
# Usage: scripts/test-browser.sh [extra node --test args]
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() {
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

# Node 20 or later (node --test, fetch, File) and npm.
node_major() { node -e 'process.stdout.write(process.versions.node.split(".")[0])' 2>/dev/null || echo 0; }
if ! need node || ! need npm || [ "$(node_major)" -lt 20 ]; then
    echo "scripts/test-browser.sh: installing nodejs and npm" >&2
    apt_install nodejs npm
    if [ "$(node_major)" -lt 20 ]; then
        echo "scripts/test-browser.sh: Node 20 or later is needed, found $(node --version)" >&2
        exit 1
    fi
fi

# Chromium from Debian; $CHROMIUM_PATH points at another one.
if [ -z "${CHROMIUM_PATH:-}" ] && ! need chromium && ! need chromium-headless-shell; then
    echo "scripts/test-browser.sh: installing chromium" >&2
    apt_install chromium
fi

# playwright-core (it never downloads browsers), Uppy (@uppy/core, @uppy/tus) and esbuild,
# which bundles Uppy for the test page, exactly as locked.
locked_matches() {
    (cd tests/browser && node -e '
        const lock = require("./package-lock.json").packages;
        for (const name of ["playwright-core", "@uppy/core", "@uppy/tus", "esbuild"]) {
            const have = require(`./node_modules/${name}/package.json`).version;
            if (lock[`node_modules/${name}`].version !== have) process.exit(1);
        }' 2>/dev/null)
}
if ! locked_matches; then
    echo "scripts/test-browser.sh: npm ci in tests/browser" >&2
    (cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
fi

# The real binary the tests start.
cargo build --locked --bin ferry --quiet
export FERRY_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/ferry"

node --test "$@" tests/browser/
