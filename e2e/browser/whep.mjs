// Chromium as a WHEP viewer (issue 14): whep.html, a page of plain fetch + RTCPeerConnection,
// watches a device through POST /whep/devices/<id> with an API key that may view and talk,
// sees the device's picture (its frame counter advancing), hears its tone, talks with its fake
// microphone, and DELETEs the resource. Run by e2e's TestWHEPBrowser against a secure-mode hub,
// which then checks the device's speaker for the microphone's tone and that the device was
// released. Not a *.test.mjs: it needs that Go test's hub, agent and key.
//
// Env: CAMAGENT_HUB_URL, CAMAGENT_DEVICE_ID, CAMAGENT_WHEP_KEY, CAMAGENT_DEVICE_TONE_HZ (440),
// CAMAGENT_TALK_MS (3000), CAMAGENT_MIN_FRAMES (30).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { analyseAudio, checkCounters, collectVideoFrames, envNumber, hubURL, launchChromium, log, openPage } from './lib.mjs';

const HUB = hubURL();
const DEVICE = process.env.CAMAGENT_DEVICE_ID;
const KEY = process.env.CAMAGENT_WHEP_KEY;
const TONE_HZ = envNumber('CAMAGENT_DEVICE_TONE_HZ', 440);
const TALK_MS = envNumber('CAMAGENT_TALK_MS', 3000);
const MIN_FRAMES = envNumber('CAMAGENT_MIN_FRAMES', 30);
if (!DEVICE || !KEY) throw new Error('CAMAGENT_DEVICE_ID and CAMAGENT_WHEP_KEY are needed: run go test -run TestWHEPBrowser ./e2e/');

let chromium;
before(async () => {
  chromium = await launchChromium();
});
after(async () => {
  await chromium?.close();
});

test('Chromium watches and talks to a device over WHEP', async () => {
  const { page, errors } = await openPage(chromium.browser, 'whep');
  // The page is served at the hub's origin (fetch to /whep is then same-origin), from this folder.
  const html = await readFile(new URL('./whep.html', import.meta.url), 'utf8');
  await page.route(`${HUB}/__whep.html`, (route) => route.fulfill({ status: 200, contentType: 'text/html', body: html }));
  await page.goto(`${HUB}/__whep.html`);
  const t0 = Date.now();
  const res = await page.evaluate(({ path, key }) => window.whep.start(path, key, true), { path: `/whep/devices/${DEVICE}`, key: KEY });
  log(`WHEP POST: ${res.status} in ${Date.now() - t0} ms, Location ${res.location}`);
  assert.equal(res.status, 201, `POST /whep/devices/${DEVICE}: ${res.body}`);
  assert.match(res.answer, /a=sendrecv/, 'a key that may talk gets its audio m-line answered sendrecv');

  const video = await page.evaluate(collectVideoFrames, { selector: '#video', frames: MIN_FRAMES, timeoutMs: 20000, readCounter: true });
  assert.equal(video.error, undefined, video.error);
  const counters = video.frames.map((f) => f.counter);
  const c = checkCounters(counters);
  log(`WHEP video ${video.width}x${video.height}: ${counters.length} frames, counters ${counters[0]}..${counters.at(-1)}, skips ${c.skips}`);
  assert.ok(c.ok, `frame counters go backwards at ${c.backwards}`);

  const track = await page.evaluateHandle(() => window.whep.audio);
  const audio = await page.evaluate(analyseAudio, track);
  log(`WHEP audio: peak ${audio.peakHz.toFixed(1)} Hz at ${audio.peakDb.toFixed(1)} dB, RMS ${audio.rms.toFixed(3)}`);
  assert.ok(Math.abs(audio.peakHz - TONE_HZ) < 15, `the device's tone is at ${audio.peakHz} Hz, want ${TONE_HZ}`);

  // The fake microphone has been talking all along; give the speaker a few seconds of it.
  await page.waitForTimeout(TALK_MS);
  const status = await page.evaluate(() => window.whep.stop());
  assert.equal(status, 200, 'DELETE the WHEP resource');
  assert.deepEqual(errors, []);
});
