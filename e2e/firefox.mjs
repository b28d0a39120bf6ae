// Debian Firefox ESR driven by puppeteer-core over WebDriver BiDi: upload (single and multipart),
// list, download through the page into a download folder, compare bytes, delete.
import fs from 'node:fs';
import path from 'node:path';
import puppeteer from 'puppeteer-core';

import {
  MiB, SCREENSHOTS, api, assert, assertEqual, makeFile, sha256, tmpdir, waitFor,
} from './lib.mjs';
import { RECORDER, checkProgress, sel } from './page.mjs';

export async function launchFirefox(downloadDir) {
  // puppeteer-core gives Firefox a new, empty profile with its own automation preferences.
  return puppeteer.launch({
    browser: 'firefox',
    executablePath: process.env.FIREFOX || '/usr/bin/firefox-esr',
    headless: true,
    timeout: 60000,
    protocolTimeout: 120000,
    defaultViewport: { width: 1100, height: 820 },
    extraPrefsFirefox: {
      // Save attachments straight into downloadDir without asking.
      'browser.download.dir': downloadDir,
      'browser.download.folderList': 2,
      'browser.download.useDownloadDir': true,
      'browser.download.always_ask_before_handling_new_types': false,
      'browser.download.start_downloads_in_tmp_dir': false,
      'browser.download.manager.showWhenStarting': false,
      'browser.download.alwaysOpenPanel': false,
      'browser.helperApps.neverAsk.saveToDisk': 'text/plain,text/csv,application/octet-stream',
      // Nothing but loopback is reachable here.
      'network.captive-portal-service.enabled': false,
      'network.connectivity-service.enabled': false,
      'app.update.disabledForTesting': true,
    },
  });
}

/** Waits for `name` to be completely saved in `dir` and returns its SHA-256. */
async function savedDigest(dir, name, size) {
  const file = path.join(dir, name);
  await waitFor(`${name} to be saved by Firefox`, () => {
    if (!fs.existsSync(file) || fs.existsSync(`${file}.part`)) return false;
    return fs.statSync(file).size === size;
  }, 30000, 100);
  return sha256(fs.readFileSync(file));
}

async function text(page, selector) {
  return page.$eval(selector, (el) => el.textContent);
}

export async function firefox(server) {
  const dir = tmpdir('firefox');
  const downloads = tmpdir('firefox-downloads');
  const notes = makeFile(dir, 'meeting notes.txt', 33 * 1024 + 5);
  const table = makeFile(dir, 'measurements-2026.csv', 12 * MiB + 77);
  const browser = await launchFirefox(downloads);
  try {
    const page = await browser.newPage();
    page.setDefaultTimeout(30000);
    const problems = [];
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    await page.evaluateOnNewDocument(RECORDER);
    await page.goto(`${server.base}/`);
    await page.waitForSelector(sel.ready);

    const input = await page.$(sel.input);
    await input.uploadFile(notes.path, table.path);
    for (const f of [notes, table]) {
      await page.waitForSelector(`${sel.upload(f.name)} [data-testid=upload-progress]`, { visible: true });
    }
    for (const f of [notes, table]) {
      const done = await Promise.race([
        page.waitForSelector(sel.uploadIn(f.name, 'done'), { timeout: 90000 }).then(() => true),
        page.waitForSelector(sel.uploadIn(f.name, 'error'), { timeout: 90000 }).then(() => false),
      ]);
      assert(done, `upload of ${f.name} failed: ${await text(page, `${sel.upload(f.name)} [data-testid=upload-status]`)}`);
      assertEqual(await text(page, `${sel.upload(f.name)} [data-testid=upload-percent]`), '100%', `percentage of ${f.name}`);
    }
    const recorded = await page.evaluate(() => window.__progress);
    for (const f of [notes, table]) checkProgress(recorded[f.name], f.name);

    for (const f of [notes, table]) {
      await page.waitForSelector(sel.uploadedRow(f.name));
      assertEqual(await text(page, `${sel.row(f.name)} [data-testid=file-status]`), 'Uploaded', `status of ${f.name}`);
      await page.click(`${sel.row(f.name)} [data-testid=download-button]`);
      assertEqual(await savedDigest(downloads, f.name, f.size), f.sha256, `SHA-256 of ${f.name} saved by Firefox`);
    }
    await page.screenshot({ path: path.join(SCREENSHOTS, 'firefox.png'), fullPage: true });

    // Delete asks for a second press, then the row and the file are gone.
    const del = `${sel.row(table.name)} [data-testid=delete-button]`;
    await page.click(del);
    // Polled with $eval: waitForFunction builds its predicate with Function(), which the page's
    // Content-Security-Policy (no 'unsafe-eval') rightly blocks in Firefox.
    for (let i = 0; !(await page.$eval(del, (el) => el.textContent)).includes('Confirm'); i++) {
      assert(i < 100, 'the delete button never asked for confirmation');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await page.click(del);
    await page.waitForSelector(sel.row(table.name), { hidden: true });
    const listed = await api(server, 'GET', '/api/files');
    assert(!listed.body.files.some((f) => f.filename === table.name), 'the deleted file is still listed');
    assert(listed.body.files.some((f) => f.filename === notes.name), 'the other file disappeared');

    const csp = await page.evaluate(() => window.__csp);
    assert(csp.length === 0, `Content-Security-Policy violations: ${csp.join('; ')}`);
    assert(problems.length === 0, problems.join('; '));
  } finally {
    await browser.close();
  }
}
