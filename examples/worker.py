#!/usr/bin/env python3
"""An example ferry worker: the SHA-256 of every completed upload.

It reads ferry's Redis stream `<key_prefix>:v1:events` with a consumer group, takes each
`upload.completed` event, streams the object from S3 while it computes its SHA-256, and
reports through ferry's processor API: `running` with progress (about once a second),
then `done` with {"sha256": …, "bytes": …}, or `failed` if the object cannot be read.
An event is acknowledged (XACK) once reported. Delivery is at least once: the entries a
dead worker left pending are taken over after WORKER_CLAIM_IDLE_MS, and an upload already
done or failed (ferry answers 409 invalid-transition) is just acknowledged.

    pip install -r examples/requirements.txt
    FERRY_PROCESSOR_KEY=<one of auth.processor_keys> python3 examples/worker.py

It reads the same FERRY__… variables as ferry itself, so it runs in the shell that ferry
was configured in: FERRY__SESSIONS__REDIS__URL (redis://127.0.0.1:6379),
FERRY__SESSIONS__REDIS__KEY_PREFIX (ferry), FERRY__STORAGE__S3__BUCKET (required),
FERRY__STORAGE__S3__ENDPOINT, FERRY__STORAGE__S3__REGION (us-east-1),
FERRY__STORAGE__S3__PREFIX, FERRY__STORAGE__S3__ACCESS_KEY_ID and
FERRY__STORAGE__S3__SECRET_ACCESS_KEY (or AWS_ACCESS_KEY_ID… and the rest of the AWS
chain). Its own: FERRY_URL (http://127.0.0.1:8080), FERRY_PROCESSOR_KEY (required),
WORKER_GROUP (sha256), WORKER_NAME (<host>-<pid>), WORKER_CLAIM_IDLE_MS (60000) and
WORKER_DELAY_PER_MIB (0: seconds to sleep per MiB, to play a slower job). Stop it with
Ctrl-C or SIGTERM: an upload it was on is left to another worker.
"""

import hashlib
import json
import os
import signal
import socket
import sys
import time
import urllib.error
import urllib.request

import boto3
import botocore.config
import botocore.exceptions
import redis


def setting(name, default=None):
    value = os.environ.get(name) or default
    if value is None:
        sys.exit(f"worker: set {name}")
    return value


REDIS_URL = setting("FERRY__SESSIONS__REDIS__URL", "redis://127.0.0.1:6379")
STREAM = setting("FERRY__SESSIONS__REDIS__KEY_PREFIX", "ferry") + ":v1:events"
BUCKET = setting("FERRY__STORAGE__S3__BUCKET")
PREFIX = setting("FERRY__STORAGE__S3__PREFIX", "").strip("/")  # as ferry trims it
FERRY_URL = setting("FERRY_URL", "http://127.0.0.1:8080").rstrip("/")
PROCESSOR_KEY = setting("FERRY_PROCESSOR_KEY")
GROUP = setting("WORKER_GROUP", "sha256")
CONSUMER = setting("WORKER_NAME", f"{socket.gethostname()}-{os.getpid()}")
CLAIM_IDLE_MS = int(setting("WORKER_CLAIM_IDLE_MS", "60000"))
DELAY_PER_MIB = float(setting("WORKER_DELAY_PER_MIB", "0"))
PIECE = 1024 * 1024


class Stopping(Exception):
    """SIGINT or SIGTERM arrived: leave the current upload pending for another worker."""


stopping = False


def stop(signum, _frame):
    global stopping
    stopping = True
    log(f"got signal {signum}, stopping")


def log(*words):
    print(f"worker {CONSUMER}:", *words, file=sys.stderr, flush=True)


def report(upload_id, body):
    """POSTs a report to ferry. False when the upload is past it (409: done or failed
    already, a redelivered event) or forgotten (404); raises on anything else."""
    request = urllib.request.Request(
        f"{FERRY_URL}/v1/uploads/{upload_id}/processing",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {PROCESSOR_KEY}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10):
            return True
    except urllib.error.HTTPError as error:
        if error.code not in (404, 409):
            raise RuntimeError(f"ferry answered {error.code}: {error.read().decode(errors='replace')}") from None
        log(f"{upload_id}: skipped, ferry answered {error.code}: {error.read().decode(errors='replace')}")
        return False


def process(r, s3, entry_id, upload_id, key):
    """Hashes the object of a completed upload and reports it; raises to leave it pending."""
    if not report(upload_id, {"status": "running", "progress": 0}):
        return
    object_key = f"{PREFIX}/{key}" if PREFIX else key
    sha, done, last = hashlib.sha256(), 0, time.monotonic()
    try:
        found = s3.get_object(Bucket=BUCKET, Key=object_key)
        size = found["ContentLength"]
        for piece in found["Body"].iter_chunks(PIECE):
            if stopping:
                raise Stopping
            sha.update(piece)
            done += len(piece)
            time.sleep(DELAY_PER_MIB * len(piece) / PIECE)
            if time.monotonic() - last >= 1:
                report(upload_id, {"status": "running", "progress": min(99, done * 100 // max(size, 1))})
                r.xclaim(STREAM, GROUP, CONSUMER, 0, [entry_id], justid=True)  # still ours: not idle
                last = time.monotonic()
    except botocore.exceptions.ClientError as error:
        if error.response["ResponseMetadata"]["HTTPStatusCode"] >= 500:
            raise  # S3 is unwell: try again later
        # S3 refused for good: no such key, access denied…
        report(upload_id, {"status": "failed", "error": f"cannot read s3://{BUCKET}/{object_key}: {error}"})
        log(f"{upload_id}: failed: {error}")
        return
    if report(upload_id, {"status": "done", "result": {"sha256": sha.hexdigest(), "bytes": done}}):
        log(f"{upload_id}: done, {done} bytes, sha256 {sha.hexdigest()}")


def handle(r, s3, entry_id, fields):
    event = json.loads(fields["event"]) if fields and "event" in fields else {}
    data = event.get("data", {})
    # Only completed uploads that have a processing stage (processing.enabled); the rest
    # (other events, entries trimmed away meanwhile) are acknowledged and skipped.
    if event.get("type") == "upload.completed" and "processing" in data:
        process(r, s3, entry_id, event["upload_id"], data["key"])
    r.xack(STREAM, GROUP, entry_id)


def make_group(r):
    """The group starts at the stream's end: events from before are not processed."""
    try:
        r.xgroup_create(STREAM, GROUP, id="$", mkstream=True)
    except redis.ResponseError as error:
        if "BUSYGROUP" not in str(error):
            raise


def main():
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    r = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    endpoint = os.environ.get("FERRY__STORAGE__S3__ENDPOINT") or None
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        config=botocore.config.Config(s3={"addressing_style": "path" if endpoint else "auto"}),  # as ferry
        region_name=setting("FERRY__STORAGE__S3__REGION", "us-east-1"),
        aws_access_key_id=os.environ.get("FERRY__STORAGE__S3__ACCESS_KEY_ID") or None,
        aws_secret_access_key=os.environ.get("FERRY__STORAGE__S3__SECRET_ACCESS_KEY") or None,
    )
    make_group(r)
    log(f"reading {STREAM} as group {GROUP}")
    cursor = "0-0"
    while not stopping:
        try:
            # First the entries another worker took and left idle (it died), then new ones.
            cursor, entries, *_ = r.xautoclaim(STREAM, GROUP, CONSUMER, CLAIM_IDLE_MS, cursor, count=10)
            if not entries:
                read = r.xreadgroup(GROUP, CONSUMER, {STREAM: ">"}, count=10, block=1000)
                entries = [entry for _stream, found in read or [] for entry in found]
            for entry_id, fields in entries:
                if stopping:
                    break
                try:
                    handle(r, s3, entry_id, fields)
                except Stopping:
                    break
                except Exception as error:  # ferry or S3 unreachable…: stays pending, retried later
                    log(f"entry {entry_id} left pending: {error!r}")
        except redis.ResponseError as error:
            if "NOGROUP" not in str(error):
                raise
            make_group(r)  # Redis lost the stream (restarted without its data)
        except redis.ConnectionError as error:
            log(f"redis: {error}; retrying")
            time.sleep(1)
    log("stopped")


if __name__ == "__main__":
    main()
