import type { ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli, spawnCli, waitForLine } from './cli.ts';
import type { UnitStart } from './gateway-unit.ts';
import type { Broker } from './mosquitto.ts';
import type { TestPki } from './pki.ts';

export async function freeUdpPort(): Promise<number> {
  const s = createSocket('udp4');
  s.bind(0, '127.0.0.1');
  await once(s, 'listening');
  const { port } = s.address();
  s.close();
  return port;
}

export interface GatewayHome {
  dir: string;
  config: string;
  dtlsPort: number;
  /** Runs `portcullis --config <config> ...args` and fails loudly on a non-zero exit. */
  cli(args: string[]): Promise<string>;
  start(): Promise<RunningGateway>;
  dispose(): void;
}

export interface RunningGateway {
  child: ChildProcess;
  /** Every stdout line so far (pino JSON). */
  log: string[];
  /** Everything written to stderr so far (the console: first-boot setup code, fatal errors). */
  stderr(): string;
  stop(): Promise<number | null>;
  kill(): Promise<void>;
}

/**
 * A gateway home as a technician would set one up: config file, uplink key created by the gateway,
 * its CSR signed by the cloud CA, the certificate put in place — all through the real CLI.
 */
export async function makeGatewayHome(
  pki: TestPki,
  broker: Broker,
  clientId: string,
  opts: {
    tpm?: { tcti: string; env: Record<string, string> };
    dtlsLimits?: string;
    /** uplink.topicPrefix (default site-1): several gateways on one broker need their own. */
    topicPrefix?: string;
    /** More top-level YAML lines (a `fleet:` section, say). */
    extraConfig?: string[];
    /** uplink.queue as a YAML flow mapping (`{maxMessages: 20}`): a small bound for the backpressure test. */
    uplinkQueue?: string;
    /** Start the gateway as its systemd unit does (node flags, environment): for benches (gateway-unit.ts). */
    unit?: UnitStart;
  } = {},
): Promise<GatewayHome> {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-gw-'));
  const dtlsPort = await freeUdpPort();
  const config = join(dir, 'config.yaml');
  const base = [
    `dataDir: ${join(dir, 'var')}`,
    'log: {level: info}',
    ...(opts.tpm ? [`keystore: {backend: tpm2, tcti: "${opts.tpm.tcti}"}`] : []),
    `dtls: {host: 127.0.0.1, port: ${dtlsPort}${opts.dtlsLimits ? `, limits: ${opts.dtlsLimits}` : ''}}`,
    'ui: {port: 0}',
    'uplink:',
    `  url: ${broker.url}`,
    `  caFile: ${pki.caPath}`,
    `  clientId: ${clientId}`,
    `  topicPrefix: ${opts.topicPrefix ?? 'site-1'}`,
    '  reconnect: {minSeconds: 0.2, maxSeconds: 1}',
    ...(opts.uplinkQueue ? [`  queue: ${opts.uplinkQueue}`] : []),
  ];
  writeFileSync(config, `${base.join('\n')}\n`);
  const cli = async (args: string[]) => {
    const r = await runCli(['--config', config, ...args], { cwd: dir, env: opts.tpm?.env });
    if (r.code !== 0) throw new Error(`portcullis ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    return r.stdout;
  };
  const csr = await cli(['uplink', 'csr', '--subject', `CN=${clientId}`]);
  const certFile = pki.signCsr(csr, clientId);
  writeFileSync(config, `${[...base, `  certFile: ${certFile}`, ...(opts.extraConfig ?? [])].join('\n')}\n`);
  return {
    dir,
    config,
    dtlsPort,
    cli,
    async start() {
      const child = spawnCli(['--config', config, 'start'], {
        cwd: dir,
        env: { ...opts.unit?.env, ...opts.tpm?.env },
        nodeArgs: opts.unit?.nodeArgs,
      });
      const log: string[] = [];
      let err = '';
      child.stderr?.on('data', (d: Buffer) => {
        err += d.toString();
      });
      let buf = '';
      child.stdout?.on('data', (d: Buffer) => {
        buf += d.toString();
        const lines = buf.split('\n');
        buf = lines.pop() ?? '';
        log.push(...lines);
      });
      await waitForLine(child, (line) => {
        try {
          return (JSON.parse(line) as { msg?: string }).msg === 'gateway started' ? true : undefined;
        } catch {
          return undefined;
        }
      });
      return {
        child,
        log,
        stderr: () => err,
        async stop() {
          // A killed child has signalCode set and exitCode null: its 'exit' is already past.
          if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
          const exited = once(child, 'exit');
          child.kill('SIGTERM');
          const [code] = (await exited) as [number | null];
          return code;
        },
        async kill() {
          if (child.exitCode !== null) return;
          const exited = once(child, 'exit');
          child.kill('SIGKILL');
          await exited;
        },
      };
    },
    dispose: () => rmSync(dir, { recursive: true, force: true }),
  };
}
