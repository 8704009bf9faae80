/**
 * Issue 19 item 6: failed authentications leave a trace that an attacker cannot turn into a flood.
 *
 * Each test attacks first, then checks what holds: a wrong setup code is audited (it used to be appended inside
 * the transaction its own error rolled back); failed sensor handshakes from real peers (libcoap with a wrong
 * key, openssl with an unknown identity, a decommissioned sensor, an untrusted certificate) are audited as one
 * entry per source address and identity per minute, with counts and never a key; and a brute force raises a
 * credential-guessing alert.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { handshakeFailureRecorder } from '../../gateway/src/datapath/auth-failures.ts';
import { UserService } from '../../gateway/src/users/index.ts';
import { runCli, spawnCli, waitForLine } from '../helpers/cli.ts';
import { freeUdpPort } from '../helpers/gateway.ts';
import { coapClientPost, opensslDtlsArgs, opensslPsk, runPeer } from '../helpers/peers.ts';
import { makePki, type TestPki } from '../helpers/pki.ts';
import { Browser, PASSWORD, site } from '../helpers/ui.ts';

interface AuditLine {
  seq?: number;
  actor: string;
  action: string;
  target: string | null;
  details: Record<string, unknown>;
}

const tally = (e: AuditLine, field: string) =>
  Object.fromEntries(
    ((e.details[field] ?? []) as { value: string; count: number }[]).map((t) => [t.value, t.count]),
  );

describe('attack: guessing the setup code', () => {
  it('audits every wrong setup code, per source per minute, without the code', async (t) => {
    const { core, app, clock } = site(t);
    const code = core.users.issueSetupCode() as string;
    const attacker = new Browser(app, '198.51.100.7');
    for (const guess of ['AAAAA-BBBBB', 'CCCCC-DDDDD', 'EEEEE-FFFFF']) {
      const r = await attacker.call('POST', '/auth/setup', {
        code: guess,
        username: 'root',
        password: PASSWORD,
      });
      assert.equal(r.status, 403);
    }
    clock.advance(60_000);
    core.users.flushFailureAudit();
    const entries = [...core.store.audit.iterate()].filter((e) => e.action === 'user.setup.failed');
    assert.equal(entries.length, 1, 'one entry for the source this minute');
    const details = JSON.parse(entries[0]?.details ?? '{}') as { source: string; count: number };
    assert.equal(details.source, '198.51.100.7');
    assert.equal(details.count, 3);
    // What holds: setup still works with the right code, and neither code nor guesses are in the log.
    const ok = await new Browser(app, '192.0.2.1').call('POST', '/auth/setup', {
      code,
      username: 'root',
      password: PASSWORD,
    });
    assert.equal(ok.status, 201);
    const all = JSON.stringify([...core.store.audit.iterate()]);
    assert.doesNotMatch(all, /AAAAA|CCCCC|EEEEE/);
    assert.doesNotMatch(all, new RegExp(code.replace('-', '-?')));
  });
});

describe('attack: flooding the audit log with failures', () => {
  it('writes one login-failure entry per address a minute, at most 1,000 addresses and one entry for the rest', async (t) => {
    const { core, clock } = site(t);
    // Hashing is not what this measures: a hasher that always says no keeps 2,400 attempts fast.
    const users = new UserService(
      core.store,
      core.keystore as NonNullable<typeof core.keystore>,
      core.audit,
      core.clock,
      { hasher: { hash: async () => 'x', verify: async () => false } },
    );
    for (let i = 0; i < 1200; i++) {
      const address = `10.${Math.floor(i / 250)}.${i % 250}.1`;
      for (let j = 0; j < 2; j++) await users.authenticate('root', 'guess', address).catch(() => undefined);
    }
    clock.advance(60_000);
    users.flushFailureAudit();
    const entries = [...core.store.audit.iterate()].filter((e) => e.action === 'user.login.failed');
    assert.equal(entries.length, 1001);
    const other = entries.map((e) => JSON.parse(e.details)).find((d) => d.source === 'other');
    assert.equal(other?.count, 400, 'the 200 addresses beyond the cap, counted together');
  });

  it('writes one sensor-failure entry per address and identity a minute, at most 8 identities per address', (t) => {
    const { core, clock } = site(t);
    const recorder = handshakeFailureRecorder(core, { error: () => undefined });
    const fail = (address: string, identity: string) =>
      recorder.record({
        peer: { address, port: 40000, family: 'IPv4' },
        code: 'ERR_DTLS_UNKNOWN_PSK_IDENTITY',
        message: 'unknown PSK identity',
        alert: 20,
        fromPeer: false,
        claimedPskIdentity: Buffer.from(identity),
      });
    for (let i = 0; i < 500; i++) fail('127.0.0.9', `random-${i}`);
    for (let i = 0; i < 3; i++) fail('127.0.0.9', 'random-0');
    // Not a credential attempt: not audited at all.
    recorder.record({
      peer: { address: '127.0.0.9', port: 1, family: 'IPv4' },
      code: 'ERR_DTLS_HANDSHAKE_TIMEOUT',
      message: 'timeout',
      alert: -1,
      fromPeer: false,
    });
    clock.advance(60_000);
    recorder.close();
    const entries = [...core.store.audit.iterate()]
      .filter((e) => e.action === 'sensor.auth.failed')
      .map((e) => JSON.parse(e.details) as { identity: string; count: number });
    assert.equal(entries.length, 9);
    assert.equal(entries.find((e) => e.identity === 'random-0')?.count, 4);
    assert.equal(entries.find((e) => e.identity === '*')?.count, 492);
  });
});

describe('attack: failed sensor authentications against the real gateway', () => {
  let dir: string;
  let config: string;
  let port: number;
  let pki: TestPki;
  let gateway: ReturnType<typeof spawnCli> | undefined;
  const KEY = 'boiler-right-key-0001';
  const OLD_KEY = 'retired-sensor-key-02';
  const WRONG = 'attacker-wrong-key-99';
  const cli = async (...args: string[]) => {
    const r = await runCli(['--config', config, ...args], { cwd: dir });
    if (r.code !== 0) throw new Error(`portcullis ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'portcullis-authaudit-'));
    pki = makePki();
    port = await freeUdpPort();
    config = join(dir, 'config.yaml');
    writeFileSync(
      config,
      [`dataDir: ${join(dir, 'var')}`, `dtls: {host: 127.0.0.1, port: ${port}}`, 'ui: {port: 0}', ''].join(
        '\n',
      ),
    );
    const hex = (s: string) => Buffer.from(s).toString('hex');
    await cli('device', 'add', 'boiler-1', '--psk-identity', 'boiler-1', '--psk', hex(KEY));
    await cli('device', 'add', 'old-1', '--psk-identity', 'old-1', '--psk', hex(OLD_KEY));
    await cli('device', 'decommission', 'old-1', '--reason', 'retired');
    await cli('identity', 'trust', 'add', '--name', 'acme', '--ca', pki.caPath);
    gateway = spawnCli(['--config', config, 'start'], { cwd: dir });
    await waitForLine(gateway, (l) => (l.includes('"gateway started"') ? true : undefined));
  });

  after(async () => {
    if (gateway && gateway.exitCode === null) {
      gateway.kill('SIGKILL');
      await new Promise((r) => gateway?.once('exit', r));
    }
    pki?.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  /** libcoap's gnutls build with a client certificate (Debian's openssl client offers no suite we share). */
  const certificateSensor = (party: TestPki['client']) =>
    runPeer('coap-client-gnutls', [
      ...['-c', party.certPath, '-j', party.keyPath, '-C', join(dir, 'var', 'tls', 'identity-ca.pem')],
      ...['-m', 'post', '-e', '{"t":1}', '-B', '3', `coaps://127.0.0.1:${port}/telemetry`],
    ]);
  const unknownIdentity = (identity: string) =>
    runPeer('openssl', opensslDtlsArgs(port, 'PSK-AES128-CCM8', ...opensslPsk(identity, WRONG)), {
      timeoutMs: 5000,
    });

  it('audits one entry per source and identity per minute, raises a credential-guessing alert, never logs a key', async () => {
    // The attack: a wrong key for a real sensor (libcoap), an unknown identity (openssl), a decommissioned
    // sensor with its old key, a certificate from a CA nobody trusts, one from the trusted CA whose device is
    // still pending approval, then a burst of guesses.
    for (let i = 0; i < 2; i++) {
      const r = await coapClientPost(port, { identity: 'boiler-1', key: WRONG }, '{"t":1}', ['-B', '3']);
      assert.doesNotMatch(r.stdout.toString(), /2\.04/);
    }
    await unknownIdentity('ghost');
    await coapClientPost(port, { identity: 'old-1', key: OLD_KEY }, '{"t":1}', ['-B', '3']);
    await certificateSensor(pki.stranger);
    await certificateSensor(pki.client);
    // 20 more from the same address, 4 at a time: a brute force at the rule's threshold.
    for (let i = 0; i < 20; i += 4) {
      await Promise.all([0, 1, 2, 3].map((j) => unknownIdentity(`guess-${i + j}`)));
    }
    const alerts = JSON.parse(await cli('alerts', 'list', '--json')) as {
      kind: string;
      severity: string;
      explanation: string;
    }[];
    const guessing = alerts.find((a) => a.kind === 'anomaly.auth');
    assert.ok(guessing, JSON.stringify(alerts));
    assert.equal(guessing.severity, 'high');
    assert.match(
      guessing.explanation,
      /credential guessing: 20 failed DTLS authentications from 127\.0\.0\.1/,
    );

    // The entries are written when their minute ends, or at stop.
    const g = gateway as NonNullable<typeof gateway>;
    g.kill('SIGTERM');
    await new Promise((r) => g.once('exit', r));
    const exported = await cli('audit', 'export', '--format', 'jsonl');
    const entries = exported
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as AuditLine)
      .filter((e) => e.action === 'sensor.auth.failed');
    const byIdentity = new Map(entries.map((e) => [e.details.identity as string, e]));
    assert.equal(byIdentity.size, entries.length, 'one entry per source and identity');
    for (const e of entries) assert.equal(e.details.source, '127.0.0.1');

    const boiler = byIdentity.get('boiler-1') as AuditLine;
    assert.equal(boiler.target, 'boiler-1');
    assert.equal(boiler.details.count, 2);
    assert.deepEqual(tally(boiler, 'reason'), { 'wrong-key': 2 });

    const ghost = byIdentity.get('ghost') as AuditLine;
    assert.equal(ghost.target, null);
    assert.deepEqual(tally(ghost, 'reason'), { 'unknown-identity': 1 });

    const old = byIdentity.get('old-1') as AuditLine;
    assert.equal(old.target, 'old-1', 'a decommissioned credential is named as such');
    assert.deepEqual(tally(old, 'deviceState'), { decommissioned: 1 });

    const certs = entries.filter((e) => String(e.details.identity).startsWith('certificate:sha256:'));
    assert.deepEqual(
      certs.map((e) => [tally(e, 'reason'), tally(e, 'deviceState')]),
      [
        [{ 'untrusted-certificate': 1 }, {}],
        [{ refused: 1 }, { pending: 1 }],
      ],
      'the untrusted certificate and the pending one, by fingerprint',
    );
    assert.match(certs[1]?.target ?? '', /^x509-[0-9a-f]{16}$/);

    // One address spraying identities: at most 8 named a minute, the rest counted together.
    const rest = byIdentity.get('*') as AuditLine;
    assert.ok(rest, 'identities beyond 8 per source fold into "*"');
    assert.equal(entries.length, 9);
    const total = entries.reduce((n, e) => n + (e.details.count as number), 0);
    assert.equal(total, 2 + 1 + 1 + 2 + 20, 'every failure counted once');

    for (const secret of [KEY, OLD_KEY, WRONG]) {
      assert.ok(!exported.includes(secret), 'no key in the audit log');
      assert.ok(!exported.includes(Buffer.from(secret).toString('hex')), 'no key (hex) in the audit log');
    }
    assert.equal((await runCli(['--config', config, 'audit', 'verify'], { cwd: dir })).code, 0);
  });
});
