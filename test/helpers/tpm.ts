import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freeTcpPort, waitForPort } from './mosquitto.ts';

export interface TestTpm {
  /** TCTI string for tpm2-tools / the tpm2 provider / the gateway config. */
  tcti: string;
  /** What a process needs in its environment to reach the private D-Bus the resource manager is on. */
  env: Record<string, string>;
  /** Takes the TPM away (the resource manager and the simulator both stop). */
  stop(): Promise<void>;
}

async function freeTcpPortPair(): Promise<number> {
  for (;;) {
    const p = await freeTcpPort();
    const s = createServer();
    const ok = await new Promise<boolean>((resolve) => {
      s.once('error', () => resolve(false));
      s.listen(p + 1, '127.0.0.1', () => resolve(true));
    });
    if (ok) {
      s.close();
      await once(s, 'close');
      return p;
    }
  }
}

function readLine(child: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = '';
    child.stdout?.on('data', (d: Buffer) => {
      buf += d.toString();
      const nl = buf.indexOf('\n');
      if (nl >= 0) resolve(buf.slice(0, nl).trim());
    });
    child.once('exit', (code) => reject(new Error(`exited ${code} before printing`)));
  });
}

/**
 * A real TPM 2.0 simulator (swtpm) behind the real resource manager (tpm2-abrmd) on a private session D-Bus:
 * the raw swtpm socket has no resource manager and runs out of object slots.
 */
export async function startTpm(): Promise<TestTpm> {
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-swtpm-'));
  // The swtpm TCTI finds the control channel at port + 1.
  const port = await freeTcpPortPair();
  const ctrl = port + 1;
  const children: ChildProcess[] = [];
  const swtpm = spawn(
    'swtpm',
    [
      'socket',
      '--tpm2',
      '--tpmstate',
      `dir=${dir}`,
      '--server',
      `type=tcp,port=${port},bindaddr=127.0.0.1`,
      '--ctrl',
      `type=tcp,port=${ctrl},bindaddr=127.0.0.1`,
      '--flags',
      'not-need-init,startup-clear',
    ],
    { stdio: 'ignore' },
  );
  children.push(swtpm);
  // tpm2-abrmd gives up at once if the simulator is not listening yet.
  await waitForPort(port, 10_000);
  const dbus = spawn('dbus-daemon', ['--session', '--nofork', '--print-address=1'], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  children.push(dbus);
  const address = await readLine(dbus);
  const busName = `com.intel.tss2.Tabrmd.portcullis${randomBytes(4).toString('hex')}`;
  const env = { DBUS_SESSION_BUS_ADDRESS: address };
  const abrmd = spawn(
    'tpm2-abrmd',
    ['--session', '--allow-root', `--dbus-name=${busName}`, `--tcti=swtpm:host=127.0.0.1,port=${port}`],
    { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } },
  );
  children.push(abrmd);
  let abrmdLog = '';
  abrmd.stderr?.on('data', (d: Buffer) => {
    abrmdLog += d.toString();
  });
  const tcti = `tabrmd:bus_type=session,bus_name=${busName}`;
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      execFileSync('tpm2_getrandom', ['4'], {
        env: { ...process.env, ...env, TPM2TOOLS_TCTI: tcti },
        stdio: 'pipe',
      });
      break;
    } catch (err) {
      if (Date.now() > deadline)
        throw new Error(`TPM did not come up: ${String(err)}; tpm2-abrmd: ${abrmdLog}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return {
    tcti,
    env,
    async stop() {
      for (const c of children.reverse()) {
        if (c.exitCode !== null || c.signalCode) continue;
        const exited = once(c, 'exit');
        c.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
