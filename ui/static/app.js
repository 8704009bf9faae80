// Progressive enhancement only: every page works without this file.
// 1. Forms with data-confirm ask before they submit (quarantine, decommission, apply).
// 2. Live updates: the server sends an event when alerts or devices change, or a device is seen; regions
//    marked data-live re-fetch this page and swap themselves in, unless the technician is typing in a form.
//    "activity" (a device page's last seen and charts) refreshes at most every 5 s, and every 30 s anyway
//    (buckets are written a little after the readings); "health" refreshes every 5 s.
(() => {
  document.addEventListener('submit', (e) => {
    const form = e.target;
    if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      e.preventDefault();
    }
  });

  // 3. A table box that scrolls sideways (a wide table on a phone) takes the keyboard focus, so it can be
  //    scrolled without a mouse; boxes that fit stay out of the Tab order.
  const markScrollables = () => {
    for (const box of document.querySelectorAll('.scroll, pre.diff')) {
      if (box.scrollWidth > box.clientWidth + 1) {
        box.tabIndex = 0;
        box.setAttribute('role', 'region');
        if (!box.hasAttribute('aria-label')) box.setAttribute('aria-label', 'Scrolls sideways');
      } else {
        box.removeAttribute('tabindex');
        box.removeAttribute('role');
      }
    }
  };
  markScrollables();
  window.addEventListener('resize', markScrollables);

  const regions = () => Array.from(document.querySelectorAll('[data-live]'));
  const counters = (data) => {
    for (const el of document.querySelectorAll('[data-count]')) {
      const v = data[el.dataset.count];
      if (v !== undefined) el.textContent = String(v);
    }
  };
  let pending = false;
  const lastRefresh = {};
  const refresh = async (topic, minGapMs = 0) => {
    const now = Date.now();
    if (minGapMs && now - (lastRefresh[topic] ?? 0) < minGapMs) return;
    lastRefresh[topic] = now;
    const targets = regions().filter((r) => r.dataset.live.split(' ').includes(topic));
    if (targets.length === 0 || pending) return;
    // Never swap the region holding the focus (a keyboard user would lose their place, a typist their
    // input): it refreshes at the next change or timer once the focus has left it.
    const active = document.activeElement;
    if (active && active !== document.body && targets.some((t) => t.contains(active))) return;
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
      markScrollables();
      const status = document.getElementById('live-status');
      if (status)
        status.textContent = `Updated ${new Date().toLocaleTimeString([], { timeZoneName: 'short' })}`;
    } finally {
      pending = false;
    }
  };
  const has = (topic) => regions().some((r) => r.dataset.live.split(' ').includes(topic));
  if (has('health')) setInterval(() => refresh('health'), 5000);
  if (has('activity')) setInterval(() => refresh('activity'), 30000);
  if (!window.EventSource || !document.body.dataset.events) return;
  const source = new EventSource('/events');
  source.addEventListener('activity', () => refresh('activity', 5000));
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
