#!/usr/bin/env python3
"""Checks the Dockerfile's runtime stage without a Docker engine (opt-in; root and the
Debian mirror needed; about two minutes the first time).

It stands in for the image build with Debian's own tools:
  1. debootstrap a minimal Debian bookworm (the release of debian:bookworm-slim) into
     target/image-check/rootfs, once;
  2. run the runtime stage's RUN instruction, as written in the Dockerfile, in a chroot
     of that tree (so apt-get, groupadd, useradd and install are the image's own);
  3. build the binary as the build stage does (`cargo build --release --locked --bin
     ferry`, then strip) and COPY it where the Dockerfile says;
  4. start the image's ENTRYPOINT + CMD with its ENV, USER and WORKDIR, in a mount
     namespace where the whole tree is read-only, /tmp is a tmpfs and WORKDIR is a
     writable volume, and check /healthz, /readyz and a form upload through it; then
     start it again with no volume and expect the embedded default to refuse to start
     (a read-only root filesystem needs the volume, as the README says).

Usage: sudo python3 deploy/check_image.py   (prints "image: N passed, N failed")
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "target" / "image-check"
ROOTFS = WORK / "rootfs"
MIRROR = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")

results: list[tuple[bool, str]] = []


def check(ok: bool, what: str) -> None:
    results.append((bool(ok), what))
    print(f"{'ok  ' if ok else 'FAIL'} {what}", flush=True)


def runtime_stage() -> dict:
    """The instructions of the Dockerfile's last stage, continuations joined."""
    text = (ROOT / "Dockerfile").read_text()
    lines, current = [], ""
    for raw in text.splitlines():
        if raw.lstrip().startswith("#") and not current:
            continue
        if raw.rstrip().endswith("\\"):
            current += raw.rstrip()[:-1] + " "
            continue
        current += raw
        if current.strip():
            lines.append(current.strip())
        current = ""
    stages, stage = [], None
    for line in lines:
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            stage = {"from": rest.split()[0], "run": [], "copy": [], "env": {}}
            stages.append(stage)
        elif stage is None:
            continue
        elif word == "RUN":
            stage["run"].append(rest)
        elif word == "COPY":
            stage["copy"].append(rest.split())
        elif word == "ENV":
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                stage["env"][key] = value
        elif word in ("USER", "WORKDIR"):
            stage[word.lower()] = rest.strip()
        elif word in ("ENTRYPOINT", "CMD"):
            stage[word.lower()] = json.loads(rest)
    return stages[-1]


def sh(*args, **kw):
    print("+", " ".join(str(a) for a in args), flush=True)
    return subprocess.run([str(a) for a in args], check=True, **kw)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(stage: dict, port: int, volume: Path | None, log: Path) -> subprocess.Popen:
    """The container, approximated: read-only root, tmpfs /tmp, USER, WORKDIR, ENV."""
    uid, _, gid = stage["user"].partition(":")
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "HOME": stage["workdir"], **stage["env"],
           "FERRY__SERVER__LISTEN": f"127.0.0.1:{port}"}
    command = stage["entrypoint"] + stage["cmd"]
    volume_mount = (f"mount --bind {shlex.quote(str(volume))} {ROOTFS}{stage['workdir']}\n"
                    if volume else "")
    script = f"""set -e
mount --make-rprivate /
mount --bind {ROOTFS} {ROOTFS}
mount -t proc proc {ROOTFS}/proc
mount -t tmpfs -o mode=1777 tmpfs {ROOTFS}/tmp
{volume_mount}mount -o remount,bind,ro {ROOTFS}
cd {ROOTFS}{stage['workdir']}
exec chroot --userspec={uid}:{gid or uid} {ROOTFS} env -i {' '.join(shlex.quote(f'{k}={v}') for k, v in env.items())} \
    sh -c 'cd {stage['workdir']} && exec "$@"' - {' '.join(shlex.quote(c) for c in command)}
"""
    return subprocess.Popen(["unshare", "-m", "sh", "-c", script], stdout=open(log, "wb"),
                            stderr=subprocess.STDOUT)


def http(port: int, path: str, data: bytes | None = None, headers=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def main() -> int:
    if os.geteuid() != 0:
        print("image: run as root (debootstrap, chroot, mount namespaces)", file=sys.stderr)
        return 2
    stage = runtime_stage()
    check(stage["from"] == "debian:bookworm-slim", f"the runtime stage is {stage['from']}")
    WORK.mkdir(parents=True, exist_ok=True)

    # 1. The base: Debian bookworm, minimal.
    if not (ROOTFS / "etc" / "debian_version").exists():
        shutil.rmtree(ROOTFS, ignore_errors=True)
        if not shutil.which("debootstrap"):
            sh("apt-get", "install", "-y", "-qq", "debootstrap")
        sh("debootstrap", "--variant=minbase", "bookworm", ROOTFS, MIRROR, stdout=subprocess.DEVNULL)
    # Keep the clean base; work on a copy each run.
    image = WORK / "image"
    shutil.rmtree(image, ignore_errors=True)
    sh("cp", "-a", ROOTFS, image)
    globals()["ROOTFS"] = image
    check((image / "etc/debian_version").read_text().startswith("12."), "the base is Debian 12 (bookworm)")

    # 2. The stage's RUN instructions, in a chroot with the host's resolver.
    shutil.copy("/etc/resolv.conf", image / "etc/resolv.conf")
    for run in stage["run"]:
        script = f"mount -t proc proc {image}/proc && exec chroot {image} /bin/sh -c {shlex.quote(run)}"
        done = subprocess.run(["unshare", "-m", "sh", "-c", script],
                              env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive"},
                              capture_output=True, text=True)
        check(done.returncode == 0, f"RUN {run[:70]}... ({done.stderr.strip()[-300:]})")
    check((image / "etc/ssl/certs/ca-certificates.crt").exists(), "CA certificates are installed")
    passwd = (image / "etc/passwd").read_text()
    check(re.search(r"^ferry:x:10001:10001:", passwd, re.M), "user ferry is 10001:10001")

    # 3. The build stage's command, and the COPY.
    # (Stripped afterwards rather than with CARGO_PROFILE_RELEASE_STRIP, which would
    # change the profile and rebuild the shared target folder's release build.)
    sh("cargo", "build", "--release", "--locked", "--bin", "ferry", "--quiet", cwd=ROOT)
    (copy,) = [c for c in stage["copy"] if c[0].startswith("--from=")]
    target = image / copy[-1].lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    sh("strip", "-o", target, ROOT / "target/release/ferry")
    os.chmod(target, 0o755)
    ldd = subprocess.run(["chroot", image, "ldd", copy[-1]], capture_output=True, text=True)
    check(ldd.returncode == 0 and "not found" not in ldd.stdout,
          f"every library of the binary is in the image ({' '.join(l.split()[0] for l in ldd.stdout.splitlines())})")

    # 4. Run it as the image would: read-only root, a volume on WORKDIR.
    volume = WORK / "volume"
    shutil.rmtree(volume, ignore_errors=True)
    volume.mkdir()
    os.chown(volume, 10001, 10001)
    port = free_port()
    proc = start(stage, port, volume, WORK / "ferry.log")
    try:
        for _ in range(100):
            try:
                if http(port, "/readyz")[0] == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None:
                break
            time.sleep(0.1)
        check(http(port, "/healthz")[0] == 200 and http(port, "/readyz")[0] == 200,
              "ferry serves /healthz and /readyz as user 10001 on a read-only root")
        boundary = "imagecheck"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n"
                f"Content-Type: text/plain\r\n\r\nhello from the image\r\n--{boundary}--\r\n").encode()
        status, answer = http(port, "/v1/uploads/form", body,
                              {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        key = json.loads(answer).get("key", "") if status == 201 else ""
        stored = volume / "ferry-data" / "objects" / key
        check(status == 201 and stored.read_bytes() == b"hello from the image",
              f"an upload lands in the volume on {stage['workdir']} ({status})")
        # The compose file's healthcheck, with the image's own bash, head and grep.
        compose = (ROOT / "deploy" / "docker-compose.yml").read_text()
        probe = re.search(r"^\s*- (exec 3<>/dev/tcp/127\.0\.0\.1/8080 .*)$", compose, re.M).group(1)
        probe = probe.replace("/8080", f"/{port}")
        done = subprocess.run(["chroot", "--userspec=10001:10001", image, "bash", "-c", probe], timeout=10)
        check(done.returncode == 0, "the compose healthcheck passes with the image's own tools")
        check(stored.stat().st_uid == 10001, "the stored file belongs to 10001")
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    log = (WORK / "ferry.log").read_text(errors="replace")
    check('"level":"INFO"' in log or '"level":"info"' in log.lower(), "logs are JSON lines")

    # Without the volume, the embedded default cannot write: it must refuse to start.
    port = free_port()
    proc = start(stage, port, None, WORK / "ferry-novolume.log")
    try:
        code = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = None
    check(code not in (0, None), f"without a volume the embedded default refuses to start (exit {code})")

    failed = sum(1 for ok, _ in results if not ok)
    if not failed:
        shutil.rmtree(image, ignore_errors=True)  # keep the clean base for the next run
    print(f"image: {len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
