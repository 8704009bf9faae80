// Progressive enhancement only: every page works without this file.
// 1. Forms with data-confirm ask before they submit (quarantine, decommission, apply).
// 2. Live updates: the server sends an event when alerts or devices change; regions marked data-live
//    re-fetch this page and swap themselves in, unless the technician is typing in a form.
(() => {
  document.addEventListener('submit', (e) => {
    const form = e.target;
    if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      e.preventDefault();
    }
  });

  const regions = () => Array.from(document.querySelectorAll('[data-live]'));
  const counters = (data) => {
    for (const el of document.querySelectorAll('[data-count]')) {
      const v = data[el.dataset.count];
      if (v !== undefined) el.textContent = String(v);
    }
  };
  let pending = false;
  const refresh = async (topic) => {
    const targets = regions().filter((r) => r.dataset.live.split(' ').includes(topic));
    if (targets.length === 0 || pending) return;
    const active = document.activeElement;
    if (active?.closest('form') && active.closest('[data-live]')) return;
    pending = true;
    try {
      const res = await fetch(location.href, {
        credentials: 'same-origin',
        headers: { accept: 'text/html' },
      });
      if (!res.ok) return;
      const doc = new DOMParser().parseFromString(await res.text(), 'text/html');
      for (const t of targets) {
        const fresh = t.id && doc.getElementById(t.id);
        if (fresh) t.replaceWith(fresh);
      }
      const status = document.getElementById('live-status');
      if (status) status.textContent = `Updated ${new Date().toLocaleTimeString()}`;
    } finally {
      pending = false;
    }
  };
  if (!window.EventSource || !document.body.dataset.events) return;
  const source = new EventSource('/events');
  for (const topic of ['alerts', 'devices']) {
    source.addEventListener(topic, (ev) => {
      try {
        counters(JSON.parse(ev.data));
      } catch {
        // a malformed event changes nothing
      }
      refresh(topic);
    });
  }
})();
