// Quickstart: a two-party video call, written the way a cloud RTC SDK's basic video call sample
// reads, so code written for those ports by changing little more than the global's name.
//
// Fill in the App ID and a channel (the App ID comes from the hub), leave the token empty to get
// one from this hub's token service, and press JOIN in two browser tabs. The token service mints
// for administrators (and in demo mode); other people watch devices from the viewer, or paste a
// token their backend minted.
// The form can be prefilled from the query string: /quickstart?appid=demo&channel=test&uid=7
//
// For tests: #join, #leave, #local-player, #player-<uid> per remote user, and
// window.camagentQuickstart / window.quickstartEvents.
'use strict';

// The client and the tracks of the current call.
let client = null;
const localTracks = {
  videoTrack: null,
  audioTrack: null,
};
let remoteUsers = {};

// What the form says.
const options = {
  appid: null,
  channel: null,
  uid: null,
  token: null,
};
// True when the token came from the hub's token service (so the page can renew it itself).
let tokenFetched = false;

// Every SDK event, in order, for anyone watching (tests, the console).
const events = [];
window.quickstartEvents = events;
window.camagentQuickstart = {
  get client() {
    return client;
  },
  localTracks,
  get remoteUsers() {
    return remoteUsers;
  },
  options,
  events,
  join,
  leave,
};

const $ = (sel) => document.querySelector(sel);

function showStatus(text) {
  $('#status').textContent = text;
}

function showError(err) {
  const el = $('#error');
  el.hidden = !err;
  el.textContent = err ? (err.code ? `${err.code}: ${err.message}` : String(err.message || err)) : '';
}

function record(event, fields) {
  events.push(Object.assign({ event, at: Date.now() }, fields));
}

// Prefill: App ID from the hub's config, anything else from the query string. session.js sends a
// visitor who is not logged in to the login page first.
async function init() {
  try {
    await window.camagentSession.ready;
  } catch (e) {
    showError(`Cannot read the session: ${e.message}`);
  }
  const params = new URLSearchParams(location.search);
  for (const name of ['appid', 'channel', 'token', 'uid']) {
    if (params.get(name)) $('#' + name).value = params.get(name);
  }
  if (!$('#appid').value) {
    try {
      const res = await fetch('/api/config');
      if (res.ok) $('#appid').value = (await res.json()).appId || '';
    } catch (e) {
      // No config: the user types the App ID.
    }
  }
}

$('#join-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  $('#join').disabled = true;
  showError(null);
  try {
    options.appid = $('#appid').value.trim();
    options.channel = $('#channel').value.trim();
    options.token = $('#token').value.trim() || null;
    options.uid = $('#uid').value.trim() ? Number($('#uid').value.trim()) : null;
    await join();
    showStatus(`Joined channel ${options.channel} as ${options.uid}.`);
    $('#leave').disabled = false;
  } catch (err) {
    await leave();
    showError(err);
    showStatus('Join failed.');
  }
});

$('#leave').addEventListener('click', () => leave());

async function join() {
  // VP8: what every browser's WebRTC decodes (Firefox as Debian ships it has no H.264 in WebRTC),
  // so a call between any two browsers needs no fallback. Devices take only the audio.
  client = CamagentRTC.createClient({ mode: 'rtc', codec: 'vp8' });

  // Add event listeners before joining: the users already in the channel are announced too.
  client.on('user-published', handleUserPublished);
  client.on('user-unpublished', handleUserUnpublished);
  client.on('user-joined', (user) => record('user-joined', { uid: user.uid }));
  client.on('user-left', handleUserLeft);
  client.on('connection-state-change', (cur, prev, reason) => {
    record('connection-state-change', { cur, prev, reason });
    if (cur === 'DISCONNECTED' && reason && reason !== 'LEAVE') showError(`Disconnected: ${reason}`);
  });
  client.on('token-privilege-will-expire', handleTokenWillExpire);
  client.on('token-privilege-did-expire', () => record('token-privilege-did-expire', {}));

  // Without a token, ask this hub's token service for one (it binds a uid, so pick one now).
  tokenFetched = !options.token;
  if (tokenFetched) {
    if (options.uid === null) options.uid = 100000 + Math.floor(Math.random() * 2000000000);
    options.token = await CamagentRTC.fetchToken({
      appId: options.appid,
      channel: options.channel,
      uid: options.uid,
      role: 'publisher',
      headers: window.camagentSession.csrfHeaders(),
    });
  }

  // Join a channel, then create local audio and video tracks.
  options.uid = await client.join(options.appid, options.channel, options.token, options.uid);
  [localTracks.audioTrack, localTracks.videoTrack] = await CamagentRTC.createMicrophoneAndCameraTracks();

  // Play the local video track.
  localTracks.videoTrack.play('local-player');
  $('#local-player-name').textContent = `localVideo(${options.uid})`;

  // Publish the local video and audio tracks to the channel.
  await client.publish(Object.values(localTracks));
  record('published', { uid: options.uid });
}

async function leave() {
  for (const name in localTracks) {
    const track = localTracks[name];
    if (track) {
      track.stop();
      track.close();
      localTracks[name] = null;
    }
  }

  // Remove the remote users and their players.
  remoteUsers = {};
  $('#remote-playerlist').replaceChildren();

  // Leave the channel.
  if (client) await client.leave();
  if (tokenFetched) options.token = null;

  $('#local-player-name').textContent = '';
  $('#join').disabled = false;
  $('#leave').disabled = true;
  if (client) showStatus('Left the channel.');
  record('left', {});
}

async function subscribe(user, mediaType) {
  const uid = user.uid;
  // Subscribe to a remote user.
  await client.subscribe(user, mediaType);
  record('subscribed', { uid, mediaType });

  if (mediaType === 'video') {
    $(`#player-wrapper-${uid}`)?.remove();
    const wrapper = document.createElement('div');
    wrapper.id = `player-wrapper-${uid}`;
    const name = document.createElement('p');
    name.className = 'player-name';
    name.textContent = `remoteUser(${uid})`;
    const player = document.createElement('div');
    player.id = `player-${uid}`;
    player.className = 'player';
    wrapper.append(name, player);
    $('#remote-playerlist').append(wrapper);
    user.videoTrack.play(`player-${uid}`);
  }
  if (mediaType === 'audio') {
    user.audioTrack.play();
  }
}

function handleUserPublished(user, mediaType) {
  record('user-published', { uid: user.uid, mediaType });
  remoteUsers[user.uid] = user;
  subscribe(user, mediaType).catch((err) => showError(err));
}

function handleUserUnpublished(user, mediaType) {
  record('user-unpublished', { uid: user.uid, mediaType });
  if (mediaType === 'video') {
    $(`#player-wrapper-${user.uid}`)?.remove();
  }
}

function handleUserLeft(user, reason) {
  record('user-left', { uid: user.uid, reason });
  delete remoteUsers[user.uid];
  $(`#player-wrapper-${user.uid}`)?.remove();
}

// A token from this hub is renewed here; a token typed into the form is the user's to renew.
async function handleTokenWillExpire() {
  record('token-privilege-will-expire', {});
  if (!tokenFetched) return;
  try {
    options.token = await CamagentRTC.fetchToken({
      appId: options.appid,
      channel: options.channel,
      uid: options.uid,
      role: 'publisher',
      headers: window.camagentSession.csrfHeaders(),
    });
    await client.renewToken(options.token);
  } catch (err) {
    showError(err);
  }
}

init();
