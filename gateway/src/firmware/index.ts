export { FirmwareError, type FirmwareErrorCode } from './errors.ts';
export { type FirmwareManifest, firmwareManifestSchema, parseFirmwareManifest } from './manifest.ts';
export {
  type CampaignSettings,
  type CampaignView,
  campaignSettingsSchema,
  type FirmwareChange,
  type FirmwareNotice,
  FirmwareService,
  startFirmwareScheduler,
} from './service.ts';
