/**
 * The appliance's units: `systemd-analyze verify` and `systemd-analyze security --offline` on each (systemd is
 * not PID 1 here), with the exposure targets; and the gateway's readiness/watchdog messages through the real
 * `systemd-notify` to a datagram socket standing in for systemd's notify socket.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { PORTCULLIS_BIN, waitForLine } from './helpers/cli.ts';
import { tempDir } from './helpers/tmp.ts';

const unit = (name: string) => fileURLToPath(new URL(`../systemd/${name}`, import.meta.url));

function exposure(name: string): number {
  return exposureOf(unit(name));
}

function exposureOf(file: string): number {
  const out = execFileSync('systemd-analyze', ['security', '--offline=true', file], {
    encoding: 'utf8',
  });
  const m = /Overall exposure level for \S+: (\d+\.\d+)/.exec(out);
  assert.ok(m, out);
  return Number(m[1]);
}

function directives(name: string, key: string): string[] {
  return readFileSync(unit(name), 'utf8')
    .split('\n')
    .filter((l) => l.startsWith(`${key}=`))
    .map((l) => l.slice(key.length + 1));
}

describe('systemd units', () => {
  for (const name of [
    'portcullis-gateway.service',
    'portcullis-flows.service',
    'portcullis-flows-setup.service',
    'portcullis-console.service',
    'portcullis-console.path',
    'portcullis-firewall.service',
  ]) {
    it(`${name} passes systemd-analyze verify`, () => {
      const r = spawnSync('systemd-analyze', ['verify', '--man=no', unit(name)], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      assert.equal(`${r.stdout}${r.stderr}`.trim(), '', 'no warnings either');
    });
  }

  it('keeps the gateway at exposure ≤ 2.5 with only CAP_NET_ADMIN and CAP_NET_BIND_SERVICE', (t) => {
    const e = exposure('portcullis-gateway.service');
    t.diagnostic(`gateway exposure ${e}`);
    assert.ok(e <= 2.5, `exposure ${e}`);
    assert.deepEqual(directives('portcullis-gateway.service', 'AmbientCapabilities'), [
      'CAP_NET_ADMIN CAP_NET_BIND_SERVICE',
    ]);
    assert.deepEqual(directives('portcullis-gateway.service', 'CapabilityBoundingSet'), [
      'CAP_NET_ADMIN CAP_NET_BIND_SERVICE',
    ]);
    assert.deepEqual(directives('portcullis-gateway.service', 'Type'), ['notify']);
    assert.deepEqual(directives('portcullis-gateway.service', 'SupplementaryGroups'), ['tss']);
  });

  it("gives a slow first boot time to reach READY, and puts the gateway before the flows' first-boot setup", () => {
    // systemd's default 90 s killed a first start that was progressing in an emulated VM under load.
    assert.deepEqual(directives('portcullis-gateway.service', 'TimeoutStartSec'), ['5min']);
    assert.deepEqual(directives('portcullis-gateway.service', 'WatchdogSec'), ['30']);
    // ...and still a bounded number of tries: five starts that each time out fit in the start-limit interval.
    const seconds = (key: string) => {
      const [v] = directives('portcullis-gateway.service', key);
      const m = /^(\d+)(min|s)?$/.exec(v ?? '');
      assert.ok(m, `${key}=${v}`);
      return Number(m[1]) * (m[2] === 'min' ? 60 : 1);
    };
    const oneTry = seconds('TimeoutStartSec') + seconds('TimeoutStopSec') + seconds('RestartSec');
    assert.ok(
      Number(directives('portcullis-gateway.service', 'StartLimitBurst')[0]) * oneTry <
        seconds('StartLimitIntervalSec'),
    );
    assert.ok(directives('portcullis-flows-setup.service', 'After').includes('portcullis-gateway.service'));
    assert.ok(!directives('portcullis-gateway.service', 'After').join(' ').includes('portcullis-flows'));
  });

  it('keeps Node-RED at exposure ≤ 2.0, with no capabilities and the gateway state out of sight', (t) => {
    const e = exposure('portcullis-flows.service');
    t.diagnostic(`flows exposure ${e}`);
    assert.ok(e <= 2.0, `exposure ${e}`);
    assert.deepEqual(directives('portcullis-flows.service', 'CapabilityBoundingSet'), ['']);
    assert.match(
      directives('portcullis-flows.service', 'InaccessiblePaths').join(' '),
      /-\/var\/lib\/portcullis\b/,
    );
    assert.notDeepEqual(
      directives('portcullis-flows.service', 'User'),
      directives('portcullis-gateway.service', 'User'),
    );
  });

  it("passes Node-RED's secrets in only as encrypted credentials made at first boot", (t) => {
    assert.deepEqual(directives('portcullis-flows.service', 'LoadCredentialEncrypted'), [
      'credential-secret:/etc/credstore.encrypted/portcullis-flows-credential-secret.cred',
      'tls-key:/etc/credstore.encrypted/portcullis-flows-tls-key.cred',
    ]);
    assert.deepEqual(directives('portcullis-flows.service', 'Requires'), ['portcullis-flows-setup.service']);
    assert.deepEqual(directives('portcullis-flows.service', 'LoadCredential'), [], 'never unencrypted');
    assert.deepEqual(
      directives('portcullis-flows.service', 'Environment'),
      ['PORTCULLIS_FLOWS_HOST=0.0.0.0'],
      'no secret in the environment: only where the editor listens',
    );
    // The first-boot unit runs as root but writes only where the credentials and settings go, offline.
    const e = exposure('portcullis-flows-setup.service');
    t.diagnostic(`flows-setup exposure ${e}`);
    assert.ok(e <= 2.0, `exposure ${e}`);
    assert.deepEqual(directives('portcullis-flows-setup.service', 'PrivateNetwork'), ['yes']);
    // It hands the admin list to the flows group: chown must survive the filter (@chown is in @privileged,
    // which a booted image showed denying it), and CAP_CHOWN is the only capability it keeps.
    const filter = directives('portcullis-flows-setup.service', 'SystemCallFilter');
    assert.ok(filter.some((f) => f.startsWith('~') && f.includes('@privileged')));
    assert.equal(filter.at(-1), '@chown', 'chown allowed again after the deny list');
    assert.deepEqual(directives('portcullis-flows-setup.service', 'CapabilityBoundingSet'), ['CAP_CHOWN']);
    // Root without CAP_DAC_OVERRIDE opens /dev/tpmrm0 (tss:tss 0660) only through the group: a booted image
    // with a TPM showed "Permission denied" without it (test/appliance-boot.test.ts boots one with swtpm).
    assert.deepEqual(directives('portcullis-flows-setup.service', 'SupplementaryGroups'), ['tss']);
    assert.deepEqual(directives('portcullis-flows-setup.service', 'ReadWritePaths'), [
      '/etc/credstore.encrypted /etc/portcullis-flows /var/lib/systemd',
    ]);
  });
});

describe('the appliance out of the box (issue 29)', () => {
  it("bounds the gateway's restarts and says why on the console; waits for the clock floor, not the network", () => {
    const unitText = readFileSync(unit('portcullis-gateway.service'), 'utf8');
    assert.deepEqual(directives('portcullis-gateway.service', 'StartLimitBurst'), ['5']);
    assert.deepEqual(directives('portcullis-gateway.service', 'StartLimitIntervalSec'), ['30min']);
    assert.deepEqual(directives('portcullis-gateway.service', 'OnFailure'), ['portcullis-console.service']);
    assert.deepEqual(directives('portcullis-gateway.service', 'Restart'), ['on-failure']);
    // The console is remade after every start and stop, as root, and its failure never fails the gateway.
    for (const key of ['ExecStartPost', 'ExecStopPost']) {
      assert.deepEqual(directives('portcullis-gateway.service', key), [
        '-+/bin/sh /opt/portcullis/current/systemd/portcullis-console',
      ]);
    }
    assert.match(unitText, /^After=network\.target time-set\.target time-sync\.target$/m);
    for (const key of ['After', 'Wants', 'Requires'])
      for (const v of directives('portcullis-gateway.service', key))
        assert.doesNotMatch(v, /network-online|tpm2-abrmd/, 'nothing waits for a network or a TPM broker');
    assert.ok(
      directives('portcullis-gateway.service', 'Environment').includes(
        'PORTCULLIS_FLOWS_UNIT=portcullis-flows.service',
      ),
      '/healthz asks systemd about the flows unit',
    );
    // The setup code's directory is the gateway's alone (0700); the flows service cannot even see it.
    assert.match(
      readFileSync(unit('portcullis-tmpfiles.conf'), 'utf8'),
      /^d \/run\/portcullis-console 0700 portcullis portcullis -$/m,
    );
    assert.match(
      directives('portcullis-flows.service', 'InaccessiblePaths').join(' '),
      /-\/run\/portcullis-console\b/,
    );
  });

  it('keeps the console unit at exposure ≤ 2.5', (t) => {
    const e = exposure('portcullis-console.service');
    t.diagnostic(`console exposure ${e}`);
    assert.ok(e <= 2.5, `exposure ${e}`);
  });
});

describe('a secret handed to the gateway', () => {
  it('takes it as the LoadCredentialEncrypted= drop-in systemd/README.md documents, which verify accepts', (t) => {
    const readme = readFileSync(fileURLToPath(new URL('../systemd/README.md', import.meta.url)), 'utf8');
    const dropIn =
      /```ini\n# \/etc\/systemd\/system\/portcullis-gateway\.service\.d\/[^\n]+\n([\s\S]*?)```/.exec(
        readme,
      )?.[1];
    assert.ok(dropIn?.includes('LoadCredentialEncrypted=ui-tls-key:'), 'the README shows the drop-in');
    // The unit with the drop-in's lines appended: what systemd reads once the drop-in is installed.
    const dir = tempDir(t);
    const combined = join(dir, 'portcullis-gateway.service');
    writeFileSync(combined, `${readFileSync(unit('portcullis-gateway.service'), 'utf8')}\n${dropIn}`);
    const r = spawnSync('systemd-analyze', ['verify', '--man=no', combined], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(`${r.stdout}${r.stderr}`.trim(), '');
    assert.ok(exposureOf(combined) <= 2.5);
  });
});

/** A datagram listener in place of PID 1's notify socket (Node has no Unix datagram sockets): what it heard, when. */
async function notifySocket(t: TestContext, socket: string): Promise<{ at: number; m: string }[]> {
  const listener = spawn('python3', [
    '-u',
    '-c',
    `import socket,sys
s=socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("listening", flush=True)
while True:
    print(s.recv(4096).decode().replace("\\n", " "), flush=True)`,
    socket,
  ]);
  t.after(() => listener.kill());
  const heard: { at: number; m: string }[] = [];
  listener.stdout.on('data', (d: Buffer) => {
    for (const m of d.toString().trim().split('\n')) heard.push({ at: Date.now(), m });
  });
  await waitForLine(listener, (l) => (l === 'listening' ? true : undefined));
  return heard;
}

describe('systemd readiness and watchdog', () => {
  it('tells the notify socket READY=1 once serving, pets the watchdog, and says STOPPING=1 on SIGTERM', async (t) => {
    const dir = tempDir(t);
    const socket = join(dir, 'notify.sock');
    const heard = await notifySocket(t, socket);
    const said = () => heard.map((x) => x.m);
    const config = join(dir, 'config.yaml');
    writeFileSync(config, `dataDir: ${join(dir, 'var')}\ndtls: {port: 0}\nui: {port: 0}\n`);
    const gw = spawn(process.execPath, [PORTCULLIS_BIN, '--config', config, 'start'], {
      env: { ...process.env, NOTIFY_SOCKET: socket, WATCHDOG_USEC: '2000000' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    await waitForLine(gw, (l) => (l.includes('"gateway started"') ? true : undefined));
    const until = async (pred: () => boolean) => {
      const end = Date.now() + 10_000;
      while (!pred() && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
    };
    await until(() => said().some((m) => m.includes('WATCHDOG=1')));
    gw.kill('SIGTERM');
    await new Promise((r) => gw.once('exit', r));
    await until(() => said().some((m) => m.includes('STOPPING=1')));
    assert.ok(
      said().some((m) => /READY=1/.test(m) && m.includes(`MAINPID=${gw.pid}`)),
      said().join(' | '),
    );
    assert.ok(
      said().some((m) => m.includes('WATCHDOG=1')),
      'the watchdog is petted',
    );
    assert.ok(
      said().some((m) => m.includes('STOPPING=1')),
      'stopping is announced',
    );
  });
  it('keeps the watchdog while a configuration change restarts the gateway in its process, for a bounded time', async (t) => {
    const dir = tempDir(t);
    const socket = join(dir, 'notify.sock');
    const messages = await notifySocket(t, socket);
    const { SystemdNotifier } = await import('../gateway/src/systemd.ts');
    const { createLogger } = await import('../gateway/src/log.ts');
    // WatchdogSec=2 s: a pet each second; a reload may keep it for 3 s.
    const env = { ...process.env, NOTIFY_SOCKET: socket, WATCHDOG_USEC: '2000000' };
    const old = new SystemdNotifier(createLogger('fatal'), env, 3000);
    old.ready(() => true);
    const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
    await sleep(1500);
    const reloadAt = Date.now();
    old.reloading();
    // The old gateway's store is gone and no new one is ready: the process pets on its own behalf.
    await sleep(2600);
    const during = messages.filter((x) => x.at > reloadAt && x.m.includes('WATCHDOG=1')).length;
    assert.ok(
      messages.some((x) => x.m.includes('RELOADING=1')),
      messages.map((x) => x.m).join(' | '),
    );
    assert.ok(during >= 2, `pets during the reload: ${during}`);
    // Petted with the reload and with the next readiness, not an interval later: the old gateway's last pet may be
    // nearly an interval old, and an interval more would leave systemd a whole WatchdogSec without one.
    assert.ok(
      messages.some((x) => x.m.includes('RELOADING=1') && x.m.includes('WATCHDOG=1')),
      messages.map((x) => x.m).join(' | '),
    );
    // A reload that never ends stops being covered: systemd's watchdog then restarts the gateway.
    await sleep(1500);
    const quietFrom = Date.now();
    await sleep(1500);
    assert.equal(messages.filter((x) => x.at > quietFrom && x.m.includes('WATCHDOG=1')).length, 0);
    // The next gateway's ready takes over (and ends any reload petting); stopping ends its own.
    const next = new SystemdNotifier(createLogger('fatal'), env, 3000);
    next.reloading();
    next.ready(() => true);
    await sleep(1200);
    assert.ok(
      messages.filter((x) => x.m.includes('READY=1') && x.m.includes('WATCHDOG=1')).length >= 2,
      'each readiness carries a pet',
    );
    next.stopping();
    await sleep(300);
    const stoppedAt = Date.now();
    await sleep(1500);
    assert.equal(messages.filter((x) => x.at > stoppedAt && x.m.includes('WATCHDOG=1')).length, 0);
  });

  it('exits 0 on SIGTERM even while systemd-notify still waits for PID 1 (a requested restart is no failure)', async (t) => {
    const dir = tempDir(t);
    const socket = join(dir, 'notify.sock');
    // PID 1 busy: the socket is there but nobody reads it, so systemd-notify waits on its BARRIER=1 round trip.
    const busy = spawn('python3', [
      '-c',
      'import socket,sys,time\ns=socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\ns.bind(sys.argv[1])\nprint("bound", flush=True)\ntime.sleep(120)',
      socket,
    ]);
    t.after(() => busy.kill());
    await waitForLine(busy, (l) => (l === 'bound' ? true : undefined));
    const config = join(dir, 'config.yaml');
    writeFileSync(config, `dataDir: ${join(dir, 'var')}\ndtls: {port: 0}\nui: {port: 0}\n`);
    const gw = spawn(process.execPath, [PORTCULLIS_BIN, '--config', config, 'start'], {
      env: { ...process.env, NOTIFY_SOCKET: socket, WATCHDOG_USEC: '30000000' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    gw.stdout.on('data', (d: Buffer) => {
      output += d.toString();
    });
    await waitForLine(gw, (l) => (l.includes('"gateway started"') ? true : undefined));
    gw.kill('SIGTERM');
    const code = await new Promise<number | null>((r) => gw.once('exit', (c) => r(c)));
    // Before: the STOPPING=1 child held the process past the 4 s shutdown deadline, which exits 1.
    assert.equal(code, 0, output.slice(-2000));
    assert.doesNotMatch(output, /shutdown deadline passed/);
    assert.match(output, /"gateway stopped"/);
  });

  it('says in the journal when a held event loop delayed a watchdog pet (what a watchdog kill follows)', async (t) => {
    const { SystemdNotifier } = await import('../gateway/src/systemd.ts');
    const { createLogger } = await import('../gateway/src/log.ts');
    const lines: string[] = [];
    const logger = createLogger('info', { write: (l: string) => lines.push(l) });
    // No listener on this socket: the pets fail (and say so); what is checked is the lateness line.
    const env = { ...process.env, NOTIFY_SOCKET: join(tempDir(t), 'none.sock'), WATCHDOG_USEC: '2000000' };
    const n = new SystemdNotifier(logger, env);
    n.ready(() => true);
    t.after(() => n.stopping());
    // A synchronous call holding the thread for 1.7 s: the first pet (due after 1 s) comes 0.7 s late.
    const end = Date.now() + 1700;
    while (Date.now() < end) {
      // held, as execFileSync of a slow tool holds it
    }
    await new Promise((r) => setTimeout(r, 1300));
    const late = lines.filter((l) => l.includes('the watchdog pet came late')).map((l) => JSON.parse(l));
    assert.ok(late.length >= 1, lines.join(''));
    assert.ok(late[0].lateMs >= 500, String(late[0].lateMs));
  });
});
