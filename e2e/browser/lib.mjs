// Helpers shared by the browser tests: the environment, launching Debian's Chromium with fake
// media devices, a tone WAV for the fake microphone, and functions that run inside pages
// (passed to page.evaluate, so each is self-contained).
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import puppeteer from 'puppeteer-core';

export const SDK_PATH = fileURLToPath(new URL('../../web/sdk/camagent-rtc.js', import.meta.url));

// The tone the fake microphone plays; the Go harness looks for it in the device's speaker output.
export const MIC_TONE_HZ = 1000;
// Firefox's fake microphone tone in these tests (its default is 1000 Hz too): the device's
// speaker then tells the two browsers apart (e2e/browser_test.go looks for both).
export const FIREFOX_TONE_HZ = 700;

/** The hub under test. Unset is a failure, not a skip: a silent skip would pass CI untested. */
export function hubURL() {
  const url = process.env.CAMAGENT_HUB_URL;
  if (!url) {
    throw new Error('CAMAGENT_HUB_URL is not set: start camhub and point this at it, e.g. http://127.0.0.1:18080');
  }
  return url.replace(/\/+$/, '');
}

export function envNumber(name, fallback) {
  const v = process.env[name];
  if (v === undefined || v === '') return fallback;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new Error(`${name}=${v} is not a number`);
  return n;
}

/**
 * Writes a 16-bit mono PCM WAV of a sine tone. A whole number of cycles fits the file, so the loop
 * Chromium plays has no click at the seam.
 */
export async function writeToneWav(path, { hz = MIC_TONE_HZ, seconds = 4, sampleRate = 48000, amplitude = 0.5 } = {}) {
  const samples = Math.round((Math.round(seconds * hz) * sampleRate) / hz);
  const data = Buffer.alloc(samples * 2);
  for (let i = 0; i < samples; i++) {
    const v = Math.round(amplitude * 32767 * Math.sin((2 * Math.PI * hz * i) / sampleRate));
    data.writeInt16LE(v, i * 2);
  }
  const header = Buffer.alloc(44);
  header.write('RIFF', 0, 'ascii');
  header.writeUInt32LE(36 + data.length, 4);
  header.write('WAVE', 8, 'ascii');
  header.write('fmt ', 12, 'ascii');
  header.writeUInt32LE(16, 16); // fmt chunk size
  header.writeUInt16LE(1, 20); // PCM
  header.writeUInt16LE(1, 22); // mono
  header.writeUInt32LE(sampleRate, 24);
  header.writeUInt32LE(sampleRate * 2, 28); // byte rate
  header.writeUInt16LE(2, 32); // block align
  header.writeUInt16LE(16, 34); // bits per sample
  header.write('data', 36, 'ascii');
  header.writeUInt32LE(data.length, 40);
  await writeFile(path, Buffer.concat([header, data]));
  return path;
}

/**
 * Launches Chromium with a fake camera and a fake microphone playing a `toneHz` tone
 * (MIC_TONE_HZ by default: two browsers with different tones tell their voices apart on the
 * device's speaker), with `args` added to its flags.
 * Returns {browser, close()}; close() also removes the temporary directory.
 */
export async function launchChromium({ toneHz = MIC_TONE_HZ, args = [] } = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'camagent-e2e-'));
  const wav = await writeToneWav(join(dir, 'tone.wav'), { hz: toneHz });
  const browser = await chromium.launch({
    executablePath: process.env.CAMAGENT_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox',
      '--use-fake-device-for-media-stream',
      '--use-fake-ui-for-media-stream',
      '--autoplay-policy=no-user-gesture-required',
      `--use-file-for-fake-audio-capture=${wav}`,
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      ...args,
    ],
  });
  return {
    browser,
    async close() {
      await browser.close().catch(() => {});
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Launches Debian's Firefox ESR headless through puppeteer-core over WebDriver BiDi, with
 * Firefox's fake camera and microphone (the microphone plays a `toneHz` tone, FIREFOX_TONE_HZ by
 * default), autoplay allowed, and real host addresses in its ICE candidates (the tests' hub
 * offers loopback candidates only, which Firefox pairs with no mDNS-obfuscated candidate).
 * Without a sound card Firefox's content process dies at the first AudioContext (with ALSA's
 * null device too). With CAMAGENT_FIREFOX_PULSE (a PulseAudio server's address, as the Go harness
 * starts one: e2e/pulse_test.go) Firefox plays to that server's null sink, which paces its audio
 * graph, fake microphone included, in real time. Without it audio goes to cubeb's mock context
 * (media.cubeb.force_mock_context, which Firefox's own tests use): WebRTC audio and WebAudio
 * analysis work, but the mock's clock falls behind the wall clock when the CPU is busy (0.68–0.92 s
 * a second measured), so the microphone sends too little and talk reaches the device with gaps
 * (docs/sdk.md). Returns
 * {browser, close()} as launchChromium does; the browser is a puppeteer Browser (page.evaluate
 * and evaluateHandle work as in Playwright). CAMAGENT_FIREFOX_LOG=1 shows Firefox's output.
 */
export async function launchFirefox({ toneHz = FIREFOX_TONE_HZ, prefs = {} } = {}) {
  const pulse = process.env.CAMAGENT_FIREFOX_PULSE || "";
  if (!pulse) log('firefox: no CAMAGENT_FIREFOX_PULSE: its audio runs on the mock clock, slower than real time under load');
  const browser = await puppeteer.launch({
    browser: 'firefox',
    executablePath: process.env.CAMAGENT_FIREFOX || '/usr/bin/firefox-esr',
    headless: true,
    dumpio: !!process.env.CAMAGENT_FIREFOX_LOG,
    env: pulse ? { ...process.env, PULSE_SERVER: pulse } : process.env,
    extraPrefsFirefox: {
      'media.navigator.streams.fake': true,
      'media.navigator.permission.disabled': true,
      'media.navigator.audio.fake_frequency': toneHz,
      'media.autoplay.default': 0,
      'media.autoplay.block-webaudio': false,
      'media.cubeb.force_mock_context': !pulse,
      // The tests' hub offers loopback candidates only: with its host addresses hidden behind
      // mDNS names Firefox's ICE never connects to it (checked: ICE failed), with them plain it does.
      'media.peerconnection.ice.loopback': true,
      'media.peerconnection.ice.obfuscate_host_addresses': false,
      // No downloads (the OpenH264 plugin among them) and no phoning home, as on an offline LAN.
      'media.gmp-manager.url': '',
      'media.gmp-gmpopenh264.enabled': false,
      'app.update.enabled': false,
      'datareporting.policy.dataSubmissionEnabled': false,
      ...prefs,
    },
  });
  return {
    browser,
    async close() {
      await browser.close().catch(() => {});
    },
  };
}

/**
 * Opens a page in a fresh Firefox context (puppeteer), echoing the page's errors to stderr with a
 * label as openPage does. Returns {page, context, errors}.
 */
export async function openFirefoxPage(browser, label) {
  const context = await browser.createBrowserContext();
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => {
    errors.push(e);
    process.stderr.write(`[${label}] uncaught: ${e.stack || e}\n`);
  });
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warn') process.stderr.write(`[${label}] console.${m.type()}: ${m.text()}\n`);
  });
  return { page, context, errors };
}

/**
 * Opens a page in a fresh context (with `contextOptions`, e.g. {ignoreHTTPSErrors: true} for a
 * hub's self-signed certificate), echoing the page's errors to stderr with a label.
 * Returns {page, context, errors}: errors collects uncaught exceptions (a test asserts there are none).
 */
export async function openPage(browser, label, contextOptions = {}) {
  const context = await browser.newContext(contextOptions);
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => {
    errors.push(e);
    process.stderr.write(`[${label}] uncaught: ${e.stack || e}\n`);
  });
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') process.stderr.write(`[${label}] console.${m.type()}: ${m.text()}\n`);
  });
  return { page, context, errors };
}

export function log(...args) {
  console.log(...args);
}

/**
 * Polls fn(arg) in the page (Playwright's or puppeteer's: only page.evaluate is used) until it
 * returns something truthy, and returns that; throws after timeoutMs with `what`.
 */
export async function waitInPage(page, fn, arg, { timeoutMs = 10000, what = 'condition' } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await page.evaluate(fn, arg);
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

// ---------------------------------------------------------------------------------------------
// In-page functions (page.evaluate(fn, arg)): no closures over this module.

/**
 * Waits for a <video> matching `selector`, then collects `frames` presented frames with
 * requestVideoFrameCallback (or stops at `timeoutMs`). With `readCounter`, decodes each frame's
 * counter strip: the device's synthetic camera writes the frame counter's low 24 bits into the
 * first 24 16x16 macroblocks of the top row, MSB first, black = 0, white = 1.
 * Returns {frames: [{t, counter?}], width, height, startedAt}; t is performance.now() time.
 */
export async function collectVideoFrames({ selector, frames, timeoutMs, readCounter }) {
  const startedAt = performance.now();
  const deadline = startedAt + timeoutMs;
  let video = document.querySelector(selector);
  while (!video && performance.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    video = document.querySelector(selector);
  }
  if (!video) return { frames: [], width: 0, height: 0, startedAt, error: `no element ${selector}` };

  const canvas = document.createElement('canvas');
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  const samples = [];
  return new Promise((resolve) => {
    let done = false;
    const finish = (error) => {
      if (done) return;
      done = true;
      resolve({ frames: samples, width: video.videoWidth, height: video.videoHeight, startedAt, error });
    };
    const onFrame = (now) => {
      if (done) return;
      const sample = { t: now };
      if (readCounter) {
        const w = video.videoWidth;
        const h = video.videoHeight;
        if (w < 24 * 16 || h < 16) return finish(`video is ${w}x${h}, too small for a 24-macroblock counter strip`);
        if (canvas.width !== w || canvas.height !== h) {
          canvas.width = w;
          canvas.height = h;
        }
        ctx.drawImage(video, 0, 0, w, h);
        const row = ctx.getImageData(0, 8, 24 * 16, 1).data;
        let counter = 0;
        for (let i = 0; i < 24; i++) {
          const p = (16 * i + 8) * 4;
          const luma = 0.299 * row[p] + 0.587 * row[p + 1] + 0.114 * row[p + 2];
          counter = counter * 2 + (luma > 128 ? 1 : 0);
        }
        sample.counter = counter;
      }
      samples.push(sample);
      if (samples.length >= frames) return finish();
      video.requestVideoFrameCallback(onFrame);
    };
    video.requestVideoFrameCallback(onFrame);
    setTimeout(() => finish(`only ${samples.length} frames within ${timeoutMs} ms`), Math.max(0, deadline - performance.now()));
  });
}

/**
 * Analyses an audio MediaStreamTrack with WebAudio for `durationMs`: the averaged spectrum's peak
 * (above 50 Hz, refined by parabolic interpolation) and the loudest RMS seen.
 * Returns {sampleRate, binHz, peakHz, peakDb, rms}.
 */
export async function analyseAudio(track, { durationMs = 2000, fftSize = 8192 } = {}) {
  const ctx = new AudioContext();
  await ctx.resume();
  const source = ctx.createMediaStreamSource(new MediaStream([track]));
  const analyser = ctx.createAnalyser();
  analyser.fftSize = fftSize;
  analyser.smoothingTimeConstant = 0;
  source.connect(analyser);
  const spectrum = new Float32Array(analyser.frequencyBinCount);
  const power = new Float64Array(analyser.frequencyBinCount);
  const wave = new Float32Array(analyser.fftSize);
  let reads = 0;
  let rms = 0;
  const until = performance.now() + durationMs;
  while (performance.now() < until) {
    await new Promise((r) => setTimeout(r, 100));
    analyser.getFloatFrequencyData(spectrum);
    for (let i = 0; i < spectrum.length; i++) {
      if (Number.isFinite(spectrum[i])) power[i] += Math.pow(10, spectrum[i] / 10);
    }
    analyser.getFloatTimeDomainData(wave);
    let sum = 0;
    for (const v of wave) sum += v * v;
    rms = Math.max(rms, Math.sqrt(sum / wave.length));
    reads++;
  }
  const binHz = ctx.sampleRate / fftSize;
  const from = Math.ceil(50 / binHz);
  let peak = from;
  for (let i = from; i < power.length - 1; i++) if (power[i] > power[peak]) peak = i;
  const db = (i) => 10 * Math.log10(power[i] / reads || 1e-30);
  // Parabolic interpolation of the peak in dB: sub-bin accuracy from the neighbours.
  const a = db(peak - 1);
  const b = db(peak);
  const c = db(peak + 1);
  const denom = a - 2 * b + c;
  const offset = denom !== 0 ? (0.5 * (a - c)) / denom : 0;
  await ctx.close();
  return { sampleRate: ctx.sampleRate, binHz, peakHz: (peak + offset) * binHz, peakDb: b, rms, reads };
}

/**
 * Frame counters must advance: strictly increasing modulo 2^24. Returns {ok, skips, maxGap,
 * backwards: [indices]} where skips counts frames that jumped by more than one.
 */
export function checkCounters(counters) {
  const MOD = 1 << 24;
  let skips = 0;
  let maxGap = 0;
  const backwards = [];
  for (let i = 1; i < counters.length; i++) {
    const gap = (counters[i] - counters[i - 1] + MOD) % MOD;
    if (gap === 0 || gap >= MOD / 2) backwards.push(i);
    else {
      if (gap > 1) skips++;
      maxGap = Math.max(maxGap, gap);
    }
  }
  return { ok: backwards.length === 0, skips, maxGap, backwards };
}
