import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { systemClock } from '../clock.ts';
import type { LoadedConfig } from '../config/index.ts';

/** What `start` logs about a staged restore once its logger exists. */
export interface RestoreNote {
  level: 'info' | 'error';
  msg: string;
  fields: Record<string, unknown>;
}

/**
 * Before the gateway opens its database: a restore staged by `portcullis backup restore` (or the UI) is put in
 * place, and the configuration read again if it was restored. The backup module loads only when one is staged.
 */
export async function stagedRestoreAtStart(
  loaded: LoadedConfig,
  reload: () => LoadedConfig,
): Promise<{ loaded: LoadedConfig; note?: RestoreNote }> {
  if (!existsSync(join(loaded.config.dataDir, 'restore', 'staged'))) return { loaded };
  const { applyStagedRestore } = await import('../backup/index.ts');
  const r = applyStagedRestore(loaded, systemClock);
  if (!r) return { loaded };
  if ('refused' in r) {
    return {
      loaded,
      note: {
        level: 'error',
        msg: 'staged restore refused; starting on the existing data',
        fields: { reason: r.refused },
      },
    };
  }
  return {
    loaded: r.config ? reload() : loaded,
    note: {
      level: 'info',
      msg: 'restored from a backup',
      fields: { rollbackCopy: r.rollbackDir, configRestored: r.config },
    },
  };
}
