// Firefox ESR as Debian ships it (no H.264 in its WebRTC: the OpenH264 plugin is never
// downloaded), against a running hub and device agent:
// - the viewer at /: the SDK chooses H.264 over a data channel into WebCodecs by itself and says
//   so; the device's frame counter advances in the decoded pictures, its tone plays on WebRTC
//   Opus, and holding Talk sends Firefox's microphone (FIREFOX_TONE_HZ) to the device (the Go
//   harness finds it in the device's speaker output);
// - the quickstart page: a call between Chromium and Firefox, video (VP8) and audio both ways.
//
// Env: as viewer.test.mjs (CAMAGENT_HUB_URL required), CAMAGENT_FIREFOX.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  analyseAudio,
  checkCounters,
  collectVideoFrames,
  envNumber,
  FIREFOX_TONE_HZ,
  hubURL,
  launchChromium,
  launchFirefox,
  log,
  MIC_TONE_HZ,
  openFirefoxPage,
  openPage,
  waitInPage,
} from './lib.mjs';

const TONE_HZ = envNumber('CAMAGENT_DEVICE_TONE_HZ', 440);
const TALK_MS = envNumber('CAMAGENT_TALK_MS', 3000);
const DEVICE_WAIT_MS = envNumber('CAMAGENT_DEVICE_WAIT_MS', 30000);
const MIN_FRAMES = envNumber('CAMAGENT_MIN_FRAMES', 60);
const MIN_FRAMES_CALL = envNumber('CAMAGENT_MIN_FRAMES_CALL', 30);

let firefox;
before(async () => {
  firefox = await launchFirefox();
});
after(async () => {
  await firefox?.close();
});

const pageError = (page) =>
  page.evaluate(() => {
    const el = document.querySelector('#error');
    return el && !el.hidden ? el.textContent : '';
  });

test('firefox: the viewer shows and plays the device, and talks to it', async () => {
  const hub = hubURL();
  const { page, errors } = await openFirefoxPage(firefox.browser, 'firefox viewer');
  await page.goto(hub + '/');
  const caps = await page.evaluate(() => ({
    webrtcH264: RTCRtpReceiver.getCapabilities('video').codecs.some((c) => /h264/i.test(c.mimeType)),
    ua: navigator.userAgent,
  }));
  log(`${caps.ua}: H.264 in WebRTC: ${caps.webrtcH264}`);
  assert.equal(caps.webrtcH264, false, 'this Firefox has H.264 in WebRTC: the fallback would not be tested');

  let deviceId = process.env.CAMAGENT_DEVICE_ID;
  const viewSelector = deviceId ? `button[data-view=${JSON.stringify(deviceId)}]` : 'button[data-view]';
  await page.waitForSelector(`${viewSelector}:not([disabled])`, { timeout: DEVICE_WAIT_MS });
  deviceId ??= await page.$eval(`${viewSelector}:not([disabled])`, (b) => b.dataset.view);
  const t0 = await page.evaluate(() => performance.now());
  await page.click(`button[data-view=${JSON.stringify(deviceId)}]`);
  const video = await page.evaluate(collectVideoFrames, {
    selector: '#remote-video video',
    frames: MIN_FRAMES,
    timeoutMs: 30000,
    readCounter: true,
  });
  assert.equal(await pageError(page), '', 'the viewer shows an error');
  assert.ok(video.frames.length >= MIN_FRAMES, `video: ${video.error}`);
  const counters = video.frames.map((f) => f.counter);
  const check = checkCounters(counters);
  const fps = ((video.frames.length - 1) * 1000) / (video.frames.at(-1).t - video.frames[0].t);
  const path = await page.evaluate(() => ({
    transport: window.camagentViewer.remoteVideoTrack.getTransport(),
    decoder: window.camagentViewer.remoteVideoTrack.getDecoderStats(),
  }));
  log(
    `firefox video ${video.width}x${video.height}: ${video.frames.length} frames, ${fps.toFixed(1)} fps, first ` +
      `${Math.round(video.frames[0].t - t0)} ms after View, counters ${counters[0]}…${counters.at(-1)} ` +
      `(${check.skips} skips); ${JSON.stringify(path)}`
  );
  assert.ok(check.ok, `the frame counter did not advance at ${check.backwards.join(', ')}: ${counters.join(' ')}`);
  assert.equal(path.transport.transport, 'datachannel');
  assert.match(path.transport.reason, /WebRTC has no H\.264/);
  assert.equal(path.decoder.decoderErrors, 0);

  // The device's tone over WebRTC Opus.
  await waitInPage(page, () => !!window.camagentViewer.remoteAudioTrack, null, { what: 'the audio track' });
  const audioTrack = await page.evaluateHandle(() => window.camagentViewer.remoteAudioTrack.getMediaStreamTrack());
  const audio = await page.evaluate(analyseAudio, audioTrack);
  const tolerance = Math.max(audio.binHz, 20);
  log(`firefox audio: peak ${audio.peakHz.toFixed(1)} Hz (want ${TONE_HZ}), rms ${audio.rms.toFixed(3)}`);
  assert.ok(audio.rms > 0.001, `the device's audio is silent (rms ${audio.rms})`);
  assert.ok(Math.abs(audio.peakHz - TONE_HZ) <= tolerance, `peak at ${audio.peakHz} Hz, want ${TONE_HZ} Hz`);

  // Talk: hold the button; Firefox's microphone plays FIREFOX_TONE_HZ.
  await page.waitForSelector('#talk:not([disabled])');
  const box = await (await page.$('#talk')).boundingBox();
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  await page.mouse.down();
  const talkStart = Date.now();
  await waitInPage(
    page,
    () => {
      const v = window.camagentViewer;
      return v.talking && v.micTrack && v.micTrack.enabled && v.client.localTracks.includes(v.micTrack);
    },
    null,
    { what: 'talking' }
  );
  const sentBefore = await page.evaluate(() => window.camagentViewer.client.getRTCStats().then((s) => s.SendBytes));
  await new Promise((r) => setTimeout(r, Math.max(0, TALK_MS - (Date.now() - talkStart))));
  const sentAfter = await page.evaluate(() => window.camagentViewer.client.getRTCStats().then((s) => s.SendBytes));
  await page.mouse.up();
  await waitInPage(page, () => !window.camagentViewer.talking, null, { what: 'talk to end' });
  log(`firefox talk: held ${Date.now() - talkStart} ms, sent ${sentAfter - sentBefore} bytes of ${FIREFOX_TONE_HZ} Hz`);
  assert.ok(sentAfter - sentBefore > 5000, `only ${sentAfter - sentBefore} bytes sent while talking`);

  await page.click('#stop');
  await waitInPage(page, () => window.camagentViewer.client === null, null, { timeoutMs: 15000, what: 'Stop' });
  assert.equal(await pageError(page), '', 'Stop reported an error');
  assert.deepEqual(errors, [], 'uncaught errors in the page');
});

// Joins the quickstart page's channel and waits until this side publishes; returns its uid.
async function joinQuickstart(page, hub, channel) {
  await page.goto(`${hub}/quickstart?channel=${encodeURIComponent(channel)}`);
  await waitInPage(page, () => document.querySelector('#appid').value !== '', null, { what: 'the App ID' });
  await page.click('#join');
  await waitInPage(
    page,
    () => window.quickstartEvents.some((e) => e.event === 'published') || !document.querySelector('#error').hidden,
    null,
    { timeoutMs: 20000, what: 'publishing' }
  );
  assert.equal(await pageError(page), '', 'join failed');
  return page.evaluate(() => window.camagentQuickstart.options.uid);
}

// The other side's video decodes (frames presented) and its audio is heard at its tone.
async function receives(page, label, uid, toneHz) {
  const video = await page.evaluate(collectVideoFrames, { selector: `#player-${uid} video`, frames: MIN_FRAMES_CALL, timeoutMs: 20000 });
  assert.ok(video.frames.length >= MIN_FRAMES_CALL, `${label}: ${video.error}`);
  await waitInPage(page, (u) => !!window.camagentQuickstart.client.remoteUsers.find((x) => x.uid === u)?.audioTrack, uid, {
    what: `${label}: the audio track`,
  });
  const info = await page.evaluate((u) => {
    const user = window.camagentQuickstart.client.remoteUsers.find((x) => x.uid === u);
    return { transport: user.videoTrack.getTransport(), codec: user.videoCodec };
  }, uid);
  const track = await page.evaluateHandle(
    (u) => window.camagentQuickstart.client.remoteUsers.find((x) => x.uid === u).audioTrack.getMediaStreamTrack(),
    uid
  );
  const audio = await page.evaluate(analyseAudio, track);
  log(
    `${label}: ${video.frames.length} frames ${video.width}x${video.height} (${info.codec} on ${info.transport.transport}), ` +
      `audio peak ${audio.peakHz.toFixed(1)} Hz (want ${toneHz}), rms ${audio.rms.toFixed(3)}`
  );
  assert.equal(info.transport.transport, 'webrtc', `${label}: the call's video should need no fallback`);
  assert.ok(audio.rms > 0.01, `${label}: too quiet (rms ${audio.rms})`);
  assert.ok(Math.abs(audio.peakHz - toneHz) <= Math.max(audio.binHz, 20), `${label}: peak at ${audio.peakHz} Hz, want ${toneHz}`);
}

test('firefox: a quickstart call with Chromium, video and audio both ways', async () => {
  const hub = hubURL();
  const channel = `qs-ff-${process.pid}-${Date.now()}`;
  const chromium = await launchChromium();
  try {
    const c = await openPage(chromium.browser, 'chromium');
    const f = await openFirefoxPage(firefox.browser, 'firefox');
    const uidC = await joinQuickstart(c.page, hub, channel);
    const uidF = await joinQuickstart(f.page, hub, channel);
    await receives(f.page, 'firefox hears and sees chromium', uidC, MIC_TONE_HZ);
    await receives(c.page, 'chromium hears and sees firefox', uidF, FIREFOX_TONE_HZ);
    await f.page.click('#leave');
    await c.page.click('#leave');
    assert.deepEqual([...c.errors, ...f.errors], [], 'uncaught errors in the pages');
  } finally {
    await chromium.close();
  }
});
