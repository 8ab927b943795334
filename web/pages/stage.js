// The viewer's stage (#stage on /): the device's picture and sound, and what people expect
// around them. viewer.js hands it the tracks it subscribed to; this file plays them and owns:
//   - fullscreen (the #fullscreen button, a double click on the picture, the F key), through the
//     Fullscreen API on the whole stage, so the talk and sound controls stay on screen; an
//     iPhone, which has no Fullscreen API for elements, gets its video player's own fullscreen;
//   - the device's volume (#volume, 0–100) and mute (#mute, the M key), applied to the <audio>
//     element the SDK plays the device's sound in, and remembered in localStorage;
//   - who is talking: a level meter for the device's sound (#speaking-device) and, while Talk is
//     held, for the microphone (#speaking-you), from WebAudio analysers on the tracks themselves,
//     so muting the device's sound does not hide that it speaks;
//   - #watchers: how many other people watch the device now (it is someone's home);
//   - #reconnecting over the picture while the SDK reconnects (viewer.js says when);
//   - #picture-error over the picture when the browser cannot show it (what to do);
//   - the screen stays on while watching (a screen wake lock, where the browser has one);
//   - #play-blocked when the browser refuses to start playback without a gesture (autoplay
//     policy): a click on it starts the picture, the sound and the meters.
//
// window.camagentStage: {state, unlock(), showVideo(track), showAudio(track), setMic(track),
// setTalking(on), setDeviceName(name), setWatchers(n), setReconnecting(on), showPictureError(text | null), keepAwake(on),
// explain(kind, error, deviceId) → {code, message, advice}, toggleFullscreen(), setMuted(on),
// setVolume(0…100), reset()}. state: {muted, volume, fullscreen, reconnecting, playBlocked, awake,
// levels: {device, you} (dBFS, -Infinity when silent or absent), speaking: {device, you}}.
'use strict';

(function () {
  const LEVEL_MS = 100;
  const SPEAKING_DBFS = -50; // louder than this counts as speaking (a quiet voice is about -35)
  const HOLD_MS = 400; // the indicator stays lit across the gaps between words
  const FLOOR_DBFS = -70; // the meter's empty end
  const $ = (sel) => document.querySelector(sel);

  const state = {
    muted: false,
    volume: 100,
    fullscreen: false,
    reconnecting: false,
    playBlocked: false,
    awake: false, // a screen wake lock is held
    levels: { device: -Infinity, you: -Infinity },
    speaking: { device: false, you: false },
  };

  let videoTrack = null;
  let audioTrack = null;
  let talking = false;
  let audioCtx = null;
  let levelTimer = null;
  let wakeWanted = false;
  let wakeLock = null;
  const meters = {}; // 'device' | 'you' → {source, analyser, samples, loudAt}

  function loadSettings() {
    try {
      const v = Number(localStorage.getItem('camagent.volume'));
      if (localStorage.getItem('camagent.volume') !== null && v >= 0 && v <= 100) state.volume = v;
      state.muted = localStorage.getItem('camagent.muted') === '1';
    } catch (e) {
      /* storage refused (private mode): the defaults apply */
    }
  }

  function saveSettings() {
    try {
      localStorage.setItem('camagent.volume', String(state.volume));
      localStorage.setItem('camagent.muted', state.muted ? '1' : '0');
    } catch (e) {
      /* not remembered, still applied */
    }
  }

  const videoElement = () => (videoTrack ? videoTrack.getMediaElement() : null);
  const audioElement = () => (audioTrack ? audioTrack.getMediaElement() : null);

  // Browsers let an AudioContext start only in a user gesture: viewer.js calls this from the
  // View click, before anything is awaited.
  function unlock() {
    const AC = window.AudioContext || window.webkitAudioContext;
    if (!AC) return;
    if (!audioCtx) audioCtx = new AC();
    if (audioCtx.state === 'suspended') audioCtx.resume().catch(() => {});
  }

  // ----- playback

  // The SDK has started the element; a refused play() means the autoplay policy wants a gesture.
  function checkPlaying(el) {
    if (!el) return;
    const p = el.play();
    if (p && p.catch) {
      p.then(refreshBlocked, (e) => {
        if (e && e.name === 'NotAllowedError') setPlayBlocked(true);
      });
    }
  }

  function refreshBlocked() {
    const paused = [videoElement(), audioElement()].some((el) => el && el.paused);
    if (!paused) setPlayBlocked(false);
  }

  function setPlayBlocked(on) {
    state.playBlocked = on;
    $('#play-blocked').hidden = !on;
  }

  async function resumePlayback() {
    unlock();
    for (const el of [videoElement(), audioElement()]) {
      if (el) await el.play().catch(() => {});
    }
    refreshBlocked();
  }

  function showPictureError(text) {
    const box = $('#picture-error');
    box.textContent = text || '';
    box.hidden = !text;
    $('#remote-video').classList.toggle('failed', !!text);
  }

  function showVideo(track) {
    showPictureError(null);
    videoTrack = track;
    track.play('remote-video');
    const video = videoElement();
    // The picture keeps the camera's shape: the stage takes its aspect ratio.
    const shape = () => {
      if (video.videoWidth && video.videoHeight) $('#remote-video').style.aspectRatio = `${video.videoWidth} / ${video.videoHeight}`;
    };
    video.addEventListener('loadedmetadata', shape);
    video.addEventListener('resize', shape);
    $('#remote-video').classList.add('live');
    checkPlaying(video);
  }

  function showAudio(track) {
    audioTrack = track;
    track.play('remote-audio');
    track.setVolume(state.volume);
    const el = audioElement();
    el.muted = state.muted;
    checkPlaying(el);
    meter('device', track);
    $('#speaking-device').hidden = false;
  }

  function setMic(track) {
    meter('you', track);
  }

  function setTalking(on) {
    talking = !!on;
    $('#speaking-you').hidden = !talking;
    if (!talking) renderMeter('you', false, -Infinity);
  }

  function setDeviceName(name) {
    $('#speaking-device .who').textContent = name;
  }

  function setWatchers(n) {
    const box = $('#watchers');
    box.hidden = !(n > 0);
    box.textContent = n === 1 ? '1 other person watching' : `${n} others watching`;
  }

  function setReconnecting(on) {
    state.reconnecting = !!on;
    $('#reconnecting').hidden = !on;
    $('#stage').classList.toggle('reconnecting', !!on);
  }

  // An error to show when the browser cannot play a track of the device's: {code, message,
  // advice} (what to do about it).
  function explain(kind, e, device) {
    const err = { code: e && e.code, message: (e && e.message) || String(e) };
    const h264 = typeof RTCRtpReceiver !== 'undefined' && RTCRtpReceiver.getCapabilities
      ? (RTCRtpReceiver.getCapabilities('video')?.codecs || []).some((c) => /h264/i.test(c.mimeType))
      : false;
    if (kind === 'video') {
      err.message = `This browser cannot show ${device}'s picture: ${err.message}`;
      err.advice =
        (h264 ? '' : 'Its WebRTC has no H.264, the codec the device sends, and it cannot decode H.264 otherwise either. ') +
        'Open this page in Chrome, Edge, Safari or Chromium, or in Firefox enable "OpenH264 Video Codec" ' +
        '(about:addons → Plugins; Firefox downloads it once, from the internet). The sound keeps playing.';
    } else {
      err.message = `This browser cannot play ${device}'s sound: ${err.message}`;
      err.advice = 'Try another browser; the picture keeps playing.';
    }
    return err;
  }

  // ----- who is talking

  function meter(who, track) {
    dropMeter(who);
    if (!track || !audioCtx) return;
    const source = audioCtx.createMediaStreamSource(new MediaStream([track.getMediaStreamTrack()]));
    const analyser = audioCtx.createAnalyser();
    analyser.fftSize = 1024;
    source.connect(analyser);
    meters[who] = { source, analyser, samples: new Float32Array(analyser.fftSize), loudAt: -Infinity };
    if (!levelTimer) levelTimer = setInterval(measure, LEVEL_MS);
  }

  function dropMeter(who) {
    const m = meters[who];
    if (!m) return;
    m.source.disconnect();
    delete meters[who];
    state.levels[who] = -Infinity;
    state.speaking[who] = false;
  }

  function measure() {
    const now = performance.now();
    for (const who of ['device', 'you']) {
      const m = meters[who];
      if (!m) continue;
      m.analyser.getFloatTimeDomainData(m.samples);
      let sum = 0;
      for (const v of m.samples) sum += v * v;
      const rms = Math.sqrt(sum / m.samples.length);
      const db = rms > 0 ? 20 * Math.log10(rms) : -Infinity;
      if (db > SPEAKING_DBFS) m.loudAt = now;
      // A disabled microphone sends silence: "you" speak only while Talk is held.
      const speaking = now - m.loudAt < HOLD_MS && (who === 'device' || talking);
      state.levels[who] = db;
      state.speaking[who] = speaking;
      renderMeter(who, speaking, db);
    }
  }

  function renderMeter(who, speaking, db) {
    const box = $(`#speaking-${who}`);
    box.classList.toggle('speaking', speaking);
    const fill = Math.max(0, Math.min(1, (db - FLOOR_DBFS) / -FLOOR_DBFS));
    box.querySelector('.fill').style.transform = `scaleX(${Number.isFinite(fill) ? fill.toFixed(3) : 0})`;
  }

  // ----- the screen stays on while watching (a phone would dim and lock it)

  async function keepAwake(on) {
    wakeWanted = !!on;
    if (!wakeWanted) {
      const lock = wakeLock;
      wakeLock = null;
      state.awake = false;
      if (lock) await lock.release().catch(() => {});
      return;
    }
    if (wakeLock || !navigator.wakeLock || document.visibilityState !== 'visible') return;
    try {
      const lock = await navigator.wakeLock.request('screen');
      if (!wakeWanted) {
        lock.release().catch(() => {});
        return;
      }
      wakeLock = lock;
      state.awake = true;
      // The browser releases it when the page is hidden; it is asked for again on return.
      lock.addEventListener('release', () => {
        if (wakeLock !== lock) return;
        wakeLock = null;
        state.awake = false;
      });
    } catch (e) {
      /* refused (battery saver, no permission): the screen may dim */
    }
  }

  // ----- fullscreen, volume and mute

  const fullscreenElement = () => document.fullscreenElement || document.webkitFullscreenElement || null;

  async function toggleFullscreen() {
    const stage = $('#stage');
    if (fullscreenElement()) {
      await (document.exitFullscreen || document.webkitExitFullscreen).call(document);
      return;
    }
    if (stage.requestFullscreen) await stage.requestFullscreen({ navigationUI: 'hide' });
    else if (stage.webkitRequestFullscreen) stage.webkitRequestFullscreen();
    else if (videoElement() && videoElement().webkitEnterFullscreen) videoElement().webkitEnterFullscreen();
  }

  function onFullscreenChange() {
    state.fullscreen = fullscreenElement() === $('#stage');
    const b = $('#fullscreen');
    b.setAttribute('aria-pressed', String(state.fullscreen));
    b.textContent = state.fullscreen ? 'Exit fullscreen' : 'Fullscreen';
  }

  function setMuted(on) {
    state.muted = !!on;
    const el = audioElement();
    if (el) el.muted = state.muted;
    const b = $('#mute');
    b.setAttribute('aria-pressed', String(state.muted));
    b.textContent = state.muted ? 'Unmute' : 'Mute';
    b.title = state.muted ? 'the device\'s sound is off (M)' : 'turn the device\'s sound off (M)';
    saveSettings();
  }

  function setVolume(volume) {
    const v = Math.max(0, Math.min(100, Math.round(Number(volume))));
    if (!Number.isFinite(v)) return;
    state.volume = v;
    if (audioTrack) audioTrack.setVolume(v);
    $('#volume').value = String(v);
    saveSettings();
  }

  function reset() {
    dropMeter('device');
    dropMeter('you');
    if (levelTimer) clearInterval(levelTimer);
    levelTimer = null;
    if (fullscreenElement() === $('#stage')) toggleFullscreen().catch(() => {});
    videoTrack = null;
    audioTrack = null;
    setTalking(false);
    setReconnecting(false);
    setPlayBlocked(false);
    showPictureError(null);
    setWatchers(0);
    keepAwake(false);
    renderMeter('device', false, -Infinity);
    $('#speaking-device').hidden = true;
    $('#remote-video').classList.remove('live');
    $('#remote-video').style.aspectRatio = '';
  }

  function setUp() {
    loadSettings();
    setMuted(state.muted);
    setVolume(state.volume);
    const stage = $('#stage');
    const fsButton = $('#fullscreen');
    const canFullscreen = !!(stage.requestFullscreen || stage.webkitRequestFullscreen || HTMLVideoElement.prototype.webkitEnterFullscreen);
    fsButton.hidden = !canFullscreen;
    fsButton.addEventListener('click', () => toggleFullscreen().catch(() => {}));
    $('#remote-video').addEventListener('dblclick', () => toggleFullscreen().catch(() => {}));
    document.addEventListener('fullscreenchange', onFullscreenChange);
    document.addEventListener('webkitfullscreenchange', onFullscreenChange);
    $('#mute').addEventListener('click', () => setMuted(!state.muted));
    $('#volume').addEventListener('input', (e) => {
      setVolume(e.target.value);
      if (state.muted && state.volume > 0) setMuted(false); // moving the slider means "I want to hear"
    });
    $('#play-blocked').addEventListener('click', () => resumePlayback());
    document.addEventListener('keydown', (e) => {
      if ($('#viewer').hidden || e.ctrlKey || e.metaKey || e.altKey || e.repeat) return;
      if (e.target instanceof HTMLInputElement && e.target.type !== 'range') return;
      if (e.target instanceof HTMLTextAreaElement) return;
      if (e.code === 'KeyF') toggleFullscreen().catch(() => {});
      else if (e.code === 'KeyM') setMuted(!state.muted);
    });
    document.addEventListener('visibilitychange', () => {
      if (wakeWanted && document.visibilityState === 'visible') keepAwake(true);
    });
    onFullscreenChange();
  }

  window.camagentStage = {
    state,
    unlock,
    showVideo,
    showAudio,
    setMic,
    setTalking,
    setDeviceName,
    setWatchers,
    setReconnecting,
    showPictureError,
    explain,
    keepAwake,
    toggleFullscreen,
    setMuted,
    setVolume,
    reset,
  };
  setUp();
})();
