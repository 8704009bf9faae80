/**
 * Issue 19 item 11: client certificates that chain to a trusted manufacturer CA but must still be refused —
 * issued for another purpose (EKU serverAuth only, keyUsage without digitalSignature), below a CA whose
 * pathLenConstraint forbids them, carrying a critical extension nobody here understands, or revoked by the CA's
 * CRL — and the ones that must still be accepted. Certificates are made at test time with the openssl CLI, CRLs
 * with @peculiar/x509 (as a CA's software would); the peer is always a real DTLS client (openssl s_client).
 * Each attack comes first, then what holds.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse } from 'coap-packet';
import { fetchCrl, RevocationIndex, verifyCrl } from '../../gateway/src/identity/index.ts';
import { runCli } from '../helpers/cli.ts';
import { coapPost, type Fixture, startFixture, waitFor } from '../helpers/coaps-fixture.ts';
import { startE2e, stopE2e } from '../helpers/e2e.ts';
import type { GatewayHome, RunningGateway } from '../helpers/gateway.ts';
import type { Broker } from '../helpers/mosquitto.ts';
import { opensslCertificate, opensslDtlsArgs, runPeer } from '../helpers/peers.ts';
import {
  caExtensions,
  makeCertificate,
  makeCrl,
  makeOpensslCrl,
  makePki,
  type Party,
  type TestPki,
} from '../helpers/pki.ts';
import { prng } from '../helpers/prng.ts';
import type { Subscriber } from '../helpers/subscriber.ts';

const CIPHER = 'ECDHE-ECDSA-AES128-CCM8';
const LEAF = 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n';

/** One CoAP POST over openssl s_client with `party`'s certificate (and `chain` as the intermediates it sends). */
function certificatePost(
  port: number,
  pki: { caPath: string },
  party: Party,
  payload: string,
  chain?: string,
): ReturnType<typeof runPeer> {
  return runPeer(
    'openssl',
    opensslDtlsArgs(
      port,
      CIPHER,
      ...opensslCertificate(party, pki.caPath),
      ...(chain ? ['-cert_chain', chain] : []),
    ),
    { stdin: coapPost(payload), until: (out) => out.length >= 4, timeoutMs: 5000 },
  );
}

/** The intermediates' PEMs in one file, nearest the leaf first, as s_client's -cert_chain wants them. */
function chainFile(dir: string, name: string, ...parties: Party[]): string {
  const path = join(dir, `${name}.chain.pem`);
  writeFileSync(path, parties.map((p) => readFileSync(p.certPath, 'utf8')).join(''));
  return path;
}

describe('client certificates: path constraints at the handshake', () => {
  let pki: TestPki;
  let f: Fixture;
  const index = new RevocationIndex();
  let anchors: X509Certificate[] = [];
  const c: Record<string, Party> = {};
  const chains: Record<string, string> = {};

  before(async () => {
    pki = makePki();
    const d = pki.dir;
    // Two manufacturer CAs: "maker" (no path length limit) and "strict" (pathlen:0: no CA below it).
    c.maker = makeCertificate(d, 'maker', { ext: caExtensions() });
    c.strict = makeCertificate(d, 'strict', { ext: caExtensions(0) });
    c.makerInt = makeCertificate(d, 'maker-int', { issuer: 'maker', ext: caExtensions(0) });
    c.makerInt2 = makeCertificate(d, 'maker-int2', { issuer: 'maker-int', ext: caExtensions() });
    c.strictInt = makeCertificate(d, 'strict-int', { issuer: 'strict', ext: caExtensions() });
    c.notCa = makeCertificate(d, 'not-a-ca', {
      issuer: 'maker',
      ext: 'basicConstraints=critical,CA:FALSE\n',
    });
    c.critInt = makeCertificate(d, 'crit-int', {
      issuer: 'maker',
      ext: `${caExtensions()}1.3.6.1.4.1.55555.1=critical,ASN1:NULL\n`,
    });
    c.ok = makeCertificate(d, 'sensor-ok', { issuer: 'maker', ext: LEAF });
    c.noEku = makeCertificate(d, 'sensor-no-eku', { issuer: 'maker', ext: 'basicConstraints=CA:FALSE\n' });
    c.serverOnly = makeCertificate(d, 'sensor-server-eku', {
      issuer: 'maker',
      ext: 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n',
    });
    c.keyAgreement = makeCertificate(d, 'sensor-key-agreement', {
      issuer: 'maker',
      ext: 'basicConstraints=CA:FALSE\nkeyUsage=critical,keyAgreement\n',
    });
    c.critLeaf = makeCertificate(d, 'sensor-critical-ext', {
      issuer: 'maker',
      ext: `${LEAF}1.3.6.1.4.1.55555.2=critical,ASN1:UTF8String:obey-me\n`,
    });
    c.viaInt = makeCertificate(d, 'sensor-via-int', { issuer: 'maker-int', ext: LEAF });
    c.viaInt2 = makeCertificate(d, 'sensor-via-int2', { issuer: 'maker-int2', ext: LEAF });
    c.viaStrictInt = makeCertificate(d, 'sensor-via-strict-int', { issuer: 'strict-int', ext: LEAF });
    c.viaNotCa = makeCertificate(d, 'sensor-via-not-a-ca', { issuer: 'not-a-ca', ext: LEAF });
    c.viaCritInt = makeCertificate(d, 'sensor-via-crit-int', { issuer: 'crit-int', ext: LEAF });
    c.revoked = makeCertificate(d, 'sensor-revoked', { issuer: 'maker', ext: LEAF });
    c.strictLeaf = makeCertificate(d, 'sensor-of-strict', { issuer: 'strict', ext: LEAF });
    chains.int = chainFile(d, 'int', c.makerInt);
    chains.int2 = chainFile(d, 'int2', c.makerInt2, c.makerInt);
    chains.strictInt = chainFile(d, 'strict-int', c.strictInt);
    chains.notCa = chainFile(d, 'not-a-ca', c.notCa);
    chains.critInt = chainFile(d, 'crit-int', c.critInt);
    anchors = [new X509Certificate(c.maker.der), new X509Certificate(c.strict.der)];
    f = await startFixture(pki, {
      clientAuth: { trustAnchors: anchors, revocation: (...a) => index.check(...a) },
    });
  });
  after(async () => {
    await f?.close();
    pki?.dispose();
  });

  const refused = async (party: Party, code: string, alert: RegExp, chain?: string) => {
    const before = f.failures.length;
    const r = await certificatePost(f.port, pki, party, `from ${code}`, chain);
    const failure = await waitFor(code, () => f.failures.slice(before).find((x) => x.code === code));
    assert.match(r.stderr, alert, r.stderr);
    assert.equal(failure.fromPeer, false);
    assert.equal(r.stdout.length, 0, 'no CoAP answer');
  };
  const accepted = async (party: Party, payload: string, chain?: string) => {
    const r = await certificatePost(f.port, pki, party, payload, chain);
    assert.equal(parse(r.stdout).code, '2.04', r.stderr);
    await waitFor(payload, () => f.telemetry.find((t) => t.payload.toString() === payload));
  };

  it('refuses a certificate whose extendedKeyUsage is serverAuth only (unsupported_certificate)', async () => {
    await refused(c.serverOnly as Party, 'ERR_DTLS_CERT_USAGE', /unsupported certificate/);
  });

  it('refuses a certificate whose keyUsage does not allow digitalSignature', async () => {
    await refused(c.keyAgreement as Party, 'ERR_DTLS_CERT_USAGE', /unsupported certificate/);
  });

  it('refuses a certificate with a critical extension it does not understand, on the leaf or an intermediate', async () => {
    await refused(c.critLeaf as Party, 'ERR_DTLS_CERT_CRITICAL_EXTENSION', /unsupported certificate/);
    await refused(
      c.viaCritInt as Party,
      'ERR_DTLS_CERT_CRITICAL_EXTENSION',
      /unsupported certificate/,
      chains.critInt,
    );
  });

  it('refuses a chain longer than an intermediate’s pathLenConstraint allows', async () => {
    await refused(c.viaInt2 as Party, 'ERR_DTLS_CERT_PATH_LENGTH', /bad certificate/, chains.int2);
  });

  it('refuses a chain longer than the trust anchor’s pathLenConstraint allows', async () => {
    await refused(c.viaStrictInt as Party, 'ERR_DTLS_CERT_PATH_LENGTH', /bad certificate/, chains.strictInt);
  });

  it('refuses a certificate issued by a certificate that is not a CA', async () => {
    await refused(c.viaNotCa as Party, 'ERR_DTLS_CERT_UNTRUSTED', /unknown ca/, chains.notCa);
  });

  it('refuses a certificate its CA revoked (certificate_revoked), and one whose CA’s CRL is out of date', async () => {
    const crlPath = await makeCrl(pki.dir, 'maker', 'maker.crl', {
      revoke: [new X509Certificate(c.revoked?.der as Buffer)],
    });
    const anchorPem = readFileSync(c.maker?.certPath as string, 'utf8');
    const crl = await verifyCrl(readFileSync(crlPath), anchorPem, new Date());
    index.set(new X509Certificate(c.maker?.der as Buffer), {
      serials: new Set(crl.revokedSerials),
      nextUpdate: crl.nextUpdate?.getTime() ?? null,
      broken: false,
    });
    await refused(c.revoked as Party, 'ERR_DTLS_CERT_REVOKED', /certificate revoked/);
    // The same CA's other sensors still get in while its list is current...
    await accepted(c.ok as Party, 'current CRL, good certificate');
    // ...and are refused (fail closed) by a gateway whose clock is past the list's nextUpdate (8 days on).
    const later = await startFixture(pki, {
      clientAuth: { trustAnchors: anchors, revocation: (...a) => index.check(...a) },
      now: () => Date.now() + 8 * 86_400_000,
    });
    try {
      const r = await certificatePost(later.port, pki, c.ok as Party, 'stale CRL');
      assert.match(r.stderr, /certificate unknown/, r.stderr);
      await waitFor('the refusal', () =>
        later.failures.find((x) => x.code === 'ERR_DTLS_CERT_REVOCATION_UNKNOWN'),
      );
      assert.equal(later.telemetry.length, 0);
      // A CA without a CRL is not affected.
      const other = await certificatePost(later.port, pki, c.strictLeaf as Party, 'a CA without a CRL');
      assert.equal(parse(other.stdout).code, '2.04', other.stderr);
    } finally {
      await later.close();
    }
  });

  it('reads a large CRL made by `openssl ca -gencrl` (20,000 entries) whole: the revoked certificate in it is refused', async () => {
    const victim = makeCertificate(pki.dir, 'sensor-in-big-crl', { issuer: 'maker', ext: LEAF });
    const serials = Array.from({ length: 20_000 }, (_, i) => (0x7f000000 + i).toString(16));
    serials.splice(12_345, 0, new X509Certificate(victim.der).serialNumber);
    const big = makeOpensslCrl(pki.dir, 'maker', 'maker-big.crl', serials, 7);
    const t0 = performance.now();
    const crl = await verifyCrl(
      readFileSync(big),
      readFileSync(c.maker?.certPath as string, 'utf8'),
      new Date(),
    );
    const ms = performance.now() - t0;
    process.stderr.write(
      `# ${readFileSync(big).length} byte CRL, ${crl.revokedSerials.length} entries: verified in ${ms.toFixed(0)} ms\n`,
    );
    assert.equal(crl.revokedSerials.length, 20_001);
    assert.equal(crl.crlNumber, 7n);
    index.set(new X509Certificate(c.maker?.der as Buffer), {
      serials: new Set(crl.revokedSerials),
      nextUpdate: crl.nextUpdate?.getTime() ?? null,
      broken: false,
    });
    await refused(victim, 'ERR_DTLS_CERT_REVOKED', /certificate revoked/);
    await accepted(c.ok as Party, 'not in the big CRL');
  });

  it('accepts what a sensor certificate should be: clientAuth, no EKU at all, and a chain within its path length', async () => {
    await accepted(c.ok as Party, 'clientAuth leaf');
    await accepted(c.noEku as Party, 'leaf without EKU');
    await accepted(c.viaInt as Party, 'leaf below a pathlen:0 intermediate', chains.int);
    assert.deepEqual(f.internalErrors, []);
  });
});

/**
 * A live DTLS session held open by openssl s_client (stdin stays open), after one CoAP POST answered 2.04.
 * `notified` resolves with the time s_client logs the gateway's close_notify (-msg to `msgFile`): s_client
 * itself exits only ~500 ms later (it lingers after its own shutdown for the peer's last data).
 */
async function liveSession(
  port: number,
  pki: { caPath: string },
  party: Party,
  payload: string,
  msgFile: string,
): Promise<{ child: ChildProcess; notified: Promise<number> }> {
  const args = opensslDtlsArgs(
    port,
    CIPHER,
    ...opensslCertificate(party, pki.caPath),
    '-msg',
    '-msgfile',
    msgFile,
  );
  const child = spawn('openssl', args, { stdio: ['pipe', 'pipe', 'pipe'] });
  child.stdin?.on('error', () => {});
  let out = Buffer.alloc(0);
  let exited = false;
  child.on('close', () => {
    exited = true;
  });
  child.stdout?.on('data', (d: Buffer) => {
    out = Buffer.concat([out, d]);
  });
  child.stdin?.write(coapPost(payload));
  await waitFor('the 2.04 on the live session', () => (out.length >= 4 ? out : undefined), 10_000);
  assert.equal(parse(out).code, '2.04');
  // Polled every 10 ms: the first alert s_client reads from the gateway is its close_notify (OpenSSL 3.0's -msg
  // does not name DTLS 1.2 records; an alert shows as content_type=21).
  const notified = new Promise<number>((resolve) => {
    const poll = setInterval(() => {
      let log = '';
      try {
        log = readFileSync(msgFile, 'utf8');
      } catch {}
      if (/<<<[^\n]*(Alert|content_type=21\))/.test(log)) resolve(Date.now());
      else if (exited) resolve(Number.NaN);
      else return;
      clearInterval(poll);
    }, 10);
  });
  return { child, notified };
}

describe('client certificates: revocation lists in the running gateway (trust crl add)', () => {
  let pki: TestPki;
  let broker: Broker;
  let home: GatewayHome;
  let gw: RunningGateway;
  let sub: Subscriber;
  let forger: string;
  const c: Record<string, Party> = {};
  const cli = (args: string[]) => runCli(['--config', home.config, ...args], { cwd: home.dir });
  // s_client verifies the gateway against the identity CA it publishes for sensors.
  const gatewayCa = () => ({ caPath: join(home.dir, 'var', 'tls', 'identity-ca.pem') });
  const post = (party: Party, payload: string) => certificatePost(home.dtlsPort, gatewayCa(), party, payload);

  before(async () => {
    ({ pki, broker, home, gw, sub } = await startE2e('gw-crl'));
    c.maker = makeCertificate(pki.dir, 'maker', { ext: caExtensions() });
    c.a = makeCertificate(pki.dir, 'sensor-a', { issuer: 'maker', ext: LEAF });
    c.b = makeCertificate(pki.dir, 'sensor-b', { issuer: 'maker', ext: LEAF });
    // Someone else's CA that calls itself "maker" too: same issuer name, another key.
    forger = mkdtempSync(join(tmpdir(), 'portcullis-forger-'));
    makeCertificate(forger, 'maker', { ext: caExtensions() });
    await home.cli(['identity', 'trust', 'add', '--name', 'maker', '--ca', c.maker.certPath]);
    // Both sensors ask to join (pending), a technician approves them.
    for (const party of [c.a, c.b] as Party[]) await admit(party);
  });
  /** The sensor asks to join (pending) until the gateway lists it, then a technician approves it. */
  const admit = async (party: Party) => {
    const fp = new X509Certificate(party.der).fingerprint256.replaceAll(':', '').toLowerCase();
    const id = `x509-${fp.slice(0, 16)}`;
    const deadline = Date.now() + 10_000;
    while (!(await home.cli(['device', 'list'])).includes(id) && Date.now() < deadline)
      await post(party, 'hello');
    await home.cli(['device', 'approve', id]);
  };
  after(async () => {
    await stopE2e({ pki, broker, home, gw, sub });
    if (forger) rmSync(forger, { recursive: true, force: true });
  });

  it('refuses, when it is added, a trust anchor no sensor path could satisfy (unknown critical extension, no keyCertSign)', async () => {
    const odd = makeCertificate(pki.dir, 'odd-ca', {
      ext: `${caExtensions()}1.3.6.1.4.1.55555.3=critical,ASN1:NULL\n`,
    });
    const noSign = makeCertificate(pki.dir, 'no-sign-ca', {
      ext: 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,digitalSignature\n',
    });
    for (const [party, why] of [
      [odd, /unsupported critical extension \(1\.3\.6\.1\.4\.1\.55555\.3\)/],
      // OpenSSL already calls a CA without keyCertSign no CA.
      [noSign, /not a CA|keyCertSign/],
    ] as const) {
      const r = await cli(['identity', 'trust', 'add', '--name', 'odd', '--ca', party.certPath]);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /ERR_IDENTITY_INVALID/);
      assert.match(r.stderr, why);
    }
    assert.doesNotMatch(await home.cli(['identity', 'trust', 'list']), /^odd\t/m);
  });

  it('refuses a CRL that the anchor did not sign, is not a CRL, names no anchor, or is out of date — exit 2/1, typed, nothing stored', async () => {
    const a = new X509Certificate(c.a?.der as Buffer);
    // Signed by another CA (the test PKI's own), and by a forger using the anchor's name.
    const other = await makeCrl(pki.dir, 'ca', 'other.crl', { revoke: [a] });
    const forged = await makeCrl(forger, 'maker', 'forged.crl', { revoke: [a] });
    for (const file of [other, forged]) {
      const r = await cli(['identity', 'trust', 'crl', 'add', '--name', 'maker', '--crl', file]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /ERR_IDENTITY_CRL_SIGNATURE/);
    }
    const notCrl = await cli([
      'identity',
      'trust',
      'crl',
      'add',
      '--name',
      'maker',
      '--crl',
      c.maker?.certPath as string,
    ]);
    assert.equal(notCrl.code, 2);
    assert.match(notCrl.stderr, /ERR_IDENTITY_CRL_INVALID/);
    const missing = await cli([
      'identity',
      'trust',
      'crl',
      'add',
      '--name',
      'maker',
      '--crl',
      join(pki.dir, 'nope.crl'),
    ]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /ERR_IDENTITY_CRL_FILE/);
    const neither = await cli(['identity', 'trust', 'crl', 'add', '--name', 'maker']);
    assert.equal(neither.code, 2);
    const badUrl = await cli([
      'identity',
      'trust',
      'crl',
      'add',
      '--name',
      'maker',
      '--url',
      'file:///etc/passwd',
    ]);
    assert.equal(badUrl.code, 2);
    assert.match(badUrl.stderr, /ERR_IDENTITY_INVALID/);
    const good = await makeCrl(pki.dir, 'maker', 'for-nobody.crl', {});
    const noAnchor = await cli(['identity', 'trust', 'crl', 'add', '--name', 'nobody', '--crl', good]);
    assert.equal(noAnchor.code, 2);
    assert.match(noAnchor.stderr, /ERR_IDENTITY_NOT_FOUND/);
    const stale = await makeCrl(pki.dir, 'maker', 'stale.crl', {
      thisUpdate: new Date(Date.now() - 10 * 86_400_000),
      nextUpdate: new Date(Date.now() - 3 * 86_400_000),
      revoke: [a],
    });
    const old = await cli(['identity', 'trust', 'crl', 'add', '--name', 'maker', '--crl', stale]);
    assert.equal(old.code, 1);
    assert.match(old.stderr, /ERR_IDENTITY_CRL_STALE/);
    assert.equal(JSON.parse(await home.cli(['identity', 'trust', 'crl', 'list', '--json'])).length, 0);
    // Sensor A still gets through: none of these reached the gateway.
    const r = await post(c.a as Party, 'A after refused CRLs');
    assert.equal(parse(r.stdout).code, '2.04', r.stderr);
  });

  it('closes the live session of a newly revoked certificate within a second of `trust crl add`, then refuses it at the handshake', async () => {
    const live = await liveSession(
      home.dtlsPort,
      gatewayCa(),
      c.a as Party,
      'A live',
      join(pki.dir, 'a.msg'),
    );
    const crl = await makeCrl(pki.dir, 'maker', 'maker-2.crl', {
      revoke: [new X509Certificate(c.a?.der as Buffer)],
      crlNumber: 2,
      der: true,
    });
    const r = await cli(['identity', 'trust', 'crl', 'add', '--name', 'maker', '--crl', crl]);
    const added = Date.now();
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /1 revoked/);
    const closedAt = await Promise.race([
      live.notified,
      new Promise<number>((res) => setTimeout(() => res(Number.NaN), 5000)),
    ]);
    live.child.kill('SIGKILL');
    const ms = closedAt - added;
    process.stderr.write(`# close_notify reached s_client ${ms} ms after trust crl add exited\n`);
    assert.ok(ms < 1000, `closed after ${ms} ms`);

    const again = await post(c.a as Party, 'A after revocation');
    assert.match(again.stderr, /certificate revoked/, again.stderr);
    assert.equal(again.stdout.length, 0);
    const b = await post(c.b as Party, 'B after revocation of A');
    assert.equal(parse(b.stdout).code, '2.04', b.stderr);
    await sub.waitFor((ms) => ms.some((m) => m.payload.toString() === 'B after revocation of A'), 'B');
    assert.ok(!sub.messages.some((m) => m.payload.toString() === 'A after revocation'));
    assert.ok(gw.log.some((l) => l.includes('ERR_DTLS_CERT_REVOKED')));

    // Audited, naming the newly revoked serial.
    const audit = (await home.cli(['audit', 'export', '--format', 'jsonl']))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { action: string; target: string; details: { newlyRevoked: string[] } });
    const entry = audit.find((e) => e.action === 'identity.trust.crl.add');
    assert.equal(entry?.target, 'maker');
    const serial = new X509Certificate(c.a?.der as Buffer).serialNumber.toLowerCase().replace(/^0+/, '');
    assert.deepEqual(entry?.details.newlyRevoked, [serial]);
  });

  it('refuses an older CRL that would un-revoke (rollback), and the certificate stays refused', async () => {
    const older = await makeCrl(pki.dir, 'maker', 'maker-older.crl', {
      thisUpdate: new Date(Date.now() - 3_600_000),
      crlNumber: 1,
    });
    const r = await cli(['identity', 'trust', 'crl', 'add', '--name', 'maker', '--crl', older]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /ERR_IDENTITY_CRL_ROLLBACK/);
    await new Promise((res) => setTimeout(res, 1200));
    const again = await post(c.a as Party, 'A after rollback attempt');
    assert.match(again.stderr, /certificate revoked/, again.stderr);
  });

  it('fails closed when a CA’s CRL passes its nextUpdate: the live session is closed and handshakes refused until a current CRL arrives', async () => {
    makeCertificate(pki.dir, 'brief-ca', { ext: caExtensions() });
    const sensor = makeCertificate(pki.dir, 'sensor-of-brief', { issuer: 'brief-ca', ext: LEAF });
    await home.cli(['identity', 'trust', 'add', '--name', 'brief', '--ca', join(pki.dir, 'brief-ca.pem')]);
    await admit(sensor);
    // A CRL revoking nothing, due to be replaced in 4 s (CRL times have whole seconds).
    const nextUpdate = new Date(Math.ceil((Date.now() + 4000) / 1000) * 1000);
    const short = await makeCrl(pki.dir, 'brief-ca', 'brief-1.crl', { nextUpdate, crlNumber: 1 });
    assert.equal((await cli(['identity', 'trust', 'crl', 'add', '--name', 'brief', '--crl', short])).code, 0);
    const live = await liveSession(home.dtlsPort, gatewayCa(), sensor, 'brief live', join(pki.dir, 'c.msg'));
    const closedAt = await Promise.race([
      live.notified,
      new Promise<number>((res) => setTimeout(() => res(Number.NaN), 10_000)),
    ]);
    live.child.kill('SIGKILL');
    const late = closedAt - nextUpdate.getTime();
    process.stderr.write(`# out-of-date CRL: live session closed ${late} ms after its nextUpdate\n`);
    assert.ok(late >= 0 && late < 1500, `closed ${late} ms after nextUpdate`);
    const refused = await post(sensor, 'brief after nextUpdate');
    assert.match(refused.stderr, /certificate unknown/, refused.stderr);
    assert.ok(gw.log.some((l) => l.includes('ERR_DTLS_CERT_REVOCATION_UNKNOWN')));
    const state = async () =>
      (
        JSON.parse(await home.cli(['identity', 'trust', 'crl', 'list', '--json'])) as {
          anchor: string;
          state: string;
        }[]
      ).find((x) => x.anchor === 'brief')?.state;
    assert.equal(await state(), 'out-of-date');
    // The CA publishes its next list: the sensor is back.
    const next = await makeCrl(pki.dir, 'brief-ca', 'brief-2.crl', { crlNumber: 2 });
    assert.equal((await cli(['identity', 'trust', 'crl', 'add', '--name', 'brief', '--crl', next])).code, 0);
    await new Promise((res) => setTimeout(res, 700));
    const back = await post(sensor, 'brief with a current CRL');
    assert.equal(parse(back.stdout).code, '2.04', back.stderr);
    assert.equal(await state(), 'current');
  });

  it('fetches the CRL from the anchor’s distribution URL on schedule: a revocation there closes the session; a failing URL keeps the last good CRL', async () => {
    let body = readFileSync(
      await makeCrl(pki.dir, 'maker', 'maker-3.crl', {
        revoke: [new X509Certificate(c.a?.der as Buffer)],
        crlNumber: 3,
      }),
    );
    let status = 200;
    const server: Server = createServer((_req, res) => {
      res.writeHead(status, { 'content-type': 'application/pkix-crl' });
      res.end(status === 200 ? body : 'down');
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/maker.crl`;
      const r = await cli([
        'identity',
        'trust',
        'crl',
        'add',
        '--name',
        'maker',
        '--url',
        url,
        '--refresh',
        '1',
      ]);
      assert.equal(r.code, 0, r.stderr);
      const live = await liveSession(
        home.dtlsPort,
        gatewayCa(),
        c.b as Party,
        'B live',
        join(pki.dir, 'b.msg'),
      );
      // The CA revokes B and publishes: the gateway fetches within its 1 s schedule and closes B's session.
      body = readFileSync(
        await makeCrl(pki.dir, 'maker', 'maker-4.crl', {
          revoke: [new X509Certificate(c.a?.der as Buffer), new X509Certificate(c.b?.der as Buffer)],
          crlNumber: 4,
        }),
      );
      const published = Date.now();
      const closedAt = await Promise.race([
        live.notified,
        new Promise<number>((res) => setTimeout(() => res(Number.NaN), 8000)),
      ]);
      live.child.kill('SIGKILL');
      process.stderr.write(
        `# close_notify reached s_client ${closedAt - published} ms after the URL's CRL changed\n`,
      );
      // Bound: the 1 s refresh interval, the refresher's 1 s tick, the 500 ms review, a fetch and a CRL load.
      assert.ok(closedAt - published < 4000, `closed after ${closedAt - published} ms`);
      await waitFor('the refresh log line', () =>
        gw.log.find((l) => l.includes('trust anchor CRL refreshed')),
      );
      // The distribution point fails: the last good CRL stays in force, and the failure is logged once, not per try.
      status = 503;
      await new Promise((res) => setTimeout(res, 3500));
      const failures = gw.log.filter((l) => l.includes('trust anchor CRL refresh failed'));
      assert.equal(failures.length, 1, failures.join('\n'));
      assert.match(failures[0] as string, /HTTP 503/);
      const b = await post(c.b as Party, 'B while the URL is down');
      assert.match(b.stderr, /certificate revoked/, b.stderr);
    } finally {
      server.close();
    }
  });
});

describe('client certificates: malformed CRLs', () => {
  it('refuses 5,000 seeded mutants of a real CRL with a typed error, never anything else', async () => {
    const pki = makePki();
    try {
      makeCertificate(pki.dir, 'maker', { ext: caExtensions() });
      const anchorPem = readFileSync(join(pki.dir, 'maker.pem'), 'utf8');
      const der = readFileSync(
        await makeCrl(pki.dir, 'maker', 'm.crl', {
          revoke: [pki.ca, new X509Certificate(readFileSync(pki.client.certPath))],
          der: true,
        }),
      );
      assert.equal((await verifyCrl(der, anchorPem, new Date())).revokedSerials.length, 2);
      const seed = Number(process.env.CRL_FUZZ_SEED ?? 19);
      const r = prng(seed);
      let accepted = 0;
      for (let i = 0; i < 5000; i++) {
        const m = Buffer.from(der);
        const kind = r.int(3);
        if (kind === 0) for (let k = 0; k <= r.int(4); k++) m[r.int(m.length)] = r.int(256);
        const bytes =
          kind === 1
            ? m.subarray(0, r.int(m.length))
            : kind === 2
              ? Buffer.concat([m, r.bytes(1 + r.int(8))])
              : m;
        if (bytes.equals(der)) continue; // a byte replaced by itself
        try {
          await verifyCrl(bytes, anchorPem, new Date());
          accepted++;
        } catch (err) {
          assert.match(
            (err as { code?: string }).code ?? String(err),
            /^ERR_IDENTITY_CRL_/,
            `seed ${seed}, mutant ${i}`,
          );
        }
      }
      // Every byte of a DER CRL is covered by the signature or is the signature: no mutant may pass.
      assert.equal(accepted, 0, `seed ${seed}`);
    } finally {
      pki.dispose();
    }
  });
});

describe('client certificates: the CRL fetch is bounded in size and time', () => {
  let server: Server;
  let base: string;
  before(async () => {
    server = createServer((req, res) => {
      if (req.url === '/huge') {
        // No content-length: the bound must hold on the stream, not only on the header.
        res.writeHead(200);
        const chunk = Buffer.alloc(64 * 1024);
        let sent = 0;
        const push = () => {
          while (sent < 4 * 1024 * 1024 && res.write(chunk)) sent += chunk.length;
          if (sent < 4 * 1024 * 1024) res.once('drain', push);
          else res.end();
        };
        push();
      } else if (req.url === '/declared') {
        res.writeHead(200, { 'content-length': String(2 * 1024 * 1024) });
        res.end();
      }
      // /slow: never answers.
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => {
    server.closeAllConnections();
    server.close();
  });

  it('gives up on a body over the size bound, declared or streamed, and on a server that does not answer in time', async () => {
    const limits = { maxBytes: 1024 * 1024, timeoutMs: 500 };
    for (const path of ['/huge', '/declared']) {
      await assert.rejects(fetchCrl(`${base}${path}`, limits), (e: Error & { code?: string }) => {
        assert.equal(e.code, 'ERR_IDENTITY_CRL_FETCH');
        assert.match(e.message, /larger than 1048576 bytes/);
        return true;
      });
    }
    const t0 = Date.now();
    await assert.rejects(fetchCrl(`${base}/slow`, limits), /no answer within 500 ms/);
    assert.ok(Date.now() - t0 < 2000);
  });
});
