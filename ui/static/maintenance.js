// The maintenance page's forms (issue 25 items 13 and 15): each first re-authenticates (POST /auth/reauth with
// the password and code typed in the form), then calls /api/v1/maintenance/… with the session's CSRF token.
// Uploads go as the raw file (application/octet-stream) through XMLHttpRequest, whose upload progress the
// page shows; an update's verification and installation are then polled from its job.
(() => {
  const csrf = () => document.querySelector('input[name="_csrf"]')?.value ?? '';

  const out = (form) => {
    const box = form.querySelector('.job-result');
    const bar = box.querySelector('progress');
    const text = box.querySelector('.job-text');
    return {
      say(message, kind = 'info') {
        text.textContent = message;
        text.className = `job-text ${kind}`;
      },
      progress(fraction) {
        if (fraction === null) {
          bar.hidden = true;
          return;
        }
        bar.hidden = false;
        bar.value = Math.round(fraction * 100);
      },
    };
  };

  const failure = async (res) => {
    try {
      const body = await res.json();
      return body.error ? `${body.error.message} (${body.error.code})` : `HTTP ${res.status}`;
    } catch {
      return `HTTP ${res.status}`;
    }
  };

  const json = async (method, url, body) => {
    const res = await fetch(url, {
      method,
      credentials: 'same-origin',
      headers: { 'content-type': 'application/json', 'x-csrf-token': csrf() },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (!res.ok) throw new Error(await failure(res));
    return res;
  };

  const reauth = (form) =>
    json('POST', '/auth/reauth', {
      password: form.elements.password.value,
      code: form.elements.code.value.trim(),
    });

  /** The file as the raw body, with the browser's upload progress. */
  const upload = (url, file, show) =>
    new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open('POST', url);
      xhr.setRequestHeader('content-type', 'application/octet-stream');
      xhr.setRequestHeader('x-csrf-token', csrf());
      xhr.upload.onprogress = (e) => {
        if (e.lengthComputable) {
          show.progress(e.loaded / e.total);
          show.say(`Uploading: ${Math.round((e.loaded / e.total) * 100)} % of ${file.size} bytes`);
        }
      };
      xhr.onload = () => {
        let body = {};
        try {
          body = JSON.parse(xhr.responseText);
        } catch {
          // not JSON
        }
        if (xhr.status >= 200 && xhr.status < 300) resolve(body);
        else
          reject(new Error(body.error ? `${body.error.message} (${body.error.code})` : `HTTP ${xhr.status}`));
      };
      xhr.onerror = () => reject(new Error('the upload was interrupted'));
      xhr.send(file);
    });

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  const actions = {
    async backup(form, show) {
      const res = await json('POST', '/api/v1/maintenance/backup', {
        passphrase: form.elements.passphrase.value,
        again: form.elements.again.value,
      });
      const blob = await res.blob();
      const name =
        /filename="([^"]+)"/.exec(res.headers.get('content-disposition') ?? '')?.[1] ?? 'backup.pcbk';
      const a = document.createElement('a');
      a.href = URL.createObjectURL(blob);
      a.download = name;
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 60_000);
      form.elements.passphrase.value = '';
      form.elements.again.value = '';
      show.say(
        `Backup downloaded: ${name}, ${blob.size} bytes, SHA-256 ${res.headers.get('x-backup-sha256')}.`,
        'ok',
      );
    },

    async restore(form, show) {
      const file = form.elements.file.files[0];
      const up = await upload('/api/v1/maintenance/uploads/restore', file, show);
      show.progress(null);
      show.say(
        `Made ${up.made.createdAt} by Portcullis ${up.made.gatewayVersion}, gateway ${up.made.identity}; checking…`,
      );
      const res = await json('POST', `/api/v1/maintenance/restore/${encodeURIComponent(up.upload)}`, {
        passphrase: form.elements.passphrase.value,
        keepConfig: form.elements.keepConfig.checked,
      });
      const r = (await res.json()).staged;
      form.elements.passphrase.value = '';
      show.say(
        `Staged: ${r.devices} devices, ${r.secrets} secrets, configuration ${r.config}. Restart the gateway (below) to put it in place.`,
        'ok',
      );
    },

    async update(form, show) {
      const file = form.elements.file.files[0];
      let job = await upload('/api/v1/maintenance/uploads/update', file, show);
      show.progress(null);
      const phases = {
        verifying: 'Verifying the signature and manifest…',
        installing: 'Installing',
        'health-check': 'Health check of',
      };
      while (!['installed', 'refused'].includes(job.phase)) {
        show.say(`${phases[job.phase] ?? job.phase} ${job.version ?? ''}`.trim());
        await sleep(700);
        const res = await json('GET', `/api/v1/maintenance/jobs/${encodeURIComponent(job.id)}`);
        job = await res.json();
      }
      if (job.phase === 'installed') {
        show.say(
          `Installed ${job.version} (was ${job.previous ?? 'none'}). Restart the gateway to run it.`,
          'ok',
        );
      } else {
        show.say(`Refused: ${job.error.message} (${job.error.code})`, 'error');
      }
    },

    async rollback(_form, show) {
      const r = await (await json('POST', '/api/v1/maintenance/rollback', {})).json();
      show.say(`Linked ${r.version} again (was ${r.previous}); it runs from the next restart.`, 'ok');
    },

    async power(form, show) {
      const action = form.elements.action.value;
      const r = await (
        await json('POST', '/api/v1/maintenance/power', { action, confirm: form.elements.confirm.value })
      ).json();
      show.say(
        r.action === 'reboot'
          ? 'Rebooting the appliance: this page answers again in a minute or two.'
          : 'Restarting the gateway: this page answers again in a few seconds (log in again if asked).',
        'ok',
      );
    },
  };

  for (const form of document.querySelectorAll('form[data-maint]')) {
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const show = out(form);
      const button = form.querySelector('button[type="submit"]');
      button.disabled = true;
      show.progress(null);
      show.say('Confirming who you are…');
      try {
        await reauth(form);
        form.elements.code.value = '';
        await actions[form.dataset.maint](form, show);
      } catch (err) {
        show.progress(null);
        show.say(err instanceof Error ? err.message : String(err), 'error');
      } finally {
        form.elements.password.value = '';
        button.disabled = false;
      }
    });
  }
})();
