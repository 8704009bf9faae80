import { execFileSync } from 'node:child_process';

/** Runs a key tool (openssl, tpm2-tools) and returns its stdout; throws with its stderr attached. */
export function runTool(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  input?: Buffer | string,
): Buffer {
  return execFileSync(cmd, args, { env, input, stdio: ['pipe', 'pipe', 'pipe'], timeout: 30_000 });
}

/** The first non-empty line a failed tool printed (its stderr, else the error message): enough to say why. */
export function firstErrorLine(err: unknown): string {
  const e = err as { stderr?: Buffer; message?: string };
  const text = e.stderr?.toString().trim() || e.message || String(err);
  return text.split('\n').find((l) => l.trim() !== '') ?? text;
}
