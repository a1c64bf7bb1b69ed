#!/usr/bin/env bash
# Real tus clients against the real ferry binary, on a fresh machine or an old one:
# installs what is missing (Node's tus-js-client from the lockfile, tuspy from PyPI at a
# pinned version), builds ferry, then runs tests/tus-clients/ with node's test runner
# (the tuspy cases drive tuspy_upload.py). Each test file starts its own ferry on a free
# port with its data in a temporary folder.
# Usage: scripts/test-tus-clients.sh [extra node --test args]
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$HOME/.local/bin:$PATH"

# Node 20 or later and npm.
node_major() { node -e 'process.stdout.write(process.versions.node.split(".")[0])' 2>/dev/null || echo 0; }
if ! need node || ! need npm || [ "$(node_major)" -lt 20 ]; then
    echo "scripts/test-tus-clients.sh: installing nodejs and npm" >&2
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
    if [ "$(node_major)" -lt 20 ]; then
        echo "scripts/test-tus-clients.sh: Node 20 or later is needed, found $(node --version)" >&2
        exit 1
    fi
fi

# tus-js-client, exactly as locked.
locked_matches() {
    (cd tests/tus-clients && node -e '
        const want = require("./package-lock.json").packages["node_modules/tus-js-client"].version;
        const have = require("./node_modules/tus-js-client/package.json").version;
        process.exit(want === have ? 0 : 1);' 2>/dev/null)
}
if ! locked_matches; then
    echo "scripts/test-tus-clients.sh: npm ci in tests/tus-clients" >&2
    (cd tests/tus-clients && npm ci --no-audit --no-fund --loglevel=error)
fi

# tuspy, pinned.
TUSPY_VERSION=1.1.0
export PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c "import importlib.metadata as m; assert m.version('tuspy') == '$TUSPY_VERSION'" 2>/dev/null; then
    echo "scripts/test-tus-clients.sh: installing tuspy==$TUSPY_VERSION" >&2
    "$PYTHON" -m pip install --quiet --disable-pip-version-check "tuspy==$TUSPY_VERSION"
    if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
fi

# The real binary the tests start.
cargo build --locked --bin ferry --quiet
export FERRY_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/ferry"

node --test "$@" tests/tus-clients/
