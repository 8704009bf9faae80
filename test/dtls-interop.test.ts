/**
 * Interop matrix: every peer is an independent implementation (OpenSSL, GnuTLS via libcoap,
 * node-dtls-client), each completes a handshake and a CoAP exchange with the Portcullis server.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { parse } from 'coap-packet';
import type { Fixture } from './helpers/coaps-fixture.ts';
import { coapPost, PSK_IDENTITY, startFixture, waitFor } from './helpers/coaps-fixture.ts';
import { TestDtlsClient } from './helpers/dtls-test-client.ts';
import { dtls } from './helpers/node-dtls-client.ts';
import { opensslCertificate, opensslDtlsArgs, opensslPsk, runPeer } from './helpers/peers.ts';
import { makePki, type TestPki } from './helpers/pki.ts';

/** The payload and client-visible outcome of one exchange, checked the same way for every peer. */
async function expectTelemetry(
  f: Fixture,
  payload: string,
  credentialKind: string,
  suite: string,
): Promise<void> {
  const t = await waitFor(`telemetry "${payload}"`, () =>
    f.telemetry.find((x) => x.payload.toString() === payload),
  );
  assert.equal(t.session.credential.kind, credentialKind);
  assert.equal(t.session.cipherSuite, suite);
  assert.deepEqual(f.internalErrors, []);
}

/** openssl s_client with the test client's certificate (server verified too) posts `payload`; 2.04 comes back. */
async function opensslCertificateExchange(
  f: Fixture,
  pki: TestPki,
  cipher: string,
  payload: string,
): Promise<void> {
  const r = await runPeer(
    'openssl',
    opensslDtlsArgs(f.port, cipher, ...opensslCertificate(pki.client, pki.caPath)),
    { stdin: coapPost(payload), until: (out) => out.length >= 4 },
  );
  assert.equal(parse(r.stdout).code, '2.04', r.stderr);
}

describe('DTLS interop: PSK', () => {
  let f: Fixture;
  before(async () => {
    f = await startFixture(null);
  });
  after(() => f.close());

  for (const suite of ['TLS_PSK_WITH_AES_128_CCM_8', 'TLS_PSK_WITH_AES_128_GCM_SHA256'] as const) {
    it(`node-dtls-client@1.1.1 completes ${suite} and a CoAP exchange`, async () => {
      const payload = `node-dtls-client ${suite}`;
      const socket = dtls.createSocket({
        type: 'udp4',
        address: '127.0.0.1',
        port: f.port,
        psk: { [PSK_IDENTITY]: f.psk },
        timeout: 5000,
        ciphers: [suite],
      });
      const answer = await new Promise<Buffer>((resolve, reject) => {
        socket
          .on('connected', () => socket.send(coapPost(payload)))
          .on('message', resolve)
          .on('error', reject);
      });
      socket.close();
      const res = parse(answer);
      assert.equal(res.code, '2.04');
      assert.ok(res.ack);
      assert.equal(res.messageId, 0x1234);
      await expectTelemetry(f, payload, 'psk', suite);
    });
  }

  for (const [cipher, suite] of [
    ['PSK-AES128-CCM8', 'TLS_PSK_WITH_AES_128_CCM_8'],
    ['PSK-AES128-GCM-SHA256', 'TLS_PSK_WITH_AES_128_GCM_SHA256'],
  ] as const) {
    it(`openssl s_client completes ${suite} and a CoAP exchange`, async () => {
      const payload = `openssl ${cipher}`;
      const r = await runPeer(
        'openssl',
        opensslDtlsArgs(f.port, cipher, ...opensslPsk(PSK_IDENTITY, f.psk)),
        { stdin: coapPost(payload), until: (out) => out.length >= 4 },
      );
      assert.equal(parse(r.stdout).code, '2.04', r.stderr);
      await expectTelemetry(f, payload, 'psk', suite);
    });
  }

  for (const client of ['coap-client-openssl', 'coap-client-gnutls']) {
    it(`${client} completes a PSK handshake and a confirmable POST`, async () => {
      const payload = `${client} psk`;
      const r = await runPeer(client, [
        '-u',
        PSK_IDENTITY,
        '-k',
        f.psk,
        '-m',
        'post',
        '-e',
        payload,
        `coaps://127.0.0.1:${f.port}/telemetry`,
      ]);
      assert.equal(r.code, 0, r.stderr);
      // Both offer ECDHE-PSK only with ChaCha20 (and CBC); the server prefers forward secrecy when offered.
      await expectTelemetry(f, payload, 'psk', 'TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256');
    });
  }
});

describe('DTLS interop: certificates and raw public keys', () => {
  let pki: TestPki;
  let f: Fixture;
  before(async () => {
    pki = makePki();
    f = await startFixture(pki);
  });
  after(async () => {
    await f.close();
    pki.dispose();
  });

  for (const [cipher, suite] of [
    ['ECDHE-ECDSA-AES128-CCM8', 'TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8'],
    ['ECDHE-ECDSA-AES128-GCM-SHA256', 'TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256'],
  ] as const) {
    it(`openssl s_client with a client certificate completes ${suite} and a CoAP exchange`, async () => {
      const payload = `openssl ${cipher}`;
      await opensslCertificateExchange(f, pki, cipher, payload);
      await expectTelemetry(f, payload, 'x509', suite);
    });
  }

  for (const client of ['coap-client-openssl', 'coap-client-gnutls']) {
    it(`${client} completes a PKI handshake (both sides verify) and a confirmable POST`, async () => {
      const payload = `${client} pki`;
      const r = await runPeer(client, [
        '-c',
        pki.client.certPath,
        '-j',
        pki.client.keyPath,
        '-C',
        pki.caPath,
        '-m',
        'post',
        '-e',
        payload,
        `coaps://127.0.0.1:${f.port}/telemetry`,
      ]);
      assert.equal(r.code, 0, r.stderr);
      assert.doesNotMatch(r.stderr, /WARN|ERR/);
      await expectTelemetry(f, payload, 'x509', 'TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8');
      const t = f.telemetry.find((x) => x.payload.toString() === payload);
      assert.equal(
        t?.session.credential.kind === 'x509' && t.session.credential.chain[0]?.subject,
        'CN=client',
      );
    });
  }

  it('coap-client-gnutls completes a raw-public-key handshake and the key fingerprint is reported', async () => {
    const payload = 'coap-client-gnutls rpk';
    const r = await runPeer('coap-client-gnutls', [
      '-M',
      pki.client.ecKeyPath,
      '-m',
      'post',
      '-e',
      payload,
      `coaps://127.0.0.1:${f.port}/telemetry`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    await expectTelemetry(f, payload, 'rpk', 'TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8');
    const t = f.telemetry.find((x) => x.payload.toString() === payload);
    const { createHash, createPublicKey } = await import('node:crypto');
    const expected = createHash('sha256')
      .update(createPublicKey(pki.client.key).export({ format: 'der', type: 'spki' }))
      .digest('hex');
    assert.equal(t?.session.credential.kind === 'rpk' && t.session.credential.fingerprint, expected);
  });
});

describe('DTLS interop: a path MTU of 256 bytes', () => {
  let pki: TestPki;
  let f: Fixture;
  before(async () => {
    pki = makePki();
    f = await startFixture(pki, { mtu: 256 });
  });
  after(async () => {
    await f.close();
    pki.dispose();
  });

  it('openssl s_client reassembles the fragmented certificate flight and completes a CoAP exchange', async () => {
    const payload = 'openssl small mtu';
    await opensslCertificateExchange(f, pki, 'ECDHE-ECDSA-AES128-CCM8', payload);
    await expectTelemetry(f, payload, 'x509', 'TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8');
  });

  it('never sends a datagram larger than the MTU (crafted client counts them)', async () => {
    const c = new TestDtlsClient({
      port: f.port,
      suite: 'TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8',
      certificate: { chain: [pki.client.der], key: pki.client.key },
      recordReceived: true,
    });
    await c.connect();
    c.send(coapPost('crafted small mtu'));
    assert.equal(parse(await c.receive()).code, '2.04');
    c.close();
    const sizes = c.received.map((d) => d.length);
    assert.ok(
      sizes.length >= 4,
      `the certificate flight needs several datagrams at this MTU: ${sizes.join(', ')}`,
    );
    assert.ok(
      sizes.every((n) => n <= 256),
      `datagram sizes: ${sizes.join(', ')}`,
    );
  });
});
