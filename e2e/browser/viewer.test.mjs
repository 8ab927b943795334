// The device viewer at /, against a running hub and device agent: watch the device's synthetic
// camera (its frame counter must advance in the decoded pictures), hear its tone, talk back with
// the fake microphone's 1000 Hz tone, and stop.
//
// Env: CAMAGENT_HUB_URL (required), CAMAGENT_DEVICE_ID (default: the first device online),
// CAMAGENT_DEVICE_TONE_HZ (440), CAMAGENT_TALK_MS (3000), CAMAGENT_DEVICE_WAIT_MS (30000),
// CAMAGENT_MIN_FRAMES (60).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  analyseAudio,
  checkCounters,
  collectVideoFrames,
  envNumber,
  hubURL,
  launchChromium,
  log,
  MIC_TONE_HZ,
  openPage,
} from './lib.mjs';

const TONE_HZ = envNumber('CAMAGENT_DEVICE_TONE_HZ', 440);
const TALK_MS = envNumber('CAMAGENT_TALK_MS', 3000);
const DEVICE_WAIT_MS = envNumber('CAMAGENT_DEVICE_WAIT_MS', 30000);
const MIN_FRAMES = envNumber('CAMAGENT_MIN_FRAMES', 60);

let chromium;
before(async () => {
  chromium = await launchChromium();
});
after(async () => {
  await chromium?.close();
});

test('viewer: watch, listen, talk and stop', async () => {
  const hub = hubURL();
  const { page, errors } = await openPage(chromium.browser, 'viewer');
  await page.goto(hub + '/');

  // The device shows up online (its View button is enabled).
  let deviceId = process.env.CAMAGENT_DEVICE_ID;
  const viewSelector = deviceId ? `button[data-view=${JSON.stringify(deviceId)}]` : 'button[data-view]';
  await page.waitForSelector(`${viewSelector}:not([disabled])`, { timeout: DEVICE_WAIT_MS });
  if (!deviceId) {
    deviceId = await page.getAttribute(`${viewSelector}:not([disabled])`, 'data-view');
    log(`CAMAGENT_DEVICE_ID unset: using the first device online, ${deviceId}`);
  }

  // View: the browser joins, the device joins, its camera and microphone are subscribed.
  const t0 = await page.evaluate(() => performance.now());
  await page.click(`button[data-view=${JSON.stringify(deviceId)}]`);
  const video = await page.evaluate(collectVideoFrames, {
    selector: '#remote-video video',
    frames: MIN_FRAMES,
    timeoutMs: 30000,
    readCounter: true,
  });
  const statusText = await page.textContent('#status');
  const errorText = await page.evaluate(() => (document.querySelector('#error').hidden ? '' : document.querySelector('#error').textContent));
  assert.equal(errorText, '', `the viewer shows an error (status: ${statusText})`);
  assert.ok(!video.error || video.frames.length >= MIN_FRAMES, `video: ${video.error} (status: ${statusText})`);

  const counters = video.frames.map((f) => f.counter);
  const check = checkCounters(counters);
  const firstFrameMs = Math.round(video.frames[0].t - t0);
  const spanMs = video.frames.at(-1).t - video.frames[0].t;
  const fps = ((video.frames.length - 1) * 1000) / spanMs;
  const viewerFirstFrameMs = await page.evaluate(() => window.camagentViewer.firstFrameMs);
  log(
    `video ${video.width}x${video.height}: ${video.frames.length} frames decoded, ${fps.toFixed(1)} fps, ` +
      `first frame ${firstFrameMs} ms after View (page says ${viewerFirstFrameMs} ms), ` +
      `counters ${counters[0]}…${counters.at(-1)}, ${check.skips} skips (largest gap ${check.maxGap})`
  );
  assert.ok(video.frames.length >= MIN_FRAMES, `only ${video.frames.length} frames decoded`);
  assert.ok(
    check.ok,
    `the frame counter did not advance at samples ${check.backwards.join(', ')}: ${counters.join(' ')}`
  );

  // The device's microphone: its tone, through the hub, decoded by the browser.
  await page.waitForFunction(() => window.camagentViewer.remoteAudioTrack, null, { timeout: 10000 });
  const audioTrack = await page.evaluateHandle(() => window.camagentViewer.remoteAudioTrack.getMediaStreamTrack());
  const audio = await page.evaluate(analyseAudio, audioTrack);
  const tolerance = Math.max(audio.binHz, 20);
  log(
    `audio: peak ${audio.peakHz.toFixed(1)} Hz at ${audio.peakDb.toFixed(1)} dB (want ${TONE_HZ} ± ${tolerance.toFixed(1)} Hz), ` +
      `rms ${audio.rms.toFixed(3)}, ${audio.sampleRate} Hz sample rate`
  );
  assert.ok(audio.rms > 0.001, `the device's audio is silent (rms ${audio.rms})`);
  assert.ok(Math.abs(audio.peakHz - TONE_HZ) <= tolerance, `peak at ${audio.peakHz} Hz, want ${TONE_HZ} Hz`);

  // Talk: hold the button. The first press opens and publishes the microphone (a 1000 Hz tone).
  await page.waitForSelector('#talk:not([disabled])');
  const box = await page.locator('#talk').boundingBox();
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  await page.mouse.down();
  const talkStartedAt = Date.now();
  await page.waitForFunction(
    () => {
      const v = window.camagentViewer;
      return v.talking && v.micTrack && v.micTrack.enabled && v.client.localTracks.includes(v.micTrack);
    },
    null,
    { timeout: 10000 }
  );
  const sentBefore = await page.evaluate(() => window.camagentViewer.client.getRTCStats().then((s) => s.SendBytes));
  await page.waitForTimeout(Math.max(0, TALK_MS - (Date.now() - talkStartedAt)));
  const sentAfter = await page.evaluate(() => window.camagentViewer.client.getRTCStats().then((s) => s.SendBytes));
  await page.mouse.up();
  await page.waitForFunction(() => !window.camagentViewer.talking && !window.camagentViewer.micTrack.enabled, null, {
    timeout: 5000,
  });
  log(`talk: held ${Date.now() - talkStartedAt} ms, sent ${sentAfter - sentBefore} bytes of ${MIC_TONE_HZ} Hz tone`);
  assert.ok(sentAfter - sentBefore > 5000, `only ${sentAfter - sentBefore} bytes sent while talking`);

  // The Space bar is hold-to-talk too, and a second press only unmutes (no new publish).
  await page.keyboard.down('Space');
  await page.waitForFunction(() => window.camagentViewer.talking && window.camagentViewer.micTrack.enabled, null, {
    timeout: 5000,
  });
  await page.waitForTimeout(300);
  await page.keyboard.up('Space');
  await page.waitForFunction(() => !window.camagentViewer.talking && !window.camagentViewer.micTrack.enabled, null, {
    timeout: 5000,
  });

  // Stop: the device leaves, and so does the browser.
  await page.click('#stop');
  await page.waitForFunction(() => window.camagentViewer.client === null, null, { timeout: 15000 });
  const stopStatus = await page.textContent('#status');
  const stopError = await page.evaluate(() => (document.querySelector('#error').hidden ? '' : document.querySelector('#error').textContent));
  log(`stop: ${stopStatus}`);
  assert.equal(stopError, '', 'Stop reported an error');

  // The device reports that it left (the directory reflects its MQTT state).
  const deadline = Date.now() + 15000;
  let state;
  for (;;) {
    const res = await fetch(`${hubURL()}/api/devices`);
    const list = await res.json();
    state = list.find((d) => d.id === deviceId)?.state;
    if (state && state.state !== 'joined' && state.state !== 'joining' && state.state !== 'leaving') break;
    if (Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  log(`device state after Stop: ${JSON.stringify(state)}`);
  assert.equal(state?.state, 'idle', `the device did not go idle after Stop: ${JSON.stringify(state)}`);
  assert.deepEqual(errors, [], 'uncaught errors in the page');
});
