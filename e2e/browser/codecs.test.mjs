// A browser whose WebRTC cannot receive the device's H.264, simulated in Chromium: the hub's
// offers reach RTCPeerConnection without H.264 (so the browser answers without it, as Firefox
// without its OpenH264 plugin does), while RTCRtpReceiver.getCapabilities still lists it (the SDK
// only learns from the hub's refusal). Against a running hub and device agent, on the viewer:
// - with no WebCodecs either: the video subscription alone fails with CODEC_NOT_SUPPORTED and
//   the page says so, the device's tone plays, and nothing loops (no ICE restart, no rejoin,
//   no track announced again);
// - with WebCodecs: the SDK falls back to H.264 over a data channel by itself and the device's
//   frame counter advances.
//
// Env: as viewer.test.mjs (CAMAGENT_HUB_URL required).
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
  openPage,
  waitInPage,
} from './lib.mjs';

const TONE_HZ = envNumber('CAMAGENT_DEVICE_TONE_HZ', 440);
const DEVICE_WAIT_MS = envNumber('CAMAGENT_DEVICE_WAIT_MS', 30000);
const MIN_FRAMES = envNumber('CAMAGENT_MIN_FRAMES', 60);

let chromium;
before(async () => {
  chromium = await launchChromium();
});
after(async () => {
  await chromium?.close();
});

// Runs in the page before its scripts: H.264 leaves every remote offer; without webCodecs,
// VideoDecoder is gone too.
function withoutH264({ webCodecs }) {
  if (!webCodecs) {
    delete window.VideoDecoder;
    delete window.EncodedVideoChunk;
  }
  const strip = (sdp) => {
    const sections = sdp.split(/(?=\r\nm=)/);
    return sections
      .map((s) => {
        if (!s.startsWith('\r\nm=video')) return s;
        const h264 = new Set([...s.matchAll(/a=rtpmap:(\d+) H264\//gi)].map((m) => m[1]));
        // rtx that repairs an H.264 payload type goes with it.
        for (const m of s.matchAll(/a=fmtp:(\d+) apt=(\d+)/g)) if (h264.has(m[2])) h264.add(m[1]);
        return s
          .split('\r\n')
          .filter((line) => !(/^a=(rtpmap|fmtp|rtcp-fb):(\d+)/.test(line) && h264.has(line.match(/:(\d+)/)[1])))
          .map((line) => (line.startsWith('m=video') ? line.split(' ').filter((f, i) => i < 3 || !h264.has(f)).join(' ') : line))
          .join('\r\n');
      })
      .join('');
  };
  const original = RTCPeerConnection.prototype.setRemoteDescription;
  RTCPeerConnection.prototype.setRemoteDescription = function (desc) {
    if (desc && desc.type === 'offer') desc = { type: 'offer', sdp: strip(desc.sdp) };
    return original.call(this, desc);
  };
}

async function viewDevice(page) {
  await page.goto(hubURL() + '/');
  let deviceId = process.env.CAMAGENT_DEVICE_ID;
  const sel = deviceId ? `button[data-view=${JSON.stringify(deviceId)}]` : 'button[data-view]';
  await page.waitForSelector(`${sel}:not([disabled])`, { timeout: DEVICE_WAIT_MS });
  deviceId ??= await page.getAttribute(`${sel}:not([disabled])`, 'data-view');
  await page.click(`button[data-view=${JSON.stringify(deviceId)}]`);
}

test('no H.264 anywhere: audio plays, the video fails alone and clearly, nothing loops', async () => {
  const { page, context, errors } = await openPage(chromium.browser, 'no h264');
  await context.addInitScript(withoutH264, { webCodecs: false });
  await viewDevice(page);
  const error = await waitInPage(page, () => !document.querySelector('#error').hidden && document.querySelector('#error').textContent, null, {
    timeoutMs: 20000,
    what: 'an error on the page',
  });
  log(`page says: ${error}`);
  assert.match(error, /CODEC_NOT_SUPPORTED/);

  await waitInPage(page, () => !!window.camagentViewer.remoteAudioTrack, null, { what: 'the audio track' });
  const track = await page.evaluateHandle(() => window.camagentViewer.remoteAudioTrack.getMediaStreamTrack());
  const audio = await page.evaluate(analyseAudio, track);
  log(`audio: peak ${audio.peakHz.toFixed(1)} Hz (want ${TONE_HZ}), rms ${audio.rms.toFixed(3)}`);
  assert.ok(audio.rms > 0.001, 'the audio is silent');
  assert.ok(Math.abs(audio.peakHz - TONE_HZ) <= Math.max(audio.binHz, 20), `peak at ${audio.peakHz} Hz`);

  // Settled: over the analysis (2 s) and this second nothing restarted or came again.
  await page.waitForTimeout(1000);
  const after = await page.evaluate(async () => {
    const v = window.camagentViewer;
    const stats = await v.client.getRTCStats();
    return {
      state: v.client.connectionState,
      restarts: stats.ICERestarts,
      events: v.events.map((e) => `${e.event}${e.kind ? ':' + e.kind : ''}${e.reason ? ':' + e.reason : ''}`),
      video: !!v.client.remoteUsers.find((u) => u.videoTrack),
    };
  });
  log(`after: ${JSON.stringify(after)}`);
  assert.equal(after.state, 'CONNECTED');
  assert.equal(after.restarts, 0, 'ICE restarted');
  assert.equal(after.video, false, 'a video track was delivered');
  assert.equal(after.events.filter((e) => e.startsWith('user-published:video')).length, 1, 'the video was announced again');
  assert.ok(!after.events.some((e) => /RECONNECTING|user-unpublished|user-left/.test(e)), `a loop: ${after.events}`);
  await page.click('#stop');
  assert.deepEqual(errors, [], 'uncaught errors in the page');
  await context.close();
});

test('no H.264 in WebRTC but WebCodecs: the SDK falls back to the data channel by itself', async () => {
  const { page, context, errors } = await openPage(chromium.browser, 'webcodecs');
  await context.addInitScript(withoutH264, { webCodecs: true });
  await viewDevice(page);
  const video = await page.evaluate(collectVideoFrames, {
    selector: '#remote-video video',
    frames: MIN_FRAMES,
    timeoutMs: 30000,
    readCounter: true,
  });
  assert.ok(video.frames.length >= MIN_FRAMES, `video: ${video.error}`);
  const check = checkCounters(video.frames.map((f) => f.counter));
  const path = await page.evaluate(() => ({
    transport: window.camagentViewer.remoteVideoTrack.getTransport(),
    decoder: window.camagentViewer.remoteVideoTrack.getDecoderStats(),
  }));
  log(`${video.frames.length} frames ${video.width}x${video.height}, ${check.skips} skips; ${JSON.stringify(path)}`);
  const counters = video.frames.map((f) => f.counter);
  assert.ok(check.ok, `the frame counter did not advance at frames ${check.backwards.join(', ')}: ${counters.join(' ')}`);
  assert.equal(path.transport.transport, 'datachannel');
  assert.match(path.transport.reason, /refused H\.264/);
  await page.click('#stop');
  assert.deepEqual(errors, [], 'uncaught errors in the page');
  await context.close();
});
