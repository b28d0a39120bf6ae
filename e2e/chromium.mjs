// Debian Chromium driven by playwright-core: desktop, phone emulation, part retries and the token
// flow, each through the page as a person would use it.
import fs from 'node:fs';
import path from 'node:path';
import { chromium, devices } from 'playwright-core';

import {
  CHROMIUM_ARGS, MiB, SCREENSHOTS, api, assert, assertEqual, fetchDigest, makeFile, sha256, sleep,
  tmpdir, waitFor,
} from './lib.mjs';
import { RECORDER, checkProgress, sel } from './page.mjs';

const UPLOAD_TIMEOUT = 90000;

export async function launchChromium() {
  // playwright-core starts the browser with a new, empty profile (user-data-dir) every launch.
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: CHROMIUM_ARGS,
    headless: true,
    timeout: 60000,
  });
}

/**
 * A new browser context and page on `server` (at `at` when given, e.g. another origin). With
 * `clock`, the page's timers are Playwright's, which a test can fast-forward; `before(context)`
 * runs before the page is opened (to route or seed what the page loads).
 */
export async function newPage(browser, server, options = {}, { clock = false, at = null, before = null } = {}) {
  const context = await browser.newContext({ acceptDownloads: true, ...options });
  await context.addInitScript(RECORDER);
  if (clock) await context.clock.install();
  if (before) await before(context);
  const page = await context.newPage();
  page.setDefaultTimeout(30000);
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  await page.goto(at || `${server.base}/`);
  return { context, page, problems };
}

/** No script errors and no Content-Security-Policy violations so far. */
export async function checkClean(page, problems) {
  const csp = await page.evaluate(() => window.__csp);
  assert(csp.length === 0, `Content-Security-Policy violations: ${csp.join('; ')}`);
  assert(problems.length === 0, problems.join('; '));
}

export async function waitUploaded(page, files) {
  for (const f of files) {
    await page.locator(sel.upload(f.name)).getByTestId('upload-progress').waitFor({ state: 'visible' });
  }
  for (const f of files) {
    const item = page.locator(sel.upload(f.name));
    const done = page.locator(sel.uploadIn(f.name, 'done'));
    const failed = page.locator(`${sel.uploadIn(f.name, 'error')}`);
    await Promise.race([
      done.waitFor({ timeout: UPLOAD_TIMEOUT }),
      failed.waitFor({ timeout: UPLOAD_TIMEOUT }).then(async () => {
        throw new Error(`upload of ${f.name} failed: ${await item.getByTestId('upload-status').textContent()}`);
      }),
    ]);
    assertEqual(await item.getByTestId('upload-progress').getAttribute('value'), '100', `progress of ${f.name}`);
    assertEqual(await item.getByTestId('upload-percent').textContent(), '100%', `percentage of ${f.name}`);
  }
  const recorded = await page.evaluate(() => window.__progress);
  return Object.fromEntries(files.map((f) => [f.name, checkProgress(recorded[f.name], f.name)]));
}

/** Clicks Download on a row and returns the SHA-256 of what the browser saved. */
export async function downloadThroughPage(page, name) {
  const row = page.locator(sel.uploadedRow(name));
  const [download] = await Promise.all([
    page.waitForEvent('download', { timeout: 30000 }),
    row.getByTestId('download-button').click(),
  ]);
  assertEqual(download.suggestedFilename(), name, 'downloaded file name');
  const failure = await download.failure();
  assert(!failure, `download of ${name} failed: ${failure}`);
  return sha256(fs.readFileSync(await download.path()));
}

export async function deleteThroughPage(page, name) {
  const button = page.locator(sel.row(name)).getByTestId('delete-button');
  await button.click();
  await waitFor('the delete button to ask for confirmation', async () => (await button.textContent()).includes('Confirm'));
  await button.click();
  await page.locator(sel.row(name)).waitFor({ state: 'detached' });
}

async function noHorizontalOverflow(page, where) {
  const m = await page.evaluate(() => ({
    scroll: document.documentElement.scrollWidth,
    client: document.documentElement.clientWidth,
    body: document.body.scrollWidth,
  }));
  assert(m.scroll <= m.client && m.body <= m.client,
    `horizontal overflow ${where}: scrollWidth ${m.scroll} / body ${m.body} > clientWidth ${m.client}`);
}

export async function desktop(browser, server) {
  const dir = tmpdir('desktop');
  const small = makeFile(dir, 'Quarterly report – Q3.pdf', 214 * 1024 + 17);
  const big = makeFile(dir, 'design-assets.zip', 12 * MiB + 4321);
  const { context, page, problems } = await newPage(browser, server, {
    viewport: { width: 1200, height: 860 },
  });
  try {
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: server.base });
    // Listening from the start turns on Playwright's file-chooser interception before any key is
    // pressed (waitForEvent would race the key press and miss the picker now and then).
    const choosers = [];
    page.on('filechooser', (c) => choosers.push(c));
    await page.waitForSelector(sel.ready);
    await page.getByTestId('empty').waitFor({ state: 'visible' });

    // Keyboard: Tab reaches the drop zone, which shows a focus ring and opens the picker.
    for (let i = 0; i < 6; i++) {
      await page.keyboard.press('Tab');
      if (await page.evaluate(() => document.activeElement?.dataset.testid === 'dropzone')) break;
    }
    assert(await page.evaluate(() => document.activeElement?.dataset.testid === 'dropzone'),
      'Tab does not reach the drop zone');
    const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
    assert(outline !== 'none', 'the focused drop zone shows no focus outline');
    for (const key of ['Enter', 'Space']) {
      await page.keyboard.press(key);
      await waitFor(`the file picker to open on ${key}`, () => choosers.length > 0, 5000);
      assert(choosers.shift().isMultiple(), 'the file picker does not allow several files');
    }

    // Two files at once: one single-part, one multipart (3 parts of 5 MiB at most).
    await page.setInputFiles(sel.input, [small.path, big.path]);
    const distinct = await waitUploaded(page, [small, big]);
    console.log(`  progress values shown: ${small.name}: ${distinct[small.name]}, ${big.name}: ${distinct[big.name]}`);

    for (const f of [small, big]) {
      const row = page.locator(sel.uploadedRow(f.name));
      await row.waitFor();
      assertEqual(await row.getByTestId('file-status').textContent(), 'Uploaded', `status of ${f.name}`);
      assert((await row.getByTestId('file-expiry').textContent()).startsWith('Expires in'), `expiry of ${f.name}`);
      assertEqual(await downloadThroughPage(page, f.name), f.sha256, `SHA-256 of downloaded ${f.name}`);
    }
    assertEqual(await page.locator('[data-testid=file-row]').count(), 2, 'rows in the file list');
    assertEqual(await page.locator(sel.row(big.name)).getByTestId('file-size').textContent(), '12 MiB', 'size shown for the big file');

    // Copy link: the link lands on the clipboard and in a box, and it downloads the file.
    const smallRow = page.locator(sel.uploadedRow(small.name));
    await smallRow.getByTestId('copy-link-button').click();
    const linkBox = smallRow.getByTestId('link-output');
    await linkBox.waitFor();
    const link = await linkBox.inputValue();
    assert(link.startsWith(`${server.base}/files/`) && link.includes('Signature='), `unexpected link ${link}`);
    assertEqual(await page.evaluate(() => navigator.clipboard.readText()), link, 'clipboard content');
    assert((await smallRow.getByTestId('link-label').textContent()).startsWith('Copied.'), 'copy confirmation');
    assertEqual(await fetchDigest(link), small.sha256, 'SHA-256 through the copied link');

    await page.evaluate(() => document.querySelector('[data-testid=status]').classList.remove('show'));
    await page.mouse.move(0, 0);
    await page.screenshot({ path: path.join(SCREENSHOTS, 'desktop.png'), fullPage: true, animations: 'disabled' });

    // Delete: the row goes, the listing no longer has it, and the copied link stops working.
    await deleteThroughPage(page, small.name);
    const listed = await api(server, 'GET', '/api/files');
    assert(!listed.body.files.some((f) => f.filename === small.name), 'the deleted file is still listed');
    assert(listed.body.files.some((f) => f.filename === big.name), 'the other file disappeared');
    assertEqual((await fetch(link)).status, 404, 'status of the deleted file\'s link');
    assertEqual(await page.locator('[data-testid=file-row]').count(), 1, 'rows after delete');
    await checkClean(page, problems);
  } finally {
    await context.close();
  }
}

export async function serverErrorsInWords(browser, server) {
  const { context, page, problems } = await newPage(browser, server, { viewport: { width: 1200, height: 860 } });
  try {
    await page.waitForSelector(sel.ready);
    // A name the API refuses (a right-to-left override would show it as "invoiceexe.pdf"): the
    // page shows the server's own words.
    const name = 'invoice\u202Efdp.exe';
    await page.setInputFiles(sel.input, [{ name, mimeType: 'text/plain', buffer: Buffer.from('hello') }]);
    await page.locator(sel.uploadIn(name, 'error')).waitFor();
    const banner = page.locator(sel.error);
    await banner.waitFor({ state: 'visible' });
    const text = await banner.textContent();
    assert(/Filename must not contain bidirectional formatting characters/.test(text), `error banner says: ${text}`);
    assertEqual(await banner.getAttribute('role'), 'alert', 'role of the error banner');
    await checkClean(page, problems);
  } finally {
    await context.close();
  }
}

export async function partRetries(browser, server) {
  const dir = tmpdir('retry');
  const healed = makeFile(dir, 'flaky-network.bin', 11 * MiB + 99);
  const broken = makeFile(dir, 'always-failing.bin', 6 * MiB + 1);
  // The page's clock is Playwright's, to skip the minute and a half of waits before an upload
  // that keeps failing is given up.
  const { context, page, problems } = await newPage(browser, server, { viewport: { width: 1200, height: 860 } }, { clock: true });
  try {
    await page.waitForSelector(sel.ready);
    const attempts = new Map();
    const xml = (code, message) => `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>${message}</Message></Error>`;
    let partsListed = 0;
    page.on('request', (r) => { if (/\/api\/files\/[^/]+\/parts$/.test(new URL(r.url()).pathname)) partsListed++; });
    await page.route((url) => url.pathname.startsWith('/uploads/') && ['2', '3'].includes(url.searchParams.get('partNumber')), async (route) => {
      const url = new URL(route.request().url());
      const key = `${decodeURIComponent(url.pathname)} part ${url.searchParams.get('partNumber')}`;
      const n = (attempts.get(key) || 0) + 1;
      attempts.set(key, n);
      if (key.endsWith(`${healed.name} part 2`) && n === 1) {
        await route.fulfill({ status: 503, contentType: 'application/xml', body: xml('ServiceUnavailable', 'try again') });
      } else if (key.endsWith(`${healed.name} part 3`) && n === 1) {
        // As if the link had expired: the page fetches fresh part links and sends the part again.
        await route.fulfill({ status: 403, contentType: 'text/xml', body: xml('AccessDenied', 'Access denied') });
      } else if (key.includes(broken.name)) {
        await route.fulfill({ status: 500, contentType: 'application/xml', body: xml('InternalError', 'storage failure') });
      } else {
        await route.continue();
      }
    });

    // A failure and a refused link, then success: the parts are sent again and the file is intact.
    await page.setInputFiles(sel.input, [healed.path]);
    await waitUploaded(page, [healed]);
    const tries = (part) => [...attempts].find(([k]) => k.endsWith(part))[1];
    assertEqual(tries(`${healed.name} part 2`), 2, 'attempts at part 2 of the healed upload');
    assertEqual(tries(`${healed.name} part 3`), 2, 'attempts at part 3 of the healed upload');
    assert(partsListed >= 1, 'the page did not ask for fresh part links after a 403');
    await page.locator(sel.uploadedRow(healed.name)).waitFor();
    const listed = await api(server, 'GET', '/api/files');
    const id = listed.body.files.find((f) => f.filename === healed.name).fileId;
    const dl = await api(server, 'GET', `/api/files/download/${id}`);
    assertEqual(await fetchDigest(dl.body.downloadUrl), healed.sha256, 'SHA-256 after a retried part');

    // Failing every time: nine retries over about a minute and a half, then the error in words,
    // and no half upload left behind.
    await page.setInputFiles(sel.input, [broken.path]);
    const item = page.locator(sel.uploadIn(broken.name, 'error'));
    await waitFor('the always failing upload to fail', async () => {
      if (await item.count()) return true;
      await page.clock.fastForward(25000);
      return false;
    }, 60000, 200);
    assertEqual(tries(`${broken.name} part 2`), 10, 'attempts at a part that always fails (1 + 9 retries)');
    const said = await item.getByTestId('upload-status').textContent();
    assert(/Part 2 of 2 failed: Storage failure\. \(InternalError\)/.test(said), `status says: ${said}`);
    await waitFor('the failed upload to be removed', async () => {
      const l = await api(server, 'GET', '/api/files');
      return !l.body.files.some((f) => f.filename === broken.name);
    }, 10000);
    await checkClean(page, problems);
  } finally {
    await context.close();
  }
}

export async function phone(browser, server) {
  const dir = tmpdir('phone');
  const photo = makeFile(dir, 'Site photos from the north-east warehouse inspection, March 2026 (final).jpg', 7 * MiB + 512);
  const { context, page, problems } = await newPage(browser, server, { ...devices['Pixel 5'] });
  try {
    await page.waitForSelector(sel.ready);
    await noHorizontalOverflow(page, 'on load (Pixel 5)');
    await page.setInputFiles(sel.input, [photo.path]);
    await waitUploaded(page, [photo]);
    await page.locator(sel.uploadedRow(photo.name)).waitFor();
    await noHorizontalOverflow(page, 'with a long file name (Pixel 5)');
    await page.setViewportSize({ width: 375, height: 812 });
    await noHorizontalOverflow(page, 'at 375 px');
    const box = await page.locator(sel.row(photo.name)).getByTestId('delete-button').boundingBox();
    assert(box.height >= 36, `buttons are ${box.height}px high; too small to tap`);
    await page.evaluate(() => document.querySelector('[data-testid=status]').classList.remove('show'));
    await page.screenshot({ path: path.join(SCREENSHOTS, 'phone.png'), fullPage: true, animations: 'disabled' });
    await page.locator(sel.uploadedRow(photo.name)).getByTestId('copy-link-button').tap();
    await page.locator(sel.row(photo.name)).getByTestId('link-output').waitFor();
    await noHorizontalOverflow(page, 'with the link box open at 375 px');
    assertEqual(await downloadThroughPage(page, photo.name), photo.sha256, 'SHA-256 of the file downloaded on the phone');
    await deleteThroughPage(page, photo.name);
    await checkClean(page, problems);
  } finally {
    await context.close();
  }
}

export async function tokenFlow(browser, server, token) {
  const dir = tmpdir('token');
  const doc = makeFile(dir, 'contract.pdf', 96 * 1024);
  assertEqual((await api(server, 'GET', '/api/files')).status, 401, 'listing without a token');
  const { context, page, problems } = await newPage(browser, server, { viewport: { width: 1200, height: 860 } });
  try {
    // The page asks for the token before anything else.
    const input = page.locator(sel.tokenInput);
    await input.waitFor({ state: 'visible' });
    assert(await page.getByTestId('dropzone').isHidden(), 'the drop zone shows before the token is given');
    assert(await input.evaluate((el) => el === document.activeElement), 'the token field is not focused');
    await page.screenshot({ path: path.join(SCREENSHOTS, 'token.png') });

    // A wrong token is refused in words and asked again.
    await input.fill('not-the-token');
    await page.locator(sel.tokenSubmit).click();
    await waitFor('the refusal of a wrong token', async () =>
      (await page.locator(sel.tokenError).textContent()).includes('not accepted') && (await input.isVisible()));

    // The right one: the list loads, and an upload works.
    await input.fill(token);
    await input.press('Enter');
    await page.waitForSelector(sel.ready);
    await page.getByTestId('empty').waitFor({ state: 'visible' });
    await page.setInputFiles(sel.input, [doc.path]);
    await waitUploaded(page, [doc]);
    await page.locator(sel.uploadedRow(doc.name)).waitFor();
    assertEqual(await downloadThroughPage(page, doc.name), doc.sha256, 'SHA-256 of the download with a token');
    const listed = await api(server, 'GET', '/api/files', token);
    assert(listed.body.files.some((f) => f.filename === doc.name), 'the upload is not listed for the token');

    // Once per session: a reload keeps the token; a new session asks again.
    await page.reload();
    await page.waitForSelector(sel.ready);
    await page.locator(sel.uploadedRow(doc.name)).waitFor();
    assert(await page.locator(sel.tokenInput).isHidden(), 'the token was asked again after a reload');

    // Forget token while an upload runs and a message shows: the upload stops and is removed
    // from the server, the Uploads list and the message go, and nothing goes on with the old
    // token.
    const big = makeFile(dir, 'board-pack.bin', 11 * MiB);
    let release;
    const held = new Promise((r) => { release = r; });
    let partPuts = 0;
    await page.route((url) => url.pathname.startsWith('/uploads/') && url.searchParams.has('partNumber'), async (route) => {
      partPuts++;
      await held;
      await route.continue().catch(() => {}); // the page gave up on it meanwhile
    });
    await page.setInputFiles(sel.input, [big.path]);
    await waitFor('parts of the big file to be on their way', () => partPuts > 0);
    await page.setInputFiles(sel.input, [{ name: 'bad\u202Ename.txt', mimeType: 'text/plain', buffer: Buffer.from('x') }]);
    await page.locator(sel.error).waitFor({ state: 'visible' });
    const pending = (await api(server, 'GET', '/api/files', token)).body.files.find((f) => f.filename === big.name);
    assert(pending && pending.status === 'pending', 'the big file is not pending on the server');

    await page.getByTestId('sign-out').click();
    await input.waitFor({ state: 'visible' });
    assert(await page.locator(sel.error).isHidden(), 'the message stayed after Forget token');
    assertEqual(await page.locator('[data-testid=upload-item]').count(), 0, 'items in the Uploads list after Forget token');
    assert((await page.locator('#auth p:not(.field-error)').textContent()).includes('until you choose Forget token'), 'how long the token is kept');
    await waitFor('the stopped upload to be removed', async () => {
      const l = await api(server, 'GET', '/api/files', token);
      return !l.body.files.some((f) => f.filename === big.name);
    }, 10000);
    const sent = partPuts;
    release();
    await sleep(1500);
    assertEqual(partPuts, sent, 'parts sent after Forget token');

    // Back with the token: the file list, and no trace of the stopped upload.
    await input.fill(token);
    await input.press('Enter');
    await page.locator(sel.uploadedRow(doc.name)).waitFor();
    assertEqual(await page.locator('[data-testid=file-row]').count(), 1, 'rows after giving the token again');
    assertEqual(await page.locator('[data-testid=upload-item]').count(), 0, 'items in the Uploads list after giving the token again');
    await page.unrouteAll({ behavior: 'ignoreErrors' });
    await checkClean(page, problems);
    const other = await newPage(browser, server);
    try {
      await other.page.locator(sel.tokenInput).waitFor({ state: 'visible' });
    } finally {
      await other.context.close();
    }
  } finally {
    await context.close();
  }
}

const xmlError = (code, message) =>
  `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>${message}</Message></Error>`;

/** A storage error whose message ends with a full stop gets no second one. */
export async function storageErrorInWords(browser, server) {
  const { context, page, problems } = await newPage(browser, server, { viewport: { width: 1200, height: 860 } });
  try {
    await page.waitForSelector(sel.ready);
    const name = 'refused-by-storage.txt';
    await page.route((url) => url.pathname.startsWith('/uploads/') && url.pathname.endsWith(`_${name}`), (route) =>
      route.fulfill({ status: 400, contentType: 'application/xml', body: xmlError('InvalidRequest', 'The request is not valid.') }));
    await page.setInputFiles(sel.input, [{ name, mimeType: 'text/plain', buffer: Buffer.from('hello') }]);
    const item = page.locator(sel.uploadIn(name, 'error'));
    await item.waitFor();
    const said = await item.getByTestId('upload-status').textContent();
    assert(said.includes('The request is not valid. (InvalidRequest)'), `status says: ${said}`);
    await checkClean(page, problems);
  } finally {
    await context.close();
  }
}

/** A 200 from /api/config that is not its JSON (a proxy's sign-in page) is not "cannot reach". */
export async function settingsNotUnderstood(browser, server) {
  const { context, page, problems } = await newPage(browser, server, { viewport: { width: 1200, height: 860 } }, {
    before: (c) => c.route((url) => url.pathname === '/api/config', (route) => route.fulfill({
      status: 200, contentType: 'text/html', body: '<!doctype html><title>Sign in</title><form>Sign in to continue</form>',
    })),
  });
  try {
    const banner = page.locator(sel.error);
    await banner.waitFor({ state: 'visible' });
    const text = await banner.textContent();
    assert(text.includes('Cannot load the server settings. The server sent an answer this page does not understand.'),
      `error banner says: ${text}`);
    assert(!/reach/.test(text), `error banner blames the connection: ${text}`);
    await checkClean(page, problems);
  } finally {
    await context.close();
  }
}

/**
 * Two requests refused with 401 at once: the page asks for the token once, saying it was not
 * accepted (the second refusal does not wipe that out), and both uploads go on with the new one.
 */
export async function tokenRefusedTwice(browser, server, token) {
  const dir = tmpdir('token-twice');
  const files = [makeFile(dir, 'first.txt', 1000), makeFile(dir, 'second.txt', 1200)];
  const { context, page, problems } = await newPage(browser, server, { viewport: { width: 1200, height: 860 } });
  try {
    const input = page.locator(sel.tokenInput);
    await input.fill(token);
    await input.press('Enter');
    await page.waitForSelector(sel.ready);
    // As if the token were revoked: both requests for upload links are held until both are
    // there, then refused together.
    const held = [];
    let refuse;
    const both = new Promise((r) => { refuse = r; });
    await page.route((url) => url.pathname === '/api/files/upload', async (route) => {
      held.push(route);
      if (held.length === 2) refuse();
      await both;
      await route.fulfill({ status: 401, contentType: 'application/json',
        body: JSON.stringify({ success: false, error: { code: 'unauthorized', message: 'invalid token' } }) });
    });
    await page.setInputFiles(sel.input, files.map((f) => f.path));
    await waitFor('both requests for upload links', () => held.length === 2, 10000);
    await input.waitFor({ state: 'visible' });
    await sleep(500);
    const said = await page.locator(sel.tokenError).textContent();
    assert(said.includes('That token was not accepted'), `beside the token field: ${JSON.stringify(said)}`);
    assertEqual(await input.getAttribute('aria-invalid'), 'true', 'aria-invalid of the token field');
    await page.unrouteAll({ behavior: 'wait' });
    await input.fill(token);
    await input.press('Enter');
    await waitUploaded(page, files);
    await checkClean(page, problems);
  } finally {
    await context.close();
  }
}

const UNSENDABLE = [
  ['in curly quotes', (t) => `\u201C${t}\u201D`],
  ['with a zero-width space', (t) => `${t.slice(0, 8)}\u200B${t.slice(8)}`],
];

/**
 * A token with characters no HTTP header can carry (as pasted from a document or a chat): refused
 * beside the field and not kept; one kept from before is dropped at the first request, which asks
 * for the token again rather than trying for a minute and a half to reach the server.
 */
export async function unsendableToken(browser, server, token) {
  const { context, page, problems } = await newPage(browser, server, { viewport: { width: 1200, height: 860 } });
  try {
    const input = page.locator(sel.tokenInput);
    for (const [how, mangle] of UNSENDABLE) {
      await input.fill(mangle(token));
      await page.locator(sel.tokenSubmit).click();
      await waitFor(`the refusal of a token ${how}`, async () =>
        /the token contains characters that cannot be sent/i.test(await page.locator(sel.tokenError).textContent()), 5000);
      assert(await input.isVisible(), `the token field went away after a token ${how}`);
      assertEqual(await input.getAttribute('aria-invalid'), 'true', `aria-invalid after a token ${how}`);
      assertEqual(await page.evaluate(() => sessionStorage.getItem('keyhole.token')), null, `token kept after a token ${how}`);
    }
    assert(await page.locator(sel.error).isHidden(), `an error is shown: ${await page.locator(sel.error).textContent()}`);

    // A connection that drops on the way is still tried again: the list loads after one.
    let lists = 0;
    await page.route((url) => url.pathname === '/api/files', async (route) => {
      lists++;
      if (lists === 1) await route.abort('connectionreset');
      else await route.continue();
    });
    await input.fill(token);
    await input.press('Enter');
    await page.waitForSelector(sel.ready);
    await page.getByTestId('empty').waitFor({ state: 'visible' });
    assertEqual(lists, 2, 'requests for the list (one cut off, then again)');
    await page.unrouteAll({ behavior: 'wait' });
    await checkClean(page, problems);
  } finally {
    await context.close();
  }

  // Kept in the tab from before: dropped, and asked for again at once.
  const seeded = await newPage(browser, server, { viewport: { width: 1200, height: 860 } }, {
    before: (c) => c.addInitScript((bad) => {
      if (sessionStorage.getItem('e2e.seeded')) return;
      sessionStorage.setItem('e2e.seeded', '1');
      sessionStorage.setItem('keyhole.token', bad);
    }, UNSENDABLE[0][1](token)),
  });
  try {
    const { page } = seeded;
    const started = Date.now();
    await waitFor('the page to ask for the token again', async () =>
      /the token contains characters that cannot be sent/i.test(await page.locator(sel.tokenError).textContent()) &&
      await page.locator(sel.tokenInput).isVisible(), 10000);
    assert(Date.now() - started < 1500, `the page asked after ${Date.now() - started} ms (did it try again first?)`);
    assertEqual(await page.evaluate(() => sessionStorage.getItem('keyhole.token')), null, 'the unusable token is still kept');
    assert(await page.locator(sel.error).isHidden(), `an error is shown: ${await page.locator(sel.error).textContent()}`);
    await page.locator(sel.tokenInput).fill(token);
    await page.locator(sel.tokenInput).press('Enter');
    await page.waitForSelector(sel.ready);
    await checkClean(page, seeded.problems);
  } finally {
    await seeded.context.close();
  }
}
