import type { GpioBackend } from './backend.ts';

interface OnoffGpio {
  readSync(): number;
  writeSync(v: number): void;
  watch(cb: (err: Error | null | undefined, value: number) => void): void;
  unexport(): void;
}
interface OnoffModule {
  Gpio: (new (
    pin: number,
    direction: string,
    edge?: string,
    options?: { debounceTimeout?: number },
  ) => OnoffGpio) & { accessible: boolean };
}

/**
 * The onoff backend, where the sysfs GPIO interface (/sys/class/gpio) is accessible; undefined otherwise (no module, no GPIO).
 * onoff is an optional dependency: its native part (epoll) only builds on Linux with a compiler.
 */
export async function openOnoff(): Promise<GpioBackend | undefined> {
  let onoff: OnoffModule;
  try {
    onoff = (await import('onoff' as string)) as OnoffModule;
  } catch {
    return undefined;
  }
  if (!onoff.Gpio.accessible) return undefined;
  const pins = new Map<number, OnoffGpio>();
  const pin = (n: number, direction: 'in' | 'out') => {
    let g = pins.get(n);
    if (!g) {
      g =
        direction === 'in'
          ? new onoff.Gpio(n, 'in', 'both', { debounceTimeout: 20 })
          : new onoff.Gpio(n, 'out');
      pins.set(n, g);
    }
    return g;
  };
  return {
    name: 'onoff',
    watch: (n, onChange) =>
      pin(n, 'in').watch((err, v) => {
        if (!err) onChange(v ? 1 : 0);
      }),
    read: (n) => (pin(n, 'in').readSync() ? 1 : 0),
    write: (n, level) => pin(n, 'out').writeSync(level),
    close: () => {
      for (const g of pins.values()) g.unexport();
      pins.clear();
    },
  };
}
