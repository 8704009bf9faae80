/**
 * SIEM export to a real collector: rsyslogd (imtcp, GnuTLS) receives each alert as an RFC 5424 record over TLS
 * with octet-counted framing; a collector whose certificate the configured CA did not sign receives nothing.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { alertRecord, type Finding } from '../gateway/src/anomaly/index.ts';
import { SyslogSink } from '../gateway/src/anomaly/siem.ts';
import { createLogger } from '../gateway/src/log.ts';
import { freeTcpPort, waitForPort } from './helpers/mosquitto.ts';
import { makePki, type Party, type TestPki } from './helpers/pki.ts';
import { tempDir } from './helpers/tmp.ts';

async function startRsyslog(
  dir: string,
  caPath: string,
  server: Party,
): Promise<{ port: number; received: string; stop(): Promise<void> }> {
  const port = await freeTcpPort();
  const received = join(dir, 'received.log');
  const conf = join(dir, 'rsyslog.conf');
  writeFileSync(
    conf,
    [
      `global(workDirectory="${dir}" DefaultNetstreamDriver="gtls" DefaultNetstreamDriverCAFile="${caPath}"`,
      `  DefaultNetstreamDriverCertFile="${server.certPath}" DefaultNetstreamDriverKeyFile="${server.keyPath}")`,
      'module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="anon")',
      `input(type="imtcp" port="${port}" address="127.0.0.1")`,
      `action(type="omfile" file="${received}" template="RSYSLOG_SyslogProtocol23Format")`,
      '',
    ].join('\n'),
  );
  const child: ChildProcess = spawn('rsyslogd', ['-n', '-f', conf, '-i', join(dir, 'rsyslogd.pid')], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  await waitForPort(port, 10_000).catch((err: Error) => {
    child.kill('SIGKILL');
    throw new Error(`rsyslogd did not listen: ${err.message}; ${stderr}`);
  });
  return {
    port,
    received,
    stop: async () => {
      if (child.exitCode !== null) return;
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      await exited;
    },
  };
}

const finding: Finding = {
  ts: Date.UTC(2026, 10, 25, 3, 14),
  windowStart: Date.UTC(2026, 10, 25, 3, 13),
  device: 'boiler-3',
  score: 42.5,
  severity: 'high',
  reasons: [
    {
      feature: 'flood',
      severity: 'high',
      score: 42.5,
      observed: '900 messages in 60 s',
      expected: '1 ± 0.5',
      text: 'message flood: 900 messages in 60 s, expected 1 ± 0.5 "quoted" [bracket]',
    },
  ],
};

async function waitForFile(file: string, predicate: (s: string) => boolean, ms = 10_000): Promise<string> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (existsSync(file)) {
      const s = readFileSync(file, 'utf8');
      if (predicate(s)) return s;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return existsSync(file) ? readFileSync(file, 'utf8') : '';
}

describe('SIEM export over syslog/TLS to rsyslog', () => {
  let pki: TestPki;
  before(() => {
    pki = makePki();
  });
  after(() => pki.dispose());

  it('delivers each alert as one RFC 5424 record with structured data and the JSON record as message', async (t) => {
    const dir = tempDir(t);
    const collector = await startRsyslog(dir, pki.caPath, pki.broker);
    t.after(() => collector.stop());
    const sink = new SyslogSink(
      { host: '127.0.0.1', port: collector.port, tls: { caFile: pki.caPath } },
      createLogger('fatal'),
    );
    sink.send(alertRecord(finding, 7, 'quarantine'));
    sink.send(alertRecord({ ...finding, device: 'boiler-4', severity: 'medium' }, 8, 'alert'));
    const text = await waitForFile(collector.received, (s) => s.trim().split('\n').length >= 2);
    await sink.close();
    const lines = text.trim().split('\n');
    assert.equal(lines.length, 2, text);
    // <PRI>1 TIMESTAMP HOST APP PROCID MSGID [SD] MSG — facility 14 (log alert), severity 2 (critical) for high.
    assert.match(
      lines[0] as string,
      /^<114>1 2026-11-25T03:14:00(\.000)?Z \S+ portcullis - ALERT \[portcullis-alert@32473 alertId="7" device="boiler-3" severity="high" score="42.5" kinds="flood" response="quarantine"\] /,
    );
    assert.match(lines[1] as string, /^<116>1 .* severity="medium"/);
    const json = JSON.parse((lines[0] as string).slice((lines[0] as string).indexOf('{')));
    assert.equal(json.type, 'portcullis.alert');
    assert.equal(json.reasons[0].text, finding.reasons[0]?.text);
  });

  it('sends nothing to a collector whose certificate the configured CA did not sign', async (t) => {
    const dir = tempDir(t);
    const impostor = await startRsyslog(dir, pki.caPath, pki.rogueBroker);
    t.after(() => impostor.stop());
    const sink = new SyslogSink(
      { host: '127.0.0.1', port: impostor.port, tls: { caFile: pki.caPath } },
      createLogger('fatal'),
    );
    sink.send(alertRecord(finding, 9, 'alert'));
    await new Promise((r) => setTimeout(r, 1500));
    await sink.close();
    assert.equal(existsSync(impostor.received) ? readFileSync(impostor.received, 'utf8') : '', '');
  });
});
