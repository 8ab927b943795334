// A stand-in for the hub's signalling and SFU, run inside the page under test (injected with
// addInitScript before any page script). It replaces WebSocket for URLs ending in /rtc and plays
// the hub's side of docs/protocol.md with real RTCPeerConnections in the same page: it answers
// the client's publish offers, and for subscriptions it offers the page's own fake camera and
// microphone as the tracks of a remote user. This lets sdk.test.mjs exercise the SDK and pages
// without a hub; the hub-backed tests check the real thing.
(() => {
  'use strict';
  const RealWebSocket = window.WebSocket;

  const hub = {
    // Behaviour, set by the test before the client acts.
    users: [], // [{uid, audio, video}] already in the channel when someone joins
    joinError: null, // {code, message}: refuse joins
    silent: [], // request types never answered (to provoke TIMEOUT)
    replyBeforeOffer: false, // subscribe: reply first, then offer (both orders are legal)
    midInReply: true, // false: subscribe replies carry no mid (as when the hub's offer is still due)
    expiresIn: 3600,
    redirectTo: null, // a hub URL: the next `redirects` joins are answered REDIRECT there
    redirects: 0,
    unreachable: [], // hosts (host:port) whose sockets never open (a dead hub: close 1006)
    // What happened, for assertions.
    received: [], // every client message, in order
    publishOffers: [], // SDPs of publish offers
    publishedTracks: [], // MediaStreamTracks received from the client
    socket: null,
    // Pushes an event to the client, e.g. {event: 'user-left', uid: 7, reason: 'quit'}.
    event(fields) {
      hub.socket._deliver(Object.assign({ type: 'event' }, fields));
    },
    // A user joins and publishes (its media is the page's own fake devices).
    addUser(uid, { audio = true, video = true } = {}) {
      hub.users.push({ uid, audio, video });
      if (!hub.socket) return;
      hub.event({ event: 'user-joined', uid });
      if (audio) hub.event({ event: 'user-published', uid, kind: 'audio' });
      if (video) hub.event({ event: 'user-published', uid, kind: 'video' });
    },
    close(code = 1000) {
      hub.socket._serverClose(code);
    },
  };
  window.mockHub = hub;

  let media = null; // the fake devices' stream, standing in for every remote user's tracks
  const getMedia = () => (media = media || navigator.mediaDevices.getUserMedia({ audio: true, video: true }));

  const gathered = (pc) =>
    pc.iceGatheringState === 'complete'
      ? Promise.resolve()
      : new Promise((r) => pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && r()));

  class MockSocket {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.onopen = this.onmessage = this.onclose = this.onerror = null;
      this._uid = null;
      this._pub = null; // the client's publish connection, hub side
      this._sub = null; // the client's subscribe connection, hub side
      this._subQueue = Promise.resolve();
      this._mids = {}; // mid → {uid, kind}
      if (hub.unreachable.includes(new URL(url).host)) {
        hub.refused = (hub.refused || 0) + 1;
        setTimeout(() => this._serverClose(1006), 5);
        return;
      }
      hub.socket = this;
      setTimeout(() => {
        this.readyState = 1;
        this.onopen && this.onopen({});
      }, 5);
    }

    send(text) {
      const msg = JSON.parse(text);
      hub.received.push(msg);
      if (hub.silent.includes(msg.type)) return;
      this._handle(msg).catch((e) => this._reply(msg, { ok: false, error: { code: 'INTERNAL', message: String(e) } }));
    }

    close(code = 1000, reason = '') {
      if (this.readyState >= 2) return;
      this.readyState = 2;
      setTimeout(() => this._serverClose(code, reason), 1);
    }

    _serverClose(code, reason = '') {
      if (this.readyState === 3) return;
      this.readyState = 3;
      if (this._pub) this._pub.close();
      if (this._sub) this._sub.close();
      this.onclose && this.onclose({ code, reason, wasClean: true });
    }

    _deliver(msg) {
      if (this.readyState !== 1) return;
      // Asynchronous, as a real socket is.
      setTimeout(() => this.onmessage && this.onmessage({ data: JSON.stringify(msg) }), 0);
    }

    _reply(req, fields) {
      this._deliver(Object.assign({ type: 'reply', id: req.id, ok: true }, fields));
    }

    async _handle(msg) {
      switch (msg.type) {
        case 'join':
          if (hub.joinError) {
            this._reply(msg, { ok: false, error: hub.joinError });
            return;
          }
          if (hub.redirects > 0) {
            hub.redirects--;
            this._reply(msg, { ok: false, error: { code: 'REDIRECT', message: 'elsewhere', url: hub.redirectTo } });
            return;
          }
          this._uid = msg.uid == null ? 4242 : msg.uid;
          this._reply(msg, {
            uid: this._uid,
            users: hub.users,
            expiresAt: Math.floor(Date.now() / 1000) + hub.expiresIn,
          });
          return;
        case 'publish': {
          hub.publishOffers.push(msg.sdp);
          if (!this._pub) {
            this._pub = new RTCPeerConnection();
            this._pub.ontrack = (e) => hub.publishedTracks.push(e.track);
          }
          await this._pub.setRemoteDescription({ type: 'offer', sdp: msg.sdp });
          await this._pub.setLocalDescription(await this._pub.createAnswer());
          await gathered(this._pub);
          this._reply(msg, { sdp: this._pub.localDescription.sdp });
          return;
        }
        case 'subscribe':
          this._subQueue = this._subQueue.then(() => this._subscribe(msg));
          return this._subQueue;
        case 'unsubscribe':
          this._subQueue = this._subQueue.then(() => this._unsubscribe(msg));
          return this._subQueue;
        case 'answer':
          await this._sub.setRemoteDescription({ type: 'answer', sdp: msg.sdp });
          if (this._answered) this._answered();
          return;
        case 'renew':
          this._reply(msg, { expiresAt: Math.floor(Date.now() / 1000) + hub.expiresIn });
          return;
        case 'leave':
          this._reply(msg, {});
          setTimeout(() => this._serverClose(1000, 'left'), 5);
          return;
        case 'ping':
          this._reply(msg, {});
          return;
        default:
          this._deliver({ type: 'reply', id: msg.id, ok: false, error: { code: 'BAD_MESSAGE', message: msg.type } });
      }
    }

    async _subscribe(msg) {
      const user = hub.users.find((u) => u.uid === msg.uid);
      if (!user || !user[msg.kind]) {
        this._reply(msg, { ok: false, error: { code: user ? 'NOT_PUBLISHED' : 'NO_SUCH_USER', message: 'no' } });
        return;
      }
      const stream = await getMedia();
      const track = msg.kind === 'audio' ? stream.getAudioTracks()[0] : stream.getVideoTracks()[0];
      if (!this._sub) this._sub = new RTCPeerConnection();
      const tr = this._sub.addTransceiver(track, { direction: 'sendonly' });
      await this._sub.setLocalDescription(await this._sub.createOffer());
      this._mids[tr.mid] = { uid: msg.uid, kind: msg.kind };
      const reply = hub.midInReply ? { mid: tr.mid } : {};
      if (hub.replyBeforeOffer) this._reply(msg, reply);
      await this._sendOffer();
      if (!hub.replyBeforeOffer) this._reply(msg, reply);
    }

    async _unsubscribe(msg) {
      for (const tr of this._sub ? this._sub.getTransceivers() : []) {
        const info = this._mids[tr.mid];
        if (info && info.uid === msg.uid && info.kind === msg.kind && tr.direction === 'sendonly') {
          await tr.sender.replaceTrack(null);
          tr.direction = 'inactive';
        }
      }
      this._reply(msg, {});
      if (this._sub) await this._offer();
    }

    async _offer() {
      await this._sub.setLocalDescription(await this._sub.createOffer());
      await this._sendOffer();
    }

    // Sends the current local offer and waits for the client's answer (one offer at a time).
    async _sendOffer() {
      await gathered(this._sub);
      const answered = new Promise((r) => (this._answered = r));
      this._deliver({ type: 'offer', sdp: this._sub.localDescription.sdp, tracks: this._mids });
      await answered;
    }
  }
  MockSocket.CONNECTING = 0;
  MockSocket.OPEN = 1;
  MockSocket.CLOSING = 2;
  MockSocket.CLOSED = 3;

  window.WebSocket = function (url, protocols) {
    return /\/rtc(\?|$)/.test(new URL(url, location.href).pathname) ? new MockSocket(url) : new RealWebSocket(url, protocols);
  };
  Object.assign(window.WebSocket, { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 });
})();
