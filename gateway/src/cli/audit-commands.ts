import { existsSync } from 'node:fs';
import { join } from 'node:path';
import {
  type AuditCheckpoint,
  type AuditSealing,
  type ExportFormat,
  formatCheckpoint,
  formatEntry,
  sealingFrom,
} from '../audit/index.ts';
import { systemClock } from '../clock.ts';
import { resolveConfig } from '../config/index.ts';
import { Core } from '../core.ts';
import { errorMessage } from '../errors.ts';
import { openKeystore } from '../keystore/index.ts';
import { cliActor, withWritableCore } from './device-commands.ts';
import { EXIT } from './exit-codes.ts';
import type { Io } from './io.ts';

/**
 * `audit verify`: the chain, and with the keystore (when the data directory has one) the keyed head, the
 * counter and the signed checkpoints. The store is opened read-only; the keystore only to derive the head key,
 * read the counter and the identity certificate.
 */
export function auditVerifyCommand(configPath: string | undefined, io: Io): number {
  const { config } = resolveConfig(configPath);
  const core = Core.open(config, systemClock, { readonly: true });
  try {
    let sealing: AuditSealing | undefined;
    if (existsSync(join(config.dataDir, 'keystore'))) {
      try {
        sealing = sealingFrom(openKeystore(config));
      } catch (err) {
        io.err(
          `audit log NOT VERIFIED: cannot open the keystore to check the keyed head (${errorMessage(err)})`,
        );
        return EXIT.failure;
      }
    } else if (core.auditHeadKeyed()) {
      io.err(
        'audit log NOT VERIFIED: its head is keyed, but this data directory has no keystore to check it',
      );
      return EXIT.failure;
    }
    const r = core.verifyAudit(sealing);
    if (r.ok) {
      const keyed = r.keyed
        ? `; keyed head ok (${r.keyed.anchor} counter ${r.keyed.counter}, head bound to ${r.keyed.headCounter}), ${r.keyed.checkpoints} signed checkpoints ok`
        : sealing
          ? '; head not keyed yet (the next start keys it)'
          : '; head not keyed (no keystore)';
      io.out(`audit log ok: ${r.entries} entries, chain intact through seq ${r.headSeq}${keyed}`);
      return EXIT.ok;
    }
    io.err(`audit log BROKEN at seq ${r.firstBadSeq}: ${r.reason}`);
    return EXIT.failure;
  } finally {
    core.close();
  }
}

/**
 * Entries from `fromSeq`; with `checkpoints`, each followed by the signed checkpoints that name it (docs/audit.md).
 * Opt-in so a consumer that reads entries only keeps the format it knows; a SIEM feed should ask for them.
 */
export function auditExportCommand(
  configPath: string | undefined,
  format: ExportFormat,
  fromSeq: number,
  io: Io,
  checkpoints = false,
): number {
  const core = Core.open(resolveConfig(configPath).config, systemClock, { readonly: true });
  try {
    const log = core.audit;
    const pending: AuditCheckpoint[] = checkpoints
      ? log.checkpoints(fromSeq === 1 ? 0 : fromSeq).sort((a, b) => a.seq - b.seq)
      : [];
    let i = 0;
    const flushUpTo = (seq: number) => {
      while (i < pending.length && (pending[i] as AuditCheckpoint).seq <= seq) {
        io.out(formatCheckpoint(pending[i] as AuditCheckpoint, format));
        i++;
      }
    };
    flushUpTo(fromSeq - 1);
    for (const e of log.entries(fromSeq)) {
      io.out(formatEntry(e, format));
      flushUpTo(e.seq);
    }
    // Checkpoints past the last entry are the evidence of a truncated log: export them too.
    flushUpTo(Number.MAX_SAFE_INTEGER);
    return EXIT.ok;
  } finally {
    core.close();
  }
}

/** After `audit verify` found tampering: record it and let the gateway write again (the evidence stays). */
export function auditResealCommand(configPath: string | undefined, reason: string, io: Io): number {
  return withWritableCore(configPath, (core) => {
    const found = core.audit.tamperedReason;
    const e = core.audit.reseal(cliActor(), reason);
    io.out(`audit log resealed at seq ${e.seq}${found ? ` (found: ${found})` : ' (nothing was wrong)'}`);
    return EXIT.ok;
  });
}
