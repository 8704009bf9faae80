import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { AuditError, AuditLog, entryHash, toSyslogLine } from '../gateway/src/audit/index.ts';
import { ManualClock } from '../gateway/src/clock.ts';
import { Store } from '../gateway/src/store/index.ts';
import { runCli } from './helpers/cli.ts';
import { withRawDb } from './helpers/raw-db.ts';
import { tempDir } from './helpers/tmp.ts';

function seededLog(file: string, n: number): void {
  const store = Store.open(file);
  const audit = new AuditLog(store, new ManualClock());
  for (let i = 1; i <= n; i++)
    audit.append({ actor: 'user:alice', action: 'device.add', target: `dev-${i}`, details: { i } });
  store.close();
}

/** Tamper the way an attacker with file access would: below the application, with the guard triggers dropped. */
function tamper(file: string, sql: string): void {
  const db = new Database(file);
  db.exec('DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete;');
  db.exec(sql);
  db.close();
}

function verifyFile(file: string) {
  const store = Store.open(file);
  try {
    return new AuditLog(store, new ManualClock()).verify();
  } finally {
    store.close();
  }
}

describe('audit log', () => {
  it('verifies an untouched log', (t) => {
    const file = join(tempDir(t), 'p.db');
    seededLog(file, 20);
    assert.deepEqual(verifyFile(file), { ok: true, entries: 20, headSeq: 20 });
  });

  it('verifies an empty log', (t) => {
    const file = join(tempDir(t), 'p.db');
    Store.open(file).close();
    assert.deepEqual(verifyFile(file), { ok: true, entries: 0, headSeq: 0 });
  });

  const tamperings: [string, string, number][] = [
    ['an edited entry', "UPDATE audit_log SET actor = 'user:mallory' WHERE seq = 7", 7],
    ['edited details', `UPDATE audit_log SET details = '{"i":99}' WHERE seq = 12`, 12],
    ['a deleted entry', 'DELETE FROM audit_log WHERE seq = 5', 5],
    ['a deleted last entry', 'DELETE FROM audit_log WHERE seq = 20', 20],
    ['a deleted first entry', 'DELETE FROM audit_log WHERE seq = 1', 1],
    [
      'two swapped entries',
      `UPDATE audit_log SET seq = -1 WHERE seq = 3;
       UPDATE audit_log SET seq = 3 WHERE seq = 9;
       UPDATE audit_log SET seq = 9 WHERE seq = -1;`,
      3,
    ],
    [
      'an edited entry with a forged hash',
      "UPDATE audit_log SET actor = 'user:mallory', hash = 'f'||substr(hash, 2) WHERE seq = 4",
      4,
    ],
  ];
  for (const [what, sql, firstBad] of tamperings) {
    it(`detects ${what} and names seq ${firstBad}`, (t) => {
      const file = join(tempDir(t), 'p.db');
      seededLog(file, 20);
      tamper(file, sql);
      const r = verifyFile(file);
      assert.equal(r.ok, false);
      assert.equal(!r.ok && r.firstBadSeq, firstBad);
    });
  }

  it('names the entry after one whose content and hash were both rewritten', (t) => {
    const file = join(tempDir(t), 'p.db');
    seededLog(file, 10);
    // Recompute a consistent hash for an edited entry 6: the chain breaks at 7, whose link still names the old one.
    const row = withRawDb(
      file,
      (db) => db.prepare('SELECT * FROM audit_log WHERE seq = 6').get() as { ts: string; prev_hash: string },
    );
    const forged = entryHash(
      { seq: 6, ts: row.ts, actor: 'user:mallory', action: 'device.add', target: 'dev-6', details: { i: 6 } },
      row.prev_hash,
    );
    tamper(file, `UPDATE audit_log SET actor = 'user:mallory', hash = '${forged}' WHERE seq = 6`);
    const r = verifyFile(file);
    assert.equal(!r.ok && r.firstBadSeq, 7);
  });

  it('refuses updates and deletes through SQL (append-only at the engine level)', (t) => {
    const file = join(tempDir(t), 'p.db');
    seededLog(file, 3);
    const db = new Database(file);
    t.after(() => db.close());
    assert.throws(() => db.prepare("UPDATE audit_log SET actor = 'x' WHERE seq = 1").run(), /append-only/);
    assert.throws(() => db.prepare('DELETE FROM audit_log WHERE seq = 3').run(), /append-only/);
  });

  it('refuses entries that carry secret-looking fields', (t) => {
    const store = Store.open(':memory:');
    t.after(() => store.close());
    const audit = new AuditLog(store, new ManualClock());
    for (const details of [
      { psk: 'aa' },
      { credential: { privateKey: 'x' } },
      { password: 'hunter2' },
      { token: 't' },
    ]) {
      assert.throws(
        () => audit.append({ actor: 'cli:root', action: 'device.add', details }),
        (e: unknown) =>
          e instanceof AuditError && e.code === 'ERR_AUDIT_SECRET_FIELD' && !/hunter2|aa"/.test(e.message),
      );
    }
    audit.append({
      actor: 'cli:root',
      action: 'device.add',
      details: { pskIdentity: 'sensor-1', keystore: 'tpm2' },
    });
    assert.equal(audit.verify().ok, true);
  });

  it('exports RFC 5424 syslog lines with the chain in structured data', (t) => {
    const store = Store.open(':memory:');
    t.after(() => store.close());
    const audit = new AuditLog(store, new ManualClock(Date.UTC(2026, 10, 25, 8, 0, 0)));
    const e = audit.append({
      actor: 'user:a"b]',
      action: 'device quarantine',
      target: 'dev-1',
      details: { reason: 'flood' },
    });
    const line = toSyslogLine(e, 'gw-01', '42');
    assert.match(
      line,
      /^<109>1 2026-11-25T08:00:00\.000Z gw-01 portcullis 42 device_quarantine \[portcullis@32473 seq="1" actor="user:a\\"b\\]" hash="[0-9a-f]{64}" prevHash="0{64}"\] \uFEFF\{/,
    );
    assert.deepEqual(JSON.parse(line.slice(line.indexOf('\uFEFF') + 1)), {
      target: 'dev-1',
      details: { reason: 'flood' },
    });
  });

  it('loses no committed entry when killed mid-burst of 10,000 appends, and the chain still verifies', async (t) => {
    const dir = tempDir(t);
    const file = join(dir, 'p.db');
    const child = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        fileURLToPath(new URL('./fixtures/audit-burst.ts', import.meta.url)),
        file,
        '10000',
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let lastReported = 0;
    let buf = '';
    const killAt = 2_000 + Math.floor(Math.random() * 5_000);
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      const lines = buf.split('\n');
      buf = lines.pop()!;
      for (const l of lines) lastReported = Number(l);
      if (lastReported >= killAt && child.exitCode === null) child.kill('SIGKILL');
    });
    const [, signal] = (await once(child, 'exit')) as [number | null, string | null];
    assert.equal(signal, 'SIGKILL', 'the burst should have been killed mid-way');
    assert.ok(lastReported >= killAt && lastReported < 10_000, `killed at ${lastReported}`);

    const store = Store.open(file);
    t.after(() => store.close());
    const audit = new AuditLog(store, new ManualClock());
    const r = audit.verify();
    assert.equal(r.ok, true, JSON.stringify(r));
    assert.ok(r.ok && r.headSeq >= lastReported, `committed ${lastReported}, found ${r.ok && r.headSeq}`);
    let i = 0;
    for (const e of audit.entries()) {
      i++;
      assert.equal(e.seq, i);
      assert.deepEqual(e.details, { i });
    }
    // The chain continues cleanly after the crash.
    audit.append({ actor: 'system', action: 'gateway.start' });
    assert.equal(audit.verify().ok, true);
  });
});

describe('portcullis audit', () => {
  function configFor(dir: string): string {
    const f = join(dir, 'config.yaml');
    writeFileSync(f, `dataDir: ${join(dir, 'var')}\n`);
    return f;
  }

  it('verify exits 0 on an intact log and 1 naming the first bad seq on a tampered one', async (t) => {
    const dir = tempDir(t);
    const config = configFor(dir);
    seededLog(join(dir, 'var', 'portcullis.db'), 8);
    const good = await runCli(['--config', config, 'audit', 'verify']);
    assert.equal(good.code, 0, good.stderr);
    assert.match(good.stdout, /ok: 8 entries/);

    tamper(join(dir, 'var', 'portcullis.db'), "UPDATE audit_log SET target = 'dev-x' WHERE seq = 6");
    const bad = await runCli(['--config', config, 'audit', 'verify']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /BROKEN at seq 6/);
  });

  it('export writes one JSON line or one syslog line per entry', async (t) => {
    const dir = tempDir(t);
    const config = configFor(dir);
    seededLog(join(dir, 'var', 'portcullis.db'), 3);
    const jsonl = await runCli(['--config', config, 'audit', 'export', '--format', 'jsonl']);
    assert.equal(jsonl.code, 0, jsonl.stderr);
    const entries = jsonl.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.deepEqual(
      entries.map((e) => e.seq),
      [1, 2, 3],
    );
    assert.equal(entries[1].prevHash, entries[0].hash);

    const syslog = await runCli(['--config', config, 'audit', 'export', '--format', 'syslog', '--from', '2']);
    assert.equal(syslog.code, 0, syslog.stderr);
    assert.equal(syslog.stdout.trim().split('\n').length, 2);

    const badFormat = await runCli(['--config', config, 'audit', 'export', '--format', 'xml']);
    assert.equal(badFormat.code, 2);
  });

  it('verify does not create a database where there is none', async (t) => {
    const dir = tempDir(t);
    const r = await runCli(['--config', configFor(dir), 'audit', 'verify']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /ERR_STORE_OPEN/);
  });
});
