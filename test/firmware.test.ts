/**
 * Sensor firmware: images verified against vendor-signed manifests and stored once; campaigns with a canary
 * stage, pause/resume, windows and an automatic halt at the failure threshold (50 simulated sensors); and the
 * real path — libcoap's client fetching a 200 KB image block-wise over DTLS through a running gateway.
 */
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type E2e, startE2e, stopE2e } from './helpers/e2e.ts';
import { runPeer } from './helpers/peers.ts';
import { site } from './helpers/ui.ts';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function vendor(kind: 'ed25519' | 'ec' = 'ed25519') {
  const pair =
    kind === 'ed25519' ? generateKeyPairSync('ed25519') : generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return {
    pub: pair.publicKey.export({ type: 'spki', format: 'pem' }) as string,
    sign: (m: Buffer) => sign(kind === 'ed25519' ? null : 'sha256', m, pair.privateKey).toString('base64'),
  };
}

function signedImage(
  v: ReturnType<typeof vendor>,
  o: { version: string; size?: number; cls?: string; severity?: number },
) {
  const image = randomBytes(o.size ?? 4096);
  const manifest = Buffer.from(
    JSON.stringify({
      vendor: 'acme',
      class: o.cls ?? 'thermo',
      version: o.version,
      digest: sha(image),
      size: image.length,
      severity: o.severity ?? 7.5,
    }),
  );
  return { image, manifest, sig: Buffer.from(v.sign(manifest)) };
}

describe('firmware images', () => {
  it('stores an image only when the vendor signed its manifest and the bytes match; once', (t) => {
    const { core } = site(t);
    const v = vendor();
    const s = signedImage(v, { version: '2.0.0' });
    assert.throws(() => core.firmware.upload(s.image, s.manifest, s.sig, 'test'), {
      code: 'ERR_FIRMWARE_UNKNOWN_VENDOR',
    });
    core.firmware.addVendorKey('acme', 'thermo', v.pub, 'test');
    const other = vendor();
    assert.throws(
      () => core.firmware.upload(s.image, s.manifest, Buffer.from(other.sign(s.manifest)), 'test'),
      { code: 'ERR_FIRMWARE_SIGNATURE' },
    );
    const evil = Buffer.from(s.image);
    evil[100] = (evil[100] ?? 0) ^ 0xff;
    assert.throws(() => core.firmware.upload(evil, s.manifest, s.sig, 'test'), /does not match the digest/);
    assert.throws(
      () => core.firmware.upload(s.image.subarray(1), s.manifest, s.sig, 'test'),
      /bytes, the manifest says/,
    );
    assert.throws(() => core.firmware.upload(s.image, Buffer.from('{nope'), s.sig, 'test'), {
      code: 'ERR_FIRMWARE_INVALID',
    });
    assert.equal(core.firmware.images().length, 0);
    const stored = core.firmware.upload(s.image, s.manifest, s.sig, 'test');
    assert.equal(core.firmware.upload(s.image, s.manifest, s.sig, 'test').digest, stored.digest);
    assert.equal(core.firmware.images().length, 1);
    assert.deepEqual(readdirSync(join(core.config.dataDir, 'firmware')), [stored.digest]);
    // ECDSA P-256 vendors too.
    const ec = vendor('ec');
    core.firmware.addVendorKey('acme', 'valve', ec.pub, 'test');
    const e = signedImage(ec, { version: '1.1.0', cls: 'valve' });
    assert.equal(core.firmware.upload(e.image, e.manifest, e.sig, 'test').deviceClass, 'valve');
  });
});

describe('firmware campaigns', () => {
  /** 50 active thermometers on 1.0.0 and one campaign to 2.0.0 with `settings`. */
  function fleet(t: Parameters<typeof site>[0], settings: Record<string, unknown>) {
    const s = site(t);
    const v = vendor();
    s.core.firmware.addVendorKey('acme', 'thermo', v.pub, 'test');
    const img = signedImage(v, { version: '2.0.0' });
    const image = s.core.firmware.upload(img.image, img.manifest, img.sig, 'test');
    const ids = Array.from({ length: 50 }, (_, i) => `thermo-${String(i).padStart(2, '0')}`);
    for (const id of ids) {
      s.core.identity.addPskDevice({ id, pskIdentity: id, generate: true, type: 'thermo' }, 'test');
      s.core.store.devices.setFirmwareVersion(id, '1.0.0', new Date().toISOString());
    }
    const view = s.core.firmware.createCampaign(image.digest, settings, 'test');
    /** A simulated sensor: takes its notice, fetches the image, reports; every tenth one fails to boot it. */
    const sensor = (id: string) => {
      const notice = s.core.store.downlink.next(id);
      assert.ok(notice, `${id} was told`);
      s.core.store.downlink.delete(notice.id);
      const n = JSON.parse(notice.payload.toString()) as { digest: string; version: string; size: number };
      const bytes = s.core.firmware.fetch(id, n.digest);
      assert.equal(sha(bytes), n.digest);
      const fails = Number(id.slice(-2)) % 10 === 0;
      return s.core.firmware.report(
        id,
        fails ? { result: 'failed', error: 'boot loop after flash' } : { version: n.version },
      );
    };
    return { ...s, ids, view, image, sensor };
  }

  it('halts a campaign of 50 sensors with 10 % failures at a 5 % threshold, after the canary stage', (t) => {
    const { core, view, sensor } = fleet(t, { canaryPercent: 20, maxFailurePercent: 5, minSample: 10 });
    assert.equal(view.devices.filter((d) => d.stage === 'canary').length, 10);
    assert.equal(core.firmware.tick(), 10, 'only the canary stage is told first');
    const canary = view.devices.filter((d) => d.stage === 'canary').map((d) => d.deviceId);
    for (const id of canary) sensor(id);
    const v = core.firmware.view(view.campaign.id);
    assert.equal(v.campaign.state, 'halted');
    assert.match(v.campaign.reason ?? '', /1 of 10 devices failed \(10\.0 %, more than 5 %\)/);
    assert.deepEqual([v.counts.succeeded, v.counts.failed, v.counts.pending], [9, 1, 40]);
    assert.equal(core.firmware.tick(), 0, 'a halted campaign tells nobody else');
    assert.equal(v.devices.find((d) => d.deviceId === 'thermo-00')?.error, 'boot loop after flash');
    assert.ok(core.store.alerts.list({ open: true }).some((a) => a.kind === 'firmware.campaign_halted'));
    assert.equal(core.store.devices.get('thermo-01')?.firmwareVersion, '2.0.0');
    assert.equal(core.store.devices.get('thermo-40')?.firmwareVersion, '1.0.0');
  });

  it('still records the outcome of devices that were flashing when it halted, but serves nobody more', (t) => {
    const { core, view, sensor } = fleet(t, { canaryPercent: 20, maxFailurePercent: 5, minSample: 5 });
    assert.equal(core.firmware.tick(), 10);
    for (const id of ['thermo-00', 'thermo-01', 'thermo-02', 'thermo-03', 'thermo-04']) sensor(id);
    assert.equal(core.firmware.view(view.campaign.id).campaign.state, 'halted');
    assert.throws(() => core.firmware.fetch('thermo-05', view.image.digest), { code: 'ERR_FIRMWARE_STATE' });
    assert.equal(core.firmware.report('thermo-06', { version: '2.0.0' }), 'succeeded');
    assert.equal(core.firmware.report('thermo-07', { version: '1.0.0' }), 'failed', 'it rolled itself back');
    const v = core.firmware.view(view.campaign.id);
    assert.equal(v.campaign.state, 'halted');
    assert.equal(v.devices.find((d) => d.deviceId === 'thermo-07')?.error, 'reports 1.0.0, expected 2.0.0');
  });

  it('rolls out to the rest once the canary passes, records each failure, and completes under a 20 % threshold', (t) => {
    const { core, view, sensor, ids } = fleet(t, { canaryPercent: 10, maxFailurePercent: 20, minSample: 5 });
    assert.equal(core.firmware.tick(), 5);
    assert.equal(core.firmware.tick(), 0, 'the rest waits while the canary is out');
    for (const d of view.devices.filter((x) => x.stage === 'canary')) sensor(d.deviceId);
    assert.equal(core.firmware.tick(), 45);
    for (const id of ids.filter((i) => !view.devices.find((d) => d.deviceId === i && d.stage === 'canary')))
      sensor(id);
    const v = core.firmware.view(view.campaign.id);
    assert.equal(v.campaign.state, 'completed');
    assert.deepEqual([v.counts.succeeded, v.counts.failed], [45, 5]);
  });

  it('tells nobody while paused or outside its window, and serves the image only to devices it told', (t) => {
    const { core, view } = fleet(t, { canaryPercent: 10 });
    core.firmware.setPaused(view.campaign.id, true, 'test');
    assert.equal(core.firmware.tick(), 0);
    assert.throws(() => core.firmware.setPaused(view.campaign.id, true, 'test'), {
      code: 'ERR_FIRMWARE_STATE',
    });
    core.firmware.setPaused(view.campaign.id, false, 'test');
    assert.throws(() => core.firmware.fetch('thermo-00', view.image.digest), { code: 'ERR_FIRMWARE_STATE' });
    assert.equal(core.firmware.tick(), 5);
    assert.ok(core.firmware.fetch('thermo-00', view.image.digest).length > 0);
    assert.throws(() => core.firmware.fetch('thermo-49', view.image.digest), { code: 'ERR_FIRMWARE_STATE' });

    const { core: core2, view: v2 } = fleet(t, {
      window: {
        days: [0, 1, 2, 3, 4, 5, 6],
        fromHour: (new Date().getUTCHours() + 3) % 24,
        toHour: (new Date().getUTCHours() + 4) % 24,
      },
    });
    void v2;
    assert.equal(core2.firmware.tick(), 0, 'outside the maintenance window');
    // Targeting by version: nobody runs 0.9.0, so there is no one to update.
    assert.throws(() => core2.firmware.createCampaign(v2.image.digest, { versions: ['0.9.0'] }, 'test'), {
      code: 'ERR_FIRMWARE_STATE',
    });
  });
});

describe('firmware over DTLS, end to end', () => {
  const KEY = 'thermo-one-key-0123';
  let e2e: E2e;
  let digest = '';
  let image: Buffer;
  const coap = (identity: string, key: string, args: string[]) =>
    runPeer('coap-client-openssl', ['-u', identity, '-k', key, ...args]);

  before(async () => {
    const v = vendor();
    const s = signedImage(v, { version: '2.0.0', size: 200 * 1024 });
    image = s.image;
    digest = sha(s.image);
    e2e = await startE2e('gw-fw', async (home) => {
      const hex = (t: string) => Buffer.from(t).toString('hex');
      await home.cli([
        'device',
        'add',
        'thermo-1',
        '--psk-identity',
        'thermo-1',
        '--psk',
        hex(KEY),
        '--type',
        'thermo',
      ]);
      await home.cli([
        'device',
        'add',
        'other-1',
        '--psk-identity',
        'other-1',
        '--psk',
        hex(KEY),
        '--type',
        'thermo',
      ]);
      const f = (name: string, b: Buffer | string) => {
        const p = join(home.dir, name);
        writeFileSync(p, b);
        return p;
      };
      await home.cli([
        'firmware',
        'vendor',
        'add',
        '--vendor',
        'acme',
        '--class',
        'thermo',
        '--key',
        f('acme.pem', v.pub),
      ]);
      await home.cli([
        'firmware',
        'upload',
        '--image',
        f('fw.bin', s.image),
        '--manifest',
        f('fw.json', s.manifest),
        '--signature',
        f('fw.sig', s.sig),
      ]);
    });
  });
  after(() => stopE2e(e2e ?? {}));

  it('tells the sensor, which fetches a 200 KB image block-wise with coap-client-openssl; the digest matches', async () => {
    const { home } = e2e;
    const created = await home.cli([
      'firmware',
      'campaign',
      'create',
      '--image',
      digest,
      '--canary',
      '50',
      '--min-sample',
      '1',
    ]);
    assert.match(created, /campaign 1: 2 devices, 1 in the canary stage/);
    const url = (p: string) => `coaps://127.0.0.1:${home.dtlsPort}${p}`;
    // The canary (thermo-1, first by id? other-1 sorts first) — find who was told.
    let notice = '';
    let told = '';
    const deadline = Date.now() + 15_000;
    while (!notice && Date.now() < deadline) {
      for (const id of ['other-1', 'thermo-1']) {
        const r = await coap(id, KEY, ['-m', 'get', '-B', '5', url('/commands')]);
        if (r.stdout.toString().includes('"type":"firmware"')) {
          notice = r.stdout.toString();
          told = id;
        }
      }
      if (!notice) await new Promise((r) => setTimeout(r, 500));
    }
    assert.ok(notice, 'a firmware notice arrived through the downlink queue');
    const n = JSON.parse(notice.slice(notice.indexOf('{'))) as { path: string; digest: string; size: number };
    assert.equal(n.size, 200 * 1024);
    const untold = told === 'thermo-1' ? 'other-1' : 'thermo-1';
    const refused = await coap(untold, KEY, ['-m', 'get', '-B', '5', url(n.path)]);
    assert.match(refused.stdout.toString() + refused.stderr, /4\.03/);

    const out = join(home.dir, 'fetched.bin');
    const r = await coap(told, KEY, ['-m', 'get', '-B', '60', '-o', out, url(n.path)]);
    const fetched = readFileSync(out);
    assert.equal(fetched.length, image.length, r.stderr);
    assert.equal(sha(fetched), digest);

    const report = await coap(told, KEY, [
      '-m',
      'post',
      '-t',
      'json',
      '-e',
      '{"version":"2.0.0"}',
      '-B',
      '5',
      url('/fw/report'),
    ]);
    assert.doesNotMatch(report.stdout.toString(), /4\.\d\d/);
    const status = JSON.parse(await home.cli(['firmware', 'campaign', 'status', '1', '--json'])) as {
      counts: { succeeded: number };
    };
    assert.equal(status.counts.succeeded, 1);
    const dev = JSON.parse(await home.cli(['device', 'show', told, '--json'])) as {
      device: { firmwareVersion: string };
    };
    assert.equal(dev.device.firmwareVersion, '2.0.0');
  });
});
