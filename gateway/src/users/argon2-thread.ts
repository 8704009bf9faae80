import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';

/**
 * argon2id off the gateway's event loop. hash-wasm computes in WebAssembly on the thread that calls it: every
 * password check (a login, each re-authentication) held the whole gateway — DTLS, the uplink, the systemd
 * watchdog — for the hash's time, which on the appliance under emulation outlasted WatchdogSec and got the
 * gateway killed, and on a small board stalls sensors for a second per login. One worker thread does the hashing;
 * it is made on first use, kept while passwords are being checked and ended after a short idle time (it holds
 * the 19 MiB argon2 memory and the WebAssembly), and never keeps the process alive.
 */

const IDLE_MS = 15_000;

// Plain JavaScript with dynamic imports only (it runs as CommonJS or as a module alike), hash-wasm by its
// resolved file, and none of this process's Node flags (a loader, --input-type): the worker needs no loader.
const SOURCE = `
import('node:worker_threads').then(async ({ parentPort, workerData }) => {
  const m = await import(workerData.hashWasm);
  const hw = m.argon2id ? m : m.default;
  parentPort.on('message', ({ id, op, args }) => {
    const run = op === 'hash'
      ? hw.argon2id({ ...args, salt: new Uint8Array(args.salt) })
      : hw.argon2Verify(args);
    run.then(
      (value) => parentPort.postMessage({ id, value }),
      (err) => parentPort.postMessage({ id, error: String((err && err.message) || err) }),
    );
  });
});
`;

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
}

let worker: Worker | undefined;
let idle: NodeJS.Timeout | undefined;
let nextId = 0;
const pending = new Map<number, Pending>();

function failAll(err: Error): void {
  for (const p of pending.values()) p.reject(err);
  pending.clear();
}

function thread(): Worker {
  if (worker) return worker;
  const hashWasm = pathToFileURL(createRequire(import.meta.url).resolve('hash-wasm')).href;
  const w = new Worker(SOURCE, { eval: true, execArgv: [], workerData: { hashWasm } });
  w.unref();
  w.on('message', (m: { id: number; value?: unknown; error?: string }) => {
    const p = pending.get(m.id);
    if (!p) return;
    pending.delete(m.id);
    if (m.error !== undefined) p.reject(new Error(m.error));
    else p.resolve(m.value);
    if (pending.size === 0) {
      // Idle: it no longer keeps the process alive (a CLI command exits; a gateway ends it shortly).
      w.unref();
      idle = setTimeout(() => {
        if (pending.size === 0) void stopArgon2Thread();
      }, IDLE_MS);
      idle.unref();
    }
  });
  w.on('error', (err) => {
    if (worker === w) worker = undefined;
    failAll(err);
  });
  w.on('exit', () => {
    if (worker === w) worker = undefined;
    failAll(new Error('the password thread stopped'));
  });
  worker = w;
  return w;
}

function call(op: 'hash' | 'verify', args: Record<string, unknown>): Promise<unknown> {
  clearTimeout(idle);
  const id = nextId++;
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject });
    const w = thread();
    // A check under way keeps the process alive: a promise alone would not (a CLI could exit mid-hash).
    w.ref();
    w.postMessage({ id, op, args });
  });
}

/** argon2id of `password` with these parameters, as a PHC string; computed in the worker thread. */
export async function argon2idInThread(opts: {
  password: string;
  salt: Uint8Array;
  parallelism: number;
  iterations: number;
  memorySize: number;
  hashLength: number;
}): Promise<string> {
  return (await call('hash', { ...opts, salt: Array.from(opts.salt), outputType: 'encoded' })) as string;
}

/** Whether `password` matches the PHC string `hash`; computed in the worker thread. */
export async function argon2VerifyInThread(hash: string, password: string): Promise<boolean> {
  return (await call('verify', { hash, password })) === true;
}

/** Ends the worker now (tests; an idle gateway ends it by itself). */
export async function stopArgon2Thread(): Promise<void> {
  const w = worker;
  worker = undefined;
  clearTimeout(idle);
  await w?.terminate();
}
