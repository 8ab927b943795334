// Token checks seen from the browser SDK: a join the token does not allow rejects with the hub's
// code (CamagentRTCError), while a user already in the channel is not disturbed.
//
// Env: CAMAGENT_HUB_URL (required); CAMAGENT_APP_ID (default: GET /api/config);
// CAMAGENT_TOKEN_CHANNEL and CAMAGENT_TOKEN_UID (default: random) the channel and uid the bad
// joins use; CAMAGENT_EXPIRED_TOKEN, an expired token for that channel and uid (default: minted
// with POST /api/token expireSeconds=1, then waited out); CAMAGENT_WRONG_CHANNEL_TOKEN, a valid
// token for that uid in another channel (default: minted).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { hubURL, launchChromium, log, openPage } from './lib.mjs';

let chromium;
before(async () => {
  chromium = await launchChromium();
});
after(async () => {
  await chromium?.close();
});

const randomUID = () => 100000 + Math.floor(Math.random() * 2000000000);

async function mintToken(hub, body) {
  const res = await fetch(`${hub}/api/token`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  assert.equal(res.status, 200, `POST /api/token ${JSON.stringify(body)}: ${res.status} ${text}`);
  return JSON.parse(text).token;
}

// Runs client.join in the page and reports how it ended.
function tryJoin(page, args) {
  return page.evaluate(async ({ appId, channel, token, uid }) => {
    const client = CamagentRTC.createClient({ mode: 'rtc', codec: 'h264' });
    const states = [];
    client.on('connection-state-change', (cur) => states.push(cur));
    try {
      const got = await client.join(appId, channel, token, uid);
      await client.leave();
      return { ok: true, uid: got, states };
    } catch (e) {
      return {
        ok: false,
        name: e.name,
        code: e.code,
        message: e.message,
        typed: e instanceof CamagentRTC.CamagentRTCError,
        state: client.connectionState,
        states,
      };
    }
  }, args);
}

test('token: joins the token does not allow are refused with the hub\'s code', async () => {
  const hub = hubURL();
  const appId = process.env.CAMAGENT_APP_ID || (await (await fetch(`${hub}/api/config`)).json()).appId;
  const channel = process.env.CAMAGENT_TOKEN_CHANNEL || `tok-${process.pid}-${Date.now()}`;
  const uid = process.env.CAMAGENT_TOKEN_UID ? Number(process.env.CAMAGENT_TOKEN_UID) : randomUID();

  // Someone is already in the channel; they must stay connected through all of this.
  const holder = await openPage(chromium.browser, 'holder');
  await holder.page.goto(hub + '/quickstart');
  const holderUID = randomUID();
  const holderToken = await mintToken(hub, { appId, channel, uid: holderUID, role: 'publisher' });
  await holder.page.evaluate(
    async ({ appId, channel, token, uid }) => {
      const client = CamagentRTC.createClient({ mode: 'rtc', codec: 'h264' });
      window.holder = { client, states: [], events: [] };
      client.on('connection-state-change', (cur, prev, reason) => window.holder.states.push({ cur, prev, reason }));
      for (const name of ['user-joined', 'user-left']) {
        client.on(name, (user, reason) => window.holder.events.push({ event: name, uid: user.uid, reason }));
      }
      await client.join(appId, channel, token, uid);
      window.holder.states.length = 0; // from here on, any change is a failure
    },
    { appId, channel, token: holderToken, uid: holderUID }
  );

  let expired = process.env.CAMAGENT_EXPIRED_TOKEN;
  let expiredWait = Promise.resolve();
  if (!expired) {
    expired = await mintToken(hub, { appId, channel, uid, role: 'publisher', expireSeconds: 1 });
    expiredWait = new Promise((r) => setTimeout(r, 2500));
  }
  const wrongChannel =
    process.env.CAMAGENT_WRONG_CHANNEL_TOKEN ||
    (await mintToken(hub, { appId, channel: `${channel}-other`, uid, role: 'publisher' }));
  const good = await mintToken(hub, { appId, channel, uid, role: 'publisher' });
  // A well-formed token whose signature no longer matches.
  const tampered = good.slice(0, -2) + (good.at(-2) === 'A' ? 'B' : 'A') + good.at(-1);
  await expiredWait;

  const cases = [
    { name: 'no token', token: null, code: 'TOKEN_MISSING' },
    { name: 'garbage token', token: 'this-is-not-a-token', code: 'TOKEN_INVALID' },
    { name: 'tampered token', token: tampered, code: 'TOKEN_INVALID' },
    { name: 'expired token', token: expired, code: 'TOKEN_EXPIRED' },
    { name: 'token for another channel', token: wrongChannel, code: 'TOKEN_WRONG_CHANNEL' },
    { name: 'token for another uid', token: good, code: 'TOKEN_WRONG_UID', uid: uid === 0xffffffff ? uid - 1 : uid + 1 },
  ];
  const intruder = await openPage(chromium.browser, 'intruder');
  await intruder.page.goto(hub + '/quickstart');
  for (const c of cases) {
    const r = await tryJoin(intruder.page, { appId, channel, token: c.token, uid: c.uid ?? uid });
    log(`${c.name}: ${r.ok ? 'joined!' : `${r.code}: ${r.message}`}`);
    assert.equal(r.ok, false, `${c.name}: the join succeeded`);
    assert.equal(r.code, c.code, `${c.name}: ${r.code}: ${r.message}`);
    assert.equal(r.name, 'CamagentRTCError');
    assert.ok(r.typed, `${c.name}: not a CamagentRTCError`);
    assert.ok(r.message, `${c.name}: no message from the hub`);
    assert.equal(r.state, 'DISCONNECTED');
    assert.deepEqual(r.states, ['CONNECTING', 'DISCONNECTED']);
  }

  // The good token works, and the holder sees that user come and go, and nobody else.
  const ok = await tryJoin(intruder.page, { appId, channel, token: good, uid });
  assert.equal(ok.ok, true, `a good token was refused: ${ok.code}: ${ok.message}`);
  assert.equal(ok.uid, uid);
  await holder.page.waitForFunction((uid) => window.holder.events.some((e) => e.event === 'user-left' && e.uid === uid), uid, {
    timeout: 10000,
  });
  const holderState = await holder.page.evaluate(() => ({
    state: window.holder.client.connectionState,
    changes: window.holder.states,
    events: window.holder.events,
  }));
  log(`holder: ${holderState.state}, events ${JSON.stringify(holderState.events)}`);
  assert.equal(holderState.state, 'CONNECTED');
  assert.deepEqual(holderState.changes, [], 'the holder\'s connection changed state');
  assert.deepEqual(
    holderState.events.map((e) => `${e.event}:${e.uid}`),
    [`user-joined:${uid}`, `user-left:${uid}`],
    'the holder saw only the successful join'
  );

  // The holder's session still answers: renewing its token works.
  const renewed = await mintToken(hub, { appId, channel, uid: holderUID, role: 'publisher' });
  await holder.page.evaluate((token) => window.holder.client.renewToken(token), renewed);
  await holder.page.evaluate(() => window.holder.client.leave());
  assert.deepEqual([...holder.errors, ...intruder.errors], [], 'uncaught errors in the pages');
});
