/**
 * Watching a booted appliance image from outside, as a technician does without a login: its serial console
 * and its forwarded ports (test/appliance-boot.test.ts, test/rpi-image-boot.test.ts).
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import type { TestContext } from 'node:test';

const ROOT = join(import.meta.dirname, '..', '..');

export interface Vm {
  /** Everything the serial console printed so far. */
  serial: () => string;
  proc: ChildProcess;
}

/** Collects QEMU's serial console; the whole log stays in test-artifacts/NAME.serial.log for a post-mortem. */
export function watchSerial(t: TestContext, proc: ChildProcess, name: string): () => string {
  let out = '';
  const add = (d: Buffer) => {
    out += d.toString();
  };
  proc.stdout?.on('data', add);
  proc.stderr?.on('data', add);
  t.after(() => {
    const dest = join(ROOT, 'test-artifacts');
    mkdirSync(dest, { recursive: true });
    writeFileSync(join(dest, `${name}.serial.log`), out);
  });
  return () => out;
}

/** The guest kernel's last words (a double fault ends in the panic; either line may be the one printed). */
const KERNEL_PANIC = /Kernel panic - not syncing|traps: PANIC: double fault/;
/** The first kernel crash line, with its timestamp (seconds since the kernel started). */
const CRASH_LINE = /\[\s*(\d+\.\d+)\] [^\n]*(PANIC|Oops|panic)/;
/**
 * The appliance's own console text (portcullis-console, when the gateway has started or failed once, minutes
 * into a boot under TCG): the kernel's first seconds are long past.
 */
const USERSPACE = /Portcullis edge security gateway/;
/** Only a panic this early earns a second boot: the one seen came 0.59 s in, before the initramfs. */
const EARLY_PANIC_S = 3;

/** The console from its first kernel crash line on, for a message. */
const panicLines = (serial: string) => serial.slice(Math.max(0, serial.search(CRASH_LINE))).slice(0, 2000);

/**
 * Polls `probe` each second until it gives a value; fails with the console's tail if QEMU exits or time runs out,
 * and at once if the guest kernel panicked: nothing would answer after that.
 */
export async function waitForVm<T>(
  what: string,
  vm: Vm,
  probe: () => T | undefined | Promise<T | undefined>,
  deadlineMs: number,
): Promise<T> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    assert.ok(vm.proc.exitCode === null, `QEMU exited waiting for ${what}:\n${vm.serial().slice(-4000)}`);
    assert.ok(
      !KERNEL_PANIC.test(vm.serial()),
      `the guest kernel panicked waiting for ${what}:\n${panicLines(vm.serial())}`,
    );
    assert.ok(Date.now() < deadline, `no ${what} in time; the console said:\n${vm.serial().slice(-4000)}`);
    await new Promise((r) => setTimeout(r, 1000));
  }
}

/** One HTTPS request to a forwarded port of the VM; undefined when nothing answers. */
export function vmHttps(
  port: number,
  path: string,
  init: { method?: string; json?: unknown; timeoutMs?: number } = {},
): Promise<{ status: number; body: string } | undefined> {
  return new Promise((resolve) => {
    const body = init.json === undefined ? undefined : JSON.stringify(init.json);
    const req = httpsRequest(
      {
        host: '127.0.0.1',
        port,
        path,
        method: init.method ?? 'GET',
        // The appliance's UI certificate is its own (issued by its identity CA, which never left the box);
        // what is checked here is that it answers over TLS on the management address.
        rejectUnauthorized: false,
        // Polls give up quickly; a setup or login hashes a password (argon2) on an emulated CPU: slow.
        timeout: init.timeoutMs ?? (init.method === 'POST' ? 120_000 : 5000),
        headers: body ? { 'content-type': 'application/json' } : {},
      },
      (res) => {
        let text = '';
        res.on('data', (d: Buffer) => {
          text += d.toString();
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(undefined));
    req.end(body);
  });
}

/**
 * The UI on a forwarded port as the `request` of an in-process app, so test/helpers/ui.ts's Browser (session
 * cookie, CSRF token, forms, flash messages) drives the booted appliance as it drives the UI in process.
 */
export function vmApp(port: number) {
  return {
    request: (path: string, init: { method?: string; headers?: Record<string, string>; body?: string }) =>
      new Promise<Response>((resolve, reject) => {
        const req = httpsRequest(
          {
            host: '127.0.0.1',
            port,
            path,
            method: init.method ?? 'GET',
            rejectUnauthorized: false,
            // Re-authentication hashes a password on an emulated CPU: slow.
            timeout: 120_000,
            headers: init.headers ?? {},
          },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (d: Buffer) => chunks.push(d));
            res.on('end', () => {
              const headers = new Headers();
              for (const [k, v] of Object.entries(res.headers)) {
                if (Array.isArray(v)) for (const one of v) headers.append(k, one);
                else if (v !== undefined) headers.set(k, String(v));
              }
              const status = res.statusCode ?? 500;
              const body = status === 204 || status === 304 ? null : Buffer.concat(chunks);
              resolve(new Response(body, { status, headers }));
            });
          },
        );
        req.on('timeout', () => req.destroy(new Error(`no answer from the appliance's UI for ${path}`)));
        req.on('error', reject);
        req.end(init.body);
      }),
  };
}

/**
 * Boots with `start` until the appliance's console text shows, and boots once more if the guest kernel panicked
 * in its first seconds. Under TCG (QEMU 7.2, `-cpu max`), Debian's kernel once died of a double fault in its slab
 * allocator 0.59 s after it started, before the initramfs: an emulator fault before anything of the image beyond
 * the kernel had run, which cost the test its whole 8-minute wait. A later panic (the initramfs, systemd, the
 * gateway) gets no second boot, and neither does a second early one, so an image that cannot boot still fails.
 */
export async function bootPastKernel<V extends Vm>(
  t: TestContext,
  start: (attempt: number) => Promise<V>,
  deadlineMs: number,
): Promise<V> {
  for (let attempt = 1; ; attempt++) {
    const vm = await start(attempt);
    const deadline = Date.now() + deadlineMs;
    for (;;) {
      const serial = vm.serial();
      if (USERSPACE.test(serial)) return vm;
      if (KERNEL_PANIC.test(serial)) {
        const at = Number(CRASH_LINE.exec(serial)?.[1] ?? Number.NaN);
        assert.ok(at < EARLY_PANIC_S, `the guest kernel panicked ${at} s in:\n${panicLines(serial)}`);
        assert.ok(attempt === 1, `the guest kernel panicked again, ${at} s in:\n${panicLines(serial)}`);
        break;
      }
      assert.ok(vm.proc.exitCode === null, `QEMU exited before the console text:\n${serial.slice(-4000)}`);
      assert.ok(Date.now() < deadline, `no console text in time; the console said:\n${serial.slice(-4000)}`);
      await new Promise((r) => setTimeout(r, 250));
    }
    t.diagnostic(
      `the guest kernel panicked in its first seconds; booting once more:\n${panicLines(vm.serial())}`,
    );
    vm.proc.kill('SIGKILL');
  }
}
