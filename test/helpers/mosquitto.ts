import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { chownSync, copyFileSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Party } from './pki.ts';

/** A free TCP port on loopback (free a moment ago). */
export async function freeTcpPort(): Promise<number> {
  const s = createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const { port } = s.address() as { port: number };
  s.close();
  await once(s, 'close');
  return port;
}

export async function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const c = connect(port, '127.0.0.1');
      c.once('connect', () => {
        c.destroy();
        resolve(true);
      });
      c.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`mosquitto did not listen on ${port}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface Broker {
  port: number;
  url: string;
  /** Starts (again) on the same port, with the same persistent state. */
  start(): Promise<void>;
  /** SIGTERM: mosquitto saves its persistent sessions on the way out. */
  stop(): Promise<void>;
  dispose(): Promise<void>;
}

/**
 * A real mosquitto 2.0 on loopback: TLS 1.3 only, client certificates required (mutual TLS), persistence on
 * so that sessions survive a restart within a test.
 */
export async function startBroker(opts: { caPath: string; server: Party }): Promise<Broker> {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-mosquitto-'));
  const port = await freeTcpPort();
  // mosquitto started as root drops to its own user: give it a private copy of what it must read and write.
  copyFileSync(opts.caPath, join(dir, 'ca.pem'));
  copyFileSync(opts.server.certPath, join(dir, 'server.pem'));
  copyFileSync(opts.server.keyPath, join(dir, 'server.key'));
  const conf = join(dir, 'mosquitto.conf');
  writeFileSync(
    conf,
    [
      'per_listener_settings false',
      'allow_anonymous true',
      'persistence true',
      `persistence_location ${dir}/`,
      `listener ${port} 127.0.0.1`,
      `cafile ${dir}/ca.pem`,
      `certfile ${dir}/server.pem`,
      `keyfile ${dir}/server.key`,
      'require_certificate true',
      'tls_version tlsv1.3',
      'max_queued_messages 100000',
      '',
    ].join('\n'),
  );
  if (process.getuid?.() === 0) {
    const uid = Number(execFileSync('id', ['-u', 'mosquitto']).toString());
    const gid = Number(execFileSync('id', ['-g', 'mosquitto']).toString());
    for (const f of ['', ...readdirSync(dir)]) chownSync(join(dir, f), uid, gid);
  }
  let child: ChildProcess | null = null;
  let log = '';
  const broker: Broker = {
    port,
    url: `mqtts://127.0.0.1:${port}`,
    async start() {
      const c = spawn('mosquitto', ['-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
      c.stdout?.on('data', (d: Buffer) => {
        log += d.toString();
      });
      c.stderr?.on('data', (d: Buffer) => {
        log += d.toString();
      });
      child = c;
      try {
        await waitForPort(port, 10_000);
      } catch (err) {
        throw new Error(`${(err as Error).message}: ${log}`);
      }
    },
    async stop() {
      const c = child;
      child = null;
      if (!c || c.exitCode !== null) return;
      const exited = once(c, 'exit');
      c.kill('SIGTERM');
      await exited;
    },
    async dispose() {
      await broker.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  await broker.start();
  return broker;
}
