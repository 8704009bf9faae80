import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { VERSION } from '../gateway/src/version.ts';
import { PORTCULLIS_BIN, runCli, spawnCli, waitForLine } from './helpers/cli.ts';
import { httpsGet } from './helpers/https.ts';
import { tempDir } from './helpers/tmp.ts';

const REPO_ROOT = dirname(dirname(PORTCULLIS_BIN));

interface StartedLine {
  ui: string;
  dtls: string;
  dataDir: string;
}

function startedLine(line: string): StartedLine | undefined {
  try {
    const o = JSON.parse(line) as { msg?: string } & StartedLine;
    return o.msg === 'gateway started' ? o : undefined;
  } catch {
    return undefined;
  }
}

/** The actions on the audit record, in order, as the CLI exports them. */
async function auditActions(globalArgs: string[], cwd: string): Promise<string[]> {
  const exported = await runCli([...globalArgs, 'audit', 'export', '--format', 'jsonl'], { cwd });
  assert.equal(exported.code, 0, exported.stderr);
  return exported.stdout
    .trim()
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => (JSON.parse(l) as { action: string }).action);
}

describe('portcullis start', () => {
  it('comes up on embedded defaults, answers /healthz over HTTPS, and exits 0 within 5 s of SIGTERM', async (t) => {
    const dir = tempDir(t);
    // The defaults are 8443 and 5684; the test listens on free ports instead, so that `npm test` passes while
    // the Quick start's own `npm start` is running. Every other setting is the embedded default.
    const defaults = await runCli(['config', 'check', '--print'], { cwd: dir });
    assert.match(defaults.stdout, /^ok: embedded defaults$/m);
    const effective = JSON.parse(defaults.stdout.slice(defaults.stdout.indexOf('{'))) as {
      ui: { host: string; port: number };
      dtls: { host: string; port: number };
      dataDir: string;
    };
    assert.deepEqual(
      [effective.ui.host, effective.ui.port, effective.dtls.host, effective.dtls.port, effective.dataDir],
      ['127.0.0.1', 8443, '127.0.0.1', 5684, join(dir, 'var')],
    );
    writeFileSync(join(dir, 'ports.yaml'), 'ui: {port: 0}\ndtls: {port: 0}\n');
    const child = spawnCli(['--config', 'ports.yaml', 'start'], { cwd: dir });
    t.after(() => child.kill('SIGKILL'));
    const started = await waitForLine(child, startedLine);
    assert.match(started.ui, /^https:\/\/127\.0\.0\.1:\d+$/);
    assert.match(started.dtls, /^127\.0\.0\.1:\d+$/);
    assert.equal(started.dataDir, join(dir, 'var'));

    // The UI's certificate is issued by the gateway's identity CA: that is what a browser trusts.
    const ca = readFileSync(join(dir, 'var', 'tls', 'identity-ca.pem'), 'utf8');
    assert.equal(statSync(join(dir, 'var', 'tls', 'ui-key.pem')).mode & 0o777, 0o600);
    assert.ok(
      new X509Certificate(readFileSync(join(dir, 'var', 'tls', 'ui-cert.pem'))).checkIssued(
        new X509Certificate(ca),
      ),
    );
    const res = await httpsGet(`${started.ui}/healthz`, ca);
    assert.equal(res.status, 200);
    assert.match(String(res.headers['content-type']), /application\/json/);
    const body = JSON.parse(res.body);
    assert.equal(body.status, 'ok');
    assert.equal(body.version, VERSION);
    assert.deepEqual(body.components, {
      store: 'ok',
      keystore: 'software',
      uplink: 'unset',
      firewall: 'off',
      dtlsCrypto: 'native',
      pullPoller: 'idle',
    });
    assert.deepEqual(body.reasons, []);
    assert.equal(res.headers['x-content-type-options'], 'nosniff');

    const t0 = performance.now();
    child.kill('SIGTERM');
    const [code] = (await once(child, 'exit')) as [number | null];
    const elapsed = performance.now() - t0;
    assert.equal(code, 0);
    assert.ok(elapsed < 5_000, `took ${elapsed} ms to exit`);

    // Start and stop are on the record, and the record is intact.
    assert.deepEqual(await auditActions(['--config', 'ports.yaml'], dir), ['gateway.start', 'gateway.stop']);
    assert.equal((await runCli(['--config', 'ports.yaml', 'audit', 'verify'], { cwd: dir })).code, 0);
  });

  it('stops cleanly, on the record, when SIGTERM arrives while it is still starting', async (t) => {
    const dir = tempDir(t);
    writeFileSync(join(dir, 'ports.yaml'), 'ui: {port: 0}\ndtls: {port: 0}\n');
    const child = spawnCli(['--config', 'ports.yaml', 'start'], { cwd: dir });
    t.after(() => child.kill('SIGKILL'));
    // The first-boot setup code is printed late in start-up, before the gateway reports itself started.
    const lines = createInterface({ input: child.stderr as NodeJS.ReadableStream });
    for await (const line of lines) if (line.includes('first boot')) break;
    child.kill('SIGTERM');
    const [code] = (await once(child, 'exit')) as [number | null];
    assert.equal(code, 0);
    assert.deepEqual(await auditActions(['--config', 'ports.yaml'], dir), ['gateway.start', 'gateway.stop']);
  });

  it('stops the gateway too when `npm start` (the README command) receives SIGTERM', async (t) => {
    const dir = tempDir(t);
    const config = join(dir, 'config.yaml');
    writeFileSync(config, `dataDir: ${join(dir, 'var')}\nui: {port: 0}\ndtls: {port: 0}\n`);
    const npm = spawn('npm', ['start', '--silent'], {
      cwd: REPO_ROOT,
      env: { ...process.env, PORTCULLIS_CONFIG: config },
      stdio: ['ignore', 'pipe', 'pipe'],
      // Own process group, so cleanup can reach a gateway the wrapper failed to stop.
      detached: true,
    });
    t.after(() => {
      try {
        process.kill(-(npm.pid as number), 'SIGKILL');
      } catch {
        // already gone
      }
    });
    await waitForLine(npm, startedLine);
    npm.kill('SIGTERM');
    await once(npm, 'exit');
    await delay(300);
    // The gateway itself must have shut down cleanly, not been orphaned by the npm wrapper.
    assert.deepEqual(await auditActions(['--config', config], dir), ['gateway.start', 'gateway.stop']);
  });

  it('reuses its UI certificate across restarts', async (t) => {
    const dir = tempDir(t);
    const config = join(dir, 'config.yaml');
    writeFileSync(config, 'ui: {port: 0}\ndtls: {port: 0}\n');
    const certs: string[] = [];
    for (let i = 0; i < 2; i++) {
      const child = spawnCli(['--config', config, 'start'], { cwd: dir });
      t.after(() => child.kill('SIGKILL'));
      const started = await waitForLine(child, startedLine);
      const ca = readFileSync(join(dir, 'var', 'tls', 'identity-ca.pem'), 'utf8');
      assert.equal((await httpsGet(`${started.ui}/healthz`, ca)).status, 200);
      certs.push(readFileSync(join(dir, 'var', 'tls', 'ui-cert.pem'), 'utf8'));
      child.kill('SIGTERM');
      assert.deepEqual(await once(child, 'exit'), [0, null]);
    }
    assert.equal(certs[0], certs[1]);
  });

  it('fails with a clear error and exit 1 when its UI port is taken, and records nothing', async (t) => {
    const dir = tempDir(t);
    const blocker = createServer();
    blocker.listen(0, '127.0.0.1');
    await once(blocker, 'listening');
    t.after(() => blocker.close());
    const port = (blocker.address() as { port: number }).port;
    const config = join(dir, 'config.yaml');
    writeFileSync(config, `ui: {port: ${port}}\ndtls: {port: 0}\n`);
    const r = await runCli(['--config', config, 'start'], { cwd: dir });
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`ERR_LISTEN.*127\\.0\\.0\\.1:${port}.*EADDRINUSE`));
    // A first start that failed leaves no data directory behind (it would look like an installed gateway).
    assert.equal(existsSync(join(dir, 'var')), false, 'no new ./var');
    const exported = await runCli(['--config', config, 'audit', 'export', '--format', 'jsonl'], { cwd: dir });
    assert.equal(exported.stdout, '');
  });

  it('fails with a clear error and exit 1 when its DTLS port is taken, and leaves no listener behind', async (t) => {
    const dir = tempDir(t);
    const blocker = createSocket('udp4');
    blocker.bind(0, '127.0.0.1');
    await once(blocker, 'listening');
    t.after(() => blocker.close());
    const port = blocker.address().port;
    const config = join(dir, 'config.yaml');
    writeFileSync(config, `ui: {port: 0}\ndtls: {port: ${port}}\n`);
    // A data directory that was there before the failed start is left as it was.
    mkdirSync(join(dir, 'var'));
    writeFileSync(join(dir, 'var', 'keep'), 'x');
    const r = await runCli(['--config', config, 'start'], { cwd: dir });
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`ERR_LISTEN.*dtls.*127\\.0\\.0\\.1:${port}.*EADDRINUSE`));
    assert.equal(readFileSync(join(dir, 'var', 'keep'), 'utf8'), 'x');
  });

  it('refuses to start on an invalid config with exit 2 and creates no data directory', async (t) => {
    const dir = tempDir(t);
    const config = join(dir, 'config.yaml');
    writeFileSync(config, `dataDir: ${join(dir, 'data')}\nfirewall: {enforce: "yes"}\n`);
    const r = await runCli(['--config', config, 'start'], { cwd: dir });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /firewall\.enforce/);
    assert.throws(() => statSync(join(dir, 'data')), /ENOENT/);
  });
});

describe('portcullis --version and --help', () => {
  it('prints the package version', async () => {
    const r = await runCli(['--version']);
    assert.equal(r.code, 0);
    assert.equal(r.stdout.trim(), VERSION);
  });

  it('documents the config search order and exit codes, and rejects an unknown command with exit 2', async () => {
    const help = await runCli(['--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /PORTCULLIS_CONFIG/);
    assert.match(help.stdout, /Exit codes/);
    const bad = await runCli(['frobnicate']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /unknown command/);
  });
});
