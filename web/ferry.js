// ferry.js: the browser client of ferry, served by ferry itself at /client/ferry.js.
// A dependency-free ES module: resumable, parallel, MD5-checked chunked uploads.
//
//   import { upload } from '/client/ferry.js';
//   const transfer = upload(file, { onProgress: (p) => console.log(p.percent) });
//   transfer.pause(); transfer.resume(); await transfer.cancel();
//   const status = await transfer.promise; // the upload's final status JSON
//
// With a processing stage on the server, `onStage` follows it over server-sent events:
//
//   upload(file, { onStage: (s) => console.log(s.stage, s.progress, s.url, s.error) });
//   const watch = follow(uploadId, { token: uploadToken, onStage }); watch.close();
//
// See the README's "Browser" section for the whole API.

/* ----------------------------------------------------------------------------------- */
/* MD5 (RFC 1321). WebCrypto has no MD5, and ferry wants one per chunk (Content-MD5).   */
/* ----------------------------------------------------------------------------------- */

/** Mixes one 64-byte block (16 little-endian words in `x`) into `state`: RFC 1321's four
 * rounds of 16 steps, unrolled (several times faster than a loop). Each step is
 * `a = b + ((a + F(b, c, d) + x[g] + K) <<< s)`, with K = floor(abs(sin(i + 1)) * 2^32). */
function md5Block(state, x) {
  let a = state[0];
  let b = state[1];
  let c = state[2];
  let d = state[3];
  a = (a + ((b & c) | (~b & d)) + x[0] + -680876936) | 0; a = (((a << 7) | (a >>> 25)) + b) | 0;
  d = (d + ((a & b) | (~a & c)) + x[1] + -389564586) | 0; d = (((d << 12) | (d >>> 20)) + a) | 0;
  c = (c + ((d & a) | (~d & b)) + x[2] + 606105819) | 0; c = (((c << 17) | (c >>> 15)) + d) | 0;
  b = (b + ((c & d) | (~c & a)) + x[3] + -1044525330) | 0; b = (((b << 22) | (b >>> 10)) + c) | 0;
  a = (a + ((b & c) | (~b & d)) + x[4] + -176418897) | 0; a = (((a << 7) | (a >>> 25)) + b) | 0;
  d = (d + ((a & b) | (~a & c)) + x[5] + 1200080426) | 0; d = (((d << 12) | (d >>> 20)) + a) | 0;
  c = (c + ((d & a) | (~d & b)) + x[6] + -1473231341) | 0; c = (((c << 17) | (c >>> 15)) + d) | 0;
  b = (b + ((c & d) | (~c & a)) + x[7] + -45705983) | 0; b = (((b << 22) | (b >>> 10)) + c) | 0;
  a = (a + ((b & c) | (~b & d)) + x[8] + 1770035416) | 0; a = (((a << 7) | (a >>> 25)) + b) | 0;
  d = (d + ((a & b) | (~a & c)) + x[9] + -1958414417) | 0; d = (((d << 12) | (d >>> 20)) + a) | 0;
  c = (c + ((d & a) | (~d & b)) + x[10] + -42063) | 0; c = (((c << 17) | (c >>> 15)) + d) | 0;
  b = (b + ((c & d) | (~c & a)) + x[11] + -1990404162) | 0; b = (((b << 22) | (b >>> 10)) + c) | 0;
  a = (a + ((b & c) | (~b & d)) + x[12] + 1804603682) | 0; a = (((a << 7) | (a >>> 25)) + b) | 0;
  d = (d + ((a & b) | (~a & c)) + x[13] + -40341101) | 0; d = (((d << 12) | (d >>> 20)) + a) | 0;
  c = (c + ((d & a) | (~d & b)) + x[14] + -1502002290) | 0; c = (((c << 17) | (c >>> 15)) + d) | 0;
  b = (b + ((c & d) | (~c & a)) + x[15] + 1236535329) | 0; b = (((b << 22) | (b >>> 10)) + c) | 0;
  a = (a + ((b & d) | (c & ~d)) + x[1] + -165796510) | 0; a = (((a << 5) | (a >>> 27)) + b) | 0;
  d = (d + ((a & c) | (b & ~c)) + x[6] + -1069501632) | 0; d = (((d << 9) | (d >>> 23)) + a) | 0;
  c = (c + ((d & b) | (a & ~b)) + x[11] + 643717713) | 0; c = (((c << 14) | (c >>> 18)) + d) | 0;
  b = (b + ((c & a) | (d & ~a)) + x[0] + -373897302) | 0; b = (((b << 20) | (b >>> 12)) + c) | 0;
  a = (a + ((b & d) | (c & ~d)) + x[5] + -701558691) | 0; a = (((a << 5) | (a >>> 27)) + b) | 0;
  d = (d + ((a & c) | (b & ~c)) + x[10] + 38016083) | 0; d = (((d << 9) | (d >>> 23)) + a) | 0;
  c = (c + ((d & b) | (a & ~b)) + x[15] + -660478335) | 0; c = (((c << 14) | (c >>> 18)) + d) | 0;
  b = (b + ((c & a) | (d & ~a)) + x[4] + -405537848) | 0; b = (((b << 20) | (b >>> 12)) + c) | 0;
  a = (a + ((b & d) | (c & ~d)) + x[9] + 568446438) | 0; a = (((a << 5) | (a >>> 27)) + b) | 0;
  d = (d + ((a & c) | (b & ~c)) + x[14] + -1019803690) | 0; d = (((d << 9) | (d >>> 23)) + a) | 0;
  c = (c + ((d & b) | (a & ~b)) + x[3] + -187363961) | 0; c = (((c << 14) | (c >>> 18)) + d) | 0;
  b = (b + ((c & a) | (d & ~a)) + x[8] + 1163531501) | 0; b = (((b << 20) | (b >>> 12)) + c) | 0;
  a = (a + ((b & d) | (c & ~d)) + x[13] + -1444681467) | 0; a = (((a << 5) | (a >>> 27)) + b) | 0;
  d = (d + ((a & c) | (b & ~c)) + x[2] + -51403784) | 0; d = (((d << 9) | (d >>> 23)) + a) | 0;
  c = (c + ((d & b) | (a & ~b)) + x[7] + 1735328473) | 0; c = (((c << 14) | (c >>> 18)) + d) | 0;
  b = (b + ((c & a) | (d & ~a)) + x[12] + -1926607734) | 0; b = (((b << 20) | (b >>> 12)) + c) | 0;
  a = (a + (b ^ c ^ d) + x[5] + -378558) | 0; a = (((a << 4) | (a >>> 28)) + b) | 0;
  d = (d + (a ^ b ^ c) + x[8] + -2022574463) | 0; d = (((d << 11) | (d >>> 21)) + a) | 0;
  c = (c + (d ^ a ^ b) + x[11] + 1839030562) | 0; c = (((c << 16) | (c >>> 16)) + d) | 0;
  b = (b + (c ^ d ^ a) + x[14] + -35309556) | 0; b = (((b << 23) | (b >>> 9)) + c) | 0;
  a = (a + (b ^ c ^ d) + x[1] + -1530992060) | 0; a = (((a << 4) | (a >>> 28)) + b) | 0;
  d = (d + (a ^ b ^ c) + x[4] + 1272893353) | 0; d = (((d << 11) | (d >>> 21)) + a) | 0;
  c = (c + (d ^ a ^ b) + x[7] + -155497632) | 0; c = (((c << 16) | (c >>> 16)) + d) | 0;
  b = (b + (c ^ d ^ a) + x[10] + -1094730640) | 0; b = (((b << 23) | (b >>> 9)) + c) | 0;
  a = (a + (b ^ c ^ d) + x[13] + 681279174) | 0; a = (((a << 4) | (a >>> 28)) + b) | 0;
  d = (d + (a ^ b ^ c) + x[0] + -358537222) | 0; d = (((d << 11) | (d >>> 21)) + a) | 0;
  c = (c + (d ^ a ^ b) + x[3] + -722521979) | 0; c = (((c << 16) | (c >>> 16)) + d) | 0;
  b = (b + (c ^ d ^ a) + x[6] + 76029189) | 0; b = (((b << 23) | (b >>> 9)) + c) | 0;
  a = (a + (b ^ c ^ d) + x[9] + -640364487) | 0; a = (((a << 4) | (a >>> 28)) + b) | 0;
  d = (d + (a ^ b ^ c) + x[12] + -421815835) | 0; d = (((d << 11) | (d >>> 21)) + a) | 0;
  c = (c + (d ^ a ^ b) + x[15] + 530742520) | 0; c = (((c << 16) | (c >>> 16)) + d) | 0;
  b = (b + (c ^ d ^ a) + x[2] + -995338651) | 0; b = (((b << 23) | (b >>> 9)) + c) | 0;
  a = (a + (c ^ (b | ~d)) + x[0] + -198630844) | 0; a = (((a << 6) | (a >>> 26)) + b) | 0;
  d = (d + (b ^ (a | ~c)) + x[7] + 1126891415) | 0; d = (((d << 10) | (d >>> 22)) + a) | 0;
  c = (c + (a ^ (d | ~b)) + x[14] + -1416354905) | 0; c = (((c << 15) | (c >>> 17)) + d) | 0;
  b = (b + (d ^ (c | ~a)) + x[5] + -57434055) | 0; b = (((b << 21) | (b >>> 11)) + c) | 0;
  a = (a + (c ^ (b | ~d)) + x[12] + 1700485571) | 0; a = (((a << 6) | (a >>> 26)) + b) | 0;
  d = (d + (b ^ (a | ~c)) + x[3] + -1894986606) | 0; d = (((d << 10) | (d >>> 22)) + a) | 0;
  c = (c + (a ^ (d | ~b)) + x[10] + -1051523) | 0; c = (((c << 15) | (c >>> 17)) + d) | 0;
  b = (b + (d ^ (c | ~a)) + x[1] + -2054922799) | 0; b = (((b << 21) | (b >>> 11)) + c) | 0;
  a = (a + (c ^ (b | ~d)) + x[8] + 1873313359) | 0; a = (((a << 6) | (a >>> 26)) + b) | 0;
  d = (d + (b ^ (a | ~c)) + x[15] + -30611744) | 0; d = (((d << 10) | (d >>> 22)) + a) | 0;
  c = (c + (a ^ (d | ~b)) + x[6] + -1560198380) | 0; c = (((c << 15) | (c >>> 17)) + d) | 0;
  b = (b + (d ^ (c | ~a)) + x[13] + 1309151649) | 0; b = (((b << 21) | (b >>> 11)) + c) | 0;
  a = (a + (c ^ (b | ~d)) + x[4] + -145523070) | 0; a = (((a << 6) | (a >>> 26)) + b) | 0;
  d = (d + (b ^ (a | ~c)) + x[11] + -1120210379) | 0; d = (((d << 10) | (d >>> 22)) + a) | 0;
  c = (c + (a ^ (d | ~b)) + x[2] + 718787259) | 0; c = (((c << 15) | (c >>> 17)) + d) | 0;
  b = (b + (d ^ (c | ~a)) + x[9] + -343485551) | 0; b = (((b << 21) | (b >>> 11)) + c) | 0;
  state[0] = (state[0] + a) | 0;
  state[1] = (state[1] + b) | 0;
  state[2] = (state[2] + c) | 0;
  state[3] = (state[3] + d) | 0;
}

function toBytes(data) {
  if (data instanceof Uint8Array) return data;
  if (typeof data === 'string') return new TextEncoder().encode(data);
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new TypeError('MD5 input must be a string, an ArrayBuffer or a typed array');
}

/** An incremental MD5: `new Md5().update(a).update(b).digest()`. */
export class Md5 {
  #state = new Int32Array([0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476]);
  #words = new Int32Array(16);
  #pending = new Uint8Array(64);
  #pendingLength = 0;
  #length = 0;
  #done = false;

  /** Adds bytes (a Uint8Array, ArrayBuffer, typed array, or a string taken as UTF-8). */
  update(data) {
    if (this.#done) throw new Error('Md5: update() after digest()');
    const bytes = toBytes(data);
    this.#length += bytes.length;
    let offset = 0;
    if (this.#pendingLength > 0) {
      const take = Math.min(64 - this.#pendingLength, bytes.length);
      this.#pending.set(bytes.subarray(0, take), this.#pendingLength);
      this.#pendingLength += take;
      offset = take;
      if (this.#pendingLength < 64) return this;
      this.#block(this.#pending, 0);
      this.#pendingLength = 0;
    }
    for (; offset + 64 <= bytes.length; offset += 64) this.#block(bytes, offset);
    this.#pending.set(bytes.subarray(offset), 0);
    this.#pendingLength = bytes.length - offset;
    return this;
  }

  /** The 16-byte digest. The hash cannot be updated afterwards. */
  digest() {
    if (this.#done) throw new Error('Md5: digest() called twice');
    this.#done = true;
    const bits = this.#length * 8;
    const tail = new Uint8Array(this.#pendingLength < 56 ? 64 : 128);
    tail.set(this.#pending.subarray(0, this.#pendingLength));
    tail[this.#pendingLength] = 0x80;
    const view = new DataView(tail.buffer);
    view.setUint32(tail.length - 8, bits >>> 0, true);
    view.setUint32(tail.length - 4, Math.floor(bits / 2 ** 32) >>> 0, true);
    for (let offset = 0; offset < tail.length; offset += 64) this.#block(tail, offset);
    const out = new Uint8Array(16);
    const outView = new DataView(out.buffer);
    for (let i = 0; i < 4; i++) outView.setInt32(i * 4, this.#state[i], true);
    return out;
  }

  #block(bytes, offset) {
    const x = this.#words;
    for (let i = 0; i < 16; i++, offset += 4) {
      x[i] = bytes[offset] | (bytes[offset + 1] << 8) | (bytes[offset + 2] << 16) | (bytes[offset + 3] << 24);
    }
    md5Block(this.#state, x);
  }
}

/** The MD5 of `data`, as 16 bytes. */
export function md5(data) {
  return new Md5().update(data).digest();
}

/** The MD5 of `data` in lower-case hex. */
export function md5Hex(data) {
  return Array.from(md5(data), (byte) => byte.toString(16).padStart(2, '0')).join('');
}

/** The MD5 of `data` as `Content-MD5` wants it: padded base64 of the 16 bytes (RFC 1864). */
export function md5Base64(data) {
  return btoa(String.fromCharCode(...md5(data)));
}

/* ----------------------------------------------------------------------------------- */
/* Uploads                                                                             */
/* ----------------------------------------------------------------------------------- */

/** What `promise` rejects with. `code` is the server's problem code, or one of the
 * client's own: `canceled`, `network`, `file-unreadable`, `upload-failed`, `error`. */
export class FerryError extends Error {
  constructor(message, { status = 0, code = 'error', problem = null, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'FerryError';
    /** HTTP status of the refusal, 0 when there was no answer. */
    this.status = status;
    /** Stable code: the problem's `code` or a client code. */
    this.code = code;
    /** The problem+json body, when the server sent one. */
    this.problem = problem;
  }
}

const DEFAULTS = {
  parallel: 4,
  retries: 8,
  retryDelay: 500,
  maxRetryDelay: 30_000,
  resume: true,
};

/** Prefix of the localStorage entries that let an upload survive a page reload. */
export const STORAGE_PREFIX = 'ferry:upload:v1:';

/** The localStorage key of `file` on `server`: its name, size and last modification. */
export function storageKey(server, file) {
  return `${STORAGE_PREFIX}${server} ${file.size} ${file.lastModified ?? 0} ${file.name}`;
}

/**
 * Starts uploading `file` (a File or Blob with a `name`) and returns its controller.
 * Options: `server` (base URL, default the page's origin), `token` (API key, sent as
 * `Authorization: Bearer` when creating the upload), `chunkSize` (default: the server's),
 * `parallel` (default 4), `metadata` (an object of strings), `contentType` (default
 * `file.type`), `onProgress(progress)`, `signal` (an AbortSignal that cancels),
 * `retries` (per request, default 8), `resume` (default true: remember the upload in
 * `storage`, default localStorage, and pick it up again after a reload).
 * After completion: `onStage(stage)` follows the stage until it is final (see `follow()`,
 * which also takes `pollInterval` and `EventSource`), and `waitForProcessing` (default
 * false) makes `promise` wait for it too.
 */
export function upload(file, options = {}) {
  return new Upload(file, options);
}

/** One file on its way to ferry. */
export class Upload {
  /** Resolves to the final status JSON (`state: "completed"`, `key`, `etag`, ...), or
   * rejects with a FerryError (`code: "canceled"` after `cancel()`). With
   * `waitForProcessing`, resolves once the stage is `done` (and rejects with
   * `code: "processing-failed"` when it is `failed`). */
  promise;

  #file;
  #opts;
  #server;
  #fetch;
  #storage;
  #storageKey;
  #state = 'starting';
  #id = null;
  #uploadToken = null;
  #chunkSize = 0;
  #totalChunks = 0;
  #resumed = false;
  #done = new Set();
  #bytesDone = 0;
  #samples = [];
  #paused = false;
  #halt = null;
  #waiters = new Set();
  #chunkRequests = new Set();
  #otherRequests = new Set();
  #missing = [];
  #serverDone = false;
  #follower = null;
  #settled;

  constructor(file, options = {}) {
    if (!file || typeof file.size !== 'number' || typeof file.slice !== 'function') {
      throw new TypeError('upload(file): file must be a File or a Blob');
    }
    this.#file = file;
    this.#opts = { ...DEFAULTS, ...options };
    const server = options.server ?? globalThis.location?.origin;
    if (!server) throw new TypeError('upload(): options.server is required outside a page');
    this.#server = String(server).replace(/\/+$/, '');
    const fetchImpl = options.fetch ?? globalThis.fetch;
    this.#fetch = (...args) => fetchImpl.apply(globalThis, args);
    this.#storage = this.#opts.resume ? (options.storage ?? defaultStorage()) : null;
    this.#storageKey = storageKey(this.#server, file);
    this.promise = this.#run();
    this.#settled = this.promise.then(() => {}, () => {});
    if (options.signal) {
      if (options.signal.aborted) this.cancel();
      else options.signal.addEventListener('abort', () => this.cancel(), { once: true });
    }
  }

  /** The upload's id once the server has opened (or resumed) it, else null. */
  get uploadId() {
    return this.#id;
  }

  /** `starting`, `uploading`, `paused`, `completing`, `completed`, `canceled` or `failed`. */
  get state() {
    return this.#state;
  }

  /** The latest progress snapshot (what `onProgress` receives). */
  get progress() {
    const total = this.#file.size;
    const speed = this.#speed();
    const remaining = total - this.#bytesDone;
    return {
      state: this.#state,
      uploadId: this.#id,
      resumed: this.#resumed,
      bytesUploaded: this.#bytesDone,
      bytesTotal: total,
      percent: total === 0 ? (this.#state === 'completed' ? 100 : 0) : (this.#bytesDone / total) * 100,
      chunksUploaded: this.#done.size,
      totalChunks: this.#totalChunks,
      speed,
      eta: speed && this.#state === 'uploading' ? remaining / speed : remaining === 0 ? 0 : null,
    };
  }

  /** Stops sending: chunks in flight are abandoned and sent again on `resume()`. Once
   * every chunk is in (`completing`), there is nothing left to pause. */
  pause() {
    if (this.#paused || isFinal(this.#state) || this.#state === 'completing') return;
    this.#paused = true;
    for (const request of this.#chunkRequests) request.abort();
    this.#samples = [];
    if (this.#state === 'uploading' || this.#state === 'starting') this.#setState('paused');
  }

  /** Carries on after `pause()`. */
  resume() {
    if (!this.#paused || isFinal(this.#state)) return;
    this.#paused = false;
    this.#samples = [{ t: now(), bytes: this.#bytesDone }];
    this.#setState(this.#id ? 'uploading' : 'starting');
    this.#wake();
  }

  /** Stops for good, deletes the upload on the server and forgets it; resolves once done.
   * `promise` then rejects with `code: "canceled"`. Once completed, the upload stays: this
   * only stops following its stage. */
  cancel() {
    if (!this.#halt && (!isFinal(this.#state) || this.#state === 'completed')) {
      this.#halt = new FerryError('The upload was canceled', { code: 'canceled' });
      this.#stopAll();
      this.#follower?.close();
    }
    return this.#settled;
  }

  /* ---- the flow ---- */

  async #run() {
    const status = await this.#send();
    const { onStage, waitForProcessing, pollInterval, EventSource } = this.#opts;
    if (!onStage && !waitForProcessing) return status;
    this.#follower = follow(this.#id, {
      server: this.#server,
      token: this.#uploadToken,
      fetch: this.#fetch,
      status,
      onStage,
      pollInterval,
      EventSource,
    });
    if (this.#halt) this.#follower.close(); // canceled by an onProgress or onStage callback
    if (!waitForProcessing) {
      this.#follower.promise.catch(() => {}); // onStage tells the caller
      return status;
    }
    let stage;
    try {
      stage = await this.#follower.promise;
    } catch (err) {
      throw this.#halt ?? err;
    }
    if (stage.stage === 'failed') {
      throw new FerryError(stage.error, { code: 'processing-failed', problem: stage.status });
    }
    return stage.status;
  }

  /** Sends the file; resolves to the completed status. */
  async #send() {
    try {
      let status = await this.#open();
      for (let round = 0; !status; round++) {
        await this.#sendChunks();
        status = await this.#finalStatus();
        if (status.state === 'uploading' && round < 3) {
          // The server asked for chunks again (a store found a part changed): send them.
          this.#plan(status);
          status = null;
        }
      }
      if (status.state !== 'completed') {
        throw new FerryError(status.error || `the upload ended in state ${status.state}`, {
          code: 'upload-failed',
          problem: status,
        });
      }
      this.#forget();
      this.#bytesDone = this.#file.size;
      this.#setState('completed');
      return status;
    } catch (err) {
      const error = this.#halt ?? asFerryError(err);
      if (error.code === 'canceled') {
        this.#forget();
        await this.#deleteRemote();
        this.#setState('canceled');
      } else {
        this.#halt = error;
        this.#stopAll();
        // An upload the server no longer has cannot be resumed: the next try starts over.
        if (['upload-not-found', 'upload-canceled', 'upload-failed'].includes(error.code)) this.#forget();
        this.#setState('failed');
      }
      throw error;
    }
  }

  /** Resumes the remembered upload of this file, or creates one. Returns the final status
   * when there is nothing left to send, else null. */
  async #open() {
    const saved = this.#recall();
    if (saved) {
      try {
        const status = await this.#call('POST', `/v1/uploads/${saved.uploadId}/resume`, { token: saved.uploadToken });
        if (status.size === this.#file.size && status.state !== 'failed') {
          this.#id = saved.uploadId;
          this.#uploadToken = saved.uploadToken;
          this.#resumed = true;
          this.#plan(status);
          this.#setState(this.#paused ? 'paused' : 'uploading');
          return status.state === 'completed' ? status : null;
        }
      } catch (err) {
        // Expired, canceled, or the token no longer opens it: start over.
        if (!(err instanceof FerryError) || ![401, 403, 404, 410].includes(err.status)) throw err;
      }
      this.#forget();
    }

    const body = { filename: this.#file.name || 'file', size: this.#file.size };
    const contentType = this.#opts.contentType ?? this.#file.type;
    if (contentType) body.content_type = contentType;
    if (this.#opts.chunkSize) body.chunk_size = this.#opts.chunkSize;
    if (this.#opts.metadata) body.metadata = this.#opts.metadata;
    // If an answer is lost and the call retried, the first upload is an orphan that expires.
    const created = await this.#call('POST', '/v1/uploads', { token: this.#opts.token, json: body });
    this.#id = created.upload_id;
    this.#uploadToken = created.upload_token;
    this.#plan({ ...created, missing_chunks: range(created.total_chunks) });
    this.#remember();
    if (this.#halt) throw this.#halt;
    this.#setState(this.#paused ? 'paused' : 'uploading');
    return created.state === 'completed' ? await this.#finalStatus() : null;
  }

  /** Takes the chunk plan and what is missing from a status (or creation) answer. */
  #plan(status) {
    this.#chunkSize = status.chunk_size;
    this.#totalChunks = status.total_chunks;
    this.#missing = status.missing_chunks ?? [];
    const missing = new Set(this.#missing);
    this.#done = new Set(range(this.#totalChunks).filter((i) => !missing.has(i)));
    this.#bytesDone = this.#file.size - this.#missing.reduce((sum, i) => sum + this.#chunkLength(i), 0);
    this.#samples = [{ t: now(), bytes: this.#bytesDone }];
    this.#emit();
  }

  async #sendChunks() {
    const queue = [...this.#missing];
    const worker = async () => {
      while (queue.length > 0 && !this.#halt && !this.#serverDone) {
        const index = queue.shift();
        try {
          await this.#sendChunk(index);
        } catch (err) {
          // One chunk that cannot be sent stops the others at once.
          if (!this.#halt) {
            this.#halt = asFerryError(err);
            this.#stopAll();
          }
          throw err;
        }
      }
    };
    const workers = Math.max(1, Math.min(this.#opts.parallel, queue.length));
    const results = await Promise.allSettled(Array.from({ length: workers }, worker));
    const failed = results.find((r) => r.status === 'rejected');
    if (this.#halt) throw this.#halt;
    if (failed) throw failed.reason;
  }

  async #sendChunk(index) {
    await this.#gate();
    const start = index * this.#chunkSize;
    const end = Math.min(this.#file.size, start + this.#chunkSize);
    let bytes;
    try {
      bytes = new Uint8Array(await this.#file.slice(start, end).arrayBuffer());
    } catch (cause) {
      throw new FerryError('The file could not be read (was it changed, moved or deleted?)', {
        code: 'file-unreadable',
        cause,
      });
    }
    const answer = await this.#call('PUT', `/v1/uploads/${this.#id}/chunks/${index}`, {
      token: this.#uploadToken,
      body: bytes,
      headers: { 'Content-MD5': md5Base64(bytes), 'Content-Type': 'application/octet-stream' },
      pausable: true,
      // Someone else's copy of a chunk completed it: there is nothing left to send.
      accept: (problem) => problem?.code === 'upload-completed' || problem?.code === 'upload-completing',
    });
    if (answer?.state && answer.state !== 'uploading') this.#serverDone = true;
    if (!this.#done.has(index)) {
      this.#done.add(index);
      this.#bytesDone += end - start;
    }
    this.#sample();
    this.#emit();
  }

  /** The final status: asks until the object is assembled. */
  async #finalStatus() {
    this.#setState('completing');
    for (let attempt = 0; ; attempt++) {
      const status = await this.#call('GET', `/v1/uploads/${this.#id}`, { token: this.#uploadToken });
      if (status.state !== 'completing') return status;
      await this.#sleep(Math.min(250 * 2 ** attempt, 5000));
    }
  }

  async #deleteRemote() {
    if (!this.#id) return;
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        const response = await this.#fetch(this.#url(`/v1/uploads/${this.#id}`), {
          method: 'DELETE',
          headers: { Authorization: `Bearer ${this.#uploadToken}` },
        });
        if (response.status < 500) return;
      } catch {
        // retried below
      }
      await delay(this.#opts.retryDelay * 2 ** attempt);
    }
  }

  /* ---- HTTP with retries ---- */

  /** One API call, retried with backoff on network errors, 5xx, 408, 429, and a chunk
   * that arrived damaged (422 checksum-mismatch, 400 incomplete-body). Any other refusal
   * throws a FerryError carrying the problem's `detail`. */
  async #call(method, path, { token, json, body, headers = {}, pausable = false, accept } = {}) {
    const init = { method, headers: { ...headers } };
    if (token) init.headers.Authorization = `Bearer ${token}`;
    if (json !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(json);
    } else if (body !== undefined) {
      init.body = body;
    }
    const requests = pausable ? this.#chunkRequests : this.#otherRequests;
    for (let attempt = 0; ; ) {
      if (pausable) await this.#gate();
      if (this.#halt) throw this.#halt;
      const controller = new AbortController();
      requests.add(controller);
      let response;
      let text;
      let failure;
      try {
        response = await this.#fetch(this.#url(path), { ...init, signal: controller.signal });
        text = await response.text();
      } catch (err) {
        failure = err;
      } finally {
        requests.delete(controller);
      }
      if (this.#halt) throw this.#halt;
      if (controller.signal.aborted) continue; // paused: send it again after resume()

      let wait;
      if (failure) {
        const error = new FerryError(`Could not reach the server (${failure.message || failure})`, {
          code: 'network',
          cause: failure,
        });
        if (attempt >= this.#opts.retries) throw error;
      } else {
        const parsed = parseJson(text);
        if (response.ok) return parsed;
        const problem = parsed && typeof parsed === 'object' ? parsed : null;
        if (accept?.(problem)) return problem;
        const error = new FerryError(problem?.detail || `${method} ${path} answered ${response.status}`, {
          status: response.status,
          code: problem?.code || `http-${response.status}`,
          problem,
        });
        if (!retryable(response.status, problem) || attempt >= this.#opts.retries) throw error;
        wait = retryAfter(response.headers.get('Retry-After'));
      }
      const backoff = Math.min(this.#opts.maxRetryDelay, this.#opts.retryDelay * 2 ** attempt);
      attempt++;
      await this.#sleep(Math.max(wait ?? 0, backoff / 2 + Math.random() * (backoff / 2)));
    }
  }

  #url(path) {
    return `${this.#server}${path}`;
  }

  /* ---- pause, cancel, waiting ---- */

  /** Waits while paused; throws once halted. */
  async #gate() {
    while (this.#paused && !this.#halt) await new Promise((wake) => this.#waiters.add(wake));
    if (this.#halt) throw this.#halt;
  }

  /** Sleeps `ms`, waking early when halted. */
  async #sleep(ms) {
    await new Promise((wake) => {
      const timer = setTimeout(() => {
        this.#waiters.delete(done);
        wake();
      }, ms);
      const done = () => {
        clearTimeout(timer);
        wake();
      };
      this.#waiters.add(done);
    });
    if (this.#halt) throw this.#halt;
  }

  #wake() {
    const waiters = [...this.#waiters];
    this.#waiters.clear();
    for (const wake of waiters) wake();
  }

  #stopAll() {
    for (const request of [...this.#chunkRequests, ...this.#otherRequests]) request.abort();
    this.#wake();
  }

  /* ---- progress ---- */

  #setState(state) {
    if (this.#state === state) return;
    if (this.#paused && state === 'uploading') state = 'paused';
    this.#state = state;
    this.#emit();
  }

  #emit() {
    const onProgress = this.#opts.onProgress;
    if (!onProgress) return;
    try {
      onProgress(this.progress);
    } catch (err) {
      setTimeout(() => {
        throw err;
      });
    }
  }

  #sample() {
    const t = now();
    this.#samples.push({ t, bytes: this.#bytesDone });
    // A moving window of the last 10 seconds (at least two samples).
    while (this.#samples.length > 2 && t - this.#samples[0].t > 10_000) this.#samples.shift();
  }

  /** Bytes per second over the moving window, or null before there is a measure. */
  #speed() {
    const first = this.#samples[0];
    const last = this.#samples[this.#samples.length - 1];
    if (!first || last === first) return null;
    const seconds = (last.t - first.t) / 1000;
    return seconds > 0 ? (last.bytes - first.bytes) / seconds : null;
  }

  #chunkLength(index) {
    return index < this.#totalChunks - 1 ? this.#chunkSize : this.#file.size - this.#chunkSize * index;
  }

  /* ---- remembering across reloads ---- */

  #recall() {
    try {
      const saved = JSON.parse(this.#storage?.getItem(this.#storageKey) ?? 'null');
      return saved && saved.uploadId && saved.uploadToken ? saved : null;
    } catch {
      return null;
    }
  }

  #remember() {
    try {
      this.#storage?.setItem(
        this.#storageKey,
        JSON.stringify({
          uploadId: this.#id,
          uploadToken: this.#uploadToken,
          chunkSize: this.#chunkSize,
          savedAt: new Date().toISOString(),
        }),
      );
    } catch {
      // Storage full or forbidden: the upload still works, it just won't survive a reload.
    }
  }

  #forget() {
    try {
      this.#storage?.removeItem(this.#storageKey);
    } catch {
      // nothing to forget
    }
  }
}

/* ----------------------------------------------------------------------------------- */
/* Following the stage: processing once the bytes are in                               */
/* ----------------------------------------------------------------------------------- */

/** The server-sent event types; each event's `data` is the upload's status. */
const EVENT_TYPES = [
  'upload.progress',
  'upload.completed',
  'upload.failed',
  'upload.canceled',
  'upload.expired',
  'processing.updated',
  'processing.done',
  'processing.failed',
];

/** EventSource errors in a row (without a connection in between) before polling instead. */
const MAX_STREAM_ERRORS = 3;

/**
 * Follows upload `uploadId` until its stage is final (`done` or `failed`): server-sent
 * events bring each change; without EventSource, or after it fails three times running,
 * the status is polled. Options: `token` (the upload token), `server`, `onStage(stage)`,
 * `status` (a status already in hand, the starting point), `pollInterval` (ms, default
 * 2000), `fetch`, `EventSource` (null: poll). `stage` is `{stage, uploadId, progress,
 * processing, result, url, error, status}`; stages only move forward.
 */
export function follow(uploadId, options = {}) {
  return new Follow(uploadId, options);
}

/** One upload being followed. */
export class Follow {
  /** Resolves to the final stage (`stage: "done"` or `"failed"`); rejects with a FerryError
   * when the token is refused, or `code: "canceled"` after `close()`. */
  promise;

  #id;
  #token;
  #server;
  #fetch;
  #onStage;
  #pollInterval;
  #source = null;
  #timer = null;
  #errors = 0;
  #stage = null;
  #closed = false;
  #resolve;
  #reject;

  constructor(uploadId, options = {}) {
    if (!uploadId) throw new TypeError('follow(uploadId): the upload id is required');
    this.#id = uploadId;
    this.#token = options.token;
    const server = options.server ?? globalThis.location?.origin;
    if (!server) throw new TypeError('follow(): options.server is required outside a page');
    this.#server = String(server).replace(/\/+$/, '');
    const fetchImpl = options.fetch ?? globalThis.fetch;
    this.#fetch = (...args) => fetchImpl.apply(globalThis, args);
    this.#onStage = options.onStage;
    this.#pollInterval = options.pollInterval ?? 2000;
    this.promise = new Promise((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    if (options.status) this.#take(options.status);
    if (this.#closed) return;
    const Source = options.EventSource === undefined ? globalThis.EventSource : options.EventSource;
    if (Source) this.#listen(Source);
    else this.#poll();
  }

  /** The latest stage (what `onStage` received), or null before the first. */
  get stage() {
    return this.#stage;
  }

  /** Stops following; `promise` rejects with `code: "canceled"` unless already settled. */
  close() {
    if (this.#stop()) this.#reject(new FerryError('Following the upload was stopped', { code: 'canceled' }));
  }

  #listen(Source) {
    const token = this.#token ? `?token=${encodeURIComponent(this.#token)}` : '';
    const source = new Source(this.#url(`/events${token}`));
    this.#source = source;
    const onEvent = (message) => {
      const event = parseJson(message.data);
      if (event?.data) this.#take(event.data);
    };
    for (const type of ['message', ...EVENT_TYPES]) source.addEventListener(type, onEvent);
    // A change made before the stream began is not in it: read the status once connected.
    source.addEventListener('open', () => {
      this.#errors = 0;
      this.#check();
    });
    // EventSource reconnects by itself, with Last-Event-ID; a refusal closes it for good.
    source.addEventListener('error', () => {
      if (this.#closed || (source.readyState !== 2 && ++this.#errors < MAX_STREAM_ERRORS)) return;
      source.close();
      this.#source = null;
      this.#poll();
    });
  }

  async #poll() {
    while (!this.#closed) {
      await this.#check();
      if (this.#closed) return;
      await new Promise((wake) => {
        this.#timer = setTimeout(wake, this.#pollInterval);
      });
    }
  }

  /** Reads the status once. An upload gone (404, 410) has failed; a refused token ends the
   * following; anything else is tried again by the next poll or reconnection. */
  async #check() {
    let response;
    let body;
    try {
      response = await this.#fetch(this.#url(''), {
        headers: this.#token ? { Authorization: `Bearer ${this.#token}` } : {},
      });
      body = parseJson(await response.text());
    } catch {
      return;
    }
    if (response.ok) return this.#take(body);
    const error = new FerryError(body?.detail || `GET ${this.#url('')} answered ${response.status}`, {
      status: response.status,
      code: body?.code || `http-${response.status}`,
      problem: body,
    });
    if (response.status === 404 || response.status === 410) {
      this.#take({ stage: 'failed', state: 'gone', error: error.message, problem: body });
    } else if (response.status === 401 || response.status === 403) {
      if (this.#stop()) this.#reject(error);
    }
  }

  /** Takes a status: reports its stage when it moved forward, and ends on a final one. */
  #take(status) {
    if (this.#closed || !status || typeof status !== 'object') return;
    const next = stageOf(this.#id, status);
    if (this.#stage && !isAhead(next, this.#stage)) return;
    this.#stage = next;
    if (this.#onStage) {
      try {
        this.#onStage(next);
      } catch (err) {
        setTimeout(() => {
          throw err;
        });
      }
    }
    if ((next.stage === 'done' || next.stage === 'failed') && this.#stop()) this.#resolve(next);
  }

  /** Closes the stream and the poll; false when already closed. */
  #stop() {
    if (this.#closed) return false;
    this.#closed = true;
    this.#source?.close();
    this.#source = null;
    clearTimeout(this.#timer);
    return true;
  }

  #url(tail) {
    return `${this.#server}/v1/uploads/${encodeURIComponent(this.#id)}${tail}`;
  }
}

/** What `onStage` receives, from a status body. `progress` is the percent of the current
 * stage: bytes while uploading, the processor's report while processing. */
function stageOf(uploadId, status) {
  const processing = status.processing ?? null;
  const result = processing?.result ?? null;
  const stage = status.stage ?? (status.state === 'completed' ? 'done' : 'uploading');
  let progress = processing?.progress ?? 0;
  if (stage === 'uploading') progress = status.size ? Math.floor((status.bytes_received * 100) / status.size) : 0;
  if (stage === 'done') progress = 100;
  let error = null;
  if (stage === 'failed') error = processing?.error || status.error || `the upload is ${status.state}`;
  return {
    stage,
    uploadId,
    progress,
    processing: processing?.status ?? null,
    result,
    url: typeof result?.url === 'string' ? result.url : null,
    error,
    status,
  };
}

/** Whether `next` is further on than `last`: a later stage (queued, then running), or the
 * same one with more progress. */
function isAhead(next, last) {
  const rank = (s) =>
    ({ uploading: 0, processing: s.processing === 'running' ? 2 : 1, done: 3, failed: 3 })[s.stage] ?? 0;
  return rank(next) > rank(last) || (rank(next) === rank(last) && next.progress > last.progress);
}

/* ---- helpers ---- */

function isFinal(state) {
  return state === 'completed' || state === 'canceled' || state === 'failed';
}

function retryable(status, problem) {
  if (status >= 500 || status === 408 || status === 429) return true;
  return problem?.code === 'checksum-mismatch' || problem?.code === 'incomplete-body';
}

/** Milliseconds from a Retry-After header (seconds or an HTTP date), or undefined. */
function retryAfter(value) {
  if (!value) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}

function parseJson(text) {
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    return null;
  }
}

function asFerryError(err) {
  if (err instanceof FerryError) return err;
  return new FerryError(err?.message || String(err), { code: 'error', cause: err });
}

function range(n) {
  return Array.from({ length: n }, (_, i) => i);
}

function now() {
  return globalThis.performance?.now() ?? Date.now();
}

function delay(ms) {
  return new Promise((wake) => setTimeout(wake, ms));
}

function defaultStorage() {
  try {
    return globalThis.localStorage ?? null;
  } catch {
    return null; // access denied (sandboxed frame, privacy settings)
  }
}
