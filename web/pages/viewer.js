// The device viewer served at /: lists the devices the hub knows (from their MQTT state), and
// watches one: the browser joins a channel, asks the device to join it too, subscribes to the
// device's camera and microphone, and can talk back (hold to talk).
//
// Stable hooks for tests and scripts: #devices (table), button[data-view="<id>"], #talk, #stop,
// #remote-video video, #status, #error, and window.camagentViewer (the live state below).
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
    deviceUid: null, // the device's uid in the channel, from its reply to the join command
    channel: null,
    uid: null,
    micTrack: null,
    remoteVideoTrack: null,
    remoteAudioTrack: null,
    talking: false,
    firstFrameMs: null, // from View to the first decoded frame
    devices: [],
    events: [], // {event, uid, kind, reason, at}
    view,
    stop,
    setTalking,
  };
  window.camagentViewer = viewer;

  let deviceKnown = false; // the device's join reply has arrived (deviceUid may still be null)
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
  }

  // Uids the hub never hands out to devices in practice (devices get small ones), random so two
  // viewers of one device do not collide.
  function randomUID() {
    return 100000 + Math.floor(Math.random() * 2000000000);
  }

  // Channel names are 1–64 printable ASCII characters.
  function channelFor(deviceId) {
    return ('view-' + deviceId).replace(/[^\x20-\x7e]/g, '_').slice(0, 64);
  }

  async function fetchJSON(url, init) {
    const res = await fetch(url, init);
    const text = await res.text();
    let data;
    try {
      data = JSON.parse(text);
    } catch (e) {
      data = null;
    }
    if (!res.ok && !(data && typeof data.ok === 'boolean')) {
      const detail = (data && (data.error || data.message)) || text.trim() || res.statusText;
      throw new Error(`${url} answered ${res.status}: ${typeof detail === 'string' ? detail : JSON.stringify(detail)}`);
    }
    return data;
  }

  // Sends an MQTT command through the hub; resolves with the device's reply {id, ok, error, state}.
  async function command(deviceId, cmd, init = {}) {
    const res = await fetch(`/api/devices/${encodeURIComponent(deviceId)}/cmd`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(cmd),
      ...init,
    });
    if (res.status === 504) throw new Error(`${deviceId} did not answer the ${cmd.action} command (timeout)`);
    const text = await res.text();
    let reply = null;
    try {
      reply = JSON.parse(text);
    } catch (e) {
      /* reported below */
    }
    if (!reply || typeof reply.ok !== 'boolean') {
      throw new Error(`${cmd.action} command: hub answered ${res.status}: ${text.trim() || res.statusText}`);
    }
    return reply;
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
        for (let i = 0; i < 4; i++) row.appendChild(document.createElement('td'));
        const button = document.createElement('button');
        button.type = 'button';
        button.className = 'primary';
        button.dataset.view = d.id;
        button.addEventListener('click', () => view(d.id));
        row.cells[3].appendChild(button);
        tbody.appendChild(row);
      }
      const online = d.status === 'online';
      row.cells[0].textContent = d.id;
      row.cells[1].innerHTML = '';
      const badge = document.createElement('span');
      badge.className = `badge ${online ? 'online' : 'offline'}`;
      badge.textContent = d.status || 'unknown';
      row.cells[1].appendChild(badge);
      row.cells[2].textContent = describeState(d.state);
      const button = row.cells[3].firstChild;
      const watching = viewer.deviceId === d.id;
      button.textContent = watching ? 'Viewing' : 'View';
      button.disabled = !online || watching;
    }
    for (const row of Array.from(tbody.rows)) {
      if (!seen.has(row.dataset.device)) row.remove();
    }
  }

  async function poll() {
    try {
      const list = await fetchJSON('/api/devices');
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
    if (viewer.client) await stop();
    showError(null);
    const channel = channelFor(deviceId);
    Object.assign(viewer, {
      deviceId,
      channel,
      deviceUid: null,
      uid: randomUID(),
      remoteVideoTrack: null,
      remoteAudioTrack: null,
      firstFrameMs: null,
    });
    deviceKnown = false;
    viewStartedAt = performance.now();
    $('#viewer').hidden = false;
    $('#viewing').textContent = deviceId;
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
    client.on('user-joined', (user) => record('user-joined', user.uid));
    client.on('user-left', (user, reason) => {
      record('user-left', user.uid, { reason });
      if (isDevice(user)) setStatus(`${deviceId} left the channel (${reason}).`);
    });
    client.on('connection-state-change', (cur, prev, reason) => {
      record('connection-state-change', null, { cur, prev, reason });
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
    client.on('token-privilege-will-expire', async () => {
      try {
        const token = await CamagentRTC.fetchToken({ appId: viewer.appId, channel, uid: viewer.uid, role: 'publisher' });
        await client.renewToken(token);
      } catch (e) {
        showError(e);
      }
    });

    try {
      setStatus(`Joining ${channel}…`);
      const token = await CamagentRTC.fetchToken({ appId: viewer.appId, channel, uid: viewer.uid, role: 'publisher' });
      await client.join(viewer.appId, channel, token, viewer.uid);
      if (viewer.client !== client) return;
      setStatus(`Asking ${deviceId} to join ${channel}…`);
      const reply = await command(deviceId, { action: 'join', channel });
      if (viewer.client !== client) return;
      if (!reply.ok) throw new Error(`${deviceId} refused to join: ${reply.error || 'no reason given'}`);
      const uid = reply.state && reply.state.uid;
      viewer.deviceUid = typeof uid === 'number' ? uid : null;
      deviceKnown = true;
      $('#talk').disabled = false;
      setStatus(`Waiting for ${deviceId}'s camera…`);
      // Whatever the device published before its reply arrived.
      for (const user of client.remoteUsers) {
        if (!isDevice(user)) continue;
        if (user.hasVideo) onUserPublished(user, 'video');
        if (user.hasAudio) onUserPublished(user, 'audio');
      }
      statsTimer = setInterval(showStats, STATS_MS);
    } catch (e) {
      if (viewer.client !== client) return;
      showError(e);
      setStatus('Could not start viewing.');
      await client.leave().catch(() => {});
      cleanUp();
    }
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
        track.play('remote-video');
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
        track.play('remote-audio');
      }
    } catch (e) {
      if (viewer.client === client) showError(e);
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
        (viewer.micTrack ? ` · sending ${mbit(s.SendBitrate)} Mbit/s` : '');
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
    const client = viewer.client;
    if (!client || client.connectionState !== 'CONNECTED' || !deviceKnown) return;
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
    setStatus(talkWanted ? `Talking to ${viewer.deviceId}…` : `Watching ${viewer.deviceId}.`);
  }

  function setUpTalkControls() {
    const talk = $('#talk');
    talk.addEventListener('pointerdown', (e) => {
      if (talk.disabled) return;
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

    const typing = (e) => e.target instanceof HTMLInputElement || e.target instanceof HTMLTextAreaElement;
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

  // Other viewers in the channel are still watching the device: leave it to them then (the
  // device leaves by itself once the channel is empty).
  function othersWatching() {
    const client = viewer.client;
    return !!client && client.remoteUsers.some((u) => deviceKnown && viewer.deviceUid !== null && u.uid !== viewer.deviceUid);
  }

  async function stop() {
    const client = viewer.client;
    const deviceId = viewer.deviceId;
    if (!client) return;
    setStatus(`Stopping ${deviceId}…`);
    talkWanted = false;
    const tellDevice = deviceKnown && !othersWatching();
    viewer.client = null; // late events from this client are ignored from here on
    const [cmd] = await Promise.allSettled([
      tellDevice ? command(deviceId, { action: 'leave' }) : Promise.resolve(null),
      client.leave(),
    ]);
    cleanUp();
    if (cmd.status === 'rejected') {
      showError(cmd.reason);
    } else if (cmd.value && !cmd.value.ok) {
      showError(`${deviceId} could not leave: ${cmd.value.error || 'no reason given'}`);
    }
    setStatus(tellDevice ? `Stopped: ${deviceId} has left the channel.` : `Stopped (other viewers are still watching ${deviceId}).`);
  }

  function cleanUp() {
    if (statsTimer) clearInterval(statsTimer);
    statsTimer = null;
    if (viewer.micTrack) viewer.micTrack.close();
    if (viewer.remoteVideoTrack) viewer.remoteVideoTrack.stop();
    if (viewer.remoteAudioTrack) viewer.remoteAudioTrack.stop();
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
    $('#remote-video').replaceChildren();
    $('#stats').textContent = '';
    $('#viewer').hidden = true;
    renderDevices(viewer.devices);
  }

  // Closing the tab: release the device too (keepalive lets the request outlive the page).
  window.addEventListener('pagehide', () => {
    if (viewer.client && deviceKnown && !othersWatching()) {
      command(viewer.deviceId, { action: 'leave' }, { keepalive: true }).catch(() => {});
      viewer.client.leave();
    }
  });

  // ----- start

  async function start() {
    $('#stop').addEventListener('click', () => stop());
    setUpTalkControls();
    try {
      const config = await fetchJSON('/api/config');
      viewer.appId = config.appId;
    } catch (e) {
      showError(`Cannot read the hub's configuration: ${e.message}`);
      return;
    }
    poll();
  }

  start();
})();
