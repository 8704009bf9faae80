/**
 * The appliance boot tests' watch on the guest kernel (test/helpers/appliance-vm.ts), below the real boots of
 * test/appliance-boot.test.ts: a kernel panic in the guest's first seconds gets one more boot, and only one; a
 * later panic gets none; a wait on a panicked guest fails at once instead of at its deadline. The "VMs" here are
 * processes that print what a QEMU serial console printed.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { describe, it, type TestContext } from 'node:test';
import { bootPastKernel, type Vm, waitForVm, watchSerial } from './helpers/appliance-vm.ts';

/** The lines the amd64 image's kernel printed when it died under TCG (CI, 2026-12-07). */
const PANIC =
  '[    0.589894] traps: PANIC: double fault, error_code: 0x0\n[    0.592660] Oops: double fault: 0000 [#1] PREEMPT SMP NOPTI\n';
const USERSPACE = 'Portcullis edge security gateway portcullis (ttyS0)\n';

/** A process that prints `text` and stays up, as QEMU does after its guest has panicked. */
function fakeVm(t: TestContext, text: string): Promise<Vm> {
  const proc = spawn(
    process.execPath,
    ['-e', `process.stdout.write(${JSON.stringify(text)}); setInterval(() => {}, 1000)`],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  t.after(() => proc.kill('SIGKILL'));
  return Promise.resolve({ proc, serial: watchSerial(t, proc, 'appliance-vm-helper') });
}

describe('the appliance boot tests watch the guest kernel', () => {
  it('boots once more when the guest kernel panicked in its first seconds, and says so', async (t) => {
    const boots: Vm[] = [];
    const vm = await bootPastKernel(
      t,
      async (attempt) => {
        const one = await fakeVm(t, attempt === 1 ? PANIC : USERSPACE);
        boots.push(one);
        return one;
      },
      30_000,
    );
    assert.equal(boots.length, 2);
    assert.equal(vm, boots[1]);
    // The first is stopped, not left running beside the second.
    const first = boots[0]?.proc;
    assert.ok(first);
    if (first.exitCode === null && first.signalCode === null) await new Promise((r) => first.once('exit', r));
    assert.equal(first.signalCode, 'SIGKILL');
  });

  it('does not boot a third time: a second panic fails, with the kernel lines', async (t) => {
    let boots = 0;
    await assert.rejects(
      bootPastKernel(
        t,
        (_attempt) => {
          boots++;
          return fakeVm(t, PANIC);
        },
        30_000,
      ),
      /panicked again, 0.589894 s in[\s\S]*PANIC: double fault/,
    );
    assert.equal(boots, 2);
  });

  it('does not boot again after a panic later than the first seconds: the image itself may be at fault', async (t) => {
    let boots = 0;
    await assert.rejects(
      bootPastKernel(
        t,
        () => {
          boots++;
          return fakeVm(
            t,
            '[   14.021533] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100\n',
          );
        },
        30_000,
      ),
      /panicked 14\.021533 s in[\s\S]*Attempted to kill init/,
    );
    assert.equal(boots, 1);
  });

  it('boots once when the console text comes first', async (t) => {
    let boots = 0;
    await bootPastKernel(
      t,
      () => {
        boots++;
        return fakeVm(t, USERSPACE);
      },
      30_000,
    );
    assert.equal(boots, 1);
  });

  it('fails a wait on a panicked guest at once, not at its deadline', { timeout: 60_000 }, async (t) => {
    const vm = await fakeVm(t, `${USERSPACE}${PANIC}`);
    // A wait that ran to its deadline would have said "no the setup code in time".
    await assert.rejects(
      waitForVm('the setup code', vm, () => undefined, 10 * 60_000),
      /the guest kernel panicked waiting for the setup code[\s\S]*double fault/,
    );
  });
});
