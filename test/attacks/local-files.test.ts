import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  existsSync,
  lstatSync,
  mkdirSync,
  readFileSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { systemClock } from '../../gateway/src/clock.ts';
import { ConfigError, parseConfig } from '../../gateway/src/config/index.ts';
import { UnsafePathError } from '../../gateway/src/config/local-files.ts';
import { startControlServer } from '../../gateway/src/control/server.ts';
import { Core } from '../../gateway/src/core.ts';
import { SoftwareKeystore } from '../../gateway/src/keystore/index.ts';
import { runCli } from '../helpers/cli.ts';
import { selfSignedServerCertificate } from '../helpers/pki.ts';
import { tempDir } from '../helpers/tmp.ts';

/** An unprivileged account other than ours (nobody): files it owns are someone else's. */
const OTHER_UID = 65534;
/** Giving a file to another account takes root (CI runs these as root, as the appliance's CLI is run). */
const needsRoot = { skip: process.getuid?.() !== 0 ? 'chown to another account needs root' : false };

function mode(path: string): number {
  return statSync(path).mode & 0o7777;
}

/** A gateway home in a fresh temp dir (root's, 0700, under the sticky /tmp): what every test gets by default. */
function home(t: TestContext, extra = ''): { dir: string; config: string; dataDir: string } {
  const dir = tempDir(t, 'portcullis-local-');
  const dataDir = join(dir, 'var');
  const config = join(dir, 'config.yaml');
  writeFileSync(config, `dataDir: ${dataDir}\nui: {port: 0}\n${extra}`, { mode: 0o644 });
  return { dir, config, dataDir };
}

async function cli(config: string, args: string[], cwd: string) {
  return runCli(['--config', config, ...args], { cwd });
}

function assertRefused(r: { code: number | null; stderr: string }, path: string): void {
  assert.equal(r.code, 2, `exit 2 expected; stderr: ${r.stderr}`);
  assert.match(r.stderr, /ERR_CONFIG_UNSAFE_PATH/);
  assert.ok(r.stderr.includes(path), `the error names ${path}: ${r.stderr}`);
}

describe('attack: local files (issue 19 item 3)', needsRoot, () => {
  it('a world-writable config is refused by every command that loads it, with exit 2 and its path', async (t) => {
    const h = home(t);
    chmodSync(h.config, 0o666);
    for (const args of [['config', 'check'], ['device', 'list'], ['audit', 'verify'], ['start']]) {
      assertRefused(await cli(h.config, args, h.dir), h.config);
    }
    assert.ok(!existsSync(h.dataDir), 'nothing was created from the unsafe config');
    // Group-writable is just as bad, and so is a config owned by another account.
    chmodSync(h.config, 0o664);
    assertRefused(await cli(h.config, ['config', 'check'], h.dir), h.config);
    chmodSync(h.config, 0o644);
    chownSync(h.config, OTHER_UID, OTHER_UID);
    assertRefused(await cli(h.config, ['config', 'check'], h.dir), h.config);
    // The same config, root's and 0644, is used.
    chownSync(h.config, 0, 0);
    const ok = await cli(h.config, ['config', 'check'], h.dir);
    assert.equal(ok.code, 0, ok.stderr);
  });

  it('a config inside a directory others may write is refused (they could swap it)', async (t) => {
    const h = home(t);
    chmodSync(h.dir, 0o777); // not sticky: anyone may rename config.yaml away and put their own
    assertRefused(await cli(h.config, ['config', 'check'], h.dir), h.dir);
    chmodSync(h.dir, 0o1777); // root's and sticky, like /tmp: nobody else may rename or remove what is in it
    const ok = await cli(h.config, ['config', 'check'], h.dir);
    assert.equal(ok.code, 0, `a root-owned sticky directory (like /tmp) above is fine: ${ok.stderr}`);
  });

  it('a ui.tls.keyFile others can read or write is refused; a 0600 one is used', async (t) => {
    const h = home(t);
    const { cert, key } = selfSignedServerCertificate(h.dir);
    writeFileSync(
      h.config,
      `dataDir: ${h.dataDir}\nui: {port: 0, tls: {certFile: ${cert}, keyFile: ${key}}}\n`,
    );
    chmodSync(key, 0o666);
    assertRefused(await cli(h.config, ['config', 'check'], h.dir), key);
    assertRefused(await cli(h.config, ['start'], h.dir), key);
    chmodSync(key, 0o644); // readable by everyone: a leaked key
    assertRefused(await cli(h.config, ['config', 'check'], h.dir), key);
    chmodSync(key, 0o600);
    chmodSync(cert, 0o666); // a swappable certificate is refused as well
    assertRefused(await cli(h.config, ['config', 'check'], h.dir), cert);
    chmodSync(cert, 0o644);
    const ok = await cli(h.config, ['config', 'check'], h.dir);
    assert.equal(ok.code, 0, ok.stderr);
  });

  it('control.socketPath naming a regular file is refused and the file survives; a stale socket is replaced', async (t) => {
    const h = home(t);
    const victim = join(h.dir, 'precious.txt');
    writeFileSync(victim, 'do not delete\n', { mode: 0o644 });
    writeFileSync(h.config, `dataDir: ${h.dataDir}\nui: {port: 0}\ncontrol: {socketPath: ${victim}}\n`);
    assertRefused(await cli(h.config, ['start'], h.dir), victim);
    assertRefused(await cli(h.config, ['config', 'check'], h.dir), victim);
    assert.equal(readFileSync(victim, 'utf8'), 'do not delete\n');

    // The gateway's own check, not just the config's: a file put there after the config was checked.
    const core = Core.open(parseConfig({ dataDir: h.dataDir }, h.dir), systemClock);
    t.after(() => core.close());
    await assert.rejects(startControlServer(core, victim), (err: unknown) => {
      assert.ok(err instanceof UnsafePathError && err.code === 'ERR_CONFIG_UNSAFE_PATH');
      return true;
    });
    assert.equal(readFileSync(victim, 'utf8'), 'do not delete\n');
    // A symlink there (to anything) is not a socket either.
    const link = join(h.dir, 'link.sock');
    symlinkSync(victim, link);
    await assert.rejects(startControlServer(core, link), UnsafePathError);
    assert.ok(lstatSync(link).isSymbolicLink() && existsSync(victim));
    // A directory neither.
    const sub = join(h.dir, 'sub.sock');
    mkdirSync(sub);
    await assert.rejects(startControlServer(core, sub), UnsafePathError);

    // Positive: a socket left behind by a crash (bound, never unlinked) is replaced.
    const stale = join(h.dir, 'control.sock');
    execFileSync('python3', [
      '-c',
      'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])',
      stale,
    ]);
    assert.ok(lstatSync(stale).isSocket());
    const server = await startControlServer(core, stale);
    t.after(() => server.close());
    assert.ok(lstatSync(stale).isSocket());
    assert.equal(mode(stale) & 0o777, 0o660);
  });

  it("control.socketPath in a folder not made yet (systemd's RuntimeDirectory=) passes when what will hold it is safe", async (t) => {
    const h = home(t);
    const sock = join(h.dir, 'run', 'portcullis', 'control.sock');
    writeFileSync(h.config, `dataDir: ${h.dataDir}\nui: {port: 0}\ncontrol: {socketPath: ${sock}}\n`);
    const ok = await cli(h.config, ['config', 'check'], h.dir);
    assert.equal(ok.code, 0, ok.stderr);
    // The nearest existing folder is writable by others: whoever gets there first owns the socket's folder.
    chmodSync(h.dir, 0o777);
    assertRefused(await cli(h.config, ['config', 'check'], h.dir), h.dir);
  });
});

describe('attack: data directory and keystore (issue 19 item 4)', needsRoot, () => {
  /** The attack as found: a 0777 dataDir where another user planted keystore/data.key before root's `device add`. */
  function plant(dataDir: string): Buffer {
    mkdirSync(join(dataDir, 'keystore'), { recursive: true });
    const key = randomBytes(32);
    writeFileSync(join(dataDir, 'keystore', 'data.key'), key, { mode: 0o600 });
    chownSync(join(dataDir, 'keystore', 'data.key'), OTHER_UID, OTHER_UID);
    chownSync(join(dataDir, 'keystore'), OTHER_UID, OTHER_UID);
    return key;
  }

  const addArgs = [
    'device',
    'add',
    'boiler-1',
    '--psk-identity',
    'boiler-1',
    '--psk',
    '00112233445566778899aabbccddeeff',
  ];

  it('a world-writable dataDir with a planted data.key: device add is refused and no PSK is wrapped', async (t) => {
    const h = home(t);
    mkdirSync(h.dataDir, { mode: 0o777 });
    chmodSync(h.dataDir, 0o777);
    const planted = plant(h.dataDir);
    const r = await cli(h.config, addArgs, h.dir);
    assertRefused(r, h.dataDir);
    assert.ok(
      !existsSync(join(h.dataDir, 'gateway.db')),
      'no database was written, so no PSK under the planted key',
    );
    assert.deepEqual(readFileSync(join(h.dataDir, 'keystore', 'data.key')), planted);
    assert.equal(mode(h.dataDir), 0o777, 'a refused dataDir is left as it was, for a person to look at');
  });

  it('a foreign-owned dataDir (0700, uid 65534) is refused, and so is a symlink to it', async (t) => {
    const h = home(t);
    const theirs = join(h.dir, 'theirs');
    mkdirSync(theirs, { mode: 0o700 });
    chownSync(theirs, OTHER_UID, OTHER_UID);
    symlinkSync(theirs, h.dataDir);
    assertRefused(await cli(h.config, addArgs, h.dir), h.dataDir);
    writeFileSync(h.config, `dataDir: ${theirs}\nui: {port: 0}\n`);
    assertRefused(await cli(h.config, addArgs, h.dir), theirs);
    assert.ok(!existsSync(join(theirs, 'gateway.db')));
  });

  it('a keystore (or data.key) owned by another account inside a good dataDir is refused', async (t) => {
    const h = home(t);
    mkdirSync(h.dataDir, { mode: 0o700 });
    plant(h.dataDir);
    assertRefused(await cli(h.config, addArgs, h.dir), join(h.dataDir, 'keystore'));
    // The keystore itself checks the owner, not just the mode: the directory ours, the key someone else's.
    chownSync(join(h.dataDir, 'keystore'), 0, 0);
    chmodSync(join(h.dataDir, 'keystore'), 0o700);
    assert.throws(
      () => new SoftwareKeystore(join(h.dataDir, 'keystore')),
      (err: unknown) =>
        err instanceof UnsafePathError && err.message.includes(join(h.dataDir, 'keystore', 'data.key')),
    );
    assertRefused(await cli(h.config, addArgs, h.dir), join(h.dataDir, 'keystore', 'data.key'));
  });

  it('a directory above the dataDir that others may write is refused (they could swap the dataDir)', async (t) => {
    const h = home(t);
    const above = join(h.dir, 'srv');
    mkdirSync(above, { mode: 0o777 });
    chmodSync(above, 0o777);
    writeFileSync(h.config, `dataDir: ${join(above, 'var')}\nui: {port: 0}\n`);
    assertRefused(await cli(h.config, addArgs, h.dir), above);
    assert.ok(!existsSync(join(above, 'var')), 'not even created');
    chmodSync(above, 0o755);
    chownSync(above, OTHER_UID, OTHER_UID); // not writable by others, but another account's
    assertRefused(await cli(h.config, addArgs, h.dir), above);
  });

  it('positive: a new dataDir is created 0700; an existing 0755 one of ours is used and tightened to 0700', async (t) => {
    const h = home(t);
    const r = await cli(h.config, addArgs, h.dir);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(mode(h.dataDir), 0o700);
    assert.equal(mode(join(h.dataDir, 'keystore')), 0o700);
    assert.equal(mode(join(h.dataDir, 'keystore', 'data.key')), 0o600);

    const h2 = home(t);
    mkdirSync(h2.dataDir, { mode: 0o755 });
    chmodSync(h2.dataDir, 0o755);
    const r2 = await cli(h2.config, addArgs, h2.dir);
    assert.equal(r2.code, 0, r2.stderr);
    assert.equal(mode(h2.dataDir), 0o700);
  });

  it('positive: embedded defaults (./var in the working directory) still work for the account that owns it', async (t) => {
    const dir = tempDir(t, 'portcullis-checkout-');
    const r = await runCli(['device', 'list'], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(mode(join(dir, 'var')), 0o700);
    // …and a checkout another account may write is not a place to keep root's keys.
    chownSync(dir, OTHER_UID, OTHER_UID);
    assertRefused(await runCli(['device', 'list'], { cwd: dir }), dir);
  });

  it('the errors are typed: UnsafePathError is a ConfigError with a stable code', (t) => {
    const h = home(t);
    mkdirSync(h.dataDir, { mode: 0o777 });
    chmodSync(h.dataDir, 0o777);
    assert.throws(
      () => Core.open(parseConfig({ dataDir: h.dataDir }, h.dir), systemClock),
      (err: unknown) =>
        err instanceof ConfigError &&
        err.code === 'ERR_CONFIG_UNSAFE_PATH' &&
        err.message.startsWith(h.dataDir),
    );
  });
});
