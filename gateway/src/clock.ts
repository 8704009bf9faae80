/** Time is injected wherever behaviour depends on it, so tests control it instead of sleeping. */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

/**
 * Milliseconds on a clock that never steps (performance.now() is CLOCK_MONOTONIC), near the epoch's: for what is
 * kept for a duration. A wall clock set back or forward (NTP at boot on a board without a real-time clock) would
 * keep or forget it by the step; not for anything compared with dates (certificate validity, logs).
 */
export const monotonicClock: Clock = { now: () => performance.timeOrigin + performance.now() };

export class ManualClock implements Clock {
  constructor(private current = Date.UTC(2026, 0, 1)) {}

  now(): number {
    return this.current;
  }

  advance(ms: number): void {
    this.current += ms;
  }

  set(ms: number): void {
    this.current = ms;
  }
}

export function isoTime(clock: Clock): string {
  return new Date(clock.now()).toISOString();
}
