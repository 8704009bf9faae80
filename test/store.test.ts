import assert from 'node:assert/strict';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { LATEST_SCHEMA_VERSION, Store, StoreError } from '../gateway/src/store/index.ts';
import { withRawDb } from './helpers/raw-db.ts';
import { tempDir } from './helpers/tmp.ts';

const NOW = '2026-01-01T00:00:00.000Z';

function refused(fn: () => unknown, code: string): StoreError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof StoreError, `expected StoreError, got ${String(err)}`);
    assert.equal(err.code, code);
    return err;
  }
  assert.fail('expected the store to refuse');
}

describe('store', () => {
  it('creates the schema on first open and reopens without re-running migrations', (t) => {
    const file = join(tempDir(t), 'p.db');
    const s1 = Store.open(file);
    s1.devices.insert({ id: 'd1', credentialKind: 'psk', state: 'active' }, NOW);
    s1.close();
    const s2 = Store.open(file);
    t.after(() => s2.close());
    withRawDb(file, (db) => {
      assert.equal(db.pragma('user_version', { simple: true }), LATEST_SCHEMA_VERSION);
      assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
    });
    assert.equal(s2.devices.get('d1')?.state, 'active');
  });

  it('refuses a file that is not an SQLite database and leaves it untouched', (t) => {
    const file = join(tempDir(t), 'p.db');
    writeFileSync(file, "this is not a database, but it is somebody's data\n".repeat(200));
    const before = readFileSync(file);
    const e = refused(() => Store.open(file), 'ERR_STORE_CORRUPT');
    assert.match(e.message, /refusing/);
    assert.ok(readFileSync(file).equals(before));
  });

  it('refuses a database whose pages are corrupt and leaves it untouched', (t) => {
    const file = join(tempDir(t), 'p.db');
    const s = Store.open(file);
    for (let i = 0; i < 200; i++)
      s.devices.insert({ id: `d${i}`, credentialKind: 'psk', state: 'active' }, NOW);
    s.close();
    withRawDb(file, (db) => db.pragma('wal_checkpoint(TRUNCATE)'));
    const bytes = readFileSync(file);
    // Scribble over every page but the first (which holds the header and the schema).
    bytes.fill(0xa5, 4096);
    writeFileSync(file, bytes);
    refused(() => Store.open(file), 'ERR_STORE_CORRUPT');
    assert.ok(readFileSync(file).equals(bytes));
  });

  it('refuses a database written by a newer release and leaves it untouched', (t) => {
    const file = join(tempDir(t), 'p.db');
    Store.open(file).close();
    const raw = new Database(file);
    raw.pragma(`user_version = ${LATEST_SCHEMA_VERSION + 1}`);
    raw.close();
    const before = readFileSync(file);
    const e = refused(() => Store.open(file), 'ERR_STORE_SCHEMA_NEWER');
    assert.match(e.message, /newer/);
    assert.ok(readFileSync(file).equals(before));
  });

  it('keeps the database file private to its owner', (t) => {
    const file = join(tempDir(t), 'p.db');
    Store.open(file).close();
    assert.equal(statSync(file).mode & 0o777, 0o600);
  });

  it('devices: insert, conflict, list by state, segments, state change, counts', (t) => {
    const file = join(tempDir(t), 'p.db');
    const s = Store.open(file);
    t.after(() => s.close());
    s.segments.upsert(
      {
        name: 'sensors',
        role: 'sensors',
        interface: null,
        vlanId: 20,
        parentInterface: 'eth0',
        subnet: '10.20.0.0/24',
        gatewayAddress: '10.20.0.1',
        defaultPolicy: 'deny',
      },
      NOW,
    );
    s.devices.insert({ id: 'a', credentialKind: 'psk', state: 'active', segment: 'sensors' }, NOW);
    s.devices.insert({ id: 'b', credentialKind: 'x509', state: 'pending' }, NOW);
    refused(
      () => s.devices.insert({ id: 'a', credentialKind: 'psk', state: 'active' }, NOW),
      'ERR_STORE_CONFLICT',
    );
    assert.deepEqual(
      s.devices.list({ state: 'pending' }).map((d) => d.id),
      ['b'],
    );
    // What the behaviour service groups devices by: each device's segment, '' for none.
    assert.deepEqual([...s.devices.segments()].sort(), [
      ['a', 'sensors'],
      ['b', ''],
    ]);
    s.devices.setState('b', 'active', NOW);
    assert.deepEqual(s.devices.countByState(), { pending: 0, active: 2, quarantined: 0, decommissioned: 0 });
    refused(() => s.devices.setState('zz', 'active', NOW), 'ERR_STORE_NOT_FOUND');
    // The schema, not only the code, rejects states that do not exist.
    assert.throws(
      () => withRawDb(file, (db) => db.prepare("UPDATE devices SET state = 'trusted' WHERE id = 'a'").run()),
      /CHECK/,
    );
    // A device cannot point at a segment that does not exist.
    refused(
      () => s.devices.insert({ id: 'c', credentialKind: 'psk', state: 'active', segment: 'nope' }, NOW),
      'ERR_STORE_NOT_FOUND',
    );
  });

  it('credentials: one active credential per identity, revocation erases the secret', (t) => {
    const s = Store.open(':memory:');
    t.after(() => s.close());
    s.devices.insert({ id: 'a', credentialKind: 'psk', state: 'active' }, NOW);
    s.credentials.insert(
      { deviceId: 'a', kind: 'psk', lookup: 'sensor-a', secretWrapped: Buffer.from('wrapped') },
      NOW,
    );
    const e = refused(
      () =>
        s.credentials.insert(
          { deviceId: 'a', kind: 'psk', lookup: 'sensor-a', secretWrapped: Buffer.from('x') },
          NOW,
        ),
      'ERR_STORE_CONFLICT',
    );
    assert.doesNotMatch(e.message, /wrapped|sensor-a/);
    assert.ok(s.credentials.findActive('psk', 'sensor-a'));
    assert.equal(s.credentials.revokeAndEraseForDevice('a', NOW), 1);
    assert.equal(s.credentials.findActive('psk', 'sensor-a'), undefined);
    assert.equal(s.credentials.listForDevice('a')[0]?.secretWrapped, null);
  });

  it('alerts: duplicates fold into one open alert until acknowledged', (t) => {
    const s = Store.open(':memory:');
    t.after(() => s.close());
    const a = {
      deviceId: 'a',
      severity: 'low' as const,
      kind: 'rate',
      explanation: 'x',
      evidence: { rate: 5 },
      dedupeKey: 'a:rate',
    };
    const first = s.alerts.raise(a, NOW);
    const second = s.alerts.raise({ ...a, severity: 'high' }, NOW);
    assert.equal(first.isNew, true);
    assert.equal(second.isNew, false);
    assert.equal(second.alert.count, 2);
    assert.equal(second.alert.severity, 'high');
    s.alerts.acknowledge(first.alert.id, 'user:alice', NOW);
    refused(() => s.alerts.acknowledge(first.alert.id, 'user:alice', NOW), 'ERR_STORE_NOT_FOUND');
    assert.equal(s.alerts.raise(a, NOW).isNew, true);
    assert.equal(s.alerts.list({ open: true }).length, 1);
  });

  it('queue: keeps order, deletes only what is acknowledged, survives reopen', (t) => {
    const file = join(tempDir(t), 'p.db');
    const s = Store.open(file);
    for (let i = 0; i < 3; i++) {
      s.queue.enqueue({
        deviceId: 'a',
        topic: 't',
        payload: Buffer.from([i, 0xff]),
        properties: { n: String(i) },
        enqueuedAt: NOW,
      });
    }
    const [m0] = s.queue.peek(1);
    assert.ok(m0 && s.queue.delete(m0.id));
    s.close();
    const s2 = Store.open(file);
    t.after(() => s2.close());
    const rest = s2.queue.peek(10);
    assert.deepEqual(
      rest.map((m) => [...m.payload]),
      [
        [1, 0xff],
        [2, 0xff],
      ],
    );
    assert.equal(s2.queue.depth(), 2);
  });

  it('users: unique names and roles limited to admin, technician, auditor', (t) => {
    const file = join(tempDir(t), 'p.db');
    const s = Store.open(file);
    t.after(() => s.close());
    s.users.insert({ username: 'alice', role: 'admin', passwordHash: '$argon2id$x' }, NOW);
    refused(
      () => s.users.insert({ username: 'alice', role: 'auditor', passwordHash: 'y' }, NOW),
      'ERR_STORE_CONFLICT',
    );
    assert.throws(
      () =>
        withRawDb(file, (db) =>
          db
            .prepare(
              "INSERT INTO users (username, role, password_hash, created_at) VALUES ('bob', 'root', 'h', 'now')",
            )
            .run(),
        ),
      /CHECK/,
    );
    assert.equal(s.users.count(), 1);
  });
});

/** Every reading asks for its device's next command; the set of devices that may have one spares the query. */
describe('downlink commands', () => {
  const cmd = (deviceId: string, n: number) => ({
    deviceId,
    payload: Buffer.from([n]),
    contentFormat: null,
    receivedAt: '2026-12-06T09:00:00.000Z',
  });

  it("answers this connection's command at once, oldest first, and none twice", (t) => {
    const file = join(tempDir(t), 'gw.db');
    const store = Store.open(file);
    t.after(() => store.close());
    store.devices.insert({ id: 'd1', credentialKind: 'psk', state: 'active' }, '2026-12-06T09:00:00.000Z');
    assert.equal(store.downlink.next('d1'), undefined);
    store.downlink.enqueue(cmd('d1', 1));
    store.downlink.enqueue(cmd('d1', 2));
    const first = store.downlink.next('d1');
    assert.deepEqual(first?.payload, Buffer.from([1]));
    store.downlink.delete(first?.id as number);
    const second = store.downlink.next('d1');
    assert.deepEqual(second?.payload, Buffer.from([2]));
    store.downlink.delete(second?.id as number);
    assert.equal(store.downlink.next('d1'), undefined);
  });

  it("answers another process's command within 50 ms, never loses it", async (t) => {
    const file = join(tempDir(t), 'gw.db');
    const gateway = Store.open(file);
    t.after(() => gateway.close());
    const cli = Store.open(file);
    t.after(() => cli.close());
    gateway.devices.insert({ id: 'd1', credentialKind: 'psk', state: 'active' }, '2026-12-06T09:00:00.000Z');
    assert.equal(gateway.downlink.next('d1'), undefined, 'the set is filled: no command yet');
    cli.downlink.enqueue(cmd('d1', 7));
    await new Promise((r) => setTimeout(r, 60));
    assert.deepEqual(gateway.downlink.next('d1')?.payload, Buffer.from([7]));
  });
});
