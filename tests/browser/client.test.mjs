// The client module's upload() against the real ferry binary, run in Node (which has
// fetch, Blob and File): parallel chunks, resume, retries, refusals, pause and cancel.
// The fetch it uses is wrapped to count requests and to inject failures.

import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { FerryError, STORAGE_PREFIX, upload } from '../../web/ferry.js';
import { chunkIndex, deterministicBytes, MIB, sleep, startFerry, waitUntil } from './support.mjs';

const API_KEY = 'browser-suite-key';

/** A localStorage stand-in. */
class MemoryStorage {
  #items = new Map();
  getItem(key) {
    return this.#items.has(key) ? this.#items.get(key) : null;
  }
  setItem(key, value) {
    this.#items.set(key, String(value));
  }
  removeItem(key) {
    this.#items.delete(key);
  }
  keys() {
    return [...this.#items.keys()];
  }
}

/** fetch that logs every request and lets a test answer in its place (`intercept`
 * returns a Response, throws, or returns undefined to let the request through). */
function recordingFetch(intercept) {
  const log = [];
  const wrapped = async (url, init = {}) => {
    const entry = { method: init.method ?? 'GET', url: String(url), index: chunkIndex(String(url)), at: Date.now() };
    log.push(entry);
    const injected = await intercept?.(entry, init);
    if (injected) return injected;
    const response = await fetch(url, init);
    entry.status = response.status;
    return response;
  };
  wrapped.log = log;
  wrapped.puts = () => log.filter((e) => e.method === 'PUT');
  return wrapped;
}

function problem(status, code, headers = {}) {
  return new Response(JSON.stringify({ status, code, title: code, detail: `injected ${code}`, type: code }), {
    status,
    headers: { 'Content-Type': 'application/problem+json', ...headers },
  });
}

describe('upload() against a real ferry', () => {
  let ferry;

  before(async () => {
    ferry = await startFerry({
      FERRY__AUTH__API_KEYS: API_KEY,
      FERRY__UPLOADS__MAX_FILE_SIZE: String(16 * MIB),
    });
  });
  after(async () => ferry?.stop());

  const options = (extra = {}) => ({
    server: ferry.url,
    token: API_KEY,
    storage: new MemoryStorage(),
    retryDelay: 20,
    ...extra,
  });

  const stored = (status) => readFileSync(join(ferry.objects, status.key));

  test('a file goes up in parallel chunks and is stored byte for byte', async () => {
    const bytes = deterministicBytes(5 * MIB + 12_345, 21);
    const file = new File([bytes], 'parallel.bin', { type: 'application/octet-stream', lastModified: 1 });
    const fetch = recordingFetch();
    const storage = new MemoryStorage();
    const events = [];
    const transfer = upload(file, options({ fetch, storage, onProgress: (p) => events.push(p) }));
    const status = await transfer.promise;

    assert.equal(status.state, 'completed');
    assert.equal(status.total_chunks, 6);
    assert.ok(status.etag);
    assert.equal(transfer.uploadId, status.upload_id);
    assert.equal(transfer.state, 'completed');
    assert.ok(Buffer.from(bytes).equals(stored(status)));
    assert.deepEqual(fetch.puts().map((p) => p.index).sort((a, b) => a - b), [0, 1, 2, 3, 4, 5]);
    assert.deepEqual(storage.keys(), [], 'a finished upload is forgotten');

    const bytesSeen = events.map((e) => e.bytesUploaded);
    assert.deepEqual(bytesSeen, [...bytesSeen].sort((a, b) => a - b), 'progress never goes back');
    const last = events.at(-1);
    assert.equal(last.state, 'completed');
    assert.equal(last.percent, 100);
    assert.equal(last.bytesUploaded, bytes.length);
    assert.ok(events.some((e) => e.state === 'uploading' && e.speed > 0 && e.eta >= 0), 'speed and ETA are reported');
  });

  test('the chunk size can be chosen, and metadata and content type go along', async () => {
    const bytes = deterministicBytes(300 * 1024, 4);
    const file = new File([bytes], 'meta.txt', { type: 'text/plain', lastModified: 2 });
    const status = await upload(file, options({ chunkSize: 64 * 1024, metadata: { user: '42' } })).promise;
    assert.equal(status.chunk_size, 64 * 1024);
    assert.equal(status.total_chunks, 5);
    assert.equal(status.content_type, 'text/plain');
    assert.deepEqual(status.metadata, { user: '42' });
    assert.ok(Buffer.from(bytes).equals(stored(status)));
  });

  test('an empty file completes at once', async () => {
    const status = await upload(new File([], 'empty.bin', { lastModified: 3 }), options()).promise;
    assert.equal(status.state, 'completed');
    assert.equal(status.size, 0);
    assert.equal(stored(status).length, 0);
  });

  test('a new session of the same file resumes and sends only the missing chunks', async () => {
    const bytes = deterministicBytes(8 * MIB, 9);
    const file = new File([bytes], 'resume.bin', { lastModified: 1_700_000_000_000 });
    const storage = new MemoryStorage();

    // First "page": stop once three chunks are in, as a closed tab would.
    const first = recordingFetch();
    const acked = new Set();
    const one = upload(file, options({
      fetch: first,
      storage,
      parallel: 2,
      onProgress: (p) => {
        if (p.chunksUploaded >= 3) one.pause();
      },
    }));
    await waitUntil('three chunks are in', () => one.state === 'paused' && one.progress.chunksUploaded >= 3);
    for (const put of first.puts()) if (put.status === 200) acked.add(put.index);
    assert.equal(storage.keys().length, 1, 'the upload is remembered');
    assert.ok(storage.keys()[0].startsWith(STORAGE_PREFIX));

    // Second "page": the same file, picked again.
    const second = recordingFetch();
    const two = upload(file, options({ fetch: second, storage }));
    const status = await two.promise;
    assert.equal(two.uploadId, one.uploadId, 'the same upload goes on');
    assert.ok(two.progress.resumed);
    assert.equal(second.log[0].method, 'POST');
    assert.match(second.log[0].url, /\/resume$/);
    const resent = second.puts().map((p) => p.index);
    assert.ok(resent.length < 8 && resent.length > 0, `second session sent ${resent.length} chunks`);
    for (const index of resent) assert.ok(!acked.has(index), `chunk ${index} was acknowledged before, yet sent again`);
    assert.ok(Buffer.from(bytes).equals(stored(status)));
    assert.deepEqual(storage.keys(), []);
  });

  test('a remembered upload the server no longer has is started over', async () => {
    const bytes = deterministicBytes(2 * MIB, 12);
    const file = new File([bytes], 'stale.bin', { lastModified: 5 });
    const storage = new MemoryStorage();
    const fetch = recordingFetch();
    // What a finished upload from an earlier day would leave: a key with a dead upload.
    const probe = upload(file, options({ storage, fetch: recordingFetch(), parallel: 1 }));
    await probe.promise;
    const key = `${STORAGE_PREFIX}${ferry.url} ${file.size} ${file.lastModified} ${file.name}`;
    storage.setItem(key, JSON.stringify({ uploadId: '00000000-0000-4000-8000-000000000000', uploadToken: 'x' }));

    const status = await upload(file, options({ storage, fetch })).promise;
    assert.match(fetch.log[0].url, /\/resume$/);
    assert.ok([403, 404].includes(fetch.log[0].status), `resume answered ${fetch.log[0].status}`);
    assert.equal(fetch.log[1].method, 'POST');
    assert.match(fetch.log[1].url, /\/v1\/uploads$/);
    assert.ok(Buffer.from(bytes).equals(stored(status)));
  });

  test('503 (after Retry-After), a network error and a damaged chunk are retried', async () => {
    const bytes = deterministicBytes(6 * MIB, 33);
    const file = new File([bytes], 'flaky.bin', { lastModified: 6 });
    const tries = new Map();
    const fetch = recordingFetch((entry, init) => {
      if (entry.method !== 'PUT') return undefined;
      const n = (tries.get(entry.index) ?? 0) + 1;
      tries.set(entry.index, n);
      if (n > 1) return undefined;
      if (entry.index === 1) return problem(503, 'storage-unavailable', { 'Retry-After': '1' });
      if (entry.index === 2) throw new TypeError('fetch failed');
      if (entry.index === 3) {
        // A bit flipped on the way: the server sees bytes that do not match Content-MD5.
        const damaged = new Uint8Array(init.body);
        damaged[10] ^= 0xff;
        return fetch_(entry, { ...init, body: damaged });
      }
      if (entry.index === 4) return problem(500, 'internal-error');
      return undefined;
    });
    async function fetch_(entry, init) {
      const response = await globalThis.fetch(entry.url, init);
      entry.status = response.status;
      return response;
    }
    const status = await upload(file, options({ fetch })).promise;
    assert.ok(Buffer.from(bytes).equals(stored(status)));
    const puts = fetch.puts();
    for (const index of [1, 2, 3, 4]) assert.equal(tries.get(index), 2, `chunk ${index} was tried twice`);
    for (const index of [0, 5]) assert.equal(tries.get(index), 1, `chunk ${index} went once`);
    assert.equal(puts.find((p) => p.index === 3).status, 422, 'the damaged copy was refused');
    const [first, retry] = puts.filter((p) => p.index === 1);
    assert.ok(retry.at - first.at >= 950, `Retry-After: 1 was honoured (${retry.at - first.at} ms)`);
  });

  test('a refusal is not retried and carries the server\'s detail', async () => {
    const big = new File([new Uint8Array(17 * MIB)], 'big.bin', { lastModified: 7 });
    const fetch = recordingFetch();
    const transfer = upload(big, options({ fetch }));
    const error = await transfer.promise.then(() => assert.fail('accepted'), (e) => e);
    assert.ok(error instanceof FerryError);
    assert.equal(error.status, 413);
    assert.equal(error.code, 'file-too-large');
    assert.equal(error.message, error.problem.detail);
    assert.match(error.message, /larger than/);
    assert.equal(error.problem.max_file_size, 16 * MIB);
    assert.equal(fetch.log.length, 1, 'no retry');
    assert.equal(transfer.state, 'failed');
  });

  test('creating an upload needs the API key when the server has keys', async () => {
    const file = new File(['hello'], 'key.txt', { lastModified: 8 });
    const missing = await upload(file, options({ token: undefined })).promise.catch((e) => e);
    assert.equal(missing.code, 'missing-token');
    assert.equal(missing.status, 401);
    const wrong = await upload(file, options({ token: 'not-the-key' })).promise.catch((e) => e);
    assert.equal(wrong.code, 'invalid-token');
    assert.equal(wrong.status, 403);
  });

  test('pause stops sending and resume finishes the upload', async () => {
    const bytes = deterministicBytes(6 * MIB, 44);
    const file = new File([bytes], 'pause.bin', { lastModified: 9 });
    const fetch = recordingFetch(async (entry) => {
      if (entry.method === 'PUT') await sleep(50);
    });
    let pausedOnce = false;
    const transfer = upload(file, options({
      fetch,
      parallel: 2,
      onProgress: (p) => {
        if (p.chunksUploaded >= 2 && !pausedOnce) {
          pausedOnce = true;
          transfer.pause();
        }
      },
    }));
    await waitUntil('paused', () => transfer.state === 'paused');
    await sleep(100); // requests aborted by the pause settle
    const sentBefore = fetch.puts().length;
    await sleep(400);
    assert.equal(fetch.puts().length, sentBefore, 'nothing is sent while paused');
    assert.equal(transfer.progress.speed, null, 'no speed while paused');
    transfer.resume();
    const status = await transfer.promise;
    assert.ok(Buffer.from(bytes).equals(stored(status)));
  });

  test('cancel aborts, deletes the upload on the server, and forgets it', async () => {
    const bytes = deterministicBytes(6 * MIB, 55);
    const file = new File([bytes], 'cancel.bin', { lastModified: 10 });
    const storage = new MemoryStorage();
    const fetch = recordingFetch(async (entry) => {
      if (entry.method === 'PUT') await sleep(100);
    });
    const transfer = upload(file, options({ fetch, storage, parallel: 2 }));
    await waitUntil('a chunk is in', () => transfer.progress.chunksUploaded >= 1);
    const staging = join(ferry.objects, '.ferry/staging', transfer.uploadId);
    assert.ok(existsSync(staging), 'chunks are staged');
    await transfer.cancel();

    const error = await transfer.promise.catch((e) => e);
    assert.equal(error.code, 'canceled');
    assert.equal(transfer.state, 'canceled');
    const del = fetch.log.find((e) => e.method === 'DELETE');
    assert.equal(del.status, 204);
    assert.ok(!existsSync(staging), 'the staged chunks are gone');
    assert.deepEqual(storage.keys(), []);
    const putsAfterCancel = fetch.puts().filter((p) => p.at > del.at);
    assert.deepEqual(putsAfterCancel, [], 'nothing is sent after the cancel');
  });

  test('an AbortSignal cancels the upload', async () => {
    const file = new File([deterministicBytes(4 * MIB, 66)], 'signal.bin', { lastModified: 11 });
    const controller = new AbortController();
    const fetch = recordingFetch(async (entry) => {
      if (entry.method === 'PUT') await sleep(100);
    });
    const transfer = upload(file, options({ fetch, signal: controller.signal }));
    await waitUntil('the upload is open', () => transfer.uploadId);
    controller.abort();
    const error = await transfer.promise.catch((e) => e);
    assert.equal(error.code, 'canceled');
    await waitUntil('DELETE is sent', () => fetch.log.find((e) => e.method === 'DELETE' && e.status === 204));
    const response = await globalThis.fetch(`${ferry.url}/v1/uploads/${transfer.uploadId}`);
    assert.equal(response.status, 401, 'still protected');
  });
});
