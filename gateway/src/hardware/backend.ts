/** The few GPIO operations the appliance needs; onoff on real hardware, a simulator everywhere else. */
export interface GpioBackend {
  readonly name: 'onoff' | 'simulator';
  /** Calls `onChange` with the pin's new level (0/1) on both edges. */
  watch(pin: number, onChange: (level: 0 | 1) => void): void;
  read(pin: number): 0 | 1;
  write(pin: number, level: 0 | 1): void;
  close(): void;
}

/**
 * For machines without GPIO (and the tests): inputs are set by code, outputs are recorded. It is the same
 * interface the appliance code drives, so everything above it runs unchanged.
 */
export class SimulatedGpio implements GpioBackend {
  readonly name = 'simulator';
  private readonly levels = new Map<number, 0 | 1>();
  private readonly watchers = new Map<number, ((level: 0 | 1) => void)[]>();
  /** Every level written per output pin, in order. */
  readonly written = new Map<number, (0 | 1)[]>();

  watch(pin: number, onChange: (level: 0 | 1) => void): void {
    this.watchers.set(pin, [...(this.watchers.get(pin) ?? []), onChange]);
  }

  read(pin: number): 0 | 1 {
    return this.levels.get(pin) ?? 0;
  }

  write(pin: number, level: 0 | 1): void {
    this.levels.set(pin, level);
    this.written.set(pin, [...(this.written.get(pin) ?? []), level]);
  }

  /** Drives an input as the hardware would (edges only). */
  set(pin: number, level: 0 | 1): void {
    if (this.read(pin) === level) return;
    this.levels.set(pin, level);
    for (const w of this.watchers.get(pin) ?? []) w(level);
  }

  close(): void {
    this.watchers.clear();
  }
}
