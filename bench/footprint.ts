/**
 * `npm run bench -- footprint`: what the shipped runtime costs a Raspberry Pi, against yardsticks in the same run —
 * bare `node -e 0` for the CLI (wall time and peak memory, runs alternated so drift hits both alike), mosquitto
 * for an idle daemon's resident memory:
 * - `portcullis --version` and `portcullis device list` (wall, peak RSS), as ratios to bare node;
 * - the idle gateway on defaults (free ports), with its child processes: resident memory, start to /healthz;
 * - the same with the uplink connected to mosquitto (mutual TLS) and `--sessions` idle DTLS sessions.
 * Memory is read after `--settle` seconds of quiet (default 30): V8 keeps the young generation it grew during
 * start-up until its memory reducer runs on an idle process, which takes some seconds — an appliance is idle for
 * hours, so the settled figure is the one that matters; the start-up peak is what `--settle 1` shows.
 * The gateway is started as its systemd unit starts it (ExecStart='s node flags, Environment=): the figure is the
 * appliance's process, not a bare `node bin/portcullis.js start` the appliance never runs.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { systemClock } from '../gateway/src/clock.ts';
import { resolveConfig } from '../gateway/src/config/index.ts';
import { Core } from '../gateway/src/core.ts';
import { PORTCULLIS_BIN } from '../test/helpers/cli.ts';
import type { TestDtlsClient } from '../test/helpers/dtls-test-client.ts';
import { freeUdpPort, makeGatewayHome } from '../test/helpers/gateway.ts';
import { gatewayUnitStart, type UnitStart } from '../test/helpers/gateway-unit.ts';
import { startBroker } from '../test/helpers/mosquitto.ts';
import { makePki } from '../test/helpers/pki.ts';
import { parseOptions, round } from './lib/load.ts';
import { memory } from './lib/proc.ts';
import { openPskSessions } from './lib/sessions.ts';

const log = (msg: string) => process.stderr.write(`[bench footprint] ${msg}\n`);
const MiB = 1024 * 1024;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

/** One run of a command: wall seconds and peak RSS (MiB) from GNU time's own accounting. */
function timed(argv: string[], cwd: string): { wall: number; peakMiB: number } {
  const r = spawnSync('/usr/bin/time', ['-f', '%e %M', ...argv], { cwd, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${argv.join(' ')} failed: ${r.stderr}`);
  const [wall, kb] = (r.stderr.trim().split('\n').pop() ?? '').split(' ').map(Number);
  return { wall: wall as number, peakMiB: round((kb as number) / 1024, 1) };
}

/** `runs` alternations of the command and bare node: medians of each and of the pairwise ratios. */
function againstNode(argv: string[], cwd: string, runs: number) {
  const cmd: { wall: number; peakMiB: number }[] = [];
  const bare: { wall: number; peakMiB: number }[] = [];
  timed(argv, cwd); // warm the page cache
  for (let i = 0; i < runs; i++) {
    cmd.push(timed(argv, cwd));
    bare.push(timed([process.execPath, '-e', '0'], cwd));
  }
  return {
    wallSeconds: round(median(cmd.map((r) => r.wall)), 3),
    peakMiB: median(cmd.map((r) => r.peakMiB)),
    nodeWallSeconds: round(median(bare.map((r) => r.wall)), 3),
    nodePeakMiB: median(bare.map((r) => r.peakMiB)),
    wallRatio: round(
      median(cmd.map((r, i) => r.wall / Math.max(0.001, (bare[i] as { wall: number }).wall))),
      2,
    ),
  };
}

/** Resident memory of a process and all its descendants (the uplink and poller workers are children). */
function treeRssMiB(pid: number): number {
  const children = spawnSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' })
    .stdout.split('\n')
    .filter(Boolean)
    .map(Number);
  return memory(pid).rss / MiB + children.reduce((sum, c) => sum + treeRssMiB(c), 0);
}

function healthz(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request(
      { host: '127.0.0.1', port, path: '/healthz', rejectUnauthorized: false, timeout: 1000 },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode === 200));
      },
    );
    req.on('error', () => resolve(false));
    req.end();
  });
}

async function idleGateway(dir: string, settleSeconds: number, unit: UnitStart) {
  const uiPort = 20_000 + Math.floor(Math.random() * 20_000);
  writeFileSync(
    join(dir, 'config.yaml'),
    `ui: { port: ${uiPort} }\ndtls: { port: ${await freeUdpPort()} }\n`,
  );
  // First start makes the identity CA and UI certificate; the figure is for an ordinary (re)start.
  for (const phase of ['first', 'measured'] as const) {
    const t0 = performance.now();
    const child: ChildProcess = spawn(
      process.execPath,
      [...unit.nodeArgs, PORTCULLIS_BIN, '--config', 'config.yaml', 'start'],
      { cwd: dir, stdio: 'ignore', env: { ...process.env, PORTCULLIS_CONFIG: undefined, ...unit.env } },
    );
    while (!(await healthz(uiPort))) {
      if (child.exitCode !== null) throw new Error('the gateway exited');
      await new Promise((r) => setTimeout(r, 20));
    }
    const startToHealthz = (performance.now() - t0) / 1000;
    if (phase === 'first') {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
      continue;
    }
    await new Promise((r) => setTimeout(r, settleSeconds * 1000));
    const rss = treeRssMiB(child.pid as number);
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    return { startToHealthzSeconds: round(startToHealthz, 3), residentMiB: round(rss, 1) };
  }
  throw new Error('unreachable');
}

async function loadedGateway(sessions: number, settleSeconds: number, unit: UnitStart) {
  const pki = makePki();
  const broker = await startBroker({ caPath: pki.caPath, server: pki.broker });
  // Every simulated sensor shares loopback: lift the per-source caps a real site's sensors would not hit.
  const home = await makeGatewayHome(pki, broker, 'gw-footprint', {
    dtlsLimits:
      '{handshakesPerSecondPerSource: 100000, maxHandshakesPerSource: 1000, maxHandshakesPerPrefix: 1000, maxSessionsPerSource: 100000}',
    unit,
  });
  const clients: TestDtlsClient[] = [];
  try {
    const keyOf = (i: number) => Buffer.from(`footprint-sensor-key-${String(i).padStart(6, '0')}`);
    const core = Core.open(resolveConfig(home.config).config, systemClock);
    try {
      for (let i = 0; i < sessions; i++) {
        core.identity.addPskDevice(
          { id: `s${i}`, pskIdentity: `s${i}`, pskHex: keyOf(i).toString('hex') },
          'bench',
        );
      }
    } finally {
      core.close();
    }
    // As for the idle figure, an ordinary restart is measured: the first start also makes the gateway's own
    // certificates (their CSRs load @peculiar/x509 once, until the next restart).
    await (await home.start()).stop();
    const gateway = await home.start();
    const pid = gateway.child.pid as number;
    // The broker this bench just started is the newest mosquitto process.
    const brokerPid = Number(spawnSync('pgrep', ['-n', 'mosquitto'], { encoding: 'utf8' }).stdout.trim());
    const deadline = Date.now() + 20_000;
    while (!gateway.log.some((l) => l.includes('uplink connected')) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
    }
    await new Promise((r) => setTimeout(r, settleSeconds * 1000));
    const connectedOnly = treeRssMiB(pid);
    log(`opening ${sessions} DTLS sessions`);
    clients.push(...(await openPskSessions(home.dtlsPort, sessions, 16, keyOf)));
    await new Promise((r) => setTimeout(r, settleSeconds * 1000));
    const withSessions = treeRssMiB(pid);
    const mosquittoMiB = Number.isFinite(brokerPid) && brokerPid > 0 ? memory(brokerPid).rss / MiB : null;
    await gateway.stop();
    return {
      uplinkConnectedMiB: round(connectedOnly, 1),
      [`uplinkConnectedAnd${sessions}SessionsMiB`]: round(withSessions, 1),
      mosquittoMiB: mosquittoMiB === null ? null : round(mosquittoMiB, 1),
    };
  } finally {
    for (const c of clients) c.close();
    await broker.dispose();
    home.dispose();
    pki.dispose();
  }
}

export async function footprintBench(argv: string[]): Promise<unknown> {
  const o = parseOptions('footprint', argv, { runs: 7, sessions: 1000, settle: 30 });
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-footprint-'));
  const unit = gatewayUnitStart();
  try {
    log('portcullis --version vs node -e 0');
    const version = againstNode([process.execPath, PORTCULLIS_BIN, '--version'], dir, o.runs);
    // device list needs a data directory: made once, outside the measurement.
    spawnSync(process.execPath, [PORTCULLIS_BIN, 'device', 'list'], { cwd: dir });
    log('portcullis device list vs node -e 0');
    const deviceList = againstNode([process.execPath, PORTCULLIS_BIN, 'device', 'list'], dir, o.runs);
    log('idle gateway on defaults');
    const gwDir = mkdtempSync(join(tmpdir(), 'portcullis-footprint-gw-'));
    const idle = await idleGateway(gwDir, o.settle, unit).finally(() =>
      rmSync(gwDir, { recursive: true, force: true }),
    );
    log(`gateway with the uplink connected and ${o.sessions} idle DTLS sessions`);
    const loaded = await loadedGateway(o.sessions, o.settle, unit);
    return {
      gatewayStartedAs: unit,
      version,
      deviceList,
      idleGateway: idle,
      loadedGateway: loaded,
      targets: {
        versionWallRatio: '≤ 3',
        versionPeakMiB: '≤ 70',
        deviceListWallRatio: '≤ 6',
        idleGatewayMiB: '≤ 80',
        loadedGatewayMiB: '≤ 110',
        startToHealthzSeconds: '≤ 1',
      },
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
