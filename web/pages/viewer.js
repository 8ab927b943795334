// The device viewer served at /: lists the devices the user may view (from their MQTT state), and
// watches one: POST /api/devices/<id>/watch has the hub command the device into the channel
// view-<id> and mint this browser a token (talk included only when the user may talk to the
// device); the page joins with it, subscribes to the device's camera and microphone, and can talk
// back (hold to talk). Stop is POST /api/devices/<id>/unwatch: the hub tells the device to leave
// once nobody else watches. The page never mints a token or commands a device itself.
//
// The picture, its sound and their controls (fullscreen, volume, mute, who is talking,
// reconnecting, a blocked autoplay) live in stage.js; the list's thumbnails in thumbs.js.
//
// Stable hooks for tests and scripts: #devices (table), tr[data-device="<id>"],
// button[data-view="<id>"], #talk, #stop, #mute, #volume, #fullscreen, #stage, #remote-video video,
// #remote-audio audio, #speaking-device, #speaking-you, #reconnecting, #play-blocked, #status,
// #error, and window.camagentViewer (the live state below; .stage is camagentStage.state).
'use strict';

(function () {
  const POLL_MS = 2000;
  const STATS_MS = 2000;
  const $ = (sel) => document.querySelector(sel);

  // Everything a test (or a curious developer in the console) may want to inspect.
  const viewer = {
    appId: null,
    client: null,
    deviceId: null,
    deviceUid: null, // the device's uid in the channel, from the hub's answer to /watch
    channel: null,
    uid: null, // this browser's uid, chosen by the hub
    canTalk: false, // the user has the talk permission on the device being watched
    micTrack: null,
    remoteVideoTrack: null,
    remoteAudioTrack: null,
    talking: false,
    firstFrameMs: null, // from View to the first decoded frame
    videoTransport: null, // {transport: 'webrtc' | 'datachannel', reason, codec} of the picture
    watchers: 0, // other people watching the device now
    devices: [],
    events: [], // {event, uid, kind, reason, at}
    view,
    stop,
    setTalking,
    stage: window.camagentStage.state,
    thumbnails: window.camagentThumbs.state,
  };
  window.camagentViewer = viewer;

  let deviceKnown = false; // the hub's answer to /watch has arrived (deviceUid may still be null)
  let talkWanted = false;
  let micPending = null;
  let statsTimer = null;
  let viewStartedAt = 0;

  function setStatus(text) {
    $('#status').textContent = text;
  }

  function showError(err) {
    const el = $('#error');
    if (!err) {
      el.hidden = true;
      el.textContent = '';
      return;
    }
    el.hidden = false;
    el.textContent = err.code ? `${err.code}: ${err.message}` : String(err.message || err);
    if (err.advice) el.textContent += `\n${err.advice}`;
  }

  // What to do when the browser cannot play what the device sends: the SDK's error, and advice,
  // in #error and, for the picture, over it.
  function showPlaybackError(kind, e) {
    const err = stage.explain(kind, e, viewer.deviceId);
    showError(err);
    if (kind === 'video') stage.showPictureError(`${err.message}\n${err.advice}`);
  }

  const session = window.camagentSession;
  const stage = window.camagentStage;
  const thumbs = window.camagentThumbs;
  const devicePath = (id, what) => `/api/devices/${encodeURIComponent(id)}/${what}`;

  // Has the hub bring the device into its channel and mint this browser's token; calling it again
  // with the uid the hub gave renews the token for that uid. Resolves with {appId, channel, uid,
  // token, expiresAt, deviceUid, reply}.
  async function watch(deviceId, talk, uid) {
    const w = await session.api('POST', devicePath(deviceId, 'watch'), uid ? { talk, uid } : { talk });
    if (w && w.reply && w.reply.ok === false) {
      throw new Error(`${deviceId} refused to join: ${w.reply.error || 'no reason given'}`);
    }
    if (!w || typeof w.token !== 'string' || !w.channel) throw new Error(`the hub's answer to watch ${deviceId} has no token`);
    return w;
  }

  // Resolves with {left}: whether the hub told the device to leave (nobody but this browser, uid,
  // and the device is in the channel).
  function unwatch(deviceId, uid, init) {
    return session.api('POST', devicePath(deviceId, 'unwatch'), uid ? { uid } : {}, init);
  }

  // ----- device list

  function describeState(s) {
    if (!s || !s.state) return '';
    let text = s.state;
    if (s.channel) text += ` in ${s.channel}`;
    if (Array.isArray(s.users) && s.users.length) text += ` with ${s.users.length} other${s.users.length > 1 ? 's' : ''}`;
    if (s.error) text += ` — ${s.error}`;
    return text;
  }

  // Rows are updated in place so a button keeps its identity (and focus) across polls.
  function renderDevices(list) {
    const tbody = $('#devices tbody');
    const seen = new Set();
    for (const d of list) {
      seen.add(d.id);
      let row = tbody.querySelector(`tr[data-device="${CSS.escape(d.id)}"]`);
      if (!row) {
        row = document.createElement('tr');
        row.dataset.device = d.id;
        for (let i = 0; i < 5; i++) row.appendChild(document.createElement('td'));
        const button = document.createElement('button');
        button.type = 'button';
        button.className = 'primary';
        button.dataset.view = d.id;
        button.addEventListener('click', () => view(d.id));
        row.cells[4].appendChild(button);
        row.cells[0].className = 'thumb-col';
        thumbs.attach(row.cells[0], d.id, () => {
          if (!button.disabled) view(d.id);
        });
        tbody.appendChild(row);
      }
      const online = d.status === 'online';
      row.classList.toggle('offline', !online);
      row.cells[1].textContent = d.id;
      row.cells[2].innerHTML = '';
      const badge = document.createElement('span');
      badge.className = `badge ${online ? 'online' : 'offline'}`;
      badge.textContent = d.status || 'unknown';
      row.cells[2].appendChild(badge);
      row.cells[3].textContent = describeState(d.state);
      const button = row.cells[4].firstChild;
      const watching = viewer.deviceId === d.id;
      button.textContent = watching ? 'Viewing' : 'View';
      button.disabled = !online || watching;
    }
    for (const row of Array.from(tbody.rows)) {
      if (!seen.has(row.dataset.device)) {
        thumbs.forget(row.dataset.device);
        row.remove();
      }
    }
  }

  async function poll() {
    try {
      const list = await session.api('GET', '/api/devices');
      viewer.devices = Array.isArray(list) ? list : [];
      renderDevices(viewer.devices);
      $('#devices-status').textContent = viewer.devices.length
        ? ''
        : 'No devices yet: start camagent on a device with this hub\'s MQTT broker.';
    } catch (e) {
      $('#devices-status').textContent = `Cannot list the devices: ${e.message}`;
    } finally {
      setTimeout(poll, POLL_MS);
    }
  }

  // ----- viewing

  function isDevice(user) {
    // Until the device has answered we cannot tell it from another viewer; the reply handler
    // then picks up whatever it has published. Without a uid in the reply, any publisher will do.
    if (!deviceKnown) return false;
    return viewer.deviceUid === null || user.uid === viewer.deviceUid;
  }

  async function view(deviceId) {
    stage.unlock(); // in the click's gesture, before anything is awaited
    if (viewer.client) await stop();
    showError(null);
    const entry = viewer.devices.find((d) => d.id === deviceId);
    Object.assign(viewer, {
      deviceId,
      channel: null,
      deviceUid: null,
      uid: null,
      canTalk: session.may(deviceId, 'talk', entry),
      remoteVideoTrack: null,
      remoteAudioTrack: null,
      firstFrameMs: null,
      videoTransport: null,
      watchers: 0,
    });
    deviceKnown = false;
    viewStartedAt = performance.now();
    $('#viewer').hidden = false;
    $('#viewing').textContent = deviceId;
    stage.setDeviceName(deviceId);
    showTalkPermission();
    renderDevices(viewer.devices);

    const client = CamagentRTC.createClient({ mode: 'rtc', codec: 'h264' });
    viewer.client = client;
    client.on('user-published', onUserPublished);
    client.on('user-unpublished', (user, kind) => {
      record('user-unpublished', user.uid, { kind });
      if (!isDevice(user)) return;
      if (kind === 'video') {
        viewer.remoteVideoTrack = null;
        setStatus(`${deviceId} stopped sending video.`);
      } else {
        viewer.remoteAudioTrack = null;
      }
    });
    client.on('user-joined', (user) => {
      record('user-joined', user.uid);
      if (viewer.client === client) countWatchers();
    });
    // A track that was delivered but cannot be played (e.g. a codec the browser cannot decode):
    // that subscription alone ends, and the page says what to do.
    client.on('track-failed', (user, kind, err) => {
      record('track-failed', user.uid, { kind, code: err && err.code });
      if (viewer.client !== client || !isDevice(user)) return;
      if (kind === 'video') viewer.remoteVideoTrack = null;
      else viewer.remoteAudioTrack = null;
      showPlaybackError(kind, err);
    });
    client.on('user-left', (user, reason) => {
      record('user-left', user.uid, { reason });
      if (viewer.client === client) countWatchers();
      if (isDevice(user)) setStatus(`${deviceId} left the channel (${reason}).`);
    });
    client.on('connection-state-change', (cur, prev, reason) => {
      record('connection-state-change', null, { cur, prev, reason });
      if (viewer.client === client) stage.setReconnecting(cur === 'RECONNECTING');
      if (cur === 'RECONNECTING' && viewer.client === client) {
        setStatus('The connection to the hub broke; reconnecting…');
      } else if (cur === 'CONNECTED' && reason === 'RECONNECTED' && viewer.client === client) {
        setStatus(`Reconnected; waiting for ${deviceId}'s picture…`);
      }
      if (cur === 'DISCONNECTED' && reason && reason !== 'LEAVE' && viewer.client === client) {
        showError(`Disconnected from the hub: ${reason}`);
        cleanUp();
      }
    });
    // The media path broke while signalling lives: the SDK restarts ICE by itself.
    const mediaPaths = new Set();
    client.on('media-reconnect-start', (which) => {
      record('media-reconnect-start', null, { which });
      mediaPaths.add(which);
      if (viewer.client === client) stage.setReconnecting(true);
    });
    client.on('media-reconnect-end', (which) => {
      record('media-reconnect-end', null, { which });
      mediaPaths.delete(which);
      if (viewer.client === client && !mediaPaths.size && client.connectionState === 'CONNECTED') stage.setReconnecting(false);
    });
    // The hub renews by minting again for the same watch.
    client.on('token-privilege-will-expire', async () => {
      record('token-privilege-will-expire', null);
      try {
        const w = await watch(deviceId, viewer.canTalk, viewer.uid);
        if (viewer.client !== client) return;
        await client.renewToken(w.token);
      } catch (e) {
        if (viewer.client === client) showError(e);
      }
    });

    try {
      setStatus(`Asking ${deviceId} to join…`);
      const w = await watch(deviceId, viewer.canTalk);
      if (viewer.client !== client) return;
      const uid = typeof w.deviceUid === 'number' ? w.deviceUid : w.reply && w.reply.state && w.reply.state.uid;
      Object.assign(viewer, {
        appId: w.appId,
        channel: w.channel,
        uid: w.uid,
        deviceUid: typeof uid === 'number' ? uid : null,
      });
      deviceKnown = true;
      countWatchers();
      setStatus(`Joining ${w.channel}…`);
      // The users already in the channel (the device) are announced once join resolves.
      await client.join(w.appId, w.channel, w.token, w.uid);
      if (viewer.client !== client) return;
      $('#talk').disabled = !viewer.canTalk;
      stage.keepAwake(true);
      setStatus(`Waiting for ${deviceId}'s camera…`);
      statsTimer = setInterval(showStats, STATS_MS);
    } catch (e) {
      if (viewer.client !== client) return;
      showError(e);
      setStatus('Could not start viewing.');
      const watched = deviceKnown;
      const uid = viewer.uid;
      await client.leave().catch(() => {});
      if (watched) unwatch(deviceId, uid).catch(() => {});
      cleanUp();
    }
  }

  // The other people in the device's channel: everyone but the device (and this browser).
  function countWatchers() {
    const users = viewer.client ? viewer.client.remoteUsers : [];
    const others = viewer.deviceUid === null ? Math.max(0, users.length - 1) : users.filter((u) => u.uid !== viewer.deviceUid).length;
    viewer.watchers = deviceKnown ? others : 0;
    stage.setWatchers(viewer.watchers);
  }

  // Without the talk permission the button stays disabled and says why.
  function showTalkPermission() {
    const talk = $('#talk');
    talk.title = viewer.canTalk ? '' : 'you may view but not talk';
    talk.classList.toggle('forbidden', !viewer.canTalk);
    $('#talk-why').hidden = viewer.canTalk;
    $('#talk-hint').hidden = !viewer.canTalk;
  }

  async function onUserPublished(user, kind) {
    record('user-published', user.uid, { kind });
    if (!isDevice(user)) return;
    const client = viewer.client;
    try {
      const track = await client.subscribe(user, kind);
      if (viewer.client !== client) return;
      if (kind === 'video') {
        if (viewer.remoteVideoTrack === track) return;
        viewer.remoteVideoTrack = track;
        // Which way the picture comes (WebRTC, or the SDK's fallback when WebRTC lacks H.264).
        viewer.videoTransport = typeof track.getTransport === 'function' ? track.getTransport() : { transport: 'webrtc' };
        stage.showVideo(track);
        const video = track.getMediaElement();
        video.addEventListener(
          'loadeddata',
          () => {
            viewer.firstFrameMs = Math.round(performance.now() - viewStartedAt);
            setStatus(`Watching ${viewer.deviceId} (first picture after ${viewer.firstFrameMs} ms).`);
          },
          { once: true }
        );
      } else {
        if (viewer.remoteAudioTrack === track) return;
        viewer.remoteAudioTrack = track;
        stage.showAudio(track);
      }
    } catch (e) {
      if (viewer.client === client) showPlaybackError(kind, e);
    }
  }

  function record(event, uid, extra = {}) {
    viewer.events.push({ event, uid, ...extra, at: Date.now() });
  }

  async function showStats() {
    const client = viewer.client;
    if (!client || client.connectionState !== 'CONNECTED') return;
    try {
      const s = await client.getRTCStats();
      const mbit = (b) => (b / 1e6).toFixed(2);
      $('#stats').textContent =
        `receiving ${mbit(s.RecvBitrate)} Mbit/s, ${Math.round(s.RecvFrameRate)} fps, ` +
        `${s.FramesDecoded} frames decoded, ${s.RecvPacketsLost} packets lost, RTT ${s.RTT} ms` +
        (viewer.micTrack ? ` · sending ${mbit(s.SendBitrate)} Mbit/s` : '') +
        (viewer.videoTransport && viewer.videoTransport.transport === 'datachannel'
          ? ` · picture over a data channel (${viewer.videoTransport.reason})`
          : '');
    } catch (e) {
      /* stats are best effort */
    }
  }

  // ----- talking

  // The first press opens and publishes the microphone; afterwards a press only unmutes it, so
  // talking starts at once and the hub renegotiates nothing.
  async function setTalking(on) {
    talkWanted = !!on;
    $('#talk').classList.toggle('active', talkWanted);
    $('#talk').setAttribute('aria-pressed', String(talkWanted));
    const client = viewer.client;
    if (!client || client.connectionState !== 'CONNECTED' || !deviceKnown || !viewer.canTalk) return;
    if (!viewer.micTrack) {
      if (!talkWanted) return;
      if (!micPending) {
        micPending = (async () => {
          const track = await CamagentRTC.createMicrophoneAudioTrack();
          if (viewer.client !== client) {
            track.close();
            return;
          }
          viewer.micTrack = track;
          stage.setMic(track);
          await client.publish(track);
        })().finally(() => {
          micPending = null;
        });
      }
      try {
        await micPending;
      } catch (e) {
        showError(e);
        if (viewer.micTrack) viewer.micTrack.close();
        viewer.micTrack = null;
        return;
      }
      if (!viewer.micTrack) return;
    }
    // talkWanted, not `on`: the button may have been released while the microphone opened.
    await viewer.micTrack.setEnabled(talkWanted);
    viewer.talking = talkWanted;
    stage.setTalking(talkWanted);
    setStatus(talkWanted ? `Talking to ${viewer.deviceId}…` : `Watching ${viewer.deviceId}.`);
  }

  function setUpTalkControls() {
    const talk = $('#talk');
    talk.addEventListener('pointerdown', (e) => {
      if (talk.disabled || e.button !== 0) return;
      e.preventDefault(); // no text selection, no focus ring, no emulated mouse events on touch
      // Capture, so the release is seen even if the pointer slides off the button.
      talk.setPointerCapture(e.pointerId);
      setTalking(true);
    });
    for (const type of ['pointerup', 'pointercancel', 'lostpointercapture']) {
      talk.addEventListener(type, () => {
        if (talkWanted) setTalking(false);
      });
    }
    talk.addEventListener('contextmenu', (e) => e.preventDefault()); // long touch

    // Space on the volume slider still talks; in a text field it types.
    const typing = (e) =>
      (e.target instanceof HTMLInputElement && e.target.type !== 'range') || e.target instanceof HTMLTextAreaElement;
    // Space is hold-to-talk while viewing. preventDefault keeps it from scrolling the page or
    // clicking whichever button has the focus.
    document.addEventListener('keydown', (e) => {
      if (e.code !== 'Space' || typing(e) || talk.disabled) return;
      e.preventDefault();
      if (!e.repeat) setTalking(true);
    });
    document.addEventListener('keyup', (e) => {
      if (e.code !== 'Space' || typing(e) || talk.disabled) return;
      e.preventDefault();
      setTalking(false);
    });
    window.addEventListener('blur', () => {
      if (talkWanted) setTalking(false);
    });
  }

  // ----- stopping

  // The browser leaves the channel, then asks the hub to unwatch: the device stays in the channel
  // while anyone else still watches it.
  async function stop() {
    const client = viewer.client;
    const deviceId = viewer.deviceId;
    if (!client) return;
    setStatus(`Stopping ${deviceId}…`);
    talkWanted = false;
    const watched = deviceKnown;
    const uid = viewer.uid;
    viewer.client = null; // late events from this client are ignored from here on
    await client.leave().catch(() => {});
    let answer = null;
    let failure = null;
    if (watched) {
      try {
        answer = await unwatch(deviceId, uid);
      } catch (e) {
        failure = e;
      }
    }
    cleanUp();
    if (failure) showError(failure);
    setStatus(
      answer && answer.left === false
        ? `Stopped (other viewers are still watching ${deviceId}).`
        : `Stopped: ${deviceId} has left the channel.`
    );
  }

  function cleanUp() {
    if (statsTimer) clearInterval(statsTimer);
    statsTimer = null;
    if (viewer.micTrack) viewer.micTrack.close();
    if (viewer.remoteVideoTrack) viewer.remoteVideoTrack.stop();
    if (viewer.remoteAudioTrack) viewer.remoteAudioTrack.stop();
    stage.reset();
    Object.assign(viewer, {
      client: null,
      deviceId: null,
      deviceUid: null,
      channel: null,
      micTrack: null,
      remoteVideoTrack: null,
      remoteAudioTrack: null,
      talking: false,
    });
    deviceKnown = false;
    talkWanted = false;
    $('#talk').disabled = true;
    $('#talk').classList.remove('active');
    $('#talk').setAttribute('aria-pressed', 'false');
    viewer.canTalk = false;
    $('#remote-video').replaceChildren();
    $('#stats').textContent = '';
    $('#viewer').hidden = true;
    renderDevices(viewer.devices);
  }

  // Closing the tab: release the device too (keepalive lets the request outlive the page).
  window.addEventListener('pagehide', () => {
    if (viewer.client && deviceKnown) {
      // No time to wait for the leave here: the unwatch goes out at once, naming this browser's
      // uid so that the hub does not count it as another viewer.
      unwatch(viewer.deviceId, viewer.uid, { keepalive: true }).catch(() => {});
      viewer.client.leave().catch(() => {});
    }
  });

  // ----- start

  async function start() {
    $('#stop').addEventListener('click', () => stop());
    setUpTalkControls();
    try {
      await session.ready;
    } catch (e) {
      showError(`Cannot read the session: ${e.message}`);
      return;
    }
    poll();
  }

  start();
})();
