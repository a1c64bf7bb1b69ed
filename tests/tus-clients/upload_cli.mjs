// tus-js-client as a command: uploads one file to a tus endpoint and prints one JSON line.
// The cluster test (tests/cluster/tus_check.py) runs it through the balancer of three
// ferry instances while it kills one of them, so it retries the way an application would.
//
// Usage: node upload_cli.mjs ENDPOINT FILE CHUNK_SIZE [PARALLEL]
// With PARALLEL above 1 the file goes as that many partial uploads, concatenated at the
// end (tus-js-client's `parallelUploads`; needs the server's `concatenation` extension).
// Prints {"url", "size", "seconds", "retries": [{"status", "message"}, ...]} on success;
// on failure, the error on stderr and exit code 1. Each retry is also logged on stderr.

import { createReadStream, statSync } from 'node:fs';
import { basename } from 'node:path';

import * as tus from 'tus-js-client';

const [endpoint, path, chunkArg, parallelArg] = process.argv.slice(2);
if (!endpoint || !path || !chunkArg) {
  console.error('usage: node upload_cli.mjs ENDPOINT FILE CHUNK_SIZE [PARALLEL]');
  process.exit(2);
}
const chunkSize = Number(chunkArg);
const parallelUploads = Number(parallelArg ?? 1);

// An instance killed in the middle of a PATCH keeps that upload's append claim until it
// lapses (10 s after its last heartbeat); meanwhile the others answer 423 and
// tus-js-client waits and tries again. The delays cover about 100 s with no progress (a
// wide margin); the count starts again after each PATCH that moves the offset.
const retryDelays = [0, 500, 1000, 2000, 4000, ...Array(18).fill(5000)];

/** tus-js-client's own rule (retry unless a 4xx other than 409 and 423), with a log line. */
const retries = [];
function onShouldRetry(err, attempt) {
  const status = err.originalResponse ? err.originalResponse.getStatus() : 0;
  const retry = !(status >= 400 && status < 500) || status === 409 || status === 423;
  const message = String(err.message).split('\n')[0];
  retries.push({ status, message });
  console.error(`upload_cli: attempt ${attempt + 1} failed (${status || 'no answer'}: ${message}); ${retry ? 'retrying' : 'giving up'}`);
  return retry;
}

const size = statSync(path).size;
const started = performance.now();
const upload = new tus.Upload(createReadStream(path), {
  endpoint,
  chunkSize,
  parallelUploads,
  retryDelays,
  onShouldRetry,
  metadata: { filename: basename(path), filetype: 'application/octet-stream' },
  onSuccess: () => {
    const seconds = (performance.now() - started) / 1000;
    console.log(JSON.stringify({ url: upload.url, size, seconds, retries }));
  },
  onError: (err) => {
    console.error(`upload_cli: the upload failed: ${err}`);
    process.exitCode = 1;
  },
});
upload.start();
