// MQTT join → first presented frame in headless Chromium, driven by bench/chromium_join.go
// (docs/performance.md, 1).
//
// A page of the hub's origin that loads the hub's SDK (/sdk/camagent-rtc.js; the quickstart
// page, whose own client stays idle: a page Playwright fulfils itself would be a public origin,
// which Chromium's local network access checks keep off the loopback hub) creates a client of
// its own, joins the channel as a subscriber and waits. For each join it prints {"ready": i} on
// stdout; the Go side then publishes the device's join command on MQTT. The page subscribes to
// the device's video when user-published(video) comes, plays it, and ends the measurement at
// the first frame its <video> presents (requestVideoFrameCallback). It prints {"join": {...}}
// with wall-clock times in Unix ms (performance.timeOrigin + the event's performance.now()),
// then waits for the device's user-left (the Go side sends leave) and 300 ms more before the
// next join. The last line is {"done": {...}}.
//
// Env: CAMBENCH_HUB_URL, CAMBENCH_CHANNEL, CAMBENCH_JOINS, CAMBENCH_TIMEOUT_MS (per join),
// CAMBENCH_PLAYWRIGHT (the playwright-core package directory), CAMBENCH_CHROMIUM,
// CAMBENCH_JOIN_DEBUG (non-empty: the subscribe connection's state changes on stderr).
import { env, launchChromium } from './chromium_lib.mjs';

const hub = env('CAMBENCH_HUB_URL').replace(/\/+$/, '');
const channel = env('CAMBENCH_CHANNEL');
const joins = Number(env('CAMBENCH_JOINS', '20'));
const timeoutMs = Number(env('CAMBENCH_TIMEOUT_MS', '20000'));
const debug = env('CAMBENCH_JOIN_DEBUG', '') !== '';

const say = (msg) => process.stderr.write(`chromium_join: ${msg}\n`);
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

// Runs in the page (page.evaluate): self-contained. window.benchReady and window.benchJoin are
// node's (page.exposeFunction).
async function run({ channel, joins, timeoutMs, pauseMs, debug }) {
  const sdk = window.CamagentRTC;
  const box = document.createElement('div');
  box.id = 'bench-remote';
  box.style.cssText = 'width:640px;height:480px';
  document.body.appendChild(box);
  const wall = (t) => performance.timeOrigin + t;
  const now = () => wall(performance.now());
  const skew = () => Date.now() - now();
  const skewStart = skew();
  const client = sdk.createClient({ mode: 'rtc', codec: 'h264' });
  const uid = 70000 + Math.floor(Math.random() * 1000);
  const token = await sdk.fetchToken({ appId: 'demo', channel, uid, role: 'subscriber' });
  await client.join('demo', channel, token, uid);

  // One join's moments; the handlers below fill in the current one.
  let cur = null;
  let left = null;
  const fail = (e) => cur && cur.reject(e);
  client.on('user-joined', (user) => {
    if (cur && !cur.joined) {
      cur.joined = now();
      cur.uid = user.uid;
    }
  });
  client.on('user-published', async (user, kind) => {
    if (!cur || kind !== 'video' || cur.published) return;
    cur.published = now();
    try {
      const sp = client.subscribe(user, 'video');
      const pc = client._subPC;
      if (debug && pc && !pc._benchLogged) {
        pc._benchLogged = true;
        const t0 = cur.published;
        for (const ev of ['iceconnectionstatechange', 'connectionstatechange', 'icegatheringstatechange', 'signalingstatechange']) {
          pc.addEventListener(ev, () => console.warn(`DBG ${ev} +${(now() - t0).toFixed(1)} ice=${pc.iceConnectionState} conn=${pc.connectionState} gather=${pc.iceGatheringState} sig=${pc.signalingState}`));
        }
      }
      const track = await sp;
      cur.subscribed = now();
      track.play(box);
      const video = track.getMediaElement();
      video.requestVideoFrameCallback((cbNow, md) => {
        cur.callback = wall(cbNow);
        cur.presented = wall(md.expectedDisplayTime);
        if (typeof md.receiveTime === 'number') cur.received = wall(md.receiveTime);
        cur.width = md.width;
        cur.height = md.height;
        cur.mlines = client._subPC ? client._subPC.getTransceivers().length : 0;
        cur.resolve();
      });
    } catch (e) {
      fail(e);
    }
  });
  client.on('user-left', (user) => {
    if (left && user.uid === left.uid) left.resolve();
  });
  const within = (p, what) =>
    Promise.race([p, new Promise((_, rej) => setTimeout(() => rej(new Error(`${what}: nothing in ${timeoutMs} ms`)), timeoutMs))]);

  for (let i = 0; i < joins; i++) {
    const j = { i };
    const done = new Promise((resolve, reject) => Object.assign(j, { resolve, reject }));
    cur = j;
    await window.benchReady(i);
    await within(done, `join ${i + 1}`);
    cur = null;
    const { resolve, reject, ...moments } = j;
    left = { uid: j.uid };
    const gone = new Promise((r) => (left.resolve = r));
    await window.benchJoin(moments);
    await within(gone, `user-left after join ${i + 1}`);
    left = null;
    // The hub allows a client 5 requests a second (a subscribe each join, and the pings): a
    // pause keeps the page under it, as a person's page is.
    await new Promise((r) => setTimeout(r, pauseMs));
  }
  await client.leave();
  return { skewStart, skewEnd: skew() };
}

const browser = await launchChromium();
const pageErrors = [];
try {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.on('pageerror', (e) => {
    pageErrors.push(String(e));
    say(`page error: ${e}`);
  });
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') say(`console.${m.type()}: ${m.text()}`);
  });
  await page.exposeFunction('benchReady', (i) => out({ ready: i }));
  await page.exposeFunction('benchJoin', (j) => out({ join: j }));
  await page.goto(hub + '/quickstart');
  say(`in channel ${channel}; ${joins} joins`);
  const r = await page.evaluate(run, { channel, joins, timeoutMs, pauseMs: 300, debug });
  out({ done: Object.assign(r, { browser: browser.version(), pageErrors }) });
} catch (e) {
  out({ done: { error: String(e && e.stack ? e.stack : e), pageErrors } });
} finally {
  await browser.close().catch(() => {});
}
