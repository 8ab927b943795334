// The NAT test's browser viewer: headless Chromium (run inside the viewer's network namespace)
// opens the hub's viewer page over HTTPS at its public address, accepting the self-signed
// certificate, watches the device, and holds Talk so that the fake microphone's tone reaches
// the device's speaker. Prints one JSON line: {frames, firstFrameMs, talkMs, error}.
//
// Env: CAMAGENT_HUB_URL, CAMAGENT_DEVICE_ID, CAMAGENT_API_KEY (the pages on a non-loopback hub
// need the bearer key for the token service and device commands), CAMAGENT_TALK_MS (3000).
import { collectVideoFrames, launchChromium } from '../e2e/browser/lib.mjs';

const hub = process.env.CAMAGENT_HUB_URL;
const deviceId = process.env.CAMAGENT_DEVICE_ID;
const talkMs = Number(process.env.CAMAGENT_TALK_MS || 3000);
const result = { frames: 0 };
let chromium;
try {
  chromium = await launchChromium();
  const context = await chromium.browser.newContext({
    ignoreHTTPSErrors: true,
    extraHTTPHeaders: { Authorization: `Bearer ${process.env.CAMAGENT_API_KEY}` },
  });
  const page = await context.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') process.stderr.write(`console.${m.type()}: ${m.text()}\n`);
  });
  await page.goto(hub + '/');
  result.secure = await page.evaluate(() => window.isSecureContext);
  const view = `button[data-view=${JSON.stringify(deviceId)}]`;
  await page.waitForSelector(`${view}:not([disabled])`, { timeout: 30000 });
  const t0 = Date.now();
  await page.click(view);
  const video = await page.evaluate(collectVideoFrames, {
    selector: '#remote-video video',
    frames: 30,
    timeoutMs: 30000,
    readCounter: false,
  });
  result.frames = video.frames.length;
  result.firstFrameMs = video.frames.length ? Date.now() - t0 : -1;
  if (video.error) {
    const status = await page.evaluate(() => ({
      status: document.querySelector('#status')?.textContent,
      error: document.querySelector('#error')?.textContent,
    }));
    throw new Error(`video: ${video.error}; page status ${JSON.stringify(status)}`);
  }
  await page.waitForSelector('#talk:not([disabled])', { timeout: 10000 });
  const box = await page.locator('#talk').boundingBox();
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  await page.mouse.down();
  const started = Date.now();
  await page.waitForFunction(() => window.camagentViewer.talking && window.camagentViewer.micTrack?.enabled, null, {
    timeout: 10000,
  });
  await page.waitForTimeout(talkMs);
  result.talkMs = Date.now() - started;
  await page.mouse.up();
} catch (e) {
  result.error = String(e && e.message ? e.message : e);
} finally {
  process.stdout.write(JSON.stringify(result) + '\n');
  await chromium?.close();
}
process.exit(result.error ? 1 : 0);
