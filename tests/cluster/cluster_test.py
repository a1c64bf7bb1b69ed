#!/usr/bin/env python3
"""The cluster test: three ferry instances behind a real nginx, on loopback.

Run by scripts/test-cluster.sh against a cluster started with scripts/cluster.sh (this
file reads the cluster's state from $CLUSTER_DIR/cluster.env, through harness.py, which
holds what the checks share). Python standard library only. Each check prints what it
measured; the last line is "cluster: N passed, N failed".

1. wall: a 40 MiB single request is refused with 413 by nginx itself (no instance sees
   it), while the same request straight to an instance is accepted.
2. concurrent: 20 uploads of 32 MiB at once through the balancer, in chunks of 30 MiB
   (the largest chunk ferry allows, so the largest body passes the 32 MiB wall) and 2 MiB;
   zero failed requests, every object byte-identical in S3, requests spread over all
   three instances. Reports each instance's peak RSS (VmHWM).
3. drain: SIGTERM to an instance while a chunk streams into it: /readyz answers 503 at
   once, the instance serves on for the drain delay, then its listener closes, and the
   process exits in time. The chunk in flight must finish (200).
4. rolling: `ferry upload` sends a 300 MiB file through the balancer while instance 1 is
   killed with SIGKILL (and started again later) and instance 2 is restarted with SIGTERM
   (a step of a rolling restart); the object in S3 must be byte-identical to the file.
   The client's link is paced (a relay on loopback) so that the upload lasts long enough
   for both events to land in the middle of the transfer. Skipped, with a notice, while
   the ferry binary has no `upload` command.
5. healthcheck: the compose file's /dev/tcp probe, run against a live instance.
6. tus: real tus clients through the balancer (tus_check.py): tus-js-client sends 48 MiB
   in 4 MiB PATCHes while instance 1 is killed with SIGKILL mid-PATCH and started again,
   and finishes with its own retries; tuspy sends a file in 4 MiB PATCHes; both objects
   byte-identical in S3. tus-js-client's `parallelUploads` too, once `OPTIONS /files/`
   lists `concatenation`. Skipped while node, tus-js-client or tuspy is missing.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from harness import (BALANCER_PORT, FERRY_BIN, INSTANCE_PORTS, MIB, ROOT, STATE, WORK,
                     PacedRelay, Skip, access_log_lines, cluster, ferry_pids, instance_of, load_state,
                     log, make_file, proc_kib, request, request_json, same_bytes, stored_object)
from tus_check import check_tus


# ---- the native API ----------------------------------------------------------------


def content_md5(data) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


class Upload:
    """One upload through the HTTP API; counts every request that did not succeed."""

    def __init__(self, port: int, data: bytes, name: str, chunk_size: int, parallel: int):
        self.port, self.data, self.name = port, data, name
        self.chunk_size, self.parallel = chunk_size, parallel
        self.failures: list[str] = []
        self.key = None
        self.status = None

    def _put_chunk(self, upload_id, token, index):
        chunk = memoryview(self.data)[index * self.chunk_size : (index + 1) * self.chunk_size]
        headers = {"Content-MD5": content_md5(chunk), "Authorization": f"Bearer {token}",
                   "Content-Length": str(len(chunk)), "Content-Type": "application/octet-stream"}
        for attempt in range(4):
            try:
                status, _, body = request(self.port, "PUT", f"/v1/uploads/{upload_id}/chunks/{index}",
                                          chunk, headers)
                if status == 200:
                    return
                self.failures.append(f"chunk {index} attempt {attempt}: {status} {body[:200]!r}")
            except OSError as err:
                self.failures.append(f"chunk {index} attempt {attempt}: {err!r}")
            time.sleep(0.5 * (attempt + 1))
        raise AssertionError(f"{self.name}: chunk {index} never went through: {self.failures}")

    def run(self):
        status, init = request_json(self.port, "POST", "/v1/uploads",
                                    {"filename": self.name, "size": len(self.data),
                                     "chunk_size": self.chunk_size})
        if status != 201:
            raise AssertionError(f"{self.name}: init answered {status}: {init}")
        upload_id, token, total = init["upload_id"], init["upload_token"], init["total_chunks"]
        with ThreadPoolExecutor(self.parallel) as pool:
            for f in [pool.submit(self._put_chunk, upload_id, token, i) for i in range(total)]:
                f.result()
        status, self.status = request_json(self.port, "GET", f"/v1/uploads/{upload_id}", token=token)
        if status != 200 or self.status["state"] != "completed":
            raise AssertionError(f"{self.name}: status answered {status}: {self.status}")
        self.key = self.status["key"]
        return self



# ---- 1. the wall -------------------------------------------------------------------


def send_form(port: int, size: int, rid: str):
    """A multipart form upload of `size` bytes in one request, sent the way a client
    would (headers, then the body as fast as the peer takes it); the answer is read even
    when the peer stops reading the body early."""
    boundary = uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"wall.bin\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    block = random.Random(40).randbytes(MIB)
    length = len(head) + size + len(tail)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    sent = 0
    try:
        conn.putrequest("POST", "/v1/uploads/form")
        conn.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
        conn.putheader("Content-Length", str(length))
        conn.putheader("X-Request-Id", rid)
        conn.endheaders()
        try:
            conn.send(head)
            for _ in range(size // MIB):
                conn.send(block)
                sent += MIB
            conn.send(tail)
        except OSError:
            pass  # the peer refused the rest of the body; its answer is already there
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read(), sent
    finally:
        conn.close()


def check_wall():
    size = 40 * MIB
    rid = f"wall-{uuid.uuid4().hex}"
    t0 = time.monotonic()
    status, headers, body, sent = send_form(BALANCER_PORT, size, rid)
    took = time.monotonic() - t0
    assert status == 413, f"the balancer answered {status} to 40 MiB, not 413: {body[:300]!r}"
    assert headers.get("server", "").startswith("nginx"), f"the 413 is not nginx's: {headers}"
    assert "problem+json" not in headers.get("content-type", ""), "the 413 came from ferry, not nginx"
    # nginx writes the line once it has closed the connection (after a lingering close).
    deadline = time.monotonic() + 15
    while not (lines := access_log_lines(rid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert lines, f"no access log line for {rid}"
    assert all(line["upstream"] == "-" for line in lines), f"an instance saw the request: {lines}"
    log(f"wall: 40 MiB form upload through nginx -> {status} from nginx in {took:.2f}s "
        f"(upstream '-': no instance saw it)")

    # The same request straight to an instance goes through: the wall is the balancer's.
    status, _, body, _ = send_form(INSTANCE_PORTS[1], size, f"{rid}-direct")
    assert status == 201, f"instance 1 answered {status} to the direct 40 MiB form: {body[:300]!r}"
    doc = json.loads(body)
    assert doc["size"] == size and doc["state"] == "completed", doc
    assert stored_object(doc["key"]).stat().st_size == size
    log("wall: the same 40 MiB form straight to instance 1 -> 201, stored in S3")

    # And the largest chunk ferry allows (30 MiB, so a 30 MiB + headers body) passes.
    data = random.Random(30).randbytes(30 * MIB)
    up = Upload(BALANCER_PORT, data, "largest-chunk.bin", 30 * MIB, 1).run()
    assert not up.failures, up.failures
    assert same_bytes(stored_object(up.key), data)
    log("wall: one 30 MiB chunk (uploads.max_chunk_size) through nginx -> stored byte-identical")


# ---- 2. twenty at once ------------------------------------------------------------


def check_concurrent():
    count, size, chunk = 20, 32 * MIB, 30 * MIB
    datas = [random.Random(1000 + i).randbytes(size) for i in range(count)]
    log_start = len(access_log_lines())
    t0 = time.monotonic()
    with ThreadPoolExecutor(count) as pool:
        futures = [pool.submit(Upload(BALANCER_PORT, datas[i], f"concurrent-{i:02}.bin", chunk, 2).run)
                   for i in range(count)]
        uploads = [f.result(timeout=600) for f in futures]
    took = time.monotonic() - t0
    failures = [f for u in uploads for f in u.failures]
    assert not failures, f"{len(failures)} failed requests: {failures[:10]}"
    for u, data in zip(uploads, datas):
        path = stored_object(u.key)
        assert same_bytes(path, data), f"{u.key}: the object in S3 differs from what was sent"
    lines = access_log_lines()[log_start:]
    puts = [line for line in lines if line["method"] == "PUT"]
    bad = [line for line in lines if not line["status"].startswith("2")]
    assert not bad, f"the balancer answered errors: {bad[:5]}"
    per_instance = {n: 0 for n in INSTANCE_PORTS}
    for line in lines:
        n = instance_of(line["upstream"])
        if n:
            per_instance[n] += 1
    assert all(per_instance.values()), f"not every instance served requests: {per_instance}"
    total = count * size
    log(f"concurrent: {count} uploads x 32 MiB ({len(puts)} chunk PUTs, chunks of 30 + 2 MiB) "
        f"in {took:.1f}s = {total / MIB / took:.0f} MiB/s through nginx; 0 failed requests; "
        f"every object byte-identical in S3; requests per instance {per_instance}")
    peaks = {n: proc_kib(pid, "VmHWM") for n, pid in ferry_pids().items()}
    log("concurrent: ferry peak RSS (VmHWM) per instance: "
        + ", ".join(f"{n}: {kib / 1024:.1f} MiB" for n, kib in sorted(peaks.items())))


# ---- 5. rolling restart under a ferry upload --------------------------------------


def has_upload_command() -> bool:
    try:
        out = subprocess.run([FERRY_BIN, "upload", "--help"], capture_output=True, timeout=10)
    except OSError:
        return False
    return out.returncode == 0



def chunk_progress(since: int):
    """Successful chunk PUTs in the access log after line `since`: (distinct indices, all
    chunk lines)."""
    lines = [line for line in access_log_lines()[since:] if "/chunks/" in line["path"] and line["method"] == "PUT"]
    done = {line["path"] for line in lines if line["status"] == "200"}
    return done, lines


def check_rolling():
    if not has_upload_command():
        raise Skip(f"{FERRY_BIN} has no `upload` command yet")
    size, chunk, parallel = 300 * MIB, 8 * MIB, 4
    rate = int(os.environ.get("CLUSTER_TEST_LINK_RATE", 12 * MIB))
    total = math.ceil(size / chunk)
    path = WORK / "rolling-300MiB.bin"
    make_file(path, size)
    relay = PacedRelay(BALANCER_PORT, rate)
    log_start = len(access_log_lines())
    out_path, err_path = WORK / "rolling.out", WORK / "rolling.err"
    cmd = [FERRY_BIN, "upload", str(path), "--server", f"http://127.0.0.1:{relay.port}",
           "--chunk-size", str(chunk), "--parallel", str(parallel), "--retry-for", "120", "--json"]
    log(f"rolling: {' '.join(cmd)}  (client link paced at {rate / MIB:.0f} MiB/s; {total} chunks)")
    events = []
    t0 = time.monotonic()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        # A state folder of its own, empty: nothing to resume from an earlier cluster.
        state_dir = WORK / "client-state"
        shutil.rmtree(state_dir, ignore_errors=True)
        env = dict(os.environ, FERRY_STATE_DIR=str(state_dir), NO_COLOR="1")
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
        try:
            steps = [
                (total / 3, "kill -9 instance 1", ("kill", "1")),
                (total / 2, "start instance 1 again", ("up", "1")),
                (2 * total / 3, "SIGTERM-restart instance 2", ("restart", "2")),
            ]
            deadline = t0 + 300
            for threshold, what, args in steps:
                while True:
                    done, _ = chunk_progress(log_start)
                    if len(done) >= threshold:
                        break
                    if proc.poll() is not None:
                        raise AssertionError(f"the upload ended (exit {proc.returncode}) before '{what}'")
                    if time.monotonic() > deadline:
                        raise AssertionError(f"no progress to '{what}' within 300 s")
                    time.sleep(0.05)
                at = time.monotonic() - t0
                if proc.poll() is not None:
                    raise AssertionError(f"the upload ended (exit {proc.returncode}) before '{what}'")
                cluster(*args)
                events.append(f"{what} at {at:.1f}s ({len(done)}/{total} chunks stored)")
                log(f"rolling: {events[-1]}, during the upload")
            proc.wait(timeout=max(10, deadline - time.monotonic()))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            relay.close()
    took = time.monotonic() - t0
    stdout, stderr = out_path.read_text(errors="replace"), err_path.read_text(errors="replace")
    assert proc.returncode == 0, f"ferry upload failed ({proc.returncode}):\n{stdout}\n{stderr[-3000:]}"
    result = None
    for line in reversed(stdout.strip().splitlines()):
        try:
            result = json.loads(line)
            break
        except ValueError:
            continue
    if result is None:
        result = json.loads(stdout)
    key = result.get("key") or result.get("upload", {}).get("key")
    assert key, f"no key in ferry upload's output: {stdout}"
    assert same_bytes(stored_object(key), path), f"{key}: the object in S3 differs from the file"
    _, lines = chunk_progress(log_start)
    cut = [line for line in lines if line["status"] != "200"]
    by_status = {}
    for line in cut:
        by_status[line["status"]] = by_status.get(line["status"], 0) + 1
    log(f"rolling: 300 MiB through the balancer in {took:.1f}s with {len(lines)} chunk requests "
        f"({len(cut)} cut or refused and sent again: {by_status or 'none'}); "
        f"object {key} byte-identical in S3")
    for n, port in INSTANCE_PORTS.items():
        status, _, _ = request(port, "GET", "/readyz", timeout=5)
        assert status == 200, f"instance {n} is not ready after the test: {status}"


# ---- 4. the drain of one instance, watched from outside ----------------------------


def check_drain():
    """SIGTERM to instance 3 while a chunk streams into it: /readyz turns 503 at once,
    the instance still serves during the drain delay, then its listener closes, the chunk
    in flight finishes, and the process exits in time. Straight to the instance, so the
    answers are ferry's, not nginx's."""
    n, port = 3, INSTANCE_PORTS[3]
    drain, shutdown = int(STATE["DRAIN_DELAY_SECS"]), int(STATE["SHUTDOWN_TIMEOUT_SECS"])
    # Some traffic first, so that both of the instance's workers hold S3 connections.
    for i in range(4):
        Upload(port, random.Random(500 + i).randbytes(6 * MIB), f"warm-{i}.bin", 5 * MIB, 2).run()
    data = random.Random(501).randbytes(8 * MIB)
    status, init = request_json(port, "POST", "/v1/uploads",
                                {"filename": "drain.bin", "size": len(data), "chunk_size": len(data)})
    assert status == 201, init
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.putrequest("PUT", f"/v1/uploads/{init['upload_id']}/chunks/0")
    conn.putheader("Content-Length", str(len(data)))
    conn.putheader("Content-MD5", content_md5(data))
    conn.putheader("Authorization", f"Bearer {init['upload_token']}")
    conn.endheaders()
    pid = ferry_pids()[n]
    # The body goes at about 2.5 MiB/s, so it lasts past the drain delay.
    step, sent, termed, ready_after, served_while_draining, closed_after = 256 * 1024, 0, None, None, None, None
    cut = None
    try:
        while sent < len(data):
            conn.send(data[sent:sent + step])
            sent += step
            if termed is None and sent >= MIB:
                os.kill(pid, signal.SIGTERM)
                termed = time.monotonic()
                while time.monotonic() - termed < 0.5:
                    if request(port, "GET", "/readyz", timeout=2)[0] == 503:
                        ready_after = time.monotonic() - termed
                        break
                    time.sleep(0.01)
                served_while_draining = request(port, "GET", "/healthz", timeout=2)[0]
            elif termed is not None and closed_after is None and time.monotonic() - termed > drain + 0.3:
                try:
                    request(port, "GET", "/healthz", timeout=2)
                    closed_after = False
                except OSError:
                    closed_after = time.monotonic() - termed
            time.sleep(0.1)
    except OSError as err:
        cut = err
    try:
        resp = conn.getresponse()
        answer = (resp.status, resp.read())
    except OSError as err:
        answer = (None, repr(err).encode())
    finally:
        conn.close()
    body_took = time.monotonic() - termed
    assert ready_after is not None, "/readyz did not answer 503 within 0.5 s of SIGTERM"
    assert served_while_draining == 200, f"the draining instance refused /healthz ({served_while_draining})"
    assert closed_after, f"the listener was still open {drain + 0.3:.1f} s after SIGTERM"
    deadline = termed + drain + shutdown + 5
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not pid_alive(pid), f"instance {n} still runs {drain + shutdown + 5} s after SIGTERM"
    exited = time.monotonic() - termed
    cluster("up", str(n))
    STATE.update(load_state())
    log(f"drain: /readyz 503 {ready_after * 1000:.0f} ms after SIGTERM; /healthz still 200 while "
        f"draining; listener closed by {closed_after:.1f} s (drain delay {drain} s); "
        f"process exited {exited:.1f} s after SIGTERM; instance {n} started again")
    if answer[0] == 200 and cut is None:
        log(f"drain: the chunk in flight across the drain finished: 200 after {body_took:.1f} s")
        return
    what = f"{answer[0]} {answer[1][:160]!r}" + (f" (the body was cut: {cut!r})" if cut else "")
    raise AssertionError(f"the chunk in flight across the drain failed: {what}")


def pid_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in state


# ---- 6. the compose healthcheck against a live instance ------------------------------


def check_healthcheck():
    """deploy/docker-compose.yml probes /readyz with bash and /dev/tcp (the runtime image
    has no curl); run that very command against a live instance and a closed port."""
    text = (ROOT / "deploy" / "docker-compose.yml").read_text()
    match = re.search(r"^\s*- (exec 3<>/dev/tcp/127\.0\.0\.1/8080 .*)$", text, re.M)
    assert match, "no /dev/tcp healthcheck in deploy/docker-compose.yml"
    command = match.group(1)

    def probe(port):
        return subprocess.run(["bash", "-c", command.replace("/8080", f"/{port}")],
                              timeout=10, capture_output=True).returncode

    assert probe(INSTANCE_PORTS[3]) == 0, "the compose healthcheck fails on a ready instance"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    assert probe(closed) != 0, "the compose healthcheck passes on a closed port"
    log("healthcheck: the compose file's bash /dev/tcp probe passes on a ready instance, fails on a closed port")


# ---- runner ------------------------------------------------------------------------


def main() -> int:
    WORK.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks
    checks = [("wall", check_wall), ("healthcheck", check_healthcheck), ("concurrent", check_concurrent),
              ("drain", check_drain), ("rolling", check_rolling), ("tus", check_tus)]
    only = set(sys.argv[1:])
    unknown = only - {name for name, _ in checks}
    if unknown:
        print(f"cluster: no such check: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    passed = failed = skipped = 0
    for name, check in checks:
        if only and name not in only:
            continue
        t0 = time.monotonic()
        try:
            check()
        except Skip as why:
            skipped += 1
            log(f"SKIP {name}: {why}")
            continue
        except Exception:  # noqa: BLE001 - report every failure, then go on
            failed += 1
            log(f"FAIL {name} after {time.monotonic() - t0:.1f}s")
            traceback.print_exc()
            continue
        passed += 1
        log(f"ok {name} ({time.monotonic() - t0:.1f}s)")
    summary = f"{passed} passed, {failed} failed"
    if skipped:
        summary += f", {skipped} skipped"
    print(f"cluster: {summary}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
