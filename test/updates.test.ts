/**
 * Signed gateway updates: bundles are verified before a byte is unpacked, installed beside the running release,
 * switched to atomically, health-checked, and rolled back when unhealthy. Unsigned, mis-signed, tampered,
 * incompatible, downgrade and truncated bundles are refused and leave the disk exactly as it was. Bundles are
 * built and applied with the real CLI.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import {
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  statSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { join, relative } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { create, extract } from 'tar';
import { systemClock } from '../gateway/src/clock.ts';
import { parseConfig } from '../gateway/src/config/index.ts';
import { Core } from '../gateway/src/core.ts';
import { TpmNvCounter, UpdateInstaller } from '../gateway/src/updates/index.ts';
import { runCli } from './helpers/cli.ts';
import { databaseFileIn, withRawDb } from './helpers/raw-db.ts';
import { tempDir } from './helpers/tmp.ts';
import { startTpm, type TestTpm } from './helpers/tpm.ts';

type T = Parameters<typeof tempDir>[0];

function keyPair(dir: string, name: string) {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const priv = join(dir, `${name}.pem`);
  const pub = join(dir, `${name}.pub.pem`);
  writeFileSync(priv, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  writeFileSync(pub, publicKey.export({ type: 'spki', format: 'pem' }));
  return { priv, pub };
}

/** A release folder whose CLI reports `version` (or fails, for an unhealthy release). */
function release(dir: string, version: string, healthy = true): string {
  const src = join(dir, `src-${version}-${healthy ? 'ok' : 'bad'}`);
  mkdirSync(join(src, 'bin'), { recursive: true });
  mkdirSync(join(src, 'lib'), { recursive: true });
  writeFileSync(
    join(src, 'bin', 'portcullis.js'),
    healthy ? `console.log('${version}');\n` : `console.error('cannot start');\nprocess.exit(1);\n`,
  );
  writeFileSync(join(src, 'lib', 'core.txt'), `the core of ${version}\n`);
  return src;
}

/** Everything on disk that an installation may change, for before/after comparison. */
function snapshot(site: { releases: string; current: string }) {
  const files: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else files.push(`${relative(site.releases, p)}:${statSync(p).size}`);
    }
  };
  walk(site.releases);
  return { files: files.sort(), current: readlinkSync(site.current) };
}

async function setup(t: T) {
  const dir = tempDir(t);
  const keys = keyPair(dir, 'release');
  const wrong = keyPair(dir, 'other');
  const releases = join(dir, 'releases');
  const current = join(dir, 'current');
  mkdirSync(join(releases, '0.1.0', 'bin'), { recursive: true });
  writeFileSync(join(releases, '0.1.0', 'bin', 'portcullis.js'), "console.log('0.1.0');\n");
  symlinkSync(join(releases, '0.1.0'), current);
  const config = join(dir, 'config.yaml');
  writeFileSync(
    config,
    [
      `dataDir: ${join(dir, 'var')}`,
      `updates: {publicKeyFile: ${keys.pub}, releasesDir: ${releases}, currentLink: ${current}, healthDeadlineSeconds: 20}`,
      '',
    ].join('\n'),
  );
  const cli = (...args: string[]) => runCli(['--config', config, ...args], { cwd: dir });
  const build = async (
    version: string,
    o: { healthy?: boolean; key?: string; hardware?: string; min?: string } = {},
  ) => {
    const out = join(dir, `bundle-${version}-${Math.random().toString(36).slice(2)}.tar`);
    const r = await cli(
      'update',
      'build',
      '--source',
      release(dir, version, o.healthy ?? true),
      '--release',
      version,
      '--min-version',
      o.min ?? '0.1.0',
      '--hardware',
      o.hardware ?? 'x64,arm64',
      '--notes',
      `release ${version}`,
      '--key',
      o.key ?? keys.priv,
      '--out',
      out,
    );
    assert.equal(r.code, 0, r.stderr);
    return out;
  };
  /** Unpacks a bundle, lets `edit` change it, packs it again (the signature is not renewed). */
  const repack = async (bundle: string, edit: (root: string) => void) => {
    const root = join(dir, `edit-${Math.random().toString(36).slice(2)}`);
    mkdirSync(root);
    await extract({ file: bundle, cwd: root });
    edit(root);
    const out = `${root}.tar`;
    await create({ file: out, cwd: root, portable: true }, readdirSync(root));
    return out;
  };
  const status = async () =>
    JSON.parse((await cli('update', 'status', '--json')).stdout) as {
      current: string;
      highest: string;
      releases: string[];
      history: { status: string; version: string; error: string | null }[];
    };
  return { dir, keys, wrong, site: { releases, current }, cli, build, repack, status };
}

describe('signed gateway updates', () => {
  it('installs a signed, newer, compatible bundle beside the old release and switches to it', async (t) => {
    const { cli, build, site, status } = await setup(t);
    const bundle = await build('0.2.0');
    const r = await cli('update', 'apply', bundle);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /installed 0\.2\.0 \(was 0\.1\.0\)/);
    assert.equal(readlinkSync(site.current), join(site.releases, '0.2.0'));
    assert.deepEqual(
      readdirSync(site.releases).sort(),
      ['0.1.0', '0.2.0'],
      'the previous release stays for rollback',
    );
    assert.equal(readFileSync(join(site.current, 'lib', 'core.txt'), 'utf8'), 'the core of 0.2.0\n');
    const s = await status();
    assert.equal(s.current, '0.2.0');
    assert.equal(s.highest, '0.2.0');
    assert.equal(s.history[0]?.status, 'installed');
    const audit = (await cli('audit', 'export', '--format', 'jsonl')).stdout;
    assert.match(audit, /"action":"update.install","target":"0.2.0"/);
  });

  it('rolls an unhealthy release back automatically, removes it, and raises an alert', async (t) => {
    const { cli, build, site, status } = await setup(t);
    assert.equal((await cli('update', 'apply', await build('0.2.0'))).code, 0);
    const before = snapshot(site);
    const r = await cli('update', 'apply', await build('0.3.0', { healthy: false }));
    assert.equal(r.code, 1);
    assert.match(r.stderr, /ERR_UPDATE_HEALTH.*0\.3\.0 failed its health check.*0\.2\.0 restored/);
    assert.deepEqual(snapshot(site), before, 'back on 0.2.0, and 0.3.0 is gone');
    const s = await status();
    assert.equal(s.highest, '0.2.0', 'a rolled-back release does not raise the floor');
    assert.equal(s.history[0]?.status, 'rolled-back');
    const alerts = (await cli('alerts', 'list', '--json')).stdout;
    assert.match(alerts, /update\.rolled_back/);
    // The same version fixed can be installed afterwards.
    assert.equal((await cli('update', 'apply', await build('0.3.0'))).code, 0);
    assert.equal(readlinkSync(site.current), join(site.releases, '0.3.0'));
  });

  it('refuses unsigned, mis-signed, tampered, incompatible, downgrade and truncated bundles, changing nothing', async (t) => {
    const { cli, build, repack, wrong, site, status } = await setup(t);
    assert.equal((await cli('update', 'apply', await build('0.2.0'))).code, 0);
    const good = await build('0.3.0');
    const truncated = `${good}.cut.tar`;
    writeFileSync(truncated, readFileSync(good));
    truncateSync(truncated, Math.floor(statSync(good).size / 2));
    const cases: [string, string, string][] = [
      [
        'unsigned',
        await repack(good, (root) => writeFileSync(join(root, 'manifest.sig'), '')),
        'ERR_UPDATE_SIGNATURE',
      ],
      [
        'no signature file',
        await (async () => {
          const root = join(site.releases, '..', 'nosig');
          mkdirSync(root);
          await extract({ file: good, cwd: root });
          const out = `${good}.nosig.tar`;
          await create({ file: out, cwd: root, portable: true }, ['manifest.json', 'files']);
          return out;
        })(),
        'ERR_UPDATE_UNSIGNED',
      ],
      ['signed by another key', await build('0.3.0', { key: wrong.priv }), 'ERR_UPDATE_SIGNATURE'],
      [
        'a file changed after signing',
        await repack(good, (root) => writeFileSync(join(root, 'files', 'lib', 'core.txt'), 'implant\n')),
        'ERR_UPDATE_TAMPERED',
      ],
      [
        'a file added after signing',
        await repack(good, (root) => writeFileSync(join(root, 'files', 'bin', 'backdoor.js'), 'x')),
        'ERR_UPDATE_TAMPERED',
      ],
      [
        'the manifest changed after signing',
        await repack(good, (root) => {
          const p = join(root, 'manifest.json');
          writeFileSync(p, readFileSync(p, 'utf8').replace('"0.1.0"', '"0.0.1"'));
        }),
        'ERR_UPDATE_SIGNATURE',
      ],
      [
        'for other hardware',
        await build('0.3.0', { hardware: process.arch === 'x64' ? 'arm64' : 'x64' }),
        'ERR_UPDATE_INCOMPATIBLE',
      ],
      ['needs a newer installed version', await build('0.3.0', { min: '0.2.5' }), 'ERR_UPDATE_INCOMPATIBLE'],
      ['older than installed', await build('0.1.5'), 'ERR_UPDATE_DOWNGRADE'],
      ['the installed version again', await build('0.2.0'), 'ERR_UPDATE_DOWNGRADE'],
      ['truncated', truncated, 'ERR_UPDATE_TRUNCATED'],
      [
        'not a tar at all',
        (() => {
          const p = `${good}.junk`;
          writeFileSync(p, 'this is not a bundle'.repeat(100));
          return p;
        })(),
        'ERR_UPDATE_',
      ],
    ];
    const before = snapshot(site);
    for (const [what, bundle, code] of cases) {
      const r = await cli('update', 'apply', bundle);
      assert.equal(r.code, 1, `${what}: ${r.stdout}`);
      assert.match(r.stderr, new RegExp(code), what);
      assert.deepEqual(snapshot(site), before, `${what}: nothing changed on disk`);
    }
    const s = await status();
    assert.equal(s.current, '0.2.0');
    assert.equal(s.history.filter((h) => h.status === 'refused').length, cases.length);
    // And the genuine bundle still installs.
    assert.equal((await cli('update', 'apply', good)).code, 0);
  });

  it('installs nothing without a pinned release key (fail closed)', async (t) => {
    const { dir, build, site } = await setup(t);
    const bundle = await build('0.2.0');
    const config = join(dir, 'nokey.yaml');
    writeFileSync(
      config,
      `dataDir: ${join(dir, 'var2')}\nupdates: {releasesDir: ${site.releases}, currentLink: ${site.current}}\n`,
    );
    const r = await runCli(['--config', config, 'update', 'apply', bundle], { cwd: dir });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /ERR_UPDATE_CONFIG.*no release key is pinned/);
    assert.equal(readlinkSync(site.current), join(site.releases, '0.1.0'));
  });
});

describe('anti-rollback counter in the TPM', () => {
  let tpm: TestTpm;
  before(async () => {
    tpm = await startTpm();
  });
  after(() => tpm?.stop());

  it('refuses updates when the database was restored from a copy older than the TPM counter', async (t) => {
    const { dir, build, site, keys } = await setup(t);
    // The resource manager sits on a private D-Bus: the tools find it through these variables.
    Object.assign(process.env, tpm.env);
    t.after(() => {
      for (const k of Object.keys(tpm.env)) delete process.env[k];
    });
    const counter = new TpmNvCounter(tpm.tcti, 0x01500100);
    const config = parseConfig(
      {
        dataDir: join(dir, 'var-tpm'),
        updates: { publicKeyFile: keys.pub, releasesDir: site.releases, currentLink: site.current },
      },
      dir,
    );
    const core = Core.open(config, systemClock);
    t.after(() => core.close());
    const installer = new UpdateInstaller({
      options: config.updates,
      store: core.store,
      audit: core.audit,
      clock: systemClock,
      runningVersion: '0.1.0',
      counter,
    });
    await installer.apply(await build('0.2.0'), 'test');
    const first = core.store.updates.counter();
    assert.equal(first, counter.read(), 'the store records the TPM counter it raised');
    // Someone copies the database aside, a later update is kept, and the old copy is put back.
    const file = databaseFileIn(core.config.dataDir);
    const copy = withRawDb(
      file,
      (db) =>
        db.prepare('SELECT highest_version, counter FROM update_state').get() as {
          highest_version: string;
          counter: string;
        },
    );
    await installer.apply(await build('0.3.0'), 'test');
    assert.ok((counter.read() ?? 0n) > (first ?? 0n));
    withRawDb(file, (db) =>
      db
        .prepare('UPDATE update_state SET highest_version = ?, counter = ?')
        .run(copy.highest_version, copy.counter),
    );
    await assert.rejects(
      installer.apply(await build('0.4.0'), 'test'),
      (err: { code?: string; message?: string }) => {
        assert.equal(err.code, 'ERR_UPDATE_DOWNGRADE');
        assert.match(err.message ?? '', /older than the TPM NV index 0x1500100/);
        return true;
      },
    );
    assert.equal(readlinkSync(site.current), join(site.releases, '0.3.0'));
  });
});
