// Runs every browser test against real `keyhole serve` processes on 127.0.0.1 (one per test, so
// each starts from an empty file list). Prints "N passed, M failed" last; exits 1 on any failure.
import fs from 'node:fs';

import {
  desktop, launchChromium, partRetries, phone, serverErrorsInWords, settingsNotUnderstood, storageErrorInWords,
  tokenFlow, tokenRefusedTwice, unsendableToken,
} from './chromium.mjs';
import { goneElsewhere, listInPlace, oddFiles } from './details.mjs';
import { firefox } from './firefox.mjs';
import {
  cspBlockSaysSo, ipv6PublicUrl, otherOrigin, otherOriginAllowed, storageTimeoutsRetried, transientFailures,
} from './resilience.mjs';
import { KEYHOLE, SCREENSHOTS, Suite, cleanup, generateToken, startServer } from './lib.mjs';

fs.mkdirSync(SCREENSHOTS, { recursive: true });
const suite = new Suite();
const servers = [];

async function withServer(name, extraArgs, fn, options) {
  const server = await startServer(name, extraArgs, options);
  servers.push(server);
  try {
    await fn(server);
  } catch (e) {
    const tail = server.logTail(15);
    if (tail) e.message += `\n  server log (last lines):\n${tail.replace(/^/gm, '    ')}`;
    throw e;
  } finally {
    await server.stop();
  }
}

console.log(`keyhole: ${KEYHOLE}`);
let browser = null;
const chromiumTest = (name, fn) => suite.test(`chromium: ${name}`, async () => {
  browser = browser || await launchChromium();
  await fn(browser);
});

try {
  await chromiumTest('desktop: upload a small and a multipart file, list, download, copy link, delete',
    (b) => withServer('desktop', [], (s) => desktop(b, s)));
  await chromiumTest('server errors are shown in words',
    (b) => withServer('errors', [], (s) => serverErrorsInWords(b, s)));
  await chromiumTest('a storage error whose message ends with a full stop gets no second one',
    (b) => withServer('errors-xml', [], (s) => storageErrorInWords(b, s)));
  await chromiumTest('a page that is not the settings (a proxy\'s sign-in page) is not called unreachable',
    (b) => withServer('config-html', [], (s) => settingsNotUnderstood(b, s)));
  await chromiumTest('failed parts are retried with fresh links; a part failing 10 times fails the upload',
    (b) => withServer('retries', [], (s) => partRetries(b, s)));
  await chromiumTest('dropped connections, 503, 429 and going offline are waited out; the uploads end done',
    (b) => withServer('transient', [], (s) => transientFailures(b, s)));
  await chromiumTest('storage\'s 400 RequestTimeout is tried again, for a file and for a part',
    (b) => withServer('storage-timeouts', [], (s) => storageTimeoutsRetried(b, s)));
  await chromiumTest('opened at localhost while the public URL is 127.0.0.1: a notice, and failed PUTs say why',
    (b) => withServer('origin', [], (s) => otherOrigin(b, s)));
  await chromiumTest('opened at localhost with --cors-origin for it: uploads and downloads work',
    (b) => withServer('origin-cors', (port) => ['--cors-origin', `http://localhost:${port}`], (s) => otherOriginAllowed(b, s)));
  await chromiumTest('public URL http://[::1]:PORT, opened at localhost: the policy lets uploads go there',
    (b) => withServer('ipv6', (port) => ['--cors-origin', `http://localhost:${port}`], (s) => ipv6PublicUrl(b, s), { host: '[::1]' }));
  await chromiumTest('a PUT the page\'s Content-Security-Policy blocks is said to be blocked by it, not by CORS',
    (b) => withServer('csp-block', (port) => ['--cors-origin', `http://localhost:${port}`], (s) => cspBlockSaysSo(b, s), { host: '[::1]' }));
  await chromiumTest('the file list keeps focus, an armed delete and opened pages when it refreshes',
    (b) => withServer('list', [], (s) => listInPlace(b, s)));
  await chromiumTest('a file deleted elsewhere: Download says it is gone and its row leaves the list',
    (b) => withServer('gone', [], (s) => goneElsewhere(b, s)));
  await chromiumTest('an empty file, a name over 255 bytes, a slow upload\'s speed, a dropped folder',
    (b) => withServer('odd', [], (s) => oddFiles(b, s)));
  await chromiumTest('phone (Pixel 5, then 375 px): upload, no horizontal scroll, download, delete',
    (b) => withServer('phone', [], (s) => phone(b, s)));
  await chromiumTest('token required: asked once per session, a wrong one refused, uploads; Forget token stops them',
    async (b) => {
      const { token, flag } = generateToken('e2e');
      await withServer('token', ['--token', flag], (s) => tokenFlow(b, s, token));
    });
  await chromiumTest('a token with characters no header can carry is refused beside the field, not kept',
    async (b) => {
      const { token, flag } = generateToken('e2e');
      await withServer('token-unsendable', ['--token', flag], (s) => unsendableToken(b, s, token));
    });
  await chromiumTest('two requests refused with 401 at once: asked once, saying the token was not accepted',
    async (b) => {
      const { token, flag } = generateToken('e2e');
      await withServer('token-twice', ['--token', flag], (s) => tokenRefusedTwice(b, s, token));
    });
} finally {
  if (browser) await browser.close().catch(() => {});
}

await suite.test('firefox-esr (WebDriver BiDi): upload, list, download and compare, delete',
  () => withServer('firefox', [], (s) => firefox(s)));

for (const s of servers) await s.stop().catch(() => {});
cleanup();
process.exitCode = suite.finish();
