export { type BuildRequest, buildBundle, readHeader } from './bundle.ts';
export { UpdateError, type UpdateErrorCode } from './errors.ts';
export {
  installerFor,
  rollbackCounterFor,
  type UpdateDeps,
  UpdateInstaller,
  type UpdateStatusView,
  updateStatus,
} from './installer.ts';
export { loadReleaseKey, type Manifest, parseManifest } from './manifest.ts';
export { DEFAULT_NV_INDEX, type RollbackCounter, TpmNvCounter } from './rollback-counter.ts';
