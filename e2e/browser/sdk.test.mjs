// The SDK and the pages in Chromium with no hub at all: the pages and the SDK are served from the
// files in web/ through Playwright routes (same paths as web.Handler), /api/* is answered here,
// and mockhub.js plays the hub's signalling and SFU inside the page. These pin down the SDK's
// side of the protocol (reply codes, timeouts, mid mapping in both reply orders, H.264
// preference, no renegotiation on mute, events) independently of the hub; the other test files
// check the same pages against a real hub and device.
import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { collectVideoFrames, launchChromium, openPage } from './lib.mjs';

const ORIGIN = 'http://localhost:18089'; // never contacted: every request is routed
const WEB = fileURLToPath(new URL('../../web/', import.meta.url));
const MOCK_HUB = fileURLToPath(new URL('./mockhub.js', import.meta.url));

// The routes of web.Handler (web/web.go).
const PAGES = {
  '/': 'pages/index.html',
  '/quickstart': 'pages/quickstart.html',
  '/login': 'pages/login.html',
  '/admin': 'pages/admin.html',
  '/sdk/camagent-rtc.js': 'sdk/camagent-rtc.js',
};
const TYPES = { html: 'text/html', js: 'application/javascript', css: 'text/css' };
// The hub's policy (hub/): the pages must work under it.
const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'none'";
// A demo-mode hub's session: loopback is trusted, nobody logs in.
const DEMO_SESSION = { user: 'demo', admin: true, demo: true, csrf: 'csrf-demo', permissions: { '*': ['view', 'talk', 'command', 'admin'] } };

let chromium;
before(async () => {
  chromium = await launchChromium();
});
after(async () => {
  await chromium?.close();
});
// Each test's pages end with it: a page left open keeps its camera, calls and polling going.
const contexts = [];
afterEach(async () => {
  await Promise.all(contexts.splice(0).map((c) => c.close().catch(() => {})));
});

const jsonError = (status, code, message) => ({ status, body: { error: { code, message } } });

/**
 * Opens `path` with the mock hub installed. `api` answers /api/*: {devices: [...],
 * session() → session or {status, body}, login(body), watch(id, body, page) → answer,
 * unwatch(id, body), cmd(id, body, page) → reply, token(body) → token, admin(method, path, body)}.
 * Each answer may be {status, body} for an error. Returns {page, errors, requests, csp}:
 * requests has {method, path, body, headers}, csp the pages' CSP violations.
 */
async function open(path, api = {}) {
  const { page, context, errors } = await openPage(chromium.browser, `mock ${path}`);
  contexts.push(context);
  const requests = [];
  const csp = [];
  page.on('console', (m) => {
    if (/Content Security Policy/i.test(m.text())) csp.push(m.text());
  });
  await context.addInitScript({ path: MOCK_HUB });
  await context.route(`${ORIGIN}/**`, async (route) => {
    const req = route.request();
    const url = new URL(req.url());
    const file = PAGES[url.pathname] || (/^\/static\/[\w.-]+$/.test(url.pathname) ? 'pages/' + url.pathname.slice(8) : null);
    if (file) {
      const body = await readFile(WEB + file).catch(() => null);
      if (!body) return route.fulfill({ status: 404, body: 'not found' });
      const ext = file.split('.').pop();
      const headers = ext === 'html' ? { 'Content-Security-Policy': CSP } : {};
      return route.fulfill({ status: 200, contentType: TYPES[ext], headers, body });
    }
    const body = req.postData() ? JSON.parse(req.postData()) : null;
    requests.push({ method: req.method(), path: url.pathname, body, headers: req.headers() });
    const json = (data, status = 200) =>
      data === null
        ? route.fulfill({ status: 204 })
        : route.fulfill({ status, contentType: 'application/json', body: JSON.stringify(data) });
    // {status, body} is an error answer; anything else is a 200 answer.
    const answer = (out) => (out && out.status && out.body ? json(out.body, out.status) : json(out === undefined ? null : out));
    if (url.pathname === '/api/session') return answer(api.session ? await api.session() : DEMO_SESSION);
    if (url.pathname === '/api/login' && api.login) return answer(await api.login(body));
    if (url.pathname === '/api/logout' && api.logout) return answer(await api.logout(body));
    if (url.pathname === '/api/config') return json({ appId: 'demo' });
    if (url.pathname === '/api/devices') return json(api.devices || []);
    if (url.pathname === '/api/token') {
      try {
        return json({ token: api.token ? await api.token(body) : `tok-${body.channel}-${body.uid}` });
      } catch (e) {
        return json({ error: e.message }, 403);
      }
    }
    const dev = url.pathname.match(/^\/api\/devices\/([^/]+)\/(cmd|watch|unwatch)$/);
    if (dev && api[dev[2]]) return answer(await api[dev[2]](decodeURIComponent(dev[1]), body, page));
    if (url.pathname.startsWith('/api/admin/') && api.admin) return answer(await api.admin(req.method(), url.pathname, body));
    return route.fulfill({ status: 404, body: 'not found' });
  });
  await page.goto(ORIGIN + path);
  return { page, errors, requests, csp };
}

// A hub's answer to /watch: the device (uid 7) is in the channel, the viewer gets uid 4243.
function watchAnswer(id, { expiresIn = 3600 } = {}) {
  return {
    appId: 'demo',
    channel: `view-${id}`,
    uid: 4243,
    token: `tok-view-${id}-${Date.now()}`,
    expiresAt: Math.floor(Date.now() / 1000) + expiresIn,
    deviceUid: 7,
    reply: { id: 'r1', ok: true, state: { state: 'joined', channel: `view-${id}`, uid: 7, users: [] } },
  };
}

// The state-changing requests the page sent, without the GETs.
const changes = (requests) => requests.filter((r) => r.method !== 'GET');

// m=video's payload types in order of preference, with their codec names.
function videoCodecs(sdp) {
  const section = sdp.split(/\r\nm=/).find((s) => s.startsWith('video'));
  const pts = section.split('\r\n')[0].split(' ').slice(3);
  const names = Object.fromEntries([...section.matchAll(/a=rtpmap:(\d+) ([^/]+)/g)].map((m) => [m[1], m[2]]));
  return { direction: section.match(/a=(sendonly|recvonly|sendrecv|inactive)/)[1], codecs: pts.map((pt) => names[pt]) };
}

describe('SDK against the mock hub', () => {
  test('a refused join rejects with the hub\'s code and message', async () => {
    const { page, errors } = await open('/quickstart');
    const r = await page.evaluate(async () => {
      mockHub.joinError = { code: 'TOKEN_EXPIRED', message: 'token expired at 2026-11-24T10:00:00Z' };
      const client = CamagentRTC.createClient({ mode: 'rtc', codec: 'h264' });
      const states = [];
      client.on('connection-state-change', (cur, prev, reason) => states.push([cur, prev, reason]));
      try {
        await client.join('demo', 'porch', 'cam1.x', 42);
        return { ok: true };
      } catch (e) {
        return { name: e.name, code: e.code, message: e.message, typed: e instanceof CamagentRTC.CamagentRTCError, states, sent: mockHub.received };
      }
    });
    assert.equal(r.name, 'CamagentRTCError');
    assert.ok(r.typed);
    assert.equal(r.code, 'TOKEN_EXPIRED');
    assert.equal(r.message, 'token expired at 2026-11-24T10:00:00Z');
    assert.deepEqual(r.states, [
      ['CONNECTING', 'DISCONNECTED', undefined],
      ['DISCONNECTED', 'CONNECTING', 'TOKEN_EXPIRED'],
    ]);
    assert.deepEqual(r.sent, [{ type: 'join', id: 1, appId: 'demo', channel: 'porch', uid: 42, token: 'cam1.x' }]);
    assert.deepEqual(errors, []);
  });

  test('an unanswered request fails with TIMEOUT; bad arguments fail locally', async () => {
    const { page } = await open('/quickstart');
    const r = await page.evaluate(async () => {
      mockHub.silent = ['join'];
      const client = CamagentRTC.createClient({ requestTimeoutMs: 300 });
      const out = {};
      try {
        await client.join('demo', 'porch', 't', null);
      } catch (e) {
        out.timeout = [e.code, client.connectionState, mockHub.received[0].uid];
      }
      for (const [name, args] of [
        ['channel', ['demo', '', 't', 1]],
        ['uid', ['demo', 'c', 't', -1]],
        ['appId', ['', 'c', 't', 1]],
      ]) {
        try {
          await client.join(...args);
        } catch (e) {
          out[name] = e.code;
        }
      }
      try {
        await client.publish([]);
      } catch (e) {
        out.publish = e.code;
      }
      return out;
    });
    assert.deepEqual(r, {
      timeout: ['TIMEOUT', 'DISCONNECTED', null],
      channel: 'INVALID_PARAMS',
      uid: 'INVALID_PARAMS',
      appId: 'INVALID_PARAMS',
      publish: 'INVALID_OPERATION',
    });
  });

  const orders = [
    { name: 'hub offers, then replies', replyBeforeOffer: false, midInReply: true },
    { name: 'hub replies, then offers', replyBeforeOffer: true, midInReply: true },
    { name: 'hub replies without a mid, then offers', replyBeforeOffer: true, midInReply: false },
  ];
  for (const order of orders) {
    test(`publish and subscribe (${order.name})`, async () => {
      const { page, errors } = await open('/quickstart');
      await page.evaluate(async ({ replyBeforeOffer, midInReply }) => {
        mockHub.users = [{ uid: 7, audio: true, video: true }];
        Object.assign(mockHub, { replyBeforeOffer, midInReply });
        const client = CamagentRTC.createClient({ mode: 'rtc', codec: 'h264' });
        const events = [];
        for (const name of ['user-joined', 'user-published', 'user-unpublished', 'user-left']) {
          client.on(name, (user, arg) => events.push([name, user.uid, arg]));
        }
        window.t = { client, events };
        t.uid = await client.join('demo', 'porch', 'tok', null);
        await new Promise((r) => setTimeout(r, 50));
        t.eventsAfterJoin = events.slice();
        const [mic, cam] = await CamagentRTC.createMicrophoneAndCameraTracks();
        t.mic = mic;
        t.cam = cam;
        await client.publish([mic, cam]);
        const user = client.remoteUsers[0];
        const [video, audio] = await Promise.all([client.subscribe(user, 'video'), client.subscribe(user, 'audio')]);
        const box = document.createElement('div');
        box.id = 'box';
        document.body.append(box);
        video.play('box');
        audio.play();
        t.tracks = { video, audio, same: user.videoTrack === video && user.audioTrack === audio };
      }, order);

      const state = await page.evaluate(() => ({
        uid: t.uid,
        eventsAfterJoin: t.eventsAfterJoin,
        remoteUsers: t.client.remoteUsers.map((u) => ({ uid: u.uid, hasAudio: u.hasAudio, hasVideo: u.hasVideo })),
        localTracks: t.client.localTracks.map((x) => x.trackMediaType),
        kinds: [t.tracks.video.trackMediaType, t.tracks.audio.trackMediaType, t.tracks.video.getUserId()],
        same: t.tracks.same,
        offers: mockHub.publishOffers,
      }));
      assert.equal(state.uid, 4242, 'uid null is assigned by the hub');
      assert.deepEqual(state.eventsAfterJoin, [
        ['user-joined', 7, undefined],
        ['user-published', 7, 'audio'],
        ['user-published', 7, 'video'],
      ]);
      assert.deepEqual(state.remoteUsers, [{ uid: 7, hasAudio: true, hasVideo: true }]);
      assert.deepEqual(state.localTracks, ['audio', 'video']);
      assert.deepEqual(state.kinds, ['video', 'audio', 7]);
      assert.ok(state.same, 'user.videoTrack and user.audioTrack are the subscribed tracks');
      assert.equal(state.offers.length, 1);
      const offer = videoCodecs(state.offers[0]);
      assert.equal(offer.direction, 'sendonly');
      assert.equal(offer.codecs[0], 'H264', `H.264 comes first: ${offer.codecs.join(' ')}`);
      assert.match(state.offers[0], /a=fmtp:\d+ .*packetization-mode=1.*profile-level-id=42e0|a=fmtp:\d+ .*profile-level-id=42e0.*packetization-mode=1/);
      assert.match(state.offers[0], /a=candidate:/, 'the offer carries its candidates (no trickle)');

      // Media flows both ways: the client's video decodes, and the hub received its tracks.
      const frames = await page.evaluate(collectVideoFrames, { selector: '#box video', frames: 10, timeoutMs: 10000 });
      assert.ok(frames.frames.length >= 10, frames.error);
      assert.deepEqual(await page.evaluate(() => mockHub.publishedTracks.map((x) => x.kind).sort()), ['audio', 'video']);

      // Muting renegotiates nothing; unpublishing does, with the m-line inactive.
      const r = await page.evaluate(async () => {
        await t.mic.setEnabled(false);
        await t.cam.setEnabled(false);
        const mutedOffers = mockHub.publishOffers.length;
        const enabled = t.mic.getMediaStreamTrack().enabled;
        await t.client.unpublish(t.cam);
        await t.client.unsubscribe(t.client.remoteUsers[0], 'video');
        return {
          mutedOffers,
          enabled,
          offers: mockHub.publishOffers,
          local: t.client.localTracks.map((x) => x.trackMediaType),
          videoTrack: t.client.remoteUsers[0].videoTrack,
          box: document.querySelectorAll('#box video').length,
        };
      });
      assert.equal(r.mutedOffers, 1);
      assert.equal(r.enabled, false);
      assert.equal(r.offers.length, 2);
      assert.equal(videoCodecs(r.offers[1]).direction, 'inactive');
      assert.deepEqual(r.local, ['audio']);
      assert.equal(r.videoTrack, null);
      assert.equal(r.box, 0, 'unsubscribing stops playback');

      // Publishing the camera again reuses its m-line; subscribing again works.
      const again = await page.evaluate(async () => {
        await t.cam.setEnabled(true);
        await t.client.publish(t.cam);
        const v = await t.client.subscribe(t.client.remoteUsers[0], 'video');
        return { offers: mockHub.publishOffers.length, lines: (mockHub.publishOffers.at(-1).match(/\r\nm=video/g) || []).length, kind: v.trackMediaType };
      });
      assert.deepEqual(again, { offers: 3, lines: 1, kind: 'video' });
      assert.equal(videoCodecs(await page.evaluate(() => mockHub.publishOffers.at(-1))).direction, 'sendonly');

      const stats = await page.evaluate(() => t.client.getRTCStats());
      assert.ok(stats.SendBytes > 0 && stats.RecvBytes > 0, JSON.stringify(stats));
      assert.equal(stats.UserCount, 2);
      assert.deepEqual(errors, []);
    });
  }

  test('user-left implies user-unpublished; an expired token disconnects', async () => {
    const { page, errors } = await open('/quickstart');
    const r = await page.evaluate(async () => {
      mockHub.users = [{ uid: 7, audio: true, video: true }];
      const client = CamagentRTC.createClient({});
      const events = [];
      for (const name of ['user-joined', 'user-published', 'user-unpublished', 'user-left', 'token-privilege-will-expire', 'token-privilege-did-expire']) {
        client.on(name, (user, arg) => events.push([name, user && user.uid, arg]));
      }
      client.on('connection-state-change', (cur, prev, reason) => events.push(['state', cur, reason]));
      await client.join('demo', 'porch', 'tok', 5);
      await new Promise((r) => setTimeout(r, 20));
      mockHub.addUser(8, { audio: true, video: false });
      mockHub.event({ event: 'user-unpublished', uid: 7, kind: 'audio' });
      mockHub.event({ event: 'user-left', uid: 7, reason: 'timeout' });
      mockHub.event({ event: 'token-privilege-will-expire' });
      await new Promise((r) => setTimeout(r, 50));
      const users = client.remoteUsers.map((u) => u.uid);
      mockHub.event({ event: 'token-privilege-did-expire' });
      await new Promise((r) => setTimeout(r, 20));
      mockHub.close(1000);
      await new Promise((r) => setTimeout(r, 20));
      return { events, users, after: client.remoteUsers.length, state: client.connectionState };
    });
    assert.deepEqual(r.events, [
      ['state', 'CONNECTING', undefined],
      ['state', 'CONNECTED', undefined],
      ['user-joined', 7, undefined],
      ['user-published', 7, 'audio'],
      ['user-published', 7, 'video'],
      ['user-joined', 8, undefined],
      ['user-published', 8, 'audio'],
      ['user-unpublished', 7, 'audio'],
      ['user-unpublished', 7, 'video'], // synthesised: 7 left while publishing video
      ['user-left', 7, 'timeout'],
      ['token-privilege-will-expire', undefined, undefined],
      ['token-privilege-did-expire', undefined, undefined],
      ['state', 'DISCONNECTED', 'TOKEN_EXPIRED'],
    ]);
    assert.deepEqual(r.users, [8]);
    assert.equal(r.after, 0);
    assert.equal(r.state, 'DISCONNECTED');
    assert.deepEqual(errors, []);
  });

  test('a broken connection rejoins with the same uid and token and publishes again', async () => {
    const { page, errors } = await open('/quickstart');
    const r = await page.evaluate(async () => {
      mockHub.users = [{ uid: 7, audio: true, video: true }];
      const client = CamagentRTC.createClient({});
      const events = [];
      for (const name of ['user-joined', 'user-published', 'user-unpublished', 'user-left']) {
        client.on(name, (user, arg) => events.push([name, user && user.uid, arg]));
      }
      client.on('connection-state-change', (cur, prev, reason) => events.push(['state', cur, reason]));
      const reach = (state) =>
        new Promise((resolve, reject) => {
          const t = setTimeout(() => reject(new Error(`never ${state}`)), 12000);
          client.on('connection-state-change', (cur) => cur === state && (clearTimeout(t), resolve()));
        });
      await client.join('demo', 'porch', 'tok', 5);
      const mic = await CamagentRTC.createMicrophoneAudioTrack();
      await client.publish(mic);
      const offersBefore = mockHub.publishOffers.length;
      mockHub.close(1006); // the network breaks: no close handshake
      await reach('CONNECTED');
      for (let i = 0; i < 200 && mockHub.publishOffers.length === offersBefore; i++) await new Promise((r) => setTimeout(r, 50));
      const back = { state: client.connectionState, published: client.localTracks.length, offers: mockHub.publishOffers.length };
      // The next break cannot be mended: the hub refuses the rejoin.
      mockHub.joinError = { code: 'TOKEN_EXPIRED', message: 'token expired' };
      mockHub.close(1006);
      await reach('DISCONNECTED');
      const joins = mockHub.received.filter((m) => m.type === 'join').map((m) => [m.uid, m.token]);
      return { events, joins, back, offersBefore, final: client.connectionState };
    });
    assert.deepEqual(r.joins, [[5, 'tok'], [5, 'tok'], [5, 'tok']]);
    assert.equal(r.back.state, 'CONNECTED');
    assert.equal(r.back.published, 1, 'the microphone is published again');
    assert.ok(r.back.offers > r.offersBefore, 'a new publish offer after the rejoin');
    assert.deepEqual(r.events.slice(0, 5), [
      ['state', 'CONNECTING', undefined],
      ['state', 'CONNECTED', undefined],
      ['user-joined', 7, undefined],
      ['user-published', 7, 'audio'],
      ['user-published', 7, 'video'],
    ]);
    assert.deepEqual(r.events.slice(5, 11), [
      ['state', 'RECONNECTING', 'NETWORK_ERROR'],
      ['user-unpublished', 7, 'audio'],
      ['user-unpublished', 7, 'video'],
      ['state', 'CONNECTED', 'RECONNECTED'],
      ['user-published', 7, 'audio'],
      ['user-published', 7, 'video'],
    ]);
    assert.equal(r.events.filter((e) => e[0] === 'user-joined').length, 1, 'no second user-joined for a user who stayed');
    assert.equal(r.final, 'DISCONNECTED');
    assert.deepEqual(errors, []);
  });

  test('channel-moved: the hub closes the socket and the client rejoins through the hub it was given', async () => {
    const { page, errors } = await open('/quickstart');
    const r = await page.evaluate(async () => {
      const client = CamagentRTC.createClient({});
      const states = [];
      client.on('connection-state-change', (cur, prev, reason) => states.push([cur, reason]));
      await client.join('demo', 'porch', 'tok', 5);
      const first = mockHub.socket;
      // Another hub of the cluster holds the channel now: the hub says so, then closes cleanly.
      mockHub.event({ event: 'channel-moved', reason: 'the channel runs on another hub now' });
      await new Promise((res) => setTimeout(res, 20)); // the mock delivers messages a tick later, closes at once
      mockHub.close(1000);
      for (let i = 0; i < 200 && (mockHub.socket === first || client.connectionState !== 'CONNECTED'); i++) {
        await new Promise((res) => setTimeout(res, 50));
      }
      const joins = mockHub.received.filter((m) => m.type === 'join').map((m) => [m.uid, m.token]);
      return { states, joins, same: mockHub.socket.url === first.url, final: client.connectionState };
    });
    assert.deepEqual(r.states, [
      ['CONNECTING', undefined],
      ['CONNECTED', undefined],
      ['RECONNECTING', 'CHANNEL_MOVED'],
      ['CONNECTED', 'RECONNECTED'],
    ]);
    assert.deepEqual(r.joins, [[5, 'tok'], [5, 'tok']]);
    assert.ok(r.same, 'the rejoin goes to the hub the app named (it redirects to the holder)');
    assert.equal(r.final, 'CONNECTED');
    assert.deepEqual(errors, []);
  });

  test('a rejoin redirected to a dead hub is tried again without using up the reconnect delays', async () => {
    const { page, errors } = await open('/quickstart');
    const r = await page.evaluate(async () => {
      const client = CamagentRTC.createClient({});
      const states = [];
      client.on('connection-state-change', (cur, prev, reason) => states.push([cur, reason]));
      await client.join('demo', 'porch', 'tok', 5);
      // The channel's hub dies; until its lease runs out the entry hub still sends joins there.
      mockHub.unreachable = ['127.0.0.2:8443'];
      mockHub.redirectTo = 'http://127.0.0.2:8443';
      mockHub.redirects = 8; // more than the 6 reconnect delays
      mockHub.close(1006);
      for (let i = 0; i < 300 && !(client.connectionState === 'CONNECTED' && states.length > 2); i++) {
        await new Promise((res) => setTimeout(res, 50));
      }
      const joins = mockHub.received.filter((m) => m.type === 'join').length;
      return { states, joins, refused: mockHub.refused, final: client.connectionState };
    });
    assert.equal(r.refused, 8, 'each redirect was followed to the dead hub: ' + JSON.stringify(r));
    assert.equal(r.joins, 1 + 8 + 1, 'the first join, 8 redirected ones, the one that got back');
    assert.deepEqual(r.states.slice(2), [
      ['RECONNECTING', 'NETWORK_ERROR'],
      ['CONNECTED', 'RECONNECTED'],
    ]);
    assert.equal(r.final, 'CONNECTED');
    assert.deepEqual(errors, []);
  });

  test('fetchToken posts to /api/token and reports the service\'s error', async () => {
    const { page, requests } = await open('/quickstart', {
      token: async (body) => {
        if (body.channel === 'bad') throw new Error('no');
        return `t-${body.uid}`;
      },
    });
    const token = await page.evaluate(() => CamagentRTC.fetchToken({ appId: 'demo', channel: 'c', uid: 9, role: 'subscriber' }));
    assert.equal(token, 't-9');
    assert.deepEqual(requests.find((r) => r.path === '/api/token').body, { appId: 'demo', channel: 'c', uid: 9, role: 'subscriber' });
    const err = await page.evaluate(() =>
      CamagentRTC.fetchToken({ appId: 'demo', channel: 'bad', uid: 9 }).catch((e) => ({ name: e.name, code: e.code, message: e.message }))
    );
    assert.deepEqual(err, { name: 'CamagentRTCError', code: 'TOKEN_SERVICE_ERROR', message: 'token service answered 403: no' });
  });
});

describe('pages against the mock hub', () => {
  test('viewer: list, view, talk, stop', async () => {
    const watches = [];
    const unwatches = [];
    const devices = [
      { id: 'cam1', status: 'online', state: { state: 'idle' }, permissions: ['view', 'talk'] },
      { id: 'cam2', status: 'offline', state: { state: 'idle' }, permissions: ['view'] },
    ];
    const { page, errors, requests, csp } = await open('/', {
      devices,
      // The hub has the device join (it publishes) before it answers.
      async watch(id, body, page) {
        watches.push({ id, ...body });
        await page.evaluate(() => mockHub.addUser(7));
        return watchAnswer(id);
      },
      unwatch(id, body) {
        unwatches.push({ id, ...body });
        return { left: true };
      },
    });
    await page.waitForSelector('button[data-view="cam1"]:not([disabled])');
    assert.equal(await page.$eval('button[data-view="cam2"]', (b) => b.disabled), true, 'an offline device cannot be viewed');
    assert.equal(await page.$$eval('#devices tbody tr', (rows) => rows.length), 2);
    assert.equal(await page.$eval('#session-user', (e) => e.textContent), 'demo mode (loopback is trusted)');
    assert.equal(await page.$eval('#logout', (e) => e.hidden), true, 'nothing to log out of in demo mode');
    assert.equal(await page.$eval('#admin-link', (e) => e.hidden), false, 'the demo user administers');

    await page.click('button[data-view="cam1"]');
    const frames = await page.evaluate(collectVideoFrames, { selector: '#remote-video video', frames: 15, timeoutMs: 15000 });
    assert.ok(frames.frames.length >= 15, frames.error);
    await page.waitForFunction(() => window.camagentViewer.remoteAudioTrack && document.querySelector('#remote-audio audio'));
    assert.deepEqual(watches, [{ id: 'cam1', talk: true }]);
    const v = await page.evaluate(() => ({ ...window.camagentViewer, client: undefined }));
    assert.deepEqual([v.deviceUid, v.uid, v.channel, v.appId], [7, 4243, 'view-cam1', 'demo']);
    const join = await page.evaluate(() => mockHub.received.find((m) => m.type === 'join'));
    assert.match(join.token, /^tok-view-cam1-/, 'the page joins with the token /watch returned');

    // Hold to talk: the first press publishes the microphone, later presses only unmute.
    await page.hover('#talk');
    await page.mouse.down();
    await page.waitForFunction(() => window.camagentViewer.talking && window.camagentViewer.micTrack?.enabled);
    await page.mouse.up();
    await page.waitForFunction(() => !window.camagentViewer.talking && !window.camagentViewer.micTrack.enabled);
    await page.keyboard.down('Space');
    await page.waitForFunction(() => window.camagentViewer.talking && window.camagentViewer.micTrack.enabled);
    await page.keyboard.up('Space');
    await page.waitForFunction(() => !window.camagentViewer.talking);
    const offers = await page.evaluate(() => mockHub.publishOffers);
    assert.equal(offers.length, 1, 'the microphone is published once');
    assert.match(offers[0], /m=audio[^]*a=sendonly/);

    await page.click('#stop');
    // "Stopped" is shown once the hub has answered the unwatch.
    await page.waitForFunction(() => /Stopped/.test(document.querySelector('#status').textContent));
    assert.deepEqual(unwatches, [{ id: 'cam1', uid: 4243 }], 'the unwatch names this browser, which has left');
    assert.equal(await page.$('#remote-video video'), null);
    assert.equal(await page.$eval('#error', (e) => e.hidden), true);
    assert.match(await page.textContent('#status'), /Stopped: cam1 has left/);
    // The browser left the channel before the unwatch, so the hub sees nobody else watching.
    const sent = await page.evaluate(() => mockHub.received.map((m) => m.type));
    assert.ok(sent.includes('leave'), `the page left the channel: ${sent}`);

    // The page mints no token and sends no device command itself; every change carries JSON
    // and the session's CSRF token.
    assert.deepEqual(
      changes(requests).map((r) => r.path),
      ['/api/devices/cam1/watch', '/api/devices/cam1/unwatch']
    );
    for (const r of changes(requests)) {
      assert.equal(r.headers['content-type'], 'application/json', r.path);
      assert.equal(r.headers['x-csrf-token'], 'csrf-demo', r.path);
    }
    assert.ok(!requests.some((r) => /token=|tok-/.test(r.path)), 'no token in a URL');
    assert.deepEqual(csp, [], 'CSP violations');
    assert.deepEqual(errors, []);
  });

  test('viewer: view only — Talk is disabled and says why, nothing is published', async () => {
    const watches = [];
    const { page, errors, csp } = await open('/', {
      devices: [{ id: 'cam1', status: 'online', state: { state: 'idle' }, permissions: ['view'] }],
      session: () => ({ user: 'guest', admin: false, demo: false, csrf: 'c-guest', permissions: { cam1: ['view'] } }),
      async watch(id, body, page) {
        watches.push(body);
        await page.evaluate(() => mockHub.addUser(7));
        return watchAnswer(id);
      },
      unwatch: () => ({ left: true }),
    });
    await page.click('button[data-view="cam1"]');
    await page.waitForFunction(() => window.camagentViewer.remoteVideoTrack);
    assert.deepEqual(watches, [{ talk: false }], 'a viewer without talk asks for no talk');
    const talk = await page.$eval('#talk', (b) => ({ disabled: b.disabled, title: b.title }));
    assert.deepEqual(talk, { disabled: true, title: 'you may view but not talk' });
    assert.equal(await page.$eval('#talk-why', (e) => e.hidden), false);
    assert.equal(await page.$eval('#session-user', (e) => e.textContent), 'guest');
    assert.equal(await page.$eval('#admin-link', (e) => e.hidden), true, 'no Admin link for a person who is not one');
    // Neither the Space bar nor the viewer's own API opens the microphone.
    await page.keyboard.down('Space');
    await page.waitForTimeout(300);
    await page.keyboard.up('Space');
    await page.evaluate(() => window.camagentViewer.setTalking(true));
    await page.waitForTimeout(300);
    assert.deepEqual(await page.evaluate(() => [mockHub.publishOffers.length, window.camagentViewer.micTrack]), [0, null]);
    assert.deepEqual(csp, []);
    assert.deepEqual(errors, []);
  });

  test('viewer: the token is renewed through /watch', async () => {
    let watches = 0;
    const bodies = [];
    const { page, errors } = await open('/', {
      devices: [{ id: 'cam1', status: 'online', state: { state: 'idle' }, permissions: ['view', 'talk'] }],
      async watch(id, body, page) {
        watches++;
        bodies.push(body);
        if (watches === 1) await page.evaluate(() => mockHub.addUser(7));
        return { ...watchAnswer(id), token: `tok-renewed-${watches}` };
      },
      unwatch: () => ({ left: true }),
    });
    await page.click('button[data-view="cam1"]');
    await page.waitForFunction(() => window.camagentViewer.remoteVideoTrack);
    await page.evaluate(() => mockHub.event({ event: 'token-privilege-will-expire' }));
    await page.waitForFunction(() => mockHub.received.some((m) => m.type === 'renew'));
    const renew = await page.evaluate(() => mockHub.received.find((m) => m.type === 'renew'));
    assert.equal(watches, 2);
    assert.deepEqual(bodies, [{ talk: true }, { talk: true, uid: 4243 }], 'the renewal keeps the uid');
    assert.equal(renew.token, 'tok-renewed-2');
    assert.deepEqual(errors, []);
  });

  test('viewer: a device that refuses shows its error', async () => {
    const unwatches = [];
    const { page } = await open('/', {
      devices: [{ id: 'cam1', status: 'online', state: { state: 'error', error: 'camera busy' } }],
      // As the hub answers a device's refusal: 502 with the device's reply.
      watch: (id) => ({
        status: 502,
        body: {
          error: { code: 'DEVICE_REFUSED', message: `device ${id} did not join: camera: open /dev/video0: device busy` },
          reply: { id: 'r', ok: false, error: 'camera: open /dev/video0: device busy' },
        },
      }),
      unwatch: (id) => unwatches.push(id) && { left: true },
    });
    await page.click('button[data-view="cam1"]');
    await page.waitForSelector('#error:not([hidden])');
    assert.match(await page.textContent('#error'), /device busy/);
    assert.equal(await page.evaluate(() => window.camagentViewer.client), null);
    assert.match(await page.textContent('#devices'), /error — camera busy/);
    assert.equal(await page.evaluate(() => mockHub.received.filter((m) => m.type === 'join').length), 0, 'no join without a token');
  });

  test('viewer: a refusal by the hub (403) shows its message', async () => {
    const { page } = await open('/', {
      devices: [{ id: 'cam1', status: 'online', state: { state: 'idle' }, permissions: ['view'] }],
      watch: () => jsonError(403, 'FORBIDDEN', 'guest may not view cam1'),
    });
    await page.click('button[data-view="cam1"]');
    await page.waitForSelector('#error:not([hidden])');
    assert.match(await page.textContent('#error'), /FORBIDDEN: .*guest may not view cam1/);
    assert.equal(await page.evaluate(() => window.camagentViewer.client), null);
  });

  test('login: a visitor without a session logs in and comes back; Log out ends it', async () => {
    let user = null;
    const { page, errors, requests, csp } = await open('/quickstart?channel=room1', {
      session: () => (user ? { user, admin: false, demo: false, csrf: 'c-ann', permissions: {} } : jsonError(401, 'UNAUTHORIZED', 'log in')),
      login: (b) => {
        if (b.password !== 'correct horse battery') return jsonError(401, 'UNAUTHORIZED', 'wrong user name or password');
        user = b.user;
        return { user, admin: false, csrf: 'c-ann' };
      },
      logout: () => {
        user = null;
        return null;
      },
    });
    await page.waitForURL(`${ORIGIN}/login?next=${encodeURIComponent('/quickstart?channel=room1')}`);
    await page.fill('#login-user', 'ann');
    await page.fill('#login-password', 'wrong');
    await page.click('#login');
    await page.waitForSelector('#error:not([hidden])');
    assert.equal(await page.textContent('#error'), 'wrong user name or password');
    assert.equal(await page.$eval('#no-users', (e) => e.hidden), true);

    await page.fill('#login-password', 'correct horse battery');
    await page.click('#login');
    await page.waitForURL(`${ORIGIN}/quickstart?channel=room1`);
    await page.waitForFunction(() => document.querySelector('#session-user').textContent === 'ann');
    assert.equal(await page.$eval('#logout', (e) => e.hidden), false);
    assert.equal(await page.$eval('#admin-link', (e) => e.hidden), true);
    const logins = requests.filter((r) => r.path === '/api/login');
    assert.deepEqual(logins.map((r) => r.body), [
      { user: 'ann', password: 'wrong' },
      { user: 'ann', password: 'correct horse battery' },
    ]);
    assert.equal(logins[0].headers['content-type'], 'application/json');

    await page.click('#logout');
    await page.waitForURL(`${ORIGIN}/login`);
    const out = requests.find((r) => r.path === '/api/logout');
    assert.equal(out.headers['x-csrf-token'], 'c-ann');
    assert.equal(out.method, 'POST');
    assert.deepEqual(csp, []);
    assert.deepEqual(errors, []);
  });

  test('login: a hub without users says how to create the first admin; next= stays on this hub', async () => {
    const { page, csp } = await open('/login?next=//evil.example/x', {
      session: () => jsonError(401, 'UNAUTHORIZED', 'log in'),
      login: () => jsonError(401, 'NO_USERS', 'no users yet: run camhub user add admin --admin on the hub'),
    });
    await page.fill('#login-user', 'admin');
    await page.fill('#login-password', 'whatever12');
    await page.click('#login');
    await page.waitForSelector('#no-users:not([hidden])');
    assert.match(await page.textContent('#no-users'), /camhub user add admin --admin/);
    assert.match(await page.textContent('#error'), /no users yet/);
    assert.deepEqual(csp, []);
    // Logged in, a foreign next= leads home, not away.
    const { page: p2 } = await open('/login?next=//evil.example/x');
    await p2.waitForURL(`${ORIGIN}/`);
  });

  test('admin: people with per-device permissions, enrolment shows the credential once, API keys', async () => {
    const users = [{ name: 'demo', admin: true, permissions: {} }];
    const devices = [{ id: 'cam1', uid: 11, keyId: 'aaaa1111', created: '2026-12-01T10:00:00Z' }];
    const keys = [];
    const { page, errors, requests, csp } = await open('/admin', {
      devices: [{ id: 'cam1', status: 'online' }, { id: 'cam9', status: 'offline' }],
      admin(method, path, body) {
        const m = `${method} ${path}`;
        if (m === 'GET /api/admin/users') return users;
        if (m === 'GET /api/admin/devices') return devices;
        if (m === 'GET /api/admin/keys') return keys;
        if (m === 'POST /api/admin/users') return users.push({ name: body.name, admin: body.admin, permissions: body.permissions }) && {};
        if (m.startsWith('PUT /api/admin/users/')) return Object.assign(users.find((u) => u.name === path.split('/').pop()), body) && {};
        if (m.startsWith('DELETE /api/admin/users/')) return users.splice(users.findIndex((u) => u.name === path.split('/').pop()), 1) && null;
        if (m === 'POST /api/admin/devices') {
          devices.push({ id: body.id, uid: 22, keyId: 'bbbb2222', created: '2026-12-02T10:00:00Z' });
          return { id: body.id, uid: 22, keyId: 'bbbb2222', credential: 'cam_d_bbbb2222_secret' };
        }
        if (m.startsWith('DELETE /api/admin/devices/')) return devices.splice(devices.findIndex((d) => d.id === path.split('/').pop()), 1) && null;
        if (m === 'POST /api/admin/keys') {
          keys.push({ id: 'cccc3333', ...body, maxTTL: '1h0m0s' });
          return { id: 'cccc3333', key: 'cam_k_cccc3333_secret' };
        }
        if (m.startsWith('DELETE /api/admin/keys/')) return keys.splice(0, 1) && null;
        return jsonError(404, 'NOT_FOUND', m);
      },
    });
    await page.waitForFunction(() => window.camagentAdmin.loaded);

    // Enrol: the credential and the lines for camagent.yaml, once.
    await page.fill('#device-id', 'porch');
    await page.click('#device-add');
    await page.waitForSelector('#device-enrolled:not([hidden])');
    assert.equal(await page.textContent('#device-credential'), 'cam_d_bbbb2222_secret');
    assert.match(await page.textContent('#device-config'), /^id: porch\nhub: http:\/\/localhost:18089\ncredentialFile: \/etc\/camagent\/credential/);
    await page.click('#device-enrolled-done');
    assert.equal(await page.textContent('#device-credential'), '', 'the credential leaves the page');
    await page.waitForSelector('#enrolled tr[data-device="porch"]');

    // A person: view on porch, everything but admin on all devices is not ticked.
    await page.fill('#user-name', 'guest');
    await page.fill('#user-password', 'guest-password-1');
    await page.check('#user-perms input[data-perm-device="porch"][data-perm="view"]');
    await page.check('#user-perms input[data-perm-device="cam9"][data-perm="talk"]');
    await page.click('#user-save');
    await page.waitForSelector('#users tr[data-user="guest"]');
    assert.match(await page.textContent('#users tr[data-user="guest"]'), /cam9: talk; porch: view/);

    // Change it: the password stays when left empty.
    await page.click('button[data-edit-user="guest"]');
    assert.equal(await page.$eval('#user-perms input[data-perm-device="porch"][data-perm="view"]', (b) => b.checked), true);
    await page.uncheck('#user-perms input[data-perm-device="cam9"][data-perm="talk"]');
    await page.click('#user-save');
    await page.waitForFunction(() => !/cam9/.test(document.querySelector('#users tr[data-user="guest"]').textContent));

    // An API key for porch only.
    await page.fill('#key-name', 'ha');
    await page.check('#key-devices input[data-key-device="porch"]');
    await page.check('#key-actions input[data-action="command"]');
    await page.fill('#key-ttl', '10m');
    await page.click('#key-add');
    await page.waitForSelector('#key-created:not([hidden])');
    assert.equal(await page.textContent('#key-secret'), 'cam_k_cccc3333_secret');
    await page.waitForSelector('#keys tr[data-key="cccc3333"]');

    // Deleting asks twice.
    await page.click('button[data-delete-user="guest"]');
    assert.ok(users.some((u) => u.name === 'guest'), 'one click deletes nothing');
    await page.click('button[data-delete-user="guest"]');
    await page.waitForFunction(() => !document.querySelector('#users tr[data-user="guest"]'));
    assert.equal(await page.$eval('button[data-delete-user="demo"]', (b) => b.disabled), true, 'one cannot delete oneself');

    const sent = changes(requests).map((r) => [r.method, r.path, r.body]);
    assert.deepEqual(sent, [
      ['POST', '/api/admin/devices', { id: 'porch' }],
      ['POST', '/api/admin/users', { name: 'guest', password: 'guest-password-1', admin: false, permissions: { porch: ['view'], cam9: ['talk'] } }],
      ['PUT', '/api/admin/users/guest', { admin: false, permissions: { porch: ['view'] } }],
      ['POST', '/api/admin/keys', { name: 'ha', devices: ['porch'], actions: ['command'], apps: ['demo'], channels: ['*'], maxTTL: '10m', mqtt: false }],
      ['DELETE', '/api/admin/users/guest', null],
    ]);
    for (const r of changes(requests)) {
      assert.equal(r.headers['x-csrf-token'], 'csrf-demo', r.path);
      assert.equal(r.headers['content-type'], 'application/json', r.path);
    }
    assert.deepEqual(csp, []);
    assert.deepEqual(errors, []);
  });

  test('quickstart: join, see the remote user, leave', async () => {
    const { page, errors, requests } = await open('/quickstart?channel=room1');
    await page.waitForFunction(() => document.querySelector('#appid').value === 'demo');
    await page.evaluate(() => (mockHub.users = [{ uid: 7, audio: true, video: true }]));
    await page.click('#join');
    await page.waitForFunction(() => window.quickstartEvents.some((e) => e.event === 'published'));
    const frames = await page.evaluate(collectVideoFrames, { selector: '#player-7 video', frames: 10, timeoutMs: 10000 });
    assert.ok(frames.frames.length >= 10, frames.error);
    assert.ok(await page.$('#local-player video'), 'the local video plays');
    const token = requests.find((r) => r.path === '/api/token').body;
    const uid = await page.evaluate(() => window.camagentQuickstart.options.uid);
    assert.deepEqual(token, { appId: 'demo', channel: 'room1', uid, role: 'publisher' });

    await page.evaluate(() => mockHub.event({ event: 'user-left', uid: 7, reason: 'quit' }));
    await page.waitForFunction(() => !document.querySelector('#player-7'));
    await page.click('#leave');
    await page.waitForFunction(() => window.camagentQuickstart.client.connectionState === 'DISCONNECTED');
    assert.equal(await page.$('#local-player video'), null);
    const names = (await page.evaluate(() => window.quickstartEvents)).map((e) => e.event);
    assert.deepEqual(
      names.filter((n) => n.startsWith('user-')),
      ['user-joined', 'user-published', 'user-published', 'user-unpublished', 'user-unpublished', 'user-left']
    );
    assert.deepEqual(errors, []);
  });
});
