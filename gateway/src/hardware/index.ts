export {
  type HardwareOptions,
  HardwareService,
  LED_PATTERNS,
  type LedState,
  TAMPER_ALERT,
  uiLockedByTamper,
} from './appliance.ts';
export { type GpioBackend, SimulatedGpio } from './backend.ts';
export { openOnoff } from './onoff.ts';
