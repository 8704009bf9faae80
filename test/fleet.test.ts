/**
 * The fleet plane end to end, all real: one mosquitto (TLS 1.3, client certificates required), three gateways
 * as `portcullis start` processes with their own data directories, ports and topic prefixes, and the operator
 * using the same `portcullis fleet …` command with its own client certificate. The attacks (tampered, replayed,
 * expired, wrong-key, unsigned, malformed documents; a truncated audit log) sit beside what must work.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import mqtt from 'mqtt';
import { headMac } from '../gateway/src/audit/index.ts';
import { AUDIT_HEAD_KEY_PURPOSE } from '../gateway/src/audit/sealing.ts';
import { resolveConfig } from '../gateway/src/config/index.ts';
import { openKeystore } from '../gateway/src/keystore/index.ts';
import { runCli, spawnCli } from './helpers/cli.ts';
import { type GatewayHome, makeGatewayHome, type RunningGateway } from './helpers/gateway.ts';
import { type Broker, startBroker } from './helpers/mosquitto.ts';
import { coapClientPost } from './helpers/peers.ts';
import { makePki, type TestPki } from './helpers/pki.ts';

const PREFIXES = ['fleet-a', 'fleet-b', 'fleet-c'] as const;
type Prefix = (typeof PREFIXES)[number];

interface Received {
  topic: string;
  doc: Record<string, unknown>;
  retain: boolean;
}

describe('fleet plane: three gateways, one broker, signed desired state', () => {
  let pki: TestPki;
  let broker: Broker;
  let dir: string;
  const homes = new Map<Prefix, GatewayHome>();
  const gws = new Map<Prefix, RunningGateway>();
  let observer: mqtt.MqttClient;
  const seen: Received[] = [];
  let known: string;

  const brokerArgs = () => [
    '--broker',
    broker.url,
    '--ca',
    pki.caPath,
    '--cert',
    pki.client.certPath,
    '--key',
    pki.client.keyPath,
  ];
  const fleet = (...args: string[]) => runCli(['fleet', ...args], { cwd: dir });
  const status = (...extra: string[]) =>
    fleet('status', ...brokerArgs(), '--known', known, '--wait', '1500', ...extra);

  /** Signs `yaml` with `key` into a file and returns its path. */
  async function sign(
    name: string,
    yaml: string,
    version: number,
    expires = '1h',
    key = 'keys/operator.key',
    extra: string[] = [],
  ) {
    writeFileSync(join(dir, `${name}.yaml`), yaml);
    const out = join(dir, `${name}.signed`);
    const r = await fleet(
      'sign',
      `${name}.yaml`,
      '--key',
      key,
      '--doc-version',
      String(version),
      '--expires',
      expires,
      '--out',
      out,
      ...extra,
    );
    assert.equal(r.code, 0, r.stderr);
    return out;
  }

  async function publishGroup(file: string) {
    const r = await fleet('publish', ...brokerArgs(), '--group', 'cold', file);
    assert.equal(r.code, 0, r.stderr);
  }

  async function waitFor<T>(
    what: string,
    find: () => T | undefined | Promise<T | undefined>,
    timeoutMs = 15_000,
  ): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = await find();
      if (v !== undefined) return v;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Results after `mark` from each of `prefixes`. */
  function resultsFrom(
    prefixes: readonly Prefix[],
    mark: number,
    pred: (d: Record<string, unknown>) => boolean,
  ) {
    const out = new Map<string, Record<string, unknown>>();
    for (const m of seen.slice(mark)) {
      const p = m.topic.replace(/\/gateway\/desired\/result$/, '');
      if (m.topic.endsWith('/gateway/desired/result') && prefixes.includes(p as Prefix) && pred(m.doc))
        out.set(p, m.doc);
    }
    return out.size === prefixes.length ? out : undefined;
  }

  const all = PREFIXES;

  interface Row {
    prefix: string;
    state?: {
      fleet: { labels: Record<string, string>; applied: Array<{ scope: string; version: number }> };
    };
    check: { ok: boolean; problems: string[] };
  }
  async function statusJson(): Promise<Row[]> {
    const r = await status('--json');
    assert.ok(r.code === 0 || r.code === 1, r.stderr);
    return JSON.parse(r.stdout) as Row[];
  }

  before(async () => {
    pki = makePki();
    broker = await startBroker({ caPath: pki.caPath, server: pki.broker });
    dir = mkdtempSync(join(tmpdir(), 'portcullis-fleet-'));
    known = join(dir, 'known.json');
    const k = await fleet('keygen', 'keys');
    assert.equal(k.code, 0, k.stderr);
    await Promise.all(
      PREFIXES.map(async (p) => {
        homes.set(
          p,
          await makeGatewayHome(pki, broker, `gw-${p}`, {
            topicPrefix: p,
            extraConfig: [
              'fleet:',
              `  operatorKeyFile: ${join(dir, 'keys', 'operator.pub')}`,
              '  groups: [cold]',
              '  stateDebounceSeconds: 0.2',
              'policy: {profiles: {cold: {maxPayloadBytes: 512}}}',
            ],
          }),
        );
      }),
    );
    observer = mqtt.connect(broker.url, {
      protocolVersion: 5,
      ca: readFileSync(pki.caPath),
      cert: readFileSync(pki.client.certPath),
      key: readFileSync(pki.client.keyPath),
      reconnectPeriod: 0,
    });
    await new Promise<void>((resolve, reject) => {
      observer.once('connect', () => resolve());
      observer.once('error', reject);
    });
    observer.on('message', (topic, payload, packet) => {
      if (payload.length === 0) return;
      try {
        seen.push({ topic, doc: JSON.parse(payload.toString()), retain: packet.retain });
      } catch {
        seen.push({ topic, doc: { raw: payload.toString() }, retain: packet.retain });
      }
    });
    await observer.subscribeAsync(
      ['+/gateway/status', '+/gateway/desired/result', '+/devices/+/telemetry', 'fleet-a/gateway/audit'],
      {
        qos: 1,
      },
    );
    for (const p of PREFIXES) gws.set(p, await (homes.get(p) as GatewayHome).start());
  });

  after(async () => {
    await observer?.endAsync();
    await Promise.all([...gws.values()].map((g) => g.stop()));
    await broker?.dispose();
    for (const h of homes.values()) h.dispose();
    pki?.dispose();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('fleet status lists all three, online, with an identity-signed audit head', async () => {
    await waitFor('three births', () =>
      all.every((p) => seen.some((m) => m.topic === `${p}/gateway/status` && m.doc.online === true))
        ? true
        : undefined,
    );
    const r = await status();
    assert.equal(r.code, 0, r.stdout + r.stderr);
    for (const p of all)
      assert.match(
        r.stdout,
        new RegExp(
          `^${p}\\s+online\\s+0\\.\\d+\\.\\d+\\s+0\\s+0\\s+\\d+ met/\\d+ not\\s+\\d+:[0-9a-f]{12}\\s+-\\s+ok$`,
          'm',
        ),
      );
  });

  let v1: string;
  it('a signed profile document to their group is applied by all three and reported', async () => {
    v1 = await sign('v1', 'target: {group: cold}\nspec:\n  labels: {profile: cold-chain-v1}\n', 1);
    const mark = seen.length;
    await publishGroup(v1);
    const results = await waitFor('applied v1', () =>
      resultsFrom(all, mark, (d) => d.status === 'applied' && d.version === 1),
    );
    for (const d of results.values()) assert.equal(d.scope, 'group:cold');
    const v2 = await sign('v2', 'target: {group: cold}\nspec:\n  labels: {profile: cold-chain-v2}\n', 2);
    const mark2 = seen.length;
    await publishGroup(v2);
    await waitFor('applied v2', () =>
      resultsFrom(all, mark2, (d) => d.status === 'applied' && d.version === 2),
    );
    // Reported: the retained state names the applied version and the profile, on every gateway.
    await waitFor('states report v2', async () => {
      const rows = await statusJson();
      const ok = all.every((p) => {
        const st = rows.find((r) => r.prefix === p)?.state;
        return (
          st?.fleet.labels.profile === 'cold-chain-v2' &&
          st.fleet.applied.some((a) => a.scope === 'group:cold' && a.version === 2)
        );
      });
      return ok ? true : undefined;
    });
    const table = await status();
    for (const p of all) assert.match(table.stdout, new RegExp(`^${p}\\s.*group:cold@2\\s+ok$`, 'm'));
  });

  /** Publishes a bad document and expects every gateway to refuse it with `code`. */
  async function refusedByAll(file: string | Buffer, code: string) {
    const mark = seen.length;
    if (typeof file === 'string') await publishGroup(file);
    else await observer.publishAsync('fleet/groups/cold/desired', file, { qos: 1, retain: true });
    const results = await waitFor(`${code} from all`, () =>
      resultsFrom(all, mark, (d) => d.status === 'refused'),
    );
    for (const [p, d] of results) assert.equal(d.code, code, `${p}: ${JSON.stringify(d)}`);
  }

  it('tampered, replayed, expired, wrong-key, unsigned, malformed and misrouted documents are refused by all three; a failing one changes nothing', async () => {
    // Tampered: the payload changed after signing (the profile swapped), the signature kept.
    const good = JSON.parse(
      readFileSync(await sign('v3', 'target: {group: cold}\nspec:\n  labels: {profile: ok}\n', 3), 'utf8'),
    );
    const body = JSON.parse(Buffer.from(good.payload, 'base64').toString());
    body.spec.labels.profile = 'evil';
    body.spec.devices.decommission = ['sensor-x'];
    writeFileSync(
      join(dir, 'tampered.signed'),
      JSON.stringify({ ...good, payload: Buffer.from(JSON.stringify(body)).toString('base64') }),
    );
    await refusedByAll(join(dir, 'tampered.signed'), 'ERR_FLEET_BAD_SIGNATURE');
    // Replayed: version 1, validly signed and unexpired, after version 2.
    await refusedByAll(v1, 'ERR_FLEET_REPLAYED');
    // Expired.
    await refusedByAll(
      await sign(
        'expired',
        'target: {group: cold}\nspec: {}\n',
        5,
        new Date(Date.now() - 60_000).toISOString(),
      ),
      'ERR_FLEET_EXPIRED',
    );
    // Signed by a key that is not the pinned one.
    assert.equal((await fleet('keygen', 'other')).code, 0);
    await refusedByAll(
      await sign('wrongkey', 'target: {group: cold}\nspec: {}\n', 6, '1h', 'other/operator.key'),
      'ERR_FLEET_UNKNOWN_KEY',
    );
    // Unsigned; and not a document at all (published around the CLI, which would refuse to send it).
    const { signature: _dropped, ...unsigned } = good;
    writeFileSync(join(dir, 'unsigned.signed'), JSON.stringify(unsigned));
    await refusedByAll(join(dir, 'unsigned.signed'), 'ERR_FLEET_UNSIGNED');
    await refusedByAll(Buffer.from('{"format":"something else"'), 'ERR_FLEET_MALFORMED');
    // Addressed to one gateway, replayed onto the group's topic.
    await refusedByAll(
      await sign('misrouted', 'target: {gateway: fleet-a}\nspec: {}\n', 5),
      'ERR_FLEET_NOT_FOR_ME',
    );
    // All or nothing: a valid document whose last change fails leaves its first change (the profile) undone too.
    await refusedByAll(
      await sign(
        'half',
        'target: {group: cold}\nspec:\n  labels: {profile: half-applied}\n  devices:\n    quarantine: [{id: no-such-device, reason: test}]\n',
        5,
      ),
      'ERR_IDENTITY_NOT_FOUND',
    );
    // None of it changed anything: still version 2 and its profile.
    const rows = await statusJson();
    for (const p of all) {
      const st = rows.find((r) => r.prefix === p)?.state;
      assert.equal(st?.fleet.labels.profile, 'cold-chain-v2');
      assert.deepEqual(
        st?.fleet.applied.map((a) => a.version),
        [2],
      );
    }
    // Each refusal is in the audit log, under 'fleet' (a refused document's key id is only claimed).
    const audit = await (homes.get('fleet-a') as GatewayHome).cli(['audit', 'export', '--format', 'jsonl']);
    const refusals = audit
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
      .filter((e) => e.action === 'fleet.refuse');
    assert.deepEqual(
      refusals.map((e) => e.details.code),
      [
        'ERR_FLEET_BAD_SIGNATURE',
        'ERR_FLEET_REPLAYED',
        'ERR_FLEET_EXPIRED',
        'ERR_FLEET_UNKNOWN_KEY',
        'ERR_FLEET_UNSIGNED',
        'ERR_FLEET_MALFORMED',
        'ERR_FLEET_NOT_FOR_ME',
        'ERR_IDENTITY_NOT_FOUND',
      ],
    );
    assert.ok(refusals.every((e) => e.actor === 'fleet'));
  });

  it('a PSK device added remotely (sealed with HPKE to each gateway) works end to end with coap-client-openssl', async () => {
    const recipients = await fleet('status', ...brokerArgs(), '--known', known, '--wait', '1500', '--json');
    assert.equal(recipients.code, 0, recipients.stderr);
    writeFileSync(join(dir, 'recipients.json'), recipients.stdout);
    const PSK_TEXT = 'remote-sensor-key-0042';
    const file = await sign(
      'v7',
      `target: {group: cold}\nspec:\n  labels: {profile: cold-chain-v2}\n  devices:\n    add:\n      - {id: remote-1, pskIdentity: remote-1, pskText: ${PSK_TEXT}}\n`,
      7,
      '1h',
      'keys/operator.key',
      ['--recipients', join(dir, 'recipients.json')],
    );
    // Never in clear on the broker: neither as text nor as hex.
    const signed = readFileSync(file, 'utf8');
    const payload = Buffer.from(JSON.parse(signed).payload, 'base64').toString();
    for (const s of [signed, payload]) {
      assert.ok(!s.includes(PSK_TEXT) && !s.includes(Buffer.from(PSK_TEXT).toString('hex')));
    }
    assert.equal(JSON.parse(payload).spec.devices.add[0].psk.length, 3, 'sealed once per gateway');
    const mark = seen.length;
    await publishGroup(file);
    await waitFor('applied v7', () =>
      resultsFrom(all, mark, (d) => d.status === 'applied' && d.version === 7),
    );
    const home = homes.get('fleet-b') as GatewayHome;
    const r = await coapClientPost(
      home.dtlsPort,
      { identity: 'remote-1', key: PSK_TEXT },
      'reading from remote-1',
    );
    assert.equal(r.code, 0, r.stderr);
    await waitFor('the reading at the broker', () =>
      seen.find((m) => m.topic === 'fleet-b/devices/remote-1/telemetry') ? true : undefined,
    );
    // A wrong key still gets nowhere.
    const bad = await coapClientPost(
      home.dtlsPort,
      { identity: 'remote-1', key: 'not-the-key-at-all-00' },
      'x',
      ['-B', '2'],
    );
    assert.ok(!seen.some((m) => m.topic.endsWith('/telemetry') && JSON.stringify(m.doc).includes('"x"')));
    void bad;
    // Audited as the operator's key, with no key material.
    const audit = await home.cli(['audit', 'export', '--format', 'jsonl']);
    const add = audit
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
      .find((e) => e.action === 'device.add' && e.target === 'remote-1');
    assert.match(add?.actor ?? '', /^fleet:[0-9a-f]{16}$/);
    assert.ok(!audit.includes(PSK_TEXT) && !audit.includes(Buffer.from(PSK_TEXT).toString('hex')));
  });

  it('a gateway that was offline when the document was published applies the retained document when back', async () => {
    const c = gws.get('fleet-c') as RunningGateway;
    assert.equal(await c.stop(), 0);
    await waitFor('fleet-c offline (stopped)', () =>
      seen.find(
        (m) => m.topic === 'fleet-c/gateway/status' && m.doc.online === false && m.doc.cause === 'stopped',
      )
        ? true
        : undefined,
    );
    const file = await sign('v8', 'target: {group: cold}\nspec:\n  labels: {profile: cold-chain-v3}\n', 8);
    const mark = seen.length;
    await publishGroup(file);
    await waitFor('applied v8 on a and b', () =>
      resultsFrom(['fleet-a', 'fleet-b'], mark, (d) => d.status === 'applied' && d.version === 8),
    );
    assert.equal(
      resultsFrom(['fleet-c'], mark, () => true),
      undefined,
    );
    gws.set('fleet-c', await (homes.get('fleet-c') as GatewayHome).start());
    await waitFor('applied v8 on c', () =>
      resultsFrom(['fleet-c'], mark, (d) => d.status === 'applied' && d.version === 8),
    );
  });

  it('a SIGKILLed gateway is shown offline through its Will (fleet status, fleet watch)', async () => {
    // The operator watching: fleet watch prints the Will as it arrives.
    const watch = spawnCli(['fleet', 'watch', ...brokerArgs(), '--count', '1'], { cwd: dir });
    let watched = '';
    watch.stdout?.on('data', (d: Buffer) => {
      watched += d.toString();
    });
    const watchExit = once(watch, 'exit');
    await new Promise<void>((resolve, reject) => {
      let err = '';
      watch.stderr?.on('data', (d: Buffer) => {
        err += d.toString();
        if (err.includes('watching')) resolve();
      });
      watch.once('exit', () => reject(new Error(`fleet watch exited: ${err}`)));
    });
    const mark = seen.length;
    await (gws.get('fleet-b') as RunningGateway).kill();
    gws.delete('fleet-b'); // gone: nothing to stop in after()
    await waitFor('the Will', () =>
      seen
        .slice(mark)
        .find((m) => m.topic === 'fleet-b/gateway/status' && m.doc.online === false && m.doc.cause === 'will')
        ? true
        : undefined,
    );
    await watchExit;
    assert.match(watched, /fleet-b\/gateway\/status \{.*"online":false.*"cause":"will"/);
    const r = await status();
    assert.match(r.stdout, /^fleet-b\s+OFFLINE \(will\)/m);
    assert.match(r.stdout, /^fleet-a\s+online/m);
  });

  it('the signed audit head lets fleet status detect a truncated audit log on one gateway', async () => {
    // The known file holds fleet-c's highest signed head from the runs above.
    const before = JSON.parse(readFileSync(known, 'utf8'))['fleet-c'].audit.seq as number;
    assert.ok(before > 6, `fleet-c's known head is at ${before}`);
    const home = homes.get('fleet-c') as GatewayHome;
    assert.equal(await (gws.get('fleet-c') as RunningGateway).stop(), 0);
    // Someone with the SD card of a software-keystore gateway: the key and counter are on it, so the head is
    // re-keyed and the checkpoints past the cut removed; locally nothing shows (docs/audit.md says so).
    const config = resolveConfig(home.config).config;
    const keystore = openKeystore(config);
    const key = keystore.deriveKey(AUDIT_HEAD_KEY_PURPOSE);
    const counter = keystore.auditCounter().open().value;
    const d = new Database(join(config.dataDir, 'portcullis.db'));
    d.exec('DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete;');
    d.prepare('DELETE FROM audit_log WHERE seq > 3').run();
    d.prepare('DELETE FROM audit_checkpoints WHERE seq > 3').run();
    const last = d.prepare('SELECT seq, hash FROM audit_log WHERE seq = 3').get() as {
      seq: number;
      hash: string;
    };
    d.prepare('UPDATE audit_head SET seq = ?, hash = ?, counter = ?, mac = ? WHERE id = 1').run(
      last.seq,
      last.hash,
      counter,
      headMac(key, last.seq, last.hash, counter),
    );
    d.close();
    const local = await runCli(['--config', home.config, 'audit', 'verify'], { cwd: home.dir });
    assert.equal(local.code, 0, `locally undetected: ${local.stderr}`);
    const mark = seen.length;
    gws.set('fleet-c', await home.start());
    await waitFor('fleet-c back', () =>
      seen.slice(mark).find((m) => m.topic === 'fleet-c/gateway/status' && m.doc.online === true)
        ? true
        : undefined,
    );
    const r = await waitFor('fleet status sees the truncation', async () => {
      const x = await status();
      return /PROBLEM/.test(x.stdout) ? x : undefined;
    });
    assert.equal(r.code, 1);
    assert.match(
      r.stdout,
      new RegExp(
        `^fleet-c\\s.*PROBLEM: audit log truncated: the signed head is at entry \\d+, but this gateway signed entry ${before}`,
        'm',
      ),
    );
    assert.match(r.stdout, /^fleet-a\s.*\sok$/m);
  });

  async function publishTo(prefix: Prefix, file: string) {
    const r = await fleet('publish', ...brokerArgs(), '--gateway', prefix, file);
    assert.equal(r.code, 0, r.stderr);
  }
  const resultOf = async (prefix: Prefix, mark: number) =>
    (await waitFor(`result from ${prefix}`, () => resultsFrom([prefix], mark, () => true))).get(
      prefix,
    ) as Record<string, unknown>;

  it('rotation: a document signed with the old key pins the new one; the old key is refused from then on', async () => {
    assert.equal((await fleet('keygen', 'next')).code, 0);
    const pub = readFileSync(join(dir, 'next', 'operator.pub'), 'utf8');
    const rotate = await sign(
      'rotate',
      `target: {gateway: fleet-a}\nspec:\n  rotateOperatorKey: |\n${pub
        .trimEnd()
        .split('\n')
        .map((l) => `    ${l}`)
        .join('\n')}\n`,
      1,
    );
    let mark = seen.length;
    await publishTo('fleet-a', rotate);
    assert.equal((await resultOf('fleet-a', mark)).status, 'applied');
    mark = seen.length;
    await publishTo('fleet-a', await sign('old-after-rotation', 'target: {gateway: fleet-a}\nspec: {}\n', 2));
    assert.equal((await resultOf('fleet-a', mark)).code, 'ERR_FLEET_UNKNOWN_KEY');
    // A policy profile the gateway does not have: refused whole.
    mark = seen.length;
    await publishTo(
      'fleet-a',
      await sign(
        'nope',
        'target: {gateway: fleet-a}\nspec:\n  policy: [{device: remote-1, profile: nope}]\n',
        2,
        '1h',
        'next/operator.key',
      ),
    );
    assert.equal((await resultOf('fleet-a', mark)).code, 'ERR_POLICY_PROFILE_NOT_FOUND');
    // The new key signs a remote quarantine and a policy profile: applied, audited under the new key's id.
    mark = seen.length;
    const q = await sign(
      'quarantine',
      'target: {gateway: fleet-a}\nspec:\n  policy: [{device: remote-1, profile: cold}]\n  devices:\n    quarantine: [{id: remote-1, reason: fleet test}]\n',
      2,
      '1h',
      'next/operator.key',
    );
    await publishTo('fleet-a', q);
    const r = await waitFor('quarantine applied', () =>
      resultsFrom(['fleet-a'], mark, (d) => d.status === 'applied' && d.version === 2),
    );
    const newKeyId = r.get('fleet-a')?.keyId as string;
    const audit = await (homes.get('fleet-a') as GatewayHome).cli(['audit', 'export', '--format', 'jsonl']);
    const entry = audit
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
      .find((e) => e.action === 'device.quarantine' && e.target === 'remote-1');
    assert.equal(entry?.actor, `fleet:${newKeyId}`);
    const policy = audit
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
      .find((e) => e.action === 'device.policy' && e.target === 'remote-1');
    assert.equal(policy?.actor, `fleet:${newKeyId}`);
    assert.equal(policy?.details.profile, 'cold');
    const shown = await (homes.get('fleet-a') as GatewayHome).cli(['device', 'show', 'remote-1']);
    assert.match(shown, /quarantined/);
  });

  it('the local fleet lock refuses remote documents until it is lifted', async () => {
    const home = homes.get('fleet-a') as GatewayHome;
    await home.cli(['fleet', 'lock']);
    assert.match(await home.cli(['fleet', 'show']), /fleet lock: SET by cli:/);
    const doc = await sign(
      'release',
      'target: {gateway: fleet-a}\nspec:\n  devices:\n    release: [remote-1]\n',
      3,
      '1h',
      'next/operator.key',
    );
    let mark = seen.length;
    await publishTo('fleet-a', doc);
    assert.equal((await resultOf('fleet-a', mark)).code, 'ERR_FLEET_LOCKED');
    assert.match(await home.cli(['device', 'show', 'remote-1']), /quarantined/);
    await home.cli(['fleet', 'unlock']);
    mark = seen.length;
    await publishTo('fleet-a', doc);
    assert.equal((await resultOf('fleet-a', mark)).status, 'applied');
    assert.doesNotMatch(await home.cli(['device', 'show', 'remote-1']), /quarantined/);
    const shown = await home.cli(['fleet', 'show']);
    assert.match(shown, /fleet lock: not set/);
    assert.match(shown, /rotated to [0-9a-f]{16}/);
    assert.match(shown, /applied: gateway version 3 by [0-9a-f]{16}/);
    assert.match(shown, /applied: group:cold version 8 .*\(profile=cold-chain-v3\)/);
  });

  it('the audit stream: entries in batches through the queue, resumed after the last acknowledged one', async () => {
    const batches = () =>
      seen
        .filter((m) => m.topic === 'fleet-a/gateway/audit')
        .map((m) => m.doc as { from: number; to: number; entries: Array<{ seq: number; action: string }> });
    const seqs = new Set(batches().flatMap((b) => b.entries.map((e) => e.seq)));
    const top = Math.max(...seqs);
    for (let i = 1; i <= top; i++) assert.ok(seqs.has(i), `entry ${i} was streamed`);
    assert.ok(batches().some((b) => b.entries.some((e) => e.action === 'fleet.apply')));
    const acked = top - 2;
    await observer.publishAsync('fleet-a/gateway/audit/ack', JSON.stringify({ seq: acked }), { qos: 1 });
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(await (gws.get('fleet-a') as RunningGateway).stop(), 0);
    const mark = seen.length;
    gws.set('fleet-a', await (homes.get('fleet-a') as GatewayHome).start());
    await waitFor('a batch resuming after the acknowledged entry', () =>
      seen
        .slice(mark)
        .some((m) => m.topic === 'fleet-a/gateway/audit' && (m.doc as { from: number }).from === acked + 1)
        ? true
        : undefined,
    );
  });
});
