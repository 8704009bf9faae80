/**
 * TOTP codes for the tests that sign in with a second factor. The gateway takes each time step once per account
 * and accepts one step of drift either side, so a test uses the current step and the next before it has to wait
 * for the clock (a test that always waited for a fresh step spent up to 30 s on every code).
 */
import { generateSync } from 'otplib';

const lastStep = new Map<string, number>();
const STEP_MS = 30_000;

/** A code of the earliest step not used yet for `secret`: the current one, else the next, else after a wait. */
export async function nextCode(secret: string): Promise<string> {
  const last = lastStep.get(secret) ?? 0;
  let now = Math.floor(Date.now() / STEP_MS);
  if (last > now) {
    // The next step is spent too: wait for the clock to reach it, so that its successor is the one ahead.
    await new Promise((r) => setTimeout(r, last * STEP_MS - Date.now() + 100));
    now = Math.floor(Date.now() / STEP_MS);
  }
  const step = Math.max(last + 1, now);
  lastStep.set(secret, step);
  return generateSync({ secret, epoch: step * 30 });
}
