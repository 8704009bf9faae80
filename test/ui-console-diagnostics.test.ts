/**
 * Diagnostics in process (issue 25 item 11): the sensors' handshake record (bounded, repeats folded, nothing
 * secret, successes never pushed out by a flood of failures), shown on the device and diagnostics pages, and
 * ping from the gateway — admin only, the host validated so that an option (`-f`) or shell syntax (`;`, `$(…)`)
 * never reaches ping, the count bounded. The browser side, with real DTLS peers, is in ui-console-admin.test.ts.
 */
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { HandshakeLog } from '../gateway/src/datapath/handshake-log.ts';
import type { HandshakeFailure, PeerAddress } from '../gateway/src/dtls/index.ts';
import { createUiApp } from '../ui/src/app.ts';
import { ping } from '../ui/src/ping.ts';
import { Browser, site } from './helpers/ui.ts';

const peer = (address: string, port = 5684): PeerAddress => ({ address, port, family: 'IPv4' });
const failure = (address: string, code: string, identity?: string): HandshakeFailure => ({
  peer: peer(address),
  code,
  message: code,
  alert: 20,
  fromPeer: false,
  ...(identity ? { claimedPskIdentity: Buffer.from(identity) } : {}),
});

describe('sensor handshake record', () => {
  it('folds repeats, keeps successes apart from failures, stays bounded and holds no key', () => {
    let now = Date.UTC(2026, 11, 6, 9);
    const log = new HandshakeLog(() => now, { maxConnected: 4, maxFailed: 8 });
    const key = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
    log.connectedSession(
      {
        peer: peer('10.0.0.5'),
        credential: { kind: 'psk', identity: Buffer.from('boiler-7') },
        cipherSuite: 'TLS_PSK_WITH_AES_128_CCM_8',
      },
      'boiler-7',
    );
    for (let i = 0; i < 3; i++) {
      now += 1000;
      log.failure(failure('10.0.0.5', 'ERR_DTLS_BAD_RECORD_MAC', 'boiler-7'), 'boiler-7');
    }
    const mine = log.recent({ deviceId: 'boiler-7' });
    assert.equal(mine.length, 2);
    assert.equal(mine[0]?.outcome, 'failed');
    assert.equal(mine[0]?.count, 3, 'three retries are one record');
    assert.match(mine[0]?.reason ?? '', /wrong key.*bad_record_mac/);
    assert.equal(mine[0]?.credential, 'psk:boiler-7');
    assert.equal(mine[1]?.suite, 'TLS_PSK_WITH_AES_128_CCM_8');
    // A flood of failures from many addresses: bounded, and the success is still there.
    for (let i = 0; i < 500; i++)
      log.failure(failure(`198.51.100.${i % 250}`, 'ERR_DTLS_UNKNOWN_PSK_IDENTITY', `x${i}`), null);
    for (let i = 0; i < 50; i++) log.cookieRefused(peer(`203.0.113.${i}`));
    assert.equal(log.size, 1 + 8);
    assert.equal(log.recent({ deviceId: 'boiler-7' }).filter((r) => r.outcome === 'connected').length, 1);
    assert.match(log.recent({ address: '203.0.113.49' })[0]?.reason ?? '', /cookie refused/);
    // Nothing in it that could be a key: only what the server saw in the clear.
    assert.ok(!JSON.stringify(log.recent({ limit: 1000 })).includes(key.toString('hex')));
    // An identity that is not printable is written as hex, bounded.
    log.failure(failure('10.0.0.9', 'ERR_DTLS_UNKNOWN_PSK_IDENTITY', '\u0000\u0001evil<script>'), null);
    assert.match(log.recent({ address: '10.0.0.9' })[0]?.credential ?? '', /^psk:hex:[0-9a-f]+$/);
  });
});

describe('the DTLS server reports a refused cookie', () => {
  it('calls onCookieRefused for a hello whose cookie does not verify, not for the first, cookie-less hello', async () => {
    const { DtlsServer } = await import('../gateway/src/dtls/index.ts');
    const refused: string[] = [];
    const server = new DtlsServer({
      lookupPsk: () => undefined,
      onCookieRefused: (p) => refused.push(p.address),
    });
    const { port } = await server.listen(0, '127.0.0.1');
    const sock = createSocket('udp4');
    try {
      /** One ClientHello record (epoch 0) offering PSK-AES128-CCM8, with `cookie`. */
      const hello = (cookie: Buffer, seq: number) => {
        const body = Buffer.concat([
          Buffer.from([0xfe, 0xfd]),
          Buffer.alloc(32, 7),
          Buffer.from([0, cookie.length]),
          cookie,
          Buffer.from([0, 2, 0xc0, 0xa8, 1, 0]),
        ]);
        const hs = Buffer.alloc(12);
        hs[0] = 1;
        hs.writeUIntBE(body.length, 1, 3);
        hs.writeUInt16BE(seq, 4);
        hs.writeUIntBE(body.length, 9, 3);
        const rec = Buffer.alloc(13);
        rec[0] = 22;
        rec.writeUInt16BE(0xfefd, 1);
        rec.writeUIntBE(seq, 5, 6);
        rec.writeUInt16BE(12 + body.length, 11);
        return Buffer.concat([rec, hs, body]);
      };
      const ask = async (d: Buffer) => {
        sock.send(d, port, '127.0.0.1');
        const [answer] = (await once(sock, 'message')) as [Buffer];
        return answer;
      };
      const hvr = await ask(hello(Buffer.alloc(0), 0));
      assert.equal(hvr[13], 3, 'a HelloVerifyRequest');
      assert.deepEqual(refused, [], 'the first hello has no cookie to refuse');
      const again = await ask(hello(Buffer.alloc(16, 0xab), 1));
      assert.equal(again[13], 3, 'a forged cookie gets a fresh HelloVerifyRequest');
      assert.deepEqual(refused, ['127.0.0.1']);
    } finally {
      sock.close();
      await server.close();
    }
  });
});

describe('diagnostics pages in process', () => {
  it('shows a device’s last handshakes and the diagnostics table with its filter', async (t) => {
    const { core, login } = site(t);
    const log = new HandshakeLog(() => core.clock.now());
    const app = createUiApp(core, { handshakes: log });
    core.identity.addPskDevice({ id: 'boiler-7', pskIdentity: 'boiler-7', generate: true }, 'test');
    log.failure(failure('10.0.0.5', 'ERR_DTLS_BAD_FINISHED', 'boiler-7'), 'boiler-7');
    log.failure(failure('10.0.0.6', 'ERR_DTLS_NO_SHARED_SUITE'), null);
    const { b: viaSite } = await login('root', 'admin');
    const admin = Object.assign(new Browser(app), { cookie: viaSite.cookie, csrf: viaSite.csrf });
    const device = await admin.page('GET', '/devices/boiler-7');
    assert.equal(device.status, 200);
    assert.match(device.text, /Last handshakes/);
    assert.match(device.text, /client’s Finished did not match/);
    assert.doesNotMatch(
      device.text,
      /no shared cipher suite/,
      'another address’s record is not this device’s',
    );
    const all = await admin.page('GET', '/diagnostics');
    assert.match(all.text, /no shared cipher suite/);
    assert.match(all.text, /ERR_DTLS_BAD_FINISHED/);
    const filtered = await admin.page('GET', '/diagnostics?address=10.0.0.6');
    assert.doesNotMatch(filtered.text, /ERR_DTLS_BAD_FINISHED/);
    // A filter that is neither a device id nor an address is ignored, not echoed.
    const junk = await admin.page('GET', '/diagnostics?address=%3Cscript%3E&device=-x');
    assert.doesNotMatch(junk.text, /<script>/);
    // Without a record (a UI without a sensor listener) the page says so.
    const bare = Object.assign(new Browser(createUiApp(core)), {
      cookie: viaSite.cookie,
      csrf: viaSite.csrf,
    });
    assert.match((await bare.page('GET', '/diagnostics')).text, /recorded by a running gateway only/);
  });

  it('pings from the gateway for an admin only, and never lets an option or shell syntax through', async (t) => {
    const { core, login } = site(t);
    const { b: admin } = await login('root', 'admin');
    const ok = await admin.page('POST', '/diagnostics/ping', { host: '127.0.0.1', count: '1' });
    assert.equal(ok.status, 200);
    assert.match(ok.text, /127\.0\.0\.1: 1 of 1 answered \(0% loss\), round trip/);
    const entry = [...core.store.audit.iterate()].find((e) => e.action === 'diagnostics.ping');
    assert.equal(entry?.target, '127.0.0.1');
    for (const host of [
      '-f',
      '-f 127.0.0.1',
      '127.0.0.1; reboot',
      '$(reboot)',
      '127.0.0.1 -c 100000',
      '--',
      '`id`',
    ]) {
      const r = await admin.page('POST', '/diagnostics/ping', { host, count: '1' });
      assert.match(r.text, /Not sent: host: must be a host name .* or an IP address/, host);
    }
    for (const count of ['0', '6', '100000', '-1', '1; reboot']) {
      const r = await admin.page('POST', '/diagnostics/ping', { host: '127.0.0.1', count });
      assert.match(r.text, /Not sent: count: /, count);
    }
    assert.equal(
      [...core.store.audit.iterate()].filter((e) => e.action === 'diagnostics.ping').length,
      1,
      'refused runs never reached ping',
    );
    for (const role of ['technician', 'auditor'] as const) {
      const { b } = await login(role, role);
      const r = await b.page('POST', '/diagnostics/ping', { host: '127.0.0.1', count: '1' });
      assert.equal(r.status, 403, role);
      assert.equal((await b.page('GET', '/diagnostics')).status, 403, role);
    }
    // The service refuses too, whoever calls it.
    await assert.rejects(ping('-f', 1));
    await assert.rejects(ping('127.0.0.1', 50));
  });
});

describe('configuration changes in process', () => {
  it('refuses an invalid change with the schema’s words, writes nothing, and names only what changed', async (t) => {
    const { tempDir } = await import('./helpers/tmp.ts');
    const { mkdirSync, readFileSync, writeFileSync, existsSync, readdirSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { planConfigChange, writeConfigChange, restorePrevious, previousOf, checkCaPem } = await import(
      '../gateway/src/config/apply.ts'
    );
    const dir = tempDir(t);
    mkdirSync(join(dir, 'var'), { mode: 0o700 });
    const file = join(dir, 'config.yaml');
    const text = `# the site's file\ndataDir: ${join(dir, 'var')}\nsegments: []\n`;
    writeFileSync(file, text, { mode: 0o600 });
    assert.throws(
      () => planConfigChange(file, { segmentsYaml: '- name: plant\n  subnet: 10.1.0.0/33\n' }),
      (e: Error & { code?: string }) => e.code === 'ERR_CONFIG_INVALID' && /segments\.0/.test(e.message),
    );
    assert.throws(() => planConfigChange(file, { segmentsYaml: 'a: [' }), /not valid YAML/);
    assert.throws(() => planConfigChange(file, { segmentsYaml: '[]' }), { code: 'ERR_CONFIG_APPLY_STATE' });
    // A new uplink needs its CA; a "CA" with a key in it is refused and never stored.
    assert.throws(
      () => planConfigChange(file, { uplink: { url: 'mqtts://127.0.0.1:8883', topicPrefix: 'site' } }),
      /needs its broker’s CA/,
    );
    assert.throws(
      () => checkCaPem('-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n'),
      /no PEM certificate/,
    );
    assert.equal(readFileSync(file, 'utf8'), text);
    assert.deepEqual(readdirSync(dir).sort(), ['config.yaml', 'var']);
    const seg =
      '- name: plant\n  role: sensors\n  interface: eth1\n  subnet: 10.1.0.0/24\n  gatewayAddress: 10.1.0.1\n';
    const plan = planConfigChange(file, { segmentsYaml: seg });
    assert.deepEqual(plan.changed, ['segments']);
    writeConfigChange(plan, {
      id: 'x',
      actor: 'ui:root',
      changed: plan.changed,
      state: 'applying',
      reasons: [],
      requestedAt: new Date().toISOString(),
    });
    assert.match(readFileSync(file, 'utf8'), /# the site's file[\s\S]*name: plant/, 'comments stay');
    assert.equal(readFileSync(previousOf(file), 'utf8'), text);
    restorePrevious(file);
    assert.equal(readFileSync(file, 'utf8'), text);
    assert.ok(existsSync(`${file}.apply.json`));
    // The appliance's config file is root's: a refused write is said as such, not an internal error.
    const { fileRefusal } = await import('../gateway/src/config/apply.ts');
    for (const code of ['EACCES', 'EPERM', 'EROFS']) {
      const e = fileRefusal(
        '/etc/portcullis/config.yaml',
        Object.assign(new Error(code), { code }),
      ) as Error & {
        code: string;
      };
      assert.equal(e.code, 'ERR_CONFIG_APPLY_READONLY');
      assert.match(e.message, /consoleConfigFile/);
    }
  });

  it('writes the clock settings under its root, and says clearly when the host does not allow it', async (t) => {
    const { tempDir } = await import('./helpers/tmp.ts');
    const { mkdirSync, readFileSync, symlinkSync, writeFileSync, rmSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { hostTimePaths, readHostTime, setHostTime, hostRefusal } = await import(
      '../gateway/src/config/host-time.ts'
    );
    const root = tempDir(t);
    mkdirSync(join(root, 'etc'), { recursive: true });
    mkdirSync(join(root, 'usr', 'share'), { recursive: true });
    symlinkSync('/usr/share/zoneinfo', join(root, 'usr', 'share', 'zoneinfo'));
    const paths = hostTimePaths(root);
    const r = await setHostTime({ timeZone: 'Europe/Berlin', ntp: ['ntp.example.net'] }, paths);
    assert.deepEqual(r.changed, ['timeZone', 'ntp']);
    assert.deepEqual(readHostTime(paths), { timeZone: 'Europe/Berlin', ntp: ['ntp.example.net'] });
    await assert.rejects(setHostTime({ timeZone: 'Mars/Olympus', ntp: [] }, paths), {
      code: 'ERR_HOST_TIME_INVALID',
    });
    // The drop-in folder cannot be made (a file is in its place): the host refuses, said as such.
    rmSync(join(root, 'etc', 'systemd'), { recursive: true, force: true });
    writeFileSync(join(root, 'etc', 'systemd'), '');
    await assert.rejects(
      setHostTime({ timeZone: null, ntp: ['ntp2.example.net'] }, paths),
      (e: Error & { code?: string }) =>
        e.code === 'ERR_HOST_TIME_READONLY' &&
        /does not let the gateway change .*ProtectSystem=strict/.test(e.message),
    );
    // The appliance's own refusals (a read-only /etc under ProtectSystem=strict; no permission) read the same.
    for (const code of ['EROFS', 'EACCES', 'EPERM']) {
      assert.equal(
        hostRefusal('/etc/localtime', Object.assign(new Error(code), { code })).code,
        'ERR_HOST_TIME_READONLY',
      );
    }
    assert.equal(
      readFileSync(join(root, 'etc', 'timezone'), 'utf8'),
      'Europe/Berlin\n',
      'nothing half-written',
    );
  });

  it('lets admins only change the configuration or the clock', async (t) => {
    const { login } = site(t);
    for (const role of ['technician', 'auditor'] as const) {
      const { b } = await login(role, role);
      assert.equal(
        (
          await b.page('POST', '/configuration/apply', {
            part: 'segments',
            segments: '[]',
            password: 'x',
            code: '1',
          })
        ).status,
        403,
        role,
      );
      assert.equal(
        (await b.page('POST', '/configuration/time', { timeZone: 'UTC', ntp: '', password: 'x', code: '1' }))
          .status,
        403,
        role,
      );
      assert.equal((await b.page('GET', '/configuration')).status, 403, role);
    }
    // A UI without a supervisor (not `portcullis start`) refuses before any password is checked.
    const { b: admin } = await login('root', 'admin');
    const r = await admin.page('POST', '/configuration/apply', {
      part: 'segments',
      segments: '[]',
      password: 'x',
      code: '1',
    });
    assert.equal(r.status, 409);
    assert.match(r.text, /Not changed: this gateway process cannot restart itself/);
  });
});

describe('the configuration supervisor in process', () => {
  it('applies a change and restarts the gateway with it; a change left by a dead process is rolled back at start', async (t) => {
    const { tempDir } = await import('./helpers/tmp.ts');
    const { readFileSync, writeFileSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { systemClock } = await import('../gateway/src/clock.ts');
    const { resolveConfig } = await import('../gateway/src/config/index.ts');
    const { createLogger } = await import('../gateway/src/log.ts');
    const { GatewaySupervisor } = await import('../gateway/src/cli/supervise.ts');
    const { planConfigChange, writeConfigChange, markerOf, previousOf } = await import(
      '../gateway/src/config/apply.ts'
    );
    const { existsSync } = await import('node:fs');
    const dir = tempDir(t);
    const file = join(dir, 'config.yaml');
    const text = `dataDir: ${join(dir, 'var')}\nui: {port: 0}\ndtls: {port: 0}\nsegments: []\n`;
    writeFileSync(file, text, { mode: 0o600 });
    const deps = { clock: systemClock, logger: createLogger('fatal') };
    const seg =
      '- name: plant\n  role: sensors\n  interface: eth1\n  subnet: 10.1.0.0/24\n  gatewayAddress: 10.1.0.1\n';

    // Applied: no uplink to wait for, so a store that answers is healthy.
    const sup = new GatewaySupervisor(resolveConfig(file), deps, { healthBoundMs: 3000 });
    await sup.boot();
    assert.equal(sup.canApply(), true);
    assert.deepEqual(sup.check({ segmentsYaml: seg }), ['segments']);
    assert.equal(readFileSync(file, 'utf8'), text, 'a check writes nothing');
    assert.throws(() => sup.check({ segmentsYaml: '- name: Bad Name\n' }), { code: 'ERR_CONFIG_INVALID' });
    sup.apply({ segmentsYaml: seg }, 'ui:root');
    assert.throws(() => sup.apply({ segmentsYaml: '[]' }, 'ui:root'), { code: 'ERR_CONFIG_APPLY_BUSY' });
    for (let i = 0; i < 100 && sup.status()?.state === 'applying'; i++)
      await new Promise((r) => setTimeout(r, 100));
    assert.equal(sup.status()?.state, 'applied', JSON.stringify(sup.status()));
    assert.match(readFileSync(file, 'utf8'), /name: plant/);
    assert.equal(existsSync(markerOf(file)), false);
    await sup.stop('test');

    // A change whose process died before it proved itself: the next start puts the previous file back.
    const plan = planConfigChange(file, { segmentsYaml: '[]' });
    writeConfigChange(plan, {
      id: 'crashed',
      actor: 'ui:root',
      changed: plan.changed,
      state: 'applying',
      reasons: [],
      requestedAt: new Date().toISOString(),
    });
    const inForce = readFileSync(previousOf(file), 'utf8');
    const again = new GatewaySupervisor(resolveConfig(file), deps);
    const gw = await again.boot();
    try {
      assert.equal(again.status()?.state, 'rolled-back');
      assert.equal(readFileSync(file, 'utf8'), inForce);
      assert.match(gw.core.config.segments[0]?.name ?? '', /plant/);
      const entries = gw.core
        .searchAudit({ action: 'config.apply', limit: 10 })
        .filter((e) => e.action === 'config.apply');
      assert.deepEqual(
        entries.map((e) => [e.actor, (JSON.parse(e.details) as { result: string }).result]),
        [
          ['ui:root', 'rolled-back'],
          ['ui:root', 'applied'],
        ],
      );
    } finally {
      await again.stop('test');
    }
  });
});
