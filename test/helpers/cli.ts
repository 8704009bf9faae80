import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';

export const PORTCULLIS_BIN = fileURLToPath(new URL('../../bin/portcullis.js', import.meta.url));

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Run inside this network namespace (`ip netns exec`), as the appliance's gateway namespace. */
  netns?: string;
  /** Written to the command's stdin (a password, say); stdin is closed without it. */
  input?: string;
  /** Flags for node itself, before bin/portcullis.js (the gateway unit's, in a bench). */
  nodeArgs?: string[];
}

/** Run the real `portcullis` command as a user would, in its own process. */
export async function runCli(args: string[], opts: CliOptions = {}): Promise<CliResult> {
  const child = spawnCli(args, opts);
  child.stdin?.end(opts.input);
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const [code] = (await once(child, 'close')) as [number | null];
  return { code, stdout, stderr };
}

export function spawnCli(args: string[], opts: CliOptions = {}): ChildProcess {
  const argv = [process.execPath, ...(opts.nodeArgs ?? []), PORTCULLIS_BIN, ...args];
  if (opts.netns) argv.unshift('ip', 'netns', 'exec', opts.netns);
  const [cmd, ...rest] = argv as [string, ...string[]];
  return spawn(cmd, rest, {
    cwd: opts.cwd,
    env: { ...process.env, PORTCULLIS_CONFIG: undefined, ...opts.env },
    stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
  });
}

/** Resolve with the first stdout line for which `match` returns a value. */
export function waitForLine<T>(
  child: ChildProcess,
  match: (line: string) => T | undefined,
  timeoutMs = 20_000,
): Promise<T> {
  return new Promise((resolve, reject) => {
    let buf = '';
    let errBuf = '';
    const timer = setTimeout(
      () => reject(new Error(`timed out waiting for output; stderr: ${errBuf}`)),
      timeoutMs,
    );
    const onExit = (code: number | null) => {
      clearTimeout(timer);
      reject(new Error(`process exited (${code}) before expected output; stderr: ${errBuf}; stdout: ${buf}`));
    };
    child.stderr?.on('data', (d: Buffer) => {
      errBuf += d.toString();
    });
    child.once('exit', onExit);
    child.stdout?.on('data', function onData(d: Buffer) {
      buf += d.toString();
      let nl = buf.indexOf('\n');
      while (nl >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const v = match(line);
        if (v !== undefined) {
          clearTimeout(timer);
          child.removeListener('exit', onExit);
          child.stdout?.removeListener('data', onData);
          resolve(v);
          return;
        }
        nl = buf.indexOf('\n');
      }
    });
  });
}
