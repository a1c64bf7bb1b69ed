#!/usr/bin/env bash
# The fault matrix as a soak: many randomized runs of three ferry binaries on Redis and
# S3 under faults (tests/api/fault_matrix), then a summary table for BENCHMARKS.md.
# Usage: scripts/soak.sh [RUNS]   (default 50; about 20-30 s a run)
# FAULT_SEED (the first seed; default from the clock), FAULT_UPLOADS (per run, default 8
# here) and FAULT_PHASE_SECS (the fault phase, default 8 here) pass through. Exits non-zero if any run lost an upload
# or broke a promise; each such run is listed with its seed and the command that replays it
# (FAULT_UPLOADS and FAULT_PHASE_SECS must be the soak's: they decide the run's uploads):
# FAULT_SEED=<seed> FAULT_UPLOADS=8 FAULT_PHASE_SECS=8 cargo test --test api fault_matrix::uploads_through -- --nocapture
# A failed run keeps its instances' logs and the S3 proxy's journal (s3-faults.log); the
# test output names the folder.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$HOME/.local/bin:$PATH"

runs=${1:-50}
export FAULT_UPLOADS=${FAULT_UPLOADS:-8} FAULT_PHASE_SECS=${FAULT_PHASE_SECS:-8}
log=$(mktemp -t ferry-soak-XXXXXX.log)
echo "scripts/soak.sh: building" >&2
cargo test --locked --test api --no-run --quiet
echo "scripts/soak.sh: $runs runs; per-run lines in $log" >&2
status=0
FAULT_RUNS=$runs cargo test --locked --quiet --test api fault_matrix::uploads_through -- --nocapture --test-threads 1 \
    2>&1 | tee "$log" | grep --line-buffered -E '^FAULT-(RUN|VIOLATION)' || true
grep -q '^test result: ok' "$log" || status=1

# Sum every name=value figure of the FAULT-RUN lines.
awk -v day="$(date +%F)" -v uploads="$FAULT_UPLOADS" -v phase="$FAULT_PHASE_SECS" '
/^FAULT-RUN / {
    runs++
    for (i = 2; i <= NF; i++) {
        split($i, kv, "=")
        if (kv[1] == "seed") { seeds = seeds (seeds ? " " : "") kv[2]; continue }
        sum[kv[1]] += kv[2]
    }
}
/^FAULT-VIOLATION / { violations++; split($2, kv, "="); bad[kv[2]] = 1 }
END {
    printf "\n### Fault matrix soak (%s)\n\n", day
    printf "| runs | uploads | completed | verified | canceled | lost | stuck completing | violations | seconds |\n"
    printf "|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    printf "| %d | %d | %d | %d | %d | %d | %d | %d | %.0f |\n\n", runs, sum["uploads"], sum["completed"],
        sum["verified"], sum["canceled"], sum["lost"], sum["stuck-completing"], violations, sum["secs"]
    printf "| fault | injected |\n|---|---:|\n"
    n = split("kill-mid-chunk kill-mid-assembly kill-mid-assembly-s3-finished redis-restart s3-500 s3-503 s3-reset s3-reset-mid-body s3-answer-lost s3-delay cut-body corrupt-race cancel walked-away", kinds, " ")
    for (i = 1; i <= n; i++) printf "| %s | %d |\n", kinds[i], sum[kinds[i]]
    printf "\nClient side: %d retries after no answer, %d after 503, %d after other 5xx; %d uploads resumed after the faults.\n",
        sum["answers-none"], sum["answers-503"], sum["answers-500"], sum["resumed"]
    printf "Server side: %d records left `completing` by the faults, %d of them stuck; %d orphan part files in s3s-fs (a part of a killed instance that landed after its upload was completed or aborted; no S3 call removes them).\n",
        sum["left-completing"], sum["stuck-completing"], sum["orphan-parts"]
    printf "Seeds: %s\n", seeds
    if (violations) {
        printf "Runs with violations:"; for (k in bad) printf " %s", k; printf "\n"
        printf "Replay one with: FAULT_SEED=<seed> FAULT_UPLOADS=%s FAULT_PHASE_SECS=%s cargo test --test api fault_matrix::uploads_through -- --nocapture\n", uploads, phase
    }
}' "$log"
exit $status
