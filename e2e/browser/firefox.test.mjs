// Firefox ESR as Debian ships it (no H.264 in its WebRTC: the OpenH264 plugin is never
// downloaded), against a running hub and device agent:
// - the viewer at /: the SDK chooses H.264 over a data channel into WebCodecs by itself and says
//   so; the device's frame counter advances in the decoded pictures, its tone plays on WebRTC
//   Opus, and holding Talk sends Firefox's microphone (FIREFOX_TONE_HZ) to the device (the Go
//   harness finds it in the device's speaker output);
// - the viewer's controls in Firefox: screenshots at desktop (1280×800) and phone (390×844)
//   widths, mute, fullscreen in and out, Talk held by Space and by touch (both reach the device:
//   the Go harness measures the talks and their dropouts in the device's speaker WAV);
// - the quickstart page: a call between Chromium and Firefox, video (VP8) and audio both ways.
//
// Env: as viewer.test.mjs (CAMAGENT_HUB_URL required), CAMAGENT_FIREFOX, CAMAGENT_SCREENSHOTS (a
// directory for the PNGs; default <tmp>/camagent-firefox-screenshots).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
  const before = await sentSoFar(page);
  await new Promise((r) => setTimeout(r, Math.max(0, TALK_MS - (Date.now() - talkStart))));
  const after = await sentSoFar(page);
  await page.mouse.up();
  await waitInPage(page, () => !window.camagentViewer.talking, null, { what: 'talk to end' });
  log(`firefox talk: held ${Date.now() - talkStart} ms, sent ${sendRate(before, after)} of ${FIREFOX_TONE_HZ} Hz`);
  assert.ok(after.bytes - before.bytes > 5000, `only ${after.bytes - before.bytes} bytes sent while talking`);

  await page.click('#stop');
  await waitInPage(page, () => window.camagentViewer.client === null, null, { timeoutMs: 15000, what: 'Stop' });
  assert.equal(await pageError(page), '', 'Stop reported an error');
  assert.deepEqual(errors, [], 'uncaught errors in the page');
});

// The viewer's microphone as sent so far: bytes (all of the publishing connection) and audio
// RTP packets, with the page's clock.
const sentSoFar = (page) =>
  page.evaluate(async () => {
    const c = window.camagentViewer.client;
    let packets = 0;
    (await c._pubPC.getStats()).forEach((r) => {
      if (r.type === 'outbound-rtp' && r.kind === 'audio') packets += r.packetsSent || 0;
    });
    return { bytes: (await c.getRTCStats()).SendBytes, packets, ms: performance.now() };
  });

// How fast the microphone sent: Firefox's Opus packets hold 20 ms, so 50 a second keeps real
// time and fewer means its audio clock is behind (lib.mjs launchFirefox).
const sendRate = (a, b) => `${b.bytes - a.bytes} bytes, ${(((b.packets - a.packets) * 1000) / (b.ms - a.ms)).toFixed(1)} audio packets/s`;

// Holds Talk (start/end do the pressing), checks the page talks and sends, and that it stops.
async function holdTalk(page, label, start, end) {
  await start();
  const t0 = Date.now();
  await waitInPage(page, () => window.camagentViewer.talking && window.camagentViewer.micTrack?.enabled, null, { what: `${label}: talking` });
  const before = await sentSoFar(page);
  await new Promise((r) => setTimeout(r, 2000));
  const after = await sentSoFar(page);
  await end();
  await waitInPage(page, () => !window.camagentViewer.talking && !window.camagentViewer.micTrack.enabled, null, { what: `${label}: talk to end` });
  log(`firefox ${label}: held ${Date.now() - t0} ms, sent ${sendRate(before, after)}`);
  assert.ok(after.bytes - before.bytes > 3000, `${label}: only ${after.bytes - before.bytes} bytes sent while talking`);
}

// Frames still arrive and the device's counter advances in them.
async function framesAdvance(page, label, frames) {
  const v = await page.evaluate(collectVideoFrames, { selector: '#remote-video video', frames, timeoutMs: 15000, readCounter: true });
  assert.ok(v.frames.length >= frames, `${label}: ${v.error}`);
  const check = checkCounters(v.frames.map((f) => f.counter));
  assert.ok(check.ok, `${label}: the frame counter did not advance at ${check.backwards.join(', ')}`);
  return v;
}

test('firefox: the viewer\'s controls at desktop and phone widths', async () => {
  const shots = process.env.CAMAGENT_SCREENSHOTS || join(tmpdir(), 'camagent-firefox-screenshots');
  mkdirSync(shots, { recursive: true });
  const shot = async (page, name) => {
    await page.screenshot({ path: join(shots, name) });
    log(`screenshot ${join(shots, name)}`);
  };
  const { page, errors } = await openFirefoxPage(firefox.browser, 'firefox controls');
  // Touch from the start: puppeteer reloads the page when hasTouch changes.
  await page.setViewport({ width: 1280, height: 800, hasTouch: true });
  await page.goto(hubURL() + '/');
  await page.waitForSelector('button[data-view]:not([disabled])', { timeout: DEVICE_WAIT_MS });
  await page.click('button[data-view]:not([disabled])');
  await framesAdvance(page, 'desktop', 30);
  await shot(page, 'firefox-desktop-viewer.png');

  // Mute acts on the element that plays the device's sound; the button says so.
  const audio = () => page.$eval('#remote-audio audio', (a) => ({ muted: a.muted, paused: a.paused }));
  assert.deepEqual(await audio(), { muted: false, paused: false });
  await page.click('#mute');
  assert.equal((await audio()).muted, true, 'Mute did not mute');
  assert.equal(await page.$eval('#mute', (b) => b.getAttribute('aria-pressed')), 'true');
  await page.click('#mute');
  assert.equal((await audio()).muted, false, 'Mute again did not unmute');

  // Fullscreen: the whole stage fills the window, and the picture still moves.
  await page.click('#fullscreen');
  await waitInPage(page, () => document.fullscreenElement?.id === 'stage', null, { what: 'fullscreen' });
  const fs = await page.evaluate(() => {
    const r = document.querySelector('#stage').getBoundingClientRect();
    return { width: Math.round(r.width), height: Math.round(r.height), innerWidth, innerHeight };
  });
  log(`firefox fullscreen stage: ${JSON.stringify(fs)}`);
  assert.ok(fs.width === fs.innerWidth && fs.height === fs.innerHeight, `fullscreen stage ${JSON.stringify(fs)}`);
  await framesAdvance(page, 'fullscreen', 10);
  await shot(page, 'firefox-desktop-fullscreen.png');
  await page.click('#fullscreen');
  await waitInPage(page, () => document.fullscreenElement === null, null, { what: 'fullscreen to end' });

  // Hold-to-talk by Space (the body has the focus, not a text field).
  await page.evaluate(() => document.activeElement?.blur());
  await holdTalk(page, 'Space talk', () => page.keyboard.down(' '), () => page.keyboard.up(' '));

  // A phone's width: nothing sticks out, the picture fills the card, Talk is thumb-sized; Talk by touch.
  await page.setViewport({ width: 390, height: 844, hasTouch: true }); // no reload: only the size changes
  await framesAdvance(page, 'phone', 30); // also ≥ 1 s of silence between the two talks
  const l = await page.evaluate(() => {
    const box = (sel) => {
      const r = document.querySelector(sel).getBoundingClientRect();
      return { x: r.x, y: r.y, width: r.width, height: r.height };
    };
    return { scrollWidth: document.documentElement.scrollWidth, stage: box('#stage'), talk: box('#talk'), innerHeight };
  });
  log(`firefox phone layout: ${JSON.stringify(l)}`);
  assert.ok(l.scrollWidth <= 390, `the viewer sticks out sideways: ${l.scrollWidth} px`);
  assert.ok(l.talk.height >= 44 && l.talk.width >= 0.8 * l.stage.width, `Talk is not thumb-sized: ${JSON.stringify(l.talk)}`);
  await shot(page, 'firefox-phone-viewer.png');
  await page.evaluate(() => {
    window.__pointers = [];
    for (const type of ['pointerdown', 'pointerup', 'pointercancel']) {
      document.querySelector('#talk').addEventListener(type, (e) => window.__pointers.push(`${e.type}:${e.pointerType}`));
    }
  });
  const at = { x: l.talk.x + l.talk.width / 2, y: l.talk.y + l.talk.height / 2 };
  await holdTalk(page, 'touch talk', () => page.touchscreen.touchStart(at.x, at.y), () => page.touchscreen.touchEnd());
  const pointers = await page.evaluate(() => window.__pointers);
  log(`firefox touch talk pointer events: ${pointers.join(' ')}`);
  assert.deepEqual(pointers, ['pointerdown:touch', 'pointerup:touch'], 'a touch, held and lifted');

  await page.click('#stop');
  await waitInPage(page, () => window.camagentViewer.client === null, null, { timeoutMs: 15000, what: 'Stop' });
  assert.equal(await pageError(page), '', 'the viewer shows an error');
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
