/**
 * Certificate and raw-public-key sensors end to end: a manufacturer CA is trusted, a sensor with a chain to it
 * becomes pending on first contact and gets nothing through until a technician approves it; a raw public key
 * works only once pinned. Peer: libcoap's gnutls build (the only Debian client with raw public keys).
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startE2e, stopE2e } from './helpers/e2e.ts';
import type { GatewayHome, RunningGateway } from './helpers/gateway.ts';
import type { Broker } from './helpers/mosquitto.ts';
import { runPeer } from './helpers/peers.ts';
import type { TestPki } from './helpers/pki.ts';
import type { Subscriber } from './helpers/subscriber.ts';

describe('end to end: certificate and raw-public-key sensors', () => {
  let pki: TestPki;
  let broker: Broker;
  let home: GatewayHome;
  let gw: RunningGateway;
  let sub: Subscriber;
  const post = (auth: string[], payload: string) =>
    runPeer('coap-client-gnutls', [
      ...auth,
      '-C',
      join(home.dir, 'var', 'tls', 'identity-ca.pem'),
      '-m',
      'post',
      '-e',
      payload,
      '-B',
      '5',
      `coaps://127.0.0.1:${home.dtlsPort}/telemetry`,
    ]);
  const cert = () => ['-c', pki.client.certPath, '-j', pki.client.keyPath];
  const delivered = (p: string) => sub.messages.some((m) => m.payload.toString() === p);

  before(async () => {
    ({ pki, broker, home, gw, sub } = await startE2e('gw-certs'));
  });
  after(() => stopE2e({ pki, broker, home, gw, sub }));

  it('refuses a certificate sensor before its manufacturer is trusted, and records nothing', async () => {
    const r = await post(cert(), 'untrusted maker');
    assert.match(r.stdout.toString() + r.stderr, /alert|fail/i);
    assert.equal((JSON.parse(await home.cli(['device', 'list', '--json'])) as unknown[]).length, 0);
  });

  it('makes a sensor of a trusted manufacturer pending, delivers nothing, then delivers after approval', async () => {
    await home.cli(['identity', 'trust', 'add', '--name', 'acme', '--ca', pki.caPath]);
    // The running gateway picks new anchors up within a second; until then the sensor is simply refused.
    const listDevices = async () =>
      JSON.parse(await home.cli(['device', 'list', '--json'])) as { id: string; state: string }[];
    const deadline = Date.now() + 10_000;
    let first = await post(cert(), 'before approval');
    while ((await listDevices()).length === 0 && Date.now() < deadline)
      first = await post(cert(), 'before approval');
    assert.match(first.stdout.toString() + first.stderr, /alert|fail/i);
    const devices = JSON.parse(await home.cli(['device', 'list', '--json'])) as {
      id: string;
      state: string;
    }[];
    assert.equal(devices.length, 1);
    assert.equal(devices[0]?.state, 'pending');
    const id = devices[0]?.id as string;
    assert.match(id, /^x509-[0-9a-f]{16}$/);

    await home.cli(['device', 'approve', id]);
    const second = await post(cert(), 'after approval');
    assert.equal(second.code, 0, second.stderr);
    await sub.waitFor(() => delivered('after approval'), 'the approved sensor’s message');
    assert.ok(!delivered('before approval'));
    assert.ok(!delivered('untrusted maker'));
    assert.equal(
      sub.messages.find((m) => m.payload.toString() === 'after approval')?.topic,
      `site-1/devices/${id}/telemetry`,
    );
    assert.match(
      sub.messages.find((m) => m.payload.toString() === 'after approval')?.properties ?? '',
      /credentialKind:x509/,
    );
  });

  it('never lets a decommissioned certificate sensor back in, not even as pending', async () => {
    const devices = JSON.parse(await home.cli(['device', 'list', '--json'])) as {
      id: string;
      credentialKind: string;
    }[];
    const id = devices.find((d) => d.credentialKind === 'x509')?.id as string;
    await home.cli(['device', 'decommission', id]);
    const r = await post(cert(), 'after decommission');
    assert.match(r.stdout.toString() + r.stderr, /alert|fail/i);
    const after = JSON.parse(await home.cli(['device', 'list', '--json'])) as { id: string; state: string }[];
    assert.deepEqual(
      after.filter((d) => d.id.startsWith('x509-')).map((d) => d.state),
      ['decommissioned'],
    );
    await new Promise((res) => setTimeout(res, 500));
    assert.ok(!delivered('after decommission'));
  });

  it('accepts a raw public key only once it is pinned', async () => {
    const before = await post(['-M', pki.stranger.ecKeyPath], 'unpinned key');
    assert.match(before.stdout.toString() + before.stderr, /access.denied|alert|fail/i);
    await home.cli(['device', 'add', 'rpk-1', '--rpk', pki.stranger.keyPath]);
    const after = await post(['-M', pki.stranger.ecKeyPath], 'pinned key');
    assert.equal(after.code, 0, after.stderr);
    await sub.waitFor(() => delivered('pinned key'), 'the pinned sensor’s message');
    assert.ok(!delivered('unpinned key'));
  });
});
