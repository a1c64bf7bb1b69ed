"""What the cluster checks share: the cluster's state (read from $CLUSTER_DIR/cluster.env,
written by scripts/cluster.sh start), HTTP requests, the balancer's access log, the
objects in s3s-fs's folder, scripts/cluster.sh's commands, test files and a paced relay.
Python standard library only.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import random
import re
import socket
import subprocess
import threading
import time
from pathlib import Path

MIB = 1024 * 1024
ROOT = Path(__file__).resolve().parents[2]
CLUSTER_SH = ROOT / "scripts" / "cluster.sh"


class Skip(Exception):
    """The check cannot run here yet."""


def log(msg: str) -> None:
    print(f"cluster: {msg}", flush=True)


def load_state() -> dict[str, str]:
    cluster_dir = Path(os.environ.get("CLUSTER_DIR", ROOT / "target" / "cluster"))
    state = {}
    for line in (cluster_dir / "cluster.env").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            state[key] = value
    return state


STATE = load_state()
BALANCER_PORT = int(STATE["NGINX_PORT"])
INSTANCE_PORTS = {n: int(STATE[f"FERRY_PORT_{n}"]) for n in (1, 2, 3)}
S3_BUCKET_DIR = Path(STATE["S3_ROOT"]) / STATE["BUCKET"]
ACCESS_LOG = Path(STATE["CLUSTER_DIR"]) / "logs" / "nginx-access.log"
WORK = Path(STATE["CLUSTER_DIR"]) / "work"
FERRY_BIN = STATE["FERRY_BIN"]


# ---- HTTP --------------------------------------------------------------------------


def request(port, method, path, body=b"", headers=None, timeout=120.0):
    """One request on a fresh connection: (status, headers, body bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def request_json(port, method, path, doc=None, token=None, timeout=60.0):
    headers = {"Content-Type": "application/json"} if doc is not None else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    body = json.dumps(doc).encode() if doc is not None else b""
    status, _, data = request(port, method, path, body, headers, timeout)
    return status, json.loads(data) if data else None


def stored_object(key: str) -> Path:
    """s3s-fs keeps the object <key> of bucket B as the file <root>/B/<key>."""
    return S3_BUCKET_DIR / key


def same_bytes(path: Path, data_or_file) -> bool:
    if isinstance(data_or_file, Path):
        with open(path, "rb") as a, open(data_or_file, "rb") as b:
            while True:
                x, y = a.read(8 * MIB), b.read(8 * MIB)
                if x != y:
                    return False
                if not x:
                    return True
    return path.stat().st_size == len(data_or_file) and path.read_bytes() == data_or_file


def access_log_lines(rid_prefix=None):
    """The balancer's access log: one dict per request (see cluster.sh's log_format)."""
    pattern = re.compile(
        r'^(?P<addr>\S+) "(?P<method>\S+) (?P<path>\S+) [^"]*" (?P<status>\d+) (?P<req_len>\d+) '
        r'(?P<bytes>\d+) rt=(?P<rt>\S+) upstream=(?P<upstream>.*?) ustatus=(?P<ustatus>.*?) '
        r'urt=(?P<urt>.*?) rid=(?P<rid>\S+)$')
    out = []
    if not ACCESS_LOG.exists():
        return out
    for line in ACCESS_LOG.read_text(errors="replace").splitlines():
        m = pattern.match(line)
        if m and (rid_prefix is None or m["rid"].startswith(rid_prefix)):
            out.append(m.groupdict())
    return out


def ferry_pids() -> dict[int, int]:
    pids = {}
    for n in (1, 2, 3):
        f = Path(STATE["CLUSTER_DIR"]) / "pids" / f"ferry-{n}.pid"
        if f.exists():
            pids[n] = int(f.read_text().strip())
    return pids


def proc_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def cluster(*args: str, timeout: float = 90.0) -> None:
    subprocess.run([str(CLUSTER_SH), *args], check=True, timeout=timeout)


def instance_of(upstream: str):
    """The instance number behind an upstream address such as 127.0.0.1:4242."""
    for n, port in INSTANCE_PORTS.items():
        if upstream.endswith(f":{port}"):
            return n
    return None


# ---- a client on a slow link --------------------------------------------------------


class PacedRelay:
    """A TCP relay on loopback that holds the client-to-server direction to `rate`
    bytes per second across all connections (a client on a slow link)."""

    def __init__(self, target_port: int, rate: int):
        self.target_port, self.rate = target_port, rate
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.next_free = time.monotonic()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _pace(self, n: int):
        with self.lock:
            now = time.monotonic()
            start = max(now, self.next_free)
            self.next_free = start + n / self.rate
            wait = self.next_free - now
        if wait > 0:
            time.sleep(wait)

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            threading.Thread(target=self._pipe, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, False), daemon=True).start()

    def _pipe(self, src, dst, paced):
        try:
            while True:
                data = src.recv(256 * 1024 if not paced else 64 * 1024)
                if not data:
                    break
                if paced:
                    self._pace(len(data))
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            src.close()

    def close(self):
        self.closed = True
        self.sock.close()


def make_file(path: Path, size: int, seed: int = 7000) -> None:
    """A deterministic file: block i is Random(seed + i)'s bytes."""
    if path.exists() and path.stat().st_size == size:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        for i in range(math.ceil(size / (8 * MIB))):
            f.write(random.Random(seed + i).randbytes(min(8 * MIB, size - i * 8 * MIB)))
