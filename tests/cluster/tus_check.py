"""The `tus` cluster check: real tus clients through the balancer of three instances.

The clients are the ones tests/tus-clients/ runs against one ferry on the embedded
default: tus-js-client 4.3.1 (Node, through tests/tus-clients/upload_cli.mjs) and tuspy
1.1.0 (through tests/tus-clients/tuspy_upload.py). scripts/test-tus-clients.sh installs
them, and scripts/test.sh runs it before the cluster test; without them the check is
skipped. nginx balances round robin with no stickiness, so the PATCHes of one upload land
on different instances, which share the upload through Redis and its bytes through S3.

1. tus-js-client sends a 48 MiB file in PATCHes of 4 MiB over a paced link while
   instance 1 is killed with SIGKILL in the middle of a PATCH (which must show in the
   balancer's log as a failed PATCH), then started again. It must finish by itself, with
   its own retries, and the object in S3 must be identical.
2. tuspy sends a file in PATCHes of 4 MiB, each with a checksum; the object must be
   identical.
3. tus-js-client with `parallelUploads: 3` (partial uploads, concatenated at the end), only
   once `OPTIONS /files/` lists `concatenation` in `Tus-Extension`; until then a log line
   says it was left out.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

from harness import (BALANCER_PORT, INSTANCE_PORTS, MIB, ROOT, WORK, PacedRelay, Skip, access_log_lines,
                     cluster, ferry_pids, instance_of, log, make_file, request, request_json,
                     stored_object)

TUS_CLIENTS = ROOT / "tests" / "tus-clients"
UPLOAD_CLI = TUS_CLIENTS / "upload_cli.mjs"
TUSPY_UPLOAD = TUS_CLIENTS / "tuspy_upload.py"
CHUNK = 4 * MIB
# tus-js-client's link to the balancer: at 8 MiB/s a 4 MiB PATCH lasts half a second,
# long enough to kill the instance that receives it while its body streams.
LINK_RATE = int(os.environ.get("CLUSTER_TEST_TUS_LINK_RATE", 8 * MIB))
# An instance killed during a PATCH holds that upload's append claim until it lapses (10 s
# after its last heartbeat), so the client waits about that long; the timeout leaves room.
CLIENT_TIMEOUT = 240


def check_tus():
    require_clients()
    tus_js_through_a_kill()
    tuspy_through_the_balancer()
    tus_js_parallel_if_served()


def require_clients() -> None:
    """Skips the check when a client is not installed (scripts/test-tus-clients.sh installs both)."""
    missing = []
    if shutil.which("node") is None:
        missing.append("node")
    elif not (TUS_CLIENTS / "node_modules" / "tus-js-client").is_dir():
        missing.append("tus-js-client (tests/tus-clients/node_modules)")
    if importlib.util.find_spec("tusclient") is None:
        missing.append(f"tuspy (for {sys.executable})")
    if missing:
        raise Skip(f"{' and '.join(missing)} not installed: scripts/test-tus-clients.sh installs the tus "
                   f"clients (scripts/test.sh runs it before the cluster test)")


# ---- the clients ---------------------------------------------------------------------


class Client:
    """A tus client running as a child process; its last line on stdout is JSON."""

    def __init__(self, name: str, cmd: list[str], cwd: Path):
        self.name = name
        self.out_path, self.err_path = WORK / f"{name}.out", WORK / f"{name}.err"
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)

    def running(self) -> bool:
        return self.proc.poll() is None

    def result(self, timeout: float) -> dict:
        """Waits for the client to end; its JSON line, or an AssertionError with its output."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(f"{self.name} did not finish within {timeout:.0f} s:\n{self.stderr()}")
        stdout = self.out_path.read_text(errors="replace").strip()
        assert self.proc.returncode == 0, f"{self.name} failed ({self.proc.returncode}):\n{stdout}\n{self.stderr()}"
        return json.loads(stdout.splitlines()[-1])

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.running():
            self.proc.kill()
            self.proc.wait()


def tus_js(name: str, endpoint: str, path: Path, parallel: int = 1) -> Client:
    """upload_cli.mjs runs from tests/tus-clients/, where Node finds tus-js-client."""
    cmd = ["node", str(UPLOAD_CLI), endpoint, str(path), str(CHUNK), str(parallel)]
    return Client(name, cmd, TUS_CLIENTS)


def tuspy(name: str, endpoint: str, path: Path) -> Client:
    return Client(name, [sys.executable, str(TUSPY_UPLOAD), endpoint, str(path), str(CHUNK)], TUS_CLIENTS)


# ---- what ferry stored ----------------------------------------------------------------


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(8 * MIB):
            digest.update(block)
    return digest.hexdigest()


def stored_upload(url: str, endpoint: str, path: Path) -> tuple[str, str]:
    """Checks the upload behind a tus upload URL (`/files/{id}.{token}`) through the native
    status, with its token as Bearer: completed, and its object in S3 identical to the
    file. Returns the upload id and the object's sha256."""
    assert url.startswith(endpoint), f"the upload URL {url} is not under the endpoint {endpoint}"
    upload_id, token = urlsplit(url).path.rsplit("/", 1)[-1].split(".", 1)
    status, doc = request_json(BALANCER_PORT, "GET", f"/v1/uploads/{upload_id}", token=token)
    assert status == 200 and doc["state"] == "completed", f"status of {upload_id}: {status} {doc}"
    obj = stored_object(doc["key"])
    want, got = sha256_of(path), sha256_of(obj)
    assert obj.stat().st_size == path.stat().st_size and got == want, \
        f"{doc['key']}: the object in S3 (sha256 {got}) differs from {path.name} (sha256 {want})"
    return upload_id, got


def patch_lines(since: int, upload_id: str | None = None) -> list[dict]:
    """The balancer's log lines for tus PATCHes after line `since` (of one upload, if named)."""
    prefix = f"/files/{upload_id}." if upload_id else "/files/"
    return [line for line in access_log_lines()[since:]
            if line["method"] == "PATCH" and line["path"].startswith(prefix)]


def spread(lines: list[dict]) -> tuple[dict[str, int], dict[int, int]]:
    """PATCHes by status, and the stored ones (204) by the instance that served them."""
    by_status: dict[str, int] = {}
    stored = {n: 0 for n in INSTANCE_PORTS}
    for line in lines:
        by_status[line["status"]] = by_status.get(line["status"], 0) + 1
        n = instance_of(line["upstream"])
        if line["status"] == "204" and n:
            stored[n] += 1
    return by_status, stored


def assert_spread(what: str, stored: dict[int, int]) -> None:
    serving = [n for n, count in stored.items() if count]
    assert len(serving) >= 2, f"{what}: every stored PATCH went to one instance: {stored}"


# ---- 1. tus-js-client through a kill -9 -----------------------------------------------


def wait_for(what: str, ready, client: Client, timeout: float) -> None:
    """Polls `ready()` until it holds; fails if the client ends first or time runs out."""
    deadline = time.monotonic() + timeout
    while not ready():
        if not client.running():
            raise AssertionError(f"the upload ended (exit {client.proc.returncode}) before {what}:\n"
                                 f"{client.stderr()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout:.0f} s; the client says:\n{client.stderr()}")
        time.sleep(0.02)


def next_patch_goes_to_instance_1(since: int) -> bool:
    """Whether the PATCH on the wire now goes to instance 1: at least three PATCHes stored,
    and the last one by the instance that came right before instance 1 the last time.
    nginx's round robin repeats its order, but where the order starts depends on what the
    balancer served before, so it is learnt from the PATCHes seen."""
    lines = patch_lines(since)
    if len(lines) < 3 or any(line["status"] != "204" for line in lines):
        return False
    order = [instance_of(line["upstream"]) for line in lines]
    before_1 = [order[i - 1] for i in range(1, len(order)) if order[i] == 1]
    return bool(before_1) and order[-1] == before_1[-1]


def kill_instance_1_mid_patch(client: Client, since: int, t0: float) -> None:
    wait_for("a PATCH on its way to instance 1", lambda: next_patch_goes_to_instance_1(since), client, timeout=60)
    # A fifth of a PATCH's time: its body is streaming into instance 1, with most of it
    # still to come when the kill lands.
    time.sleep(CHUNK / LINK_RATE / 5)
    stored_before = sum(1 for line in patch_lines(since) if line["status"] == "204")
    cluster("kill", "1")
    log(f"tus: instance 1 killed with -9 at {time.monotonic() - t0:.1f}s, after {stored_before} stored PATCHes")


def start_instance_1_again(t0: float) -> None:
    """Starts instance 1 unless it runs (the kill may not have happened)."""
    if 1 not in ferry_pids():
        cluster("up", "1")
        log(f"tus: instance 1 started again at {time.monotonic() - t0:.1f}s")


def tus_js_through_a_kill() -> None:
    size = 48 * MIB
    path = WORK / "tus-js-48MiB.bin"
    make_file(path, size, seed=4800)
    relay = PacedRelay(BALANCER_PORT, LINK_RATE)
    endpoint = f"http://127.0.0.1:{relay.port}/files/"
    since = len(access_log_lines())
    log(f"tus: tus-js-client, {size // MIB} MiB in PATCHes of {CHUNK // MIB} MiB through the balancer "
        f"(link paced at {LINK_RATE / MIB:.0f} MiB/s), instance 1 killed with -9 mid-PATCH")
    client = tus_js("tus-js-kill", endpoint, path)
    t0 = time.monotonic()
    try:
        try:
            kill_instance_1_mid_patch(client, since, t0)
            # nginx skips a refusing instance for 2 s; start it again after that, while
            # the client still waits for the dead instance's claim to lapse.
            time.sleep(2)
        finally:
            start_instance_1_again(t0)
        result = client.result(CLIENT_TIMEOUT)
    finally:
        client.stop()
        relay.close()
    upload_id, sha = stored_upload(result["url"], endpoint, path)
    by_status, stored = spread(patch_lines(since, upload_id))
    assert_spread("tus-js-client", stored)
    cut = sum(count for status, count in by_status.items() if status != "204")
    assert cut, f"the kill did not touch the upload (PATCHes by status: {by_status}); see the access log"
    retried = [r["status"] or "no answer" for r in result["retries"]]
    log(f"tus: tus-js-client finished by itself in {result['seconds']:.1f}s after {len(retried)} retries "
        f"({summarize(retried)}); PATCHes by status {by_status}; stored PATCHes per instance {stored}; "
        f"object byte-identical in S3 (sha256 {sha[:16]}…)")
    for n, port in INSTANCE_PORTS.items():
        assert request(port, "GET", "/readyz", timeout=5)[0] == 200, f"instance {n} is not ready after the upload"


def summarize(items: list) -> str:
    counts: dict[str, int] = {}
    for item in items:
        counts[str(item)] = counts.get(str(item), 0) + 1
    return ", ".join(f"{count} x {item}" for item, count in counts.items()) or "none"


# ---- 2. tuspy through the balancer -----------------------------------------------------


def tuspy_through_the_balancer() -> None:
    size = 20 * MIB + 12345
    path = WORK / "tuspy-20MiB.bin"
    make_file(path, size, seed=2000)
    endpoint = f"http://127.0.0.1:{BALANCER_PORT}/files/"
    since = len(access_log_lines())
    t0 = time.monotonic()
    client = tuspy("tuspy", endpoint, path)
    try:
        result = client.result(CLIENT_TIMEOUT)
    finally:
        client.stop()
    took = time.monotonic() - t0
    assert result["offset"] == size, f"tuspy ended at offset {result['offset']}, not {size}"
    upload_id, sha = stored_upload(result["url"], endpoint, path)
    by_status, stored = spread(patch_lines(since, upload_id))
    assert set(by_status) == {"204"}, f"tuspy: PATCHes refused with nothing in the way: {by_status}"
    assert_spread("tuspy", stored)
    log(f"tus: tuspy sent {size / MIB:.1f} MiB in {sum(by_status.values())} PATCHes of {CHUNK // MIB} MiB "
        f"with checksums in {took:.1f}s; stored PATCHes per instance {stored}; "
        f"object byte-identical in S3 (sha256 {sha[:16]}…)")


# ---- 3. tus-js-client's parallelUploads, once concatenation is served ------------------


def served_extensions() -> set[str]:
    status, headers, _ = request(BALANCER_PORT, "OPTIONS", "/files/", timeout=10)
    assert status in (200, 204), f"OPTIONS /files/ answered {status}"
    return {ext.strip() for ext in headers.get("tus-extension", "").split(",") if ext.strip()}


def tus_js_parallel_if_served() -> None:
    extensions = served_extensions()
    if "concatenation" not in extensions:
        log(f"tus: parallelUploads left out: OPTIONS /files/ does not list concatenation "
            f"(Tus-Extension: {','.join(sorted(extensions))})")
        return
    size = 24 * MIB + 777
    path = WORK / "tus-js-parallel-24MiB.bin"
    make_file(path, size, seed=2400)
    endpoint = f"http://127.0.0.1:{BALANCER_PORT}/files/"
    since = len(access_log_lines())
    client = tus_js("tus-js-parallel", endpoint, path, parallel=3)
    try:
        result = client.result(CLIENT_TIMEOUT)
    finally:
        client.stop()
    _, sha = stored_upload(result["url"], endpoint, path)
    by_status, stored = spread(patch_lines(since))
    assert_spread("tus-js-client parallelUploads", stored)
    log(f"tus: tus-js-client with parallelUploads: 3 sent {size / MIB:.1f} MiB in {result['seconds']:.1f}s "
        f"(PATCHes of the partial uploads by status {by_status}, stored per instance {stored}); "
        f"the final upload's object byte-identical in S3 (sha256 {sha[:16]}…)")
