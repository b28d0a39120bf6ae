// Chromium: what the page does when the network or the server falters on the way (it tries
// again and keeps the upload), and when it is opened at another address than the server's public
// URL (it says where to open it).
import fs from 'node:fs';

import { api, assert, assertEqual, fetchDigest, makeFile, sleep, tmpdir, waitFor } from './lib.mjs';
import { checkClean, downloadThroughPage, newPage, waitUploaded } from './chromium.mjs';
import { sel } from './page.mjs';

const json = (status, code, message) => ({
  status, contentType: 'application/json', body: JSON.stringify({ success: false, error: { code, message } }),
});

/** Whether `url` is the PUT of a single-part upload of `name` (a file id ends with `_name`). */
const putOf = (name) => (url) => url.pathname.startsWith('/uploads/') && url.pathname.endsWith(`_${name}`) &&
  !url.searchParams.has('partNumber');

/** The uploaded file `name` on the server has the bytes of `file`. */
async function storedIntact(server, file) {
  const listed = await api(server, 'GET', '/api/files');
  const entry = listed.body.files.find((f) => f.filename === file.name);
  assert(entry, `${file.name} is not listed`);
  assertEqual(entry.status, 'uploaded', `status of ${file.name} on the server`);
  const dl = await api(server, 'GET', `/api/files/download/${entry.fileId}`);
  assertEqual(await fetchDigest(dl.body.downloadUrl), file.sha256, `SHA-256 of ${file.name} on the server`);
}

export async function transientFailures(browser, server) {
  const dir = tmpdir('transient');
  const { context, page, problems } = await newPage(browser, server, { viewport: { width: 1200, height: 860 } });
  try {
    await page.waitForSelector(sel.ready);

    // /complete answers 503 once (the metadata store failed; the file is kept): the page calls it
    // again, for a single-part file (which it completes after the PUT) and a multipart one alike.
    const single = makeFile(dir, 'complete-503.txt', 3000);
    const multi = makeFile(dir, 'complete-503.bin', 7 * 1024 * 1024 + 3);
    const completes = new Map();
    await page.route((url) => /^\/api\/files\/[^/]+\/complete$/.test(url.pathname), async (route) => {
      const path = decodeURIComponent(new URL(route.request().url()).pathname);
      const n = (completes.get(path) || 0) + 1;
      completes.set(path, n);
      if (n === 1) await route.fulfill(json(503, 'unavailable', 'the metadata store failed; the file is kept'));
      else await route.continue();
    });
    await page.setInputFiles(sel.input, [single.path, multi.path]);
    await waitUploaded(page, [single, multi]);
    for (const f of [single, multi]) {
      const calls = [...completes].filter(([p]) => p.endsWith(`_${f.name}/complete`)).map(([, n]) => n);
      assertEqual(calls.join(), '2', `/complete calls for ${f.name} (a 503, then again)`);
      await storedIntact(server, f);
    }
    const said = (await page.evaluate(() => window.__statuses))[single.name];
    assert(said.some((t) => t.startsWith('The metadata store failed; the file is kept. Trying again in 1 s (1 of 9)')),
      `the status of ${single.name} never said it would try again: ${said.join(' | ')}`);
    await page.unrouteAll({ behavior: 'wait' });

    // The connection drops before the PUT is answered: it is sent again.
    const dropped = makeFile(dir, 'put-dropped.txt', 5000);
    let droppedPuts = 0;
    await page.route(putOf(dropped.name), async (route) => {
      droppedPuts++;
      if (droppedPuts === 1) await route.abort('connectionreset');
      else await route.continue();
    });
    await page.setInputFiles(sel.input, [dropped.path]);
    await waitUploaded(page, [dropped]);
    assertEqual(droppedPuts, 2, 'PUTs of a file whose first PUT was cut off');
    await storedIntact(server, dropped);

    // The first PUT stores the bytes but its answer is lost (sent here from Node with the same
    // bytes, as the page would have): the second is refused with 409 ObjectAlreadyExists, which
    // /complete confirms as this upload's.
    const lost = makeFile(dir, 'answer-lost.txt', 6000);
    const lostAnswers = [];
    await page.route(putOf(lost.name), async (route) => {
      if (lostAnswers.length) {
        await route.continue();
        return;
      }
      const r = await fetch(route.request().url(), {
        method: 'PUT', headers: { 'Content-Type': 'text/plain' }, body: fs.readFileSync(lost.path),
      });
      lostAnswers.push(r.status);
      await route.abort('connectionreset');
    });
    page.on('response', (r) => { if (putOf(lost.name)(new URL(r.url())) && lostAnswers.length) lostAnswers.push(r.status()); });
    await page.setInputFiles(sel.input, [lost.path]);
    await waitUploaded(page, [lost]);
    assertEqual(lostAnswers.join(), '200,409', 'answers to the PUTs (the first one never reached the page)');
    await storedIntact(server, lost);

    // The same behind CloudFront, which makes every whole-file PUT a conditional write: S3
    // refuses the retry with 412 PreconditionFailed (answered here as S3 words it), and that too
    // is the earlier attempt's file.
    const conditional = makeFile(dir, 'answer-lost-cloudfront.txt', 6500);
    const conditionalAnswers = [];
    await page.route(putOf(conditional.name), async (route) => {
      if (conditionalAnswers.length) {
        conditionalAnswers.push(412);
        await route.fulfill({
          status: 412,
          contentType: 'application/xml',
          body: '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>PreconditionFailed</Code>' +
            '<Message>At least one of the pre-conditions you specified did not hold</Message>' +
            '<Condition>If-None-Match</Condition></Error>',
        });
        return;
      }
      const r = await fetch(route.request().url(), {
        method: 'PUT', headers: { 'Content-Type': 'text/plain' }, body: fs.readFileSync(conditional.path),
      });
      conditionalAnswers.push(r.status);
      await route.abort('connectionreset');
    });
    await page.setInputFiles(sel.input, [conditional.path]);
    await waitUploaded(page, [conditional]);
    assertEqual(conditionalAnswers.join(), '200,412', 'answers to the PUTs (the first one never reached the page)');
    await storedIntact(server, conditional);

    // Throttled with Retry-After: 1: the page waits a second, not its own half second.
    const throttled = makeFile(dir, 'throttled.txt', 700);
    const mints = [];
    await page.route((url) => url.pathname === '/api/files/upload', async (route) => {
      if (route.request().postDataJSON().filename !== throttled.name) return route.fallback();
      mints.push(Date.now());
      if (mints.length > 1) return route.continue();
      return route.fulfill({ ...json(429, 'rate_limited', 'too many requests'), headers: { 'Retry-After': '1' } });
    });
    await page.setInputFiles(sel.input, [throttled.path]);
    await waitUploaded(page, [throttled]);
    assertEqual(mints.length, 2, 'requests for the upload link (429, then again)');
    assert(mints[1] - mints[0] >= 950, `the page asked again after ${mints[1] - mints[0]} ms, before Retry-After's 1 s`);
    const waited = (await page.evaluate(() => window.__statuses))[throttled.name];
    assert(waited.includes('Too many requests. Trying again in 1 s (1 of 9)…'), `status while throttled: ${waited.join(' | ')}`);
    await storedIntact(server, throttled);

    // Offline: the page waits for the connection to come back rather than counting down.
    const offline = makeFile(dir, 'offline.txt', 4000);
    let offlinePuts = 0;
    await page.route(putOf(offline.name), async (route) => {
      offlinePuts++;
      if (offlinePuts === 1) {
        await context.setOffline(true);
        await route.abort('internetdisconnected');
      } else {
        await route.continue();
      }
    });
    await page.setInputFiles(sel.input, [offline.path]);
    const status = page.locator(sel.upload(offline.name)).getByTestId('upload-status');
    await waitFor('the page to wait for the connection', async () =>
      /Offline; waiting for the connection/.test(await status.textContent()), 10000);
    await sleep(2500);
    assertEqual(offlinePuts, 1, 'PUTs while offline');
    await context.setOffline(false);
    await waitUploaded(page, [offline]);
    assertEqual(offlinePuts, 2, 'PUTs of the file sent while offline');
    await storedIntact(server, offline);

    // The link is refused (as when it expired during a long wait offline): a single-part link
    // cannot be renewed, so the page creates the upload anew and removes the first one.
    const refused = makeFile(dir, 'link-refused.txt', 3500);
    const refusedPuts = [];
    await page.route(putOf(refused.name), async (route) => {
      refusedPuts.push(new URL(route.request().url()).pathname);
      if (refusedPuts.length > 1) return route.continue();
      return route.fulfill({
        status: 403, contentType: 'text/xml',
        body: '<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Access denied</Message></Error>',
      });
    });
    await page.setInputFiles(sel.input, [refused.path]);
    await waitUploaded(page, [refused]);
    assertEqual(refusedPuts.length, 2, 'PUTs of a file whose first link was refused');
    assert(refusedPuts[0] !== refusedPuts[1], `the second PUT went to the refused link: ${refusedPuts.join(' ')}`);
    await waitFor('the refused upload to be removed', async () => {
      const l = await api(server, 'GET', '/api/files');
      return l.body.files.filter((f) => f.filename === refused.name).length === 1;
    }, 10000);
    await storedIntact(server, refused);
    const renewed = (await page.evaluate(() => window.__statuses))[refused.name];
    assert(renewed.includes('The upload link was refused; getting a new one…'), `status when refused: ${renewed.join(' | ')}`);

    assert(await page.locator(sel.error).isHidden(), `an error is shown: ${await page.locator(sel.error).textContent()}`);
    await checkClean(page, problems);
  } finally {
    await context.close();
  }
}

/**
 * The page opened at http://localhost:PORT while the public URL is http://127.0.0.1:PORT: it
 * says where to open it; an upload's PUT to the public URL fails (no CORS) and says why.
 */
export async function otherOrigin(browser, server) {
  const dir = tmpdir('origin');
  const at = `http://localhost:${server.port}/`;
  const { context, page, problems } = await newPage(browser, server, { viewport: { width: 1200, height: 860 } }, { at });
  try {
    await page.waitForSelector(sel.ready);
    const notice = page.getByTestId('origin-notice');
    await notice.waitFor({ state: 'visible' });
    const said = await notice.textContent();
    assert(said.includes(`Uploads and downloads go through ${server.base}; open this page there`), `notice says: ${said}`);
    assertEqual(await notice.getByTestId('public-url-link').getAttribute('href'), `${server.base}/`, 'link in the notice');

    const file = makeFile(dir, 'from-localhost.txt', 2000);
    await page.setInputFiles(sel.input, [file.path]);
    const item = page.locator(sel.upload(file.name));
    const status = item.getByTestId('upload-status');
    await waitFor('the reason the PUT fails', async () => {
      const text = await status.textContent();
      return text.includes(`Cannot reach 127.0.0.1:${server.port}.`) && text.includes(`open it at ${server.base}`);
    }, 15000);
    // Still trying again (it would for a minute and a half): stop it. Either way, nothing stays.
    const cancel = item.getByTestId('upload-cancel');
    if (await cancel.count()) {
      await cancel.click();
      await page.locator(sel.uploadIn(file.name, 'cancelled')).waitFor();
    }
    await waitFor('the cancelled upload to be removed', async () => {
      const l = await api(server, 'GET', '/api/files');
      return !l.body.files.some((f) => f.filename === file.name);
    }, 10000);
    await checkClean(page, problems);
  } finally {
    await context.close();
  }
}

/** The same, with the server allowing http://localhost:PORT (--cors-origin): it all works. */
export async function otherOriginAllowed(browser, server) {
  const dir = tmpdir('origin-cors');
  const at = `http://localhost:${server.port}/`;
  const { context, page, problems } = await newPage(browser, server, { viewport: { width: 1200, height: 860 } }, { at });
  try {
    await page.waitForSelector(sel.ready);
    await page.getByTestId('origin-notice').waitFor({ state: 'visible' });
    const file = makeFile(dir, 'allowed-origin.txt', 2500);
    await page.setInputFiles(sel.input, [file.path]);
    await waitUploaded(page, [file]);
    await page.locator(sel.uploadedRow(file.name)).waitFor();
    assertEqual(await downloadThroughPage(page, file.name), file.sha256, 'SHA-256 of the download from another origin');
    await storedIntact(server, file);
    await checkClean(page, problems);
  } finally {
    await context.close();
  }
}

/**
 * Storage's own "try again" codes are tried again whatever their status: S3 answers a body that
 * stalled with 400 RequestTimeout (its SDKs retry it), which must not fail a whole upload.
 */
export async function storageTimeoutsRetried(browser, server) {
  const dir = tmpdir('storage-timeouts');
  const single = makeFile(dir, 'stalled-once.txt', 4000);
  const multi = makeFile(dir, 'stalled-part.bin', 7 * 1024 * 1024 + 5);
  const { context, page, problems } = await newPage(browser, server, { viewport: { width: 1200, height: 860 } });
  try {
    await page.waitForSelector(sel.ready);
    const timeout = {
      status: 400, contentType: 'application/xml',
      body: '<?xml version="1.0" encoding="UTF-8"?><Error><Code>RequestTimeout</Code><Message>Your socket ' +
        'connection to the server was not read from or written to within the timeout period. Idle connections ' +
        'will be closed.</Message></Error>',
    };
    const puts = new Map();
    await page.route((url) => url.pathname.startsWith('/uploads/') &&
      (putOf(single.name)(url) || url.searchParams.get('partNumber') === '2'), async (route) => {
      const url = new URL(route.request().url());
      const key = url.pathname + url.search.replace(/.*(partNumber=\d+).*/, '$1');
      const n = (puts.get(key) || 0) + 1;
      puts.set(key, n);
      if (n === 1) await route.fulfill(timeout);
      else await route.continue();
    });
    await page.setInputFiles(sel.input, [single.path, multi.path]);
    await waitUploaded(page, [single, multi]);
    assertEqual([...puts.values()].join(), '2,2', 'PUTs of the file and the part that stalled once');
    for (const f of [single, multi]) await storedIntact(server, f);
    assert(await page.locator(sel.error).isHidden(), `an error is shown: ${await page.locator(sel.error).textContent()}`);
    await checkClean(page, problems);
  } finally {
    await context.close();
  }
}

/**
 * A server whose public URL is an IPv6 literal (http://[::1]:PORT), the page opened at
 * http://localhost:PORT, which it allows with --cors-origin: the page's Content-Security-Policy
 * lets it send uploads there, and downloads work.
 */
export async function ipv6PublicUrl(browser, server) {
  const dir = tmpdir('ipv6');
  const at = `http://localhost:${server.port}/`;
  const { context, page, problems } = await newPage(browser, server, { viewport: { width: 1200, height: 860 } }, { at });
  try {
    await page.waitForSelector(sel.ready);
    const file = makeFile(dir, 'to-ipv6.txt', 2200);
    await page.setInputFiles(sel.input, [file.path]);
    const status = page.locator(sel.upload(file.name)).getByTestId('upload-status');
    await Promise.race([
      waitUploaded(page, [file]),
      waitFor('a failed PUT', async () => /Cannot reach|Trying again/.test(await status.textContent()), 90000)
        .then(async () => { throw new Error(`the PUT to [::1] failed: ${await status.textContent()}`); }),
    ]);
    await page.locator(sel.uploadedRow(file.name)).waitFor();
    assertEqual(await downloadThroughPage(page, file.name), file.sha256, 'SHA-256 of the download from [::1]');
    await storedIntact(server, file);
    await checkClean(page, problems);
  } finally {
    await context.close();
  }
}

/**
 * The same page with a policy that leaves out where uploads go (as a proxy might rewrite it): the
 * failed PUT is put down to the Content-Security-Policy, not to CORS, and is not tried again.
 */
export async function cspBlockSaysSo(browser, server) {
  const dir = tmpdir('csp-block');
  const at = `http://localhost:${server.port}/`;
  const { context, page, problems } = await newPage(browser, server, { viewport: { width: 1200, height: 860 } }, {
    at,
    // Fetched from Node at [::1] (Node's localhost is 127.0.0.1, where nothing listens).
    before: (c) => c.route(at, async (route) => {
      try {
        const response = await route.fetch({ url: `${server.base}/` });
        const headers = response.headers();
        headers['content-security-policy'] = headers['content-security-policy'].replace(/connect-src [^;]*/, "connect-src 'self'");
        await route.fulfill({ response, headers });
      } catch (e) {
        console.log(`  could not rewrite the page's policy: ${e.message}`);
        await route.abort();
      }
    }),
  });
  try {
    await page.waitForSelector(sel.ready);
    const file = makeFile(dir, 'blocked-by-policy.txt', 1800);
    let puts = 0;
    page.on('request', (r) => { if (r.method() === 'PUT') puts++; });
    await page.setInputFiles(sel.input, [file.path]);
    const item = page.locator(sel.uploadIn(file.name, 'error'));
    await item.waitFor({ timeout: 15000 });
    const said = await item.getByTestId('upload-status').textContent();
    assert(/Content-Security-Policy/.test(said) && !/CORS/.test(said), `status says: ${said}`);
    assert(said.includes(`[::1]:${server.port}`), `status does not name where it could not go: ${said}`);
    assertEqual(puts, 1, 'PUTs the page tried (the policy holds until a reload: not tried again)');
    await waitFor('the failed upload to be removed', async () => {
      const l = await api(server, 'GET', '/api/files');
      return !l.body.files.some((f) => f.filename === file.name);
    }, 10000);
    assertEqual(problems.length, 0, problems.join('; '));
  } finally {
    await context.close();
  }
}
