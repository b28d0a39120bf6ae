// Shared helpers for the browser tests: a real `keyhole serve` on 127.0.0.1, test files, hashing,
// polling and a tiny test harness that ends with "N passed, M failed".
import { spawn, execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(HERE, '..');
export const SCREENSHOTS = path.join(HERE, 'screenshots');
export const KEYHOLE = path.resolve(ROOT, process.env.KEYHOLE || 'target/debug/keyhole');
export const MULTIPART_THRESHOLD = 6291456; // 6 MiB
export const PART_SIZE = 5242880; // 5 MiB
export const MiB = 1024 * 1024;

/** The flags every browser needs on these machines (no network but loopback, running as root). */
export const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

const made = [];

/** A new temporary directory, removed by cleanup() at the end of the run. */
export function tmpdir(prefix) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `keyhole-e2e-${prefix}-`));
  made.push(dir);
  return dir;
}

/** Removes the run's temporary directories (kept when E2E_KEEP is set, to look into). */
export function cleanup() {
  if (process.env.E2E_KEEP) return;
  for (const dir of made.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
}

export function sha256(bytes) {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Writes a file of `size` random bytes named `name` into `dir`; returns its path and digest. */
export function makeFile(dir, name, size) {
  const bytes = randomBytes(size);
  const file = path.join(dir, name);
  fs.writeFileSync(file, bytes);
  return { name, path: file, size, sha256: sha256(bytes) };
}

export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `fn` until it returns a truthy value or `timeout` ms pass. */
export async function waitFor(what, fn, timeout = 30000, every = 100) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeout} ms waiting for ${what}${last ? `: ${last.message}` : ''}`);
    }
    await sleep(every);
  }
}

export function assert(cond, message) {
  if (!cond) throw new Error(message);
}

export function assertEqual(actual, expected, what) {
  if (actual !== expected) {
    throw new Error(`${what}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
  }
}

async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** `keyhole tokens generate --principal P`: the token and its `--token` flag value. */
export function generateToken(principal) {
  const out = execFileSync(KEYHOLE, ['tokens', 'generate', '--principal', principal], { encoding: 'utf8' });
  const token = /^token:\s+(\S+)/m.exec(out);
  const flag = /^config:\s+--token\s+(\S+)/m.exec(out);
  if (!token || !flag) throw new Error(`unexpected output of keyhole tokens generate:\n${out}`);
  return { token: token[1], flag: flag[1] };
}

/**
 * Starts `keyhole serve` on a free loopback port with the test's multipart settings; `extraArgs`
 * is a list of flags, or a function of the port that returns them. `host` is the loopback
 * address it listens on and its public URL names (`[::1]` for IPv6).
 */
export async function startServer(name, extraArgs = [], { host = '127.0.0.1' } = {}) {
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    const extra = typeof extraArgs === 'function' ? extraArgs(port) : extraArgs;
    const dataDir = tmpdir(`${name}-data`);
    const logPath = path.join(dataDir, 'server.log');
    const log = fs.openSync(logPath, 'w');
    const base = `http://${host}:${port}`;
    const child = spawn(KEYHOLE, [
      'serve', '--data-dir', dataDir, '--listen', `${host}:${port}`, '--public-url', base,
      '--multipart-threshold', String(MULTIPART_THRESHOLD), '--part-size', String(PART_SIZE),
      '--log-format', 'json', ...extra,
    ], { stdio: ['ignore', log, log] });
    let exited = null;
    child.on('exit', (code, signal) => { exited = { code, signal }; });
    const server = {
      name, base, port, dataDir, logPath, child,
      logTail(lines = 30) {
        try {
          return fs.readFileSync(logPath, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
        } catch (_) {
          return '';
        }
      },
      async stop() {
        if (exited) return;
        const done = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        const killed = await Promise.race([done.then(() => true), sleep(5000).then(() => false)]);
        if (!killed) {
          child.kill('SIGKILL');
          await done;
        }
      },
    };
    try {
      await waitFor(`${name} server on ${base}`, async () => {
        if (exited) throw new Error(`keyhole exited (${JSON.stringify(exited)}):\n${server.logTail()}`);
        const r = await fetch(`${base}/healthz`);
        return r.ok;
      }, 20000, 100);
      return server;
    } catch (e) {
      await server.stop();
      if (attempt < 2 && exited) continue; // the port was taken meanwhile: try another
      throw e;
    }
  }
}

/** A JSON API call from Node (to check what the page did). */
export async function api(server, method, route, token) {
  const headers = { Accept: 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  const r = await fetch(server.base + route, { method, headers });
  const body = await r.json().catch(() => ({}));
  return { status: r.status, body };
}

/** Uploads `bytes` as `name` from Node, through the API and the edge; returns the file id. */
export async function uploadThroughApi(server, name, bytes, token) {
  const headers = { Accept: 'application/json', 'Content-Type': 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  const r = await fetch(`${server.base}/api/files/upload`, {
    method: 'POST', headers, body: JSON.stringify({ filename: name, contentType: 'text/plain', size: bytes.length }),
  });
  const link = await r.json();
  if (!r.ok) throw new Error(`creating the upload of ${name} answered ${r.status}: ${JSON.stringify(link)}`);
  const put = await fetch(link.uploadUrl, { method: 'PUT', headers: { 'Content-Type': 'text/plain' }, body: bytes });
  if (!put.ok) throw new Error(`PUT of ${name} answered ${put.status}: ${(await put.text()).slice(0, 200)}`);
  return link.fileId;
}

/** Fetches a URL and returns the SHA-256 of its body (fails on a non-2xx answer). */
export async function fetchDigest(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`GET ${url} answered ${r.status}: ${(await r.text()).slice(0, 200)}`);
  return sha256(Buffer.from(await r.arrayBuffer()));
}

/** Runs named async tests one after another and prints the closing "N passed, M failed" line. */
export class Suite {
  constructor() {
    this.passed = 0;
    this.failed = 0;
    this.started = Date.now();
  }

  async test(name, fn) {
    // E2E_ONLY=word runs only the tests whose name contains it (while working on one).
    if (process.env.E2E_ONLY && !name.includes(process.env.E2E_ONLY)) return;
    const t0 = Date.now();
    process.stdout.write(`- ${name} ...\n`);
    try {
      await fn();
      this.passed++;
      process.stdout.write(`  ok (${((Date.now() - t0) / 1000).toFixed(1)} s)\n`);
    } catch (e) {
      this.failed++;
      process.stdout.write(`  FAILED (${((Date.now() - t0) / 1000).toFixed(1)} s): ${e && e.stack ? e.stack : e}\n`);
    }
  }

  finish() {
    const secs = ((Date.now() - this.started) / 1000).toFixed(1);
    process.stdout.write(`\nbrowser tests took ${secs} s; screenshots in ${path.relative(ROOT, SCREENSHOTS)}/\n`);
    process.stdout.write(`${this.passed} passed, ${this.failed} failed\n`);
    // A run that tested nothing (a filter that matches no test) is not a pass.
    return this.failed === 0 && this.passed > 0 ? 0 : 1;
  }
}
