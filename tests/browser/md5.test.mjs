// The client's MD5 against RFC 1321's test suite and Node's own MD5.

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { test } from 'node:test';

import { Md5, md5, md5Base64, md5Hex } from '../../web/ferry.js';
import { deterministicBytes, MIB } from './support.mjs';

const nodeMd5 = (bytes, encoding = 'hex') => createHash('md5').update(bytes).digest(encoding);

test('the RFC 1321 test suite gives the published digests', () => {
  const vectors = [
    ['', 'd41d8cd98f00b204e9800998ecf8427e'],
    ['a', '0cc175b9c0f1b6a831c399e269772661'],
    ['abc', '900150983cd24fb0d6963f7d28e17f72'],
    ['message digest', 'f96b697d7cb7938d525a2f31aaf161d0'],
    ['abcdefghijklmnopqrstuvwxyz', 'c3fcd3d76192e4007dfb496cca67e13b'],
    ['ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789', 'd174ab98d277d9f5a5611c2c9f419d9f'],
    [
      '12345678901234567890123456789012345678901234567890123456789012345678901234567890',
      '57edf4a22be3c955ac49da2e2107b67a',
    ],
  ];
  for (const [input, digest] of vectors) assert.equal(md5Hex(input), digest, JSON.stringify(input));
});

test('every length around the block and padding boundaries matches Node', () => {
  const data = deterministicBytes(300, 7);
  for (let length = 0; length <= 300; length++) {
    const slice = data.subarray(0, length);
    assert.equal(md5Hex(slice), nodeMd5(slice), `length ${length}`);
  }
});

test('a few MiB of random data matches Node', () => {
  for (const length of [MIB, 3 * MIB + 17, 5 * MIB]) {
    const data = randomBytes(length);
    assert.equal(md5Hex(data), nodeMd5(data), `length ${length}`);
  }
});

test('feeding the hash in pieces gives the one-shot digest', () => {
  const data = deterministicBytes(2 * MIB + 333, 11);
  const cuts = [0, 1, 63, 64, 65, 1000, 4096, 65_537, MIB, MIB + 5, data.length];
  const hash = new Md5();
  for (let i = 1; i < cuts.length; i++) hash.update(data.subarray(cuts[i - 1], cuts[i]));
  assert.equal(Buffer.from(hash.digest()).toString('hex'), nodeMd5(data));

  const bytewise = new Md5();
  const small = data.subarray(0, 200);
  for (const byte of small) bytewise.update(new Uint8Array([byte]));
  assert.equal(Buffer.from(bytewise.digest()).toString('hex'), nodeMd5(small));
});

test('Content-MD5 is the padded base64 of the 16 raw bytes', () => {
  const data = deterministicBytes(MIB, 3);
  assert.equal(md5Base64(data), nodeMd5(data, 'base64'));
  assert.equal(md5Base64(''), '1B2M2Y8AsgTpgAmY7PhCfg==');
});

test('strings hash as UTF-8, and any buffer view hashes its own bytes', () => {
  assert.equal(md5Hex('héllo ☃'), nodeMd5(Buffer.from('héllo ☃', 'utf8')));
  const data = deterministicBytes(1000, 5);
  const view = new DataView(data.buffer, 100, 500);
  assert.equal(md5Hex(view), nodeMd5(data.subarray(100, 600)));
  assert.equal(md5Hex(data.buffer), nodeMd5(data));
  assert.equal(md5Hex(new Uint32Array(data.buffer, 0, 10)), nodeMd5(data.subarray(0, 40)));
  assert.equal(md5(data).length, 16);
});

test('a finished hash refuses more input', () => {
  const hash = new Md5().update('abc');
  hash.digest();
  assert.throws(() => hash.update('more'));
  assert.throws(() => hash.digest());
  assert.throws(() => new Md5().update(42), TypeError);
});

test('an 8 MiB chunk hashes in well under a second', () => {
  const data = randomBytes(8 * MIB);
  md5(data.subarray(0, MIB)); // warm up the JIT, as a page does on its first chunk
  const start = performance.now();
  const digest = md5Hex(data);
  const elapsed = performance.now() - start;
  assert.equal(digest, nodeMd5(data));
  assert.ok(elapsed < 500, `8 MiB took ${elapsed.toFixed(0)} ms`);
});
