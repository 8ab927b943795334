// The administration page (/admin), for administrators: people and their per-device permissions,
// enrolled devices (enrolment shows the device's credential once), and integration API keys
// (shown once). Everything goes through /api/admin/… with the session's CSRF token.
//
// Hooks for tests: #users, button[data-edit-user], button[data-delete-user], #user-form,
// #user-name, #user-password, #user-admin, #user-perms input[data-perm-device][data-perm],
// #user-save; #enrolled, button[data-revoke-device], #device-form, #device-id, #device-uid,
// #device-add, #device-credential, #device-config; #keys, button[data-revoke-key], #key-form,
// #key-name, #key-apps, #key-channels, #key-ttl, #key-devices input[data-key-device],
// #key-actions input[data-action], #key-mqtt, #key-add, #key-secret, #key-created-id;
// #status, #error; window.camagentAdmin {users, devices, keys, reload()}.
'use strict';

(function () {
  const PERMS = ['view', 'talk', 'command', 'admin'];
  const ALL = '*';
  const CONFIRM_MS = 5000;
  const $ = (sel) => document.querySelector(sel);
  const session = window.camagentSession;

  const admin = { users: [], devices: [], online: {}, keys: [], appId: '', reload, editing: null };
  window.camagentAdmin = admin;

  // el('td', {className: 'x'}, 'text', child…): elements built from text only, never from HTML.
  function el(tag, props, ...children) {
    const e = document.createElement(tag);
    Object.assign(e, props || {});
    for (const c of children) e.append(c instanceof Node ? c : String(c));
    return e;
  }

  function setStatus(text) {
    $('#status').textContent = text || '';
  }

  function showError(err) {
    $('#error').hidden = !err;
    $('#error').textContent = err ? (err.code ? `${err.code}: ${err.message}` : String(err.message || err)) : '';
  }

  // Runs one change, reporting it; reloads the lists after it.
  async function act(what, f) {
    showError(null);
    setStatus(`${what}…`);
    try {
      const out = await f();
      setStatus(`${what}: done.`);
      await reload();
      return out;
    } catch (e) {
      setStatus('');
      showError(e);
      return undefined;
    }
  }

  // A destructive button asks again: the first click arms it for a few seconds.
  function confirmButton(label, armedLabel, onConfirm) {
    const b = el('button', { type: 'button', textContent: label });
    let timer = null;
    b.addEventListener('click', () => {
      if (!timer) {
        b.textContent = armedLabel;
        b.classList.add('danger');
        timer = setTimeout(() => {
          timer = null;
          b.textContent = label;
          b.classList.remove('danger');
        }, CONFIRM_MS);
        return;
      }
      clearTimeout(timer);
      timer = null;
      b.disabled = true;
      onConfirm();
    });
    return b;
  }

  const list = (a) => (Array.isArray(a) && a.length ? a.join(', ') : '—');
  const csv = (s) =>
    s
      .split(',')
      .map((x) => x.trim())
      .filter(Boolean);
  const enc = encodeURIComponent;

  function describePermissions(p) {
    const parts = Object.entries(p || {})
      .filter(([, perms]) => perms && perms.length)
      .sort(([a], [b]) => (a === ALL ? -1 : b === ALL ? 1 : a.localeCompare(b)))
      .map(([dev, perms]) => `${dev === ALL ? 'all devices' : dev}: ${perms.join(', ')}`);
    return parts.length ? parts.join('; ') : 'none';
  }

  // Every device an admin may name: the enrolled ones and the ones the directory has seen.
  function deviceIds() {
    const ids = new Set(admin.devices.map((d) => d.id));
    for (const id of Object.keys(admin.online)) ids.add(id);
    return Array.from(ids).sort();
  }

  // ----- people

  function renderUsers() {
    const tbody = $('#users tbody');
    tbody.replaceChildren();
    for (const u of admin.users) {
      const edit = el('button', { type: 'button', textContent: 'Edit' });
      edit.dataset.editUser = u.name;
      edit.addEventListener('click', () => editUser(u));
      const del = confirmButton('Delete', 'Really delete?', () =>
        act(`Deleting ${u.name}`, () => session.api('DELETE', `/api/admin/users/${enc(u.name)}`))
      );
      del.dataset.deleteUser = u.name;
      if (u.name === session.session.user) del.disabled = true; // not oneself
      const row = el(
        'tr',
        {},
        el('td', {}, u.name),
        el('td', {}, u.admin ? 'yes' : 'no'),
        el('td', {}, u.admin ? 'everything' : describePermissions(u.permissions)),
        el('td', { className: 'actions' }, edit, del)
      );
      row.dataset.user = u.name;
      tbody.append(row);
    }
  }

  // The permission grid: "all devices", then one row per device, keeping what was ticked.
  function renderPermissionGrid(perms) {
    const tbody = $('#user-perms tbody');
    const current = perms || readPermissionGrid();
    tbody.replaceChildren();
    for (const dev of [ALL, ...deviceIds()]) {
      const cells = PERMS.map((perm) => {
        const box = el('input', { type: 'checkbox', checked: (current[dev] || []).includes(perm) });
        box.dataset.permDevice = dev;
        box.dataset.perm = perm;
        box.setAttribute('aria-label', `${perm} on ${dev === ALL ? 'all devices' : dev}`);
        return el('td', {}, box);
      });
      tbody.append(el('tr', {}, el('th', { scope: 'row' }, dev === ALL ? 'all devices' : dev), ...cells));
    }
  }

  function readPermissionGrid() {
    const out = {};
    for (const box of document.querySelectorAll('#user-perms input[data-perm-device]')) {
      if (!box.checked) continue;
      (out[box.dataset.permDevice] = out[box.dataset.permDevice] || []).push(box.dataset.perm);
    }
    return out;
  }

  function editUser(u) {
    admin.editing = u.name;
    $('#user-form-title').textContent = `Change ${u.name}`;
    $('#user-name').value = u.name;
    $('#user-name').readOnly = true;
    $('#user-password').value = '';
    $('#user-password').required = false;
    $('#user-password-note').textContent = 'empty: unchanged';
    $('#user-admin').checked = !!u.admin;
    renderPermissionGrid(u.permissions || {});
    $('#user-save').textContent = 'Save changes';
    $('#user-cancel').hidden = false;
    $('#user-password').focus();
  }

  function resetUserForm() {
    admin.editing = null;
    $('#user-form').reset();
    $('#user-form-title').textContent = 'Add a person';
    $('#user-name').readOnly = false;
    $('#user-password').required = true;
    $('#user-password-note').textContent = 'at least 10 characters';
    $('#user-save').textContent = 'Add person';
    $('#user-cancel').hidden = true;
    renderPermissionGrid({});
  }

  async function saveUser(e) {
    e.preventDefault();
    const name = $('#user-name').value.trim();
    const password = $('#user-password').value;
    const body = { admin: $('#user-admin').checked, permissions: readPermissionGrid() };
    let done;
    if (admin.editing) {
      if (password) body.password = password;
      done = await act(`Saving ${name}`, () => session.api('PUT', `/api/admin/users/${enc(name)}`, body).then(() => true));
    } else {
      done = await act(`Adding ${name}`, () => session.api('POST', '/api/admin/users', { name, password, ...body }).then(() => true));
    }
    if (done) resetUserForm();
  }

  // ----- devices

  function renderDevices() {
    const tbody = $('#enrolled tbody');
    tbody.replaceChildren();
    for (const d of admin.devices) {
      const revoke = confirmButton('Revoke', 'Really revoke?', () =>
        act(`Revoking ${d.id}`, () => session.api('DELETE', `/api/admin/devices/${enc(d.id)}`))
      );
      revoke.dataset.revokeDevice = d.id;
      const status = admin.online[d.id] || 'never seen';
      const row = el(
        'tr',
        {},
        el('td', {}, d.id),
        el('td', {}, d.uid === undefined ? '' : String(d.uid)),
        el('td', {}, el('code', {}, d.keyId || '')),
        el('td', {}, d.created ? new Date(d.created).toLocaleString() : ''),
        el('td', {}, el('span', { className: `badge ${status === 'online' ? 'online' : 'offline'}` }, status)),
        el('td', { className: 'actions' }, revoke)
      );
      row.dataset.device = d.id;
      tbody.append(row);
    }
  }

  async function enrolDevice(e) {
    e.preventDefault();
    const id = $('#device-id').value.trim();
    const uidText = $('#device-uid').value.trim();
    const body = { id };
    if (uidText) body.uid = Number(uidText);
    const out = await act(`Enrolling ${id}`, () => session.api('POST', '/api/admin/devices', body));
    if (!out) return;
    $('#device-form').reset();
    showOnce('#device-enrolled');
    $('#device-enrolled-id').textContent = out.id;
    $('#device-enrolled-user').textContent = out.id;
    $('#device-credential').textContent = out.credential;
    $('#device-config').textContent = [
      `id: ${out.id}`,
      `hub: ${location.origin}`,
      'credentialFile: /etc/camagent/credential   # the file holding the credential above (mode 0600)',
      ...(out.uid !== undefined ? [`uid: ${out.uid}`] : []),
    ].join('\n');
  }

  // A secret shown once: on screen until "I have copied it", never kept in the page's state.
  function showOnce(sel) {
    const box = $(sel);
    box.hidden = false;
    box.scrollIntoView({ block: 'nearest' });
  }

  function hideOnce(sel, secretSel) {
    $(sel).hidden = true;
    $(secretSel).textContent = '';
  }

  // ----- API keys

  function renderKeys() {
    const tbody = $('#keys tbody');
    tbody.replaceChildren();
    for (const k of admin.keys) {
      const revoke = confirmButton('Revoke', 'Really revoke?', () =>
        act(`Revoking key ${k.name}`, () => session.api('DELETE', `/api/admin/keys/${enc(k.id)}`))
      );
      revoke.dataset.revokeKey = k.id;
      const row = el(
        'tr',
        {},
        el('td', {}, el('code', {}, k.id)),
        el('td', {}, k.name || ''),
        el('td', {}, list(k.devices)),
        el('td', {}, list(k.actions)),
        el('td', {}, list(k.apps)),
        el('td', {}, list(k.channels)),
        el('td', {}, k.maxTTL || ''),
        el('td', {}, k.mqtt ? 'yes' : 'no'),
        el('td', { className: 'actions' }, revoke)
      );
      row.dataset.key = k.id;
      tbody.append(row);
    }
  }

  function renderKeyDevices() {
    const box = $('#key-devices .checks');
    const ticked = new Set(Array.from(box.querySelectorAll('input:checked')).map((i) => i.dataset.keyDevice));
    box.replaceChildren();
    for (const dev of [ALL, ...deviceIds()]) {
      const input = el('input', { type: 'checkbox', checked: ticked.has(dev) });
      input.dataset.keyDevice = dev;
      box.append(el('label', { className: 'check' }, input, ` ${dev === ALL ? 'all devices' : dev}`));
    }
  }

  async function createKey(e) {
    e.preventDefault();
    const body = {
      name: $('#key-name').value.trim(),
      devices: Array.from(document.querySelectorAll('#key-devices input:checked')).map((i) => i.dataset.keyDevice),
      actions: Array.from(document.querySelectorAll('#key-actions input:checked')).map((i) => i.dataset.action),
      apps: csv($('#key-apps').value),
      channels: csv($('#key-channels').value),
      maxTTL: $('#key-ttl').value.trim(),
      mqtt: $('#key-mqtt').checked,
    };
    const out = await act(`Creating key ${body.name}`, () => session.api('POST', '/api/admin/keys', body));
    if (!out) return;
    $('#key-form').reset();
    $('#key-apps').value = admin.appId;
    showOnce('#key-created');
    $('#key-created-id').textContent = out.id;
    $('#key-secret').textContent = out.key;
    $('#key-created-mqtt').hidden = !body.mqtt;
    $('#key-created-user').textContent = out.id;
  }

  // ----- loading

  async function reload() {
    const [users, devices, keys, directory] = await Promise.all([
      session.api('GET', '/api/admin/users'),
      session.api('GET', '/api/admin/devices'),
      session.api('GET', '/api/admin/keys'),
      session.api('GET', '/api/devices').catch(() => []),
    ]);
    admin.users = Array.isArray(users) ? users : [];
    admin.devices = Array.isArray(devices) ? devices : [];
    admin.keys = Array.isArray(keys) ? keys : [];
    admin.online = {};
    for (const d of Array.isArray(directory) ? directory : []) admin.online[d.id] = d.status || 'unknown';
    renderUsers();
    renderDevices();
    renderKeys();
    renderPermissionGrid(); // keeps what is ticked
    renderKeyDevices();
  }

  async function start() {
    let s;
    try {
      s = await session.ready;
    } catch (e) {
      showError(`Cannot read the session: ${e.message}`);
      return;
    }
    if (!s.admin) {
      $('#not-admin').hidden = false;
      return;
    }
    $('#user-form').addEventListener('submit', saveUser);
    $('#user-cancel').addEventListener('click', resetUserForm);
    $('#device-form').addEventListener('submit', enrolDevice);
    $('#device-enrolled-done').addEventListener('click', () => hideOnce('#device-enrolled', '#device-credential'));
    $('#key-form').addEventListener('submit', createKey);
    $('#key-created-done').addEventListener('click', () => hideOnce('#key-created', '#key-secret'));
    try {
      admin.appId = (await session.api('GET', '/api/config')).appId || '';
    } catch (e) {
      /* the Apps field stays empty */
    }
    $('#key-apps').value = admin.appId;
    $('#user-password').required = true;
    $('#admin').hidden = false;
    try {
      await reload();
      admin.loaded = true;
    } catch (e) {
      showError(e);
    }
  }

  start();
})();
