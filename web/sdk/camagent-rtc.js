/*
 * camagent-rtc.js — the camagent browser SDK.
 *
 * A plain script (no build step, no dependencies, ES2020) that defines the global `CamagentRTC`
 * (and `module.exports` under CommonJS). It speaks the hub's signalling protocol (docs/protocol.md):
 * one WebSocket per client at /rtc, a publish peer connection the client offers and a subscribe
 * peer connection the hub offers. ICE candidates are never trickled: every SDP is sent once ICE
 * gathering has finished. The API follows the shape web developers know from cloud RTC SDKs;
 * docs/sdk.md documents it.
 */
(function (root, factory) {
  'use strict';
  const api = factory(root);
  if (typeof module === 'object' && module && module.exports) module.exports = api;
  if (root) root.CamagentRTC = api;
})(typeof globalThis !== 'undefined' ? globalThis : this, function (root) {
  'use strict';

  const VERSION = '0.1.0';

  // Requests the hub does not answer within this time fail with TIMEOUT.
  const REQUEST_TIMEOUT_MS = 10000;
  // Gathering host candidates takes milliseconds; a STUN server that does not answer must not
  // hold a negotiation forever, so after this long the SDP goes out with what has been gathered.
  const ICE_GATHERING_TIMEOUT_MS = 5000;
  // Keeps idle sockets alive through proxies and lets a dead hub be noticed.
  const PING_INTERVAL_MS = 15000;
  // A leave should not hang on a hub that has gone away.
  const LEAVE_TIMEOUT_MS = 2000;
  // A peer connection whose ICE stays disconnected this long, or fails, while the signalling
  // socket is fine has lost its media path (a NAT forgot its mapping, the network changed): it
  // is restarted with fresh ICE credentials, keeping the session, tracks and subscriptions.
  const ICE_RESTART_AFTER_MS = 1000;
  // A restart that did not bring the path back is tried again after these delays.
  const ICE_RESTART_RETRY_MS = [5000, 10000, 20000, 30000];

  // The script's own origin is the best default hub: a page from another origin that loads
  // <script src="https://hub/sdk/camagent-rtc.js"> then talks to that hub. Captured at load time
  // because document.currentScript is only set while the script runs.
  const scriptOrigin = (function () {
    try {
      const src = root.document && root.document.currentScript && root.document.currentScript.src;
      return src ? new URL(src).origin : null;
    } catch (e) {
      return null;
    }
  })();

  // ---------------------------------------------------------------------------------------------
  // Logging

  const LOG_LEVELS = { debug: 0, info: 1, warning: 2, error: 3, none: 4 };
  let logLevel = LOG_LEVELS.warning;
  const log = {
    debug: (...a) => logLevel <= 0 && console.debug('[CamagentRTC]', ...a),
    info: (...a) => logLevel <= 1 && console.info('[CamagentRTC]', ...a),
    warn: (...a) => logLevel <= 2 && console.warn('[CamagentRTC]', ...a),
    error: (...a) => logLevel <= 3 && console.error('[CamagentRTC]', ...a),
  };

  // ---------------------------------------------------------------------------------------------
  // Errors

  /**
   * The one error type the SDK throws or rejects with. `code` is either a hub protocol code
   * (TOKEN_EXPIRED, NO_PRIVILEGE, …, see docs/protocol.md) or one of the SDK's own:
   * TIMEOUT, NETWORK_ERROR, WS_ABORT, INVALID_OPERATION, INVALID_PARAMS, NOT_SUPPORTED,
   * PERMISSION_DENIED, DEVICE_NOT_FOUND, MEDIA_ERROR, TOKEN_SERVICE_ERROR, CODEC_NOT_SUPPORTED (this
   * browser can play a track's codec neither in WebRTC nor otherwise: that subscription alone
   * fails; `data` is {uid, kind, codec}).
   */
  class CamagentRTCError extends Error {
    constructor(code, message, data) {
      super(message || code);
      this.name = 'CamagentRTCError';
      this.code = code;
      if (data !== undefined) this.data = data;
    }

    toString() {
      return `${this.name}: ${this.code}: ${this.message}`;
    }
  }

  function toRTCError(err, fallbackCode) {
    if (err instanceof CamagentRTCError) return err;
    return new CamagentRTCError(fallbackCode, (err && err.message) || String(err));
  }

  // ---------------------------------------------------------------------------------------------
  // Small helpers

  class EventEmitter {
    constructor() {
      this._listeners = new Map();
    }

    on(name, fn) {
      if (typeof fn !== 'function') throw new CamagentRTCError('INVALID_PARAMS', 'listener must be a function');
      if (!this._listeners.has(name)) this._listeners.set(name, []);
      this._listeners.get(name).push(fn);
      return this;
    }

    once(name, fn) {
      const wrapper = (...args) => {
        this.off(name, wrapper);
        fn.apply(this, args);
      };
      return this.on(name, wrapper);
    }

    off(name, fn) {
      const list = this._listeners.get(name);
      if (!list) return this;
      if (!fn) {
        this._listeners.delete(name);
        return this;
      }
      const i = list.indexOf(fn);
      if (i >= 0) list.splice(i, 1);
      return this;
    }

    removeAllListeners(name) {
      if (name === undefined) this._listeners.clear();
      else this._listeners.delete(name);
      return this;
    }

    // A throwing listener is the application's bug; it must not break the SDK's state machine.
    emit(name, ...args) {
      const list = this._listeners.get(name);
      if (!list) return;
      for (const fn of list.slice()) {
        try {
          fn.apply(this, args);
        } catch (e) {
          log.error(`listener for "${name}" threw:`, e);
        }
      }
    }
  }

  function resolveElement(elementOrId) {
    if (typeof elementOrId === 'string') {
      const el = root.document.getElementById(elementOrId);
      if (!el) throw new CamagentRTCError('INVALID_PARAMS', `no element with id "${elementOrId}"`);
      return el;
    }
    if (elementOrId && typeof elementOrId.appendChild === 'function') return elementOrId;
    throw new CamagentRTCError('INVALID_PARAMS', 'play() needs an element or an element id');
  }

  // Once a relay candidate is there, gathering may go on this long before the SDP is sent: a
  // TURN transport a firewall silently drops (UDP to 3478) would otherwise hold every
  // negotiation for the whole timeout, while the relay over TCP or TLS is already in hand.
  const RELAY_GRACE_MS = 500;

  function waitIceGatheringComplete(pc, timeoutMs) {
    if (pc.iceGatheringState === 'complete') return Promise.resolve();
    return new Promise((resolve) => {
      let relayTimer = null;
      const done = () => {
        clearTimeout(timer);
        clearTimeout(relayTimer);
        pc.removeEventListener('icegatheringstatechange', onState);
        pc.removeEventListener('icecandidate', onCandidate);
        resolve();
      };
      const onState = () => {
        if (pc.iceGatheringState === 'complete') done();
      };
      // A null candidate also marks the end of gathering (some browsers signal only this way).
      const onCandidate = (e) => {
        if (!e.candidate) {
          done();
        } else if (!relayTimer && / typ relay /.test(e.candidate.candidate)) {
          relayTimer = setTimeout(done, RELAY_GRACE_MS);
        }
      };
      const timer = setTimeout(() => {
        log.warn('ICE gathering did not complete in time; sending the candidates gathered so far');
        done();
      }, timeoutMs);
      pc.addEventListener('icegatheringstatechange', onState);
      pc.addEventListener('icecandidate', onCandidate);
    });
  }

  // A chain that runs async jobs one at a time, in order; a failed job does not stop later ones.
  class SerialQueue {
    constructor() {
      this._tail = Promise.resolve();
    }

    run(job) {
      const result = this._tail.then(job);
      this._tail = result.catch(() => {});
      return result;
    }
  }

  function validUID(uid) {
    return Number.isInteger(uid) && uid >= 0 && uid <= 0xffffffff;
  }

  // uid null, undefined or 0 asks the hub to assign one (as the cloud SDKs do); a numeric
  // string is accepted for convenience (form fields).
  function normaliseUID(uid) {
    if (uid === null || uid === undefined || uid === '' || uid === 0) return null;
    const n = typeof uid === 'string' && /^\d+$/.test(uid) ? Number(uid) : uid;
    if (!validUID(n)) throw new CamagentRTCError('INVALID_PARAMS', `uid must be an integer 0..4294967295, got ${uid}`);
    return n;
  }

  function validChannel(s) {
    return typeof s === 'string' && s.length >= 1 && s.length <= 64 && /^[\x20-\x7e]+$/.test(s);
  }

  function defaultServer() {
    const origin = scriptOrigin || (root.location && root.location.origin);
    if (!origin || origin === 'null') return null;
    return origin.replace(/^http/, 'ws') + '/rtc';
  }

  // Where a REDIRECT from the hub at from (a signalling URL) leads: a hub URL without
  // credentials, and never from TLS to plain text (the token goes there).
  function redirectURL(from, to) {
    let url;
    try {
      if (typeof to !== 'string' || !/^(https?|wss?):\/\//.test(to)) throw new Error('not a hub URL');
      url = new URL(signallingURL(to));
      if (url.username || url.password) throw new Error('a URL with credentials');
    } catch (e) {
      throw new CamagentRTCError('REDIRECT', `join: refused a redirect to ${to}: ${e.message}`);
    }
    if (from.startsWith('wss:') && url.protocol !== 'wss:') {
      throw new CamagentRTCError('REDIRECT', `join: refused a redirect from ${from} to ${to}: it would leave TLS`);
    }
    return url.href;
  }

  // Accepts ws(s)://host/rtc as it is, and http(s)://host[/path] as the hub's web address.
  function signallingURL(server) {
    if (!server) return defaultServer();
    const url = new URL(server, root.location ? root.location.href : undefined);
    if (url.protocol === 'http:') url.protocol = 'ws:';
    else if (url.protocol === 'https:') url.protocol = 'wss:';
    if (url.protocol !== 'ws:' && url.protocol !== 'wss:') {
      throw new CamagentRTCError('INVALID_PARAMS', `server must be a ws(s) or http(s) URL, got ${server}`);
    }
    if (url.pathname === '/' || url.pathname === '') url.pathname = '/rtc';
    return url.toString();
  }

  function httpBase(server) {
    if (server) {
      const url = new URL(server, root.location ? root.location.href : undefined);
      return url.origin.replace(/^ws/, 'http');
    }
    return scriptOrigin || (root.location && root.location.origin) || '';
  }

  // ---------------------------------------------------------------------------------------------
  // Playback

  // A media element attached to a container, playing one MediaStreamTrack.
  class Player {
    constructor(track, container, kind) {
      const doc = root.document;
      this.kind = kind;
      this.container = container;
      this.element = doc.createElement(kind === 'video' ? 'video' : 'audio');
      this.element.autoplay = true;
      this.element.setAttribute('autoplay', '');
      if (kind === 'video') {
        // Muted and inline: video never carries sound here (audio has its own element), and
        // both attributes let autoplay start without a user gesture on every browser.
        this.element.muted = true;
        this.element.setAttribute('muted', '');
        this.element.playsInline = true;
        this.element.setAttribute('playsinline', '');
        this.element.style.cssText = 'width:100%;height:100%;object-fit:contain;background:#000;display:block';
      } else if (!container) {
        this.element.style.display = 'none';
      }
      this.element.srcObject = new root.MediaStream([track]);
      (container || doc.body).appendChild(this.element);
      this.start();
    }

    start() {
      const p = this.element.play();
      if (p && p.catch) {
        p.catch((e) => {
          // Autoplay refused: the page must call play() again from a click.
          if (e && e.name !== 'AbortError') log.warn(`${this.kind} playback did not start:`, e.message || e);
        });
      }
    }

    setVolume(volume) {
      this.element.volume = Math.max(0, Math.min(1, volume / 100));
    }

    destroy() {
      try {
        this.element.pause();
      } catch (e) {
        /* already gone */
      }
      this.element.srcObject = null;
      this.element.remove();
    }
  }

  // Shared by local and remote tracks: wrapping one MediaStreamTrack and playing it.
  class BaseTrack extends EventEmitter {
    constructor(mediaStreamTrack, kind) {
      super();
      this._track = mediaStreamTrack;
      this._player = null;
      this._volume = 100;
      this.trackMediaType = kind;
    }

    getTrackId() {
      return this._track.id;
    }

    getMediaStreamTrack() {
      return this._track;
    }

    get isPlaying() {
      return this._player !== null;
    }

    /**
     * Plays the track. Video: a <video autoplay playsinline muted> inside the element.
     * Audio: an <audio> element, inside the element if one is given, else hidden in <body>.
     */
    play(elementOrId) {
      const container =
        this.trackMediaType === 'video' || elementOrId !== undefined ? resolveElement(elementOrId) : null;
      this.stop();
      this._player = new Player(this._track, container, this.trackMediaType);
      if (this.trackMediaType === 'audio') this._player.setVolume(this._volume);
    }

    /** Stops playing (the track itself goes on; close() ends a local track). */
    stop() {
      if (this._player) {
        this._player.destroy();
        this._player = null;
      }
    }

    /** The element play() created, for styling or analysis; null when not playing. */
    getMediaElement() {
      return this._player ? this._player.element : null;
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Local tracks

  class LocalTrack extends BaseTrack {
    constructor(mediaStreamTrack, kind) {
      super(mediaStreamTrack, kind);
      this._closed = false;
      // Set by the client while the track is published (unpublished on close()).
      this._client = null;
      mediaStreamTrack.addEventListener('ended', () => this.emit('track-ended'));
    }

    get enabled() {
      return this._track.enabled;
    }

    get muted() {
      return !this._track.enabled;
    }

    /**
     * Mutes or unmutes without renegotiating: a disabled track sends silence or black frames, so
     * the hub and the other users keep the track and see no unpublish.
     */
    async setEnabled(enabled) {
      this._track.enabled = !!enabled;
    }

    /** Alias of setEnabled(!muted), the name some cloud SDKs use. */
    async setMuted(muted) {
      return this.setEnabled(!muted);
    }

    /** Stops playback and releases the device (the camera light goes off). */
    close() {
      if (this._closed) return;
      this._closed = true;
      this.stop();
      this._track.stop();
      if (this._client) {
        this._client.unpublish(this).catch((e) => log.warn('unpublish on close failed:', e));
      }
    }
  }

  class LocalAudioTrack extends LocalTrack {
    constructor(mediaStreamTrack) {
      super(mediaStreamTrack, 'audio');
    }

    /** Volume of local playback, 0–100 (what is sent is unchanged). */
    setVolume(volume) {
      this._volume = volume;
      if (this._player) this._player.setVolume(volume);
    }
  }

  class LocalVideoTrack extends LocalTrack {
    constructor(mediaStreamTrack) {
      super(mediaStreamTrack, 'video');
    }
  }

  const VIDEO_PRESETS = {
    '180p': { width: 320, height: 180, frameRate: 15 },
    '360p': { width: 640, height: 360, frameRate: 15 },
    '480p': { width: 640, height: 480, frameRate: 15 },
    '720p': { width: 1280, height: 720, frameRate: 15 },
    '1080p': { width: 1920, height: 1080, frameRate: 15 },
  };

  function audioConstraints(config) {
    const c = {};
    if (config.microphoneId) c.deviceId = { exact: config.microphoneId };
    if (config.AEC !== undefined) c.echoCancellation = !!config.AEC;
    if (config.AGC !== undefined) c.autoGainControl = !!config.AGC;
    if (config.ANS !== undefined) c.noiseSuppression = !!config.ANS;
    return Object.keys(c).length ? c : true;
  }

  function videoConstraints(config) {
    const c = {};
    if (config.cameraId) c.deviceId = { exact: config.cameraId };
    if (config.facingMode) c.facingMode = config.facingMode;
    let enc = config.encoderConfig;
    if (typeof enc === 'string') {
      if (!VIDEO_PRESETS[enc]) throw new CamagentRTCError('INVALID_PARAMS', `unknown encoderConfig "${enc}"`);
      enc = VIDEO_PRESETS[enc];
    }
    if (enc) {
      if (enc.width) c.width = { ideal: enc.width };
      if (enc.height) c.height = { ideal: enc.height };
      if (enc.frameRate) c.frameRate = { ideal: enc.frameRate };
    }
    return Object.keys(c).length ? c : true;
  }

  async function getUserMedia(constraints) {
    const md = root.navigator && root.navigator.mediaDevices;
    if (!md || !md.getUserMedia) {
      throw new CamagentRTCError(
        'NOT_SUPPORTED',
        'camera and microphone need a secure context (https://, or http://localhost) and a browser with getUserMedia'
      );
    }
    try {
      return await md.getUserMedia(constraints);
    } catch (e) {
      const code =
        e.name === 'NotAllowedError' || e.name === 'SecurityError'
          ? 'PERMISSION_DENIED'
          : e.name === 'NotFoundError' || e.name === 'OverconstrainedError'
            ? 'DEVICE_NOT_FOUND'
            : 'MEDIA_ERROR';
      throw new CamagentRTCError(code, `getUserMedia: ${e.name}: ${e.message}`);
    }
  }

  async function createMicrophoneAudioTrack(config = {}) {
    const stream = await getUserMedia({ audio: audioConstraints(config) });
    return new LocalAudioTrack(stream.getAudioTracks()[0]);
  }

  async function createCameraVideoTrack(config = {}) {
    const stream = await getUserMedia({ video: videoConstraints(config) });
    return new LocalVideoTrack(stream.getVideoTracks()[0]);
  }

  // One getUserMedia call, so the browser asks for permission once.
  async function createMicrophoneAndCameraTracks(audioConfig = {}, videoConfig = {}) {
    const stream = await getUserMedia({ audio: audioConstraints(audioConfig), video: videoConstraints(videoConfig) });
    return [new LocalAudioTrack(stream.getAudioTracks()[0]), new LocalVideoTrack(stream.getVideoTracks()[0])];
  }

  // ---------------------------------------------------------------------------------------------
  // Remote users and tracks

  class RemoteTrack extends BaseTrack {
    constructor(mediaStreamTrack, kind, uid, transport) {
      super(mediaStreamTrack, kind);
      this._uid = uid;
      this._transport = transport || { transport: 'webrtc', reason: 'WebRTC', codec: '' };
      this._channelVideo = null; // the decoder of a data-channel video track
    }

    getUserId() {
      return this._uid;
    }

    /**
     * How the track reaches this browser: {transport: 'webrtc' | 'datachannel', reason, codec}.
     * 'datachannel' is the fallback for H.264 a browser's WebRTC cannot decode (WebCodecs).
     */
    getTransport() {
      return Object.assign({}, this._transport);
    }

    /** Counters of a data-channel video track's decoder (null on WebRTC). */
    getDecoderStats() {
      return this._channelVideo ? this._channelVideo.stats() : null;
    }

    _release() {
      this.stop();
      if (this._channelVideo) {
        this._channelVideo.close();
        this._channelVideo = null;
      }
    }
  }

  class RemoteAudioTrack extends RemoteTrack {
    constructor(mediaStreamTrack, uid, transport) {
      super(mediaStreamTrack, 'audio', uid, transport);
    }

    /** Playback volume, 0–100. */
    setVolume(volume) {
      this._volume = volume;
      if (this._player) this._player.setVolume(volume);
    }
  }

  class RemoteVideoTrack extends RemoteTrack {
    constructor(mediaStreamTrack, uid, transport) {
      super(mediaStreamTrack, 'video', uid, transport);
    }
  }

  /** Another user in the channel, as client.remoteUsers lists it. */
  class RemoteUser {
    constructor(uid) {
      this.uid = uid;
      this.hasAudio = false;
      this.hasVideo = false;
      this.audioTrack = null;
      this.videoTrack = null;
      // The published tracks' codecs (MIME types, e.g. video/H264), when the hub says.
      this.audioCodec = '';
      this.videoCodec = '';
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Video over a data channel (the fallback for H.264 that WebRTC cannot decode)
  //
  // The hub sends a video track's H.264 access units, as they arrive from the device, on a data
  // channel of the subscribe connection (the same ICE, DTLS and token as the WebRTC tracks).
  // WebCodecs decodes them, and the pictures become a MediaStreamTrack again (a
  // MediaStreamTrackGenerator where there is one, else a canvas's captureStream), so that
  // track.play() and getMediaStreamTrack() work as for a WebRTC track. Framing: docs/protocol.md.

  const DC_HEADER = 12;
  const DC_FLAG_KEY = 1;
  const DC_FLAG_FIRST = 2;
  const DC_FLAG_LAST = 4;
  // Beyond this many chunks waiting in the decoder, delta frames are skipped to the next keyframe.
  const DC_MAX_DECODE_QUEUE = 8;
  // Decoder errors in a row, with no picture, before the track counts as unplayable.
  const DC_MAX_DECODER_ERRORS = 4;

  function webrtcReceives(mime) {
    const R = root.RTCRtpReceiver;
    const caps = R && R.getCapabilities && R.getCapabilities(mime.split('/')[0]);
    return !!caps && caps.codecs.some((c) => c.mimeType.toLowerCase() === mime.toLowerCase());
  }

  let h264Probe = null;
  // Whether WebCodecs decodes constrained-baseline H.264 (probed once; needs a secure context).
  function webCodecsDecodesH264() {
    if (!h264Probe) {
      h264Probe = (async () => {
        if (typeof root.VideoDecoder !== 'function' || typeof root.EncodedVideoChunk !== 'function') return false;
        try {
          const r = await root.VideoDecoder.isConfigSupported({ codec: 'avc1.42e01f', optimizeForLatency: true });
          return !!(r && r.supported);
        } catch (e) {
          return false;
        }
      })();
    }
    return h264Probe;
  }

  // The SPS of an Annex B access unit (from its NAL header byte), or null.
  function findSPS(au) {
    for (let i = 0; i + 6 < au.length; i++) {
      if (au[i] === 0 && au[i + 1] === 0 && au[i + 2] === 1) {
        if ((au[i + 3] & 0x1f) === 7) return au.subarray(i + 3);
        i += 2;
      }
    }
    return null;
  }

  // avc1.PPCCLL (RFC 6381) from an SPS: profile_idc, the constraint flags, level_idc.
  function avcCodec(sps) {
    const hex = (b) => b.toString(16).padStart(2, '0');
    return `avc1.${hex(sps[1])}${hex(sps[2])}${hex(sps[3])}`;
  }

  class ChannelVideo {
    constructor(channel, onFailed) {
      this._channel = channel;
      this._onFailed = onFailed;
      this._parts = null; // the fragments of the access unit being received
      this._next = 0; // the index of the fragment expected next
      this._number = -1; // the number of the last whole access unit
      this._waitKey = true;
      this._codec = null;
      this._decoder = null;
      this._errors = 0;
      this._tsBase = null;
      this._tsLast = 0;
      this._tsWraps = 0;
      this._closed = false;
      this._stats = { received: 0, decoded: 0, skipped: 0, keyframeRequests: 0, decoderErrors: 0, output: '' };
      this._arrivals = new Map(); // chunk timestamp → when its last fragment arrived
      this._decodeMs = { sum: 0, max: 0, n: 0 }; // last fragment in → picture out
      this._makeOutput();
      channel.binaryType = 'arraybuffer';
      channel.addEventListener('message', (e) => this._onMessage(e.data));
    }

    // The pictures' way back into a MediaStreamTrack.
    _makeOutput() {
      if (typeof root.MediaStreamTrackGenerator === 'function') {
        this._generator = new root.MediaStreamTrackGenerator({ kind: 'video' });
        this._writer = this._generator.writable.getWriter();
        this.track = this._generator;
        this._stats.output = 'MediaStreamTrackGenerator';
        return;
      }
      this._canvas = root.document.createElement('canvas');
      this._canvas.width = 2;
      this._canvas.height = 2;
      this._ctx = this._canvas.getContext('2d');
      this.track = this._canvas.captureStream().getVideoTracks()[0];
      this._stats.output = 'canvas.captureStream';
    }

    stats() {
      const d = this._decodeMs;
      return Object.assign({ codec: this._codec }, this._stats, {
        decodeMsMean: d.n ? Math.round((d.sum / d.n) * 10) / 10 : null,
        decodeMsMax: d.n ? Math.round(d.max * 10) / 10 : null,
      });
    }

    _onMessage(data) {
      if (this._closed || !(data instanceof ArrayBuffer) || data.byteLength < DC_HEADER) return;
      const b = new Uint8Array(data);
      const v = new DataView(data);
      if (b[0] !== 1) return;
      const flags = b[1];
      const number = v.getUint32(2);
      const index = v.getUint16(10);
      if (flags & DC_FLAG_FIRST) {
        if (this._parts) this._gap(); // the previous unit's last fragment never came
        this._parts = [];
        this._next = 0;
        this._partNumber = number;
      }
      if (!this._parts || number !== this._partNumber || index !== this._next) {
        this._parts = null;
        this._gap();
        return;
      }
      this._parts.push(b.subarray(DC_HEADER));
      this._next++;
      if (!(flags & DC_FLAG_LAST)) return;
      const parts = this._parts;
      this._parts = null;
      let size = 0;
      for (const p of parts) size += p.length;
      const au = new Uint8Array(size);
      let off = 0;
      for (const p of parts) {
        au.set(p, off);
        off += p.length;
      }
      this._unit(number, v.getUint32(6), (flags & DC_FLAG_KEY) !== 0, au);
    }

    // Units were lost: nothing decodes until a keyframe, which is asked for once.
    _gap() {
      if (this._waitKey) return;
      this._waitKey = true;
      this._requestKeyframe();
    }

    _requestKeyframe() {
      if (this._channel.readyState !== 'open') return;
      this._stats.keyframeRequests++;
      try {
        this._channel.send('keyframe');
      } catch (e) {
        log.debug('keyframe request not sent:', e.message);
      }
    }

    _unit(number, rtpTime, key, au) {
      this._stats.received++;
      if (this._number >= 0 && number !== ((this._number + 1) >>> 0)) this._gap();
      this._number = number;
      if (this._waitKey && !key) {
        this._stats.skipped++;
        return;
      }
      if (key) {
        const sps = findSPS(au);
        const codec = sps ? avcCodec(sps) : this._codec || 'avc1.42e01f';
        if (!this._decoder || this._decoder.state === 'closed' || codec !== this._codec) this._configure(codec);
        this._waitKey = false;
      } else if (this._decoder.decodeQueueSize > DC_MAX_DECODE_QUEUE) {
        this._stats.skipped++;
        this._gap();
        return;
      }
      const timestamp = this._micros(rtpTime);
      if (this._arrivals.size > 64) this._arrivals.clear(); // outputs that never came
      this._arrivals.set(timestamp, root.performance.now());
      try {
        this._decoder.decode(new root.EncodedVideoChunk({ type: key ? 'key' : 'delta', timestamp, data: au }));
      } catch (e) {
        this._decoderError(e);
      }
    }

    // The RTP time (90 kHz, 32 bits) as microseconds since the first unit.
    _micros(rtpTime) {
      if (this._tsBase === null) this._tsBase = rtpTime;
      if (rtpTime < this._tsLast && this._tsLast - rtpTime > 0x80000000) this._tsWraps++;
      this._tsLast = rtpTime;
      const ticks = this._tsWraps * 4294967296 + rtpTime - this._tsBase;
      return Math.round((ticks * 1000) / 90);
    }

    _configure(codec) {
      if (this._decoder && this._decoder.state !== 'closed') this._decoder.close();
      this._codec = codec;
      this._decoder = new root.VideoDecoder({
        output: (frame) => this._present(frame),
        error: (e) => this._decoderError(e),
      });
      this._decoder.configure({ codec, optimizeForLatency: true });
    }

    _decoderError(e) {
      if (this._closed) return;
      this._stats.decoderErrors++;
      log.warn('video decoder error:', (e && e.message) || e);
      if (++this._errors >= DC_MAX_DECODER_ERRORS && this._stats.decoded === 0) {
        this._onFailed(new CamagentRTCError('CODEC_NOT_SUPPORTED', `WebCodecs cannot decode this ${this._codec} stream: ${(e && e.message) || e}`));
        return;
      }
      this._codec = null; // a new decoder at the next keyframe
      this._waitKey = false;
      this._gap();
    }

    _present(frame) {
      if (this._closed) {
        frame.close();
        return;
      }
      this._errors = 0;
      this._stats.decoded++;
      const arrived = this._arrivals.get(frame.timestamp);
      if (arrived !== undefined) {
        this._arrivals.delete(frame.timestamp);
        const ms = root.performance.now() - arrived;
        this._decodeMs.sum += ms;
        this._decodeMs.n++;
        this._decodeMs.max = Math.max(this._decodeMs.max, ms);
      }
      if (this._writer) {
        this._writer.write(frame).catch(() => {}); // the sink closes the frame
        return;
      }
      if (this._canvas.width !== frame.displayWidth || this._canvas.height !== frame.displayHeight) {
        this._canvas.width = frame.displayWidth;
        this._canvas.height = frame.displayHeight;
      }
      this._ctx.drawImage(frame, 0, 0);
      frame.close();
    }

    close() {
      if (this._closed) return;
      this._closed = true;
      if (this._decoder && this._decoder.state !== 'closed') this._decoder.close();
      if (this._writer) this._writer.close().catch(() => {});
      this.track.stop();
      if (this._channel.readyState === 'open' || this._channel.readyState === 'connecting') this._channel.close();
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Signalling: the WebSocket, requests paired with replies by id, and timeouts.

  class Signalling {
    constructor(url, handlers) {
      this._url = url;
      this._handlers = handlers; // {onOffer(msg), onEvent(msg), onClose(code, reason)}
      this._nextId = 1;
      this._pending = new Map();
      this._ws = null;
      this._closed = false;
    }

    open(timeoutMs) {
      return new Promise((resolve, reject) => {
        let ws;
        try {
          ws = new root.WebSocket(this._url);
        } catch (e) {
          reject(new CamagentRTCError('INVALID_PARAMS', `cannot open ${this._url}: ${e.message}`));
          return;
        }
        this._ws = ws;
        let opened = false;
        const timer = setTimeout(() => {
          if (opened) return;
          reject(new CamagentRTCError('TIMEOUT', `no answer from ${this._url} within ${timeoutMs} ms`));
          this.close();
        }, timeoutMs);
        ws.onopen = () => {
          opened = true;
          clearTimeout(timer);
          resolve();
        };
        ws.onmessage = (e) => this._onMessage(e.data);
        ws.onclose = (e) => {
          clearTimeout(timer);
          if (!opened) {
            reject(new CamagentRTCError('NETWORK_ERROR', `cannot connect to ${this._url} (close code ${e.code})`));
          }
          this._onClose(e.code, e.reason);
        };
        // The close event that always follows carries what there is to know.
        ws.onerror = () => {};
      });
    }

    get isOpen() {
      return !!this._ws && this._ws.readyState === 1;
    }

    send(msg) {
      if (!this.isOpen) throw new CamagentRTCError('WS_ABORT', 'the signalling connection is closed');
      log.debug('→', msg.type, msg);
      this._ws.send(JSON.stringify(msg));
    }

    // Sends a request and resolves with the hub's reply; rejects with the hub's error code.
    request(type, fields = {}, timeoutMs = REQUEST_TIMEOUT_MS) {
      return new Promise((resolve, reject) => {
        const id = this._nextId++;
        const timer = setTimeout(() => {
          this._pending.delete(id);
          reject(new CamagentRTCError('TIMEOUT', `no reply to ${type} within ${timeoutMs} ms`));
        }, timeoutMs);
        this._pending.set(id, { type, resolve, reject, timer });
        try {
          this.send(Object.assign({ type, id }, fields));
        } catch (e) {
          clearTimeout(timer);
          this._pending.delete(id);
          reject(e);
        }
      });
    }

    close() {
      if (this._ws && this._ws.readyState <= 1) this._ws.close(1000, 'bye');
    }

    _onMessage(data) {
      let msg;
      try {
        msg = JSON.parse(data);
      } catch (e) {
        log.warn('ignoring a signalling message that is not JSON');
        return;
      }
      log.debug('←', msg.type, msg);
      switch (msg.type) {
        case 'reply': {
          const p = this._pending.get(msg.id);
          if (!p) {
            log.debug('reply to an unknown or timed-out request', msg.id);
            return;
          }
          this._pending.delete(msg.id);
          clearTimeout(p.timer);
          if (msg.ok) {
            p.resolve(msg);
          } else {
            const err = msg.error || {};
            // A REDIRECT names the hub that holds the channel (error.url).
            const data = typeof err.url === 'string' ? { url: err.url } : undefined;
            p.reject(new CamagentRTCError(err.code || 'INTERNAL', err.message || `${p.type} failed`, data));
          }
          return;
        }
        case 'offer':
          this._handlers.onOffer(msg);
          return;
        case 'event':
          this._handlers.onEvent(msg);
          return;
        default:
          log.warn('ignoring an unknown signalling message type', msg.type);
      }
    }

    _onClose(code, reason) {
      if (this._closed) return;
      this._closed = true;
      for (const p of this._pending.values()) {
        clearTimeout(p.timer);
        p.reject(new CamagentRTCError('WS_ABORT', `the signalling connection closed during ${p.type}`));
      }
      this._pending.clear();
      this._handlers.onClose(code, reason);
    }
  }

  // For each mid of an SDP, the codecs (lower-case MIME types) its m-line accepts; none when the
  // m-line is rejected (port 0).
  function answerCodecs(sdp) {
    const out = new Map();
    let kind = null;
    let port = 0;
    let codecs = null;
    for (const line of sdp.split(/\r?\n/)) {
      let m;
      if ((m = /^m=(\w+) (\d+)/.exec(line))) {
        kind = m[1];
        port = Number(m[2]);
        codecs = new Set();
      } else if (codecs && (m = /^a=mid:(\S+)/.exec(line))) {
        out.set(m[1], codecs);
      } else if (codecs && port !== 0 && (m = /^a=rtpmap:\d+ ([^/\s]+)/.exec(line))) {
        codecs.add(`${kind}/${m[1]}`.toLowerCase());
      }
    }
    return out;
  }

  // ---------------------------------------------------------------------------------------------
  // Codec preference

  // Orders the codec list so the wanted video codec comes first. For H.264 the device-friendly
  // variant (packetization-mode=1, constrained baseline 42e0xx) goes first of all, since that is
  // what the hub forwards to devices without transcoding.
  function preferCodec(codecs, codec) {
    const mime = { h264: 'video/h264', vp8: 'video/vp8', vp9: 'video/vp9', av1: 'video/av1' }[codec];
    if (!mime) return codecs;
    const rank = (c) => {
      if (c.mimeType.toLowerCase() !== mime) return 3;
      if (codec !== 'h264') return 0;
      const fmtp = c.sdpFmtpLine || '';
      const pm1 = /packetization-mode=1/.test(fmtp);
      const cb = /profile-level-id=42e0/i.test(fmtp);
      return pm1 && cb ? 0 : pm1 ? 1 : 2;
    };
    return codecs
      .map((c, i) => ({ c, i }))
      .sort((a, b) => rank(a.c) - rank(b.c) || a.i - b.i)
      .map((x) => x.c);
  }

  function setVideoCodecPreference(transceiver, codec) {
    if (typeof transceiver.setCodecPreferences !== 'function') return;
    // Browsers validate the list against the receiver's capabilities, the sender's, or both,
    // depending on version; try each source before giving up (the default order still works).
    for (const source of [root.RTCRtpReceiver, root.RTCRtpSender]) {
      const caps = source && source.getCapabilities && source.getCapabilities('video');
      if (!caps) continue;
      try {
        transceiver.setCodecPreferences(preferCodec(caps.codecs, codec));
        return;
      } catch (e) {
        log.debug('setCodecPreferences refused:', e.message);
      }
    }
    log.warn(`could not prefer ${codec}; the browser's default codec order applies`);
  }

  // ---------------------------------------------------------------------------------------------
  // The client

  const State = Object.freeze({
    DISCONNECTED: 'DISCONNECTED',
    CONNECTING: 'CONNECTING',
    CONNECTED: 'CONNECTED',
    RECONNECTING: 'RECONNECTING',
    DISCONNECTING: 'DISCONNECTING',
  });

  // After a broken connection the client tries to rejoin at these delays, about 10 s in all:
  // the hub keeps a user's place in the channel that long (docs/protocol.md).
  const RECONNECT_DELAYS_MS = [300, 700, 1500, 2500, 2500, 2500];
  // A rejoin the entry hub redirected to a hub that cannot be reached (the channel's hub died;
  // its lease in the cluster's directory, 3 s, has not run out yet) is tried again after this,
  // without using up the delays above, for up to HOLDER_RETRY_FOR_MS.
  const HOLDER_RETRY_MS = 400;
  const HOLDER_RETRY_FOR_MS = 60000;
  // REDIRECT replies followed for one join (hubs in a cluster send a user to the hub that holds
  // its channel: docs/protocol.md).
  const MAX_REDIRECTS = 3;

  const subKey = (uid, kind) => `${uid}:${kind}`;

  class Client extends EventEmitter {
    constructor(config = {}) {
      super();
      this.mode = config.mode || 'rtc';
      this.codec = (config.codec || 'h264').toLowerCase();
      // 'auto' (the default): WebRTC, or H.264 over a data channel when WebRTC cannot decode it
      // and WebCodecs can; 'rtp' or 'datachannel' force one (tests, measurements).
      this.videoTransport = config.videoTransport || 'auto';
      this._server = config.server || null;
      this._iceServers = config.iceServers || [];
      this._timeoutMs = config.requestTimeoutMs || REQUEST_TIMEOUT_MS;
      this.connectionState = State.DISCONNECTED;
      this.channelName = null;
      this.uid = null;
      this.appId = null;
      this.remoteUsers = [];
      this.localTracks = [];
      this.tokenExpiresAt = 0;
      this._reset();
    }

    // Per-session state, cleared on every leave or disconnect.
    _reset() {
      this._sig = null;
      this._pubPC = null;
      this._subPC = null;
      // publish: kind → RTCRtpTransceiver, reused across unpublish/publish to keep one m-line per kind
      this._pubTransceivers = new Map();
      this._pubQueue = new SerialQueue();
      this._offerQueue = new SerialQueue();
      // subscribe: mid → {uid, kind} from the hub's offers; "uid:kind" → {mid, track} delivered
      this._midMap = new Map();
      this._received = new Map();
      this._subscriptions = new Map(); // "uid:kind" → pending {resolve, reject, mid, label, timer}
      this._channels = new Map(); // label → RTCDataChannel the hub opened on the subscribe connection
      this._pingTimer = null;
      this._closeReason = null;
      this._joinedAt = 0;
      this._lastStats = null;
      // ICE restarts: 'publish'/'subscribe' → {lostAt, timer, tries}
      this._paths = {};
      this._iceRestarts = 0;
    }

    _setState(state, reason) {
      const prev = this.connectionState;
      if (prev === state) return;
      this.connectionState = state;
      this.emit('connection-state-change', state, prev, reason);
    }

    _user(uid) {
      return this.remoteUsers.find((u) => u.uid === uid) || null;
    }

    _requireJoined(what) {
      if (this.connectionState !== State.CONNECTED || !this._sig) {
        throw new CamagentRTCError('INVALID_OPERATION', `${what}: join a channel first`);
      }
    }

    /**
     * Joins a channel. Resolves with this user's uid (the hub assigns one when uid is null, 0 or
     * omitted). Rejects with a CamagentRTCError whose code is the hub's (TOKEN_EXPIRED, …).
     */
    async join(appId, channel, token, uid) {
      if (this.connectionState !== State.DISCONNECTED) {
        throw new CamagentRTCError('INVALID_OPERATION', `join: the client is ${this.connectionState}`);
      }
      if (typeof appId !== 'string' || !appId || appId.length > 64) {
        throw new CamagentRTCError('INVALID_PARAMS', 'join: appId must be a string of 1-64 bytes');
      }
      if (!validChannel(channel)) {
        throw new CamagentRTCError('INVALID_PARAMS', 'join: channel must be 1-64 printable ASCII characters');
      }
      const wantUID = normaliseUID(uid);
      const url = signallingURL(this._server);
      if (!url) throw new CamagentRTCError('INVALID_PARAMS', 'join: no server given and the page has no origin');

      this._reset();
      this._setState(State.CONNECTING);
      let reply, sig;
      try {
        const fields = { appId, channel, uid: wantUID };
        if (token) fields.token = token;
        ({ sig, reply } = await this._openAndJoin(url, fields));
      } catch (e) {
        const err = toRTCError(e, 'NETWORK_ERROR');
        // Unless leave() has already ended this attempt (and perhaps a new join begun).
        if (!err._stale) this._setState(State.DISCONNECTED, err.code);
        throw err;
      }
      if (this._sig !== sig) {
        // leave() was called while joining.
        sig.close();
        throw new CamagentRTCError('WS_ABORT', 'join: left before the join completed');
      }

      this.appId = appId;
      this.channelName = channel;
      this._token = token || null; // for a rejoin after a broken connection
      this.uid = reply.uid;
      this.tokenExpiresAt = reply.expiresAt || 0;
      // STUN/TURN servers with short-lived credentials from the hub, after the app's own.
      this._hubIceServers = Array.isArray(reply.iceServers) ? reply.iceServers : [];
      this._joinedAt = Date.now();
      this.remoteUsers = [];
      for (const u of reply.users || []) {
        if (u.uid === this.uid) continue;
        const user = new RemoteUser(u.uid);
        user.hasAudio = !!u.audio;
        user.hasVideo = !!u.video;
        user.audioCodec = u.audioCodec || '';
        user.videoCodec = u.videoCodec || '';
        this.remoteUsers.push(user);
      }
      this._pingTimer = setInterval(() => this._ping(), PING_INTERVAL_MS);
      this._setState(State.CONNECTED);

      // As in the cloud SDKs, the users already in the channel are announced with the same events
      // as later arrivals, so one handler covers both. They run after join() resolves.
      const present = this.remoteUsers.slice();
      setTimeout(() => {
        if (this._sig !== sig) return;
        for (const user of present) {
          if (!this.remoteUsers.includes(user)) continue;
          this.emit('user-joined', user);
          if (user.hasAudio) this.emit('user-published', user, 'audio');
          if (user.hasVideo) this.emit('user-published', user, 'video');
        }
      }, 0);
      return this.uid;
    }

    async _ping() {
      if (!this._sig) return;
      try {
        await this._sig.request('ping');
      } catch (e) {
        log.warn('ping failed:', e.message);
      }
    }

    /** Leaves the channel. Local tracks stay open (close them to release the devices). */
    async leave() {
      const sig = this._sig;
      if (!sig) {
        // Not connected (perhaps between reconnection attempts): release what is kept.
        this._teardown('LEAVE');
        return;
      }
      this._setState(State.DISCONNECTING, 'LEAVE');
      this._closeReason = 'LEAVE';
      if (sig.isOpen) {
        try {
          await sig.request('leave', {}, LEAVE_TIMEOUT_MS);
        } catch (e) {
          log.debug('leave not acknowledged:', e.message);
        }
      }
      // The hub may close the socket first, which has torn the session down already.
      if (this._sig === sig) this._teardown('LEAVE');
      sig.close();
    }

    _onSocketClosed(sig, code, reason) {
      if (this._sig !== sig) return; // an old session's socket
      if (this.connectionState === State.CONNECTING) return; // join() reports this itself
      // A rejoin's socket that fails (the hub is down, or a redirect named a dead one) is the
      // reconnect loop's to retry: tearing down here gave up at the first refused attempt.
      if (this.connectionState === State.RECONNECTING) return;
      const why = this._closeReason || 'NETWORK_ERROR';
      log.info(`signalling closed (${code} ${reason || ''}): ${why}`);
      if ((why === 'NETWORK_ERROR' || why === 'CHANNEL_MOVED') && this.connectionState === State.CONNECTED) {
        this._reconnect(why);
        return;
      }
      this._teardown(why);
    }

    // The connection broke without a goodbye (or the hub said the channel moved to another hub
    // of the cluster: reason CHANNEL_MOVED): rejoin with the same uid and token, publish the
    // same tracks again, and tell the page what it must subscribe to again. The others see this
    // user's tracks go and come back, but not the user (the hub keeps its place for a while).
    async _reconnect(reason = 'NETWORK_ERROR') {
      const { appId, channelName: channel, uid } = this;
      const token = this._token;
      const tracks = this.localTracks.filter((t) => !t._closed);
      if (this._pingTimer) clearInterval(this._pingTimer);
      for (const sub of this._subscriptions.values()) {
        clearTimeout(sub.timer);
        sub.reject(new CamagentRTCError('NETWORK_ERROR', 'subscribe: the connection broke'));
      }
      for (const t of this.localTracks) t._client = null;
      if (this._pubPC) this._pubPC.close();
      if (this._subPC) this._subPC.close();
      this._reset();
      this.localTracks = [];
      this._setState(State.RECONNECTING, reason);
      // Remote tracks died with the connection.
      for (const user of this.remoteUsers) {
        for (const kind of ['audio', 'video']) {
          const flag = kind === 'audio' ? 'hasAudio' : 'hasVideo';
          if (!user[flag]) continue;
          this._dropRemoteTrack(user, kind);
          user[flag] = false;
          this.emit('user-unpublished', user, kind);
        }
      }
      const url = signallingURL(this._server);
      let next = 0;
      let holderSince = 0; // start of a run of rejoins redirected to a hub out of reach
      for (;;) {
        const holderDown = holderSince && Date.now() - holderSince < HOLDER_RETRY_FOR_MS;
        if (!holderDown && next >= RECONNECT_DELAYS_MS.length) break;
        const delay = holderDown ? HOLDER_RETRY_MS : RECONNECT_DELAYS_MS[next++];
        await new Promise((r) => setTimeout(r, delay));
        if (this.connectionState !== State.RECONNECTING) return; // leave() was called
        // Through the hub the app named: in a cluster it sends us on to the channel's hub now.
        let reply, sig;
        try {
          const fields = { appId, channel, uid };
          if (token) fields.token = token;
          ({ sig, reply } = await this._openAndJoin(url, fields));
        } catch (e) {
          const err = toRTCError(e, 'NETWORK_ERROR');
          log.info(`rejoin failed: ${err.code}: ${err.message}`);
          if (err.code !== 'NETWORK_ERROR' && err.code !== 'TIMEOUT' && err.code !== 'WS_ABORT') break; // refused
          holderSince = err._holderDown ? holderSince || Date.now() : 0;
          continue;
        }
        if (this._sig !== sig || this.connectionState !== State.RECONNECTING) {
          sig.close();
          return;
        }
        if (!sig.isOpen) continue; // it closed right after the join reply: another attempt
        this.tokenExpiresAt = reply.expiresAt || this.tokenExpiresAt;
        this._hubIceServers = Array.isArray(reply.iceServers) ? reply.iceServers : [];
        this._pingTimer = setInterval(() => this._ping(), PING_INTERVAL_MS);
        this._setState(State.CONNECTED, 'RECONNECTED');
        const present = new Map();
        for (const u of reply.users || []) if (u.uid !== uid) present.set(u.uid, u);
        for (const user of this.remoteUsers.slice()) {
          if (!present.has(user.uid)) this._onEvent({ type: 'event', event: 'user-left', uid: user.uid, reason: 'timeout' });
        }
        for (const u of present.values()) {
          if (!this._user(u.uid)) this._onEvent({ type: 'event', event: 'user-joined', uid: u.uid });
          if (u.audio) this._onEvent({ type: 'event', event: 'user-published', uid: u.uid, kind: 'audio', codec: u.audioCodec });
          if (u.video) this._onEvent({ type: 'event', event: 'user-published', uid: u.uid, kind: 'video', codec: u.videoCodec });
        }
        if (tracks.length) {
          try {
            await this.publish(tracks);
          } catch (e) {
            log.warn('could not publish again after reconnecting:', e.message);
          }
        }
        return;
      }
      if (this.connectionState === State.RECONNECTING) this._teardown('NETWORK_ERROR');
    }

    // Opens the signalling socket at url and joins, following the hub's REDIRECT replies (at
    // most MAX_REDIRECTS, never from wss: to ws:); this._sig is each socket as it is tried.
    // On an error the socket is closed, and err._stale says leave() (or a new join) took over.
    async _openAndJoin(url, fields) {
      for (let hop = 0; ; hop++) {
        const sig = new Signalling(url, {
          onOffer: (msg) => this._onOffer(msg),
          onEvent: (msg) => this._onEvent(msg),
          onClose: (code, why) => this._onSocketClosed(sig, code, why),
        });
        this._sig = sig;
        let err;
        let opened = false;
        try {
          await sig.open(this._timeoutMs);
          opened = true;
          return { sig, reply: await sig.request('join', fields, this._timeoutMs) };
        } catch (e) {
          err = toRTCError(e, 'NETWORK_ERROR');
          // The hub a redirect named cannot be reached: likely dead, soon replaced.
          if (hop > 0 && !opened) err._holderDown = true;
        }
        sig.close();
        if (this._sig !== sig) {
          err._stale = true;
          throw err;
        }
        this._sig = null;
        if (err.code !== 'REDIRECT') throw err;
        if (hop >= MAX_REDIRECTS) throw new CamagentRTCError('REDIRECT', `join: more than ${MAX_REDIRECTS} redirects`);
        url = redirectURL(url, err.data && err.data.url);
        log.info(`join redirected to ${url}`);
      }
    }

    // Releases everything of the session and reports DISCONNECTED once.
    _teardown(reason) {
      if (this._pingTimer) clearInterval(this._pingTimer);
      for (const sub of this._subscriptions.values()) {
        clearTimeout(sub.timer);
        sub.reject(new CamagentRTCError('WS_ABORT', 'subscribe: the client left the channel'));
      }
      for (const user of this.remoteUsers) {
        if (user.audioTrack) user.audioTrack._release();
        if (user.videoTrack) user.videoTrack._release();
      }
      for (const track of this.localTracks) track._client = null;
      if (this._pubPC) this._pubPC.close();
      if (this._subPC) this._subPC.close();
      this.remoteUsers = [];
      this.localTracks = [];
      this.channelName = null;
      this.uid = null;
      this._reset();
      this._setState(State.DISCONNECTED, reason);
    }

    /** Replaces the token before it expires (see token-privilege-will-expire). */
    async renewToken(token) {
      this._requireJoined('renewToken');
      if (!token) throw new CamagentRTCError('INVALID_PARAMS', 'renewToken: token is required');
      const reply = await this._sig.request('renew', { token }, this._timeoutMs);
      this.tokenExpiresAt = reply.expiresAt || this.tokenExpiresAt;
      this._token = token;
    }

    // ----- publishing

    _newPeerConnection(which) {
      const iceServers = this._iceServers.concat(this._hubIceServers || []);
      const pc = new root.RTCPeerConnection({ iceServers, bundlePolicy: 'max-bundle' });
      pc.addEventListener('iceconnectionstatechange', () => this._watchPath(pc, which));
      return pc;
    }

    // ----- ICE restarts

    // The current peer connection for 'publish' or 'subscribe' (null before it exists).
    _connection(which) {
      return which === 'publish' ? this._pubPC : this._subPC;
    }

    // Follows one peer connection's ICE state. A path that stays disconnected, or fails, while
    // the signalling socket lives is restarted (docs/protocol.md, "restart"); the page hears
    // media-reconnect-start and, once media flows again, media-reconnect-end.
    _watchPath(pc, which) {
      if (pc !== this._connection(which)) return;
      const path = this._paths[which] || (this._paths[which] = { lostAt: 0, timer: null, tries: 0 });
      const st = pc.iceConnectionState;
      if (st === 'connected' || st === 'completed') {
        clearTimeout(path.timer);
        if (path.lostAt) {
          log.info(`media path (${which}) restored after ${Date.now() - path.lostAt} ms`);
          this.emit('media-reconnect-end', which);
        }
        this._paths[which] = { lostAt: 0, timer: null, tries: 0 };
        return;
      }
      if (st !== 'disconnected' && st !== 'failed') return;
      if (!path.lostAt) {
        path.lostAt = Date.now();
        log.warn(`media path (${which}) lost: ICE ${st}`);
        this.emit('media-reconnect-start', which);
      }
      if (path.timer) {
        // Already waiting; a failure cuts short the wait before the first restart.
        if (st !== 'failed' || path.tries > 0) return;
        clearTimeout(path.timer);
      }
      path.timer = setTimeout(() => this._restartIce(pc, which), st === 'failed' ? 0 : ICE_RESTART_AFTER_MS);
    }

    // The hub lost the media path of one of our connections, though ours may look fine (a
    // browser notices a dead path late; when only the uplink died, media still arrives).
    _onRestartRequest(which) {
      const pc = this._connection(which);
      if (!pc || pc.signalingState === 'closed') return;
      const path = this._paths[which] || (this._paths[which] = { lostAt: 0, timer: null, tries: 0 });
      if (path.tries > 0) return; // already restarting
      if (!path.lostAt) {
        path.lostAt = Date.now();
        log.warn(`media path (${which}) lost at the hub`);
        this.emit('media-reconnect-start', which);
      }
      clearTimeout(path.timer);
      this._restartIce(pc, which, true);
    }

    async _restartIce(pc, which, force) {
      const path = this._paths[which];
      if (!path || pc !== this._connection(which)) return;
      path.timer = null;
      const st = pc.iceConnectionState;
      if (pc.signalingState === 'closed') return;
      if (!force && (st === 'connected' || st === 'completed')) {
        // Back (after a restart the hub asked for, the state may never have left connected).
        if (path.lostAt) this.emit('media-reconnect-end', which);
        this._paths[which] = { lostAt: 0, timer: null, tries: 0 };
        return;
      }
      // A broken socket is the reconnect's business (rejoin), not a restart's.
      if (this.connectionState !== State.CONNECTED || !this._sig || !this._sig.isOpen) return;
      const sig = this._sig;
      const retry = ICE_RESTART_RETRY_MS[Math.min(path.tries, ICE_RESTART_RETRY_MS.length - 1)];
      path.tries++;
      this._iceRestarts++;
      log.info(`restarting ICE on the ${which} connection (attempt ${path.tries})`);
      path.timer = setTimeout(() => this._restartIce(pc, which), retry); // unless this one works
      try {
        const reply = await sig.request('restart', { connection: which }, this._timeoutMs);
        if (which === 'publish' && this._sig === sig) {
          // The hub restarts the subscribe connection with its own offer; this one is ours.
          this._useHubIceServers(reply.iceServers);
          await this._pubQueue.run(() => this._negotiatePublish({ iceRestart: true }));
        }
      } catch (e) {
        log.warn(`ICE restart of the ${which} connection failed: ${e.message}`);
      }
    }

    // Takes fresh STUN/TURN servers from the hub (their credentials are short-lived) for the
    // next ICE gathering of both connections.
    _useHubIceServers(servers) {
      if (!Array.isArray(servers)) return;
      this._hubIceServers = servers;
      const iceServers = this._iceServers.concat(servers);
      for (const pc of [this._pubPC, this._subPC]) {
        if (!pc || pc.signalingState === 'closed') continue;
        try {
          pc.setConfiguration(Object.assign(pc.getConfiguration(), { iceServers }));
        } catch (e) {
          log.warn('could not update the ICE servers:', e.message);
        }
      }
    }

    /** Publishes local tracks (one audio and one video at most) on the publish connection. */
    async publish(tracks) {
      this._requireJoined('publish');
      const list = Array.isArray(tracks) ? tracks : [tracks];
      for (const t of list) {
        if (!(t instanceof LocalTrack)) throw new CamagentRTCError('INVALID_PARAMS', 'publish: not a local track');
        if (t._closed) throw new CamagentRTCError('INVALID_OPERATION', 'publish: the track is closed');
      }
      const kinds = list.map((t) => t.trackMediaType);
      if (new Set(kinds).size !== kinds.length) {
        throw new CamagentRTCError('INVALID_PARAMS', 'publish: at most one audio and one video track');
      }
      return this._pubQueue.run(async () => {
        this._requireJoined('publish');
        if (!this._pubPC) this._pubPC = this._newPeerConnection('publish');
        const added = [];
        for (const track of list) {
          const kind = track.trackMediaType;
          const current = this.localTracks.find((t) => t.trackMediaType === kind);
          if (current === track) continue;
          if (current) throw new CamagentRTCError('INVALID_OPERATION', `publish: a ${kind} track is already published`);
          added.push(track);
        }
        for (const track of added) {
          const kind = track.trackMediaType;
          const mst = track.getMediaStreamTrack();
          let tr = this._pubTransceivers.get(kind);
          if (tr) {
            await tr.sender.replaceTrack(mst);
            tr.direction = 'sendonly';
          } else {
            tr = this._pubPC.addTransceiver(mst, { direction: 'sendonly' });
            if (kind === 'video') setVideoCodecPreference(tr, this.codec);
            this._pubTransceivers.set(kind, tr);
          }
          track._client = this;
          this.localTracks.push(track);
        }
        if (!added.length) return;
        try {
          await this._negotiatePublish();
        } catch (e) {
          // Refused (e.g. NO_PRIVILEGE): what the hub accepted before stays as it was.
          await this._rollbackPublish(added);
          throw e;
        }
      });
    }

    async _rollbackPublish(tracks) {
      const pc = this._pubPC;
      if (!pc || pc.signalingState === 'closed') return;
      if (pc.signalingState === 'have-local-offer') {
        await pc.setLocalDescription({ type: 'rollback' }).catch(() => {});
      }
      for (const track of tracks) {
        this.localTracks = this.localTracks.filter((t) => t !== track);
        track._client = null;
        const tr = this._pubTransceivers.get(track.trackMediaType);
        if (tr && pc.signalingState !== 'closed') {
          await tr.sender.replaceTrack(null).catch(() => {});
          tr.direction = 'inactive';
        }
      }
    }

    /** Unpublishes the given tracks, or all published tracks. */
    async unpublish(tracks) {
      if (!this._sig) return;
      const sig = this._sig;
      return this._pubQueue.run(async () => {
        const list = tracks === undefined ? this.localTracks.slice() : Array.isArray(tracks) ? tracks : [tracks];
        const pc = this._pubPC;
        let changed = false;
        for (const track of list) {
          const i = this.localTracks.indexOf(track);
          if (i < 0) continue;
          this.localTracks.splice(i, 1);
          track._client = null;
          const tr = this._pubTransceivers.get(track.trackMediaType);
          if (tr && pc.signalingState !== 'closed') {
            await tr.sender.replaceTrack(null);
            // leave() may have closed the connection meanwhile: then there is nothing to change.
            if (pc.signalingState === 'closed') return;
            tr.direction = 'inactive';
          }
          changed = true;
        }
        if (changed && this._sig === sig && sig.isOpen) await this._negotiatePublish();
      });
    }

    // Client offers, the hub answers: one round trip with a complete SDP (no trickle).
    // options: createOffer's ({iceRestart: true} for an ICE restart).
    async _negotiatePublish(options) {
      const pc = this._pubPC;
      const sig = this._sig;
      if (!pc || !sig) throw new CamagentRTCError('INVALID_OPERATION', 'publish: the client left the channel');
      const offer = await pc.createOffer(options);
      await pc.setLocalDescription(offer);
      await waitIceGatheringComplete(pc, ICE_GATHERING_TIMEOUT_MS);
      const reply = await sig.request('publish', { sdp: pc.localDescription.sdp }, this._timeoutMs);
      if (pc.signalingState === 'closed') return;
      try {
        await pc.setRemoteDescription({ type: 'answer', sdp: reply.sdp });
      } catch (e) {
        throw new CamagentRTCError('NEGOTIATION_FAILED', `publish: the hub's answer was refused: ${e.message}`);
      }
    }

    // ----- subscribing

    /**
     * Subscribes to a remote user's audio or video. Resolves with the remote track once it has
     * arrived on the subscribe connection, and sets user.audioTrack / user.videoTrack.
     */
    async subscribe(user, mediaType) {
      this._requireJoined('subscribe');
      const uid = typeof user === 'object' && user !== null ? user.uid : user;
      if (mediaType !== 'audio' && mediaType !== 'video') {
        throw new CamagentRTCError('INVALID_PARAMS', `subscribe: mediaType must be audio or video, got ${mediaType}`);
      }
      const key = subKey(uid, mediaType);
      if (this._subscriptions.has(key)) return this._subscriptions.get(key).promise;
      const ru = this._user(uid);
      if (ru && ru[mediaType + 'Track']) return ru[mediaType + 'Track'];
      if (!this._subPC) this._createSubscribePC();

      let sub;
      const promise = new Promise((resolve, reject) => {
        sub = { uid, kind: mediaType, resolve, reject, replied: false, mid: null, label: null, promise: null };
      });
      sub.promise = promise;
      // One deadline for the whole thing: the reply, the offer and the track.
      sub.timer = setTimeout(() => {
        this._subscriptions.delete(key);
        sub.reject(new CamagentRTCError('TIMEOUT', `subscribe ${key}: no track within ${this._timeoutMs} ms`));
      }, this._timeoutMs);
      this._subscriptions.set(key, sub);
      this._requestSubscription(key, sub);
      return promise;
    }

    // Chooses how the track comes (video: WebRTC or the data channel), then asks the hub.
    async _requestSubscription(key, sub) {
      const sig = this._sig;
      let reply;
      try {
        if (!sub.transport) Object.assign(sub, await this._chooseTransport(sub.uid, sub.kind));
        if (this._subscriptions.get(key) !== sub) return;
        if (this._sig !== sig || !sig) throw new CamagentRTCError('WS_ABORT', 'subscribe: the client left the channel');
        const fields = { uid: sub.uid, kind: sub.kind };
        if (sub.transport === 'datachannel') fields.transport = 'datachannel';
        reply = await sig.request('subscribe', fields, this._timeoutMs);
      } catch (err) {
        this._failSubscription(key, sub, err);
        return;
      }
      if (this._subscriptions.get(key) !== sub) return;
      sub.replied = true;
      // A hub may not know the mid yet (its offer for this track still to come): then the
      // offer's track map alone tells where the track arrives.
      sub.mid = reply.mid ? String(reply.mid) : null;
      sub.label = reply.label || null;
      this._settleSubscription(key);
    }

    _failSubscription(key, sub, err) {
      clearTimeout(sub.timer);
      if (this._subscriptions.get(key) === sub) this._subscriptions.delete(key);
      sub.reject(toRTCError(err, 'INTERNAL'));
    }

    // How a track will reach this browser: {transport: 'rtp' | 'datachannel', reason}. Only H.264
    // video has a fallback: when WebRTC cannot decode it (Firefox without its OpenH264 plugin)
    // but WebCodecs can, its access units come over a data channel.
    async _chooseTransport(uid, kind) {
      const user = this._user(uid);
      const codec = (user && user[kind + 'Codec']) || '';
      if (kind !== 'video' || this.videoTransport === 'rtp') return { transport: 'rtp', reason: 'WebRTC' };
      if (this.videoTransport === 'datachannel') {
        return { transport: 'datachannel', reason: "createClient({videoTransport: 'datachannel'})" };
      }
      if (!/^video\/h264$/i.test(codec) || webrtcReceives(codec)) {
        return { transport: 'rtp', reason: codec ? `WebRTC decodes ${codec.replace('video/', '')}` : 'WebRTC' };
      }
      if (await webCodecsDecodesH264()) {
        return { transport: 'datachannel', reason: "this browser's WebRTC has no H.264; WebCodecs decodes it" };
      }
      throw new CamagentRTCError(
        'CODEC_NOT_SUPPORTED',
        `subscribe: this browser decodes ${codec} neither in WebRTC nor with WebCodecs`,
        { uid, kind, codec }
      );
    }

    // Resolves a pending subscription once both the hub's reply and the track are here.
    _settleSubscription(key) {
      const sub = this._subscriptions.get(key);
      if (!sub || !sub.replied) return;
      let mst;
      let channelVideo = null;
      if (sub.transport === 'datachannel') {
        const channel = sub.label && this._channels.get(sub.label);
        if (!channel) return;
        channelVideo = new ChannelVideo(channel, (err) => this._onTrackFailed(sub.uid, sub.kind, err));
        mst = channelVideo.track;
      } else {
        const got = this._received.get(key);
        if (!got || (sub.mid !== null && got.mid !== sub.mid)) return;
        mst = got.track;
      }
      this._subscriptions.delete(key);
      clearTimeout(sub.timer);
      const user = this._user(sub.uid);
      const transport = {
        transport: sub.transport === 'datachannel' ? 'datachannel' : 'webrtc',
        reason: sub.reason || 'WebRTC',
        codec: (user && user[sub.kind + 'Codec']) || '',
      };
      const remote =
        sub.kind === 'video' ? new RemoteVideoTrack(mst, sub.uid, transport) : new RemoteAudioTrack(mst, sub.uid, transport);
      remote._channelVideo = channelVideo;
      if (user) {
        user[sub.kind + 'Track'] = remote;
        if (sub.kind === 'video') user.hasVideo = true;
        else user.hasAudio = true;
      }
      sub.resolve(remote);
      if (user && sub.kind === 'video') this.emit('video-transport', user, remote.getTransport());
    }

    // The hub ended a subscription this browser cannot receive (subscribe-failed). A pending one
    // falls back to the data channel when it can, else fails alone; the others play on.
    async _onSubscribeFailed(msg) {
      const kind = msg.kind;
      const key = subKey(msg.uid, kind);
      const user = this._user(msg.uid);
      if (user && msg.codec) user[kind + 'Codec'] = msg.codec;
      this._received.delete(key);
      const e = msg.error || {};
      const err = new CamagentRTCError(e.code || 'CODEC_NOT_SUPPORTED', e.message || `the hub cannot send ${key} to this browser`, {
        uid: msg.uid,
        kind,
        codec: msg.codec || '',
      });
      log.warn(`subscription to ${key} failed: ${err.message}`);
      const sub = this._subscriptions.get(key);
      if (!sub) {
        this._onTrackFailed(msg.uid, kind, err);
        return;
      }
      const canFallBack =
        kind === 'video' && sub.transport === 'rtp' && this.videoTransport === 'auto' && /^video\/h264$/i.test(msg.codec || '');
      if (canFallBack && (await webCodecsDecodesH264()) && this._subscriptions.get(key) === sub) {
        Object.assign(sub, {
          transport: 'datachannel',
          reason: "this browser's WebRTC refused H.264; WebCodecs decodes it",
          replied: false,
          mid: null,
        });
        this._requestSubscription(key, sub);
        return;
      }
      if (this._subscriptions.get(key) === sub) this._failSubscription(key, sub, err);
    }

    // A delivered track stopped being playable: it is released and the page told.
    _onTrackFailed(uid, kind, err) {
      const user = this._user(uid);
      const track = user && user[kind + 'Track'];
      if (!track) return;
      track._release();
      user[kind + 'Track'] = null;
      this.emit('track-failed', user, kind, err);
    }

    /** Stops receiving a remote user's audio or video (or both when mediaType is omitted). */
    async unsubscribe(user, mediaType) {
      this._requireJoined('unsubscribe');
      const uid = typeof user === 'object' && user !== null ? user.uid : user;
      const kinds = mediaType ? [mediaType] : ['audio', 'video'];
      for (const kind of kinds) {
        const ru = this._user(uid);
        if (ru && ru[kind + 'Track']) {
          ru[kind + 'Track']._release();
          ru[kind + 'Track'] = null;
        }
        this._received.delete(subKey(uid, kind));
        try {
          await this._sig.request('unsubscribe', { uid, kind }, this._timeoutMs);
        } catch (e) {
          // Unsubscribing from something already gone is not worth an error.
          if (e.code !== 'NOT_PUBLISHED' && e.code !== 'NO_SUCH_USER') throw e;
        }
      }
    }

    _createSubscribePC() {
      const pc = this._newPeerConnection('subscribe');
      this._subPC = pc;
      // Data-channel video subscriptions: the hub opens one channel per track.
      pc.addEventListener('datachannel', (e) => {
        if (this._subPC !== pc) return;
        this._channels.set(e.channel.label, e.channel);
        e.channel.addEventListener('close', () => {
          if (this._channels.get(e.channel.label) === e.channel) this._channels.delete(e.channel.label);
        });
        for (const [key, sub] of this._subscriptions) {
          if (sub.label === e.channel.label) this._settleSubscription(key);
        }
      });
    }

    // Hub offers are applied strictly one after another: each needs the previous one's answer.
    _onOffer(msg) {
      const sig = this._sig;
      this._offerQueue
        .run(() => this._applyOffer(msg, sig))
        .catch((e) => log.error('could not apply the hub\'s offer:', e));
    }

    async _applyOffer(msg, sig) {
      if (this._sig !== sig || !sig) return;
      if (!this._subPC) this._createSubscribePC();
      const pc = this._subPC;
      // The mapping must be known before the tracks appear.
      for (const [mid, info] of Object.entries(msg.tracks || {})) this._midMap.set(String(mid), info);
      // An ICE-restart offer brings fresh ICE servers for the new gathering.
      if (msg.iceServers) this._useHubIceServers(msg.iceServers);
      await pc.setRemoteDescription({ type: 'offer', sdp: msg.sdp });
      const answer = await pc.createAnswer();
      await pc.setLocalDescription(answer);
      await waitIceGatheringComplete(pc, ICE_GATHERING_TIMEOUT_MS);
      if (this._sig !== sig || pc.signalingState === 'closed') return;
      const accepted = answerCodecs(pc.localDescription.sdp);

      for (const tr of pc.getTransceivers()) {
        if (tr.mid === null) continue;
        const info = this._midMap.get(tr.mid);
        if (!info) continue;
        const key = subKey(info.uid, info.kind);
        const receiving = tr.currentDirection === 'recvonly' || tr.currentDirection === 'sendrecv';
        // An answer without the publisher's codec: the hub will refuse the track (subscribe-failed).
        const user = this._user(info.uid);
        const codec = user && user[info.kind + 'Codec'];
        const playable = !codec || !accepted.has(tr.mid) || accepted.get(tr.mid).has(codec.toLowerCase());
        if (receiving && playable && tr.receiver.track.kind === info.kind) {
          this._received.set(key, { mid: tr.mid, track: tr.receiver.track });
          this._settleSubscription(key);
        } else if (this._received.has(key) && this._received.get(key).mid === tr.mid) {
          this._received.delete(key);
        }
      }
      // The subscriptions this answer completes are resolved before it leaves, and it leaves a
      // task later: the hub sends a new subscriber its keyframe the moment the answer arrives,
      // and a page that plays the track when subscribe() resolves has its <video> attached by
      // then. Otherwise that keyframe was decoded before any element showed the track, and the
      // first picture was the camera's next frame, up to a frame interval later.
      await new Promise((resolve) => setTimeout(resolve, 0));
      if (this._sig !== sig || pc.signalingState === 'closed') return;
      sig.send({ type: 'answer', sdp: pc.localDescription.sdp });
    }

    // ----- events from the hub

    _onEvent(msg) {
      const uid = msg.uid;
      switch (msg.event) {
        case 'restart-ice':
          if (msg.connection === 'publish' || msg.connection === 'subscribe') this._onRestartRequest(msg.connection);
          return;
        case 'user-joined': {
          if (uid === this.uid) return;
          let user = this._user(uid);
          if (!user) {
            user = new RemoteUser(uid);
            this.remoteUsers.push(user);
          }
          this.emit('user-joined', user);
          return;
        }
        case 'subscribe-failed':
          if (msg.kind === 'audio' || msg.kind === 'video') this._onSubscribeFailed(msg);
          return;
        case 'user-published': {
          if (uid === this.uid || (msg.kind !== 'audio' && msg.kind !== 'video')) return;
          let user = this._user(uid);
          if (!user) {
            // Should not happen (user-joined comes first), but a publish is worth more than strictness.
            user = new RemoteUser(uid);
            this.remoteUsers.push(user);
            this.emit('user-joined', user);
          }
          user[msg.kind === 'audio' ? 'hasAudio' : 'hasVideo'] = true;
          if (msg.codec) user[msg.kind + 'Codec'] = msg.codec;
          this.emit('user-published', user, msg.kind);
          return;
        }
        case 'user-unpublished': {
          const user = this._user(uid);
          if (!user || (msg.kind !== 'audio' && msg.kind !== 'video')) return;
          this._dropRemoteTrack(user, msg.kind);
          this.emit('user-unpublished', user, msg.kind);
          return;
        }
        case 'user-left': {
          const user = this._user(uid);
          if (!user) return;
          // A user who leaves also stops publishing: say so first, whether or not the hub did,
          // so a page that cleans up on user-unpublished needs nothing else.
          for (const kind of ['audio', 'video']) {
            if (user[kind === 'audio' ? 'hasAudio' : 'hasVideo']) {
              this._dropRemoteTrack(user, kind);
              this.emit('user-unpublished', user, kind);
            }
          }
          this.remoteUsers = this.remoteUsers.filter((u) => u !== user);
          this.emit('user-left', user, msg.reason || 'quit');
          return;
        }
        case 'token-privilege-will-expire':
          this.emit('token-privilege-will-expire');
          return;
        case 'token-privilege-did-expire':
          this._closeReason = 'TOKEN_EXPIRED';
          this.emit('token-privilege-did-expire');
          return;
        case 'connection-replaced':
          this._closeReason = 'UID_REPLACED';
          return;
        case 'channel-moved':
          // Another hub of the cluster holds the channel now; this hub closes the socket next:
          // rejoin through the hub the app named, which sends us there.
          this._closeReason = 'CHANNEL_MOVED';
          return;
        default:
          log.debug('ignoring event', msg.event);
      }
    }

    _dropRemoteTrack(user, kind) {
      user[kind === 'audio' ? 'hasAudio' : 'hasVideo'] = false;
      const t = user[kind + 'Track'];
      if (t) t._release();
      user[kind + 'Track'] = null;
      this._received.delete(subKey(user.uid, kind));
      const sub = this._subscriptions.get(subKey(user.uid, kind));
      if (sub) {
        this._subscriptions.delete(subKey(user.uid, kind));
        clearTimeout(sub.timer);
        sub.reject(new CamagentRTCError('NOT_PUBLISHED', `subscribe: user ${user.uid} stopped publishing ${kind}`));
      }
    }

    // ----- statistics

    /**
     * A few numbers from both peer connections' getStats(). Bitrates (bits/s) are averaged since
     * the previous call (or since join on the first). RTT is in milliseconds.
     */
    async getRTCStats() {
      const s = {
        Duration: this._joinedAt ? Math.round((Date.now() - this._joinedAt) / 1000) : 0,
        UserCount: this._sig ? this.remoteUsers.length + 1 : 0,
        SendBytes: 0,
        RecvBytes: 0,
        SendBitrate: 0,
        RecvBitrate: 0,
        SendPacketsLost: 0,
        RecvPacketsLost: 0,
        RTT: 0,
        FramesEncoded: 0,
        FramesDecoded: 0,
        RecvFrameRate: 0,
        ICERestarts: this._iceRestarts,
      };
      const rtts = [];
      for (const pc of [this._pubPC, this._subPC]) {
        if (!pc || pc.signalingState === 'closed') continue;
        const report = await pc.getStats();
        report.forEach((r) => {
          if (r.type === 'outbound-rtp') {
            s.SendBytes += r.bytesSent || 0;
            if (r.kind === 'video') s.FramesEncoded += r.framesEncoded || 0;
          } else if (r.type === 'inbound-rtp') {
            s.RecvBytes += r.bytesReceived || 0;
            s.RecvPacketsLost += r.packetsLost || 0;
            if (r.kind === 'video') {
              s.FramesDecoded += r.framesDecoded || 0;
              s.RecvFrameRate += r.framesPerSecond || 0;
            }
          } else if (r.type === 'remote-inbound-rtp') {
            s.SendPacketsLost += r.packetsLost || 0;
          } else if (r.type === 'candidate-pair' && r.nominated && r.state === 'succeeded') {
            if (typeof r.currentRoundTripTime === 'number') rtts.push(r.currentRoundTripTime * 1000);
          }
        });
      }
      // Video over a data channel is decoded outside WebRTC.
      for (const user of this.remoteUsers) {
        const dec = user.videoTrack && user.videoTrack.getDecoderStats();
        if (dec) s.FramesDecoded += dec.decoded;
      }
      if (rtts.length) s.RTT = Math.round(rtts.reduce((a, b) => a + b, 0) / rtts.length);
      const now = Date.now();
      const last = this._lastStats || { at: this._joinedAt || now, sent: 0, recv: 0 };
      const dt = (now - last.at) / 1000;
      if (dt > 0) {
        s.SendBitrate = Math.max(0, Math.round(((s.SendBytes - last.sent) * 8) / dt));
        s.RecvBitrate = Math.max(0, Math.round(((s.RecvBytes - last.recv) * 8) / dt));
      }
      this._lastStats = { at: now, sent: s.SendBytes, recv: s.RecvBytes };
      return s;
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Module functions

  function createClient(config = {}) {
    const codec = (config.codec || 'h264').toLowerCase();
    if (!['h264', 'vp8', 'vp9', 'av1'].includes(codec)) {
      throw new CamagentRTCError('INVALID_PARAMS', `createClient: unknown codec ${config.codec}`);
    }
    return new Client(Object.assign({}, config, { codec }));
  }

  /**
   * Asks the hub's token service for a token: POST /api/token. `server` (optional) is the hub's
   * http(s) or ws(s) address; by default the SDK's own origin. Resolves with the token string.
   */
  async function fetchToken({ appId, channel, uid, role = 'publisher', expireSeconds, server, headers } = {}) {
    const body = { appId, channel, uid: normaliseUID(uid) || 0, role };
    if (expireSeconds !== undefined) body.expireSeconds = expireSeconds;
    let res;
    try {
      res = await root.fetch(httpBase(server) + '/api/token', {
        method: 'POST',
        headers: Object.assign({ 'Content-Type': 'application/json' }, headers || {}),
        body: JSON.stringify(body),
      });
    } catch (e) {
      throw new CamagentRTCError('NETWORK_ERROR', `token service: ${e.message}`);
    }
    const text = await res.text();
    let data = null;
    try {
      data = JSON.parse(text);
    } catch (e) {
      /* not JSON: reported below */
    }
    if (!res.ok || !data || typeof data.token !== 'string') {
      const detail = (data && data.error && (data.error.message || data.error)) || text.trim() || res.statusText;
      throw new CamagentRTCError(
        (data && data.error && data.error.code) || 'TOKEN_SERVICE_ERROR',
        `token service answered ${res.status}: ${typeof detail === 'string' ? detail : JSON.stringify(detail)}`
      );
    }
    return data.token;
  }

  function checkSystemRequirements() {
    return !!(
      root.RTCPeerConnection &&
      root.WebSocket &&
      root.navigator &&
      root.navigator.mediaDevices &&
      root.navigator.mediaDevices.getUserMedia
    );
  }

  async function getDevices() {
    const md = root.navigator && root.navigator.mediaDevices;
    if (!md) throw new CamagentRTCError('NOT_SUPPORTED', 'media devices need a secure context');
    return md.enumerateDevices();
  }

  async function getCameras() {
    return (await getDevices()).filter((d) => d.kind === 'videoinput');
  }

  async function getMicrophones() {
    return (await getDevices()).filter((d) => d.kind === 'audioinput');
  }

  /** 'debug' | 'info' | 'warning' | 'error' | 'none' (or 0–4). */
  function setLogLevel(level) {
    const n = typeof level === 'number' ? level : LOG_LEVELS[level];
    if (n === undefined) throw new CamagentRTCError('INVALID_PARAMS', `unknown log level ${level}`);
    logLevel = n;
  }

  return {
    VERSION,
    ConnectionState: State,
    CamagentRTCError,
    createClient,
    createMicrophoneAudioTrack,
    createCameraVideoTrack,
    createMicrophoneAndCameraTracks,
    fetchToken,
    checkSystemRequirements,
    getDevices,
    getCameras,
    getMicrophones,
    setLogLevel,
    // Exposed for instanceof checks.
    LocalAudioTrack,
    LocalVideoTrack,
    RemoteAudioTrack,
    RemoteVideoTrack,
    RemoteUser,
  };
});
