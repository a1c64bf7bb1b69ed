"""tuspy against ferry's /files/, driven by tuspy.test.mjs (which starts ferry and checks
the stored bytes). Prints one JSON line: the upload URL and the offsets tuspy saw.

Usage: tuspy_upload.py ENDPOINT FILE CHUNK_SIZE [STOP_AT]
With STOP_AT the upload stops there, and a second uploader (as a new process would) goes
on from the upload URL alone: its offset comes from a HEAD.
"""

import json
import sys

from tusclient import client

endpoint, path, chunk_size = sys.argv[1], sys.argv[2], int(sys.argv[3])
stop_at = int(sys.argv[4]) if len(sys.argv) > 4 else None

# The README's snippet, as run here.
tus = client.TusClient(endpoint)
uploader = tus.uploader(path, chunk_size=chunk_size, metadata={"filename": "tuspy.bin"}, upload_checksum=True)
if stop_at is None:
    uploader.upload()
    print(json.dumps({"url": uploader.url, "offset": uploader.offset}))
    sys.exit(0)

uploader.upload(stop_at=stop_at)
stopped = uploader.offset
resumed = tus.uploader(path, url=uploader.url, chunk_size=chunk_size, upload_checksum=True)
resumed_from = resumed.offset
resumed.upload()
print(json.dumps({"url": uploader.url, "stopped": stopped, "resumed_from": resumed_from, "offset": resumed.offset}))
