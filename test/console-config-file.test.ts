/**
 * The console's own configuration file (issue 25, appliance point 1): on the appliance the main file is root's
 * and read-only to the gateway's unit, so the console writes its changes — uplink, segments — to a file the
 * service owns (`consoleConfigFile`), merged over the main file at every load, applied and rolled back by the
 * supervisor like before. What a holder of the service user can put in that file is exactly those settings:
 * the release key, the update paths and command, the keystore, the data directory are refused there.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readFileSync,
  statSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { systemClock } from '../gateway/src/clock.ts';
import {
  changeTargetOf,
  markerOf,
  planConfigChange,
  previousOf,
  writeConfigChange,
} from '../gateway/src/config/apply.ts';
import { loadConfigFile, resolveConfig } from '../gateway/src/config/index.ts';
import type { Core as CoreType } from '../gateway/src/core.ts';
import { createLogger } from '../gateway/src/log.ts';
import { tempDir } from './helpers/tmp.ts';

const SEGMENT =
  '- name: plant\n  role: sensors\n  interface: eth1\n  subnet: 10.1.0.0/24\n  gatewayAddress: 10.1.0.1\n';

/** A main file (the image's: 0644, the release key pinned beside it) naming a console file in the state folder. */
function appliance(t: TestContext) {
  const dir = tempDir(t);
  const etc = join(dir, 'etc');
  const state = join(dir, 'var');
  mkdirSync(etc, { mode: 0o755 });
  mkdirSync(state, { mode: 0o700 });
  const key = join(etc, 'release-key.pub.pem');
  writeFileSync(key, generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }), {
    mode: 0o644,
  });
  const main = join(etc, 'config.yaml');
  const consoleFile = join(state, 'config', 'console.yaml');
  const text = `# the image's file\ndataDir: ${state}\nconsoleConfigFile: ${consoleFile}\nui: {port: 0}\ndtls: {port: 0}\nupdates:\n  publicKeyFile: ${key}\nsegments: []\n`;
  writeFileSync(main, text, { mode: 0o644 });
  return { dir, main, text, consoleFile, state, key };
}

const marker = (changed: string[]) => ({
  id: 'x',
  actor: 'ui:root',
  changed,
  state: 'applying' as const,
  reasons: [],
  requestedAt: new Date().toISOString(),
});

describe('the console configuration file', () => {
  it('takes the console’s changes and leaves the main file as it was', (t) => {
    const a = appliance(t);
    assert.equal(changeTargetOf(a.main), a.consoleFile);
    const plan = planConfigChange(a.main, { segmentsYaml: SEGMENT });
    assert.equal(plan.file, a.consoleFile);
    assert.deepEqual(plan.changed, ['segments']);
    writeConfigChange(plan, marker(plan.changed));
    assert.equal(readFileSync(a.main, 'utf8'), a.text, 'the main file is untouched');
    assert.equal(readFileSync(previousOf(a.consoleFile), 'utf8'), '', 'before the first change: no changes');
    assert.ok(existsSync(markerOf(a.consoleFile)));
    const loaded = loadConfigFile(a.main);
    assert.equal(loaded.segments[0]?.name, 'plant');
    assert.equal(loaded.updates.publicKeyFile, a.key, 'the main file’s settings stay in force');
  });

  it('refuses settings the console may not change (release key, update command, keystore, data folder)', (t) => {
    const a = appliance(t);
    mkdirSync(join(a.state, 'config'), { mode: 0o700 });
    const evilKey = join(a.state, 'config', 'attacker.pub.pem');
    writeFileSync(evilKey, readFileSync(a.key));
    for (const [what, yaml] of [
      ['updates.publicKeyFile', `updates:\n  publicKeyFile: ${evilKey}\n`],
      ['updates.healthCommand', 'updates:\n  healthCommand: [/bin/sh, -c, "id > /tmp/owned"]\n'],
      ['keystore.backend', 'keystore: {backend: software}\n'],
      ['dataDir', `dataDir: ${a.dir}\n`],
      ['consoleConfigFile', `consoleConfigFile: ${join(a.dir, 'other.yaml')}\n`],
      ['uplink.certFile', 'uplink: {certFile: /etc/shadow}\n'],
    ] as const) {
      writeFileSync(a.consoleFile, yaml, { mode: 0o600 });
      assert.throws(
        () => loadConfigFile(a.main),
        (e: Error & { code?: string }) =>
          e.code === 'ERR_CONFIG_INVALID' && /not a setting the console may change/.test(e.message),
        what,
      );
    }
    // A CA named outside the console's folder: root's CLI would otherwise read any file it names.
    writeFileSync(a.consoleFile, 'uplink: {caFile: /etc/ssl/certs/ca-certificates.crt}\n', { mode: 0o600 });
    assert.throws(() => loadConfigFile(a.main), /uplink\.caFile: must be a file in/);
    // Writable by others: refused like the main file would be.
    writeFileSync(a.consoleFile, `segments:\n${SEGMENT.replace(/^/gm, '  ')}`, { mode: 0o600 });
    assert.equal(loadConfigFile(a.main).segments[0]?.name, 'plant', 'the allowed part loads');
    chmodSync(a.consoleFile, 0o666);
    assert.throws(() => loadConfigFile(a.main), { code: 'ERR_CONFIG_UNSAFE_PATH' });
  });

  it('refuses a console file or uplink CA that is a link (root’s CLI would read what it names)', (t) => {
    const a = appliance(t);
    const folder = join(a.state, 'config');
    mkdirSync(folder, { mode: 0o700 });
    // The folder is the service user's: a link in it to a file only root may read.
    const secret = join(a.dir, 'root-only.yaml');
    writeFileSync(secret, 'hostKey: do-not-read\n', { mode: 0o600 });
    symlinkSync(secret, a.consoleFile);
    assert.throws(
      () => loadConfigFile(a.main),
      (e: Error & { code?: string }) =>
        e.code === 'ERR_CONFIG_INVALID' && /symbolic link/.test(e.message) && !/hostKey/.test(e.message),
    );
    unlinkSync(a.consoleFile);
    const ca = join(folder, 'uplink-ca-1.pem');
    symlinkSync('/etc/ssl/certs/ca-certificates.crt', ca);
    writeFileSync(a.consoleFile, 'uplink: {caFile: uplink-ca-1.pem}\n', { mode: 0o600 });
    assert.throws(() => loadConfigFile(a.main), /uplink\.caFile: is a symbolic link/);
    // The same names as files of their own load.
    unlinkSync(ca);
    writeFileSync(a.consoleFile, `segments:\n${SEGMENT.replace(/^/gm, '  ')}`, { mode: 0o600 });
    assert.equal(loadConfigFile(a.main).segments[0]?.name, 'plant');
  });

  it('puts an uplink CA beside the console file and names it there', (t) => {
    const a = appliance(t);
    // A broker CA made here (openssl), nothing from fixtures.
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-subj',
        '/CN=broker CA',
        '-days',
        '2',
        '-keyout',
        join(a.dir, 'ca.key'),
        '-out',
        join(a.dir, 'ca.pem'),
      ],
      { stdio: 'ignore' },
    );
    const ca = readFileSync(join(a.dir, 'ca.pem'), 'utf8');
    const plan = planConfigChange(a.main, {
      uplink: { url: 'mqtts://broker.example.net:8883', topicPrefix: 'site-1', caPem: ca },
    });
    assert.deepEqual(plan.changed, ['uplink.url', 'uplink.topicPrefix', 'uplink.caFile']);
    assert.ok(plan.caFile?.startsWith(join(a.state, 'config', 'uplink-ca-')), plan.caFile);
    writeConfigChange(plan, marker(plan.changed));
    const c = loadConfigFile(a.main);
    assert.equal(c.uplink?.url, 'mqtts://broker.example.net:8883');
    assert.equal(c.uplink?.caFile, plan.caFile);
  });

  it('is applied by the supervisor, and a change left by a dead process is rolled back there', async (t) => {
    const a = appliance(t);
    const { GatewaySupervisor } = await import('../gateway/src/cli/supervise.ts');
    const deps = { clock: systemClock, logger: createLogger('fatal') };
    const sup = new GatewaySupervisor(resolveConfig(a.main), deps, { healthBoundMs: 3000 });
    await sup.boot();
    try {
      sup.apply({ segmentsYaml: SEGMENT }, 'ui:root');
      for (let i = 0; i < 100 && sup.status()?.state === 'applying'; i++)
        await new Promise((r) => setTimeout(r, 100));
      assert.equal(sup.status()?.state, 'applied', JSON.stringify(sup.status()));
      assert.equal(existsSync(markerOf(a.consoleFile)), false);
      assert.match(readFileSync(a.consoleFile, 'utf8'), /name: plant/);
      assert.equal(readFileSync(a.main, 'utf8'), a.text);
    } finally {
      await sup.stop('test');
    }
    const plan = planConfigChange(a.main, { segmentsYaml: '[]' });
    writeConfigChange(plan, marker(plan.changed));
    const again = new GatewaySupervisor(resolveConfig(a.main), deps);
    const gw = await again.boot();
    try {
      assert.equal(again.status()?.state, 'rolled-back');
      assert.equal(gw.core.config.segments[0]?.name, 'plant');
      assert.equal(existsSync(markerOf(a.consoleFile)), false);
    } finally {
      await again.stop('test');
    }
  });
});

describe('the clock form on the appliance', () => {
  it('asks timedated for the zone and NTP, writes the servers through the image’s link, and says when the host refuses', async (t) => {
    const { symlinkSync, lstatSync } = await import('node:fs');
    const { hostTimePaths, setHostTime, timedated } = await import('../gateway/src/config/host-time.ts');
    const root = tempDir(t);
    const paths = hostTimePaths(root);
    assert.equal(timedated(paths), undefined, 'under a test root the files are written directly');
    // The image: the drop-in in /etc is root's link to the service's own file.
    const own = join(root, 'var', 'lib', 'portcullis-time', '60-portcullis-ui.conf');
    mkdirSync(join(root, 'var', 'lib', 'portcullis-time'), { recursive: true });
    mkdirSync(join(root, 'etc', 'systemd', 'timesyncd.conf.d'), { recursive: true });
    mkdirSync(join(root, 'usr', 'share'), { recursive: true });
    symlinkSync('/usr/share/zoneinfo', join(root, 'usr', 'share', 'zoneinfo'));
    writeFileSync(own, '', { mode: 0o644 });
    symlinkSync(own, paths.timesyncdDropIn);
    const calls: string[] = [];
    const host = timedated(hostTimePaths('/'), async (argv) => {
      calls.push(argv.join(' '));
    });
    // The unit's UMask=0077: the drop-in must still be readable by timesyncd's own user.
    const umask = process.umask(0o077);
    t.after(() => process.umask(umask));
    const r = await setHostTime({ timeZone: 'Europe/Berlin', ntp: ['ntp.example.net'] }, paths, host);
    assert.equal(statSync(own).mode & 0o777, 0o644);
    assert.deepEqual(r.changed, ['timeZone', 'ntp']);
    assert.deepEqual(calls, [
      'timedatectl --no-ask-password set-timezone Europe/Berlin',
      'timedatectl --no-ask-password set-ntp false',
      'timedatectl --no-ask-password set-ntp true',
    ]);
    assert.ok(lstatSync(paths.timesyncdDropIn).isSymbolicLink(), 'the link stays');
    assert.match(readFileSync(own, 'utf8'), /^NTP=ntp\.example\.net$/m);
    assert.equal(existsSync(paths.localtime), false, 'timedated, not the gateway, sets the zone');
    // A host that does not allow it (no polkit rule, no timedated: a development machine) refuses, said so.
    for (const [err, said] of [
      [
        Object.assign(new Error('x'), { stderr: 'Failed to set time zone: Access denied\n' }),
        /Access denied/,
      ],
      [Object.assign(new Error('spawn timedatectl ENOENT'), { code: 'ENOENT' }), /not installed/],
    ] as const) {
      const refusing = timedated(hostTimePaths('/'), async () => {
        throw err;
      });
      await assert.rejects(
        setHostTime({ timeZone: 'Asia/Tokyo', ntp: ['ntp.example.net'] }, paths, refusing),
        (e: Error & { code?: string }) =>
          e.code === 'ERR_HOST_TIME_READONLY' &&
          said.test(e.message) &&
          /timedatectl set-timezone/.test(e.message),
      );
    }
  });

  it('says the host lacks the time zone database (tzdata) rather than that the zone is unknown', async (t) => {
    const { hostTimePaths, setHostTime, timedated } = await import('../gateway/src/config/host-time.ts');
    // The booted trixie image before tzdata was added: /usr/share/zoneinfo absent, every zone refused.
    const root = tempDir(t);
    const paths = hostTimePaths(root);
    mkdirSync(join(root, 'etc'), { recursive: true });
    const calls: string[] = [];
    const host = timedated(hostTimePaths('/'), async (argv) => {
      calls.push(argv.join(' '));
    });
    await assert.rejects(
      setHostTime({ timeZone: 'Europe/Berlin', ntp: [] }, paths, host),
      (e: Error & { code?: string }) =>
        e.code === 'ERR_HOST_TIME_READONLY' &&
        /no time zone database/.test(e.message) &&
        /tzdata/.test(e.message),
    );
    assert.deepEqual(calls, [], 'timedated is not asked');
    // With the database, a zone that is not in it is still the zone's fault.
    mkdirSync(join(root, 'usr', 'share', 'zoneinfo', 'Etc'), { recursive: true });
    writeFileSync(join(root, 'usr', 'share', 'zoneinfo', 'Etc', 'UTC'), 'TZif');
    await assert.rejects(
      setHostTime({ timeZone: 'Europe/Berlin', ntp: [] }, paths, host),
      (e: Error & { code?: string }) =>
        e.code === 'ERR_HOST_TIME_INVALID' && /not in this host/.test(e.message),
    );
  });
});

describe('a backup restored onto a replacement appliance', () => {
  it('carries the console’s configuration and its CA over, never writes the main file, and refuses what the console may not set', async (t) => {
    const { createBackup, stageRestore, applyStagedRestore } = await import('../gateway/src/backup/index.ts');
    const { Core } = await import('../gateway/src/core.ts');
    const { ManualClock } = await import('../gateway/src/clock.ts');
    const clock = new ManualClock(Date.UTC(2026, 11, 1));
    const deps = (core: CoreType) => ({
      config: core.config,
      store: core.store,
      keystore: core.keystore as NonNullable<typeof core.keystore>,
      audit: core.audit,
      clock,
    });
    const KDF = { N: 2 ** 14, r: 8, p: 1 };
    // A: the console set an uplink (with its CA) and a segment.
    const a = appliance(t);
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-subj',
        '/CN=broker CA',
      ].concat(['-days', '2', '-keyout', join(a.dir, 'ca.key'), '-out', join(a.dir, 'ca.pem')]),
      { stdio: 'ignore' },
    );
    const plan = planConfigChange(a.main, {
      uplink: {
        url: 'mqtts://broker.example.net:8883',
        topicPrefix: 'site-1',
        caPem: readFileSync(join(a.dir, 'ca.pem'), 'utf8'),
      },
    });
    writeConfigChange(plan, marker(plan.changed));
    const seg = planConfigChange(a.main, { segmentsYaml: SEGMENT });
    writeConfigChange(seg, marker(seg.changed));
    const coreA = Core.open(loadConfigFile(a.main), clock);
    t.after(() => coreA.close());
    const { archive } = await createBackup(deps(coreA), {
      passphrase: 'a long backup passphrase',
      configSource: a.main,
      actor: 'test',
      kdf: KDF,
    });
    // B: a fresh appliance elsewhere; its main file is the image's, read-only.
    const b = appliance(t);
    chmodSync(b.main, 0o444);
    const coreB = Core.open(loadConfigFile(b.main), clock);
    const staged = stageRestore(deps(coreB), archive, {
      passphrase: 'a long backup passphrase',
      actor: 'test',
      configSource: b.main,
    });
    coreB.close();
    assert.equal(staged.config, 'restored');
    const applied = applyStagedRestore({ config: loadConfigFile(b.main), source: b.main }, clock);
    assert.ok(applied && 'rollbackDir' in applied && applied.config, JSON.stringify(applied));
    assert.equal(readFileSync(b.main, 'utf8'), b.text, 'the main file is never written');
    const c = loadConfigFile(b.main);
    assert.equal(c.uplink?.url, 'mqtts://broker.example.net:8883');
    assert.equal(c.segments[0]?.name, 'plant');
    assert.ok(c.uplink?.caFile?.startsWith(join(b.state, 'config', 'uplink-ca-')), c.uplink?.caFile);
    assert.equal(
      readFileSync(c.uplink?.caFile as string, 'utf8').trim(),
      readFileSync(join(a.dir, 'ca.pem'), 'utf8').trim(),
    );

    // An archive whose console file sets the release key (made by someone holding A's service user): refused.
    const evil = join(a.state, 'config', 'attacker.pub.pem');
    writeFileSync(evil, readFileSync(a.key));
    writeFileSync(a.consoleFile, `updates:\n  publicKeyFile: ${evil}\n`, { mode: 0o600 });
    const { archive: bad } = await createBackup(deps(coreA), {
      passphrase: 'a long backup passphrase',
      configSource: a.main,
      actor: 'test',
      kdf: KDF,
    });
    const d = appliance(t);
    const coreD = Core.open(loadConfigFile(d.main), clock);
    t.after(() => coreD.close());
    assert.throws(
      () =>
        stageRestore(deps(coreD), bad, {
          passphrase: 'a long backup passphrase',
          actor: 'test',
          configSource: d.main,
        }),
      (e: Error & { code?: string }) =>
        e.code === 'ERR_BACKUP_INCOMPATIBLE' && /not a setting the console may change/.test(e.message),
    );
    assert.equal(existsSync(d.consoleFile), false, 'nothing written');
  });
});
