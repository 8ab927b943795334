// Thumbnails in the device list on /: each row shows its device's latest snapshot, the JPEG the
// hub keeps from the device's retained snapshot topic (GET /api/devices/<id>/snapshot.jpg, with
// the same credentials as viewing: here the session cookie), and a placeholder while the hub has
// none (404), refuses, or cannot be reached. They are fetched again every 30 s while the list is
// on screen (not while the tab is in the background), and never with ?fresh=1: looking at the
// list must not wake every camera.
//
// window.camagentThumbs: {attach(cell, id, onClick) (once per row), forget(id), refresh(),
// state: {<id>: 'loading' | 'loaded' | 'none'}, refreshedAt (ms since the epoch), REFRESH_MS}.
'use strict';

(function () {
  const REFRESH_MS = 30000;
  const thumbs = new Map(); // id → {box, img}
  const state = {};
  const api = { attach, forget, refresh, state, refreshedAt: Date.now(), REFRESH_MS };

  // A query that changes at every refresh, so the browser fetches again instead of reusing the
  // image it has for that URL.
  const url = (id) => `/api/devices/${encodeURIComponent(id)}/snapshot.jpg?t=${api.refreshedAt}`;

  function attach(cell, id, onClick) {
    const box = document.createElement('div');
    box.className = 'thumb none';
    box.title = `${id}: latest snapshot`;
    const img = document.createElement('img');
    img.alt = `${id}'s latest picture`;
    img.decoding = 'async';
    img.hidden = true;
    img.addEventListener('load', () => {
      if (thumbs.get(id)?.img !== img) return;
      img.hidden = false;
      box.classList.remove('none');
      state[id] = 'loaded';
    });
    img.addEventListener('error', () => {
      if (thumbs.get(id)?.img !== img) return;
      img.hidden = true;
      box.classList.add('none');
      state[id] = 'none';
    });
    box.appendChild(img);
    box.addEventListener('click', onClick);
    cell.appendChild(box);
    thumbs.set(id, { box, img });
    load(id);
  }

  function load(id) {
    const t = thumbs.get(id);
    if (!t) return;
    if (!t.img.src || !t.img.complete || t.img.naturalWidth === 0) state[id] = 'loading';
    t.img.src = url(id);
  }

  function forget(id) {
    thumbs.delete(id);
    delete state[id];
  }

  function refresh() {
    api.refreshedAt = Date.now();
    for (const id of thumbs.keys()) load(id);
  }

  setInterval(() => {
    if (document.visibilityState === 'visible') refresh();
  }, REFRESH_MS);
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible' && Date.now() - api.refreshedAt >= REFRESH_MS) refresh();
  });

  window.camagentThumbs = api;
})();
