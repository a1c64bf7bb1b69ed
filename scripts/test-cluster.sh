#!/usr/bin/env bash
# The cluster test: starts scripts/cluster.sh's loopback cluster (three ferry processes
# behind a real nginx, Redis, s3s-fs) and runs tests/cluster/cluster_test.py against it:
#   - a 40 MiB single request is refused with 413 by nginx (the wall is real);
#   - 20 concurrent uploads of 32 MiB through the balancer, zero failures;
#   - a SIGTERM drains an instance: /readyz 503 at once, the chunk in flight finishes;
#   - a 300 MiB `ferry upload` through the balancer while instance 1 is killed with -9
#     and instance 2 is restarted with SIGTERM; the object in S3 is byte-identical;
#   - the compose file's healthcheck command against a live instance;
#   - real tus clients through the balancer: tus-js-client through a kill -9 of
#     instance 1 mid-PATCH, and tuspy; both objects byte-identical (needs node,
#     tus-js-client and tuspy, which scripts/test-tus-clients.sh installs; else skipped).
# Stops everything at the end, pass or fail. A few minutes on 2 cores, most of it the
# release build when it is not there yet.
# Usage: scripts/test-cluster.sh [wall] [healthcheck] [concurrent] [drain] [rolling] [tus]
#        (default: all of them)
set -euo pipefail
cd "$(dirname "$0")/.."

export CLUSTER_DIR=${CLUSTER_DIR:-$PWD/target/cluster-test}
TEST_TIMEOUT=${CLUSTER_TEST_TIMEOUT_SECS:-900}

say() { echo "test-cluster: $*" >&2; }

cleanup() {
    local rc=$?
    if [ "$rc" != 0 ] && [ -d "$CLUSTER_DIR/logs" ]; then
        say "failed ($rc): the last lines of each log ($CLUSTER_DIR/logs)"
        for log in "$CLUSTER_DIR"/logs/*.log; do
            echo "---- $log" >&2
            tail -n 15 "$log" >&2 || true
        done
    fi
    scripts/cluster.sh stop >/dev/null 2>&1 || say "could not stop the cluster in $CLUSTER_DIR"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start=$SECONDS
scripts/cluster.sh start
say "cluster up in $((SECONDS - start))s"
scripts/cluster.sh status >&2

timeout --kill-after=10 "$TEST_TIMEOUT" python3 tests/cluster/cluster_test.py "$@"

scripts/cluster.sh status >&2
scripts/cluster.sh stop >/dev/null
# Passed: drop the bytes (stored objects, the 300 MiB file), keep the logs.
rm -rf "$CLUSTER_DIR/s3" "$CLUSTER_DIR/work" "$CLUSTER_DIR/redis"
say "done in $((SECONDS - start))s"
