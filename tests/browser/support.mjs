// What the browser suite shares: the real ferry binary on a free port with its data in a
// temporary folder, headless Chromium through playwright-core, deterministic files.

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const MIB = 1024 * 1024;

/** The ferry binary: $FERRY_BIN, else the debug build. */
export function ferryBinary() {
  const path = process.env.FERRY_BIN ?? join(REPO, 'target/debug/ferry');
  if (!existsSync(path)) {
    throw new Error(`${path} is missing: run \`cargo build --bin ferry\` first (scripts/test-browser.sh does)`);
  }
  return path;
}

/** A free TCP port on the loopback. */
export function freePort() {
  return new Promise((ok, fail) => {
    const server = createServer();
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => ok(port));
    });
  });
}

/**
 * Starts ferry with its data in a fresh temporary folder and `env` on top of small test
 * settings (1 MiB chunks by default). Returns `{ url, objects, dir, stop() }`.
 */
export async function startFerry(env = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-browser-'));
  const objects = join(dir, 'objects');
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    const child = spawn(ferryBinary(), ['serve'], {
      env: {
        ...process.env,
        RUST_LOG: 'warn',
        FERRY__SERVER__LISTEN: `127.0.0.1:${port}`,
        FERRY__SERVER__WORKERS: '2',
        FERRY__SERVER__SHUTDOWN_TIMEOUT_SECS: '2',
        FERRY__STORAGE__FS__ROOT: objects,
        FERRY__SESSIONS__EMBEDDED__PATH: join(dir, 'sessions'),
        FERRY__UPLOADS__MIN_CHUNK_SIZE: String(64 * 1024),
        FERRY__UPLOADS__DEFAULT_CHUNK_SIZE: String(MIB),
        ...env,
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (data) => {
      stderr += data;
    });
    const exited = new Promise((ok) => child.once('exit', (code, signal) => ok({ code, signal })));
    const url = `http://127.0.0.1:${port}`;
    const up = await Promise.race([waitForHealth(url), exited.then(() => false)]);
    if (up) {
      const stop = async () => {
        if (child.exitCode === null && child.signalCode === null) {
          child.kill('SIGTERM');
          const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
          await exited;
          clearTimeout(timer);
        }
        rmSync(dir, { recursive: true, force: true });
      };
      return { url, objects, dir, stop, stderr: () => stderr };
    }
    child.kill('SIGKILL');
    await exited;
    // Another process may have taken the port between the probe and the bind: try again.
    if (attempt < 3 && /bind/i.test(stderr)) continue;
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`ferry did not start:\n${stderr}`);
  }
}

/** Fails when the binary serves other page files than web/ holds (they are compiled in:
 * a binary older than the last edit of web/ must be rebuilt). */
export async function assertServesCurrentWebFiles(url) {
  for (const [path, file] of [['/', 'index.html'], ['/client/ferry.js', 'ferry.js'], ['/client/app.js', 'app.js']]) {
    const served = await (await fetch(`${url}${path}`)).text();
    if (served !== readFileSync(join(REPO, 'web', file), 'utf8')) {
      throw new Error(`${ferryBinary()} serves an older web/${file}: run \`cargo build --bin ferry\``);
    }
  }
}

async function waitForHealth(url) {
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    try {
      const response = await fetch(`${url}/healthz`);
      if (response.ok) return true;
    } catch {
      // not listening yet
    }
    await sleep(50);
  }
  throw new Error(`ferry at ${url} did not answer /healthz in 20 s`);
}

/** Chromium's flags for a machine with no internet: nothing may phone home or stall. */
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
];

/** The Chromium to drive: $CHROMIUM_PATH, else Debian's. */
export function chromiumPath() {
  const candidates = [
    process.env.CHROMIUM_PATH,
    '/usr/bin/chromium',
    '/usr/bin/chromium-headless-shell',
    '/usr/lib/chromium/chromium',
  ].filter(Boolean);
  const found = candidates.find((path) => existsSync(path));
  if (!found) throw new Error('no Chromium found: install Debian\'s `chromium` (scripts/test-browser.sh does)');
  return found;
}

/** Headless Chromium, driven by playwright-core (which never downloads a browser). */
export async function launchBrowser() {
  const { chromium } = await import('playwright-core');
  return chromium.launch({ executablePath: chromiumPath(), headless: true, args: CHROMIUM_ARGS, timeout: 60_000 });
}

/** `length` deterministic pseudo-random bytes (xorshift32 from `seed`). */
export function deterministicBytes(length, seed = 1) {
  const bytes = new Uint8Array(length);
  const words = new Uint32Array(bytes.buffer, 0, Math.floor(length / 4));
  let x = seed >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x >>> 0;
  }
  for (let i = words.length * 4; i < length; i++) bytes[i] = (x = (x * 31 + i) >>> 0) & 0xff;
  return bytes;
}

/** Writes `length` deterministic bytes to `dir/name` (a file on disk keeps its lastModified
 * between two picks, as a person's file does). Returns its path and bytes. */
export function writeTestFile(dir, name, length, seed) {
  const bytes = deterministicBytes(length, seed);
  const path = join(dir, name);
  writeFileSync(path, bytes);
  return { path, bytes };
}

/** A fresh temporary folder, removed by the returned function. */
export function tempDir() {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-files-'));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export function sleep(ms) {
  return new Promise((ok) => setTimeout(ok, ms));
}

/** Polls `check` until it returns a truthy value, or fails after `timeout` ms. */
export async function waitUntil(what, check, timeout = 30_000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(25);
  }
}

/** The chunk index of a `PUT /v1/uploads/{id}/chunks/{index}` URL, or null. */
export function chunkIndex(url) {
  const match = /\/v1\/uploads\/[^/]+\/chunks\/(\d+)$/.exec(new URL(url).pathname);
  return match ? Number(match[1]) : null;
}

/** A processor's key, and the settings that turn the processing stage on with it. */
export const PROCESSOR_KEY = 'browser-suite-processor-key';
export const PROCESSING = { FERRY__PROCESSING__ENABLED: 'true', FERRY__AUTH__PROCESSOR_KEYS: PROCESSOR_KEY };

/** Reports on upload `id` as its processor would (`{status: "running", progress: 45}`,
 * `{status: "done", result}`, `{status: "failed", error}`); returns the status. */
export async function reportProcessing(url, id, report) {
  const response = await fetch(`${url}/v1/uploads/${id}/processing`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${PROCESSOR_KEY}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(report),
  });
  const body = await response.text();
  if (response.status !== 200) {
    throw new Error(`processing report ${JSON.stringify(report)}: ${response.status} ${body}`);
  }
  return JSON.parse(body);
}
