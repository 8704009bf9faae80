import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker, type WorkerOptions } from 'node:worker_threads';
import type { Logger } from './log.ts';

/** A module to run in a child process, and the Node flags it needs. */
export interface ChildModule {
  path: string;
  execArgv: string[];
}

/**
 * The module `name` beside the caller. The appliance runs compiled JavaScript (dist/…/name.js); only a caller that
 * is itself TypeScript (the tests and the benchmarks import the sources) gets `name.ts` through tsx — which is a
 * development dependency and is resolved only on that path.
 */
export function siblingModule(callerUrl: string, name: string): ChildModule {
  const fromSource = callerUrl.endsWith('.ts');
  return {
    path: fileURLToPath(new URL(`./${name}.${fromSource ? 'ts' : 'js'}`, callerUrl)),
    execArgv: fromSource ? ['--import', import.meta.resolve('tsx')] : ['--enable-source-maps'],
  };
}

/**
 * The module `name` beside the caller in a worker thread: compiled JavaScript in the appliance; from TypeScript
 * (tests, benchmarks) through tsx, which a worker thread does not inherit from the thread that made it, so it
 * registers it first.
 */
export function startWorkerThread(
  callerUrl: string,
  name: string,
  options: Pick<WorkerOptions, 'resourceLimits' | 'workerData'> = {},
): Worker {
  const mod = siblingModule(callerUrl, name);
  if (!mod.path.endsWith('.ts')) return new Worker(mod.path, options);
  const tsx = JSON.stringify(import.meta.resolve('tsx/esm/api'));
  const entry = JSON.stringify(pathToFileURL(mod.path).href);
  return new Worker(`import(${tsx}).then((t) => { t.register(); return import(${entry}); });`, {
    ...options,
    eval: true,
  });
}

/** Lines a child may log per minute before the rest are only counted: a crash-looping child must not flood the journal. */
const STDERR_LINES_PER_MINUTE = 20;

/**
 * Calls `onLine` for each line of a child's stderr, at most STDERR_LINES_PER_MINUTE a minute (the next admitted line
 * carries the count of those suppressed). Returns the last line that names an error — what a crash at start says
 * (e.g. "Error [ERR_MODULE_NOT_FOUND]: Cannot find package …"), for health and alerts.
 */
export function followStderr(
  stream: Readable,
  onLine: (line: string, suppressed: number) => void,
  now: () => number = Date.now,
): { lastError(): string | null } {
  let windowStart = 0;
  let inWindow = 0;
  let suppressed = 0;
  let lastError: string | null = null;
  createInterface({ input: stream }).on('line', (raw) => {
    const line = raw.slice(0, 500);
    if (/\b[A-Za-z]*Error\b|\bERR_/.test(line)) lastError = line.trim();
    const t = now();
    if (t - windowStart >= 60_000) {
      windowStart = t;
      inWindow = 0;
    }
    if (++inWindow > STDERR_LINES_PER_MINUTE) {
      suppressed++;
      return;
    }
    onLine(line, suppressed);
    suppressed = 0;
  });
  return { lastError: () => lastError };
}

/** A child's stderr into the log, one event a line, tagged with the worker's name. */
export function logChildStderr(
  stream: Readable,
  logger: Logger,
  worker: string,
): { lastError(): string | null } {
  return followStderr(stream, (line, suppressed) =>
    logger.warn({ worker, line, ...(suppressed > 0 ? { suppressed } : {}) }, 'worker stderr'),
  );
}
