/**
 * Every control of the DTLS server with the attack that must fail next to the use that must work.
 * Independent peers where they can express the attack; the crafted test client where they cannot.
 */
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import { parse } from 'coap-packet';
import { ContentType, HandshakeType } from '../gateway/src/dtls/constants.ts';
import { encodeHandshake } from '../gateway/src/dtls/handshake.ts';
import { AlertDescription, type CryptoImplementation } from '../gateway/src/dtls/index.ts';
import { encodeRecord } from '../gateway/src/dtls/record.ts';
import { coapPost, type Fixture, PSK_IDENTITY, startFixture, waitFor } from './helpers/coaps-fixture.ts';
import { AlertReceived, type TestClientOptions, TestDtlsClient } from './helpers/dtls-test-client.ts';
import { coapClientPost, opensslCertificate, opensslDtlsArgs, opensslPsk, runPeer } from './helpers/peers.ts';
import { makePki, type TestPki } from './helpers/pki.ts';

const CRYPTO_IMPLEMENTATIONS: readonly CryptoImplementation[] = ['native', 'node-crypto'];

function pskClient(f: Fixture, extra: Partial<TestClientOptions> = {}): TestDtlsClient {
  return new TestDtlsClient({
    port: f.port,
    suite: 'TLS_PSK_WITH_AES_128_CCM_8',
    psk: { identity: PSK_IDENTITY, key: Buffer.from(f.psk) },
    ...extra,
  });
}

async function expectAlert(client: TestDtlsClient, alert: number): Promise<void> {
  await assert.rejects(
    client.connect(),
    (err: unknown) => err instanceof AlertReceived && err.description === alert,
  );
  client.close();
}

function flipLastByte(d: Buffer): Buffer {
  const c = Buffer.from(d);
  c[c.length - 1] = (c[c.length - 1] as number) ^ 0x01;
  return c;
}

/** Nothing got through: no session was established and no CoAP message reached the application. */
function assertNothingDelivered(f: Fixture): void {
  assert.equal(f.sessions.length, 0);
  assert.equal(f.telemetry.length, 0);
  assert.deepEqual(f.internalErrors, []);
}

// The server's record protection, PRF and cookies run on the native addon by default; node:crypto is the fallback.
for (const cryptoImplementation of CRYPTO_IMPLEMENTATIONS) {
  describe(`DTLS PSK authentication (${cryptoImplementation} crypto)`, () => {
    let f: Fixture;
    before(async () => {
      f = await startFixture(null, { cryptoImplementation });
    });
    after(() => f.close());

    it('accepts the right PSK (crafted client, positive control)', async () => {
      const c = pskClient(f);
      await c.connect();
      c.send(coapPost('right key'));
      assert.equal(parse(await c.receive()).code, '2.04');
      c.close();
      f.sessions.length = 0;
      f.telemetry.length = 0;
    });

    it('rejects a wrong PSK with bad_record_mac and never delivers data (openssl s_client)', async () => {
      const r = await runPeer(
        'openssl',
        opensslDtlsArgs(f.port, 'PSK-AES128-CCM8', ...opensslPsk(PSK_IDENTITY, `${f.psk}x`)),
        { stdin: coapPost('wrong key'), timeoutMs: 5000 },
      );
      assert.match(r.stderr, /alert bad record mac/);
      const failure = await waitFor('failure', () => f.failures.at(-1));
      assert.equal(failure.code, 'ERR_DTLS_BAD_RECORD_MAC');
      assertNothingDelivered(f);
    });

    it('rejects an unknown identity exactly as it rejects a wrong key, so identities cannot be probed', async () => {
      const r = await coapClientPost(f.port, { identity: 'nobody', key: f.psk }, 'x', ['-B', '3']);
      // libcoap logs to stdout.
      assert.match(r.stdout.toString() + r.stderr, /bad record mac/);
      const failure = await waitFor('failure', () =>
        f.failures.find((x) => x.code === 'ERR_DTLS_UNKNOWN_PSK_IDENTITY'),
      );
      assert.equal(failure.alert, AlertDescription.badRecordMac);
      assertNothingDelivered(f);
    });

    it('rejects a Finished with the wrong verify_data with decrypt_error', async () => {
      await expectAlert(
        pskClient(f, { tamper: { finishedVerifyData: flipLastByte } }),
        AlertDescription.decryptError,
      );
      assert.equal(f.failures.at(-1)?.code, 'ERR_DTLS_BAD_FINISHED');
      assertNothingDelivered(f);
    });

    it('rejects a tampered Finished record with bad_record_mac', async () => {
      await expectAlert(
        pskClient(f, { tamper: { finishedDatagram: flipLastByte } }),
        AlertDescription.badRecordMac,
      );
      assert.equal(f.failures.at(-1)?.code, 'ERR_DTLS_BAD_RECORD_MAC');
      assertNothingDelivered(f);
    });

    it('refuses suites outside its list (CBC) with handshake_failure', async () => {
      const r = await runPeer(
        'openssl',
        opensslDtlsArgs(f.port, 'PSK-AES128-CBC-SHA256', ...opensslPsk(PSK_IDENTITY, f.psk)),
        { timeoutMs: 5000 },
      );
      assert.match(r.stderr, /handshake failure/);
      assert.equal(f.failures.at(-1)?.code, 'ERR_DTLS_NO_SHARED_SUITE');
      assertNothingDelivered(f);
    });
  });
}

describe('DTLS ECDHE_PSK with AES-128-CCM_8 (RFC 8442; on by default, only mbedTLS among Debian peers offers it)', () => {
  let f: Fixture;
  before(async () => {
    f = await startFixture(null, {
      cipherSuites: ['TLS_ECDHE_PSK_WITH_AES_128_CCM_8_SHA256', 'TLS_PSK_WITH_AES_128_CCM_8'],
    });
  });
  after(() => f.close());
  const ecdhePsk = (key: string) =>
    pskClient(f, {
      suite: 'TLS_ECDHE_PSK_WITH_AES_128_CCM_8_SHA256',
      psk: { identity: PSK_IDENTITY, key: Buffer.from(key) },
    });

  it('completes a handshake and a CoAP exchange with the right PSK', async () => {
    const c = ecdhePsk(f.psk);
    await c.connect();
    c.send(coapPost('ecdhe-psk'));
    assert.equal(parse(await c.receive()).code, '2.04');
    c.close();
    assert.equal(f.sessions.at(-1)?.cipherSuite, 'TLS_ECDHE_PSK_WITH_AES_128_CCM_8_SHA256');
  });

  it('rejects a wrong PSK with bad_record_mac', async () => {
    const before = f.telemetry.length;
    await expectAlert(ecdhePsk(`${f.psk}x`), AlertDescription.badRecordMac);
    assert.equal(f.failures.at(-1)?.code, 'ERR_DTLS_BAD_RECORD_MAC');
    assert.equal(f.telemetry.length, before);
  });

  it('is not negotiated when left out of the configured suites', async () => {
    const g = await startFixture(null, { cipherSuites: ['TLS_PSK_WITH_AES_128_CCM_8'] });
    try {
      const c = new TestDtlsClient({
        port: g.port,
        suite: 'TLS_ECDHE_PSK_WITH_AES_128_CCM_8_SHA256',
        psk: { identity: PSK_IDENTITY, key: Buffer.from(g.psk) },
      });
      await expectAlert(c, AlertDescription.handshakeFailure);
      assert.equal(g.failures.at(-1)?.code, 'ERR_DTLS_NO_SHARED_SUITE');
    } finally {
      await g.close();
    }
  });
});

// The server's record protection, PRF and cookies run on the native addon by default; node:crypto is the fallback.
for (const cryptoImplementation of CRYPTO_IMPLEMENTATIONS) {
  describe(`DTLS established-session record protection (${cryptoImplementation} crypto)`, () => {
    let f: Fixture;
    before(async () => {
      f = await startFixture(null, { cryptoImplementation });
    });
    after(() => f.close());

    it('drops a tampered application record and keeps serving the session', async () => {
      const c = pskClient(f);
      await c.connect();
      c.send(coapPost('genuine', 1));
      assert.equal(parse(await c.receive()).code, '2.04');
      c.sendRaw(flipLastByte(c.seal(coapPost('forged', 2))));
      await waitFor('discard', () => f.discards.find((x) => x.reason === 'bad-record-mac'));
      c.send(coapPost('after', 3));
      assert.equal(parse(await c.receive()).code, '2.04');
      assert.deepEqual(
        f.telemetry.map((t) => t.payload.toString()),
        ['genuine', 'after'],
      );
      c.close();
    });

    it('rejects a replayed record: the application sees the message once', async () => {
      const c = pskClient(f);
      await c.connect();
      const before = f.discards.filter((x) => x.reason === 'replay').length;
      const d = c.send(coapPost('once', 7));
      assert.equal(parse(await c.receive()).code, '2.04');
      c.sendRaw(d);
      c.sendRaw(d);
      await waitFor('replay discards', () =>
        f.discards.filter((x) => x.reason === 'replay').length >= before + 2 ? true : undefined,
      );
      assert.equal(f.telemetry.filter((t) => t.payload.toString() === 'once').length, 1);
      c.close();
    });

    it('refuses renegotiation on an established session with a no_renegotiation alert', async () => {
      const c = pskClient(f);
      await c.connect();
      c.sendProtected(ContentType.handshake, encodeHandshake(HandshakeType.clientHello, 5, Buffer.alloc(40)));
      assert.equal(await c.nextAlert(), AlertDescription.noRenegotiation);
      c.send(coapPost('still up', 9));
      assert.equal(parse(await c.receive()).code, '2.04');
      c.close();
    });
  });
}

describe('DTLS certificate and raw-public-key authentication', () => {
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

  const certClient = (
    party: keyof Pick<TestPki, 'client' | 'stranger' | 'shortLived'>,
    extra: Partial<TestClientOptions> = {},
  ) =>
    new TestDtlsClient({
      port: f.port,
      suite: 'TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8',
      certificate: { chain: [pki[party].der], key: pki[party].key },
      ...extra,
    });

  it('accepts a trusted certificate with a valid CertificateVerify (crafted client, positive control)', async () => {
    const c = certClient('client');
    await c.connect();
    c.send(coapPost('cert ok'));
    assert.equal(parse(await c.receive()).code, '2.04');
    assert.equal(c.serverCertificate?.subject, 'CN=server');
    c.close();
    f.sessions.length = 0;
    f.telemetry.length = 0;
  });

  it('rejects a certificate from an untrusted CA with unknown_ca (openssl s_client)', async () => {
    const r = await runPeer(
      'openssl',
      opensslDtlsArgs(
        f.port,
        'ECDHE-ECDSA-AES128-CCM8',
        ...opensslCertificate(pki.stranger, pki.caPath, false),
      ),
      { stdin: coapPost('stranger'), timeoutMs: 5000 },
    );
    assert.match(r.stderr, /unknown ca/);
    assert.equal(f.failures.at(-1)?.code, 'ERR_DTLS_CERT_UNTRUSTED');
    assertNothingDelivered(f);
  });

  it('rejects a client that sends no certificate', async () => {
    const c = new TestDtlsClient({
      port: f.port,
      suite: 'TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8',
      certificate: { chain: [], key: pki.client.key },
    });
    await expectAlert(c, AlertDescription.handshakeFailure);
    assert.equal(f.failures.at(-1)?.code, 'ERR_DTLS_NO_CERTIFICATE');
    assertNothingDelivered(f);
  });

  it('rejects a CertificateVerify that does not verify with decrypt_error', async () => {
    const c = certClient('client', {
      tamper: {
        // Sign with another key: a well-formed signature that does not match the certificate.
        certificateVerifySignature: () =>
          Buffer.from(pki.stranger.key.export({ format: 'der', type: 'pkcs8' })).subarray(0, 70),
      },
    });
    await expectAlert(c, AlertDescription.decryptError);
    assert.equal(f.failures.at(-1)?.code, 'ERR_DTLS_BAD_CERTIFICATE_VERIFY');
    assertNothingDelivered(f);
  });

  it('rejects a raw public key the pinning callback does not know with access_denied', async () => {
    const pinned = await startFixture(pki, {
      clientAuth: {
        trustAnchors: [pki.ca],
        allowRawPublicKeys: true,
        verifyPeer: (cred) => cred.kind !== 'rpk',
      },
    });
    try {
      const r = await runPeer('coap-client-gnutls', [
        '-M',
        pki.stranger.ecKeyPath,
        '-m',
        'post',
        '-e',
        'x',
        '-B',
        '3',
        `coaps://127.0.0.1:${pinned.port}/telemetry`,
      ]);
      assert.notEqual(r.code, null);
      assert.equal(pinned.failures.at(-1)?.code, 'ERR_DTLS_PEER_REJECTED');
      assert.equal(pinned.failures.at(-1)?.alert, AlertDescription.accessDenied);
      assertNothingDelivered(pinned);
    } finally {
      await pinned.close();
    }
  });

  it('rejects an expired client certificate with certificate_expired', async () => {
    const later = await startFixture(pki, { now: () => Date.now() + 3 * 86_400_000 });
    try {
      const c = new TestDtlsClient({
        port: later.port,
        suite: 'TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8',
        certificate: { chain: [pki.shortLived.der], key: pki.shortLived.key },
      });
      await expectAlert(c, AlertDescription.certificateExpired);
      assert.equal(later.failures.at(-1)?.code, 'ERR_DTLS_CERT_EXPIRED');
      // The same clock still accepts a certificate that is within its validity.
      const ok = new TestDtlsClient({
        port: later.port,
        suite: 'TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8',
        certificate: { chain: [pki.client.der], key: pki.client.key },
      });
      await ok.connect();
      ok.close();
    } finally {
      await later.close();
    }
  });
});

describe('DTLS Extended Master Secret', () => {
  it('negotiates EMS when offered, and when required refuses a client without it', async () => {
    const f = await startFixture(null, { requireExtendedMasterSecret: true });
    try {
      const good = pskClient(f);
      await good.connect();
      assert.equal(f.sessions[0]?.extendedMasterSecret, true);
      good.close();
      await expectAlert(pskClient(f, { extendedMasterSecret: false }), AlertDescription.handshakeFailure);
      assert.equal(f.failures.at(-1)?.code, 'ERR_DTLS_EMS_REQUIRED');
    } finally {
      await f.close();
    }
  });
});

describe('DTLS cookies and resource limits', () => {
  /** A ClientHello without (or with a given) cookie, from a raw socket; `tail` is what follows the cookie. */
  function rawHello(cookie: Buffer, tail = Buffer.from([0, 2, 0xc0, 0xa8, 1, 0])): Buffer {
    const body = Buffer.concat([
      Buffer.from([0xfe, 0xfd]),
      Buffer.alloc(32, 7),
      Buffer.from([0]),
      Buffer.from([cookie.length]),
      cookie,
      tail,
    ]);
    return encodeRecord(
      ContentType.handshake,
      0xfefd,
      0,
      0,
      encodeHandshake(HandshakeType.clientHello, 0, body),
    );
  }

  /** The cookie of a HelloVerifyRequest datagram (record header, handshake header, version, length). */
  const cookieOf = (hvr: Buffer) => hvr.subarray(13 + 12 + 3, 13 + 12 + 3 + (hvr[13 + 12 + 2] as number));

  it('answers cookie-less and forged-cookie hellos statelessly: no connection state, no key generated', async () => {
    const f = await startFixture(null);
    const sock = createSocket('udp4');
    try {
      let replies = 0;
      sock.on('message', () => replies++);
      for (let i = 0; i < 500; i++) {
        sock.send(rawHello(i % 2 ? Buffer.alloc(0) : Buffer.alloc(16, i)), f.port, '127.0.0.1');
      }
      await waitFor('HelloVerifyRequests', () =>
        f.server.stats.helloVerifyRequests >= 500 ? true : undefined,
      );
      assert.equal(f.server.stats.handshakesStarted, 0);
      assert.equal(f.server.handshakeCount, 0);
      assert.ok(replies > 0);
      // A legitimate client is unaffected.
      const c = pskClient(f);
      await c.connect();
      c.close();
    } finally {
      sock.close();
      await f.close();
    }
  });

  it('reads a hello no further than its cookie until the cookie is valid, then drops one malformed beyond it', async () => {
    const f = await startFixture(null);
    const sock = createSocket('udp4');
    try {
      // An odd cipher-suite length: malformed, but only after the cookie.
      const broken = Buffer.from([0, 3, 0xc0, 0xa8, 1, 1, 0]);
      const first = rawHello(Buffer.alloc(0), broken);
      sock.send(first, f.port, '127.0.0.1');
      const [hvr] = (await once(sock, 'message')) as [Buffer];
      assert.equal(hvr[13], HandshakeType.helloVerifyRequest);
      assert.ok(hvr.length <= first.length, 'the answer to an unproven address is no larger than the hello');
      const cookie = cookieOf(hvr);
      sock.send(rawHello(cookie, broken), f.port, '127.0.0.1');
      await waitFor('malformed discard', () => f.discards.find((d) => d.reason === 'malformed'));
      assert.equal(f.server.stats.handshakesStarted, 0);
      assert.equal(f.server.handshakeCount, 0);
      assert.deepEqual(f.internalErrors, []);
      // The same address with a well-formed hello is served.
      sock.send(rawHello(Buffer.alloc(0)), f.port, '127.0.0.1');
      const [hvr2] = (await once(sock, 'message')) as [Buffer];
      const cookie2 = cookieOf(hvr2);
      sock.send(rawHello(cookie2), f.port, '127.0.0.1');
      const [hello] = (await once(sock, 'message')) as [Buffer];
      assert.equal(hello[13], HandshakeType.serverHello);
    } finally {
      sock.close();
      await f.close();
    }
  });

  it('binds the cookie to the source address: a cookie replayed from another port is not accepted', async () => {
    const f = await startFixture(null);
    const a = createSocket('udp4');
    const b = createSocket('udp4');
    try {
      a.send(rawHello(Buffer.alloc(0)), f.port, '127.0.0.1');
      const [hvr] = (await once(a, 'message')) as [Buffer];
      const cookie = cookieOf(hvr);
      b.send(rawHello(cookie), f.port, '127.0.0.1');
      const [answer] = (await once(b, 'message')) as [Buffer];
      assert.equal(answer[13], HandshakeType.helloVerifyRequest);
      assert.equal(f.server.stats.handshakesStarted, 0);
      // From the right address the same cookie starts a handshake.
      a.send(rawHello(cookie), f.port, '127.0.0.1');
      const [hello] = (await once(a, 'message')) as [Buffer];
      assert.equal(hello[13], HandshakeType.serverHello);
      assert.equal(f.server.stats.handshakesStarted, 1);
    } finally {
      a.close();
      b.close();
      await f.close();
    }
  });

  it('limits handshakes in flight and per-source handshake rate, and still serves within the limits', async () => {
    const f = await startFixture(null, { limits: { maxHandshakes: 2, handshakesPerSecondPerSource: 1000 } });
    const socks = [createSocket('udp4'), createSocket('udp4'), createSocket('udp4')];
    try {
      for (const s of socks) {
        s.send(rawHello(Buffer.alloc(0)), f.port, '127.0.0.1');
        const [hvr] = (await once(s, 'message')) as [Buffer];
        const cookie = hvr.subarray(28, 28 + (hvr[27] as number));
        s.send(rawHello(cookie), f.port, '127.0.0.1');
      }
      await waitFor('capacity discard', () => f.discards.find((d) => d.reason === 'capacity'));
      assert.equal(f.server.handshakeCount, 2);
    } finally {
      for (const s of socks) s.close();
      await f.close();
    }
    const rated = await startFixture(null, {
      limits: { handshakesPerSecondPerSource: 2 },
      now: () => 1_000_000,
    });
    try {
      for (let i = 0; i < 2; i++) {
        const c = pskClient(rated);
        await c.connect();
        c.close();
      }
      await assert.rejects(pskClient(rated, { timeoutMs: 800 }).connect(), /timed out/);
      assert.ok(rated.discards.some((d) => d.reason === 'rate-limited'));
    } finally {
      await rated.close();
    }
  });

  it('expires idle sessions and tells the application', async () => {
    const f = await startFixture(null, { limits: { idleTimeoutMs: 300 } });
    try {
      const c = pskClient(f);
      await c.connect();
      await waitFor('idle close', () => f.closed.find((r) => r === 'idle'), 5000);
      assert.equal(f.server.sessionCount, 0);
      c.close();
    } finally {
      await f.close();
    }
  });

  it('replaces a session when the same address completes a fresh handshake (sensor rebooted)', async () => {
    const f = await startFixture(null);
    try {
      const first = pskClient(f);
      await first.connect();
      const port = first.localPort;
      first.close(); // power loss: no close_notify
      const again = pskClient(f, { localPort: port });
      await again.connect();
      await waitFor('replaced', () => f.closed.find((r) => r === 'replaced'));
      assert.equal(f.server.sessionCount, 1);
      again.send(coapPost('after reboot'));
      assert.equal(parse(await again.receive()).code, '2.04');
      again.close();
    } finally {
      await f.close();
    }
  });
});

describe('DTLS Connection ID (RFC 9146)', () => {
  it('keeps a session when the client moves to a new address, and answers at the new address', async () => {
    const f = await startFixture(null, { connectionIds: true });
    try {
      const c = pskClient(f, { connectionId: true });
      await c.connect();
      assert.equal(c.serverCid?.length, 8);
      c.send(coapPost('before move', 1));
      assert.equal(parse(await c.receive()).code, '2.04');
      const oldRecord = c.send(coapPost('old', 2));
      await c.receive();
      await c.rebind();
      c.send(coapPost('after move', 3));
      assert.equal(parse(await c.receive()).code, '2.04');
      assert.equal(f.sessions.length, 1);
      const moved = f.telemetry.find((t) => t.payload.toString() === 'after move');
      assert.equal(moved?.session, f.sessions[0]);
      // A replayed old record from yet another address neither delivers nor moves the session.
      await c.rebind();
      c.sendRaw(oldRecord);
      await waitFor('replay discard', () => f.discards.find((d) => d.reason === 'replay'));
      assert.equal(f.telemetry.filter((t) => t.payload.toString() === 'old').length, 1);
    } finally {
      await f.close();
    }
  });

  it('drops records with a Connection ID it never issued', async () => {
    const f = await startFixture(null, { connectionIds: true });
    const s = createSocket('udp4');
    try {
      const fake = Buffer.concat([
        Buffer.from([ContentType.tls12Cid, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 1]),
        Buffer.alloc(8, 0xab),
        Buffer.from([0, 24]),
        Buffer.alloc(24),
      ]);
      s.send(fake, f.port, '127.0.0.1');
      await waitFor('unknown cid', () => f.discards.find((d) => d.reason === 'unknown-cid'));
      assertNothingDelivered(f);
    } finally {
      s.close();
      await f.close();
    }
  });
});
