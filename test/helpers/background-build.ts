/**
 * The background Raspberry Pi image build (scripts/rpi-prebuild.sh) shares the two cores with the tests; a test
 * that boots emulated VMs against deadlines takes the CPU from it while it runs.
 */
import { readFileSync, writeFileSync } from 'node:fs';

/**
 * Sets the build's scheduler autogroup (its session) to the least share — nice 19 for the group, which with
 * sched_autogroup is what ranks it against the tests — and returns the undo. Nothing to do when no build runs
 * in the background, it has finished, or the kernel has no autogroups.
 */
export function yieldBackgroundBuild(): () => void {
  const pid = Number(process.env.PORTCULLIS_RPI_PREBUILD_PID);
  if (!Number.isInteger(pid) || pid <= 0) return () => undefined;
  const set = (nice: number) => {
    try {
      // Still the build's session leader, not a process that reused its PID.
      if (!readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('prebuild-rpi-image.sh')) return;
      writeFileSync(`/proc/${pid}/autogroup`, String(nice));
    } catch {
      // Gone (the build is done) or no autogroups: nothing to yield.
    }
  };
  set(19);
  return () => set(0);
}
