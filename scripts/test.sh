#!/usr/bin/env bash
# The whole test suite, on a fresh machine or an old one: installs what the tests need
# when it is missing (redis-server, the s3s-fs and moto S3 servers, the example worker's
# Python packages), then runs every test. Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! need cargo; then
    echo "scripts/test.sh: cargo is missing; install the Rust toolchain (https://rustup.rs) first" >&2
    exit 1
fi
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$HOME/.local/bin:$PATH"

# A real Redis: the tests start their own redis-server processes on free ports (plain,
# TLS-only with certificates made by openssl, and a three-node cluster via redis-cli).
if ! need redis-server || ! need openssl; then
    echo "scripts/test.sh: installing redis-server and openssl" >&2
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server openssl >/dev/null
fi

# Two real S3-protocol servers: s3s-fs (fast, on disk; 0.14.1 is the last release that
# builds on rustc < 1.96) and moto (checks part ETags on completion).
if ! need s3s-fs; then
    echo "scripts/test.sh: installing s3s-fs 0.14.1 (a few minutes, once)" >&2
    cargo install s3s-fs --version 0.14.1 --features binary --locked --quiet
fi
# moto 5.2 answers ListParts under the wrong XML element, which the AWS SDK refuses.
MOTO_VERSION=5.1.22
if ! python3 -c "import moto.server, flask; assert moto.__version__ == '$MOTO_VERSION'" 2>/dev/null; then
    echo "scripts/test.sh: installing moto[server]==$MOTO_VERSION" >&2
    python3 -m pip install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
    if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
fi
# The example worker's packages: tests/api/worker.rs runs examples/worker.py for real.
if ! python3 -c "import redis, boto3" 2>/dev/null; then
    echo "scripts/test.sh: installing examples/requirements.txt (redis, boto3)" >&2
    python3 -m pip install --quiet --disable-pip-version-check -r examples/requirements.txt
fi

# Unit tests (domain rules, the shared SessionStore and ObjectStore contract suites on
# every backend, property tests) and the integration suite (the real application on port
# 0 over HTTP; Redis and S3 servers of its own; several instances at once; the real
# binary killed with -9 and SIGTERM).
cargo test --locked --all-targets "$@"

# The suites beyond cargo: each installs what it needs, then runs.
for suite in scripts/test-browser.sh scripts/test-tus-clients.sh scripts/test-manifests.sh scripts/test-cluster.sh; do
    if [ -x "$suite" ]; then
        echo "scripts/test.sh: running $suite" >&2
        "$suite"
    fi
done
