// The client module's follow() and upload()'s `onStage` against the real ferry binary
// with a processing stage: over server-sent events in headless Chromium (the module as
// ferry serves it at /client/ferry.js), and by polling in Node, which has no EventSource.
// The test plays the processor, reporting with its key.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { follow, md5Base64, upload } from '../../web/ferry.js';
import {
  assertServesCurrentWebFiles,
  deterministicBytes,
  launchBrowser,
  PROCESSING,
  reportProcessing,
  sleep,
  startFerry,
  waitUntil,
} from './support.mjs';

const TIMEOUT = 60_000;
const RESULT_URL = 'https://example.com/result.mp4';

/** A completed upload of one small chunk: `{ id, token }`. */
async function completedUpload(url, name) {
  const bytes = deterministicBytes(100 * 1024, name.length);
  const created = await fetch(`${url}/v1/uploads`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ filename: name, size: bytes.length }),
  }).then((r) => r.json());
  const put = await fetch(`${url}/v1/uploads/${created.upload_id}/chunks/0`, {
    method: 'PUT',
    headers: {
      Authorization: `Bearer ${created.upload_token}`,
      'Content-Type': 'application/octet-stream',
      'Content-MD5': md5Base64(bytes),
    },
    body: bytes,
  }).then((r) => r.json());
  assert.equal(put.state, 'completed');
  return { id: created.upload_id, token: created.upload_token };
}

/** What a test compares of a stage. */
const brief = (s) => ({ stage: s.stage, processing: s.processing, progress: s.progress, url: s.url, error: s.error });

describe('follow() in headless Chromium, over server-sent events', () => {
  let ferry;
  let browser;

  before(async () => {
    ferry = await startFerry(PROCESSING);
    await assertServesCurrentWebFiles(ferry.url);
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
    await ferry?.stop();
  });

  /** A page of ferry's with the module loaded as `window.ferry`, and an EventSource that
   * keeps each stream it opens in `window.sources`, with the processing events it got. */
  async function openPage() {
    const context = await browser.newContext();
    const page = await context.newPage();
    const seen = { requests: [], problems: [] };
    page.on('pageerror', (err) => seen.problems.push(err.message));
    page.on('request', (r) => seen.requests.push({ method: r.method(), url: r.url(), type: r.resourceType() }));
    await page.goto(ferry.url);
    await page.evaluate(async () => {
      const Native = window.EventSource;
      window.sources = [];
      window.EventSource = class extends Native {
        constructor(...args) {
          super(...args);
          this.received = [];
          window.sources.push(this);
          for (const type of ['processing.updated', 'processing.done', 'processing.failed']) {
            this.addEventListener(type, () => this.received.push(type));
          }
        }
      };
      window.ferry = await import('/client/ferry.js');
    });
    const statusReads = (id) =>
      seen.requests.filter((r) => r.method === 'GET' && new URL(r.url).pathname === `/v1/uploads/${id}`).length;
    return { context, page, seen, statusReads };
  }

  /** Starts `follow(id)` in the page; its stages go to `window.stages`, its outcome to
   * `window.outcome`. */
  function startFollowing(page, { id, token }, pollInterval = 2000) {
    return page.evaluate(
      ({ id, token, pollInterval }) => {
        window.stages = [];
        window.watch = window.ferry.follow(id, {
          token,
          pollInterval,
          onStage: (s) => window.stages.push(s),
        });
        window.watch.promise.then(
          (s) => (window.outcome = s.stage),
          (e) => (window.outcome = `rejected: ${e.code}`),
        );
      },
      { id, token, pollInterval },
    );
  }

  const stages = (page) => page.evaluate(() => window.stages.map(({ status, result, ...rest }) => rest));
  const outcome = (page) => page.evaluate(() => window.outcome);
  const source = (page) =>
    page.evaluate(() => window.sources.map((s) => ({ url: s.url, state: s.readyState, received: s.received })));

  test('stages arrive in order, as events, and the stream is closed at the final one', { timeout: TIMEOUT }, async () => {
    const up = await completedUpload(ferry.url, 'ordered.bin');
    const { context, page, seen, statusReads } = await openPage();
    await startFollowing(page, up);
    // Connected, and the status read once: queued.
    await waitUntil('the stream is open', async () => (await source(page))[0]?.state === 1);
    await waitUntil('the first stage', async () => (await stages(page)).length === 1);

    for (const progress of [30, 60]) await reportProcessing(ferry.url, up.id, { status: 'running', progress });
    await reportProcessing(ferry.url, up.id, { status: 'done', result: { url: RESULT_URL, frames: 12 } });
    await waitUntil('the final stage', () => outcome(page));

    assert.equal(await outcome(page), 'done');
    const id = up.id;
    const processing = (status, progress) =>
      ({ stage: 'processing', uploadId: id, processing: status, progress, url: null, error: null });
    assert.deepEqual(await stages(page), [
      processing('queued', 0),
      processing('running', 30),
      processing('running', 60),
      { stage: 'done', uploadId: id, processing: 'done', progress: 100, url: RESULT_URL, error: null },
    ]);
    const final = await page.evaluate(() => window.watch.stage);
    assert.deepEqual(final.result, { url: RESULT_URL, frames: 12 });
    assert.equal(final.status.stage, 'done');

    // Each change came as its event on the one stream, which is now closed for good.
    await sleep(500);
    const [stream, ...others] = await source(page);
    assert.deepEqual(others, [], 'one stream');
    assert.equal(new URL(stream.url).pathname, `/v1/uploads/${id}/events`);
    assert.equal(new URL(stream.url).searchParams.get('token'), up.token);
    assert.deepEqual(stream.received, ['processing.updated', 'processing.updated', 'processing.done']);
    assert.equal(stream.state, 2, 'closed');
    assert.equal(seen.requests.filter((r) => r.type === 'eventsource').length, 1, 'no reconnection');
    assert.equal(statusReads(id), 1, 'the status is read once, when the stream opens: no polling');
    assert.deepEqual(seen.problems, []);
    await context.close();
  });

  test('a stage that became final before the stream opened is read at once', { timeout: TIMEOUT }, async () => {
    const up = await completedUpload(ferry.url, 'early.bin');
    await reportProcessing(ferry.url, up.id, { status: 'running', progress: 10 });
    await reportProcessing(ferry.url, up.id, { status: 'failed', error: 'the codec is not supported' });
    const { context, page, seen } = await openPage();
    await startFollowing(page, up);
    await waitUntil('the final stage', () => outcome(page), 10_000);
    assert.equal(await outcome(page), 'failed');
    assert.deepEqual((await stages(page)).map(brief), [
      { stage: 'failed', processing: 'failed', progress: 10, url: null, error: 'the codec is not supported' },
    ]);
    assert.equal((await source(page))[0].state, 2, 'closed');
    assert.deepEqual(seen.problems, []);
    await context.close();
  });

  test('close() stops following: the stream is closed and later changes are not reported', { timeout: TIMEOUT }, async () => {
    const up = await completedUpload(ferry.url, 'closed.bin');
    const { context, page } = await openPage();
    await startFollowing(page, up);
    await waitUntil('the first stage', async () => (await stages(page)).length === 1);
    await page.evaluate(() => window.watch.close());
    await waitUntil('the promise settles', () => outcome(page));
    assert.equal(await outcome(page), 'rejected: canceled');
    assert.equal((await source(page))[0].state, 2, 'closed');
    await reportProcessing(ferry.url, up.id, { status: 'running', progress: 50 });
    await sleep(500);
    assert.equal((await stages(page)).length, 1);
    await context.close();
  });

  test('when the stream is refused, the status is polled instead', { timeout: TIMEOUT }, async () => {
    const up = await completedUpload(ferry.url, 'polled.bin');
    const { context, page, statusReads } = await openPage();
    await page.route('**/v1/uploads/*/events*', (route) => route.fulfill({ status: 503, body: 'no streams today' }));
    await startFollowing(page, up, 100);
    await waitUntil('the first stage', async () => (await stages(page)).length === 1);
    await reportProcessing(ferry.url, up.id, { status: 'running', progress: 45 });
    await waitUntil('45%', async () => (await stages(page)).at(-1).progress === 45);
    await reportProcessing(ferry.url, up.id, { status: 'done', result: { url: RESULT_URL } });
    await waitUntil('the final stage', () => outcome(page));
    const seen = (await stages(page)).map((s) => `${s.stage} ${s.progress}`);
    assert.deepEqual(seen, ['processing 0', 'processing 45', 'done 100']);
    const reads = statusReads(up.id);
    assert.ok(reads >= 3, `polled (${reads} reads)`);
    await sleep(400);
    assert.equal(statusReads(up.id), reads, 'polling stops at the final stage');
    await context.close();
  });
});

describe('follow() and upload() onStage in Node (no EventSource: polling)', () => {
  let ferry;
  let plain;

  before(async () => {
    [ferry, plain] = await Promise.all([startFerry(PROCESSING), startFerry()]);
  });
  after(async () => Promise.all([ferry?.stop(), plain?.stop()]));

  const file = (name) => new File([deterministicBytes(200 * 1024, 3)], name, { lastModified: 1 });
  const options = (server, extra = {}) => ({ server, resume: false, EventSource: null, pollInterval: 50, ...extra });

  test('upload() resolves at completion and onStage follows processing to done', { timeout: TIMEOUT }, async () => {
    const seen = [];
    const transfer = upload(file('stage.bin'), options(ferry.url, { onStage: (s) => seen.push(s) }));
    const status = await transfer.promise;
    assert.equal(status.state, 'completed');
    assert.equal(status.stage, 'processing', 'the promise does not wait for processing');
    assert.deepEqual(seen.map(brief), [{ stage: 'processing', processing: 'queued', progress: 0, url: null, error: null }]);
    await reportProcessing(ferry.url, status.upload_id, { status: 'running', progress: 45 });
    await waitUntil('45%', () => seen.at(-1).progress === 45);
    await reportProcessing(ferry.url, status.upload_id, { status: 'done', result: { url: RESULT_URL } });
    await waitUntil('done', () => seen.at(-1).stage === 'done');
    assert.deepEqual(seen.map((s) => `${s.stage} ${s.processing} ${s.progress}`), [
      'processing queued 0',
      'processing running 45',
      'done done 100',
    ]);
    assert.equal(seen.at(-1).url, RESULT_URL);
    assert.equal(transfer.state, 'completed');
  });

  test('with waitForProcessing, upload() waits for the stage and rejects when it fails', { timeout: TIMEOUT }, async () => {
    let settled = false;
    const transfer = upload(file('wait.bin'), options(ferry.url, { waitForProcessing: true }));
    transfer.promise.finally(() => (settled = true)).catch(() => {});
    await waitUntil('completed', () => transfer.state === 'completed');
    await sleep(200);
    assert.equal(settled, false, 'still processing');
    await reportProcessing(ferry.url, transfer.uploadId, { status: 'failed', error: 'the file is not a video' });
    await assert.rejects(transfer.promise, { code: 'processing-failed', message: 'the file is not a video' });
    assert.equal(transfer.state, 'completed', 'the bytes are still in');

    const done = upload(file('wait-done.bin'), options(ferry.url, { waitForProcessing: true }));
    await waitUntil('completed', () => done.state === 'completed');
    await reportProcessing(ferry.url, done.uploadId, { status: 'done', result: { url: RESULT_URL } });
    const status = await done.promise;
    assert.equal(status.stage, 'done');
    assert.deepEqual(status.processing.result, { url: RESULT_URL });
  });

  test('cancel() after completion stops following and keeps the upload', { timeout: TIMEOUT }, async () => {
    const transfer = upload(file('cancel.bin'), options(ferry.url, { waitForProcessing: true }));
    await waitUntil('completed', () => transfer.state === 'completed');
    await transfer.cancel();
    await assert.rejects(transfer.promise, { code: 'canceled' });
    const status = await reportProcessing(ferry.url, transfer.uploadId, { status: 'running', progress: 5 });
    assert.equal(status.state, 'completed', 'not deleted');
  });

  test('follow() polls, and reports an upload that is gone as failed', { timeout: TIMEOUT }, async () => {
    const created = await fetch(`${ferry.url}/v1/uploads`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ filename: 'gone.bin', size: 1000 }),
    }).then((r) => r.json());
    const { upload_id: id, upload_token: token } = created;
    const seen = [];
    const watch = follow(id, options(ferry.url, { token, onStage: (s) => seen.push(s) }));
    await waitUntil('the first stage', () => seen.length === 1);
    assert.deepEqual(brief(seen[0]), { stage: 'uploading', processing: null, progress: 0, url: null, error: null });

    const refused = follow(id, options(ferry.url, { token: 'not-the-token' }));
    await assert.rejects(refused.promise, (err) => err.status === 401 || err.status === 403);

    const deleted = await fetch(`${ferry.url}/v1/uploads/${id}`, {
      method: 'DELETE',
      headers: { Authorization: `Bearer ${token}` },
    });
    assert.equal(deleted.status, 204);
    const gone = await watch.promise;
    assert.equal(gone.stage, 'failed');
    assert.match(gone.error, /cancel/i, 'the reason is given');
    assert.deepEqual(seen.map((s) => s.stage), ['uploading', 'failed']);
  });

  test('without a processing stage, onStage says done at once and nothing is followed', { timeout: TIMEOUT }, async () => {
    const requests = [];
    const fetchSpy = (url, init) => {
      requests.push(`${init?.method ?? 'GET'} ${new URL(url).pathname}`);
      return fetch(url, init);
    };
    const seen = [];
    const transfer = upload(file('plain.bin'), options(plain.url, { fetch: fetchSpy, onStage: (s) => seen.push(s) }));
    const status = await transfer.promise;
    assert.equal(status.stage, 'done');
    assert.deepEqual(seen.map(brief), [{ stage: 'done', processing: null, progress: 100, url: null, error: null }]);
    const after = requests.length;
    await sleep(200);
    assert.equal(requests.length, after, 'no polling');
  });
});
