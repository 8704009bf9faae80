export type { WillMessage } from './connection.ts';
export {
  type DownlinkMessage,
  type FleetHooks,
  type TelemetryMessage,
  Uplink,
  type UplinkOptions,
  type UplinkStatus,
  type UplinkTls,
} from './uplink.ts';
