/**
 * What a desired-state document can carry beyond devices and labels, each through the same service method the
 * CLI and UI use, applied all or nothing and audited as `fleet:<key-id>`: new policy profiles (and the data
 * path enforcing one), MUD allow-lists, firmware campaigns, and a gateway update (bundle URL and hash, its own
 * release signature still checked). One real gateway, one mosquitto with mutual TLS, the operator through the
 * real `portcullis fleet` command; every positive case beside its refusal.
 */
import assert from 'node:assert/strict';
import { createHash, sign as edSign, generateKeyPairSync, randomBytes } from 'node:crypto';
import {
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import mqtt from 'mqtt';
import { runCli } from './helpers/cli.ts';
import { type GatewayHome, makeGatewayHome, type RunningGateway } from './helpers/gateway.ts';
import { type Broker, startBroker } from './helpers/mosquitto.ts';
import { coapClientPost } from './helpers/peers.ts';
import { makePki, type TestPki } from './helpers/pki.ts';

const PREFIX = 'fd';
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('fleet documents: profiles, allow-lists, firmware campaigns, gateway updates', () => {
  let pki: TestPki;
  let broker: Broker;
  let dir: string;
  let home: GatewayHome;
  let gw: RunningGateway;
  let observer: mqtt.MqttClient;
  const results: Array<Record<string, unknown>> = [];
  const telemetry: string[] = [];
  type State = { fleet: { profiles: string[]; lastRefused: { code: string } | null } };
  const states: State[] = [];
  let version = 0;
  const releases = () => join(dir, 'releases');
  const current = () => join(dir, 'current');

  const fleet = (...args: string[]) => runCli(['fleet', ...args], { cwd: dir });
  const cli = (...args: string[]) => runCli(['--config', home.config, ...args], { cwd: home.dir });
  const audit = async () =>
    (await home.cli(['audit', 'export', '--format', 'jsonl']))
      .trim()
      .split('\n')
      .map(
        (l) =>
          JSON.parse(l) as {
            actor: string;
            action: string;
            target: string;
            details: Record<string, unknown>;
          },
      );

  /** Signs `spec` (YAML lines) for this gateway, publishes it, and returns the gateway's answer. */
  async function send(specLines: string[], extra: string[] = []): Promise<Record<string, unknown>> {
    version += 1;
    const name = `doc-${version}`;
    writeFileSync(
      join(dir, `${name}.yaml`),
      [`target: {gateway: ${PREFIX}}`, 'spec:', ...specLines, ''].join('\n'),
    );
    const out = join(dir, `${name}.signed`);
    const s = await fleet(
      'sign',
      `${name}.yaml`,
      '--key',
      'keys/operator.key',
      '--doc-version',
      String(version),
      '--expires',
      '1h',
      '--out',
      out,
      ...extra,
    );
    assert.equal(s.code, 0, s.stderr);
    const mark = results.length;
    const p = await fleet(
      'publish',
      '--broker',
      broker.url,
      '--ca',
      pki.caPath,
      '--cert',
      pki.client.certPath,
      '--key',
      pki.client.keyPath,
      '--gateway',
      PREFIX,
      out,
    );
    assert.equal(p.code, 0, p.stderr);
    const deadline = Date.now() + 30_000;
    for (;;) {
      const r = results.slice(mark).find((d) => d.version === version);
      if (r) return r;
      if (Date.now() > deadline) throw new Error(`no result for version ${version}`);
      await new Promise((res) => setTimeout(res, 50));
    }
  }

  /** The labels in force: a document refused whole leaves its label change undone too. */
  const labels = async () =>
    (
      JSON.parse(await home.cli(['fleet', 'show', '--json'])) as {
        applied: Array<{ labels: Record<string, string> }>;
      }
    ).applied[0]?.labels ?? {};

  before(async () => {
    pki = makePki();
    broker = await startBroker({ caPath: pki.caPath, server: pki.broker });
    dir = mkdtempSync(join(tmpdir(), 'portcullis-fleetdoc-'));
    assert.equal((await fleet('keygen', 'keys')).code, 0);
    // The release the gateway runs now, and the release key its updates must be signed with.
    mkdirSync(join(releases(), '0.1.0', 'bin'), { recursive: true });
    writeFileSync(join(releases(), '0.1.0', 'bin', 'portcullis.js'), "console.log('0.1.0');\n");
    symlinkSync(join(releases(), '0.1.0'), current());
    for (const name of ['release', 'other']) {
      const k = generateKeyPairSync('ed25519');
      writeFileSync(join(dir, `${name}.pem`), k.privateKey.export({ type: 'pkcs8', format: 'pem' }), {
        mode: 0o600,
      });
      writeFileSync(join(dir, `${name}.pub.pem`), k.publicKey.export({ type: 'spki', format: 'pem' }));
    }
    home = await makeGatewayHome(pki, broker, 'gw-fd', {
      topicPrefix: PREFIX,
      extraConfig: [
        'fleet:',
        `  operatorKeyFile: ${join(dir, 'keys', 'operator.pub')}`,
        '  stateDebounceSeconds: 0.2',
        '  update: {allowFileUrls: true, maxBundleBytes: 1048576}',
        `updates: {publicKeyFile: ${join(dir, 'release.pub.pem')}, releasesDir: ${releases()}, currentLink: ${current()}, healthDeadlineSeconds: 20}`,
        'policy: {profiles: {local: {maxPayloadBytes: 512}}}',
      ],
    });
    await home.cli([
      'device',
      'add',
      'thermo-1',
      '--psk-identity',
      'thermo-1',
      '--psk-text',
      'thermo-1-key-0123456',
      '--type',
      'thermo',
    ]);
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
    observer.on('message', (topic, payload) => {
      if (payload.length === 0) return;
      if (topic.endsWith('/telemetry')) telemetry.push(payload.toString());
      else if (topic.endsWith('/gateway/state')) states.push(JSON.parse(payload.toString()) as State);
      else results.push(JSON.parse(payload.toString()) as Record<string, unknown>);
    });
    await observer.subscribeAsync(
      [`${PREFIX}/gateway/desired/result`, `${PREFIX}/devices/+/telemetry`, `${PREFIX}/gateway/state`],
      {
        qos: 1,
      },
    );
    gw = await home.start();
  });

  after(async () => {
    await observer?.endAsync();
    await gw?.stop();
    await broker?.dispose();
    home?.dispose();
    pki?.dispose();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('defines a policy profile, assigns it in the same document, and the data path enforces it', async () => {
    const r = await send([
      '  labels: {step: profiles}',
      '  profiles:',
      '    small: {maxPayloadBytes: 32}',
      '  policy: [{device: thermo-1, profile: small}]',
    ]);
    assert.equal(r.status, 'applied', JSON.stringify(r));
    const shown = JSON.parse((await cli('policy', 'show', 'thermo-1', '--json')).stdout);
    assert.equal(shown.profile, 'small');
    assert.equal(shown.fields.maxPayloadBytes, 32);
    const entries = await audit();
    const define = entries.find((e) => e.action === 'policy.profile.define' && e.target === 'small');
    assert.match(define?.actor ?? '', /^fleet:[0-9a-f]{16}$/);
    // The running gateway took the new profile: a short reading passes, a long one is refused.
    const ok = await coapClientPost(
      home.dtlsPort,
      { identity: 'thermo-1', key: 'thermo-1-key-0123456' },
      '{"t":4.5}',
    );
    assert.equal(ok.code, 0, ok.stderr);
    const long = JSON.stringify({ t: 4.5, note: 'x'.repeat(80) });
    await coapClientPost(home.dtlsPort, { identity: 'thermo-1', key: 'thermo-1-key-0123456' }, long, [
      '-B',
      '3',
    ]);
    const deadline = Date.now() + 10_000;
    while (!telemetry.includes('{"t":4.5}') && Date.now() < deadline)
      await new Promise((res) => setTimeout(res, 50));
    assert.ok(telemetry.includes('{"t":4.5}'), 'the short reading reached the broker');
    assert.ok(!telemetry.includes(long), 'the reading over the fleet-defined limit did not');
  });

  it('refuses a document redefining a profile of the local configuration, or an invalid one, whole', async () => {
    let r = await send([
      '  labels: {step: local-profile}',
      '  profiles:',
      '    local: {maxPayloadBytes: 1048576}',
    ]);
    assert.equal(r.code, 'ERR_POLICY_PROFILE_LOCAL', JSON.stringify(r));
    r = await send(['  labels: {step: bad-profile}', '  profiles:', '    broken: {maxPayloadBytes: -1}']);
    assert.equal(r.code, 'ERR_POLICY_PROFILE_INVALID', JSON.stringify(r));
    r = await send(['  profiles:', '    bad-schema: {schema: {type: 12}}']);
    assert.equal(r.code, 'ERR_POLICY_SCHEMA_INVALID', JSON.stringify(r));
    assert.deepEqual(await labels(), { step: 'profiles' });
    // Still the fleet's 32-byte profile, in a separate CLI process too (read from the store).
    writeFileSync(join(dir, 'long.txt'), 'x'.repeat(100));
    const p = await cli(
      'policy',
      'test',
      '--device',
      'thermo-1',
      '--method',
      'POST',
      '--resource',
      '/telemetry',
      '--payload',
      join(dir, 'long.txt'),
    );
    assert.equal(p.code, 1, p.stdout + p.stderr);
  });

  it('imports a MUD allow-list through the segmentation service; a MUD for an unknown device or a malformed one changes nothing', async () => {
    const mud = JSON.parse(readFileSync(join(import.meta.dirname, 'fixtures', 'mud', 'thermo.json'), 'utf8'));
    writeFileSync(join(dir, 'mud.json'), JSON.stringify(mud));
    const line = `  allowLists: [{device: thermo-1, mud: ${JSON.stringify(mud)}}]`;
    const r = await send(['  labels: {step: mud}', line]);
    assert.equal(r.status, 'applied', JSON.stringify(r));
    const imported = (await audit()).filter((e) => e.action === 'mud.import' && e.target === 'thermo-1');
    assert.equal(imported.length, 1);
    assert.match(imported[0]?.actor ?? '', /^fleet:[0-9a-f]{16}$/);
    assert.ok((imported[0]?.details.entries as number) > 0);
    let bad = await send(['  labels: {step: mud-unknown}', line.replace('thermo-1', 'no-such-device')]);
    assert.equal(bad.status, 'refused');
    assert.equal(bad.code, 'ERR_SEGMENT_INVALID', JSON.stringify(bad));
    bad = await send([
      '  labels: {step: mud-bad}',
      '  allowLists: [{device: thermo-1, mud: {"ietf-mud:mud": {}}}]',
    ]);
    assert.equal(bad.status, 'refused');
    assert.match(String(bad.code), /^ERR_(MUD|SEGMENT)_/);
    assert.deepEqual(await labels(), { step: 'mud' });
    assert.equal((await audit()).filter((e) => e.action === 'mud.import').length, 1);
  });

  it('adds (PSK sealed to this gateway), decommissions, quarantines and releases devices; a PSK sealed to another gateway, a taken id, an unknown device or a release of an active one refuses the document', async () => {
    await home.cli(['device', 'add', 'spare-1', '--psk-identity', 'spare-1', '--generate-psk']);
    const status = await fleet(
      ...['status', '--broker', broker.url, '--ca', pki.caPath, '--cert', pki.client.certPath],
      ...['--key', pki.client.keyPath, '--known', join(dir, 'known.json'), '--wait', '1500', '--json'],
    );
    assert.equal(status.code, 0, status.stderr);
    writeFileSync(join(dir, 'recipients.json'), status.stdout);
    // The same list with another X25519 key in place of this gateway's: the PSK is sealed to someone else.
    const rows = JSON.parse(status.stdout) as Array<{ state: { hpke: { publicKey: string } } }>;
    for (const r of rows) {
      r.state.hpke.publicKey = generateKeyPairSync('x25519')
        .publicKey.export({ format: 'der', type: 'spki' })
        .subarray(-32)
        .toString('base64');
    }
    writeFileSync(join(dir, 'elsewhere.json'), JSON.stringify(rows));
    const add = (id: string) => [
      '  devices:',
      '    add:',
      `      - {id: ${id}, pskIdentity: ${id}, pskText: remote-key-for-${id}}`,
    ];
    let r = await send(
      ['  labels: {step: sealed-elsewhere}', ...add('remote-x')],
      ['--recipients', join(dir, 'elsewhere.json')],
    );
    assert.equal(r.code, 'ERR_FLEET_SEALED', JSON.stringify(r));
    r = await send(
      ['  labels: {step: taken}', ...add('thermo-1')],
      ['--recipients', join(dir, 'recipients.json')],
    );
    assert.equal(r.status, 'refused');
    assert.match(String(r.code), /^ERR_IDENTITY_/, JSON.stringify(r));
    r = await send(['  labels: {step: unknown}', '  devices: {decommission: [no-such-device]}']);
    assert.equal(r.code, 'ERR_IDENTITY_NOT_FOUND', JSON.stringify(r));
    r = await send([
      '  labels: {step: release-active}',
      '  devices: {decommission: [spare-1], release: [thermo-1]}',
    ]);
    assert.equal(r.code, 'ERR_IDENTITY_STATE', JSON.stringify(r));
    assert.deepEqual(await labels(), { step: 'mud' });
    assert.doesNotMatch(await home.cli(['device', 'show', 'spare-1']), /decommissioned/);
    assert.match(await home.cli(['device', 'list']), /thermo-1/);
    // Now the good ones: an addition sealed to this gateway, a decommission, a quarantine then its release.
    r = await send(
      [
        '  labels: {step: devices}',
        ...add('remote-1'),
        '    decommission: [spare-1]',
        '    quarantine: [{id: thermo-1, reason: checked}]',
      ],
      ['--recipients', join(dir, 'recipients.json')],
    );
    assert.equal(r.status, 'applied', JSON.stringify(r));
    assert.match(await home.cli(['device', 'show', 'spare-1']), /decommissioned/);
    assert.match(await home.cli(['device', 'show', 'thermo-1']), /quarantined/);
    r = await send(['  labels: {step: devices}', '  devices: {release: [thermo-1]}']);
    assert.equal(r.status, 'applied', JSON.stringify(r));
    assert.doesNotMatch(await home.cli(['device', 'show', 'thermo-1']), /quarantined/);
    const entries = await audit();
    for (const action of ['device.add', 'device.decommission', 'device.quarantine', 'device.release']) {
      const e = entries.find((x) => x.action === action && x.actor.startsWith('fleet:'));
      assert.ok(e, `${action} audited under the operator key`);
    }
    assert.ok(!entries.some((e) => e.action === 'device.add' && e.target === 'remote-x'));
  });

  it('starts a firmware campaign over an image on the gateway; an unknown image refuses the document', async () => {
    const vendor = generateKeyPairSync('ed25519');
    writeFileSync(join(dir, 'vendor.pub'), vendor.publicKey.export({ type: 'spki', format: 'pem' }));
    await home.cli([
      'firmware',
      'vendor',
      'add',
      '--vendor',
      'acme',
      '--class',
      'thermo',
      '--key',
      join(dir, 'vendor.pub'),
    ]);
    const image = randomBytes(2048);
    const manifest = Buffer.from(
      JSON.stringify({
        vendor: 'acme',
        class: 'thermo',
        version: '2.0.0',
        digest: sha(image),
        size: image.length,
        severity: 5,
      }),
    );
    writeFileSync(join(dir, 'fw.bin'), image);
    writeFileSync(join(dir, 'fw.json'), manifest);
    writeFileSync(join(dir, 'fw.sig'), edSign(null, manifest, vendor.privateKey).toString('base64'));
    await home.cli([
      'firmware',
      'upload',
      '--image',
      join(dir, 'fw.bin'),
      '--manifest',
      join(dir, 'fw.json'),
      '--signature',
      join(dir, 'fw.sig'),
    ]);
    const missing = await send([
      '  labels: {step: fw-missing}',
      '  firmware:',
      `    campaigns: [{image: "${'0'.repeat(64)}"}]`,
    ]);
    assert.equal(missing.code, 'ERR_FIRMWARE_NOT_FOUND', JSON.stringify(missing));
    assert.equal((await audit()).filter((e) => e.action === 'firmware.campaign.create').length, 0);
    const r = await send([
      '  labels: {step: fw}',
      '  firmware:',
      `    campaigns: [{image: "${sha(image)}", settings: {canaryPercent: 100}}]`,
    ]);
    assert.equal(r.status, 'applied', JSON.stringify(r));
    const created = (await audit()).find((e) => e.action === 'firmware.campaign.create');
    assert.match(created?.actor ?? '', /^fleet:[0-9a-f]{16}$/);
    assert.equal(created?.details.devices, 1);
    assert.match(await home.cli(['firmware', 'list']), /2\.0\.0/);
    vendorKey = vendor.privateKey;
  });

  let vendorKey: ReturnType<typeof generateKeyPairSync>['privateKey'];
  it('fetches a firmware image by URL (its vendor-signed manifest in the document) and starts a campaign over it; other bytes or another signer refuse the document and store nothing', async () => {
    const image = randomBytes(4096);
    const manifest = Buffer.from(
      JSON.stringify({
        vendor: 'acme',
        class: 'thermo',
        version: '2.1.0',
        digest: sha(image),
        size: image.length,
        severity: 8,
      }),
    );
    const file = join(dir, 'fw-2.1.0.bin');
    writeFileSync(file, image);
    const lines = (url: string, signature: string) => [
      '  firmware:',
      `    images: [{url: "${url}", manifest: "${manifest.toString('base64')}", signature: "${signature}"}]`,
      `    campaigns: [{image: "${sha(image)}", settings: {canaryPercent: 100}}]`,
    ];
    const good = edSign(null, manifest, vendorKey).toString('base64');
    // Bytes that are not the ones the manifest's digest names.
    const other = join(dir, 'fw-other.bin');
    writeFileSync(other, randomBytes(4096));
    let r = await send(['  labels: {step: fw-bytes}', ...lines(pathToFileURL(other).href, good)]);
    assert.equal(r.code, 'ERR_FLEET_FETCH_HASH', JSON.stringify(r));
    // The right bytes, but the manifest signed by a key that is not the vendor's on record.
    const stranger = generateKeyPairSync('ed25519').privateKey;
    r = await send([
      '  labels: {step: fw-signer}',
      ...lines(pathToFileURL(file).href, edSign(null, manifest, stranger).toString('base64')),
    ]);
    assert.equal(r.code, 'ERR_FIRMWARE_SIGNATURE', JSON.stringify(r));
    assert.doesNotMatch(await home.cli(['firmware', 'list']), /2\.1\.0/);
    // As an operator writes it: the manifest and signature by file, `fleet sign` puts their contents in.
    writeFileSync(join(dir, 'fw-2.1.0.json'), manifest);
    writeFileSync(join(dir, 'fw-2.1.0.sig'), `${good}\n`);
    r = await send([
      '  labels: {step: fw-url}',
      '  firmware:',
      `    images: [{url: "${pathToFileURL(file).href}", manifestFile: fw-2.1.0.json, signatureFile: fw-2.1.0.sig}]`,
      `    campaigns: [{image: "${sha(image)}", settings: {canaryPercent: 100}}]`,
    ]);
    assert.equal(r.status, 'applied', JSON.stringify(r));
    const entries = await audit();
    const upload = entries.find((e) => e.action === 'firmware.upload' && e.details.version === '2.1.0');
    assert.match(upload?.actor ?? '', /^fleet:[0-9a-f]{16}$/);
    const campaign = entries.filter((e) => e.action === 'firmware.campaign.create').at(-1);
    assert.equal(campaign?.details.version, '2.1.0');
    assert.match(await home.cli(['firmware', 'list']), /2\.1\.0/);
  });

  async function bundle(version: string, key = 'release.pem'): Promise<{ path: string; sha256: string }> {
    const src = join(dir, `src-${version}`);
    mkdirSync(join(src, 'bin'), { recursive: true });
    writeFileSync(join(src, 'bin', 'portcullis.js'), `console.log('${version}');\n`);
    const out = join(dir, `bundle-${version}-${key}.tar`);
    const r = await cli(
      'update',
      'build',
      '--source',
      src,
      '--release',
      version,
      '--min-version',
      '0.1.0',
      '--hardware',
      'x64,arm64',
      '--notes',
      `release ${version}`,
      '--key',
      join(dir, key),
      '--out',
      out,
    );
    assert.equal(r.code, 0, r.stderr);
    return { path: out, sha256: sha(readFileSync(out)) };
  }
  const updateLines = (url: string, sha256: string) => [`  update: {url: "${url}", sha256: "${sha256}"}`];

  it('refuses updates whose URL is not https/file, whose bytes do not hash as signed, that are too big, or whose release signature fails — nothing installed', async () => {
    const good = await bundle('0.2.0');
    const url = pathToFileURL(good.path).href;
    const refused = async (lines: string[], code: string) => {
      const r = await send(['  labels: {step: bad-update}', ...lines]);
      assert.equal(r.status, 'refused');
      assert.equal(r.code, code, JSON.stringify(r));
    };
    await refused(updateLines(`http://127.0.0.1:1/b.tar`, good.sha256), 'ERR_FLEET_FETCH_URL');
    // Hash first: a bundle that is not the signed one is never opened.
    await refused(updateLines(url, sha(Buffer.from('another bundle'))), 'ERR_FLEET_FETCH_HASH');
    const big = join(dir, 'big.tar');
    writeFileSync(big, randomBytes(1024 * 1024 + 1));
    await refused(updateLines(pathToFileURL(big).href, sha(readFileSync(big))), 'ERR_FLEET_FETCH_SIZE');
    // The operator key signed the right hash, but the bundle is not signed by the pinned release key.
    const mis = await bundle('0.2.0', 'other.pem');
    await refused(updateLines(pathToFileURL(mis.path).href, mis.sha256), 'ERR_UPDATE_SIGNATURE');
    assert.equal(readlinkSync(current()), join(releases(), '0.1.0'));
    assert.deepEqual(await labels(), { step: 'fw-url' });
    // The operator's side: a bundle file whose hash is not the one written beside it is not signed at all.
    writeFileSync(
      join(dir, 'mismatch.yaml'),
      `target: {gateway: ${PREFIX}}\nspec:\n  update: {url: "${url}", file: "${good.path}", sha256: "${'1'.repeat(64)}"}\n`,
    );
    const s = await fleet(
      'sign',
      'mismatch.yaml',
      '--key',
      'keys/operator.key',
      '--doc-version',
      '99',
      '--expires',
      '1h',
    );
    assert.notEqual(s.code, 0);
    assert.match(s.stderr, /ERR_FLEET_USAGE.*not the SHA-256 of update\.file/);
    assert.ok(!(await audit()).some((e) => e.action === 'update.install'));
  });

  it('installs a gateway update whose hash and release signature check out, audited under the operator key', async () => {
    const good = await bundle('0.3.0');
    const r = await send([
      '  labels: {step: update}',
      // The bundle by file: `fleet sign` writes its SHA-256 into the document.
      `  update: {url: "${pathToFileURL(good.path).href}", file: "${good.path}"}`,
    ]);
    assert.equal(r.status, 'applied', JSON.stringify(r));
    assert.deepEqual(r.update, { status: 'installed', version: '0.3.0' });
    assert.equal(readlinkSync(current()), join(releases(), '0.3.0'));
    const install = (await audit()).find((e) => e.action === 'update.install');
    assert.match(install?.actor ?? '', /^fleet:[0-9a-f]{16}$/);
    assert.equal(install?.target, '0.3.0');
    // The same bundle again (a new document): below the version floor now.
    const again = await send([
      '  labels: {step: update-again}',
      ...updateLines(pathToFileURL(good.path).href, good.sha256),
    ]);
    assert.equal(again.code, 'ERR_UPDATE_DOWNGRADE', JSON.stringify(again));
  });

  it('reports the defined profiles and the last refusal in the state and in fleet show', async () => {
    const deadline = Date.now() + 10_000;
    let last: State | undefined;
    while (Date.now() < deadline) {
      last = states.at(-1);
      if (last?.fleet.lastRefused?.code === 'ERR_UPDATE_DOWNGRADE') break;
      await new Promise((res) => setTimeout(res, 100));
    }
    assert.deepEqual(last?.fleet.profiles, ['small']);
    assert.equal(last?.fleet.lastRefused?.code, 'ERR_UPDATE_DOWNGRADE');
    const shown = await home.cli(['fleet', 'show']);
    assert.match(shown, /profiles defined by documents: small/);
    assert.match(
      shown,
      /refused: gateway version \d+ at .*: ERR_UPDATE_DOWNGRADE release 0\.3\.0 is not newer/,
    );
  });
});
