/**
 * Issue 22: the DTLS stacks of embedded sensors against the server — small C clients built here against
 * Debian's libmbedtls-dev 2.28 (Zephyr's and many MCU SDKs' stack) and libwolfssl-dev 5.5 (whose Debian build
 * has no plain PSK-AES suites: only ECDHE-PSK and ChaCha20), each driven through a handshake, CoAP exchanges
 * and a resumption. The C sources are test/fixtures/dtls-peers/; they are compiled once per run with cc into a
 * temporary directory. Resumption refusals (decommissioned, isolated, revoked) run through the gateway's own
 * sensor listener.
 */
import assert from 'node:assert/strict';
import { type ChildProcessWithoutNullStreams, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { generate, parse } from 'coap-packet';
import { systemClock } from '../gateway/src/clock.ts';
import { telemetryRouter } from '../gateway/src/coap/index.ts';
import { parseConfig } from '../gateway/src/config/load.ts';
import { Core } from '../gateway/src/core.ts';
import { type SensorListener, startSensorListener } from '../gateway/src/datapath/sensor-listener.ts';
import { createLogger } from '../gateway/src/log.ts';
import { Uplink } from '../gateway/src/uplink/index.ts';
import { coapPost, type Fixture, PSK_IDENTITY, startFixture, waitFor } from './helpers/coaps-fixture.ts';
import { caExtensions, makeCertificate, makePki, type TestPki } from './helpers/pki.ts';

const SOURCES = join(import.meta.dirname, 'fixtures', 'dtls-peers');
let binDir: string;

/** Compiles the two clients once for this file. */
function buildPeers(): void {
  binDir = mkdtempSync(join(tmpdir(), 'portcullis-dtls-peers-'));
  execFileSync(
    'cc',
    ['-O1', '-o', join(binDir, 'mbedtls-client'), join(SOURCES, 'mbedtls-client.c')].concat([
      '-lmbedtls',
      '-lmbedx509',
      '-lmbedcrypto',
    ]),
  );
  execFileSync('cc', [
    '-O1',
    '-o',
    join(binDir, 'wolfssl-client'),
    join(SOURCES, 'wolfssl-client.c'),
    '-lwolfssl',
  ]);
}

/** One C client process, driven line by line (see the sources' usage). */
class CPeer {
  private readonly child: ChildProcessWithoutNullStreams;
  private buffer = '';
  private readonly lines: string[] = [];
  private waiter: (() => void) | null = null;
  stderr = '';

  constructor(binary: 'mbedtls-client' | 'wolfssl-client', args: string[]) {
    this.child = spawn(join(binDir, binary), args);
    this.child.stdout.on('data', (d: Buffer) => {
      this.buffer += d.toString();
      for (let i = this.buffer.indexOf('\n'); i >= 0; i = this.buffer.indexOf('\n')) {
        this.lines.push(this.buffer.slice(0, i));
        this.buffer = this.buffer.slice(i + 1);
      }
      this.waiter?.();
    });
    this.child.stderr.on('data', (d: Buffer) => {
      this.stderr += d.toString();
    });
    this.child.on('close', () => this.waiter?.());
    // A peer that gave up (a refused handshake) has closed its stdin.
    this.child.stdin.on('error', () => {});
  }

  async line(timeoutMs = 10_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const l = this.lines.shift();
      if (l !== undefined) return l;
      if (this.child.exitCode !== null || Date.now() > deadline) {
        throw new Error(`no answer from the peer (exit ${this.child.exitCode}): ${this.stderr}`);
      }
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.max(1, deadline - Date.now()));
        this.waiter = () => {
          clearTimeout(t);
          r();
        };
      });
      this.waiter = null;
    }
  }

  /** The handshake's outcome line: the suite, and whether it resumed. */
  async handshake(): Promise<{ suite: string; resumed: boolean }> {
    const l = await this.line();
    const m = /^OK (\S+) resumed=(\d)$/.exec(l);
    if (!m) throw new Error(`handshake failed: ${l} ${this.stderr}`);
    return { suite: m[1] as string, resumed: m[2] === '1' };
  }

  async request(coap: Buffer): Promise<ReturnType<typeof parse>> {
    this.child.stdin.write(`${coap.toString('hex')}\n`);
    const l = await this.line();
    if (!/^[0-9a-f]+$/.test(l)) throw new Error(`no CoAP answer: ${l}`);
    return parse(Buffer.from(l, 'hex'));
  }

  resume(): Promise<{ suite: string; resumed: boolean }> {
    this.child.stdin.write('RESUME\n');
    return this.handshake();
  }

  async quit(): Promise<void> {
    if (this.child.exitCode !== null) return;
    this.child.stdin.end('QUIT\n');
    if (this.child.exitCode === null) await new Promise((r) => this.child.once('close', r));
  }
}

const BIG = Buffer.from(Array.from({ length: 2000 }, (_, i) => i % 241));

function coapGet(path: string, messageId: number, block2?: number): Buffer {
  const opts: Array<{ name: 'Uri-Path' | 'Block2'; value: Buffer }> = [
    { name: 'Uri-Path', value: Buffer.from(path) },
  ];
  if (block2 !== undefined)
    opts.push({
      name: 'Block2',
      value: block2 < 0x100 ? Buffer.from([block2]) : Buffer.from([block2 >> 8, block2 & 0xff]),
    });
  return generate({ code: 'GET', messageId, token: Buffer.from([1, 2]), confirmable: true, options: opts });
}

/** GET /big block-wise through the peer; returns the body and the largest CoAP message received. */
async function fetchBig(p: CPeer): Promise<{ body: Buffer; largest: number; blocks: number }> {
  const parts: Buffer[] = [];
  let largest = 0;
  let szx = 6;
  for (let num = 0; num < 64; num++) {
    const res = await p.request(coapGet('big', 0x200 + num, num === 0 ? undefined : (num << 4) | szx));
    assert.equal(res.code, '2.05');
    largest = Math.max(largest, generate(res).length);
    const b2 = res.options.find((o) => o.name === 'Block2');
    assert.ok(b2, 'the response goes block-wise');
    const v = b2.value.readUIntBE(0, b2.value.length);
    szx = v & 7;
    parts.push(res.payload);
    if (!(v & 8)) return { body: Buffer.concat(parts), largest, blocks: num + 1 };
  }
  throw new Error('too many blocks');
}

const pskArgs = (f: Fixture) => ['psk', PSK_IDENTITY, Buffer.from(f.psk).toString('hex')];

before(() => buildPeers());
after(() => rmSync(binDir, { recursive: true, force: true }));

describe('embedded DTLS stacks: mbedTLS 2.28 and wolfSSL 5.5 clients', () => {
  let pki: TestPki;
  let f: Fixture;
  let small: Fixture;
  let chainPath: string;
  let leafKeyPath: string;
  before(async () => {
    pki = makePki();
    // A four-certificate path (root, two intermediates, leaf): a certificate flight that must be fragmented.
    makeCertificate(pki.dir, 'int1', { issuer: 'ca', ext: caExtensions() });
    makeCertificate(pki.dir, 'int2', { issuer: 'int1', ext: caExtensions() });
    const leaf = makeCertificate(pki.dir, 'chain-leaf', {
      issuer: 'int2',
      ext: 'keyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n',
    });
    chainPath = join(pki.dir, 'chain.pem');
    writeFileSync(
      chainPath,
      ['chain-leaf', 'int2', 'int1'].map((n) => readFileSync(join(pki.dir, `${n}.pem`), 'utf8')).join(''),
    );
    leafKeyPath = leaf.keyPath;
    const router = () =>
      telemetryRouter((t) => void f?.telemetry.push(t)).on('GET', '/big', async () => ({
        code: '2.05',
        payload: BIG,
      }));
    f = await startFixture(pki, { sessionResumption: true }, { router: router() });
    small = await startFixture(pki, { mtu: 200 });
  });
  after(async () => {
    await f.close();
    await small.close();
    pki.dispose();
  });

  async function post(p: CPeer, fx: Fixture, payload: string, suite: string): Promise<void> {
    assert.equal((await p.request(coapPost(payload))).code, '2.04');
    const t = await waitFor(payload, () => fx.telemetry.find((x) => x.payload.toString() === payload));
    assert.equal(t.session.cipherSuite, suite);
  }

  for (const [name, suite] of [
    ['TLS-PSK-WITH-AES-128-CCM-8', 'TLS_PSK_WITH_AES_128_CCM_8'],
    ['TLS-PSK-WITH-AES-128-GCM-SHA256', 'TLS_PSK_WITH_AES_128_GCM_SHA256'],
    ['TLS-ECDHE-PSK-WITH-CHACHA20-POLY1305-SHA256', 'TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256'],
  ] as const) {
    it(`mbedTLS completes ${suite} and a CoAP exchange`, async () => {
      const p = new CPeer('mbedtls-client', ['127.0.0.1', String(f.port), name, ...pskArgs(f)]);
      assert.equal((await p.handshake()).suite, name);
      await post(p, f, `mbedtls ${name}`, suite);
      await p.quit();
    });
  }

  it('mbedTLS ECDHE-ECDSA CCM_8 with a four-certificate chain, both sides at MTU 200', async () => {
    const p = new CPeer('mbedtls-client', [
      '127.0.0.1',
      String(small.port),
      'TLS-ECDHE-ECDSA-WITH-AES-128-CCM-8',
      ...['cert', pki.caPath, chainPath, leafKeyPath, 'mtu', '200'],
    ]);
    assert.equal((await p.handshake()).suite, 'TLS-ECDHE-ECDSA-WITH-AES-128-CCM-8');
    await post(p, small, 'mbedtls chain mtu 200', 'TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8');
    const t = small.telemetry.find((x) => x.payload.toString() === 'mbedtls chain mtu 200');
    assert.equal(t?.session.credential.kind, 'x509');
    await p.quit();
  });

  it('mbedTLS with max_fragment_length 512 gets a 2,000-byte response block-wise, no message over 512', async () => {
    const p = new CPeer('mbedtls-client', [
      '127.0.0.1',
      String(f.port),
      'TLS-PSK-WITH-AES-128-CCM-8',
      ...pskArgs(f),
      ...['mfl', '512'],
    ]);
    await p.handshake();
    const { body, largest, blocks } = await fetchBig(p);
    assert.deepEqual(body, BIG);
    assert.ok(largest <= 512, `a CoAP message of ${largest} bytes`);
    assert.ok(blocks >= 4);
    await p.quit();
  });

  it('mbedTLS resumes its session (abbreviated handshake) with the same identity', async () => {
    const p = new CPeer('mbedtls-client', [
      '127.0.0.1',
      String(f.port),
      'TLS-PSK-WITH-AES-128-CCM-8',
      ...pskArgs(f),
    ]);
    await p.handshake();
    const resumedBefore = f.server.stats.handshakesResumed;
    assert.equal((await p.resume()).resumed, true);
    assert.equal(f.server.stats.handshakesResumed, resumedBefore + 1);
    await post(p, f, 'mbedtls resumed', 'TLS_PSK_WITH_AES_128_CCM_8');
    const t = f.telemetry.find((x) => x.payload.toString() === 'mbedtls resumed');
    assert.equal(t?.session.resumed, true);
    assert.equal(
      t?.session.credential.kind === 'psk' && t.session.credential.identity.toString(),
      PSK_IDENTITY,
    );
    await p.quit();
  });

  for (const [name, suite] of [
    ['ECDHE-PSK-AES128-GCM-SHA256', 'TLS_ECDHE_PSK_WITH_AES_128_GCM_SHA256'],
    ['PSK-CHACHA20-POLY1305', 'TLS_PSK_WITH_CHACHA20_POLY1305_SHA256'],
    ['ECDHE-PSK-CHACHA20-POLY1305', 'TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256'],
  ] as const) {
    it(`wolfSSL completes ${suite}, a CoAP exchange and a resumption`, async () => {
      const p = new CPeer('wolfssl-client', ['127.0.0.1', String(f.port), name, ...pskArgs(f)]);
      assert.equal((await p.handshake()).suite, name);
      await post(p, f, `wolfssl ${name}`, suite);
      assert.equal((await p.resume()).resumed, true);
      await post(p, f, `wolfssl ${name} resumed`, suite);
      await p.quit();
    });
  }

  it('wolfSSL ECDHE-ECDSA with a four-certificate chain; the server’s flight fragmented at MTU 200', async () => {
    const p = new CPeer('wolfssl-client', [
      '127.0.0.1',
      String(small.port),
      'ECDHE-ECDSA-AES128-CCM-8:ECDHE-ECDSA-CHACHA20-POLY1305',
      ...['cert', pki.caPath, chainPath, leafKeyPath],
    ]);
    const { suite } = await p.handshake();
    assert.match(suite, /ECDHE-ECDSA/);
    assert.equal((await p.request(coapPost('wolfssl chain'))).code, '2.04');
    await p.quit();
  });
});

describe('resumption refused to a device that may no longer hold a session (the gateway’s sensor listener)', () => {
  const SENSOR = { identity: 'resume-sensor', key: 'resume-sensor-key-0123456789' };
  let core: Core;
  let listener: SensorListener;
  let dir: string;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'portcullis-resume-gw-'));
    const config = parseConfig(
      { dataDir: join(dir, 'var'), dtls: { host: '127.0.0.1', port: 0 }, anomaly: { enabled: false } },
      dir,
    );
    core = Core.open(config, systemClock);
    const logger = createLogger(
      'error',
      new Writable({
        write(_c, _e, cb) {
          cb();
        },
      }),
    );
    listener = await startSensorListener(core, new Uplink(core.store, null, systemClock, logger), logger);
  });
  after(async () => {
    await listener.close();
    core.close();
    rmSync(dir, { recursive: true, force: true });
  });

  function addSensor(id: string): string[] {
    core.identity.addPskDevice(
      { id, pskIdentity: `${SENSOR.identity}-${id}`, pskHex: Buffer.from(SENSOR.key).toString('hex') },
      'test',
    );
    return [
      '127.0.0.1',
      String(listener.address.port),
      'TLS-PSK-WITH-AES-128-CCM-8',
      ...['psk', `${SENSOR.identity}-${id}`, Buffer.from(SENSOR.key).toString('hex')],
    ];
  }

  it('resumes an active sensor (the control)', async () => {
    const p = new CPeer('mbedtls-client', addSensor('active'));
    await p.handshake();
    assert.equal((await p.resume()).resumed, true);
    await p.quit();
  });

  for (const [what, act] of [
    ['decommissioned', (id: string) => core.identity.decommission(id, 'test')],
    [
      'isolated (quarantine)',
      (id: string) => core.identity.quarantine(id, { mode: 'isolate', reason: 'test' }, 'test'),
    ],
  ] as const) {
    it(`refuses to resume a ${what} sensor: its attempt becomes a full handshake that fails`, async () => {
      const id = what.split(' ')[0] as string;
      const p = new CPeer('mbedtls-client', addSensor(id));
      await p.handshake();
      const resumedBefore = listener.server.stats.handshakesResumed;
      act(id);
      await assert.rejects(p.resume(), /handshake failed: ERR handshake/);
      assert.equal(listener.server.stats.handshakesResumed, resumedBefore);
      await p.quit();
    });
  }
});
