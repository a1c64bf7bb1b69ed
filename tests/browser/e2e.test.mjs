// End to end in headless Chromium: the page ferry serves at `/`, the real ferry binary
// behind it, files picked through the page's <input type=file> as a person would.

import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import {
  assertServesCurrentWebFiles,
  chunkIndex,
  launchBrowser,
  MIB,
  PROCESSING,
  reportProcessing,
  sleep,
  startFerry,
  tempDir,
  waitUntil,
  writeTestFile,
} from './support.mjs';

const TIMEOUT = 120_000;
const SCREENSHOTS = process.env.FERRY_BROWSER_SCREENSHOTS;

/** A fresh browser context (its own localStorage) on `url`, which records the chunk
 * requests, can slow them down, and collects the page's errors. */
async function openPage(browser, url) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const seen = { session: 1, puts: [], acks: [], deletes: [], problems: [], delay: 0, held: null };
  page.on('pageerror', (err) => seen.problems.push(`page error: ${err.message}`));
  page.on('console', (message) => {
    if (/Content Security Policy|Refused to/i.test(message.text())) seen.problems.push(message.text());
  });
  page.on('request', (request) => {
    const index = chunkIndex(request.url());
    if (request.method() === 'PUT' && index !== null) seen.puts.push({ session: seen.session, index });
  });
  page.on('response', (response) => {
    const request = response.request();
    const index = chunkIndex(request.url());
    if (request.method() === 'PUT' && index !== null && response.status() === 200) {
      seen.acks.push({ session: seen.session, index });
    }
    if (request.method() === 'DELETE') seen.deletes.push(response.status());
  });
  // Throttle: hold each chunk back a little, so a test can act in the middle of an upload;
  // `hold()` keeps every chunk sent from then on back until `release()`.
  seen.hold = () => {
    let release;
    seen.held = new Promise((ok) => (release = ok));
    seen.release = () => {
      seen.held = null;
      release();
    };
  };
  await page.route('**/v1/uploads/*/chunks/*', async (route) => {
    if (seen.delay) await sleep(seen.delay);
    if (seen.held) await seen.held;
    try {
      await route.continue();
    } catch {
      // the page went away (reload) while the chunk was held back
    }
  });
  await page.goto(url);
  return { context, page, seen };
}

const row = (page) => page.locator('li.upload').first();
const chunksDone = async (page) => Number(((await row(page).getAttribute('data-chunks')) ?? '0/0').split('/')[0]);
const rememberedUploads = (page) =>
  page.evaluate(() => Object.keys(localStorage).filter((key) => key.startsWith('ferry:upload:')));

async function screenshot(page, name) {
  if (SCREENSHOTS) await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true });
}

describe('the upload page in headless Chromium', () => {
  let ferry;
  let browser;
  let files;

  before(async () => {
    files = tempDir();
    ferry = await startFerry();
    await assertServesCurrentWebFiles(ferry.url);
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
    await ferry?.stop();
    files?.remove();
  });

  test('a 20 MiB file survives a reload in the middle and is stored byte-identical', { timeout: TIMEOUT }, async (t) => {
    const { path, bytes } = writeTestFile(files.dir, 'reload-20MiB.bin', 20 * MIB, 2026);
    const { context, page, seen } = await openPage(browser, ferry.url);
    seen.delay = 200;

    // First visit: pick the file, let about a third of it go up, then hold the rest back.
    await page.setInputFiles('#files', path);
    await waitUntil('six chunks are acknowledged', async () => (await chunksDone(page)) >= 6);
    seen.hold();
    const first = row(page);
    const uploadId = await first.getAttribute('data-upload-id');
    assert.equal(await first.getAttribute('data-chunks').then((c) => c.split('/')[1]), '20');
    assert.equal(await first.getAttribute('data-state'), 'uploading');
    assert.match(await first.locator('.speed').textContent(), /\/s$/, 'speed is shown');
    assert.match(await first.locator('.eta').textContent(), /left$/, 'ETA is shown');
    assert.deepEqual((await rememberedUploads(page)).length, 1, 'the upload is remembered');
    await screenshot(page, '1-before-reload');

    // Reload in the middle: chunks in flight are lost with the page.
    await page.reload();
    const ackedBefore = new Set(seen.acks.map((a) => a.index));
    assert.ok(ackedBefore.size <= 14, `reloaded in the middle (${ackedBefore.size} of 20 chunks in)`);
    seen.release();
    seen.session = 2;
    seen.delay = 20;
    assert.equal(await page.locator('li.upload').count(), 0);
    assert.equal((await rememberedUploads(page)).length, 1, 'the upload is still remembered after a reload');

    // Second visit: the same file from disk (same name, size and lastModified).
    await page.setInputFiles('#files', path);
    const second = row(page);
    await waitUntil('the upload resumes', async () => (await second.getAttribute('data-resumed')) === 'true');
    await screenshot(page, '2-resumed');
    await second.locator('[data-state="completed"]').or(page.locator('li.upload[data-state="completed"]'))
      .first().waitFor({ timeout: 60_000 });
    await screenshot(page, '3-done');
    assert.equal(await second.getAttribute('data-upload-id'), uploadId, 'the same upload went on');

    // Only the missing chunks went again.
    const sentFirst = seen.puts.filter((p) => p.session === 1).map((p) => p.index);
    const sentSecond = seen.puts.filter((p) => p.session === 2).map((p) => p.index);
    assert.ok(sentSecond.length > 0 && sentSecond.length < 20, `second visit sent ${sentSecond.length} chunks`);
    for (const index of sentSecond) {
      assert.ok(!ackedBefore.has(index), `chunk ${index} was acknowledged before the reload, yet sent again`);
    }
    const sentTwice = sentSecond.filter((index) => sentFirst.includes(index));
    t.diagnostic(
      `first visit: ${sentFirst.length} chunks sent, ${ackedBefore.size} acknowledged; ` +
        `second visit: ${sentSecond.length} sent (${sentTwice.length} of them lost in the reload)`,
    );
    assert.equal(new Set([...sentFirst, ...sentSecond]).size, 20, 'every chunk was sent');
    assert.equal(seen.puts.length, 20 + sentTwice.length, 'chunks went once, plus those lost in the reload');
    assert.equal(new Set(sentSecond).size, sentSecond.length, 'no chunk went twice in the second visit');

    // The object is the file, byte for byte.
    const key = await second.getAttribute('data-key');
    assert.equal(key, `${uploadId}/reload-20MiB.bin`);
    assert.ok(Buffer.from(bytes).equals(readFileSync(join(ferry.objects, key))), 'stored object differs');
    assert.match(await second.locator('.state').textContent(), /^Done, stored as /);
    assert.deepEqual(await rememberedUploads(page), [], 'a finished upload is forgotten');
    assert.deepEqual(seen.problems, []);
    await context.close();
  });

  test('Pause stops sending and Resume finishes the upload', { timeout: TIMEOUT }, async () => {
    const { path, bytes } = writeTestFile(files.dir, 'pause.bin', 6 * MIB, 7);
    const { context, page, seen } = await openPage(browser, ferry.url);
    seen.delay = 150;
    await page.setInputFiles('#files', path);
    await waitUntil('a chunk is in', async () => (await chunksDone(page)) >= 1);

    await page.getByRole('button', { name: 'Pause pause.bin' }).click();
    await waitUntil('paused', async () => (await row(page).getAttribute('data-state')) === 'paused');
    assert.equal(await row(page).locator('.state').textContent(), 'Paused');
    await sleep(300); // chunks held back when Pause was pressed are let go, then aborted
    const sent = seen.puts.length;
    await sleep(700);
    assert.equal(seen.puts.length, sent, 'nothing is sent while paused');

    await page.getByRole('button', { name: 'Resume pause.bin' }).click();
    await page.locator('li.upload[data-state="completed"]').waitFor({ timeout: 60_000 });
    const key = await row(page).getAttribute('data-key');
    assert.ok(Buffer.from(bytes).equals(readFileSync(join(ferry.objects, key))));
    assert.deepEqual(seen.problems, []);
    await context.close();
  });

  test('a file dropped on the page is uploaded', { timeout: TIMEOUT }, async () => {
    const { context, page, seen } = await openPage(browser, ferry.url);
    await page.evaluate(() => {
      const bytes = new Uint8Array(300 * 1024).map((_, i) => (i * 7) & 0xff);
      const data = new DataTransfer();
      data.items.add(new File([bytes], 'dropped.bin', { type: 'application/octet-stream' }));
      const drop = document.getElementById('drop');
      drop.dispatchEvent(new DragEvent('dragover', { dataTransfer: data, bubbles: true, cancelable: true }));
      drop.dispatchEvent(new DragEvent('drop', { dataTransfer: data, bubbles: true, cancelable: true }));
    });
    await page.locator('li.upload[data-state="completed"]').waitFor();
    const stored = readFileSync(join(ferry.objects, await row(page).getAttribute('data-key')));
    assert.equal(stored.length, 300 * 1024);
    assert.ok(stored.every((byte, i) => byte === ((i * 7) & 0xff)));
    assert.equal(await page.locator('#drop').getAttribute('class'), 'drop', 'the drop highlight is cleared');
    assert.equal(await row(page).getAttribute('data-stage'), 'done', 'no processing stage: done once completed');
    assert.match(await row(page).locator('.state').textContent(), /^Done, stored as /);
    assert.ok(await row(page).getByRole('link').isHidden(), 'no result link');
    assert.deepEqual(seen.problems, []);
    await context.close();
  });

  test('Cancel deletes the upload and its stored chunks', { timeout: TIMEOUT }, async () => {
    const { path } = writeTestFile(files.dir, 'cancel.bin', 8 * MIB, 8);
    const { context, page, seen } = await openPage(browser, ferry.url);
    seen.delay = 200;
    await page.setInputFiles('#files', path);
    await waitUntil('a chunk is in', async () => (await chunksDone(page)) >= 1);
    const uploadId = await row(page).getAttribute('data-upload-id');
    const staging = join(ferry.objects, '.ferry/staging', uploadId);
    assert.ok(existsSync(staging), 'chunks are staged');
    const [remembered] = await rememberedUploads(page);
    const { uploadToken } = JSON.parse(await page.evaluate((key) => localStorage.getItem(key), remembered));

    const deleted = page.waitForResponse((r) => r.request().method() === 'DELETE');
    await page.getByRole('button', { name: 'Cancel cancel.bin' }).click();
    assert.equal((await deleted).status(), 204);
    await page.locator('li.upload[data-state="canceled"]').waitFor();
    assert.equal(await row(page).locator('.state').textContent(), 'Canceled');
    await waitUntil('the staged chunks are gone', () => !existsSync(staging), 5000);
    assert.deepEqual(await rememberedUploads(page), []);
    const status = await fetch(`${ferry.url}/v1/uploads/${uploadId}`, {
      headers: { Authorization: `Bearer ${uploadToken}` },
    });
    assert.equal(status.status, 410);
    assert.equal((await status.json()).code, 'upload-canceled');
    assert.deepEqual(seen.deletes, [204]);
    assert.deepEqual(seen.problems, []);
    await context.close();
  });
});

describe('the upload page and a server that refuses', () => {
  let ferry;
  let browser;
  let files;

  before(async () => {
    files = tempDir();
    ferry = await startFerry({
      FERRY__UPLOADS__MAX_FILE_SIZE: String(MIB),
      FERRY__AUTH__API_KEYS: 'page-key',
    });
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
    await ferry?.stop();
    files?.remove();
  });

  test('a missing API key and a file too large are explained plainly', { timeout: TIMEOUT }, async () => {
    const { context, page, seen } = await openPage(browser, ferry.url);
    const small = writeTestFile(files.dir, 'small.bin', 200 * 1024, 3);

    // No API key yet: the page says what to do.
    await page.setInputFiles('#files', small.path);
    await page.locator('li.upload[data-state="failed"]').waitFor();
    const error = row(page).locator('.error');
    assert.equal(await error.getAttribute('role'), 'alert');
    assert.match(await error.textContent(), /asks for an API key: enter it under Settings, then press Retry/);
    await screenshot(page, '4-needs-key');

    // With the key, Retry goes through.
    assert.ok(await page.locator('details.settings').evaluate((d) => d.open), 'Settings are opened for the key');
    await page.getByLabel('API key').fill('page-key');
    await page.getByRole('button', { name: 'Retry small.bin' }).click();
    await page.locator('li.upload[data-state="completed"]').waitFor();
    assert.equal(await error.textContent(), '');
    const key = await row(page).getAttribute('data-key');
    assert.ok(Buffer.from(small.bytes).equals(readFileSync(join(ferry.objects, key))));

    // Too large: the server's reason, and no retry.
    const big = writeTestFile(files.dir, 'big.bin', 2 * MIB, 4);
    const before = seen.puts.length;
    await page.setInputFiles('#files', big.path);
    await page.locator('li.upload[data-state="failed"]').waitFor();
    const bigError = await row(page).locator('.error').textContent();
    assert.equal(
      bigError,
      'The server refused this file: the file is larger than the 1048576 bytes allowed (1.0 MiB at most).',
    );
    assert.equal(seen.puts.length, before, 'no chunk was sent');
    assert.ok(await page.getByRole('button', { name: 'Retry big.bin' }).isHidden(), 'no Retry for a refused file');
    assert.equal(await page.locator('li.upload').count(), 2);
    await screenshot(page, '5-too-large');
    assert.deepEqual(seen.problems, []);
    await context.close();
  });
});

describe('the upload page and a processing stage', () => {
  let ferry;
  let browser;
  let files;

  before(async () => {
    files = tempDir();
    ferry = await startFerry(PROCESSING);
    await assertServesCurrentWebFiles(ferry.url);
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
    await ferry?.stop();
    files?.remove();
  });

  /** Picks `name` on a fresh page and waits until its row shows the processing stage.
   * Returns the page, its row, the upload id and the event streams the page opened. */
  async function uploadAndWaitForProcessing(name) {
    const { path } = writeTestFile(files.dir, name, 300 * 1024, name.length);
    const opened = await openPage(browser, ferry.url);
    const streams = [];
    opened.page.on('response', (response) => {
      if (response.request().resourceType() === 'eventsource') {
        streams.push({ url: response.url(), status: response.status(), type: response.headers()['content-type'] });
      }
    });
    await opened.page.setInputFiles('#files', path);
    await opened.page.locator('li.upload[data-stage="processing"]').waitFor();
    const id = await row(opened.page).getAttribute('data-upload-id');
    return { ...opened, row: row(opened.page), id, streams };
  }

  const figures = async (li) => ({
    state: await li.locator('.state').textContent(),
    percent: await li.locator('.percent').textContent(),
    bar: await li.locator('progress').evaluate((bar) => bar.value),
  });

  test('a row goes Processing… 0%, 45%, then Done with a link to the result', { timeout: TIMEOUT }, async () => {
    const { context, page, seen, row: li, id, streams } = await uploadAndWaitForProcessing('clip.mp4');
    assert.equal(await li.getAttribute('data-state'), 'completed');
    assert.match((await figures(li)).state, /^Processing…/);
    await waitUntil('0%', async () => (await figures(li)).percent === '0%');
    assert.ok(await li.getByRole('link').isHidden(), 'no link yet');

    await reportProcessing(ferry.url, id, { status: 'running', progress: 45 });
    await waitUntil('45%', async () => (await figures(li)).percent === '45%', 10_000);
    assert.deepEqual(await figures(li), { state: 'Processing…', percent: '45%', bar: 45 });
    await screenshot(page, '6-processing');

    const url = 'https://example.com/result.mp4';
    await reportProcessing(ferry.url, id, { status: 'done', result: { url, duration: 12.5 } });
    await page.locator('li.upload[data-stage="done"]').waitFor({ timeout: 10_000 });
    assert.deepEqual(await figures(li), { state: `Done, stored as ${id}/clip.mp4`, percent: '100%', bar: 100 });
    const link = li.getByRole('link', { name: 'Open result' });
    assert.equal(await link.getAttribute('href'), url);
    assert.ok(await link.isVisible());
    assert.ok(await page.getByRole('button', { name: 'Remove clip.mp4 from the list' }).isVisible());
    await screenshot(page, '7-processed');

    // The page followed over server-sent events, with the upload token.
    assert.equal(streams.length, 1, `one stream: ${JSON.stringify(streams)}`);
    assert.equal(new URL(streams[0].url).pathname, `/v1/uploads/${id}/events`);
    assert.equal(streams[0].status, 200);
    assert.match(streams[0].type, /^text\/event-stream/);
    assert.deepEqual(seen.problems, []);
    await context.close();
  });

  test('a processing failure is shown with its reason', { timeout: TIMEOUT }, async () => {
    const { context, page, seen, row: li, id } = await uploadAndWaitForProcessing('broken.mp4');
    await reportProcessing(ferry.url, id, { status: 'running', progress: 20 });
    await waitUntil('20%', async () => (await figures(li)).percent === '20%', 10_000);
    await reportProcessing(ferry.url, id, { status: 'failed', error: 'the video codec is not supported' });
    await page.locator('li.upload[data-stage="failed"]').waitFor({ timeout: 10_000 });
    assert.deepEqual(await figures(li), { state: 'Failed: the video codec is not supported', percent: '20%', bar: 20 });
    assert.equal(await li.getAttribute('data-state'), 'completed', 'the bytes are stored all the same');
    assert.ok(await li.getByRole('link').isHidden(), 'no result link');
    assert.ok(await page.getByRole('button', { name: 'Retry broken.mp4' }).isHidden(), 'nothing to retry');
    await screenshot(page, '8-processing-failed');
    assert.deepEqual(seen.problems, []);
    await context.close();
  });
});
