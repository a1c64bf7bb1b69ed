#!/usr/bin/env bash
# Direct vs relay: `ferry upload --transfer relay` (chunks through ferry) against
# `--transfer direct` (parts straight to the bucket on presigned URLs) on one machine: one
# release ferry with Redis sessions and an s3s-fs bucket, the same file, interleaved
# rounds. Prints, per round, the client's wall time and throughput, the CPU the ferry
# server spent, and the bytes that went through it; then the medians.
#
#   scripts/bench-direct.sh [MiB] [rounds] [parallel]     (defaults: 512 3 4)
#
# Needs redis-server and s3s-fs (scripts/test.sh installs both); builds ferry (release).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MIB=${1:-512} ROUNDS=${2:-3} PARALLEL=${3:-4}
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
cargo build --release --quiet --bin ferry --manifest-path "$ROOT/Cargo.toml"
FERRY=${CARGO_TARGET_DIR:-$ROOT/target}/release/ferry
WORK=$(mktemp -d)
PIDS=()
cleanup() { kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

REDIS_PORT=$(port) S3_PORT=$(port) FERRY_PORT=$(port)
redis-server --port "$REDIS_PORT" --save '' --appendonly no >"$WORK/redis.log" 2>&1 & PIDS+=($!)
mkdir -p "$WORK/s3/bench"
s3s-fs --host 127.0.0.1 --port "$S3_PORT" --access-key bench --secret-key bench-secret "$WORK/s3" >"$WORK/s3.log" 2>&1 & PIDS+=($!)
FERRY__SERVER__LISTEN=127.0.0.1:$FERRY_PORT FERRY__SESSIONS__BACKEND=redis \
  FERRY__SESSIONS__REDIS__URL=redis://127.0.0.1:$REDIS_PORT FERRY__AUTH__SECRET=bench-secret-bench-secret-bench \
  FERRY__STORAGE__BACKEND=s3 FERRY__STORAGE__S3__BUCKET=bench FERRY__STORAGE__S3__ENDPOINT=http://127.0.0.1:$S3_PORT \
  FERRY__STORAGE__S3__ACCESS_KEY_ID=bench FERRY__STORAGE__S3__SECRET_ACCESS_KEY=bench-secret \
  FERRY__UPLOADS__DEFAULT_CHUNK_SIZE=8388608 FERRY__UPLOADS__MAX_FILE_SIZE=68719476736 \
  "$FERRY" serve >"$WORK/ferry.log" 2>&1 & FERRY_PID=$!; PIDS+=($FERRY_PID)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$FERRY_PORT/readyz" >/dev/null && break; sleep 0.1; done
head -c $((MIB * 1048576)) /dev/urandom >"$WORK/file.bin"
cpu() { awk '{print $14 + $15}' "/proc/$FERRY_PID/stat"; }
relayed() { curl -s "http://127.0.0.1:$FERRY_PORT/metrics" | awk '/^ferry_bytes_received_total /{print $2}'; }
TICKS=$(getconf CLK_TCK)
echo "transfer round seconds MiB/s server_cpu_s MiB_through_ferry"
for round in $(seq "$ROUNDS"); do
  for transfer in relay direct; do
    c0=$(cpu) b0=$(relayed) t0=$(date +%s.%N)
    FERRY_STATE_DIR=$WORK/state "$FERRY" upload "$WORK/file.bin" --server "http://127.0.0.1:$FERRY_PORT" \
      --transfer "$transfer" --parallel "$PARALLEL" --chunk-size 8388608 --no-checksum >/dev/null 2>"$WORK/client.log"
    t1=$(date +%s.%N) c1=$(cpu) b1=$(relayed)
    awk -v t="$transfer" -v r="$round" -v t0="$t0" -v t1="$t1" -v m="$MIB" -v c="$(( c1 - c0 ))" \
      -v k="$TICKS" -v b0="$b0" -v b1="$b1" \
      'BEGIN { s = t1 - t0; printf "%s %d %.2f %.1f %.2f %.0f\n", t, r, s, m / s, c / k, (b1 - b0) / 1048576 }'
  done
done | tee "$WORK/rounds.txt"
echo "medians:"
for transfer in relay direct; do
  grep "^$transfer " "$WORK/rounds.txt" | sort -k3 -n | awk -v n="$ROUNDS" '{ a[NR] = $0 } END { print a[int((n + 1) / 2)] }'
done
