// Uppy (@uppy/core + @uppy/tus, from npm) in headless Chromium, on a page served from a
// second origin, uploading to ferry's /files/ cross-origin: allowed by
// `server.cors_origins`, and blocked by the browser when the page's origin is not listed.
// The page loads one script that esbuild bundles from node_modules when the test starts.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { build } from 'esbuild';

import { deterministicBytes, launchBrowser, MIB, startFerry } from './support.mjs';

const TIMEOUT = 120_000;
const HERE = fileURLToPath(new URL('.', import.meta.url));

/** Uppy core and its tus plugin as one script for the page (window.Uppy, window.Tus). */
async function bundleUppy() {
  const result = await build({
    stdin: {
      contents: "import Uppy from '@uppy/core'; import Tus from '@uppy/tus'; window.Uppy = Uppy; window.Tus = Tus;",
      resolveDir: HERE,
      loader: 'js',
    },
    bundle: true,
    write: false,
    format: 'iife',
    platform: 'browser',
    target: 'es2022',
    logLevel: 'silent',
  });
  return result.outputFiles[0].text;
}

/** The app page: adds a generated file to Uppy, uploads it with the tus plugin, and
 * resolves with what Uppy's `complete` event reports. */
const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>Uppy to ferry</title>
<script src="/uppy.js"></script>
<script>
${deterministicBytes.toString()}
window.uploadGenerated = ({ endpoint, name, size, seed, chunkSize, retryDelays }) =>
  new Promise((resolve) => {
    const uppy = new Uppy({ autoProceed: false }).use(Tus, { endpoint, chunkSize, retryDelays });
    uppy.on('complete', (result) => resolve({
      successful: result.successful.map((file) => ({ size: file.size, uploadURL: file.response?.uploadURL })),
      failed: result.failed.map((file) => String(file.error)),
    }));
    uppy.addFile({ name, type: 'application/octet-stream',
      data: new File([deterministicBytes(size, seed)], name, { type: 'application/octet-stream' }) });
    uppy.upload().catch((err) => resolve({ successful: [], failed: [String(err)] }));
  });
</script></head><body><p>app page</p></body></html>`;

/** The app's origin: a small HTTP server on another port than ferry's. */
async function startAppServer() {
  const script = await bundleUppy();
  const server = createServer((request, response) => {
    if (request.url === '/') {
      response.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end(PAGE);
    } else if (request.url === '/uppy.js') {
      response.writeHead(200, { 'Content-Type': 'text/javascript; charset=utf-8' }).end(script);
    } else {
      response.writeHead(404).end();
    }
  });
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  const origin = `http://127.0.0.1:${server.address().port}`;
  return { origin, stop: () => new Promise((ok) => server.close(ok)) };
}

/** A fresh context on the app page; counts the PATCHes and collects the console. */
async function openApp(browser, origin) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const seen = { patches: 0, console: [], pageErrors: [] };
  page.on('console', (message) => seen.console.push(message.text()));
  page.on('pageerror', (err) => seen.pageErrors.push(err.message));
  page.on('request', (request) => {
    if (request.method() === 'PATCH') seen.patches += 1;
  });
  await page.goto(`${origin}/`);
  return { context, page, seen };
}

describe('Uppy with its tus plugin in headless Chromium, from another origin', () => {
  let app;
  let browser;

  before(async () => {
    app = await startAppServer();
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
    await app?.stop();
  });

  test('with the page origin in cors_origins, a 5 MiB file goes up in several PATCHes, byte-identical', { timeout: TIMEOUT }, async (t) => {
    const ferry = await startFerry({ FERRY__SERVER__CORS_ORIGINS: app.origin });
    t.after(() => ferry.stop());
    const { context, page, seen } = await openApp(browser, app.origin);
    t.after(() => context.close());

    const size = 5 * MIB + 321;
    const result = await page.evaluate((options) => window.uploadGenerated(options), {
      endpoint: `${ferry.url}/files/`,
      name: 'uppy.bin',
      size,
      seed: 99,
      chunkSize: MIB,
      retryDelays: [0, 500, 1000],
    });
    assert.deepEqual(result.failed, [], `Uppy failed: ${result.failed.join('; ')}\n${seen.console.join('\n')}`);
    assert.equal(result.successful.length, 1);
    const { uploadURL } = result.successful[0];
    assert.ok(uploadURL?.startsWith(`${ferry.url}/files/`), `upload URL ${uploadURL}`);
    assert.ok(seen.patches >= 6, `${seen.patches} PATCHes for 6 chunks of at most 1 MiB`);

    // The native API sees the tus upload through the capability in its URL.
    const [id, token] = new URL(uploadURL).pathname.split('/').pop().split('.');
    const response = await fetch(`${ferry.url}/v1/uploads/${id}`, { headers: { Authorization: `Bearer ${token}` } });
    assert.equal(response.status, 200);
    const status = await response.json();
    assert.equal(status.state, 'completed');
    assert.equal(status.offset, size);
    assert.equal(status.length, size);
    assert.equal(status.filename, 'uppy.bin');
    const stored = readFileSync(join(ferry.objects, status.key));
    assert.equal(stored.length, size);
    assert.ok(Buffer.from(deterministicBytes(size, 99)).equals(stored), 'stored object differs');
    assert.deepEqual(seen.pageErrors, []);
    t.diagnostic(`${seen.patches} PATCHes, stored as ${status.key}`);
  });

  test('without the page origin in cors_origins, the browser blocks the upload', { timeout: TIMEOUT }, async (t) => {
    // CORS is on, for an origin that differs from the page's only by its host name.
    const other = app.origin.replace('127.0.0.1', 'localhost');
    const ferry = await startFerry({ FERRY__SERVER__CORS_ORIGINS: other });
    t.after(() => ferry.stop());
    const { context, page, seen } = await openApp(browser, app.origin);
    t.after(() => context.close());

    const result = await page.evaluate((options) => window.uploadGenerated(options), {
      endpoint: `${ferry.url}/files/`,
      name: 'blocked.bin',
      size: 256 * 1024,
      seed: 5,
      chunkSize: 64 * 1024,
      retryDelays: [],
    });
    assert.deepEqual(result.successful, []);
    assert.equal(result.failed.length, 1, 'Uppy reports the file as failed');
    assert.ok(
      seen.console.some((line) => /blocked by CORS policy/.test(line)),
      `Chromium blocked it for CORS:\n${seen.console.join('\n')}`,
    );
    assert.equal(seen.patches, 0, 'no PATCH went out');
  });
});
