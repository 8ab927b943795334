// The quickstart page at /quickstart: two browsers join one channel, each publishes its fake
// camera and microphone and decodes the other's; then one leaves and the other is told. And a
// real broken socket: one browser reaches the hub through a TCP proxy in this process, which
// drops every connection mid-call; the SDK rejoins by itself and the call resumes both ways,
// while the other side never sees it leave.
//
// Env: CAMAGENT_HUB_URL (required), CAMAGENT_MIN_FRAMES_CALL (30).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { analyseAudio, collectVideoFrames, envNumber, hubURL, launchChromium, log, openPage } from './lib.mjs';

const MIN_FRAMES = envNumber('CAMAGENT_MIN_FRAMES_CALL', 30);

let chromium;
before(async () => {
  chromium = await launchChromium();
});
after(async () => {
  await chromium?.close();
});

async function joinFromPage(page, hub, channel) {
  await page.goto(`${hub}/quickstart?channel=${encodeURIComponent(channel)}`);
  // The App ID arrives from /api/config.
  await page.waitForFunction(() => document.querySelector('#appid').value !== '', null, { timeout: 10000 });
  const t0 = Date.now();
  await page.click('#join');
  await page.waitForFunction(
    () => window.quickstartEvents.some((e) => e.event === 'published') || !document.querySelector('#error').hidden,
    null,
    { timeout: 20000 }
  );
  const error = await page.evaluate(() => (document.querySelector('#error').hidden ? '' : document.querySelector('#error').textContent));
  assert.equal(error, '', 'join failed');
  const uid = await page.evaluate(() => window.camagentQuickstart.options.uid);
  log(`joined ${channel} as ${uid} and published in ${Date.now() - t0} ms`);
  return uid;
}

// The other user's video decodes (frames counted) and audio is heard (energy over the threshold).
async function checkReceives(page, label, otherUid) {
  const video = await page.evaluate(collectVideoFrames, {
    selector: `#player-${otherUid} video`,
    frames: MIN_FRAMES,
    timeoutMs: 20000,
  });
  const fps = video.frames.length > 1 ? ((video.frames.length - 1) * 1000) / (video.frames.at(-1).t - video.frames[0].t) : 0;
  log(`${label} decodes ${otherUid}'s video: ${video.frames.length} frames, ${video.width}x${video.height}, ${fps.toFixed(1)} fps`);
  assert.ok(video.frames.length >= MIN_FRAMES, `${label}: ${video.error || 'too few frames'}`);

  await page.waitForFunction(
    (uid) => window.camagentQuickstart.client.remoteUsers.find((u) => u.uid === uid)?.audioTrack,
    otherUid,
    { timeout: 10000 }
  );
  const track = await page.evaluateHandle(
    (uid) => window.camagentQuickstart.client.remoteUsers.find((u) => u.uid === uid).audioTrack.getMediaStreamTrack(),
    otherUid
  );
  const audio = await page.evaluate(analyseAudio, track);
  log(`${label} hears ${otherUid}: rms ${audio.rms.toFixed(3)}, peak ${audio.peakHz.toFixed(1)} Hz at ${audio.peakDb.toFixed(1)} dB`);
  assert.ok(audio.rms > 0.01, `${label}: ${otherUid}'s audio is too quiet (rms ${audio.rms})`);
}

test('quickstart: a two-party call, then one side leaves', async () => {
  const hub = hubURL();
  const channel = `qs-${process.pid}-${Date.now()}`;
  const a = await openPage(chromium.browser, 'A');
  const b = await openPage(chromium.browser, 'B');

  const uidA = await joinFromPage(a.page, hub, channel);
  const uidB = await joinFromPage(b.page, hub, channel);
  assert.notEqual(uidA, uidB);

  await checkReceives(a.page, 'A', uidB);
  await checkReceives(b.page, 'B', uidA);

  // A leaves: B is told that A's tracks are gone and that A left, and drops A's player.
  await a.page.click('#leave');
  await a.page.waitForFunction(() => window.camagentQuickstart.client.connectionState === 'DISCONNECTED', null, {
    timeout: 10000,
  });
  await b.page.waitForFunction(
    (uid) => window.quickstartEvents.some((e) => e.event === 'user-left' && e.uid === uid),
    uidA,
    { timeout: 15000 }
  );
  const eventsB = await b.page.evaluate(() => window.quickstartEvents);
  const aboutA = eventsB.filter((e) => e.uid === uidA && (e.event === 'user-unpublished' || e.event === 'user-left'));
  log(`B saw: ${aboutA.map((e) => e.event + (e.mediaType ? ':' + e.mediaType : '') + (e.reason ? ':' + e.reason : '')).join(', ')}`);
  const unpublished = aboutA.filter((e) => e.event === 'user-unpublished').map((e) => e.mediaType).sort();
  assert.deepEqual(unpublished, ['audio', 'video'], 'B saw user-unpublished for both of A\'s tracks');
  const left = aboutA.find((e) => e.event === 'user-left');
  assert.equal(left.reason, 'quit');
  assert.ok(
    aboutA.indexOf(left) === aboutA.length - 1,
    'user-left comes after user-unpublished'
  );
  assert.equal(await b.page.$(`#player-${uidA}`), null, 'A\'s player is still on B\'s page');
  assert.equal(await b.page.evaluate(() => window.camagentQuickstart.client.connectionState), 'CONNECTED');

  await b.page.click('#leave');
  assert.deepEqual([...a.errors, ...b.errors], [], 'uncaught errors in the pages');
});

// A TCP proxy to the hub on a loopback port; cut() resets every connection it carries, as a
// network that drops (the browser sees its WebSocket close abnormally, code 1006).
async function startProxy(hub) {
  const target = new URL(hub);
  const sockets = new Set();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port || 80), target.hostname);
    for (const [a, b] of [
      [client, upstream],
      [upstream, client],
    ]) {
      sockets.add(a);
      a.pipe(b);
      a.on('error', () => b.destroy());
      a.on('close', () => {
        sockets.delete(a);
        b.destroy();
      });
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    cut() {
      const n = sockets.size;
      for (const s of sockets) s.resetAndDestroy();
      return n;
    },
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

test('quickstart: a broken socket mid-call rejoins and the call resumes', async () => {
  const hub = hubURL();
  const proxy = await startProxy(hub);
  try {
    const channel = `qs-cut-${process.pid}-${Date.now()}`;
    const a = await openPage(chromium.browser, 'A via proxy');
    const b = await openPage(chromium.browser, 'B');
    const uidA = await joinFromPage(a.page, proxy.url, channel);
    const uidB = await joinFromPage(b.page, hub, channel);
    await checkReceives(a.page, 'A', uidB);
    await checkReceives(b.page, 'B', uidA);

    const t0 = Date.now();
    const cut = proxy.cut();
    log(`proxy: reset ${cut} connections`);
    assert.ok(cut > 0, 'A had no connection through the proxy');
    await a.page.waitForFunction(
      () =>
        window.quickstartEvents.some(
          (e) => e.event === 'connection-state-change' && e.cur === 'CONNECTED' && e.reason === 'RECONNECTED'
        ),
      null,
      { timeout: 15000 }
    );
    log(`A rejoined ${Date.now() - t0} ms after the cut`);
    const states = (await a.page.evaluate(() => window.quickstartEvents))
      .filter((e) => e.event === 'connection-state-change')
      .map((e) => `${e.prev}>${e.cur}:${e.reason || ''}`);
    log(`A's states: ${states.join(', ')}`);
    assert.ok(states.includes('CONNECTED>RECONNECTING:NETWORK_ERROR'), `A went RECONNECTING: ${states}`);
    assert.equal(a.errors.length + b.errors.length, 0, 'uncaught errors in the pages');

    // Both directions again: A resubscribed in its user-published handler, B to A's republished
    // tracks; and the same uid, so B never saw A leave.
    await checkReceives(a.page, 'A after the cut', uidB);
    await checkReceives(b.page, 'B after the cut', uidA);
    assert.equal(await a.page.evaluate(() => window.camagentQuickstart.client.uid), uidA);
    const eventsB = await b.page.evaluate(() => window.quickstartEvents);
    assert.ok(
      !eventsB.some((e) => e.event === 'user-left' && e.uid === uidA),
      'B saw A leave, though A came back within the grace period'
    );
    await a.page.click('#leave');
    await b.page.click('#leave');
  } finally {
    proxy.cut(); // keep-alive connections would hold the server open
    await proxy.close();
  }
});
