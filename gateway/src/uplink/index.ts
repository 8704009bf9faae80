export {
  type TelemetryMessage,
  Uplink,
  type UplinkOptions,
  type UplinkStatus,
  type UplinkTls,
} from './uplink.ts';
