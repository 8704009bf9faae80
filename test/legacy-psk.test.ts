/**
 * Legacy PSKs (issue 22, item 6): keys given as text (libcoap's `-k`, many sensors' configuration), from the
 * command line or stdin, and factory keys under 128 bits admitted only on explicit request and marked weak
 * wherever the device is shown (CLI, UI, compliance report). libcoap's coap-client-openssl is the sensor.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { assess } from '../gateway/src/compliance/index.ts';
import { runCli, spawnCli, waitForLine } from './helpers/cli.ts';
import { type PeerResult, runPeer } from './helpers/peers.ts';
import { tempDir } from './helpers/tmp.ts';
import { site } from './helpers/ui.ts';

type Cli = (args: string[], input?: string) => ReturnType<typeof runCli>;

function home(t: Parameters<typeof tempDir>[0]): { dir: string; config: string; cli: Cli } {
  const dir = tempDir(t);
  const config = join(dir, 'config.yaml');
  writeFileSync(config, `dataDir: ${join(dir, 'var')}\nui: {port: 0}\ndtls: {host: 127.0.0.1, port: 0}\n`);
  return {
    dir,
    config,
    cli: (args, input) => runCli(['--config', config, ...args], { cwd: dir, input }),
  };
}

/** One libcoap request over DTLS with a text PSK, as a sensor configured with `-k` would send it. */
function coapClient(port: number, identity: string, key: string, method: 'post' | 'get', path: string) {
  return runPeer('coap-client-openssl', [
    ...['-u', identity, '-k', key, '-m', method, '-B', '5'],
    ...(method === 'post' ? ['-e', '{"t":21.5}'] : []),
    `coaps://127.0.0.1:${port}${path}`,
  ]);
}

/** libcoap exits 0 either way: a failed handshake or request shows only in its log lines (on stdout). */
function accepted(r: PeerResult): void {
  const out = r.stdout.toString() + r.stderr;
  assert.equal(r.code, 0, out);
  assert.doesNotMatch(out, /WARN|ERR|alert/, 'libcoap reported a failure');
  assert.doesNotMatch(out, /^4\.\d\d/m, 'the gateway refused the request');
}

function refused(r: PeerResult): void {
  assert.match(
    r.stdout.toString() + r.stderr,
    /bad record mac|cannot send/,
    'a wrong key must not get a session',
  );
}

describe('device add: text and weak PSKs', () => {
  it('refuses a key under 16 bytes without --allow-weak-psk: exit 2, the rule named, the key not echoed, nothing stored', async (t) => {
    const { cli } = home(t);
    for (const args of [
      ['--psk-text', 'their key'],
      ['--psk', 'deadbeefcafe'],
    ]) {
      const r = await cli(['device', 'add', 's1', '--psk-identity', 's1', ...args]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /ERR_IDENTITY_WEAK_PSK.*at least 16 bytes.*--allow-weak-psk/);
      assert.doesNotMatch(r.stderr + r.stdout, /their key|deadbeefcafe/);
    }
    assert.deepEqual(JSON.parse((await cli(['device', 'list', '--json'])).stdout), [], 'nothing stored');
  });

  it('exits 2 (bad usage) for a missing, doubled or malformed PSK argument, before opening the store', async (t) => {
    const { cli, dir } = home(t);
    const cases: [string[], RegExp][] = [
      [['--psk-identity', 'i'], /exactly one of --psk-text TEXT, --psk HEX or --generate-psk/],
      [['--psk-identity', 'i', '--psk-text', 'a'.repeat(16), '--generate-psk'], /exactly one/],
      [['--psk-identity', 'i', '--psk-text', 'a'.repeat(16), '--psk', 'ab'.repeat(16)], /exactly one/],
      [['--psk-text', 'a'.repeat(16)], /give --psk-identity/],
      [['--psk-identity', 'i', '--generate-psk', '--allow-weak-psk'], /generated key is 128 bits/],
      [['--rpk', 'k.pem', '--psk-text', 'a'.repeat(16)], /exclusive/],
    ];
    for (const [args, message] of cases) {
      const r = await cli(['device', 'add', 's1', ...args]);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message);
    }
    assert.equal(existsSync(join(dir, 'var')), false, 'usage errors open nothing');
    // Values the service refuses are bad usage too: a key with a newline in it, too long, bad hex, a bad id.
    for (const args of [
      ['s1', '--psk-identity', 'i', '--psk-text', `${'a'.repeat(16)}\n`],
      ['s1', '--psk-identity', 'i', '--psk-text', 'a'.repeat(65)],
      ['s1', '--psk-identity', 'i', '--psk', 'zz'.repeat(16)],
      ['a/b', '--psk-identity', 'i', '--generate-psk'],
    ]) {
      const r = await cli(['device', 'add', ...args]);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /ERR_IDENTITY_INVALID/);
      assert.doesNotMatch(r.stderr, /a{16}/, 'the key is not echoed');
    }
    const missing = await cli(['device', 'add', 's1', '--psk-identity', 'i', '--psk-text']);
    assert.equal(missing.code, 2, 'an option without its value');
  });

  describe('against the running gateway with libcoap as the sensor', () => {
    let h: ReturnType<typeof home>;
    let gateway: ChildProcess;
    let port: number;
    // One gateway for the suite: its home is removed by the suite's own after hook.
    const cleanups: (() => void)[] = [];
    before(async () => {
      h = home({ after: (fn: () => void) => cleanups.push(fn) } as never);
      const add = async (args: string[], input?: string) => {
        const r = await h.cli(['device', 'add', ...args], input);
        assert.equal(r.code, 0, r.stderr);
        return r;
      };
      await add(['text-1', '--psk-identity', 'text-1', '--psk-text', 'a text key, 24 bytes!!']);
      await add(['stdin-1', '--psk-identity', 'stdin-1', '--psk-text', '-'], 'piped key of 20 bytes\n');
      const weak = await add([
        'weak-1',
        '--psk-identity',
        'weak-1',
        '--psk-text',
        'their key',
        '--allow-weak-psk',
      ]);
      assert.match(weak.stderr, /warning: .*shorter than 128 bits.*marked weak/);
      await add(['poll-1', '--psk-identity', 'poll-1', '--psk-text', 'only asks for commands']);
      gateway = spawnCli(['--config', h.config, 'start'], { cwd: h.dir });
      port = await waitForLine(gateway, (line) => {
        const m = /"dtls":"127\.0\.0\.1:(\d+)"/.exec(line);
        return m ? Number(m[1]) : undefined;
      });
    });
    after(async () => {
      if (gateway && gateway.exitCode === null) {
        const exited = once(gateway, 'exit');
        gateway.kill('SIGTERM');
        await exited;
      }
      for (const fn of cleanups) fn();
    });

    it('a text key given on the command line works with coap-client-openssl -k TEXT; a wrong one does not', async () => {
      accepted(await coapClient(port, 'text-1', 'a text key, 24 bytes!!', 'post', '/telemetry'));
      refused(await coapClient(port, 'text-1', 'a text key, 24 bytes!?', 'post', '/telemetry'));
    });

    it('a key read from stdin (--psk-text -) is the line without its newline', async () => {
      accepted(await coapClient(port, 'stdin-1', 'piped key of 20 bytes', 'post', '/telemetry'));
      refused(await coapClient(port, 'stdin-1', 'piped key of 20 bytes\n', 'post', '/telemetry'));
    });

    it('a weak key admitted with --allow-weak-psk works, and the device is marked weak in device show', async () => {
      accepted(await coapClient(port, 'weak-1', 'their key', 'post', '/telemetry'));
      const shown = await h.cli(['device', 'show', 'weak-1']);
      assert.match(shown.stdout, /credential: psk weak-1 \(active, WEAK: key under 128 bits\)/);
      const json = JSON.parse((await h.cli(['device', 'show', 'weak-1', '--json'])).stdout);
      assert.equal(json.credentials[0].weak, true);
      assert.doesNotMatch(JSON.stringify(json), /their key/);
      const strong = JSON.parse((await h.cli(['device', 'show', 'text-1', '--json'])).stdout);
      assert.equal(strong.credentials[0].weak, false);
      assert.doesNotMatch((await h.cli(['device', 'show', 'text-1'])).stdout, /WEAK/);
      const report = JSON.parse((await h.cli(['compliance', '--json'])).stdout) as {
        findings: { provision: string; standard: string; status: string; evidence: string[] }[];
      };
      const comms = report.findings.find((f) => f.standard === 'ETSI EN 303 645' && f.provision === '5.5');
      assert.equal(comms?.status, 'not met');
      assert.ok(
        comms?.evidence.some((e) => /weak sensor keys: 1 .*weak-1/.test(e)),
        comms?.evidence.join('\n'),
      );
    });

    it('a device that only asks GET /commands is "seen" in device list', async () => {
      const lastSeen = async () =>
        (
          JSON.parse((await h.cli(['device', 'list', '--json'])).stdout) as {
            id: string;
            lastSeen: string | null;
          }[]
        ).find((d) => d.id === 'poll-1')?.lastSeen;
      assert.equal(await lastSeen(), null);
      accepted(await coapClient(port, 'poll-1', 'only asks for commands', 'get', '/commands'));
      assert.match((await lastSeen()) ?? '', /^\d{4}-\d\d-\d\dT/);
      const list = (await h.cli(['device', 'list'])).stdout;
      assert.doesNotMatch(list.split('\n').find((l) => l.startsWith('poll-1')) ?? '', /never/);
    });
  });

  it('the UI device page marks a weak key; the UI and API refuse a short key (no weak exception there)', async (t) => {
    const { core, login } = site(t);
    core.identity.addPskDevice(
      { id: 'legacy-1', pskIdentity: 'legacy-1', pskText: 'short', allowWeak: true },
      'test',
    );
    core.identity.addPskDevice({ id: 'modern-1', pskIdentity: 'modern-1', generate: true }, 'test');
    const { b } = await login('tech', 'technician');
    const page = (await b.page('GET', '/devices/legacy-1')).text;
    assert.match(page, /weak key \(under 128 bits\)/);
    assert.doesNotMatch(page, /short/);
    assert.doesNotMatch((await b.page('GET', '/devices/modern-1')).text, /weak key/);
    const form = await b.page('POST', '/onboarding/psk', {
      id: 'x',
      pskIdentity: 'x',
      pskHex: 'ab'.repeat(8),
    });
    // The wizard shows the form again with every problem listed (and keeps what was typed, never the key).
    assert.equal(form.status, 400);
    assert.match(form.text, /Key must be 16 to 64 bytes/);
    assert.equal(core.store.devices.get('x'), undefined);
    const api = await b.call('POST', '/api/v1/devices', {
      id: 'y',
      pskIdentity: 'y',
      pskHex: 'ab'.repeat(8),
    });
    assert.equal(api.status, 400);
    assert.equal((api.data.error as { code: string }).code, 'ERR_IDENTITY_WEAK_PSK');
    const report = assess(core);
    const comms = report.findings.find((f) => f.provision === '5.5');
    assert.equal(comms?.status, 'not met');
    assert.ok(comms?.evidence.some((e) => e.includes('legacy-1')));
    // The audit entry says the key was text and weak, and never holds it.
    const entry = [...core.store.audit.iterate()].find((e) => e.target === 'legacy-1');
    const details = JSON.parse(entry?.details ?? '{}') as { keyForm?: string; weak?: boolean };
    assert.equal(details.keyForm, 'text');
    assert.equal(details.weak, true);
    assert.doesNotMatch(JSON.stringify([...core.store.audit.iterate()]), /short/);
  });
});
