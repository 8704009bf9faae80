export {
  type DownlinkMessage,
  type TelemetryMessage,
  Uplink,
  type UplinkOptions,
  type UplinkStatus,
  type UplinkTls,
} from './uplink.ts';
