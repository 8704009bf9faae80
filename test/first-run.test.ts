/**
 * A site's first run in the README's order (issue 28): the config names the uplink certificate before it
 * exists, `uplink csr` runs with that config, the gateway may start before the signed certificate is in place
 * (it waits, sends nothing, queues), and connects once the certificate appears. An uplink that cannot reach its
 * broker says so once per attempt, not twice. Real mosquitto (client certificates required), libcoap sensor.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { copyFileSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { watchCertificate } from '../gateway/src/uplink/certificate-watch.ts';
import { runCli, spawnCli, waitForLine } from './helpers/cli.ts';
import { type Broker, freeTcpPort, startBroker } from './helpers/mosquitto.ts';
import { runPeer } from './helpers/peers.ts';
import { makePki, type TestPki } from './helpers/pki.ts';
import { startSubscriber } from './helpers/subscriber.ts';
import { tempDir } from './helpers/tmp.ts';

interface LogLine {
  msg?: string;
  dtls?: string;
  err?: string;
}

/** Starts the gateway and collects its JSON log lines; resolves once it reports itself started. */
async function start(
  config: string,
  cwd: string,
): Promise<{ child: ChildProcess; log: LogLine[]; port: number }> {
  const child = spawnCli(['--config', config, 'start'], { cwd });
  const log: LogLine[] = [];
  let buf = '';
  child.stdout?.on('data', (d: Buffer) => {
    buf += d.toString();
    const lines = buf.split('\n');
    buf = lines.pop() ?? '';
    for (const l of lines) {
      try {
        log.push(JSON.parse(l) as LogLine);
      } catch {
        // not a log line
      }
    }
  });
  const dtls = await waitForLine(child, (line) => {
    try {
      const o = JSON.parse(line) as LogLine;
      return o.msg === 'gateway started' ? o.dtls : undefined;
    } catch {
      return undefined;
    }
  });
  return { child, log, port: Number(String(dtls).split(':')[1]) };
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  await exited;
}

async function until(pred: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('watchCertificate', () => {
  it('reports the certificate once, only when it parses whole (a half-copied PEM is not there yet)', async (t) => {
    const pki = makePki();
    t.after(() => pki.dispose());
    const dir = tempDir(t);
    const file = join(dir, 'uplink.pem');
    const found: Buffer[] = [];
    const w = watchCertificate(file, (pem) => found.push(pem), 20);
    t.after(() => w.close());
    const pem = readFileSync(pki.client.certPath);
    writeFileSync(file, pem.subarray(0, pem.length / 2));
    await new Promise((r) => setTimeout(r, 150));
    assert.equal(found.length, 0, 'half a certificate');
    writeFileSync(file, pem);
    await until(() => found.length > 0, 'the certificate');
    writeFileSync(file, pem);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(found.length, 1, 'once');
    assert.deepEqual(found[0], pem);
  });
});

describe('first run in the README order: config, uplink csr, start, certificate later', () => {
  let pki: TestPki;
  let broker: Broker;
  before(async () => {
    pki = makePki();
    broker = await startBroker({ caPath: pki.caPath, server: pki.broker });
  });
  after(async () => {
    await broker?.dispose();
    pki?.dispose();
  });

  it('accepts a config whose uplink.certFile does not exist yet, makes the CSR, waits for the certificate and then delivers what queued', async (t) => {
    const dir = tempDir(t);
    const config = join(dir, 'config.yaml');
    writeFileSync(
      config,
      [
        'ui: {port: 0}',
        'dtls: {host: 127.0.0.1, port: 0}',
        'uplink:',
        `  url: ${broker.url}`,
        `  caFile: ${pki.caPath}`,
        '  certFile: uplink.pem # signed later',
        '  clientId: first-run',
        '  topicPrefix: site-1',
        '  reconnect: {minSeconds: 0.2, maxSeconds: 1}',
        '',
      ].join('\n'),
    );
    const cli = (...args: string[]) => runCli(['--config', config, ...args], { cwd: dir });
    assert.equal((await cli('config', 'check')).code, 0, 'a certificate still to come is no config error');
    const csr = await cli('uplink', 'csr', '--subject', 'CN=first-run');
    assert.equal(csr.code, 0, csr.stderr);
    assert.match(csr.stdout, /-----BEGIN CERTIFICATE REQUEST-----/);
    const add = await cli('device', 'add', 's1', '--psk-identity', 's1', '--psk-text', 'sixteen byte key');
    assert.equal(add.code, 0, add.stderr);

    const gw = await start(config, dir);
    t.after(() => stop(gw.child));
    assert.ok(
      gw.log.some((l) => /waiting for certificate/.test(l.msg ?? '')),
      'the uplink says what it waits for',
    );
    const compliance = JSON.parse((await cli('compliance', '--json')).stdout) as {
      findings: { provision: string; evidence: string[] }[];
    };
    assert.ok(
      compliance.findings
        .find((f) => f.provision === '5.5')
        ?.evidence.some((e) => /no client certificate yet/.test(e)),
    );
    // A reading while the certificate is missing is acknowledged and queued, and nothing is sent (fail closed).
    const sub = await startSubscriber(pki, broker, 'site-1/#');
    t.after(() => sub.stop());
    const post = await runPeer('coap-client-openssl', [
      ...['-u', 's1', '-k', 'sixteen byte key', '-m', 'post', '-e', '{"t":1}', '-B', '5'],
      `coaps://127.0.0.1:${gw.port}/telemetry`,
    ]);
    assert.doesNotMatch(post.stdout.toString(), /WARN|ERR|^4\./m);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(sub.messages.length, 0);
    assert.ok(!gw.log.some((l) => l.msg === 'uplink connected'));

    // The cloud operator signs; the technician copies the certificate in (atomically here: a copy in place
    // is read only once it parses whole).
    const signed = pki.signCsr(csr.stdout, 'first-run');
    mkdirSync(join(dir, 'incoming'));
    copyFileSync(signed, join(dir, 'incoming', 'uplink.pem'));
    renameSync(join(dir, 'incoming', 'uplink.pem'), join(dir, 'uplink.pem'));
    await until(() => gw.log.some((l) => l.msg === 'uplink connected'), 'the uplink to connect');
    assert.ok(gw.log.some((l) => /uplink certificate found/.test(l.msg ?? '')));
    await sub.waitFor((m) => m.some((x) => x.topic === 'site-1/devices/s1/telemetry'), 'the queued reading');
    assert.equal(
      sub.messages.find((x) => x.topic === 'site-1/devices/s1/telemetry')?.payload.toString(),
      '{"t":1}',
    );
  });

  it('still refuses a certFile that exists but is not a readable file (exit 2, key path named)', async (t) => {
    const dir = tempDir(t);
    mkdirSync(join(dir, 'uplink.pem'));
    const config = join(dir, 'config.yaml');
    writeFileSync(config, `uplink: {url: ${broker.url}, caFile: ${pki.caPath}, certFile: uplink.pem}\n`);
    const r = await runCli(['--config', config, 'config', 'check'], { cwd: dir });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /uplink\.certFile.*exists but is not a readable file/);
  });

  it('logs an uplink error once per failed connection attempt, not twice', async (t) => {
    const dir = tempDir(t);
    const config = join(dir, 'config.yaml');
    const closedPort = await freeTcpPort();
    const base = [
      'ui: {port: 0}',
      'dtls: {host: 127.0.0.1, port: 0}',
      'uplink:',
      `  url: mqtts://127.0.0.1:${closedPort}`,
      `  caFile: ${pki.caPath}`,
      // One attempt in the test's window: the next is at least 30 s away.
      '  reconnect: {minSeconds: 60, maxSeconds: 60}',
    ];
    writeFileSync(config, `${base.join('\n')}\n`);
    const csr = await runCli(['--config', config, 'uplink', 'csr', '--subject', 'CN=x'], { cwd: dir });
    writeFileSync(config, `${[...base, `  certFile: ${pki.signCsr(csr.stdout, 'refused')}`].join('\n')}\n`);
    const gw = await start(config, dir);
    t.after(() => stop(gw.child));
    await until(() => gw.log.some((l) => l.msg === 'uplink error'), 'the uplink error');
    await new Promise((r) => setTimeout(r, 500));
    const errors = gw.log.filter((l) => l.msg === 'uplink error');
    assert.equal(errors.length, 1, JSON.stringify(errors));
    assert.match(errors[0]?.err ?? '', /ECONNREFUSED/);
  });
});
