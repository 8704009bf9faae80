import type { Core } from '../../gateway/src/core.ts';
import type { MaintenanceView } from './pages/maintenance.tsx';
import { MAX_BUNDLE_BYTES } from './routes/maintenance-api.ts';

/** The maintenance page's facts; the update and backup modules load with the first page that shows them. */
export async function maintenanceView(core: Core, admin: boolean): Promise<MaintenanceView> {
  const [{ updateStatus }, backup] = await Promise.all([
    import('../../gateway/src/updates/index.ts'),
    import('../../gateway/src/backup/index.ts'),
  ]);
  return {
    status: updateStatus(core),
    keyPinned: Boolean(core.config.updates.publicKeyFile),
    version: core.status().version,
    admin,
    doesNotMove: backup.DOES_NOT_MOVE,
    restoreStaged: backup.restoreStaged(core.config),
    maxBundleMiB: Math.floor(MAX_BUNDLE_BYTES / 1024 / 1024),
    maxArchiveMiB: Math.floor(backup.MAX_ARCHIVE_BYTES / 1024 / 1024),
  };
}
