// What bench/chromium_g2g.mjs and bench/chromium_join.mjs share: their environment and how
// they launch Chromium (headless, Debian's binary, no GPU, autoplay allowed).
import { createRequire } from 'node:module';

/** The variable's value; fallback when unset or empty; unset without a fallback is an error. */
export function env(name, fallback) {
  const v = process.env[name];
  if (v === undefined || v === '') {
    if (fallback === undefined) throw new Error(`${name} is not set`);
    return fallback;
  }
  return v;
}

/** playwright-core's chromium, from CAMBENCH_PLAYWRIGHT (the e2e tests' node_modules). */
export function playwrightChromium() {
  return createRequire(import.meta.url)(env('CAMBENCH_PLAYWRIGHT')).chromium;
}

/** Launches CAMBENCH_CHROMIUM (default /usr/bin/chromium) headless. */
export function launchChromium() {
  return playwrightChromium().launch({
    executablePath: env('CAMBENCH_CHROMIUM', '/usr/bin/chromium'),
    headless: true,
    args: [
      '--no-sandbox',
      '--autoplay-policy=no-user-gesture-required',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  });
}
