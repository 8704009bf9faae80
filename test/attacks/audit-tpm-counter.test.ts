/**
 * Issue 19, finding 5 on the appliance's keystore: with `tpm2` the audit head's key is derived from the data key
 * sealed in the TPM, and the head is bound to a TPM NV counter. Against a real TPM 2.0 (swtpm behind
 * tpm2-abrmd): restoring an earlier copy of the database is caught by the counter; an intact log verifies.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { systemClock } from '../../gateway/src/clock.ts';
import { resolveConfig } from '../../gateway/src/config/index.ts';
import { Core } from '../../gateway/src/core.ts';
import { AUDIT_NV_INDEX } from '../../gateway/src/keystore/audit-anchor.ts';
import { runCli } from '../helpers/cli.ts';
import { tempDir } from '../helpers/tmp.ts';
import { startTpm, type TestTpm } from '../helpers/tpm.ts';

describe('attack: audit rollback against the TPM NV counter', () => {
  let tpm: TestTpm;
  before(async () => {
    tpm = await startTpm();
    Object.assign(process.env, tpm.env);
  });
  after(() => tpm.stop());

  it('a restored earlier database fails verify; the intact one passes; the head matches the NV counter', async (t) => {
    const dir = tempDir(t);
    const config = join(dir, 'config.yaml');
    writeFileSync(
      config,
      `dataDir: ${join(dir, 'var')}\nkeystore:\n  backend: tpm2\n  tcti: "${tpm.tcti}"\n`,
    );
    const db = join(dir, 'var', 'portcullis.db');
    const cli = (...args: string[]) =>
      runCli(['--config', config, ...args], { cwd: dir, env: { ...process.env, ...tpm.env } });
    const write = (n: number) => {
      const core = Core.open(resolveConfig(config).config, systemClock);
      try {
        for (let i = 0; i < n; i++)
          core.audit.append({ actor: 'user:alice', action: 'device.add', details: { i } });
        return core.audit.checkpoint();
      } finally {
        core.close();
      }
    };
    write(5);
    copyFileSync(db, join(dir, 'old.db'));
    const cp = write(5);
    const nv = execFileSync('tpm2_nvread', [AUDIT_NV_INDEX, '-C', 'o', '-s', '8'], {
      env: { ...process.env, TPM2TOOLS_TCTI: tpm.tcti },
    }).readBigUInt64BE(0);
    assert.equal(Number(nv), cp?.counter, 'the checkpoint advanced the TPM counter to the value it signed');

    const ok = await cli('audit', 'verify');
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /10 entries.*keyed head ok \(tpm2-nv counter \d+.*2 signed checkpoints ok/);

    // The attack: the copy taken earlier is consistent in itself (its head and MAC were the gateway's own).
    copyFileSync(join(dir, 'old.db'), db);
    const r = await cli('audit', 'verify');
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      /BROKEN at seq 6: .*but the tpm2-nv counter is at \d+: the database was rolled back/,
    );
  });
});
