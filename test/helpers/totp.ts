/**
 * TOTP codes for the tests that sign in with a second factor. The gateway takes each time step once per account
 * and accepts one step of drift either side, so a test uses the current step and the next before it has to wait
 * for the clock (a test that always waited for a fresh step spent up to 30 s on every code).
 */
import { generateSync } from 'otplib';

const lastStep = new Map<string, number>();
const STEP_MS = 30_000;
/**
 * The next step is used only this far into the current one, and a wait for a step ends this far into it: the
 * emulated appliance reads its clock from the RTC in whole seconds, up to a second behind this host's.
 */
const MARGIN_MS = 2000;

/** A code of the earliest step not used yet for `secret`: the current one, else the next, else after a wait. */
export async function nextCode(secret: string): Promise<string> {
  for (;;) {
    const last = lastStep.get(secret) ?? 0;
    const now = Date.now();
    const current = Math.floor(now / STEP_MS);
    const ahead = now - current * STEP_MS >= MARGIN_MS ? current + 1 : current;
    const step = Math.max(last + 1, current);
    if (step <= ahead) {
      lastStep.set(secret, step);
      return generateSync({ secret, epoch: step * 30 });
    }
    // The current step and the next are spent: once the last one used is current (a margin in), its next is.
    await new Promise((r) => setTimeout(r, last * STEP_MS + MARGIN_MS - now));
  }
}
