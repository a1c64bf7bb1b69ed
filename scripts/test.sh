#!/usr/bin/env bash
# The whole test suite, on a fresh machine or an old one: installs what the tests need
# when it is missing, then runs every test. Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }

if ! need cargo; then
    echo "scripts/test.sh: cargo is missing; install the Rust toolchain (https://rustup.rs) first" >&2
    exit 1
fi

# Unit tests (domain rules, the shared SessionStore and ObjectStore contract suites on the
# embedded and filesystem backends, property tests) and the integration suite (the real
# application on port 0 over HTTP, and the real binary killed with -9 and SIGTERM).
cargo test --locked --all-targets "$@"
