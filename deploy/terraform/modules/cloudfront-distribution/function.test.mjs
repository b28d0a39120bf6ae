// Unit tests of the CloudFront Function (cloudfront-js-2.0 has no modules or exports, so the
// source is evaluated in a fresh vm context, as CloudFront evaluates it, and `handler` called).
//
//   node --test deploy/terraform/modules/cloudfront-distribution/function.test.mjs

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import vm from 'node:vm';

const source = readFileSync(new URL('./function.js', import.meta.url), 'utf8');

function load() {
  const context = vm.createContext({});
  vm.runInContext(source, context, { filename: 'function.js' });
  assert.equal(typeof context.handler, 'function', 'function.js defines handler(event)');
  return context.handler;
}

const handler = load();

// A viewer-request event as CloudFront builds it (cloudfront-js-2.0 shape).
function event(method, uri, querystring = {}) {
  return {
    version: '1.0',
    context: { eventType: 'viewer-request', distributionDomainName: 'd111111abcdef8.cloudfront.net' },
    viewer: { ip: '198.51.100.7' },
    request: {
      method,
      uri,
      querystring,
      headers: { host: { value: 'files.dev.example.com' }, 'user-agent': { value: 'test' } },
      cookies: {},
    },
  };
}

const signed = () => ({
  Expires: { value: '1767225600' },
  Signature: { value: 'abc~def_' },
  'Key-Pair-Id': { value: 'K2JCJMDEHXQW5F' },
});

const ID = 'k3vQ9c2mT0aZ1xYb7nR4sW_document.pdf';

function isRequest(result) {
  return result && typeof result.method === 'string' && typeof result.uri === 'string';
}

function clone(value) {
  return JSON.parse(JSON.stringify(value));
}

test('GET /files/{id} is rewritten to the object key /uploads/{id}', () => {
  const e = event('GET', `/files/${ID}`, signed());
  const result = handler(e);
  assert.ok(isRequest(result));
  assert.equal(result.uri, `/uploads/${ID}`);
});

test('HEAD /files/{id} is rewritten too', () => {
  const result = handler(event('HEAD', `/files/${ID}`, signed()));
  assert.equal(result.uri, `/uploads/${ID}`);
});

test('a download rewrite changes the uri and nothing else (query string preserved)', () => {
  const e = event('GET', `/files/${ID}`, {
    ...signed(),
    'response-content-disposition': { value: 'attachment' },
    multi: { value: 'a', multiValue: [{ value: 'a' }, { value: 'b' }] },
  });
  const before = clone(e.request);
  const result = handler(e);
  assert.deepEqual({ ...result, uri: before.uri }, before);
  assert.deepEqual(result.querystring, before.querystring);
});

test('percent-encoded ids are rewritten byte for byte', () => {
  const result = handler(event('GET', '/files/k3v_na%C3%AFve%20file.txt', signed()));
  assert.equal(result.uri, '/uploads/k3v_na%C3%AFve%20file.txt');
});

test('a whole-file PUT gets If-None-Match: * and nothing else changes', () => {
  const e = event('PUT', `/uploads/${ID}`, signed());
  const before = clone(e.request);
  const result = clone(handler(e));
  assert.ok(isRequest(result));
  assert.deepEqual(result.headers['if-none-match'], { value: '*' });
  assert.deepEqual(
    { ...result, headers: { ...result.headers, 'if-none-match': undefined } },
    { ...before, headers: { ...before.headers, 'if-none-match': undefined } },
  );
  assert.deepEqual(result.querystring, before.querystring);
});

test("a whole-file PUT cannot opt out of write-once with the viewer's own conditions", () => {
  const e = event('PUT', `/uploads/${ID}`, signed());
  e.request.headers['if-none-match'] = { value: '"0123456789abcdef0123456789abcdef"' };
  e.request.headers['if-match'] = { value: '"0123456789abcdef0123456789abcdef"' };
  const result = clone(handler(e));
  assert.deepEqual(result.headers['if-none-match'], { value: '*' });
  assert.equal(result.headers['if-match'], undefined);
  assert.equal(result.method, 'PUT');
  assert.equal(result.uri, `/uploads/${ID}`);
});

test('PUT of one part (partNumber, uploadId) passes unchanged: UploadPart takes no conditions', () => {
  const e = event('PUT', `/uploads/${ID}`, {
    partNumber: { value: '3' },
    uploadId: { value: 'VXBsb2FkIElEIGZvciBlbHZpbmc' },
    ...signed(),
  });
  const before = clone(e.request);
  assert.deepEqual(handler(e), before);
});

test('OPTIONS (CORS preflight) on /uploads/{id} passes unchanged', () => {
  const e = event('OPTIONS', `/uploads/${ID}`, signed());
  const before = clone(e.request);
  assert.deepEqual(handler(e), before);
});

test('GET and HEAD on /uploads/* are refused with 405', () => {
  for (const method of ['GET', 'HEAD']) {
    const result = handler(event(method, `/uploads/${ID}`, signed()));
    assert.equal(result.statusCode, 405, method);
    assert.equal(result.headers.allow.value, 'PUT, OPTIONS');
  }
});

test('PUT on /files/* is refused with 405: a download link can never write', () => {
  const result = handler(event('PUT', `/files/${ID}`, signed()));
  assert.equal(result.statusCode, 405);
  assert.equal(result.headers.allow.value, 'GET, HEAD');
  assert.ok(!isRequest(result));
});

test('every other method on /files/* and /uploads/* is refused', () => {
  for (const method of ['POST', 'DELETE', 'PATCH']) {
    assert.equal(handler(event(method, `/files/${ID}`, signed())).statusCode, 405, `${method} /files`);
    assert.equal(handler(event(method, `/uploads/${ID}`, signed())).statusCode, 405, `${method} /uploads`);
  }
  assert.equal(handler(event('OPTIONS', `/files/${ID}`, signed())).statusCode, 405);
});

test('paths outside /files/{id} and /uploads/{id} are refused with 403', () => {
  const paths = [
    '/',
    '/index.html',
    '/api/files',
    '/files',
    '/files/',
    '/uploads/',
    `/files/${ID}/extra`,
    `/uploads/a/${ID}`,
    '/files/..',
    '/files/.hidden',
    '/uploads/.hidden',
    `/FILES/${ID}`,
    `/other/files/${ID}`,
    `//files/${ID}`,
  ];
  for (const uri of paths) {
    for (const method of ['GET', 'PUT']) {
      const result = handler(event(method, uri, signed()));
      assert.equal(result.statusCode, 403, `${method} ${uri}`);
    }
  }
});

test('refusals carry an XML error body, no-store and no request fields', () => {
  const result = handler(event('GET', '/', {}));
  assert.equal(result.statusCode, 403);
  assert.equal(result.statusDescription, 'Forbidden');
  assert.equal(result.headers['cache-control'].value, 'no-store');
  assert.equal(result.headers['content-type'].value, 'application/xml');
  assert.equal(result.body.encoding, 'text');
  assert.match(result.body.data, /<Code>AccessDenied<\/Code>/);
});

test('the function keeps no state between requests', () => {
  const first = handler(event('GET', `/files/${ID}`, signed()));
  const second = handler(event('GET', `/files/${ID}`, signed()));
  assert.equal(first.uri, second.uri);
  assert.equal(handler(event('PUT', `/files/${ID}`)).statusCode, 405);
  assert.equal(handler(event('GET', `/files/${ID}`)).uri, `/uploads/${ID}`);
});

test('the source stays within cloudfront-js-2.0 limits (size, no module syntax)', () => {
  assert.ok(Buffer.byteLength(source) < 10 * 1024, 'CloudFront Functions are limited to 10 KB');
  assert.doesNotMatch(source, /^\s*(import|export)\s/m);
  assert.doesNotMatch(source, /\brequire\s*\(/);
});
