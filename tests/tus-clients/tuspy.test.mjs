// tuspy (PyPI) against the real ferry binary, through tuspy_upload.py: an upload in
// several PATCHes (chunk_size smaller than the file, each with an Upload-Checksum), and one
// stopped part-way then resumed from its URL by a second uploader. Byte-identical.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, test } from 'node:test';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { MIB, startFerry, storedBytes, tempDir, writeTestFile } from './support.mjs';

const SCRIPT = join(dirname(fileURLToPath(import.meta.url)), 'tuspy_upload.py');
const PYTHON = process.env.PYTHON ?? 'python3';

let ferry;
let files;
before(async () => {
  ferry = await startFerry();
  files = tempDir();
});
after(async () => {
  await ferry?.stop();
  files?.remove();
});

/** Runs tuspy_upload.py; its last line is JSON. Asynchronous, so the event loop keeps
 * serving fetch's pooled connections meanwhile (a blocked loop misses ferry closing an
 * idle one, and the next fetch fails on it). */
async function tuspy(...args) {
  const { stdout } = await promisify(execFile)(PYTHON, [SCRIPT, `${ferry.url}/files/`, ...args.map(String)]);
  return JSON.parse(stdout.trim().split('\n').pop());
}

test('tuspy uploads a file in several PATCHes with checksums', async () => {
  const { path, bytes } = writeTestFile(files.dir, 'tuspy.bin', 2 * MIB + 99, 21);
  const result = await tuspy(path, 512 * 1024);
  assert.equal(result.offset, bytes.length);
  const { status, bytes: stored } = await storedBytes(ferry, result.url);
  assert.equal(status.filename, 'tuspy.bin');
  assert.ok(Buffer.from(bytes).equals(stored));
});

test('tuspy stops part-way and a second uploader resumes from the URL', async () => {
  const { path, bytes } = writeTestFile(files.dir, 'tuspy-resume.bin', MIB + 1000, 22);
  const result = await tuspy(path, 256 * 1024, 512 * 1024);
  assert.equal(result.stopped, 512 * 1024);
  assert.equal(result.resumed_from, 512 * 1024, 'the offset came from a HEAD');
  assert.equal(result.offset, bytes.length);
  assert.ok(Buffer.from(bytes).equals((await storedBytes(ferry, result.url)).bytes));
});
