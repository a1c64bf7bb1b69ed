// tus-js-client (Node, from npm) against the real ferry binary: an upload interrupted
// mid-request and resumed from its stored URL, a streamed file in one PATCH with its first
// bytes in the creation request, PATCH sent as POST with X-HTTP-Method-Override, and a
// parallel upload (three partial uploads joined by a final one: tus concatenation).

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { after, before, test } from 'node:test';
import { join } from 'node:path';
import { Readable } from 'node:stream';

import * as tus from 'tus-js-client';

import { MIB, startFerry, storedBytes, tempDir, writeTestFile } from './support.mjs';

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

/** Runs a tus upload to its end; resolves with it. */
function finish(upload) {
  return new Promise((ok, fail) => {
    upload.options.onSuccess = () => ok(upload);
    upload.options.onError = fail;
    upload.start();
  });
}

test('an upload aborted mid-request resumes from its stored URL and is byte-identical', async () => {
  const { bytes } = writeTestFile(files.dir, 'resume.bin', 3 * MIB + 123, 11);
  const urlStorage = new tus.FileUrlStorage(join(files.dir, 'tus-urls.json'));
  const options = {
    endpoint: `${ferry.url}/files/`,
    chunkSize: MIB,
    metadata: { filename: 'resume.bin', filetype: 'application/octet-stream' },
    urlStorage,
    fingerprint: async () => 'ferry-tus-js-resume',
    retryDelays: [0, 200, 500],
  };
  // The first attempt stops a little into the second PATCH (a cut body on the server).
  const first = new tus.Upload(Buffer.from(bytes), { ...options });
  await new Promise((ok, fail) => {
    first.options.onError = fail;
    first.options.onSuccess = () => fail(new Error('the first attempt should have been aborted'));
    first.options.onProgress = (sent) => {
      if (sent > 1.5 * MIB) first.abort().then(ok, fail);
    };
    first.start();
  });
  assert.ok(first.url.startsWith(`${ferry.url}/files/`), first.url);

  // A new Upload finds the URL it stored and goes on from the offset ferry reports.
  const again = new tus.Upload(Buffer.from(bytes), { ...options });
  const previous = await again.findPreviousUploads();
  assert.equal(previous.length, 1);
  assert.equal(previous[0].uploadUrl, first.url);
  again.resumeFromPreviousUpload(previous[0]);
  await finish(again);
  assert.equal(again.url, first.url, 'the same upload, resumed');
  const { status, bytes: stored } = await storedBytes(ferry, again.url);
  assert.equal(status.filename, 'resume.bin');
  assert.equal(status.offset, bytes.length);
  assert.ok(Buffer.from(bytes).equals(stored), 'byte-identical');
});

test('a streamed file goes in one PATCH, its first bytes with the creation request', async () => {
  const { path, bytes } = writeTestFile(files.dir, 'stream.bin', 2 * MIB + 7, 12);
  const upload = new tus.Upload(createReadStream(path), {
    endpoint: `${ferry.url}/files/`,
    chunkSize: 512 * 1024,
    uploadDataDuringCreation: true,
    metadata: { filename: 'stream.bin' },
  });
  await finish(upload);
  assert.ok(Buffer.from(bytes).equals((await storedBytes(ferry, upload.url)).bytes));
});

test('PATCH sent as POST with X-HTTP-Method-Override works, and a deferred length is declared at the end', async () => {
  const { bytes } = writeTestFile(files.dir, 'override.bin', MIB + 5, 13);
  // A stream of unknown length (a file stream with a path would be read by path, and
  // tus-js-client 4.3.1 then misstates the last chunk's Content-Length when deferred).
  const pieces = Array.from({ length: 9 }, (_, i) => Buffer.from(bytes.subarray(i * 123_457, (i + 1) * 123_457)));
  const upload = new tus.Upload(Readable.from(pieces), {
    endpoint: `${ferry.url}/files/`,
    chunkSize: 256 * 1024,
    uploadLengthDeferred: true,
    overridePatchMethod: true,
    metadata: { filename: 'override.bin' },
  });
  await finish(upload);
  const { status, bytes: stored } = await storedBytes(ferry, upload.url);
  assert.equal(status.length, bytes.length);
  assert.ok(Buffer.from(bytes).equals(stored));
});

test('a parallel upload in three partials is joined by the final upload, sha256-identical', async () => {
  const { path, bytes } = writeTestFile(files.dir, 'parallel.bin', 7 * MIB + 321, 14);
  const partials = [];
  const upload = new tus.Upload(createReadStream(path), {
    endpoint: `${ferry.url}/files/`,
    parallelUploads: 3,
    chunkSize: MIB,
    metadata: { filename: 'parallel.bin', filetype: 'application/octet-stream' },
    onAfterResponse: (req, res) => {
      if (req.getMethod() === 'POST' && req.getHeader('Upload-Concat') === 'partial') {
        partials.push(res.getHeader('Location'));
      }
    },
  });
  await finish(upload);
  assert.equal(partials.length, 3, 'three partial uploads were made');
  assert.ok(!partials.includes(upload.url), 'the upload URL is the final one');

  // The final reports its partials, in order, and its whole length.
  const head = await fetch(upload.url, { method: 'HEAD', headers: { 'Tus-Resumable': '1.0.0' } });
  assert.equal(head.status, 200);
  const concat = head.headers.get('upload-concat');
  assert.ok(concat.startsWith('final;'), concat);
  assert.deepEqual(new Set(concat.slice('final;'.length).split(' ')), new Set(partials));
  assert.equal(head.headers.get('upload-offset'), String(bytes.length));
  assert.equal(head.headers.get('upload-length'), String(bytes.length));

  const { status, bytes: stored } = await storedBytes(ferry, upload.url);
  assert.equal(status.concat, 'final');
  assert.equal(status.filename, 'parallel.bin');
  const sha256 = (data) => createHash('sha256').update(data).digest('hex');
  assert.equal(sha256(stored), sha256(bytes), 'sha256 of the stored object is the file\'s');
});
