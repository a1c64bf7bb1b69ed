#!/usr/bin/env bash
# A ferry cluster on one machine, loopback only: three `ferry serve` processes behind a
# real nginx (round-robin, no stickiness, 32 MiB body limit, request bodies streamed
# unbuffered), sharing one redis-server (append-only file) and one S3 server (s3s-fs).
# The cluster test (scripts/test-cluster.sh) drives it; it is also handy by hand.
#
#   scripts/cluster.sh start        build ferry (release), start everything, wait until ready
#   scripts/cluster.sh stop         stop everything this cluster started
#   scripts/cluster.sh status       processes, ports, readiness, memory (VmRSS / VmHWM)
#   scripts/cluster.sh env          the state file: ports, URLs, credentials (shell syntax)
#   scripts/cluster.sh kill N       SIGKILL instance N (1..3)
#   scripts/cluster.sh term N       SIGTERM instance N and wait until it has drained and exited
#   scripts/cluster.sh up N         start instance N again (same port) and wait until ready
#   scripts/cluster.sh restart N    term N, then up N: one step of a rolling restart
#
# Settings (environment):
#   CLUSTER_DIR          state folder: pids, logs, data, generated configs (target/cluster)
#   CLUSTER_BUILD=0      do not run `cargo build --release --bin ferry` at start
#   FERRY_BIN            the ferry binary (${CARGO_TARGET_DIR:-target}/release/ferry)
#   CLUSTER_DRAIN_DELAY_SECS, CLUSTER_SHUTDOWN_TIMEOUT_SECS   the instances' drain (2, 20)
#   CLUSTER_RUN_AS       uid (and gid) the instances run as when started by root, like the
#                        container image (10001); empty: as the caller
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CLUSTER_DIR=${CLUSTER_DIR:-$ROOT/target/cluster}
case "$CLUSTER_DIR" in /*) ;; *) CLUSTER_DIR=$PWD/$CLUSTER_DIR ;; esac
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR=$ROOT/$TARGET_DIR ;; esac
FERRY_BIN=${FERRY_BIN:-$TARGET_DIR/release/ferry}
RUN_AS=${CLUSTER_RUN_AS-10001}
DRAIN_DELAY=${CLUSTER_DRAIN_DELAY_SECS:-2}
SHUTDOWN_TIMEOUT=${CLUSTER_SHUTDOWN_TIMEOUT_SECS:-20}
INSTANCES=3
BUCKET=ferry-cluster
MARKER=.ferry-cluster
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH:/usr/sbin:/sbin"

say() { echo "cluster: $*" >&2; }
die() { echo "cluster: error: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

PIDS=$CLUSTER_DIR/pids
LOGS=$CLUSTER_DIR/logs
STATE=$CLUSTER_DIR/cluster.env

# ---- processes ---------------------------------------------------------------------

# The pid recorded for NAME, if that process is still alive and is still the program we
# started (its command line holds WHAT): never signal a recycled pid.
pid_of() {
    local name=$1 what=$2 pid
    [ -f "$PIDS/$name.pid" ] || return 1
    pid=$(cat "$PIDS/$name.pid")
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$what" || return 1
    # A zombie is not alive.
    [ "$(awk '/^State:/ {print $2}' "/proc/$pid/status" 2>/dev/null)" != Z ] || return 1
    echo "$pid"
}

# What the command line of NAME's process holds.
what_of() {
    case $1 in
        nginx) echo nginx ;;
        redis) echo redis-server ;;
        s3) echo s3s-fs ;;
        ferry-*) echo "$FERRY_BIN serve" ;;
    esac
}

# Whether the process recorded for NAME still lives (for the waits right after launch,
# when it may not have reached exec yet: no command line check).
running() {
    local pid
    pid=$(cat "$PIDS/$1.pid" 2>/dev/null) && [ -n "$pid" ] && [ -r "/proc/$pid/status" ] \
        && [ "$(awk '/^State:/ {print $2}' "/proc/$pid/status" 2>/dev/null)" != Z ]
}

# Starts "$@" in the background as NAME, output to logs/NAME.log, pid to pids/NAME.pid.
launch() {
    local name=$1; shift
    "$@" </dev/null >>"$LOGS/$name.log" 2>&1 &
    echo $! >"$PIDS/$name.pid"
}

# Sends SIG to NAME and waits up to SECS for it to exit; then SIGKILL. Returns 0 when it
# exited within SECS.
stop_one() {
    local name=$1 what=$2 sig=$3 secs=$4 pid i
    pid=$(pid_of "$name" "$what") || { rm -f "$PIDS/$name.pid"; return 0; }
    kill "-$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < secs * 10; i++)); do
        if ! pid_of "$name" "$what" >/dev/null; then
            rm -f "$PIDS/$name.pid"
            return 0
        fi
        sleep 0.1
    done
    say "$name (pid $pid) still runs after ${secs}s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do pid_of "$name" "$what" >/dev/null || break; sleep 0.1; done
    rm -f "$PIDS/$name.pid"
    return 1
}

# HTTP status of GET URL ("000" when nothing answers).
http_code() { curl -s -o /dev/null -m 2 -w '%{http_code}' "$1" 2>/dev/null || true; }

wait_http() {
    local url=$1 want=$2 secs=$3 name=$4 i code=000
    for ((i = 0; i < secs * 10; i++)); do
        code=$(http_code "$url")
        [ "$code" = "$want" ] && return 0
        running "$name" || { tail -n 30 "$LOGS/$name.log" >&2; die "$name exited at start (log: $LOGS/$name.log)"; }
        sleep 0.1
    done
    tail -n 30 "$LOGS/$name.log" >&2
    die "$name: $url answered $code, not $want, within ${secs}s (log: $LOGS/$name.log)"
}

wait_port() {
    local port=$1 secs=$2 name=$3 i
    for ((i = 0; i < secs * 10; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        running "$name" || { tail -n 30 "$LOGS/$name.log" >&2; die "$name exited at start (log: $LOGS/$name.log)"; }
        sleep 0.1
    done
    die "$name did not listen on 127.0.0.1:$port within ${secs}s (log: $LOGS/$name.log)"
}

load_state() {
    [ -f "$STATE" ] || die "no cluster in $CLUSTER_DIR (run: scripts/cluster.sh start)"
    # shellcheck disable=SC1090
    . "$STATE"
}

# ---- the pieces --------------------------------------------------------------------

install_missing() {
    if ! need nginx; then
        say "installing nginx (Debian package)"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null \
            || as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null
    fi
    if ! need redis-server; then
        say "installing redis-server (Debian package)"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
    fi
    if ! need curl; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl >/dev/null
    fi
    if ! need s3s-fs; then
        say "installing s3s-fs 0.14.1 (a few minutes, once)"
        cargo install s3s-fs --version 0.14.1 --features binary --locked --quiet
    fi
}

# N free loopback ports, distinct.
free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

ferry_env() {
    local n=$1 port_var="FERRY_PORT_$1"
    echo "FERRY__SERVER__LISTEN=127.0.0.1:${!port_var}"
    echo "FERRY__SERVER__WORKERS=2"
    echo "FERRY__SERVER__DRAIN_DELAY_SECS=$DRAIN_DELAY"
    echo "FERRY__SERVER__SHUTDOWN_TIMEOUT_SECS=$SHUTDOWN_TIMEOUT"
    echo "FERRY__STORAGE__BACKEND=s3"
    echo "FERRY__STORAGE__S3__BUCKET=$BUCKET"
    echo "FERRY__STORAGE__S3__ENDPOINT=http://127.0.0.1:$S3_PORT"
    echo "FERRY__STORAGE__S3__REGION=us-east-1"
    echo "FERRY__STORAGE__S3__ACCESS_KEY_ID=$S3_ACCESS_KEY"
    echo "FERRY__STORAGE__S3__SECRET_ACCESS_KEY=$S3_SECRET_KEY"
    echo "FERRY__SESSIONS__BACKEND=redis"
    echo "FERRY__SESSIONS__REDIS__URL=redis://127.0.0.1:$REDIS_PORT"
    echo "FERRY__AUTH__SECRET=$AUTH_SECRET"
    echo "FERRY__TELEMETRY__LOG_FORMAT=text"
    echo "FERRY__TELEMETRY__LOG_LEVEL=info"
    echo "NO_COLOR=1"
    # No home folder, as in the image: the AWS SDK finds no ~/.aws files to read.
    echo "HOME=/nonexistent"
}

start_instance() {
    local n=$1 port_var="FERRY_PORT_$1"
    if [ "$n" -lt 1 ] || [ "$n" -gt "$INSTANCES" ]; then die "no instance $n (1..$INSTANCES)"; fi
    if pid_of "ferry-$n" "$FERRY_BIN serve" >/dev/null; then die "instance $n already runs"; fi
    [ -x "$FERRY_BIN" ] || die "no ferry binary at $FERRY_BIN"
    echo "--- start $(date -u +%FT%TZ)" >>"$LOGS/ferry-$n.log"
    # Only the instance's own FERRY__ settings: none leak in from the caller's environment.
    local -a vars
    mapfile -t vars < <(ferry_env "$n")
    # As the container image runs it: user 10001 (when we are root), from a folder it
    # cannot write (/), so a write to the local disk in cloud mode would fail here too.
    local -a as_user=()
    if [ "$(id -u)" = 0 ] && [ -n "$RUN_AS" ]; then
        as_user=(setpriv "--reuid=$RUN_AS" "--regid=$RUN_AS" --clear-groups --)
    fi
    # shellcheck disable=SC2046
    (cd / && launch "ferry-$n" "${as_user[@]}" env -u FERRY_CONFIG \
        $(env | awk -F= '/^FERRY__/ {printf "-u %s ", $1}') "${vars[@]}" "$FERRY_BIN" serve)
    wait_http "http://127.0.0.1:${!port_var}/readyz" 200 30 "ferry-$n"
}

write_nginx_conf() {
    local dir=$CLUSTER_DIR/nginx n port_var
    mkdir -p "$dir/tmp"
    {
        cat <<EOF
# Generated by scripts/cluster.sh: the balancer of the local cluster.
worker_processes 2;
pid $dir/nginx.pid;
error_log $LOGS/nginx-error.log warn;

events {
    worker_connections 1024;
}

http {
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path       $dir/tmp/proxy;
    fastcgi_temp_path     $dir/tmp/fastcgi;
    uwsgi_temp_path       $dir/tmp/uwsgi;
    scgi_temp_path        $dir/tmp/scgi;

    # The client's X-Request-Id when it sent one, else nginx's own: ferry echoes it and
    # logs under it, so one id follows a request through the balancer and the instance.
    map \$http_x_request_id \$ferry_request_id {
        default \$http_x_request_id;
        ""      \$request_id;
    }
    log_format ferry '\$remote_addr "\$request" \$status \$request_length \$body_bytes_sent '
                     'rt=\$request_time upstream=\$upstream_addr ustatus=\$upstream_status '
                     'urt=\$upstream_response_time rid=\$ferry_request_id';
    access_log $LOGS/nginx-access.log ferry;

    # Round-robin (nginx's default), no ip_hash, hash or sticky cookie: every instance
    # serves every request of every upload, because the sessions live in Redis and the
    # bytes in S3. An instance that refuses a connection is skipped for 2 s.
    upstream ferry {
EOF
        for ((n = 1; n <= INSTANCES; n++)); do
            port_var="FERRY_PORT_$n"
            echo "        server 127.0.0.1:${!port_var} max_fails=1 fail_timeout=2s;"
        done
        cat <<EOF
    }

    server {
        listen 127.0.0.1:$NGINX_PORT;

        # The wall: one request carries at most 32 MiB (a chunk is at most 30 MiB).
        client_max_body_size 32m;
        client_body_timeout  60s;

        location / {
            proxy_pass http://ferry;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            # The Host the client sent, port included (\$host drops the port): ferry builds
            # the tus upload URL (Location) from it, and without the port that URL sends the
            # client's HEAD and PATCH requests to port 80.
            proxy_set_header Host \$http_host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Request-Id \$ferry_request_id;

            # Stream chunk bodies to ferry as they arrive: no 32 MiB spool per request on
            # the balancer's disk, and ferry hashes and forwards while the client sends.
            proxy_request_buffering off;

            proxy_connect_timeout 2s;
            proxy_send_timeout    120s;
            # The request that sends the last chunk waits for the object's assembly.
            proxy_read_timeout    300s;

            # A connection refused or reset before the request went out (an instance
            # killed, or draining with its listener closed) is tried on the next instance.
            # Once nginx has begun to stream an unbuffered body it cannot replay it, so a
            # chunk cut mid-body comes back as 502 and the client sends it again (chunks
            # are idempotent). No http_503: ferry's 503s mean Redis or S3 is down, which
            # another instance would say too. No non_idempotent: a POST that reached an
            # instance is never sent twice.
            proxy_next_upstream error timeout;
            proxy_next_upstream_tries 3;
            proxy_next_upstream_timeout 10s;
        }
    }
}
EOF
    } >"$dir/nginx.conf"
}

nginx_cmd() { echo nginx -p "$CLUSTER_DIR/nginx" -e "$LOGS/nginx-error.log" -c "$CLUSTER_DIR/nginx/nginx.conf"; }

# ---- commands ----------------------------------------------------------------------

cmd_start() {
    if [ -f "$STATE" ]; then
        load_state
        for name in nginx redis s3 ferry-1 ferry-2 ferry-3; do
            if pid_of "$name" "$(what_of "$name")" >/dev/null; then
                die "a cluster runs in $CLUSTER_DIR ($name); run scripts/cluster.sh stop first"
            fi
        done
    fi
    install_missing
    if [ "${CLUSTER_BUILD:-1}" != 0 ]; then
        say "building ferry (release)"
        (cd "$ROOT" && cargo build --release --locked --bin ferry --quiet)
    fi
    [ -x "$FERRY_BIN" ] || die "no ferry binary at $FERRY_BIN"

    if [ -e "$CLUSTER_DIR" ] && [ ! -f "$CLUSTER_DIR/$MARKER" ]; then
        die "$CLUSTER_DIR exists and is not a cluster folder; refusing to clear it"
    fi
    rm -rf "$CLUSTER_DIR"
    mkdir -p "$PIDS" "$LOGS" "$CLUSTER_DIR/redis" "$CLUSTER_DIR/s3/$BUCKET"
    touch "$CLUSTER_DIR/$MARKER"

    local ports
    read -r -a ports <<<"$(free_ports 6)"
    NGINX_PORT=${ports[0]} REDIS_PORT=${ports[1]} S3_PORT=${ports[2]}
    FERRY_PORT_1=${ports[3]} FERRY_PORT_2=${ports[4]} FERRY_PORT_3=${ports[5]}
    S3_ACCESS_KEY=ferry-cluster-key
    S3_SECRET_KEY=ferry-cluster-secret
    AUTH_SECRET=cluster-secret-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
    cat >"$STATE" <<EOF
# Written by scripts/cluster.sh start; source it.
CLUSTER_DIR=$CLUSTER_DIR
FERRY_BIN=$FERRY_BIN
INSTANCES=$INSTANCES
BALANCER_URL=http://127.0.0.1:$NGINX_PORT
NGINX_PORT=$NGINX_PORT
FERRY_PORT_1=$FERRY_PORT_1
FERRY_PORT_2=$FERRY_PORT_2
FERRY_PORT_3=$FERRY_PORT_3
REDIS_PORT=$REDIS_PORT
REDIS_URL=redis://127.0.0.1:$REDIS_PORT
S3_PORT=$S3_PORT
S3_ENDPOINT=http://127.0.0.1:$S3_PORT
S3_ROOT=$CLUSTER_DIR/s3
S3_ACCESS_KEY=$S3_ACCESS_KEY
S3_SECRET_KEY=$S3_SECRET_KEY
BUCKET=$BUCKET
AUTH_SECRET=$AUTH_SECRET
DRAIN_DELAY_SECS=$DRAIN_DELAY
SHUTDOWN_TIMEOUT_SECS=$SHUTDOWN_TIMEOUT
EOF
    load_state

    # From here on, a failure leaves nothing running.
    trap 'say "start failed: stopping what was started"; cmd_stop >/dev/null 2>&1 || true' EXIT

    launch redis redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$CLUSTER_DIR/redis" \
        --save "" --appendonly yes --appendfsync everysec --daemonize no
    wait_port "$REDIS_PORT" 10 redis
    # s3s-fs serves each folder of its root as a bucket.
    launch s3 s3s-fs --host 127.0.0.1 --port "$S3_PORT" --access-key "$S3_ACCESS_KEY" \
        --secret-key "$S3_SECRET_KEY" "$CLUSTER_DIR/s3"
    wait_port "$S3_PORT" 30 s3

    for ((n = 1; n <= INSTANCES; n++)); do start_instance "$n"; done

    write_nginx_conf
    $(nginx_cmd) -t -q >>"$LOGS/nginx-error.log" 2>&1 || { cat "$LOGS/nginx-error.log" >&2; die "nginx refused its config"; }
    # shellcheck disable=SC2046
    launch nginx $(nginx_cmd) -g 'daemon off;'
    wait_http "http://127.0.0.1:$NGINX_PORT/healthz" 200 10 nginx
    trap - EXIT
    say "up: balancer $BALANCER_URL -> ferry on ports $FERRY_PORT_1 $FERRY_PORT_2 $FERRY_PORT_3; redis $REDIS_PORT; s3 $S3_ENDPOINT (bucket $BUCKET); state in $STATE"
}

cmd_stop() {
    [ -d "$PIDS" ] || { say "nothing to stop in $CLUSTER_DIR"; return 0; }
    [ -f "$STATE" ] && load_state
    # The balancer first, then the instances (a second SIGTERM skips the drain), then
    # the stores they use.
    stop_one nginx nginx TERM 10 || true
    local n pid
    for ((n = 1; n <= INSTANCES; n++)); do
        if pid=$(pid_of "ferry-$n" "$FERRY_BIN serve"); then
            kill -TERM "$pid" 2>/dev/null || true
            sleep 0.2
        fi
        stop_one "ferry-$n" "$FERRY_BIN serve" TERM 10 || true
    done
    stop_one s3 s3s-fs TERM 10 || true
    stop_one redis redis-server TERM 10 || true
    say "stopped"
}

cmd_status() {
    load_state
    printf '%-8s %-8s %-6s %-8s %-7s %10s %10s\n' name pid port state ready VmRSS VmHWM
    local name what port pid state ready rss hwm n port_var
    for name in nginx redis s3 ferry-1 ferry-2 ferry-3; do
        what=$(what_of "$name")
        case $name in
            nginx) port=$NGINX_PORT ;;
            redis) port=$REDIS_PORT ;;
            s3) port=$S3_PORT ;;
            ferry-*) n=${name#ferry-}; port_var="FERRY_PORT_$n"; port=${!port_var} ;;
        esac
        ready=- rss=- hwm=-
        if pid=$(pid_of "$name" "$what"); then
            state=running
            rss=$(awk '/^VmRSS:/ {print $2 $3}' "/proc/$pid/status")
            hwm=$(awk '/^VmHWM:/ {print $2 $3}' "/proc/$pid/status")
            case $name in
                ferry-*) ready=$(http_code "http://127.0.0.1:$port/readyz") ;;
                nginx) ready=$(http_code "http://127.0.0.1:$port/readyz") ;;
            esac
        else
            pid=- state=stopped
        fi
        printf '%-8s %-8s %-6s %-8s %-7s %10s %10s\n' "$name" "$pid" "$port" "$state" "$ready" "$rss" "$hwm"
    done
}

instance_arg() {
    if ! [[ "${1:-}" =~ ^[0-9]+$ ]] || [ "$1" -lt 1 ] || [ "$1" -gt "$INSTANCES" ]; then
        die "name an instance: 1..$INSTANCES"
    fi
}

cmd_kill() {
    load_state; instance_arg "${1:-}"
    local pid
    pid=$(pid_of "ferry-$1" "$FERRY_BIN serve") || die "instance $1 is not running"
    kill -KILL "$pid"
    local i
    for ((i = 0; i < 50; i++)); do pid_of "ferry-$1" "$FERRY_BIN serve" >/dev/null || break; sleep 0.1; done
    rm -f "$PIDS/ferry-$1.pid"
    echo "--- killed with SIGKILL $(date -u +%FT%TZ)" >>"$LOGS/ferry-$1.log"
    say "instance $1 (pid $pid) killed with SIGKILL"
}

cmd_term() {
    load_state; instance_arg "${1:-}"
    local start=$SECONDS
    # Drain delay, then up to the shutdown timeout for requests in flight, plus margin.
    stop_one "ferry-$1" "$FERRY_BIN serve" TERM $((DRAIN_DELAY_SECS + SHUTDOWN_TIMEOUT_SECS + 5)) \
        || die "instance $1 did not exit within its drain (killed)"
    say "instance $1 drained and exited after SIGTERM in $((SECONDS - start))s"
}

cmd_up() {
    load_state; instance_arg "${1:-}"
    start_instance "$1"
    say "instance $1 is up and ready"
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) load_state; cat "$STATE" ;;
    kill) cmd_kill "${2:-}" ;;
    term) cmd_term "${2:-}" ;;
    up) cmd_up "${2:-}" ;;
    restart) cmd_term "${2:-}"; cmd_up "${2:-}" ;;
    *)
        sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
        exit 2
        ;;
esac
