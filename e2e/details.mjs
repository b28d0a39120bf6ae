// Chromium: the file list keeps focus, an armed delete and opened pages across refreshes; odd
// files (empty, a name over 255 bytes, a dropped folder) and the speed shown for a slow upload.
import { randomBytes } from 'node:crypto';

import { api, assert, assertEqual, makeFile, sha256, sleep, tmpdir, uploadThroughApi, waitFor } from './lib.mjs';
import { checkClean, downloadThroughPage, newPage, waitUploaded } from './chromium.mjs';
import { sel } from './page.mjs';

const rowCount = (page) => page.locator('[data-testid=file-row]').count();

/** The file name and test id of the focused element's row and the element itself. */
const focused = (page) => page.evaluate(() => {
  const a = document.activeElement;
  const row = a && a.closest('[data-testid=file-row]');
  return row ? `${row.dataset.name} ${a.dataset.testid}` : (a ? a.tagName : 'nothing');
});

export async function listInPlace(browser, server) {
  const dir = tmpdir('list');
  // One more file than two pages (50 each), so there is more to show after one "Show more".
  for (let i = 1; i <= 101; i++) {
    await uploadThroughApi(server, `older-${String(i).padStart(3, '0')}.txt`, randomBytes(100 + i));
  }
  const { context, page, problems } = await newPage(browser, server, { viewport: { width: 1200, height: 860 } });
  try {
    await page.waitForSelector(sel.ready);
    assertEqual(await rowCount(page), 50, 'rows of the first page');
    await page.getByTestId('load-more').click();
    await waitFor('the second page', async () => (await rowCount(page)) === 100);

    // Focus on a row's button stays there while another upload finishes and the list refreshes,
    // and the page opened with "Show more" stays open.
    const kept = page.locator(sel.uploadedRow('older-040.txt')).getByTestId('download-button');
    await kept.focus();
    const first = makeFile(dir, 'while-focused.txt', 1500);
    await page.setInputFiles(sel.input, [first.path]);
    await waitUploaded(page, [first]);
    await page.locator(sel.uploadedRow(first.name)).waitFor();
    await waitFor('the list to refresh', async () => (await rowCount(page)) === 101);
    assertEqual(await focused(page), 'older-040.txt download-button', 'focus after the list refreshed');

    // An armed delete stays armed through a refresh, and the second press deletes.
    const del = page.locator(sel.row('older-045.txt')).getByTestId('delete-button');
    await del.click();
    await waitFor('the delete button to ask for confirmation', async () => (await del.textContent()) === 'Confirm delete');
    const second = makeFile(dir, 'while-armed.txt', 1600);
    await page.setInputFiles(sel.input, [second.path]);
    await waitUploaded(page, [second]);
    await page.locator(sel.uploadedRow(second.name)).waitFor();
    await waitFor('the list to refresh', async () => (await rowCount(page)) === 102);
    assertEqual(await del.textContent(), 'Confirm delete', 'the armed delete button after a refresh');
    await del.click();
    await page.locator(sel.row('older-045.txt')).waitFor({ state: 'detached' });
    await waitFor('the list after the delete', async () => (await rowCount(page)) === 101);

    // "Show more" still goes on from where it stopped: the one file left, once.
    assert(await page.getByTestId('load-more').isVisible(), '"Show more" is gone');
    await page.getByTestId('load-more').click();
    await page.locator(sel.row('older-001.txt')).waitFor();
    assertEqual(await rowCount(page), 102, 'rows after showing the rest');
    assert(await page.getByTestId('load-more').isHidden(), '"Show more" shows with nothing more');
    const names = await page.locator('[data-testid=file-row]').evaluateAll((rs) => rs.map((r) => r.dataset.name));
    assertEqual(new Set(names).size, names.length, 'distinct rows');
    await checkClean(page, problems);
  } finally {
    await context.close();
  }
}

export async function oddFiles(browser, server) {
  const dir = tmpdir('odd');
  const { context, page, problems } = await newPage(browser, server, { viewport: { width: 1200, height: 860 } });
  try {
    await page.waitForSelector(sel.ready);

    // An empty file goes up and comes back down.
    const empty = makeFile(dir, 'empty.txt', 0);
    await page.setInputFiles(sel.input, [empty.path]);
    await waitUploaded(page, [empty]);
    const emptyRow = page.locator(sel.uploadedRow(empty.name));
    await emptyRow.waitFor();
    assertEqual(await emptyRow.getByTestId('file-size').textContent(), '0 B', 'size shown for an empty file');
    assertEqual(await downloadThroughPage(page, empty.name), empty.sha256, 'SHA-256 of the empty file downloaded');

    // A name over the API's 255 bytes (Cyrillic: two bytes a letter, and a three-byte dash) is
    // shortened between characters, keeping its extension, instead of being refused.
    const longName = `${'Протокол заседания — '.repeat(8)}итог.pdf`;
    const bytes = Buffer.from('%PDF-1.4 minutes');
    assert(Buffer.byteLength(longName) > 255, 'the long name is not long');
    await page.setInputFiles(sel.input, [{ name: longName, mimeType: 'application/pdf', buffer: bytes }]);
    await waitUploaded(page, [{ name: longName }]);
    const stored = await page.locator(sel.upload(longName)).getByTestId('upload-name').textContent();
    const size = Buffer.byteLength(stored);
    assert(size <= 255 && size >= 252, `the stored name is ${size} bytes: ${stored}`);
    assert(stored.endsWith('.pdf') && longName.startsWith(stored.slice(0, -4)), `the stored name ${stored} is not a shortened ${longName}`);
    assert(!stored.includes('\uFFFD'), `the stored name has a broken character: ${stored}`);
    await page.locator(sel.uploadedRow(stored)).waitFor();
    assertEqual(await downloadThroughPage(page, stored), sha256(bytes), 'SHA-256 of the file with the shortened name');

    // A slow upload shows its speed in whole bytes per second.
    const slow = makeFile(dir, 'slow.txt', 700);
    await page.route((url) => url.pathname.startsWith('/uploads/') && url.pathname.endsWith('_slow.txt'), async (route) => {
      await sleep(1500);
      await route.continue();
    });
    await page.setInputFiles(sel.input, [slow.path]);
    await waitUploaded(page, [slow]);
    const statuses = (await page.evaluate(() => window.__statuses))[slow.name] || [];
    const rates = statuses.filter((s) => s.endsWith('/s'));
    assert(rates.length > 0, `no speed was shown: ${statuses.join(' | ')}`);
    for (const r of rates) assert(!/\d\.\d+ B\/s$/.test(r), `speed with a fraction of a byte: ${r}`);

    // A dropped folder (Chrome hands it over as a small file; only its entry says it is a
    // folder, which is what the patched webkitGetAsEntry reports) is left out, saying so; the
    // file dropped with it goes up.
    const notes = Buffer.from('notes from the trip');
    await page.evaluate((text) => {
      const real = DataTransferItem.prototype.webkitGetAsEntry;
      DataTransferItem.prototype.webkitGetAsEntry = function () {
        const f = this.getAsFile();
        if (f && f.name === 'holiday-photos') return { isDirectory: true, isFile: false, name: f.name };
        return real.call(this);
      };
      const dt = new DataTransfer();
      dt.items.add(new File([], 'holiday-photos'));
      dt.items.add(new File([text], 'trip-notes.txt', { type: 'text/plain' }));
      const zone = document.querySelector('[data-testid=dropzone]');
      for (const type of ['dragenter', 'dragover', 'drop']) {
        zone.dispatchEvent(new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer: dt }));
      }
    }, notes.toString());
    await waitUploaded(page, [{ name: 'trip-notes.txt' }]);
    const banner = await page.locator(sel.error).textContent();
    assert(/folder cannot be uploaded: “holiday-photos”/.test(banner), `error banner says: ${banner}`);
    assertEqual(await page.locator(sel.upload('holiday-photos')).count(), 0, 'upload items for the folder');
    const listed = await api(server, 'GET', '/api/files');
    assert(!listed.body.files.some((f) => f.filename === 'holiday-photos'), 'the folder was uploaded as a file');
    await checkClean(page, problems);
  } finally {
    await context.close();
  }
}

/** A file deleted elsewhere: Download says it is gone, and its row leaves the list. */
export async function goneElsewhere(browser, server) {
  const id = await uploadThroughApi(server, 'gone-elsewhere.txt', randomBytes(300));
  await uploadThroughApi(server, 'still-here.txt', randomBytes(200));
  const { context, page, problems } = await newPage(browser, server, { viewport: { width: 1200, height: 860 } });
  try {
    await page.waitForSelector(sel.ready);
    await page.locator(sel.uploadedRow('gone-elsewhere.txt')).waitFor();
    const deleted = await api(server, 'DELETE', `/api/files/${encodeURIComponent(id)}`);
    assertEqual(deleted.status, 200, 'deleted through the API');
    await page.locator(sel.uploadedRow('gone-elsewhere.txt')).getByTestId('download-button').click();
    const banner = page.locator(sel.error);
    await banner.waitFor({ state: 'visible' });
    const text = await banner.textContent();
    assert(/no such file/i.test(text), `error banner says: ${text}`);
    await page.locator(sel.row('gone-elsewhere.txt')).waitFor({ state: 'detached' });
    assertEqual(await rowCount(page), 1, 'rows left');
    await checkClean(page, problems);
  } finally {
    await context.close();
  }
}
