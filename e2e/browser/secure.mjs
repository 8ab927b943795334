// The trust model in Chromium, against a hub in secure mode over HTTPS (started by
// e2e/secure_browser_test.go, which also starts the device agents once this script has enrolled
// them): an admin logs in and, through the admin page, enrols two devices, creates a person
// "guest" who may only view the first, and an API key scoped to the first. The guest logs in in
// another browser, watches the device, finds Talk disabled, and every request a hostile page
// script could forge (commands, talk through /watch, tokens, admin calls) is refused or gets a
// token without publishAudio; the admin watches, talks and commands; the key commands its device
// and nothing else. The Go test then checks the device's speaker: the admin's tone, never the
// guest's, and the privileges inside the tokens this script collected.
//
// Not a *.test.mjs: it needs the Go test's hub and agents, so `node --test .` leaves it out.
//
// Env: CAMAGENT_HUB_URL (https://…), CAMAGENT_ADMIN_USER, CAMAGENT_ADMIN_PASSWORD,
// CAMAGENT_DEVICE_ID, CAMAGENT_OTHER_DEVICE_ID, CAMAGENT_SECURE_DIR (this script writes
// <device>.credential files there for the agents, and results.json), CAMAGENT_GUEST_TONE_HZ
// (the guest's microphone), CAMAGENT_TALK_MS (3000), CAMAGENT_MIN_FRAMES (30),
// CAMAGENT_DEVICE_WAIT_MS (60000). Node trusts the hub's certificate through NODE_EXTRA_CA_CERTS.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { checkCounters, collectVideoFrames, envNumber, hubURL, launchChromium, log, MIC_TONE_HZ, openPage } from './lib.mjs';

const HUB = hubURL();
const ADMIN = process.env.CAMAGENT_ADMIN_USER;
const ADMIN_PASSWORD = process.env.CAMAGENT_ADMIN_PASSWORD;
const DEVICE = process.env.CAMAGENT_DEVICE_ID;
const OTHER = process.env.CAMAGENT_OTHER_DEVICE_ID;
const DIR = process.env.CAMAGENT_SECURE_DIR;
const GUEST_TONE_HZ = envNumber('CAMAGENT_GUEST_TONE_HZ', 700);
const TALK_MS = envNumber('CAMAGENT_TALK_MS', 3000);
const MIN_FRAMES = envNumber('CAMAGENT_MIN_FRAMES', 30);
const DEVICE_WAIT_MS = envNumber('CAMAGENT_DEVICE_WAIT_MS', 60000);
const GUEST = 'guest';
const GUEST_PASSWORD = 'guest-password-' + Math.random().toString(36).slice(2);

for (const [name, v] of Object.entries({ ADMIN, ADMIN_PASSWORD, DEVICE, OTHER, DIR })) {
  if (!v) throw new Error(`${name} is not set: run this through go test -run TestSecureBrowser ./e2e/`);
}

const HTTPS = { ignoreHTTPSErrors: true }; // the hub's self-signed certificate
const results = {}; // for the Go test: the tokens the browsers were given
let adminBrowser;
let guestBrowser;
let admin; // {page, context, errors}
let guest;
let apiKey;

before(async () => {
  // Two browsers, two fake microphones: the speaker tells the admin's voice from the guest's.
  adminBrowser = await launchChromium({ toneHz: MIC_TONE_HZ, args: ['--ignore-certificate-errors'] });
  guestBrowser = await launchChromium({ toneHz: GUEST_TONE_HZ, args: ['--ignore-certificate-errors'] });
});
after(async () => {
  await writeFile(join(DIR, 'results.json'), JSON.stringify(results, null, 2));
  await adminBrowser?.close();
  await guestBrowser?.close();
});

// Runs fetch inside the page, as a script on it could: same origin, the session cookie, and the
// CSRF token the page holds. Returns {status, body}.
function pageFetch(page, method, path, body, { csrf = true, contentType = 'application/json' } = {}) {
  return page.evaluate(
    async ({ method, path, body, csrf, contentType }) => {
      const headers = {};
      if (contentType) headers['Content-Type'] = contentType;
      const token = window.camagentSession && window.camagentSession.session && window.camagentSession.session.csrf;
      if (csrf && token) headers['X-CSRF-Token'] = token;
      const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
      const text = await res.text();
      let data = text;
      try {
        data = JSON.parse(text);
      } catch (e) {
        /* not JSON */
      }
      return { status: res.status, body: data };
    },
    { method, path, body, csrf, contentType }
  );
}

// fetch from Node: no browser, no cookie.
async function nodeFetch(method, path, body, headers = {}) {
  const res = await fetch(HUB + path, {
    method,
    headers: { ...(body === undefined ? {} : { 'Content-Type': 'application/json' }), ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let data = text;
  try {
    data = JSON.parse(text);
  } catch (e) {
    /* not JSON */
  }
  return { status: res.status, body: data, headers: res.headers };
}

async function login(page, user, password) {
  // 'commit': the page sends itself on to /login before its load event may fire.
  await page.goto(HUB + '/', { waitUntil: 'commit' });
  await page.waitForURL(/\/login$/);
  await page.fill('#login-user', user);
  await page.fill('#login-password', password);
  await page.click('#login');
  await page.waitForURL(HUB + '/');
  await page.waitForFunction((u) => document.querySelector('#session-user').textContent === u, user);
}

const visible = (page, sel) => page.$eval(sel, (e) => !e.hidden);
const errorText = (page) => page.evaluate(() => (document.querySelector('#error').hidden ? '' : document.querySelector('#error').textContent));

async function deviceState(page, id) {
  const r = await pageFetch(page, 'GET', '/api/devices');
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body.find((d) => d.id === id);
}

// Clicks View on the device and waits for decoded pictures whose frame counter advances; returns
// the hub's answer to the page's /watch.
async function watchDevice(page, label) {
  await page.waitForSelector(`button[data-view=${JSON.stringify(DEVICE)}]:not([disabled])`, { timeout: DEVICE_WAIT_MS });
  const answer = page.waitForResponse((r) => r.url().endsWith(`/api/devices/${DEVICE}/watch`) && r.request().method() === 'POST');
  await page.click(`button[data-view=${JSON.stringify(DEVICE)}]`);
  const watch = await (await answer).json();
  const video = await page.evaluate(collectVideoFrames, { selector: '#remote-video video', frames: MIN_FRAMES, timeoutMs: 45000, readCounter: true });
  assert.equal(await errorText(page), '', `${label}'s viewer shows an error`);
  assert.ok(video.frames.length >= MIN_FRAMES, `${label}: ${video.error}`);
  const check = checkCounters(video.frames.map((f) => f.counter));
  assert.ok(check.ok, `${label}: the frame counter did not advance`);
  log(`${label}: ${video.frames.length} frames of ${video.width}x${video.height} over HTTPS, ${check.skips} skips`);
  return watch;
}

describe('secure mode over HTTPS', () => {
  test('the admin logs in, enrols the devices and creates a view-only guest and a scoped key on the admin page', async () => {
    admin = await openPage(adminBrowser.browser, 'admin', HTTPS);
    const { page, context } = admin;

    // Not logged in: the pages send the visitor to /login. Every page carries the CSP and HSTS.
    const res = await page.goto(HUB + '/', { waitUntil: 'commit' });
    const h = res.headers();
    assert.match(h['content-security-policy'] || '', /frame-ancestors 'none'/);
    assert.match(h['content-security-policy'] || '', /script-src 'self'/);
    assert.ok(h['strict-transport-security'], 'HSTS over HTTPS');
    await login(page, ADMIN, ADMIN_PASSWORD);
    assert.equal(await visible(page, '#admin-link'), true, 'the admin sees the Admin link');
    assert.equal(await visible(page, '#logout'), true);
    const cookie = (await context.cookies()).find((c) => c.name === 'camhub_session');
    assert.ok(cookie, 'a session cookie');
    assert.deepEqual([cookie.httpOnly, cookie.secure, cookie.sameSite], [true, true, 'Strict']);

    await page.click('#admin-link');
    await page.waitForFunction(() => window.camagentAdmin && window.camagentAdmin.loaded);
    // Enrol both devices: each credential is shown once, with the camagent.yaml lines.
    for (const id of [DEVICE, OTHER]) {
      await page.fill('#device-id', id);
      await page.click('#device-add');
      await page.waitForFunction((id) => document.querySelector('#device-enrolled-id').textContent === id, id);
      const credential = await page.textContent('#device-credential');
      assert.match(credential, /^cam_d_[0-9a-f]{8}_[A-Za-z0-9_-]{20,}$/);
      assert.match(await page.textContent('#device-config'), new RegExp(`^id: ${id}\\nhub: ${HUB}\\ncredentialFile: `));
      await writeFile(join(DIR, `${id}.credential`), credential + '\n', { mode: 0o600 });
      await page.click('#device-enrolled-done');
      await page.waitForSelector(`#enrolled tr[data-device=${JSON.stringify(id)}]`);
    }

    // A person who may view DEVICE, nothing else.
    await page.fill('#user-name', GUEST);
    await page.fill('#user-password', GUEST_PASSWORD);
    await page.check(`#user-perms input[data-perm-device=${JSON.stringify(DEVICE)}][data-perm="view"]`);
    await page.click('#user-save');
    await page.waitForSelector(`#users tr[data-user="${GUEST}"]`);
    assert.match(await page.textContent(`#users tr[data-user="${GUEST}"]`), new RegExp(`${DEVICE}: view`));

    // An API key that may command DEVICE only.
    await page.fill('#key-name', 'porch-automation');
    await page.check(`#key-devices input[data-key-device=${JSON.stringify(DEVICE)}]`);
    await page.check('#key-actions input[data-action="command"]');
    await page.fill('#key-ttl', '10m');
    await page.click('#key-add');
    await page.waitForSelector('#key-created:not([hidden])');
    apiKey = await page.textContent('#key-secret');
    assert.match(apiKey, /^cam_k_[0-9a-f]{8}_/);
    assert.equal(await errorText(page), '');

    // The Go test starts the agents with the credentials; both come online.
    const deadline = Date.now() + DEVICE_WAIT_MS;
    for (;;) {
      const list = (await pageFetch(page, 'GET', '/api/devices')).body;
      const online = [DEVICE, OTHER].every((id) => list.some((d) => d.id === id && d.status === 'online'));
      if (online) break;
      assert.ok(Date.now() < deadline, `the devices did not come online: ${JSON.stringify(list)}`);
      await new Promise((r) => setTimeout(r, 250));
    }
    assert.deepEqual(admin.errors, []);
  });

  test('the guest logs in in another browser and watches; Talk is disabled', async () => {
    guest = await openPage(guestBrowser.browser, 'guest', HTTPS);
    const { page } = guest;
    await login(page, GUEST, GUEST_PASSWORD);
    assert.equal(await visible(page, '#admin-link'), false, 'no Admin link for the guest');
    const watch = await watchDevice(page, 'guest');
    results.guestWatchToken = watch.token;
    assert.equal(watch.talk, false, 'the page asked for no talk');
    assert.equal(await page.$(`tr[data-device=${JSON.stringify(OTHER)}]`), null, 'the guest does not see the other device');
    const talk = await page.$eval('#talk', (b) => ({ disabled: b.disabled, title: b.title }));
    assert.deepEqual(talk, { disabled: true, title: 'you may view but not talk' });
    assert.equal(await visible(page, '#talk-why'), true);
    // The page's own talk function refuses as well.
    await page.evaluate(() => window.camagentViewer.setTalking(true));
    assert.equal(await page.evaluate(() => window.camagentViewer.micTrack), null);
    assert.deepEqual(guest.errors, []);
  });

  test('nothing the guest\'s page forges commands the device or talks into it', async () => {
    const { page } = guest;
    const path = `/api/devices/${DEVICE}`;
    const refusals = {
      leave: await pageFetch(page, 'POST', `${path}/cmd`, { action: 'leave' }),
      privacy: await pageFetch(page, 'POST', `${path}/cmd`, { action: 'privacy', on: true }),
      noCSRF: await pageFetch(page, 'POST', `${path}/cmd`, { action: 'leave' }, { csrf: false }),
      textPlain: await pageFetch(page, 'POST', `${path}/cmd`, { action: 'leave' }, { contentType: 'text/plain' }),
      otherDevice: await pageFetch(page, 'POST', `/api/devices/${OTHER}/watch`, { talk: false }),
      token: await pageFetch(page, 'POST', '/api/token', { appId: 'demo', channel: `view-${DEVICE}`, uid: 4242424, role: 'publisher' }),
      users: await pageFetch(page, 'GET', '/api/admin/users'),
      addAdmin: await pageFetch(page, 'POST', '/api/admin/users', { name: 'mallory', password: 'mallory-password', admin: true }),
      grant: await pageFetch(page, 'PUT', `/api/admin/users/${GUEST}`, { permissions: { '*': ['admin'] } }),
      keys: await pageFetch(page, 'POST', '/api/admin/keys', { name: 'k', devices: ['*'], actions: ['command'] }),
    };
    for (const [name, r] of Object.entries(refusals)) {
      log(`guest ${name}: ${r.status} ${JSON.stringify(r.body)}`);
      assert.ok(r.status === 403 || r.status === 415 || r.status === 400, `guest ${name}: ${r.status} ${JSON.stringify(r.body)}`);
      assert.ok(r.status !== 200 && !(r.body && r.body.token), `guest ${name} got through`);
    }
    assert.equal(refusals.leave.status, 403);
    assert.equal(refusals.noCSRF.status, 403);

    // Asking /watch for talk directly: a token, but without publishAudio (the Go test reads its
    // privileges), and the hub refuses a publish made with it.
    const forged = await pageFetch(page, 'POST', `${path}/watch`, { talk: true });
    assert.equal(forged.status, 200, JSON.stringify(forged.body));
    assert.equal(forged.body.talk, false);
    results.guestForgedTalkToken = forged.body.token;
    const publish = await page.evaluate(async (w) => {
      const client = CamagentRTC.createClient({ mode: 'rtc', codec: 'h264' });
      await client.join(w.appId, w.channel, w.token, w.uid);
      const mic = await CamagentRTC.createMicrophoneAudioTrack();
      try {
        await client.publish(mic);
        // Published after all? Let it run, so the speaker check would hear it.
        await new Promise((r) => setTimeout(r, 2000));
        return { published: true };
      } catch (e) {
        return { published: false, code: e.code, message: e.message };
      } finally {
        mic.close();
        await client.leave();
      }
    }, forged.body);
    log(`guest publish with the forged /watch token: ${JSON.stringify(publish)}`);
    assert.equal(publish.published, false, 'the hub let the guest publish audio');

    // The device is still in its channel, and the guest still watches.
    const st = await deviceState(page, DEVICE);
    assert.equal(st.state.state, 'joined', `the device's state: ${JSON.stringify(st.state)}`);
    assert.notEqual(st.state.privacy, true);
    const more = await page.evaluate(collectVideoFrames, { selector: '#remote-video video', frames: 10, timeoutMs: 20000 });
    assert.ok(more.frames.length >= 10, `the guest's picture stopped: ${more.error}`);
    assert.deepEqual(guest.errors, []);
  });

  test('the admin watches, talks and commands', async () => {
    const { page } = admin;
    await page.goto(HUB + '/');
    const watch = await watchDevice(page, 'admin');
    results.adminWatchToken = watch.token;
    assert.equal(watch.talk, true);
    await page.waitForSelector('#talk:not([disabled])');
    await page.locator('#talk').scrollIntoViewIfNeeded(); // below the fold with two devices listed
    const box = await page.locator('#talk').boundingBox();
    await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
    await page.mouse.down();
    const t0 = Date.now();
    await page
      .waitForFunction(() => window.camagentViewer.talking && window.camagentViewer.micTrack?.enabled, null, { timeout: 15000 })
      .catch(async (e) => {
        const why = await page.evaluate(() => {
          const v = window.camagentViewer;
          return {
            talking: v.talking,
            mic: !!v.micTrack,
            canTalk: v.canTalk,
            state: v.client && v.client.connectionState,
            error: document.querySelector('#error').textContent,
            talkClass: document.querySelector('#talk').className,
            secure: window.isSecureContext,
            media: !!navigator.mediaDevices,
          };
        });
        throw new Error(`Talk did not start: ${JSON.stringify(why)}: ${e.message}`);
      });
    const before = await page.evaluate(() => window.camagentViewer.client.getRTCStats().then((s) => s.SendBytes));
    await page.waitForTimeout(Math.max(0, TALK_MS - (Date.now() - t0)));
    const sent = (await page.evaluate(() => window.camagentViewer.client.getRTCStats().then((s) => s.SendBytes))) - before;
    await page.mouse.up();
    log(`admin talked ${Date.now() - t0} ms, ${sent} bytes of ${MIC_TONE_HZ} Hz`);
    assert.ok(sent > 5000, `only ${sent} bytes sent while talking`);

    const status = await pageFetch(page, 'POST', `/api/devices/${DEVICE}/cmd`, { action: 'status' });
    assert.equal(status.status, 200, JSON.stringify(status.body));
    assert.equal(status.body.ok, true);
    assert.equal(status.body.state.state, 'joined');
    assert.deepEqual(admin.errors, []);
  });

  test('an API key scoped to one device commands it and nothing else', async () => {
    const bearer = { Authorization: `Bearer ${apiKey}` };
    const ok = await nodeFetch('POST', `/api/devices/${DEVICE}/cmd`, { action: 'status' }, bearer);
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.equal(ok.body.ok, true);
    const refused = {
      status: await nodeFetch('POST', `/api/devices/${OTHER}/cmd`, { action: 'status' }, bearer),
      privacy: await nodeFetch('POST', `/api/devices/${OTHER}/cmd`, { action: 'privacy', on: true }, bearer),
      watch: await nodeFetch('POST', `/api/devices/${OTHER}/watch`, { talk: false }, bearer),
      admin: await nodeFetch('POST', '/api/admin/devices', { id: 'intruder' }, bearer),
    };
    for (const [name, r] of Object.entries(refused)) {
      log(`key ${name}: ${r.status} ${JSON.stringify(r.body)}`);
      assert.equal(r.status, 403, `key ${name}: ${JSON.stringify(r.body)}`);
    }
    const listed = await nodeFetch('GET', '/api/devices', undefined, bearer);
    assert.deepEqual(listed.body.map((d) => d.id), [DEVICE], 'the key lists its own device only');
    // Without credentials at all: nothing.
    const anon = await nodeFetch('POST', `/api/devices/${DEVICE}/cmd`, { action: 'status' });
    assert.equal(anon.status, 401);
    // The other device did not change (it would be in privacy mode).
    const other = await deviceState(admin.page, OTHER);
    assert.notEqual(other.state.privacy, true, JSON.stringify(other.state));
    assert.equal(other.state.state, 'idle');
    const enrolled = await pageFetch(admin.page, 'GET', '/api/admin/devices');
    assert.ok(!enrolled.body.some((d) => d.id === 'intruder'));
  });

  test('stopping: the guest leaves the device to the admin, the admin sends it away; logging out ends the session', async () => {
    await guest.page.click('#stop');
    await guest.page.waitForFunction(() => /Stopped/.test(document.querySelector('#status').textContent), null, { timeout: 20000 });
    assert.match(await guest.page.textContent('#status'), /other viewers are still watching/);
    assert.equal((await deviceState(admin.page, DEVICE)).state.state, 'joined');
    await admin.page.click('#stop');
    await admin.page.waitForFunction(() => /Stopped/.test(document.querySelector('#status').textContent), null, { timeout: 20000 });
    assert.match(await admin.page.textContent('#status'), /has left the channel/);
    const deadline = Date.now() + 15000;
    let st;
    while (Date.now() < deadline) {
      st = (await deviceState(admin.page, DEVICE)).state;
      if (st.state === 'idle') break;
      await new Promise((r) => setTimeout(r, 250));
    }
    assert.equal(st.state, 'idle');

    // Log out: the old cookie no longer works, even if a copy was kept.
    const cookie = (await guest.context.cookies()).find((c) => c.name === 'camhub_session');
    await guest.page.click('#logout');
    await guest.page.waitForURL(/\/login$/);
    const after = await nodeFetch('GET', '/api/session', undefined, { Cookie: `camhub_session=${cookie.value}` });
    assert.equal(after.status, 401, JSON.stringify(after.body));
    assert.deepEqual(guest.errors, []);
    assert.deepEqual(admin.errors, []);
  });
});
