import { assess, gatherLiveEvidence, toHtml, toText } from '../compliance/index.ts';
import type { Io } from './commands.ts';
import { withWritableCore } from './device-commands.ts';
import { EXIT } from './exit-codes.ts';

/** `portcullis compliance [--json|--html]`: the self-assessment; exit 0 whatever it finds (it is a report). */
export function complianceCommand(
  configPath: string | undefined,
  format: 'text' | 'json' | 'html',
  io: Io,
): Promise<number> {
  return withWritableCore(configPath, async (core) => {
    const r = assess(core, await gatherLiveEvidence(core));
    io.out(
      format === 'json' ? JSON.stringify(r, null, 2) : format === 'html' ? toHtml(r).trimEnd() : toText(r),
    );
    return EXIT.ok;
  });
}
