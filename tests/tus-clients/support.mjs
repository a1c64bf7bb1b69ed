// What the tus client tests share: ferry (started as the browser suite starts it), files,
// and a look at what ferry stored for an upload URL.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export { startFerry, tempDir, writeTestFile, deterministicBytes, MIB } from '../browser/support.mjs';

/** The native status of the upload behind a tus upload URL (its last segment is
 * `{upload_id}.{upload_token}`). */
export async function nativeStatus(ferryUrl, uploadUrl) {
  const [id, token] = new URL(uploadUrl).pathname.split('/').pop().split('.');
  let response;
  try {
    response = await fetch(`${ferryUrl}/v1/uploads/${id}`, { headers: { Authorization: `Bearer ${token}` } });
  } catch (err) {
    throw new Error(`status of ${id}: ${err.cause ?? err}`);
  }
  if (!response.ok) throw new Error(`status of ${id}: ${response.status} ${await response.text()}`);
  return response.json();
}

/** The stored object's bytes for a completed upload. */
export async function storedBytes(ferry, uploadUrl) {
  const status = await nativeStatus(ferry.url, uploadUrl);
  if (status.state !== 'completed') throw new Error(`upload is ${status.state}, not completed`);
  return { status, bytes: readFileSync(join(ferry.objects, status.key)) };
}
