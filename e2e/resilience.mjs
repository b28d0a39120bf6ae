// Chromium: what the page does when it is opened at another address than the server's public
// URL (it says where to open it).
import { api, assert, assertEqual, fetchDigest, makeFile, tmpdir, waitFor } from './lib.mjs';
import { checkClean, downloadThroughPage, newPage, waitUploaded } from './chromium.mjs';
import { sel } from './page.mjs';

/** The uploaded file `name` on the server has the bytes of `file`. */
async function storedIntact(server, file) {
  const listed = await api(server, 'GET', '/api/files');
  const entry = listed.body.files.find((f) => f.filename === file.name);
  assert(entry, `${file.name} is not listed`);
  assertEqual(entry.status, 'uploaded', `status of ${file.name} on the server`);
  const dl = await api(server, 'GET', `/api/files/download/${entry.fileId}`);
  assertEqual(await fetchDigest(dl.body.downloadUrl), file.sha256, `SHA-256 of ${file.name} on the server`);
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
