// The viewer at / as people use it (issue 13): at desktop (1280×800) and phone (390×844) sizes,
// against the secure-mode hub and enrolled agents of e2e/viewer_ui_test.go, logged in as the
// admin. It takes screenshots and works every control: the device's thumbnail (the hub's snapshot
// route; a placeholder before there is one), how many others watch, fullscreen in and out (the button and a double
// click), mute and the volume slider (on the element playing the device's sound), the talking
// indicators (WebAudio levels of the device's sound and of the microphone), the reconnecting
// banner (the signalling socket is closed under the SDK), the click-to-play the page offers when
// the browser's autoplay policy refuses playback, the advice over the picture when the browser
// cannot decode it, and Talk held on a touch screen (real touch input through the DevTools
// protocol). The Go test checks the device's speaker for the tone.
//
// Not a *.test.mjs: it needs the Go test's hub and agents, so `node --test .` leaves it out.
//
// Env: CAMAGENT_HUB_URL, CAMAGENT_ADMIN_USER, CAMAGENT_ADMIN_PASSWORD, CAMAGENT_DEVICE_ID,
// CAMAGENT_SCREENSHOTS (a directory; the PNGs are written there), CAMAGENT_TALK_MS (2500).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { collectVideoFrames, envNumber, hubURL, launchChromium, log, openPage } from './lib.mjs';

const HUB = hubURL();
const USER = process.env.CAMAGENT_ADMIN_USER;
const PASSWORD = process.env.CAMAGENT_ADMIN_PASSWORD;
const DEVICE = process.env.CAMAGENT_DEVICE_ID;
const SHOTS = process.env.CAMAGENT_SCREENSHOTS;
const TALK_MS = envNumber('CAMAGENT_TALK_MS', 2500);
for (const [name, v] of Object.entries({ USER, PASSWORD, DEVICE, SHOTS })) {
  if (!v) throw new Error(`${name} is not set: run this through go test -run TestViewerUIBrowser ./e2e/`);
}
const VIEW = `button[data-view=${JSON.stringify(DEVICE)}]`;
const DESKTOP = { viewport: { width: 1280, height: 800 } };
const PHONE = { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true };

let chromium;
before(async () => {
  chromium = await launchChromium();
});
after(async () => {
  await chromium?.close();
});

// A logged-in page: POST /api/login through the context's own request client shares its cookies.
// What the hub's Content-Security-Policy refuses counts among the page's errors.
async function loggedIn(label, options) {
  const p = await openPage(chromium.browser, label, options);
  p.page.on('console', (m) => /Content Security Policy/i.test(m.text()) && p.errors.push(new Error(m.text())));
  const res = await p.context.request.post(`${HUB}/api/login`, { data: { user: USER, password: PASSWORD } });
  assert.equal(res.status(), 200, await res.text());
  p.csrf = (await res.json()).csrf;
  await p.page.goto(HUB + '/');
  await p.page.waitForSelector(`${VIEW}:not([disabled])`, { timeout: 20000 });
  return p;
}

async function shot(page, name) {
  const path = join(SHOTS, name);
  await page.screenshot({ path });
  log(`screenshot ${path}`);
}

const errorText = (page) => page.evaluate(() => (document.querySelector('#error').hidden ? '' : document.querySelector('#error').textContent));

// Views the device and waits for moving pictures and the device's sound in the page.
async function startViewing(page, click) {
  await click();
  const frames = await page.evaluate(collectVideoFrames, { selector: '#remote-video video', frames: 20, timeoutMs: 20000 });
  assert.ok(frames.frames.length >= 20, `${frames.error} (error: ${await errorText(page)})`);
  await page.waitForFunction(() => window.camagentViewer.remoteAudioTrack && document.querySelector('#remote-audio audio'), null, {
    timeout: 10000,
  });
}

async function stopViewing(page) {
  await page.click('#stop');
  await page.waitForFunction(() => window.camagentViewer.client === null && /Stopped/.test(document.querySelector('#status').textContent), null, {
    timeout: 15000,
  });
}

// Boxes of the page's parts, and whether anything sticks out sideways.
function layout() {
  const box = (sel) => {
    const e = document.querySelector(sel);
    if (!e) return null;
    const r = e.getBoundingClientRect();
    return { x: r.x, y: r.y, width: r.width, height: r.height };
  };
  const viewer = document.querySelector('#viewer');
  const cs = getComputedStyle(viewer);
  return {
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
    innerHeight: window.innerHeight,
    viewerContent: viewer.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight),
    stage: box('#stage'),
    picture: box('#remote-video'),
    video: box('#remote-video video'),
    talk: box('#talk'),
    thumb: box(`tr[data-device] .thumb`),
  };
}

const fullscreenId = (page) => page.evaluate(() => document.fullscreenElement && document.fullscreenElement.id);

test('desktop: thumbnail, fullscreen, mute and volume, who is talking, reconnecting', async () => {
  const { page, context, errors, csrf } = await loggedIn('desktop', DESKTOP);
  // Every signalling socket the SDK opens, so that the test can break one as a network would.
  await context.addInitScript(() => {
    const Native = window.WebSocket;
    window.__sockets = [];
    window.WebSocket = class extends Native {
      constructor(...args) {
        super(...args);
        window.__sockets.push(this);
      }
    };
  });
  await page.reload();
  await page.waitForSelector(`${VIEW}:not([disabled])`);

  // The thumbnail: a placeholder while the hub has no snapshot, the JPEG once the device made one.
  const snapshotURL = `${HUB}/api/devices/${DEVICE}/snapshot.jpg`;
  const first = await context.request.get(snapshotURL);
  log(`snapshot route before any snapshot: ${first.status()} ${first.headers()['content-type']}`);
  if (first.status() === 404) {
    await page.waitForFunction((id) => window.camagentViewer.thumbnails[id] === 'none', DEVICE);
    assert.equal(await page.$eval(`tr[data-device=${JSON.stringify(DEVICE)}] .thumb`, (e) => e.classList.contains('none')), true);
  }
  const cmd = await context.request.post(`${HUB}/api/devices/${DEVICE}/cmd`, {
    data: { action: 'snapshot', maxWidth: 320 },
    headers: { 'X-CSRF-Token': csrf },
  });
  assert.equal(cmd.status(), 200, await cmd.text());
  const reply = await cmd.json();
  assert.equal(reply.ok, true, JSON.stringify(reply));
  let jpeg;
  for (const deadline = Date.now() + 10000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 200))) {
    const res = await context.request.get(snapshotURL);
    if (res.status() === 200) {
      jpeg = { type: res.headers()['content-type'], body: await res.body() };
      break;
    }
  }
  assert.ok(jpeg, `the snapshot route never answered a JPEG after the device's snapshot (${JSON.stringify(reply.snapshot)})`);
  assert.equal(jpeg.type, 'image/jpeg');
  assert.deepEqual([...jpeg.body.subarray(0, 3)], [0xff, 0xd8, 0xff], 'not a JPEG');
  // The page fetches thumbnails every 30 s; ask now rather than wait.
  await page.evaluate(() => window.camagentThumbs.refresh());
  await page.waitForFunction((id) => window.camagentViewer.thumbnails[id] === 'loaded', DEVICE, { timeout: 10000 });
  const thumb = await page.$eval(`tr[data-device=${JSON.stringify(DEVICE)}] .thumb img`, (img) => ({
    src: img.currentSrc,
    width: img.naturalWidth,
    height: img.naturalHeight,
    refreshMs: window.camagentThumbs.REFRESH_MS,
  }));
  log(`thumbnail: ${thumb.width}x${thumb.height} from ${thumb.src} (${jpeg.body.length} bytes), refreshed every ${thumb.refreshMs} ms`);
  assert.ok(thumb.width > 0 && thumb.width <= 320, `thumbnail ${thumb.width}x${thumb.height}`);
  assert.match(thumb.src, new RegExp(`/api/devices/${DEVICE}/snapshot\\.jpg\\?t=\\d+$`));
  await shot(page, 'desktop-list.png');

  await startViewing(page, () => page.click(VIEW));
  let l = await page.evaluate(layout);
  log(`desktop layout: ${JSON.stringify(l)}`);
  assert.ok(Math.abs(l.stage.width - l.viewerContent) <= 1, 'the picture fills the card');
  assert.ok(Math.abs(l.video.width - l.picture.width) <= 1 && Math.abs(l.video.height - l.picture.height) <= 1, 'the video fills the picture');
  assert.ok(l.scrollWidth <= l.innerWidth, 'nothing sticks out sideways');

  // Who is talking: the device's tone lights its indicator; nobody else talks.
  await page.waitForFunction(() => window.camagentViewer.stage.speaking.device, null, { timeout: 10000 });
  const levels = await page.evaluate(() => ({ ...window.camagentViewer.stage.levels, lit: document.querySelector('#speaking-device').classList.contains('speaking') }));
  log(`levels: device ${levels.device.toFixed(1)} dBFS, you ${levels.you}`);
  assert.equal(levels.lit, true);
  assert.equal(await page.$eval('#speaking-you', (e) => e.hidden), true, 'nobody is talking from here');

  // Mute and volume act on the element that plays the device's sound.
  const audio = () => page.$eval('#remote-audio audio', (a) => ({ muted: a.muted, volume: a.volume, paused: a.paused }));
  assert.deepEqual(await audio(), { muted: false, volume: 1, paused: false });
  await page.click('#mute');
  assert.equal((await audio()).muted, true);
  assert.equal(await page.$eval('#mute', (b) => b.getAttribute('aria-pressed')), 'true');
  await page.waitForTimeout(300);
  assert.equal(await page.evaluate(() => window.camagentViewer.stage.speaking.device), true, 'muted here, the device still shows as talking');
  await page.keyboard.press('m');
  assert.equal((await audio()).muted, false, 'M unmutes');
  await page.fill('#volume', '30');
  assert.ok(Math.abs((await audio()).volume - 0.3) < 0.001, `volume ${(await audio()).volume}`);
  await shot(page, 'desktop-viewer.png');

  // Fullscreen: the whole stage, controls included; out again by the button, then by double clicks.
  await page.click('#fullscreen');
  await page.waitForFunction(() => document.fullscreenElement?.id === 'stage');
  await shot(page, 'desktop-fullscreen.png');
  l = await page.evaluate(layout);
  log(`fullscreen layout: ${JSON.stringify(l)}`);
  assert.ok(l.stage.width === l.innerWidth && l.stage.height === l.innerHeight, `fullscreen stage ${JSON.stringify(l.stage)}`);
  assert.ok(l.talk.y + l.talk.height <= l.innerHeight, 'Talk is on screen in fullscreen');
  assert.equal(await page.textContent('#fullscreen'), 'Exit fullscreen');
  await page.click('#fullscreen');
  await page.waitForFunction(() => document.fullscreenElement === null);
  await page.dblclick('#remote-video video');
  await page.waitForFunction(() => document.fullscreenElement?.id === 'stage');
  await page.dblclick('#remote-video video');
  await page.waitForFunction(() => document.fullscreenElement === null);
  assert.equal(await fullscreenId(page), null);

  // Someone else watches too: the stage says so, and stops saying so when they stop.
  assert.equal(await page.$eval('#watchers', (e) => e.hidden), true);
  const other = await loggedIn('second viewer', DESKTOP);
  await startViewing(other.page, () => other.page.click(VIEW));
  await page.waitForFunction(() => window.camagentViewer.watchers === 1 && !document.querySelector('#watchers').hidden, null, { timeout: 10000 });
  assert.equal(await page.textContent('#watchers'), '1 other person watching');
  await stopViewing(other.page);
  await page.waitForFunction(() => window.camagentViewer.watchers === 0 && document.querySelector('#watchers').hidden, null, { timeout: 10000 });
  assert.deepEqual(other.errors, []);
  await other.context.close();

  // Reconnecting: the signalling socket breaks; the banner shows until the SDK is back, and the
  // picture and sound come back with the settings kept.
  await page.evaluate(() => window.__sockets.filter((s) => s.readyState === 1).forEach((s) => s.close()));
  await page.waitForFunction(() => window.camagentViewer.stage.reconnecting && !document.querySelector('#reconnecting').hidden, null, {
    timeout: 5000,
  });
  await page.waitForFunction(() => !window.camagentViewer.stage.reconnecting && document.querySelector('#reconnecting').hidden, null, {
    timeout: 20000,
  });
  const again = await page.evaluate(collectVideoFrames, { selector: '#remote-video video', frames: 10, timeoutMs: 20000 });
  assert.ok(again.frames.length >= 10, `after reconnecting: ${again.error}`);
  await page.waitForFunction(() => document.querySelector('#remote-audio audio'), null, { timeout: 10000 });
  assert.ok(Math.abs((await audio()).volume - 0.3) < 0.001, 'the volume survives the reconnection');
  const states = await page.evaluate(() => window.camagentViewer.events.filter((e) => e.event === 'connection-state-change').map((e) => `${e.cur}/${e.reason}`));
  log(`connection states: ${states.join(' → ')}`);
  assert.ok(states.includes('RECONNECTING/NETWORK_ERROR') && states.includes('CONNECTED/RECONNECTED'), states.join(' '));

  await stopViewing(page);
  assert.equal(await errorText(page), '');
  assert.deepEqual(errors, []);
  await context.close();
});

test('autoplay refused: the page offers a click that starts the picture and the sound', async () => {
  // The browser's policy, as a browser applies it to a page nobody has clicked yet: play() of
  // an element with sound is refused until the first click. (navigator.userActivation cannot
  // tell: Playwright's evaluate counts as a gesture.)
  const { page, context, errors } = await loggedIn('autoplay', DESKTOP);
  await context.addInitScript(() => {
    const play = HTMLMediaElement.prototype.play;
    let clicked = false;
    window.addEventListener('click', (e) => (clicked = clicked || e.isTrusted), true);
    HTMLMediaElement.prototype.play = function () {
      if (!this.muted && !clicked) {
        return Promise.reject(new DOMException('play() can only be initiated by a user gesture', 'NotAllowedError'));
      }
      return play.call(this);
    };
    // The autoplay attribute is refused the same way.
    document.addEventListener('play', (e) => !e.target.muted && !clicked && e.target.pause(), true);
  });
  await page.reload();
  await page.waitForSelector(`${VIEW}:not([disabled])`);
  // Viewing without a gesture (as after a reload that resumes viewing).
  await page.evaluate((id) => window.camagentViewer.view(id), DEVICE);
  await page
    .waitForFunction(() => window.camagentViewer.stage.playBlocked && !document.querySelector('#play-blocked').hidden, null, {
      timeout: 20000,
    })
    .catch(async (e) => {
      const why = await page.evaluate(() => ({
        status: document.querySelector('#status').textContent,
        error: document.querySelector('#error').textContent,
        audio: !!document.querySelector('#remote-audio audio'),
        paused: document.querySelector('#remote-audio audio')?.paused,
        patched: String(HTMLMediaElement.prototype.play).slice(0, 40),
      }));
      throw new Error(`no click-to-play: ${JSON.stringify(why)}: ${e.message}`);
    });
  assert.equal(await page.$eval('#remote-audio audio', (a) => a.paused), true);
  await shot(page, 'desktop-autoplay-refused.png');
  await page.click('#play-blocked');
  await page.waitForFunction(() => !window.camagentViewer.stage.playBlocked && document.querySelector('#play-blocked').hidden);
  assert.equal(await page.$eval('#remote-audio audio', (a) => a.paused), false, 'the sound plays after the click');
  await stopViewing(page);
  // The SDK's own warning about the refused play() is expected here; nothing was thrown.
  assert.deepEqual(errors, []);
  await context.close();
});

test('a picture this browser cannot decode: the error says what to do, the sound plays on', async () => {
  // The SDK's answer for a browser that can decode H.264 neither in WebRTC nor with WebCodecs,
  // simulated at the SDK's edge: the video subscription alone fails with CODEC_NOT_SUPPORTED.
  const { page, context, errors } = await loggedIn('no-h264', DESKTOP);
  await page.evaluate(() => {
    const create = CamagentRTC.createClient;
    CamagentRTC.createClient = (config) => {
      const client = create(config);
      const subscribe = client.subscribe.bind(client);
      client.subscribe = (user, kind) =>
        kind === 'video'
          ? Promise.reject(new CamagentRTC.CamagentRTCError('CODEC_NOT_SUPPORTED', 'no decoder for video/H264 (simulated)'))
          : subscribe(user, kind);
      return client;
    };
  });
  await page.click(VIEW);
  await page.waitForSelector('#picture-error:not([hidden])', { timeout: 20000 });
  await page.waitForFunction(() => window.camagentViewer.stage.speaking.device, null, { timeout: 10000 });
  const text = await errorText(page);
  log(`error shown: ${text}`);
  assert.match(text, /^CODEC_NOT_SUPPORTED: This browser cannot show .*'s picture/);
  assert.match(text, /Chrome, Edge, Safari or Chromium/);
  assert.match(text, /OpenH264/);
  assert.match(text, /The sound keeps playing/);
  assert.equal(await page.$eval('#remote-audio audio', (a) => a.paused), false, 'the sound plays');
  assert.equal(await page.$('#remote-video video'), null);
  const over = await page.$eval('#picture-error', (e) => e.textContent);
  assert.ok(text.endsWith(over), `over the picture: ${over}`);
  assert.equal(await page.isVisible('#error'), false, 'said once, over the picture');
  await shot(page, 'desktop-cannot-decode.png');
  await page.waitForTimeout(1500);
  const states = await page.evaluate(() => window.camagentViewer.events.filter((e) => e.event === 'connection-state-change').length);
  assert.equal(states, 2, 'no reconnection loop (CONNECTING, CONNECTED)');
  await stopViewing(page);
  assert.deepEqual(errors, []);
  await context.close();
});

test('the list fetches each thumbnail again every 30 s', async () => {
  const p = await openPage(chromium.browser, 'thumbnails', DESKTOP);
  const res = await p.context.request.post(`${HUB}/api/login`, { data: { user: USER, password: PASSWORD } });
  assert.equal(res.status(), 200);
  await p.page.clock.install(); // the page's timers, under the test's control (time flows until told)
  await p.page.goto(HUB + '/');
  const img = `tr[data-device=${JSON.stringify(DEVICE)}] .thumb img`;
  await p.page.waitForFunction((id) => window.camagentViewer.thumbnails[id] === 'loaded', DEVICE, { timeout: 10000 });
  const first = await p.page.$eval(img, (i) => i.src);
  const fetched = [];
  p.page.on('request', (r) => r.url().includes('/snapshot.jpg') && fetched.push(r.url()));
  await p.page.clock.pauseAt(Date.now() + 1000);
  await p.page.clock.fastForward(27000);
  assert.equal(await p.page.$eval(img, (i) => i.src), first, 'fetched again before 30 s');
  await p.page.clock.fastForward(3000);
  await p.page.waitForFunction(
    ([sel, src]) => {
      const i = document.querySelector(sel);
      return i.src !== src && i.complete && i.naturalWidth > 0;
    },
    [img, first]
  );
  const again = await p.page.$eval(img, (i) => ({ src: i.src, width: i.naturalWidth }));
  log(`thumbnail refreshed: ${first} → ${again.src}; requests ${fetched.length}`);
  assert.notEqual(again.src, first);
  assert.ok(again.width > 0);
  assert.ok(fetched.some((u) => u === again.src), 'the new thumbnail came from the hub');
  assert.ok(!fetched.some((u) => /fresh=/.test(u)), 'the list never asks for a fresh snapshot');
  assert.deepEqual(p.errors, []);
  await p.context.close();
});

// Last: the device's speaker WAV starts afresh at every call, and the Go test reads this one's.
test('phone: the list as cards, the picture across the screen, Talk held by touch', async () => {
  const { page, context, errors } = await loggedIn('phone', PHONE);
  let l = await page.evaluate(layout);
  assert.ok(l.scrollWidth <= 390, `the list sticks out sideways: ${l.scrollWidth} px`);
  await page.waitForFunction((id) => window.camagentViewer.thumbnails[id] === 'loaded', DEVICE, { timeout: 10000 });
  await shot(page, 'phone-list.png');

  await startViewing(page, () => page.tap(VIEW));
  l = await page.evaluate(layout);
  log(`phone layout: ${JSON.stringify(l)}`);
  assert.ok(l.scrollWidth <= 390, `the viewer sticks out sideways: ${l.scrollWidth} px`);
  assert.ok(Math.abs(l.stage.width - l.viewerContent) <= 1, 'the picture fills the card');
  assert.ok(l.talk.height >= 44 && l.talk.width >= 0.8 * l.stage.width, `Talk is not thumb-sized: ${JSON.stringify(l.talk)}`);
  assert.ok(l.talk.y + l.talk.height <= l.innerHeight, 'Talk is on screen without scrolling');
  await page.waitForFunction(() => window.camagentViewer.stage.awake, null, { timeout: 5000 }); // the screen stays on
  await shot(page, 'phone-viewer.png');

  // Hold Talk with a finger: touchstart, hold, touchend, as the touch screen sends them.
  await page.waitForSelector('#talk:not([disabled])');
  assert.equal(await page.$eval('#talk', (b) => getComputedStyle(b).touchAction), 'none');
  const cdp = await context.newCDPSession(page);
  const at = { x: l.talk.x + l.talk.width / 2, y: l.talk.y + l.talk.height / 2 };
  const pointers = await page.evaluate(() => {
    const seen = [];
    for (const type of ['pointerdown', 'pointerup', 'pointercancel']) {
      document.querySelector('#talk').addEventListener(type, (e) => seen.push(`${e.type}:${e.pointerType}`));
    }
    window.__pointers = seen;
    return seen;
  });
  assert.deepEqual(pointers, []);
  await cdp.send('Input.dispatchTouchEvent', { type: 'touchStart', touchPoints: [at] });
  const t0 = Date.now();
  await page.waitForFunction(
    () => {
      const v = window.camagentViewer;
      return v.talking && v.micTrack?.enabled && v.client.localTracks.includes(v.micTrack) && v.stage.speaking.you;
    },
    null,
    { timeout: 10000 }
  );
  const sentBefore = await page.evaluate(() => window.camagentViewer.client.getRTCStats().then((s) => s.SendBytes));
  assert.equal(await page.$eval('#speaking-you', (e) => !e.hidden && e.classList.contains('speaking')), true, 'the page shows you talking');
  await shot(page, 'phone-talking.png');
  await page.waitForTimeout(Math.max(0, TALK_MS - (Date.now() - t0)));
  const sentAfter = await page.evaluate(() => window.camagentViewer.client.getRTCStats().then((s) => s.SendBytes));
  const youDb = await page.evaluate(() => window.camagentViewer.stage.levels.you);
  await cdp.send('Input.dispatchTouchEvent', { type: 'touchEnd', touchPoints: [] });
  await page.waitForFunction(() => !window.camagentViewer.talking && !window.camagentViewer.micTrack.enabled, null, { timeout: 5000 });
  await page.waitForFunction(() => !window.camagentViewer.stage.speaking.you && document.querySelector('#speaking-you').hidden);
  const seen = await page.evaluate(() => window.__pointers);
  log(`touch talk: held ${Date.now() - t0} ms, ${sentAfter - sentBefore} bytes sent, microphone at ${youDb.toFixed(1)} dBFS, events ${seen.join(' ')}`);
  assert.deepEqual(seen, ['pointerdown:touch', 'pointerup:touch'], 'a touch, held and lifted, without a cancel');
  assert.ok(sentAfter - sentBefore > 5000, `only ${sentAfter - sentBefore} bytes sent while talking`);

  await stopViewing(page);
  assert.equal(await page.evaluate(() => window.camagentViewer.stage.awake), false, 'the wake lock is released on Stop');
  assert.equal(await errorText(page), '');
  assert.deepEqual(errors, []);
  await context.close();
});
