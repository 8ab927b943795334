// The login page (/login): POST /api/login {user, password}; the hub answers with a session
// cookie (HttpOnly) and the session's CSRF token, and the page goes back to where the visitor
// came from (?next=, a path on this hub only). Already logged in, or a demo-mode hub: straight on.
//
// Hooks: #login-form, #login-user, #login-password, #login, #error, #no-users.
'use strict';

(function () {
  const $ = (sel) => document.querySelector(sel);

  // Only a path on this origin: "/x", never "//host" or "/\host" (which browsers read as a host).
  function nextPath() {
    const next = new URLSearchParams(location.search).get('next') || '/';
    if (!next.startsWith('/') || next.startsWith('//') || next.startsWith('/\\') || next.startsWith('/login')) return '/';
    return next;
  }

  function showError(text) {
    $('#error').hidden = !text;
    $('#error').textContent = text || '';
  }

  async function errorOf(res) {
    let data = null;
    try {
      data = await res.json();
    } catch (e) {
      /* not JSON */
    }
    const err = (data && data.error) || {};
    return { code: err.code || String(res.status), message: err.message || res.statusText || `status ${res.status}` };
  }

  async function login(e) {
    e.preventDefault();
    showError(null);
    $('#login').disabled = true;
    $('#status').textContent = 'Logging in…';
    try {
      const res = await fetch('/api/login', {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ user: $('#login-user').value.trim(), password: $('#login-password').value }),
      });
      if (res.ok) {
        $('#status').textContent = 'Logged in.';
        location.replace(nextPath());
        return;
      }
      const err = await errorOf(res);
      $('#no-users').hidden = err.code !== 'NO_USERS';
      $('#status').textContent = '';
      if (res.status === 429) showError(`Too many attempts: ${err.message}`);
      else showError(err.message);
      $('#login-password').select();
    } catch (err) {
      $('#status').textContent = '';
      showError(`Cannot reach the hub: ${err.message}`);
    } finally {
      $('#login').disabled = false;
    }
  }

  async function start() {
    $('#login-form').addEventListener('submit', login);
    try {
      const res = await fetch('/api/session', { credentials: 'same-origin' });
      if (res.ok) {
        location.replace(nextPath());
        return;
      }
      if ((await errorOf(res)).code === 'NO_USERS') $('#no-users').hidden = false;
    } catch (e) {
      /* the form reports it on submit */
    }
    $('#login-user').focus();
  }

  start();
})();
