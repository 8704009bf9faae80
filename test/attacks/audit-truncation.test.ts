/**
 * Issue 19, finding 5: someone with write access to the database file truncates the audit log (drops the guard
 * triggers, deletes the last rows, points audit_head at the new last row with one UPDATE). The head is keyed by
 * the keystore and bound to its counter, and signed checkpoints go into the export, so `portcullis audit verify`
 * and an outside party holding an earlier export both see it. The attack first, then what holds.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { copyFileSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import {
  AuditError,
  CHECKPOINT_EVERY,
  checkpointMessage,
  verifyCheckpoint,
} from '../../gateway/src/audit/index.ts';
import { systemClock } from '../../gateway/src/clock.ts';
import { resolveConfig } from '../../gateway/src/config/index.ts';
import { Core } from '../../gateway/src/core.ts';
import { runCli, spawnCli } from '../helpers/cli.ts';
import { tempDir } from '../helpers/tmp.ts';
import { call, controlSocket } from './control-api-helpers.ts';

interface Home {
  dir: string;
  config: string;
  db: string;
  open(): Core;
  cli(...args: string[]): ReturnType<typeof runCli>;
}

function home(t: Parameters<typeof tempDir>[0]): Home {
  const dir = tempDir(t);
  const config = join(dir, 'config.yaml');
  writeFileSync(config, `dataDir: ${join(dir, 'var')}\n`);
  return {
    dir,
    config,
    db: join(dir, 'var', 'portcullis.db'),
    open: () => Core.open(resolveConfig(config).config, systemClock),
    cli: (...args) => runCli(['--config', config, ...args], { cwd: dir }),
  };
}

/** Appends `n` entries through the gateway's own service layer, optionally with a checkpoint after them. */
function write(h: Home, n: number, checkpoint: boolean): void {
  const core = h.open();
  try {
    for (let i = 0; i < n; i++) {
      core.audit.append({ actor: 'user:alice', action: 'device.add', target: `dev-${i}`, details: { i } });
    }
    if (checkpoint) assert.ok(core.audit.checkpoint(), 'a checkpoint was made');
  } finally {
    core.close();
  }
}

/** The attack of the finding, below the application: no hashes to recompute, one UPDATE for the head. */
function truncate(db: string, keepThrough: number, extraSql = ''): void {
  const d = new Database(db);
  try {
    d.exec('DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete;');
    d.prepare('DELETE FROM audit_log WHERE seq > ?').run(keepThrough);
    const last = d.prepare('SELECT seq, hash FROM audit_log WHERE seq = ?').get(keepThrough) as {
      seq: number;
      hash: string;
    };
    d.prepare('UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1').run(last.seq, last.hash);
    if (extraSql) d.exec(extraSql);
  } finally {
    d.close();
  }
}

describe('attack: audit log truncation', () => {
  it('truncating the tail and resetting the head by hand: audit verify exits 1 naming the truncation', async (t) => {
    const h = home(t);
    write(h, 20, false);
    truncate(h.db, 15);
    const r = await h.cli('audit', 'verify');
    assert.equal(r.code, 1, r.stdout);
    assert.match(r.stderr, /BROKEN at seq 16: truncated or rewritten: the log ends at entry 15/);
    assert.match(r.stderr, /head was not written by the gateway/);
  });

  it('with a signed checkpoint past the new end, verify names the removed range', async (t) => {
    const h = home(t);
    write(h, 20, true);
    write(h, 5, false);
    truncate(h.db, 12);
    const r = await h.cli('audit', 'verify');
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /BROKEN at seq 13: truncated: .*reached entry 20; entries 13-20 at least were removed/,
    );
  });

  it('deleting the checkpoints and nulling the key as well does not help', async (t) => {
    const h = home(t);
    write(h, 20, true);
    truncate(h.db, 15, 'DELETE FROM audit_checkpoints; UPDATE audit_head SET mac = NULL, counter = NULL;');
    const r = await h.cli('audit', 'verify');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /BROKEN at seq 16: /);
  });

  it('fail closed: the gateway does not start over a tampered head', async (t) => {
    const h = home(t);
    writeFileSync(h.config, `dataDir: ${join(h.dir, 'var')}\nui: {port: 0}\ndtls: {port: 0}\n`);
    write(h, 5, false);
    truncate(h.db, 3);
    const child = spawnCli(['--config', h.config, 'start'], { cwd: h.dir });
    t.after(() => child.kill('SIGKILL'));
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const deadline = setTimeout(() => child.kill('SIGKILL'), 30_000);
    const [code] = (await once(child, 'exit')) as [number | null];
    clearTimeout(deadline);
    assert.notEqual(code, 0);
    assert.match(stderr, /does not match its key.*portcullis audit reseal/);
  });

  it('fail closed on the control socket too: 503 ERR_AUDIT_TAMPERED, never 500', async (t) => {
    const { core, socket, token, dir } = await controlSocket(t, systemClock);
    const w = token('w', ['audit:write']);
    for (let i = 0; i < 4; i++) core.audit.append({ actor: 'system', action: 'x', details: { i } });
    // Truncated under the running gateway, through another connection to the file.
    truncate(join(dir, 'var', 'portcullis.db'), 3);
    const r = await call(socket, w, 'POST', '/v1/audit', '{"action":"after"}');
    assert.equal(r.status, 503);
    assert.equal(r.data.error?.code, 'ERR_AUDIT_TAMPERED');
    assert.match(r.data.error?.message ?? '', /audit reseal/);
  });

  it('deleting the head row altogether is reported, and reseal carries on after the last entry', async (t) => {
    const h = home(t);
    write(h, 6, false);
    truncate(h.db, 4, 'DELETE FROM audit_head;');
    const r = await h.cli('audit', 'verify');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /BROKEN at seq 5: log ends at entry 4 but its head records entry 0/);
    const resealed = await h.cli('audit', 'reseal', '--reason', 'head row gone');
    assert.equal(resealed.code, 0, resealed.stderr);
    assert.match(resealed.stdout, /resealed at seq 5 \(found: the audit head is missing\)/);
  });

  it('restoring an earlier copy of the database (rollback) is caught by the counter', async (t) => {
    const h = home(t);
    write(h, 10, true);
    const copy = join(h.dir, 'old.db');
    copyFileSync(h.db, copy);
    write(h, 10, true);
    // The old copy is internally consistent: its head and MAC were written by the gateway, at an older counter.
    copyFileSync(copy, h.db);
    const r = await h.cli('audit', 'verify');
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /BROKEN at seq 11: .*bound to counter 1 but the file counter is at 2: .*rolled back/,
    );
  });

  it('the gateway refuses to append over a tampered head; reseal records it and verify keeps the evidence', async (t) => {
    const h = home(t);
    write(h, 20, true);
    truncate(h.db, 15);
    const core = h.open();
    try {
      assert.throws(
        () => core.audit.append({ actor: 'system', action: 'gateway.start' }),
        (e: unknown) => e instanceof AuditError && e.code === 'ERR_AUDIT_TAMPERED',
      );
    } finally {
      core.close();
    }
    const resealed = await h.cli('audit', 'reseal', '--reason', 'incident 7: disk image inspected');
    assert.equal(resealed.code, 0, resealed.stderr);
    assert.match(resealed.stdout, /resealed at seq 16 \(found: .*does not match its key/);
    write(h, 1, false);
    const gap = await h.cli('audit', 'verify');
    assert.match(gap.stderr, /BROKEN at seq 18: truncated: .*entries 18-20 at least were removed/);
    write(h, 4, false);
    const r = await h.cli('audit', 'verify');
    assert.equal(r.code, 1, 'the removed entries stay visible: the old checkpoint names another entry 20');
    assert.match(r.stderr, /entry 20 differs from the one its signed checkpoint/);
    const entries = (await h.cli('audit', 'export', '--format', 'jsonl', '--checkpoints')).stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { action?: string; details?: { problem?: string } });
    assert.match(entries.find((e) => e.action === 'audit.reseal')?.details?.problem ?? '', /does not match/);
  });

  it('positive: a log from before keyed heads verifies, and is keyed at the next start (verify first changes nothing)', async (t) => {
    const h = home(t);
    write(h, 3, false);
    // What an older release left: no MAC, no counter, no checkpoints.
    const d = new Database(h.db);
    d.exec('UPDATE audit_head SET mac = NULL, counter = NULL');
    d.close();
    const keystore = join(h.dir, 'var', 'keystore');
    rmSync(join(keystore, 'audit.counter'));
    const before = await h.cli('audit', 'verify');
    assert.equal(before.code, 0, before.stderr);
    assert.match(before.stdout, /head not keyed yet/);
    assert.equal(existsSync(join(keystore, 'audit.counter')), false, 'a read-only verify creates no counter');
    write(h, 1, false);
    const after = await h.cli('audit', 'verify');
    assert.equal(after.code, 0, after.stderr);
    assert.match(after.stdout, /4 entries.*keyed head ok/);
  });

  it('positive: a checkpoint cut off between its commit and the count is completed at the next open', async (t) => {
    const h = home(t);
    write(h, 3, true);
    const counterFile = join(h.dir, 'var', 'keystore', 'audit.counter');
    assert.equal(readFileSync(counterFile, 'utf8').trim(), '1');
    // What a crash right after the checkpoint's commit leaves: the head bound to 1, the counter still at 0.
    writeFileSync(counterFile, '0\n');
    write(h, 1, false);
    assert.equal(readFileSync(counterFile, 'utf8').trim(), '1', 'caught up, not counted past the head');
    const r = await h.cli('audit', 'verify');
    assert.equal(r.code, 0, r.stderr);
  });

  it('positive: a checkpoint follows every CHECKPOINT_EVERY entries, after their transactions', async (t) => {
    const h = home(t);
    const core = h.open();
    t.after(() => core.close());
    for (let i = 0; i < CHECKPOINT_EVERY; i++)
      core.audit.append({ actor: 'system', action: 'tick', details: { i } });
    assert.deepEqual(core.audit.checkpoints(), [], 'not inside the append');
    await new Promise((resolve) => setImmediate(resolve));
    const [cp] = core.audit.checkpoints();
    assert.equal(cp?.seq, CHECKPOINT_EVERY);
    assert.equal(cp?.counter, 1);
  });

  it('positive: an intact keyed log verifies, across restarts and checkpoints', async (t) => {
    const h = home(t);
    write(h, 5, true);
    write(h, 5, false);
    write(h, 3, true);
    const r = await h.cli('audit', 'verify');
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      /13 entries, chain intact through seq 13; keyed head ok \(file counter 2.*2 signed checkpoints ok/,
    );
  });

  it('an outside party verifies the exported checkpoints with the identity certificate and sees a truncation', async (t) => {
    const h = home(t);
    write(h, 8, true);
    const exported = (await h.cli('audit', 'export', '--format', 'jsonl', '--checkpoints')).stdout
      .trim()
      .split('\n');
    const cpLine = exported.find((l) => l.startsWith('{"checkpoint"'));
    assert.ok(cpLine, 'the export carries the checkpoint');
    assert.equal(exported.indexOf(cpLine), 8, 'right after the entry it names');
    const plain = (await h.cli('audit', 'export', '--format', 'jsonl')).stdout;
    assert.doesNotMatch(plain, /checkpoint/, 'without --checkpoints the export is entries only, as before');
    const cp = (JSON.parse(cpLine) as { checkpoint: Parameters<typeof verifyCheckpoint>[0] }).checkpoint;
    assert.equal(cp.seq, 8);
    assert.equal(cp.hash, (JSON.parse(exported[7] as string) as { hash: string }).hash);

    // The outside party with openssl alone: the identity certificate, the message rebuilt from the fields.
    const certFile = join(h.dir, 'var', 'keystore', 'identity.pem');
    const pub = join(h.dir, 'identity-pub.pem');
    writeFileSync(pub, execFileSync('openssl', ['x509', '-in', certFile, '-noout', '-pubkey']));
    const msg = join(h.dir, 'cp.txt');
    const sig = join(h.dir, 'cp.sig');
    writeFileSync(
      msg,
      `portcullis audit checkpoint v1\nseq=${cp.seq}\nhash=${cp.hash}\ncounter=${cp.counter}\nts=${cp.ts}\n`,
    );
    assert.deepEqual(readFileSync(msg), checkpointMessage(cp), 'the documented message format');
    writeFileSync(sig, Buffer.from(cp.signature, 'base64'));
    const ok = execFileSync('openssl', [
      'dgst',
      '-sha256',
      '-verify',
      pub,
      '-signature',
      sig,
      msg,
    ]).toString();
    assert.match(ok, /Verified OK/);
    // …and with node:crypto; a forged hash does not verify.
    const cert = readFileSync(certFile, 'utf8');
    assert.equal(verifyCheckpoint(cp, cert), true);
    assert.equal(verifyCheckpoint({ ...cp, hash: 'f'.repeat(64) }, cert), false);
    assert.equal(verifyCheckpoint({ ...cp, seq: 7 }, cert), false);

    // The syslog export carries the same checkpoint in structured data.
    const syslog = (await h.cli('audit', 'export', '--format', 'syslog', '--checkpoints')).stdout;
    assert.match(
      syslog,
      new RegExp(
        `portcullis - audit\\.checkpoint \\[portcullis-checkpoint@32473 seq="8" hash="${cp.hash}" counter="${cp.counter}" signature="[A-Za-z0-9+/=]+"\\]`,
      ),
    );

    // Later the log is truncated and resealed so the gateway runs on; the next export no longer reaches the
    // checkpoint the outside party holds with the same hash: truncation, whatever the database now says.
    truncate(h.db, 5, 'DELETE FROM audit_checkpoints;');
    assert.equal((await h.cli('audit', 'reseal', '--reason', 'test')).code, 0);
    write(h, 4, false);
    const later = (await h.cli('audit', 'export', '--format', 'jsonl', '--checkpoints')).stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { seq?: number; hash?: string });
    const at8 = later.find((e) => e.seq === cp.seq);
    assert.ok(at8, 'the log has an entry 8 again');
    assert.notEqual(at8.hash, cp.hash, 'but not the one that was signed: the outside party sees the rewrite');
  });
});
