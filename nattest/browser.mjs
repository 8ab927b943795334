// The NAT test's browser viewer: headless Chromium (run inside the viewer's network namespace)
// opens the hub's viewer page over HTTPS at its public address, accepting the self-signed
// certificate, watches the device, and holds Talk so that the fake microphone's tone reaches
// the device's speaker. Prints one JSON line: {frames, firstFrameMs, talkMs, error}.
//
// With CAMAGENT_CUT=1 it then keeps the call and waits for a line on standard input: the test
// has cut the viewer's media path. It collects frames again (the SDK must restart ICE and find
// another path), talks once more, and prints a second line: {frames, outageMs (the longest the
// picture stood still), talkMs, iceRestarts, error}.
//
// Env: CAMAGENT_HUB_URL, CAMAGENT_DEVICE_ID, CAMAGENT_API_KEY (the pages on a non-loopback hub
// need the bearer key for the token service and device commands), CAMAGENT_TALK_MS (3000).
import { createInterface } from 'node:readline';
import { collectVideoFrames, launchChromium } from '../e2e/browser/lib.mjs';

const hub = process.env.CAMAGENT_HUB_URL;
const deviceId = process.env.CAMAGENT_DEVICE_ID;
const talkMs = Number(process.env.CAMAGENT_TALK_MS || 3000);
const result = { frames: 0 };
let after = null;
let chromium;

// frames collects 30 frames of the device's video on the page.
function frames(page, timeoutMs) {
  return page.evaluate(collectVideoFrames, { selector: '#remote-video video', frames: 30, timeoutMs, readCounter: false });
}

// talk holds the Talk button for talkMs and returns how long it was held.
async function talk(page) {
  await page.waitForSelector('#talk:not([disabled])', { timeout: 10000 });
  const box = await page.locator('#talk').boundingBox();
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  await page.mouse.down();
  const started = Date.now();
  await page.waitForFunction(() => window.camagentViewer.talking && window.camagentViewer.micTrack?.enabled, null, {
    timeout: 10000,
  });
  await page.waitForTimeout(talkMs);
  const held = Date.now() - started;
  await page.mouse.up();
  return held;
}

try {
  chromium = await launchChromium();
  const context = await chromium.browser.newContext({
    ignoreHTTPSErrors: true,
    extraHTTPHeaders: { Authorization: `Bearer ${process.env.CAMAGENT_API_KEY}` },
  });
  const page = await context.newPage();
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning' || m.text().startsWith('[CamagentRTC]')) {
      process.stderr.write(`${new Date().toISOString()} console.${m.type()}: ${m.text()}\n`);
    }
  });
  await page.goto(hub + '/');
  await page.evaluate(() => window.CamagentRTC.setLogLevel('info'));
  result.secure = await page.evaluate(() => window.isSecureContext);
  const view = `button[data-view=${JSON.stringify(deviceId)}]`;
  await page.waitForSelector(`${view}:not([disabled])`, { timeout: 30000 });
  const t0 = Date.now();
  await page.click(view);
  const video = await frames(page, 30000);
  result.frames = video.frames.length;
  result.firstFrameMs = video.frames.length ? Date.now() - t0 : -1;
  if (video.error) {
    const status = await page.evaluate(() => ({
      status: document.querySelector('#status')?.textContent,
      error: document.querySelector('#error')?.textContent,
    }));
    throw new Error(`video: ${video.error}; page status ${JSON.stringify(status)}`);
  }
  result.talkMs = await talk(page);

  if (process.env.CAMAGENT_CUT === '1') {
    process.stdout.write(JSON.stringify(result) + '\n');
    after = { frames: 0 };
    const lines = createInterface({ input: process.stdin });
    await new Promise((resolve) => lines.once('line', resolve));
    const cutAt = Date.now();
    // Frames that were already decoded do not count: wait for the picture to move again.
    const video = await frames(page, 45000);
    after.frames = video.frames.length;
    // The longest time the picture stood still: the outage, from the cut to ICE restored.
    let last = video.startedAt;
    after.outageMs = 0;
    for (const f of video.frames) {
      after.outageMs = Math.max(after.outageMs, Math.round(f.t - last));
      last = f.t;
    }
    if (video.error) throw new Error(`video after the cut: ${video.error}`);
    after.talkMs = await talk(page);
    after.iceRestarts = (await page.evaluate(() => window.camagentViewer.client.getRTCStats())).ICERestarts;
    after.totalMs = Date.now() - cutAt;
  }
} catch (e) {
  (after || result).error = String(e && e.message ? e.message : e);
} finally {
  process.stdout.write(JSON.stringify(after || result) + '\n');
  await chromium?.close();
}
process.exit((after || result).error ? 1 : 0);
