/**
 * Policy flows end to end with the real Node-RED runtime: the nodes package packed from nodes/ and installed
 * into Node-RED's user directory, Node-RED running as its own unprivileged user with the appliance settings
 * (admin login, HTTPS), a flow deployed through the Admin API, and a real DTLS sensor whose messages the flow's
 * policy check turns into a quarantine in the gateway — audited as the flow's token. The flows user can reach
 * the control socket and nothing else of the gateway's.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import {
  appendFileSync,
  chmodSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium } from 'playwright-core';
import { addFlowsAdmin, setupFlows } from '../gateway/src/flows/setup.ts';
import { loadFlowsCredentials } from './helpers/credentials.ts';
import { type E2e, startE2e, stopE2e } from './helpers/e2e.ts';
import { runPeer } from './helpers/peers.ts';

const require = createRequire(import.meta.url);
const ROOT = join(import.meta.dirname, '..');
const FLOWS_USER = 'pcflows';
const ADMIN_PASSWORD = 'flows admin passphrase';
const SHOTS = join(ROOT, 'test-artifacts', 'screenshots');
/** libcoap's -k takes the key as text; the gateway's CLI takes it as hex. */
const KEY = 'boiler-one-key-0123';

function ensureUser(name: string): { uid: number; gid: number } {
  try {
    execFileSync('id', ['-u', name], { stdio: 'ignore' });
  } catch {
    execFileSync('useradd', [
      '--system',
      '--no-create-home',
      '--user-group',
      '--shell',
      '/usr/sbin/nologin',
      name,
    ]);
  }
  const uid = Number(execFileSync('id', ['-u', name]).toString().trim());
  const gid = Number(execFileSync('id', ['-g', name]).toString().trim());
  return { uid, gid };
}

/** HTTPS JSON to Node-RED's Admin API (its certificate is the test's own self-signed one). */
async function admin(base: string, method: string, path: string, body?: unknown, token?: string) {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: {
      'content-type': 'application/json',
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      'Node-RED-Deployment-Type': 'full',
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let data: Record<string, unknown> = {};
  try {
    data = text ? (JSON.parse(text) as Record<string, unknown>) : {};
  } catch {
    data = { text };
  }
  return { status: res.status, data };
}

describe('policy flows in the real Node-RED runtime', () => {
  let e2e: E2e;
  let flowsDir: string;
  let credentials: string;
  let runDir: string;
  let nodeRed: ChildProcess;
  let base: string;
  let log = '';
  let flowToken = '';
  let accessToken = '';

  before(async () => {
    const user = ensureUser(FLOWS_USER);
    // The control socket lives in its own directory that the flows group may enter; the gateway's data
    // directory (0700, root) stays closed to it.
    runDir = mkdtempSync(join(tmpdir(), 'portcullis-run-'));
    chmodSync(runDir, 0o750);
    execFileSync('chgrp', [String(user.gid), runDir]);
    const socketPath = join(runDir, 'control.sock');
    e2e = await startE2e('gw-flows', async (home) => {
      appendFileSync(home.config, `control: {socketPath: ${socketPath}, socketGroup: ${FLOWS_USER}}\n`);
      await home.cli([
        'device',
        'add',
        'boiler-1',
        '--psk-identity',
        'boiler-1',
        '--psk',
        Buffer.from(KEY).toString('hex'),
      ]);
    });
    flowToken = (
      await e2e.home.cli([
        'flows',
        'token',
        'create',
        '--name',
        'rate-guard',
        '--scopes',
        'events:read,device:read,device:quarantine,audit:write',
      ])
    ).split('\n')[1] as string;

    // Node-RED's home: the appliance settings, an admin, TLS, and the nodes package packed from nodes/.
    flowsDir = mkdtempSync(join(tmpdir(), 'portcullis-flows-'));
    const conf = join(flowsDir, 'conf');
    const userDir = join(flowsDir, 'user');
    mkdirSync(conf);
    mkdirSync(userDir);
    copyFileSync(join(ROOT, 'systemd', 'node-red-settings.cjs'), join(conf, 'settings.js'));
    // The appliance's first boot: secrets as systemd credentials (systemd-creds, host key), an admin added by
    // the CLI; then what the service manager does for LoadCredentialEncrypted=: decrypt into a directory only
    // the service user can read, named by $CREDENTIALS_DIRECTORY.
    const credstore = join(flowsDir, 'credstore');
    await setupFlows({ configDir: conf, credstoreDir: credstore }, '127.0.0.1');
    await addFlowsAdmin(conf, 'flows-admin', ADMIN_PASSWORD);
    credentials = loadFlowsCredentials(credstore, join(flowsDir, 'credentials'));
    execFileSync('npm', ['pack', '--silent', '--pack-destination', flowsDir], { cwd: join(ROOT, 'nodes') });
    const tarball = readdirSync(flowsDir).find((f) => f.endsWith('.tgz')) as string;
    writeFileSync(join(userDir, 'package.json'), '{"name":"portcullis-flows","private":true}\n');
    execFileSync('npm', ['install', '--no-audit', '--no-fund', '--offline', join(flowsDir, tarball)], {
      cwd: userDir,
      stdio: 'ignore',
    });
    execFileSync('chown', ['-R', `${user.uid}:${user.gid}`, flowsDir]);
    chmodSync(flowsDir, 0o700);

    const port = 18000 + Math.floor(Math.random() * 1000);
    base = `https://127.0.0.1:${port}`;
    nodeRed = spawn(
      'runuser',
      [
        '-u',
        FLOWS_USER,
        '--',
        process.execPath,
        require.resolve('node-red/red.js'),
        '--settings',
        join(conf, 'settings.js'),
        '--userDir',
        userDir,
      ],
      {
        env: {
          ...process.env,
          PORTCULLIS_FLOWS_CONFIG: conf,
          CREDENTIALS_DIRECTORY: credentials,
          PORTCULLIS_FLOWS_PORT: String(port),
          NODE_TLS_REJECT_UNAUTHORIZED: '0',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    nodeRed.stdout?.on('data', (d: Buffer) => {
      log += d.toString();
    });
    nodeRed.stderr?.on('data', (d: Buffer) => {
      log += d.toString();
    });
    const deadline = Date.now() + 60_000;
    while (!/Server now running at/.test(log)) {
      if (Date.now() > deadline || nodeRed.exitCode !== null)
        throw new Error(`Node-RED did not start:\n${log}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    // Node-RED's certificate is the test's own; this process trusts it for the Admin API calls.
    process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';
  });

  after(async () => {
    if (nodeRed && nodeRed.exitCode === null) {
      nodeRed.kill('SIGTERM');
      await new Promise((r) => nodeRed.once('exit', r));
    }
    delete process.env.NODE_TLS_REJECT_UNAUTHORIZED;
    await stopE2e(e2e ?? {});
    if (flowsDir) rmSync(flowsDir, { recursive: true, force: true });
    if (runDir) rmSync(runDir, { recursive: true, force: true });
  });

  it("runs Node-RED as its own user, which can reach the control socket but not the gateway's files", () => {
    const owner = execFileSync('ps', ['-o', 'user=', '-p', String(findNodeRedPid(nodeRed.pid as number))])
      .toString()
      .trim();
    assert.equal(owner, FLOWS_USER);
    for (const file of [join(e2e.home.dir, 'var', 'portcullis.db'), join(e2e.home.dir, 'var', 'keys')]) {
      const r = spawnSyncAs(['cat', file]);
      assert.notEqual(r.status, 0, `${FLOWS_USER} read ${file}`);
      assert.match(r.stderr, /Permission denied/);
    }
    const ls = spawnSyncAs(['test', '-w', join(runDir, 'control.sock')]);
    assert.equal(ls.status, 0, 'the flows user may connect to the control socket');
  });

  it('keeps the editor and its Admin API behind a login', async () => {
    assert.equal((await admin(base, 'GET', '/flows')).status, 401);
    const wrong = await admin(base, 'POST', '/auth/token', {
      client_id: 'node-red-admin',
      grant_type: 'password',
      scope: '*',
      username: 'flows-admin',
      password: 'not it',
    });
    assert.ok(wrong.status === 401 || wrong.status === 403, String(wrong.status));
    assert.equal(wrong.data.access_token, undefined);
    const ok = await admin(base, 'POST', '/auth/token', {
      client_id: 'node-red-admin',
      grant_type: 'password',
      scope: '*',
      username: 'flows-admin',
      password: ADMIN_PASSWORD,
    });
    assert.equal(ok.status, 200);
    accessToken = ok.data.access_token as string;
    const nodes = await fetch(`${base}/nodes`, {
      headers: { authorization: `Bearer ${accessToken}`, accept: 'application/json' },
    });
    const list = (await nodes.json()) as { module: string; types: string[]; enabled: boolean }[];
    const ours = list.filter((s) => s.module === 'node-red-contrib-portcullis').flatMap((s) => s.types);
    assert.ok(
      ours.includes('portcullis-policy') && ours.includes('portcullis-quarantine'),
      JSON.stringify(ours),
    );
    assert.ok(!list.some((s) => s.types.includes('exec')), 'the exec node is not loaded');
  });

  it('deploys a flow through the Admin API that quarantines a real DTLS sensor sending too fast', async () => {
    const flow = [
      { id: 'tab1', type: 'tab', label: 'Rate guard' },
      {
        id: 'gw',
        type: 'portcullis-gateway',
        name: 'this gateway',
        socketPath: join(runDir, 'control.sock'),
        credentials: { token: flowToken },
      },
      {
        id: 'ev',
        type: 'portcullis-events',
        z: 'tab1',
        name: 'device messages',
        gateway: 'gw',
        types: 'device.message',
        device: '',
        x: 140,
        y: 80,
        wires: [['pc']],
      },
      {
        id: 'pc',
        type: 'portcullis-policy',
        z: 'tab1',
        name: 'at most 3 a minute',
        gateway: 'gw',
        states: 'active',
        segments: '',
        windowEnabled: false,
        maxPerMinute: '3',
        maxScore: '',
        mud: false,
        x: 380,
        y: 80,
        wires: [[], ['q']],
      },
      {
        id: 'q',
        type: 'portcullis-quarantine',
        z: 'tab1',
        name: '',
        gateway: 'gw',
        action: 'quarantine',
        mode: 'observe',
        reason: '',
        x: 380,
        y: 180,
        wires: [['au']],
      },
      {
        id: 'au',
        type: 'portcullis-audit',
        z: 'tab1',
        name: '',
        gateway: 'gw',
        action: 'rate-guard',
        x: 580,
        y: 180,
        wires: [[]],
      },
    ];
    const deployed = await admin(base, 'POST', '/flows', flow, accessToken);
    assert.equal(deployed.status, 204, JSON.stringify(deployed.data));
    // Give the events node a moment to open the gateway's event stream.
    await new Promise((r) => setTimeout(r, 1500));

    for (let i = 0; i < 5; i++) {
      await runPeer('coap-client-openssl', [
        '-u',
        'boiler-1',
        '-k',
        KEY,
        '-m',
        'post',
        '-e',
        `{"t":${20 + i}}`,
        '-B',
        '5',
        `coaps://127.0.0.1:${e2e.home.dtlsPort}/telemetry`,
      ]);
    }
    let state = '';
    const until = Date.now() + 15_000;
    while (Date.now() < until) {
      state = (
        JSON.parse(await e2e.home.cli(['device', 'show', 'boiler-1', '--json'])) as {
          device: { state: string };
        }
      ).device.state;
      if (state === 'quarantined') break;
      await new Promise((r) => setTimeout(r, 300));
    }
    assert.equal(
      state,
      'quarantined',
      `${log.slice(-1500)}\n${e2e.gw.log.slice(-15).join('\n')}\n${e2e.gw.stderr()}`,
    );
    const audit = await e2e.home.cli(['audit', 'export', '--format', 'jsonl']);
    assert.match(audit, /"actor":"flows:rate-guard","action":"device.quarantine","target":"boiler-1"/);
    assert.match(audit, /"actor":"flows:rate-guard","action":"flow.rate-guard","target":"boiler-1"/);
    assert.match(audit, /messages in the last minute, more than 3/);
    // The fifth message asked again: one quarantine only, no error in the flow.
    assert.equal(audit.split('\n').filter((l) => l.includes('"action":"device.quarantine"')).length, 1);
  });

  it('shows the Portcullis palette and the deployed flow in the editor (screenshot)', async () => {
    mkdirSync(SHOTS, { recursive: true });
    const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
    try {
      const page = await (
        await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 720 } })
      ).newPage();
      await page.goto(`${base}/`);
      await page.locator('#node-dialog-login-username').fill('flows-admin');
      await page.locator('#node-dialog-login-password').fill(ADMIN_PASSWORD);
      await page.locator('#node-dialog-login-submit').click();
      await page
        .locator('.red-ui-palette-category', { hasText: 'Portcullis' })
        .first()
        .waitFor({ timeout: 30_000 });
      await page.locator('.red-ui-flow-node-group').first().waitFor({ timeout: 30_000 });
      await page.keyboard.press('Escape');
      // The palette narrowed to the Portcullis nodes, beside the deployed flow with its live status badges.
      await page.locator('#red-ui-palette-search input').pressSequentially('portcullis', { delay: 30 });
      await page.waitForTimeout(1500);
      await page.screenshot({ path: join(SHOTS, 'node-red-flow.png') });
      assert.ok(
        (await page.locator('.red-ui-palette-node[data-palette-type="portcullis-policy"]').count()) === 1,
      );
    } finally {
      await browser.close();
    }
  });
});

function spawnSyncAs(argv: string[]) {
  const { spawnSync } = require('node:child_process') as typeof import('node:child_process');
  const r = spawnSync('runuser', ['-u', FLOWS_USER, '--', ...argv]);
  return { status: r.status, stderr: r.stderr.toString() };
}

/** runuser forks the real Node-RED process as a child: its pid, whose owner is what matters. */
function findNodeRedPid(runuserPid: number): number {
  const child = execFileSync('pgrep', ['-P', String(runuserPid)])
    .toString()
    .trim()
    .split('\n')[0];
  return Number(child || runuserPid);
}
