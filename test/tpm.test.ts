/**
 * The TPM keystore against a real TPM 2.0 (swtpm behind tpm2-abrmd): keys that never leave it, a sealed data
 * key, the uplink's mutual TLS signed inside the TPM end to end, and no silent fallback when it is gone.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { operationalCertificate } from '../gateway/src/identity/gateway-certificate.ts';
import { Tpm2Keystore } from '../gateway/src/keystore/index.ts';
import { type GatewayHome, makeGatewayHome, type RunningGateway } from './helpers/gateway.ts';
import { type Broker, startBroker } from './helpers/mosquitto.ts';
import { coapClientPost } from './helpers/peers.ts';
import { makePki, type TestPki } from './helpers/pki.ts';
import { startSubscriber } from './helpers/subscriber.ts';
import { tempDir } from './helpers/tmp.ts';
import { startTpm, type TestTpm } from './helpers/tpm.ts';

const KEY = 'tpm-sensor-key-01234';

describe('TPM keystore', () => {
  let tpm: TestTpm;
  before(async () => {
    tpm = await startTpm();
    Object.assign(process.env, tpm.env);
  });
  after(() => tpm.stop());

  it('keeps the uplink key inside the TPM: the file is a TPM-wrapped blob nothing can export', async (t) => {
    const dir = tempDir(t);
    const ks = new Tpm2Keystore(dir, tpm.tcti);
    const key = ks.uplinkKey();
    assert.equal(key.kind, 'tpm2');
    const pem = key.kind === 'tpm2' ? key.keyPem : '';
    assert.match(pem, /^-----BEGIN TSS2 PRIVATE KEY-----/);
    const env = { ...process.env, TPM2OPENSSL_TCTI: tpm.tcti };
    // Without the provider OpenSSL cannot even read it…
    assert.throws(() =>
      execFileSync('openssl', ['pkey', '-in', join(dir, 'uplink.tss')], { env, stdio: 'pipe' }),
    );
    // …and with it, "exporting" yields the same wrapped blob, never the private scalar.
    const out = execFileSync(
      'openssl',
      ['pkey', '-provider', 'tpm2', '-provider', 'default', '-in', join(dir, 'uplink.tss')],
      { env, stdio: 'pipe' },
    ).toString();
    assert.doesNotMatch(out, /BEGIN (EC )?PRIVATE KEY/);
    const csr = await ks.uplinkCsr('CN=gw-tpm,O=Portcullis');
    assert.match(
      execFileSync('openssl', ['req', '-noout', '-verify', '-subject'], {
        input: csr,
        stdio: 'pipe',
      }).toString(),
      /CN = gw-tpm/,
    );
  });

  it('certifies the listeners’ keys with a gateway identity key that never leaves the TPM', async (t) => {
    const dir = tempDir(t);
    const ks = new Tpm2Keystore(dir, tpm.tcti);
    const tls = await operationalCertificate(ks, join(dir, 'tls'), 'sensors', ['127.0.0.1'], Date.now());
    assert.match(readFileSync(join(dir, 'identity.tss'), 'utf8'), /^-----BEGIN TSS2 PRIVATE KEY-----/);
    const ca = new X509Certificate(tls.caPem);
    assert.ok(ca.ca);
    const leaf = new X509Certificate(tls.certPem);
    assert.ok(leaf.checkIssued(ca) && leaf.verify(ca.publicKey), 'the TPM key signed the leaf');
    assert.equal(leaf.checkIP('127.0.0.1'), '127.0.0.1');
    // Restarting with a fresh leaf still chains to the same identity.
    const again = await operationalCertificate(
      new Tpm2Keystore(dir, tpm.tcti),
      join(dir, 'tls'),
      'sensors',
      ['127.0.0.1'],
      Date.now(),
    );
    assert.equal(again.caPem, tls.caPem);
  });

  it('wraps secrets under a sealed data key that only the same TPM can unseal, and never stores it in clear', async (t) => {
    const dir = tempDir(t);
    const wrapped = new Tpm2Keystore(dir, tpm.tcti).wrap(Buffer.from('a device psk'), 'ctx');
    assert.equal(new Tpm2Keystore(dir, tpm.tcti).unwrap(wrapped, 'ctx').toString(), 'a device psk');
    assert.throws(
      () => new Tpm2Keystore(dir, tpm.tcti).unwrap(wrapped, 'other ctx'),
      /ERR_KEYSTORE_UNWRAP|does not authenticate/,
    );
    for (const f of readdirSync(dir)) {
      assert.ok(!readFileSync(join(dir, f)).includes(Buffer.from('a device psk')));
    }
    // Another TPM (a replaced board) cannot unseal it: the gateway refuses rather than starting without keys.
    const other = await startTpm();
    try {
      assert.throws(
        () => new Tpm2Keystore(dir, other.tcti),
        (err: unknown) => (err as { code?: string }).code === 'ERR_KEYSTORE_TPM',
      );
    } finally {
      await other.stop();
    }
  });
});

describe('end to end with the uplink key in the TPM', () => {
  let tpm: TestTpm;
  let pki: TestPki;
  let broker: Broker;
  let home: GatewayHome;
  let gw: RunningGateway;
  before(async () => {
    tpm = await startTpm();
    pki = makePki();
    broker = await startBroker({ caPath: pki.caPath, server: pki.broker });
    home = await makeGatewayHome(pki, broker, 'gw-tpm', { tpm });
    await home.cli([
      'device',
      'add',
      'sensor-t',
      '--psk-identity',
      'sensor-t',
      '--psk',
      Buffer.from(KEY).toString('hex'),
    ]);
    gw = await home.start();
  });
  after(async () => {
    await gw?.stop();
    await broker?.dispose();
    home?.dispose();
    pki?.dispose();
    await tpm?.stop();
  });

  it('publishes over mutual TLS signed by the TPM key', async () => {
    const sub = await startSubscriber(pki, broker, 'site-1/#');
    try {
      const r = await coapClientPost(home.dtlsPort, { identity: 'sensor-t', key: KEY }, 'via the TPM');
      assert.equal(r.code, 0, r.stderr);
      await sub.waitFor(
        (ms) => ms.some((m) => m.payload.toString() === 'via the TPM'),
        'the message',
        30_000,
      );
      assert.ok(gw.log.some((l) => /uplink connected/.test(l)));
    } finally {
      sub.stop();
    }
  });

  it('refuses to start when the TPM is gone, and says why', async () => {
    await gw.stop();
    await tpm.stop();
    const r = await home.cli(['start']).then(
      () => null,
      (err: Error) => err.message,
    );
    assert.match(r ?? '', /exited 1.*ERR_KEYSTORE_TPM.*not reachable/s);
  });
});
