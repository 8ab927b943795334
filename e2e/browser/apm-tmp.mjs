import { launchChromium, analyseAudio } from '/work/main/e2e/browser/lib.mjs';
const c = await launchChromium();
const page = await c.browser.newPage();
await page.goto('http://127.0.0.1:28180/quickstart');
for (const cons of [true, { noiseSuppression: false }, { autoGainControl: false }, { echoCancellation: false, noiseSuppression: false, autoGainControl: false }]) {
  const track = await page.evaluateHandle(async (cons) => (await navigator.mediaDevices.getUserMedia({ audio: cons })).getAudioTracks()[0], cons);
  const out = [];
  for (let i = 0; i < 6; i++) out.push((await page.evaluate(analyseAudio, track, { durationMs: 1000 })).rms.toFixed(3));
  console.log(JSON.stringify(cons), out.join(' '));
  await page.evaluate((t) => t.stop(), track);
}
await c.close();
