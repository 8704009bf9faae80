/**
 * The maintenance API behind the console's maintenance page (issue 25 items 13 and 15), in-process on the real
 * services: who may call what (admins, re-authenticated, CSRF), backups downloaded and restored through the
 * API, streamed uploads stopped at their cap without leaving a file, signed updates installed with their
 * progress in a job and unsigned or tampered ones refused with the reason, rollback, and restart/reboot through
 * an injected command (recorded, nothing restarted).
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { create, extract } from 'tar';
import { parse } from 'yaml';
import { buildBundle } from '../gateway/src/updates/index.ts';
import { createUiApp } from '../ui/src/app.ts';
import { MAINTENANCE_API_ROUTES } from '../ui/src/routes/maintenance-api.ts';
import { tempDir } from './helpers/tmp.ts';
import { Browser, PASSWORD, site } from './helpers/ui.ts';

type T = Parameters<typeof tempDir>[0];
const PASSPHRASE = 'a long backup passphrase';

/** A site, and a browser on an app with the maintenance options, logged in as `role`. */
async function maintenanceSite(
  t: T,
  config: Record<string, unknown> = {},
  extra: { maxArchiveBytes?: number; maxBundleBytes?: number } = {},
) {
  const s = site(t, config);
  const commands: string[][] = [];
  const app = createUiApp(s.core, {
    maintenance: {
      runCommand: async (argv) => {
        commands.push([...argv]);
      },
      powerDelayMs: 0,
      ...extra,
    },
  });
  const as = async (username: string, role: 'admin' | 'technician' | 'auditor') => {
    const { b, secret } = await s.login(username, role);
    const browser = new Browser(app);
    browser.cookie = b.cookie;
    browser.csrf = b.csrf;
    const reauth = async () => {
      const r = await browser.call('POST', '/auth/reauth', { password: PASSWORD, code: s.totp(secret) });
      assert.equal(r.status, 200, JSON.stringify(r.data));
      s.clock.advance(31_000);
    };
    return { browser, reauth };
  };
  return { ...s, app, commands, as };
}

/** A raw-body request (an upload), optionally streamed without a Content-Length. */
async function send(b: Browser, path: string, data: Buffer, opts: { stream?: boolean; csrf?: string } = {}) {
  const headers: Record<string, string> = {
    cookie: b.cookie,
    'content-type': 'application/octet-stream',
    'x-csrf-token': opts.csrf ?? b.csrf,
  };
  let body: Uint8Array | ReadableStream<Uint8Array> = new Uint8Array(data);
  if (opts.stream) {
    const chunk = 64 * 1024;
    let at = 0;
    body = new ReadableStream({
      pull(controller) {
        if (at >= data.length) return controller.close();
        controller.enqueue(new Uint8Array(data.subarray(at, at + chunk)));
        at += chunk;
      },
    });
  } else headers['content-length'] = String(data.length);
  const res = await b.app.request(path, { method: 'POST', headers, body, duplex: 'half' } as RequestInit);
  const text = await res.text();
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    // not JSON
  }
  return { status: res.status, data: json };
}

const errorCode = (r: { data: Record<string, unknown> }) =>
  (r.data.error as { code?: string } | undefined)?.code;

describe('maintenance API: who may call it', () => {
  it('refuses technicians and auditors on every route, admins without re-authentication, and forms without the CSRF token', async (t) => {
    const s = await maintenanceSite(t);
    const tech = await s.as('tech1', 'technician');
    const auditor = await s.as('aud1', 'auditor');
    const admin = await s.as('admin1', 'admin');
    for (const r of MAINTENANCE_API_ROUTES) {
      const path = r.path.replace(':id', 'x');
      for (const who of [tech, auditor]) {
        const res = await who.browser.call(
          r.method,
          path,
          r.method === 'POST' ? (r.sample ?? {}) : undefined,
        );
        assert.equal(res.status, 403, `${r.method} ${path}`);
        assert.equal(errorCode(res), 'ERR_UI_FORBIDDEN');
      }
      if (r.access.reauth) {
        const res = await admin.browser.call(r.method, path, r.sample ?? {});
        assert.equal(errorCode(res), 'ERR_UI_REAUTH_REQUIRED', `${r.method} ${path}`);
      }
    }
    await admin.reauth();
    const forged = await admin.browser.call(
      'POST',
      '/api/v1/maintenance/power',
      { action: 'restart', confirm: 'restart' },
      { csrf: null },
    );
    assert.equal(errorCode(forged), 'ERR_UI_CSRF');
    const nobody = new Browser(s.app);
    assert.equal((await nobody.call('POST', '/api/v1/maintenance/power', {})).status, 401);
    const upload = await send(admin.browser, '/api/v1/maintenance/uploads/update', Buffer.alloc(10), {
      csrf: 'forged',
    });
    assert.equal(errorCode(upload), 'ERR_UI_CSRF');
    assert.deepEqual(s.commands, [], 'nothing was run');
  });
});

describe('maintenance API: documentation', () => {
  it('documents every maintenance route in docs/openapi.yaml, with the same roles and re-authentication', () => {
    const doc = parse(readFileSync(new URL('../docs/openapi.yaml', import.meta.url), 'utf8')) as {
      paths: Record<string, Record<string, { 'x-roles'?: string[]; 'x-reauth'?: boolean }>>;
    };
    for (const r of MAINTENANCE_API_ROUTES) {
      const op = doc.paths[r.path.replace(':id', '{id}')]?.[r.method.toLowerCase()];
      assert.ok(op, `${r.method} ${r.path} is documented`);
      assert.deepEqual(op['x-roles'], [...r.access.roles], `${r.method} ${r.path} roles`);
      assert.equal(Boolean(op['x-reauth']), Boolean(r.access.reauth), `${r.method} ${r.path} re-auth`);
    }
  });
});

describe('maintenance API: backup and restore', () => {
  it('downloads an archive and restores it on another gateway through the API; a wrong passphrase is refused with its reason', async (t) => {
    const a = await maintenanceSite(t);
    a.core.identity.addPskDevice({ id: 's1', pskIdentity: 's1', pskText: 'sixteen-byte-key-1' }, 'test');
    const adminA = await a.as('admin1', 'admin');
    await adminA.reauth();
    const differ = await adminA.browser.call('POST', '/api/v1/maintenance/backup', {
      passphrase: PASSPHRASE,
      again: 'something else',
    });
    assert.equal(differ.status, 400);
    const res = await a.app.request('/api/v1/maintenance/backup', {
      method: 'POST',
      headers: {
        cookie: adminA.browser.cookie,
        'x-csrf-token': adminA.browser.csrf,
        'content-type': 'application/json',
      },
      body: JSON.stringify({ passphrase: PASSPHRASE, again: PASSPHRASE }),
    });
    assert.equal(res.status, 200);
    assert.match(
      res.headers.get('content-disposition') ?? '',
      /attachment; filename="portcullis-backup-.*\.pcbk"/,
    );
    const archive = Buffer.from(await res.arrayBuffer());
    assert.equal(archive.subarray(0, 18).toString(), 'PORTCULLIS-BACKUP ');
    assert.ok(!archive.includes(Buffer.from('sixteen-byte-key-1')), 'the PSK is not in the clear');
    assert.ok(
      [...a.core.audit.entries()].some((e) => e.action === 'backup.create' && e.actor === 'ui:admin1'),
    );

    const b = await maintenanceSite(t);
    const adminB = await b.as('admin2', 'admin');
    await adminB.reauth();
    const up = await send(adminB.browser, '/api/v1/maintenance/uploads/restore', archive);
    assert.equal(up.status, 200, JSON.stringify(up.data));
    const id = up.data.upload as string;
    const wrong = await adminB.browser.call('POST', `/api/v1/maintenance/restore/${id}`, {
      passphrase: 'not the passphrase',
      keepConfig: true,
    });
    assert.equal(wrong.status, 422);
    assert.equal(errorCode(wrong), 'ERR_BACKUP_PASSPHRASE');
    assert.match((wrong.data.error as { message: string }).message, /passphrase does not open/);
    const ok = await adminB.browser.call('POST', `/api/v1/maintenance/restore/${id}`, {
      passphrase: PASSPHRASE,
      keepConfig: true,
    });
    assert.equal(ok.status, 200, JSON.stringify(ok.data));
    assert.equal((ok.data.staged as { devices: number }).devices, 1);
    assert.ok(existsSync(join(b.core.config.dataDir, 'restore', 'staged', 'portcullis.db')));
    assert.deepEqual(readdirSync(join(b.core.config.dataDir, 'uploads')), [], 'the upload is gone');

    // A tampered archive is refused at upload (its signature), with the reason.
    const flipped = Buffer.from(archive);
    flipped.writeUInt8(flipped.readUInt8(flipped.length - 300) ^ 1, flipped.length - 300);
    const bad = await send(adminB.browser, '/api/v1/maintenance/uploads/restore', flipped);
    assert.equal(errorCode(bad), 'ERR_BACKUP_SIGNATURE');
  });

  it('stops an upload over the cap: at once when its length is declared, at the cap when streamed; no file is left', async (t) => {
    const s = await maintenanceSite(t, {}, { maxArchiveBytes: 256 * 1024, maxBundleBytes: 256 * 1024 });
    const admin = await s.as('admin1', 'admin');
    await admin.reauth();
    const big = Buffer.alloc(4 * 1024 * 1024, 7);
    for (const path of ['/api/v1/maintenance/uploads/restore', '/api/v1/maintenance/uploads/update']) {
      const declared = await send(admin.browser, path, big);
      assert.equal(declared.status, 413);
      assert.equal(errorCode(declared), 'ERR_UI_TOO_LARGE');
      const streamed = await send(admin.browser, path, big, { stream: true });
      assert.equal(streamed.status, 413, JSON.stringify(streamed.data));
    }
    const dir = join(s.core.config.dataDir, 'uploads');
    assert.deepEqual(existsSync(dir) ? readdirSync(dir) : [], []);
    // One upload at a time: a second one while the first is still arriving is refused, not raced to the disk.
    let finish: () => void = () => {};
    const held = new Promise<void>((r) => {
      finish = r;
    });
    let sent = false;
    const slow = s.app.request('/api/v1/maintenance/uploads/restore', {
      method: 'POST',
      headers: {
        cookie: admin.browser.cookie,
        'content-type': 'application/octet-stream',
        'x-csrf-token': admin.browser.csrf,
      },
      body: new ReadableStream({
        async pull(controller) {
          if (sent) {
            await held;
            controller.close();
            return;
          }
          sent = true;
          controller.enqueue(new Uint8Array(1024));
        },
      }),
      duplex: 'half',
    } as RequestInit);
    await new Promise((r) => setTimeout(r, 50));
    const second = await send(admin.browser, '/api/v1/maintenance/uploads/update', Buffer.alloc(10));
    assert.equal(second.status, 409);
    assert.equal(errorCode(second), 'ERR_UI_BUSY');
    finish();
    const first = await slow;
    assert.equal(first.status, 422, 'the first upload went on (and is no archive)');
    // Other routes keep the UI's 64 KiB body limit.
    const other = await send(admin.browser, '/api/v1/maintenance/power', Buffer.alloc(100 * 1024));
    assert.equal(other.status, 413);
  });
});

function release(dir: string, version: string): string {
  const src = join(dir, `src-${version}`);
  mkdirSync(join(src, 'bin'), { recursive: true });
  writeFileSync(join(src, 'bin', 'portcullis.js'), `console.log('${version}');\n`);
  writeFileSync(join(src, 'core.txt'), `the core of ${version}\n`);
  return src;
}

describe('maintenance API: updates, rollback, restart and reboot', () => {
  it('installs a signed bundle (job: verifying → installed), refuses unsigned and tampered ones with the reason, rolls back', async (t) => {
    const dir = tempDir(t);
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const priv = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    writeFileSync(join(dir, 'release.pub.pem'), publicKey.export({ type: 'spki', format: 'pem' }));
    const updates = {
      publicKeyFile: join(dir, 'release.pub.pem'),
      releasesDir: join(dir, 'releases'),
      currentLink: join(dir, 'current'),
    };
    const bundle = async (version: string) => {
      const out = join(dir, `${version}.tar`);
      await buildBundle({
        source: release(dir, version),
        version,
        minVersion: '0.0.1',
        hardware: ['x64', 'arm64'],
        notes: '',
        privateKeyPem: priv,
        out,
      });
      return readFileSync(out);
    };
    const s = await maintenanceSite(t, { updates });
    const admin = await s.as('admin1', 'admin');
    await admin.reauth();
    const install = async (data: Buffer) => {
      const up = await send(admin.browser, '/api/v1/maintenance/uploads/update', data);
      assert.equal(up.status, 202, JSON.stringify(up.data));
      assert.equal(up.data.phase, 'verifying');
      for (let i = 0; i < 200; i++) {
        const job = await admin.browser.call('GET', `/api/v1/maintenance/jobs/${up.data.id as string}`);
        if (job.data.phase === 'installed' || job.data.phase === 'refused') return job.data;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error('the job did not finish');
    };

    const first = await install(await bundle('0.2.0'));
    assert.equal(first.phase, 'installed', JSON.stringify(first));
    const second = await install(await bundle('0.3.0'));
    assert.equal(second.phase, 'installed', JSON.stringify(second));
    assert.equal(second.previous, '0.2.0');
    assert.match(readlinkSync(updates.currentLink), /0\.3\.0$/);

    // Unsigned: the manifest's signature removed.
    const good = join(dir, '0.4.0.tar');
    writeFileSync(good, await bundle('0.4.0'));
    const root = join(dir, 'unsigned');
    mkdirSync(root);
    await extract({ file: good, cwd: root });
    await create({ file: join(dir, 'unsigned.tar'), cwd: root, portable: true }, ['manifest.json', 'files']);
    const unsigned = await install(readFileSync(join(dir, 'unsigned.tar')));
    assert.equal(unsigned.phase, 'refused');
    assert.equal((unsigned.error as { code: string }).code, 'ERR_UPDATE_UNSIGNED');
    // Tampered: one byte of a file changed after signing.
    const tampered = readFileSync(good);
    const at = tampered.indexOf('the core of 0.4.0');
    tampered.write('THE', at);
    const refused = await install(tampered);
    assert.equal(refused.phase, 'refused');
    assert.equal((refused.error as { code: string }).code, 'ERR_UPDATE_TAMPERED');
    assert.match((refused.error as { message: string }).message, /core\.txt/);
    assert.match(readlinkSync(updates.currentLink), /0\.3\.0$/, 'refusals changed nothing');
    assert.deepEqual(readdirSync(join(s.core.config.dataDir, 'uploads')), []);

    await admin.reauth();
    const back = await admin.browser.call('POST', '/api/v1/maintenance/rollback', {});
    assert.equal(back.status, 200, JSON.stringify(back.data));
    assert.equal(back.data.version, '0.2.0');
    assert.match(readlinkSync(updates.currentLink), /0\.2\.0$/);
    const actions = [...s.core.audit.entries()].map((e) => e.action);
    for (const a of ['update.install', 'update.refused', 'update.revert']) assert.ok(actions.includes(a), a);
  });

  it('a restart whose systemctl is cut off by the stop it asked for ends nothing with an error', async (t) => {
    const s = site(t);
    const { PowerControl } = await import('../gateway/src/maintenance/power.ts');
    let cutOff: (e: Error) => void = () => {};
    const power = new PowerControl({
      audit: s.core.audit,
      delayMs: 0,
      run: () => new Promise((_, reject) => (cutOff = reject)),
    });
    power.request('restart', 'ui:admin1', 'test');
    await new Promise((r) => setTimeout(r, 20));
    s.core.close(); // the gateway stopped, as systemd asked it to
    const unhandled: unknown[] = [];
    const note = (e: unknown) => unhandled.push(e);
    process.on('unhandledRejection', note);
    t.after(() => process.off('unhandledRejection', note));
    cutOff(new Error('systemctl: terminated'));
    await new Promise((r) => setTimeout(r, 50));
    // On the appliance this was "The database connection is not open", exit 1, and systemd's result exit-code.
    assert.deepEqual(unhandled, []);
  });

  it('restarts or reboots only with the action typed as confirmation, through the injected command, audited', async (t) => {
    const s = await maintenanceSite(t);
    const admin = await s.as('admin1', 'admin');
    await admin.reauth();
    const unconfirmed = await admin.browser.call('POST', '/api/v1/maintenance/power', {
      action: 'reboot',
      confirm: 'restart',
    });
    assert.equal(errorCode(unconfirmed), 'ERR_UI_CONFIRM');
    const restart = await admin.browser.call('POST', '/api/v1/maintenance/power', {
      action: 'restart',
      confirm: 'restart',
    });
    assert.equal(restart.status, 202, JSON.stringify(restart.data));
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(s.commands, [['systemctl', '--no-block', 'restart', 'portcullis-gateway.service']]);
    const reboot = await admin.browser.call('POST', '/api/v1/maintenance/power', {
      action: 'reboot',
      confirm: 'Reboot',
    });
    assert.equal(reboot.status, 202);
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(s.commands.at(-1), ['systemctl', '--no-block', 'reboot']);
    const entries = [...s.core.audit.entries()].filter(
      (e) => e.action === 'gateway.restart' || e.action === 'host.reboot',
    );
    assert.deepEqual(
      entries.map((e) => [e.action, e.actor]),
      [
        ['gateway.restart', 'ui:admin1'],
        ['host.reboot', 'ui:admin1'],
      ],
    );
  });
});
