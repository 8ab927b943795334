// Glass-to-glass to headless Chromium, driven by bench/chromium.go (docs/performance.md, 4).
//
// Opens the hub's device viewer (/), clicks View for one device and, for every frame Chromium
// presents in the viewer's <video>, reads the synthetic camera's strips from the picture
// (macroblock row 0: frame counter, 24 bits; row 1: low 32 bits of the capture time in Unix
// ms; MSB first, one 16x16 macroblock per bit, sampled at its centre, luma > 128 is 1) and the
// presentation times of requestVideoFrameCallback. Prints one JSON object on stdout; the Go
// side computes the percentiles. Progress and page errors go to stderr.
//
// Env: CAMBENCH_HUB_URL, CAMBENCH_DEVICE, CAMBENCH_FRAMES, CAMBENCH_WARMUP (frames not kept),
// CAMBENCH_TIMEOUT_MS, CAMBENCH_PLAYWRIGHT (the playwright-core package directory),
// CAMBENCH_CHROMIUM (the browser executable), CAMBENCH_TRANSPORT (the SDK's videoTransport for
// the viewer's client: empty for its default, datachannel for the fallback Firefox gets),
// CAMBENCH_BROWSER (chromium, or firefox: Debian's Firefox ESR through e2e/browser/lib.mjs's
// launchFirefox, puppeteer-core over WebDriver BiDi; its WebRTC has no H.264, so the viewer
// gets the data-channel fallback by itself), CAMBENCH_PAGE (another player's page to read instead
// of the viewer: its first <video>; bench/mse.go).
import { env, launchChromium } from './chromium_lib.mjs';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';


const hub = env('CAMBENCH_HUB_URL').replace(/\/+$/, '');
const device = env('CAMBENCH_DEVICE');
const frames = Number(env('CAMBENCH_FRAMES', '1000'));
const warmup = Number(env('CAMBENCH_WARMUP', '30'));
const timeoutMs = Number(env('CAMBENCH_TIMEOUT_MS', '90000'));
const transport = env('CAMBENCH_TRANSPORT', '');
const engine = env('CAMBENCH_BROWSER', 'chromium');
const pageURL = env('CAMBENCH_PAGE', '');

const say = (msg) => process.stderr.write(`chromium_g2g: ${msg}\n`);

// Runs in the page (page.evaluate): self-contained.
async function collect({ selector, frames, warmup, timeoutMs }) {
  const TWO32 = 4294967296;
  const started = performance.now();
  const deadline = started + timeoutMs;
  let video = document.querySelector(selector);
  while (!video && performance.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20));
    video = document.querySelector(selector);
  }
  if (!video) return { error: `no element ${selector} within ${timeoutMs} ms`, frames: [] };
  // Date.now() minus the wall clock the page derives from performance.timeOrigin: how far the
  // mapping of callback times to the wall clock is off (sampled at the start and the end).
  const skew = () => Date.now() - (performance.timeOrigin + performance.now());
  const skewStart = skew();
  const W = 32 * 16; // the time strip: 32 macroblocks
  const H = 2 * 16;
  const canvas = document.createElement('canvas');
  canvas.width = W;
  canvas.height = H;
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  const bits = (data, row, n) => {
    let v = 0;
    for (let i = 0; i < n; i++) {
      const p = ((16 * row + 8) * W + 16 * i + 8) * 4;
      const luma = 0.299 * data[p] + 0.587 * data[p + 1] + 0.114 * data[p + 2];
      v = v * 2 + (luma > 128 ? 1 : 0); // arithmetic, not bitwise: 32 bits stay unsigned
    }
    return v;
  };
  // (wall ms mod 2^32) - capture, wrapped into [-2^31, 2^31): a latency in ms.
  const since = (capture, wallMs) => {
    let d = (wallMs % TWO32) - capture;
    if (d >= TWO32 / 2) d -= TWO32;
    if (d < -TWO32 / 2) d += TWO32;
    return d;
  };
  const out = [];
  let seen = 0;
  return new Promise((resolve) => {
    let done = false;
    const finish = (error) => {
      if (done) return;
      done = true;
      resolve({
        frames: out,
        width: video.videoWidth,
        height: video.videoHeight,
        skewStart,
        skewEnd: skew(),
        seen,
        error,
      });
    };
    // The callback's own now is the start of the rendering step it runs in (the 60 Hz frame
    // timeline), not when the video frame shows: the figure uses expectedDisplayTime.
    const onFrame = (_now, md) => {
      if (done) return;
      seen++;
      if (video.videoWidth < W || video.videoHeight < H) {
        // A player may show a placeholder first (go2rtc's MSE page starts at 128x96): wait a
        // little for the stream's own size.
        if (performance.now() - started < 10000) {
          seen--;
          video.requestVideoFrameCallback(onFrame);
          return;
        }
        return finish(`video is ${video.videoWidth}x${video.videoHeight}, too small for the 32-macroblock time strip`);
      }
      if (seen > warmup) {
        ctx.drawImage(video, 0, 0, W, H, 0, 0, W, H);
        const data = ctx.getImageData(0, 0, W, H).data;
        const capture = bits(data, 1, 32);
        const origin = performance.timeOrigin;
        const f = {
          counter: bits(data, 0, 24),
          capture,
          presented: md.presentedFrames,
          display: since(capture, origin + md.expectedDisplayTime),
        };
        if (typeof md.receiveTime === 'number') f.receive = since(capture, origin + md.receiveTime);
        out.push(f);
        if (out.length >= frames) return finish();
      }
      video.requestVideoFrameCallback(onFrame);
    };
    video.requestVideoFrameCallback(onFrame);
    setTimeout(() => finish(`only ${out.length} frames within ${timeoutMs} ms`), Math.max(0, deadline - performance.now()));
  });
}

// Firefox comes from the browser tests' launcher (its prefs: fake devices, no OpenH264, audio);
// its pages speak puppeteer, whose calls used here are Playwright's but for these two.
let firefox = null;
if (engine === 'firefox') {
  const lib = join(dirname(dirname(env('CAMBENCH_PLAYWRIGHT'))), 'lib.mjs');
  firefox = await (await import(pathToFileURL(lib).href)).launchFirefox();
}
const newContext = (b) => (firefox ? b.createBrowserContext() : b.newContext());
const browser = firefox ? firefox.browser : await launchChromium();
// viewDevice opens the hub's device viewer, clicks View for the device, collects the frames
// and leaves as a user would (the device is told to leave too).
async function viewDevice(page, pageErrors) {
  await page.goto(hub + '/');
  const button = `button[data-view=${JSON.stringify(device)}]:not([disabled])`;
  await page.waitForSelector(button, { timeout: 30000 });
  const clickedAt = Date.now();
  await page.click(button);
  say(`viewing ${device}; collecting ${frames} frames after ${warmup} warm-up frames`);
  const result = await page.evaluate(collect, { selector: '#remote-video video', frames, warmup, timeoutMs });
  result.firstFrameAfterClickMs = await page.evaluate(() => window.camagentViewer.firstFrameMs);
  result.transport = await page.evaluate(() => {
    const t = window.camagentViewer.remoteVideoTrack;
    return t ? JSON.stringify(Object.assign(t.getTransport(), { decoder: t.getDecoderStats() })) : '';
  });
  result.clickedAt = clickedAt;
  result.browser = await browser.version();
  result.pageErrors = pageErrors;
  // Leave like a user would (the device is told to leave too).
  await page.click('#stop').catch(() => {});
  for (let i = 0; i < 100 && (await page.evaluate(() => window.camagentViewer.client !== null)); i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  return result;
}

let result;
try {
  const context = await newContext(browser);
  if (transport) {
    // Every client the viewer creates gets this videoTransport (the SDK sets window.CamagentRTC
    // once, when it loads).
    await context.addInitScript((videoTransport) => {
      let sdk;
      Object.defineProperty(window, 'CamagentRTC', {
        configurable: true,
        get: () => sdk,
        set: (v) => {
          const create = v.createClient;
          v.createClient = (config) => create(Object.assign({}, config, { videoTransport }));
          sdk = v;
        },
      });
    }, transport);
  }
  const page = await context.newPage();
  const pageErrors = [];
  page.on('pageerror', (e) => {
    pageErrors.push(String(e));
    say(`page error: ${e}`);
  });
  page.on('console', (m) => {
    if (m.type() === 'error') say(`console.error: ${m.text()}`);
  });
  if (pageURL) {
    // Another player (bench/mse.go: go2rtc's MSE page), showing the device's stream by itself.
    await page.goto(pageURL);
    say(`playing ${pageURL}; collecting ${frames} frames after ${warmup} warm-up frames`);
    result = await page.evaluate(collect, { selector: 'video', frames, warmup, timeoutMs });
    result.browser = await browser.version();
    result.pageErrors = pageErrors;
  } else {
    result = await viewDevice(page, pageErrors);
  }
} catch (e) {
  result = { error: String(e && e.stack ? e.stack : e), frames: [] };
} finally {
  await browser.close().catch(() => {});
}
process.stdout.write(JSON.stringify(result) + '\n');
