#!/usr/bin/env node
// Keyhole from Node.js 20 or newer, with the global fetch and no dependencies.
//
// Uploads a file through a signed link, downloads it through another and checks it is
// byte-identical, lists it, deletes it, and checks that the download link is dead afterwards.
// Every step that does not go as documented stops the script with a message naming the step and a
// non-zero exit status.
//
//   KEYHOLE_SERVER=http://127.0.0.1:8080 node examples/javascript/keyhole_example.mjs [FILE]
//
// KEYHOLE_SERVER  where the API answers (default http://127.0.0.1:8080)
// KEYHOLE_TOKEN   API token, sent as "Authorization: Bearer ..." when set
// FILE            the file to upload; default: 256 KiB of random bytes
//
// The token goes to the API only. Signed links carry their own authorisation and are used exactly
// as the API returned them: never rebuilt, re-encoded or decoded.

import { createHash, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';

const SERVER = (process.env.KEYHOLE_SERVER || 'http://127.0.0.1:8080').replace(/\/+$/, '');
const TOKEN = process.env.KEYHOLE_TOKEN || '';

class StepFailed extends Error {}

function fail(step, message) {
  throw new StepFailed(`${step}: ${message}`);
}

const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex');

/** The <Code> of an S3/CloudFront-style XML error body, or ''. */
const xmlCode = (text) => (/<Code>([^<]*)<\/Code>/.exec(text) || [])[1] || '';

/** One request; any HTTP status is returned, only a failed connection throws. */
async function send(step, method, url, init = {}) {
  try {
    return await fetch(url, { method, ...init, signal: AbortSignal.timeout(60_000) });
  } catch (err) {
    fail(step, `${method} ${url.split('?')[0]}: cannot connect: ${err.cause?.message || err.message}`);
  }
}

/** Calls the JSON API, checks the status and `success`, returns the decoded reply. */
async function api(step, method, path, payload, expect = 200) {
  const headers = { accept: 'application/json' };
  if (TOKEN) headers.authorization = `Bearer ${TOKEN}`;
  const init = { headers };
  if (payload !== undefined) {
    headers['content-type'] = 'application/json';
    init.body = JSON.stringify(payload);
  }
  const res = await send(step, method, SERVER + path, init);
  const text = await res.text();
  let reply;
  try {
    reply = JSON.parse(text);
  } catch {
    fail(step, `${method} ${path} answered ${res.status} with a body that is not JSON: ${text.slice(0, 200)}`);
  }
  if (res.status !== expect) {
    const e = reply?.error || {};
    fail(step, `${method} ${path} answered ${res.status} ${e.code || ''}: ${e.message || text.slice(0, 200)} (x-request-id ${res.headers.get('x-request-id')})`);
  }
  if (expect === 200 && reply?.success !== true) {
    fail(step, `${method} ${path} answered 200 without success=true: ${text.slice(0, 200)}`);
  }
  return reply;
}

async function main() {
  let data;
  let filename;
  if (process.argv[2]) {
    data = await readFile(process.argv[2]);
    filename = basename(process.argv[2]);
  } else {
    data = randomBytes(256 * 1024);
    filename = 'example-node.bin';
  }
  const contentType = 'application/octet-stream';
  const digest = sha256(data);
  console.log(`server ${SERVER}, ${TOKEN ? 'with' : 'without'} a token; ${filename}, ${data.length} bytes, sha256 ${digest}`);

  // 1. Ask for an upload link, declaring size and SHA-256 so the server refuses anything else.
  let step = '1 create upload link';
  let link = await api(step, 'POST', '/api/files/upload', { filename, contentType, size: data.length, sha256: digest });
  const { uploadUrl, fileId } = link;
  if (!uploadUrl || !fileId) fail(step, `no uploadUrl/fileId in the reply: ${JSON.stringify(link)}`);
  console.log(`ok 1 upload link for ${fileId}, expires ${link.expiresAt}`);

  // 2. PUT the bytes to the signed link with the declared Content-Type. No token: the link is the
  //    authorisation.
  step = '2 upload';
  let res = await send(step, 'PUT', uploadUrl, { body: data, headers: { 'content-type': contentType } });
  let text = await res.text();
  if (res.status !== 200) fail(step, `PUT answered ${res.status} ${xmlCode(text)}: ${text.slice(0, 300)}`);
  const etag = res.headers.get('etag') || '';
  if (etag.replaceAll('"', '') !== digest) fail(step, `ETag ${etag} is not the SHA-256 of the bytes sent (${digest})`);
  console.log(`ok 2 uploaded, ETag ${etag}`);

  // 3. Ask for a download link.
  step = '3 create download link';
  const quotedId = encodeURIComponent(fileId);
  link = await api(step, 'GET', `/api/files/download/${quotedId}`);
  const { downloadUrl } = link;
  if (!downloadUrl) fail(step, `no downloadUrl in the reply: ${JSON.stringify(link)}`);
  console.log(`ok 3 download link, expires ${link.expiresAt}`);

  // 4. Download and compare byte for byte.
  step = '4 download and verify';
  res = await send(step, 'GET', downloadUrl);
  const got = Buffer.from(await res.arrayBuffer());
  if (res.status !== 200) fail(step, `GET answered ${res.status} ${xmlCode(got.toString())}: ${got.toString().slice(0, 300)}`);
  if (!got.equals(data)) fail(step, `downloaded ${got.length} bytes with sha256 ${sha256(got)}, expected ${data.length} bytes with ${digest}`);
  console.log(`ok 4 downloaded ${got.length} bytes, sha256 ${sha256(got)} matches; Content-Disposition: ${res.headers.get('content-disposition')}`);

  // 5. The file is listed, uploaded, with the right size and checksum.
  step = '5 list';
  const listing = await api(step, 'GET', '/api/files?limit=1000');
  const entry = (listing.files || []).find((f) => f.fileId === fileId);
  if (!entry) fail(step, `${fileId} is not in GET /api/files`);
  if (entry.status !== 'uploaded' || entry.size !== data.length || entry.sha256 !== digest) {
    fail(step, `listed as ${JSON.stringify(entry)}, expected status uploaded, size ${data.length}, sha256 ${digest}`);
  }
  console.log(`ok 5 listed: ${entry.filename}, ${entry.size} bytes, ${entry.status}`);

  // 6. Delete it.
  step = '6 delete';
  await api(step, 'DELETE', `/api/files/${quotedId}`);
  console.log('ok 6 deleted');

  // 7. The download link handed out before is dead at once, and the API no longer knows the file.
  step = '7 link dead after delete';
  res = await send(step, 'GET', downloadUrl);
  text = await res.text();
  if (res.status !== 404) fail(step, `GET on the old download link answered ${res.status} ${xmlCode(text)}, expected 404 NoSuchKey`);
  await api(step, 'GET', `/api/files/${quotedId}`, undefined, 404);
  console.log(`ok 7 old download link answers 404 ${xmlCode(text)}; GET /api/files/{fileId} answers 404`);

  console.log('node example: all steps passed');
}

try {
  await main();
} catch (err) {
  if (!(err instanceof StepFailed)) throw err;
  console.error(`FAILED step ${err.message}`);
  process.exit(1);
}
