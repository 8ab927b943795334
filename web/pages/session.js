// Who is using the pages, shared by every page of the hub: it asks GET /api/session, sends a
// visitor who is not logged in to /login (and back here afterwards), shows the user's name, a
// Log out button and, for admins, the Admin link in the header, and gives the page api(): a
// fetch that sends what the hub asks of every state-changing request (a JSON body, its
// Content-Type and the session's X-CSRF-Token header).
//
// In demo mode (make run) the hub trusts loopback browsers: the session says demo:true, nobody
// logs in and there is nothing to log out of.
//
// window.camagentSession: {ready (a promise of the session), session, api(method, path, body,
// init), csrfHeaders(), devicePermissions(id, entry?), may(id, permission, entry?), logout()}.
'use strict';

(function () {
  const ALL = ['view', 'talk', 'command', 'admin'];

  const state = {
    session: null, // {user, admin, demo, csrf, permissions}
    ready: null,
    api,
    csrfHeaders,
    devicePermissions,
    may,
    logout,
    loginURL,
  };
  window.camagentSession = state;

  // An error from the hub: {"error":{"code","message"}}, or whatever text it sent.
  class HubError extends Error {
    constructor(status, code, message) {
      super(message);
      this.name = 'HubError';
      this.status = status;
      this.code = code;
    }
  }
  state.HubError = HubError;

  function loginURL() {
    const next = location.pathname + location.search;
    return '/login' + (next && next !== '/' ? '?next=' + encodeURIComponent(next) : '');
  }

  function csrfHeaders() {
    return state.session && state.session.csrf ? { 'X-CSRF-Token': state.session.csrf } : {};
  }

  async function parse(res, what) {
    const text = await res.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (e) {
      /* not JSON: reported below when it was an error */
    }
    if (res.ok) return data;
    const err = data && data.error;
    const code = (err && err.code) || String(res.status);
    const message = (err && (err.message || err.code)) || (typeof err === 'string' ? err : text.trim() || res.statusText);
    throw new HubError(res.status, code, `${what} answered ${res.status}: ${message}`);
  }

  // api('POST', '/api/devices/porch/watch', {talk: false}) → the parsed answer (null for 204).
  // A 401 means the session ended (logged out elsewhere, expired, password changed): back to
  // the login page.
  async function api(method, path, body, init = {}) {
    const headers = Object.assign({}, init.headers || {});
    if (method !== 'GET' && method !== 'HEAD') {
      headers['Content-Type'] = 'application/json';
      Object.assign(headers, csrfHeaders());
    }
    const res = await fetch(path, {
      ...init,
      method,
      headers,
      credentials: 'same-origin',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (res.status === 401 && state.session && !state.session.demo && !init.keepalive) {
      location.assign(loginURL());
    }
    return parse(res, `${method} ${path}`);
  }

  // What the user may do on a device: the device list entry's own "permissions" when the hub
  // sent them, else the session's map (the device's entry and "*"), and everything in demo mode.
  function devicePermissions(id, entry) {
    if (entry && Array.isArray(entry.permissions)) return expand(entry.permissions);
    const s = state.session;
    if (!s) return [];
    if (s.demo || s.admin) return ALL.slice();
    const p = s.permissions || {};
    return expand([...(p[id] || []), ...(p['*'] || [])]);
  }

  // admin on a device includes every other permission.
  function expand(perms) {
    return perms.includes('admin') ? ALL.slice() : Array.from(new Set(perms));
  }

  function may(id, permission, entry) {
    return devicePermissions(id, entry).includes(permission);
  }

  async function logout() {
    try {
      await api('POST', '/api/logout');
    } finally {
      location.assign('/login');
    }
  }

  function showHeader(s) {
    const box = document.querySelector('#session');
    if (!box) return;
    document.querySelector('#session-user').textContent = s.demo ? 'demo mode (loopback is trusted)' : s.user;
    const out = document.querySelector('#logout');
    out.hidden = !!s.demo;
    out.addEventListener('click', () => logout().catch(() => {}));
    box.hidden = false;
    const admin = document.querySelector('#admin-link');
    if (admin) admin.hidden = !s.admin;
  }

  async function load() {
    const res = await fetch('/api/session', { credentials: 'same-origin' });
    if (res.status === 401) {
      location.replace(loginURL());
      return new Promise(() => {}); // the page is going away
    }
    const s = await parse(res, 'GET /api/session');
    state.session = Object.assign({ user: '', admin: false, demo: false, csrf: '', permissions: {} }, s || {});
    showHeader(state.session);
    return state.session;
  }

  state.ready = load();
})();
