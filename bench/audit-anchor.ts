// `npm run bench -- audit-anchor`: what anchoring the audit log in the TPM costs, against the append it protects,
// in the same run. A keyed append (software keystore: HMAC of the old head and the new one) against an unkeyed
// one; one TPM NV counter increment and one checkpoint with the tpm2 keystore (identity signature in the TPM
// plus the increment), against swtpm behind tpm2-abrmd. The ratios are the argument of docs/audit.md for
// advancing the counter per checkpoint, not per entry.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { AuditLog, CHECKPOINT_EVERY } from '../gateway/src/audit/index.ts';
import { systemClock } from '../gateway/src/clock.ts';
import { resolveConfig } from '../gateway/src/config/index.ts';
import { Core } from '../gateway/src/core.ts';
import { TpmNvCounter } from '../gateway/src/keystore/audit-anchor.ts';
import { runTool } from '../gateway/src/keystore/tools.ts';
import { Store } from '../gateway/src/store/index.ts';
import { startTpm } from '../test/helpers/tpm.ts';
import { parseOptions, round } from './lib/load.ts';

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? 0;
}

/** Per-call milliseconds of `fn`, median of `rounds` rounds of `n` calls. */
function time(n: number, rounds: number, fn: () => void): number {
  const per: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const t0 = performance.now();
    for (let i = 0; i < n; i++) fn();
    per.push((performance.now() - t0) / n);
  }
  return median(per);
}

export async function auditAnchorBench(argv: string[]) {
  const o = parseOptions('audit-anchor', argv, { appends: 2000, increments: 20, rounds: 5 });
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-bench-audit-'));
  const tpm = await startTpm();
  Object.assign(process.env, tpm.env);
  try {
    const entry = {
      actor: 'bench',
      action: 'bench.append',
      target: 't',
      details: { n: 1, note: 'x'.repeat(80) },
    };
    const writeConfig = (name: string, extra: string) => {
      const file = join(dir, `${name}.yaml`);
      writeFileSync(file, `dataDir: ${join(dir, name)}\n${extra}`);
      return resolveConfig(file).config;
    };
    const softConfig = writeConfig('soft', '');
    const soft = Core.open(softConfig, systemClock);
    // Unkeyed: the audit log as it was, on a store of its own with the gateway's synchronous setting.
    const plainStore = Store.open(join(dir, 'plain.db'), { synchronous: softConfig.store.synchronous });
    const plain = new AuditLog(plainStore, systemClock);
    const hard = Core.open(
      writeConfig('tpm', `keystore:\n  backend: tpm2\n  tcti: "${tpm.tcti}"\n`),
      systemClock,
    );
    try {
      // Alternate the two appends round by round so drift hits both alike.
      const plainMs: number[] = [];
      const keyedMs: number[] = [];
      for (let r = 0; r < o.rounds; r++) {
        plainMs.push(time(o.appends, 1, () => plain.append(entry)));
        keyedMs.push(time(o.appends, 1, () => soft.audit.append(entry)));
      }
      // A counter of its own (another NV index): incrementing the log's counter behind its back is exactly what
      // the log reports as a rollback.
      mkdirSync(join(dir, 'nv'));
      const env = { ...process.env, TPM2TOOLS_TCTI: tpm.tcti };
      const counter = new TpmNvCounter(join(dir, 'nv'), (cmd, args) => runTool(cmd, args, env), '0x01500a0e');
      counter.open();
      const incrementMs = time(o.increments, o.rounds, () => counter.increment());
      hard.audit.append(entry);
      const checkpointMs = time(o.increments, o.rounds, () => {
        hard.audit.append(entry);
        hard.audit.checkpoint();
      });
      const plainAppend = median(plainMs);
      const keyedAppend = median(keyedMs);
      return {
        appendUnkeyedMs: round(plainAppend, 4),
        appendKeyedMs: round(keyedAppend, 4),
        keyedOverUnkeyed: round(keyedAppend / plainAppend, 2),
        tpmNvIncrementMs: round(incrementMs, 2),
        tpmCheckpointMs: round(checkpointMs, 2),
        nvIncrementOverKeyedAppend: round(incrementMs / keyedAppend, 0),
        checkpointPerEntryAtCheckpointEvery: round(checkpointMs / CHECKPOINT_EVERY / keyedAppend, 3),
        note: 'ratios of the same run; swtpm behind tpm2-abrmd (a hardware TPM is slower); both appends with the gateway synchronous setting',
      };
    } finally {
      soft.close();
      hard.close();
      plainStore.close();
    }
  } finally {
    await tpm.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
